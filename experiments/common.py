"""Shared pieces of the digits study: data, models, training loops and figures.

The data set is scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes;
nothing is downloaded).  Every experiment uses the same stratified train / validation / test
split (fixed by ``split_seed``), so runs differ only in what they are meant to differ in: the
model, its width, or the seed that initialises and shuffles it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

N_CLASSES = 10
N_PIXELS = 64


@dataclass(frozen=True)
class Split:
    """One train / validation / test split, pixels scaled to [0, 1], as numpy arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def tensors(self, device: str) -> dict[str, torch.Tensor]:
        """The same arrays as torch tensors on ``device`` (float32 images, int64 labels)."""
        out: dict[str, torch.Tensor] = {}
        for part in ("train", "val", "test"):
            out[f"x_{part}"] = torch.as_tensor(getattr(self, f"x_{part}"), dtype=torch.float32, device=device)
            out[f"y_{part}"] = torch.as_tensor(getattr(self, f"y_{part}"), dtype=torch.int64, device=device)
        return out


def setup_torch(params: Any) -> None:
    """Few threads: these models are tiny and thread start-up costs more than it saves."""
    torch.set_num_threads(int(params.get("threads", 1)))


def load_split(params: Any) -> Split:
    """The digits, split by ``test_fraction`` / ``val_fraction`` with ``split_seed``.

    ``n_train`` (stub runs) keeps only the first ``n_train`` training images; the validation and
    test sets are never cut, so a stub's numbers are comparable in kind, just worse.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    seed = int(params.get("split_seed", 0))
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=float(params["test_fraction"]), random_state=seed, stratify=y
    )
    val_share = float(params["val_fraction"]) / (1.0 - float(params["test_fraction"]))
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, random_state=seed, stratify=y_rest
    )
    n_train = params.get("n_train")
    if n_train:
        x_train, y_train = x_train[: int(n_train)], y_train[: int(n_train)]
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)


class Digits:
    """``digits(params)``: the split ``params`` ask for, made once and then shared.

    The repository's conftest.py hands one of these to every handler that requests the
    ``digits`` fixture (session-scoped), so the data set is loaded and split once per session
    rather than once per seed.  Handlers must not change the arrays in place.  Pickled (for the
    process and Modal executors) it travels empty: a worker makes the splits it needs.
    """

    def __init__(self) -> None:
        self._splits: dict[tuple[Any, ...], Split] = {}

    def __call__(self, params: Any) -> Split:
        key = tuple(params.get(k) for k in ("test_fraction", "val_fraction", "split_seed", "n_train"))
        split = self._splits.get(key)
        if split is None:
            split = self._splits[key] = load_split(params)
        return split

    def __getstate__(self) -> dict[str, Any]:
        return {"_splits": {}}


def mlp(hidden: int, depth: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """64 pixels -> ``depth`` ReLU layers of ``hidden`` units -> 10 logits."""
    layers: list[nn.Module] = []
    width = N_PIXELS
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, N_CLASSES))
    return nn.Sequential(*layers)


def encoder(hidden: int, latent: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(N_PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, latent))


def decoder(hidden: int, latent: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, N_PIXELS), nn.Sigmoid())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(x).argmax(dim=1).cpu().numpy()


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: str):
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_classifier(
    runner: Any,
    model: nn.Module,
    data: dict[str, torch.Tensor],
    *,
    x_key: str = "x",
    log: bool = True,
    progress: Callable[[float], None] | None = None,
) -> list[dict[str, float]]:
    """Adam with cross-entropy on minibatches; returns (and logs) one curve point per epoch.

    Hyper-parameters come from the plan: ``epochs``, ``lr``, ``batch_size`` and (optional)
    ``weight_decay`` in ``runner.params``.  ``x_key`` names the inputs in ``data`` (``x`` for
    pixels, ``z`` for latent codes).
    """
    epochs, lr, batch_size = runner.params["epochs"], runner.params["lr"], runner.params["batch_size"]
    weight_decay = runner.params.get("weight_decay", 0.0)
    model.to(runner.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    x_train, y_train = data[f"{x_key}_train"], data["y_train"]
    gen = torch.Generator().manual_seed(int(runner.seed))
    curve: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for idx in minibatches(len(x_train), batch_size, gen, runner.device):
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        point = {
            "train_loss": total / seen,
            "train_accuracy": accuracy(model, x_train, y_train),
            "val_accuracy": accuracy(model, data[f"{x_key}_val"], data["y_val"]),
        }
        curve.append(point)
        if log:
            runner.log_metrics(point, step=epoch)
        if progress is not None:
            progress((epoch + 1) / epochs)
    return curve


def state_dict_bytes(module: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    return buf.getvalue()


def load_state_dict_bytes(module: nn.Module, path: str) -> nn.Module:
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return module


# --- figures (Agg backend: no display needed, safe in worker processes) -------------------------


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, title: str):
    """A 10x10 confusion matrix with counts, errors in red."""
    plt = pyplot()
    counts = np.zeros((N_CLASSES, N_CLASSES), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=80)
    ax.imshow(counts, cmap="Blues")
    for i in range(N_CLASSES):
        for j in range(N_CLASSES):
            if counts[i, j]:
                colour = "white" if i == j else "red"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(N_CLASSES))
    ax.set_yticks(range(N_CLASSES))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def curve_figure(curves: dict[str, list[float]], title: str, reference: tuple[str, float] | None = None):
    """Accuracy per epoch, one line per labelled curve, and an optional dashed (label, value) line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=80)
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=label, linewidth=1.2)
    if reference is not None:
        label, value = reference
        ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{label}: {value:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.8, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    pyplot().close(fig)
