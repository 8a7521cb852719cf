"""P1: linear baselines on scikit-learn's bundled digits (1,797 8x8 images; no download)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def p1_centroid(runner) -> dict:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=runner.params["test_fraction"], random_state=runner.seed, stratify=y
    )
    if "n_train" in runner.params:
        x_train, y_train = x_train[: runner.params["n_train"]], y_train[: runner.params["n_train"]]
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(10)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = float((distances.argmin(axis=1) == y_test).mean())
    runner.log_metrics({"accuracy": accuracy})
    return {"finding": f"Nearest centroid reaches {accuracy:.1%} test accuracy", "metrics": {"accuracy": accuracy}}
