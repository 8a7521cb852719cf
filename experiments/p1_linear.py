"""P1: linear baselines on the digits — what any later model has to beat."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from experiments import common


def p1_centroid(runner, digits) -> dict:
    """Nearest class centroid in pixel space (numpy): no training, one mean image per digit."""
    split = digits(runner.params)  # the session's split (the `digits` fixture, conftest.py)
    centroids = np.stack([split.x_train[split.y_train == k].mean(axis=0) for k in range(common.N_CLASSES)])

    def predict(x: np.ndarray) -> np.ndarray:
        return ((x[:, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)

    val_accuracy = float((predict(split.x_val) == split.y_val).mean())
    accuracy = float((predict(split.x_test) == split.y_test).mean())
    return {
        "finding": f"Nearest centroid reaches {accuracy:.1%} test accuracy with no training at all",
        "metrics": {"accuracy": accuracy, "val_accuracy": val_accuracy},
    }


def p1_logreg(runner, digits) -> dict:
    """Multinomial logistic regression: one linear layer trained with Adam in torch."""
    common.setup_torch(runner.params)
    torch.manual_seed(runner.seed)
    split = digits(runner.params)
    data = split.tensors(runner.device)
    model = nn.Linear(common.N_PIXELS, common.N_CLASSES)
    curve = common.train_classifier(
        runner,
        model,
        data,
        progress=runner.progress,
    )
    accuracy = common.accuracy(model, data["x_test"], data["y_test"])
    return {
        "finding": (
            f"A linear layer reaches {accuracy:.1%} test accuracy "
            f"({curve[-1]['train_accuracy']:.1%} on its training images)"
        ),
        "metrics": {
            "accuracy": accuracy,
            "val_accuracy": curve[-1]["val_accuracy"],
            "train_accuracy": curve[-1]["train_accuracy"],
        },
    }
