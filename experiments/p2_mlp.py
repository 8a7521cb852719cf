"""P2: does a small non-linear model beat the linear baseline, and how wide must it be?"""

from __future__ import annotations

import torch

from experiments import common


def _train_mlp(runner, hidden: int) -> tuple[torch.nn.Module, dict, list[dict[str, float]]]:
    common.setup_torch(runner.params)
    torch.manual_seed(runner.seed)
    data = common.load_split(runner.params).tensors(runner.device)
    model = common.mlp(hidden)
    curve = common.train_classifier(
        runner,
        model,
        data,
        epochs=runner.params["epochs"],
        lr=runner.params["lr"],
        batch_size=runner.params["batch_size"],
        weight_decay=runner.params["weight_decay"],
        progress=runner.progress,
    )
    return model, data, curve


def p2_width(runner) -> dict:
    """One point of the width sweep; the plan picks the width with the best validation accuracy."""
    hidden = int(runner.params["hidden"])
    model, data, curve = _train_mlp(runner, hidden)
    accuracy = common.accuracy(model, data["x_test"], data["y_test"])
    return {
        "finding": f"{hidden} hidden units: {curve[-1]['val_accuracy']:.1%} validation, {accuracy:.1%} test",
        "metrics": {"val_accuracy": curve[-1]["val_accuracy"], "accuracy": accuracy, "hidden": hidden},
    }


def p2_mlp(runner) -> dict:
    """The MLP at the width the sweep selected, over several seeds, against the linear baseline."""
    sweep = runner.upstream.get("p2_width", {}).get("metrics", {})
    hidden = int(sweep.get("hidden") or runner.params["hidden"])
    linear = runner.upstream["p1_logreg"]["metrics"]["accuracy"]
    model, data, curve = _train_mlp(runner, hidden)
    accuracy = common.accuracy(model, data["x_test"], data["y_test"])

    artifacts = []
    if runner.seed == runner.params.get("figure_seed", 0):
        predicted = common.predict(model, data["x_test"])
        fig = common.confusion_figure(
            data["y_test"].cpu().numpy(), predicted, f"MLP ({hidden} hidden), seed {runner.seed}: test set"
        )
        artifacts.append(runner.save_figure(fig, "confusion.png"))
        common.close(fig)
        fig = common.curve_figure(
            {
                "train": [p["train_accuracy"] for p in curve],
                "validation": [p["val_accuracy"] for p in curve],
            },
            f"MLP ({hidden} hidden), seed {runner.seed}: learning curve",
            reference=linear,
        )
        artifacts.append(runner.save_figure(fig, "learning_curve.png"))
        common.close(fig)

    gain = accuracy - linear
    return {
        "finding": (
            f"MLP with {hidden} hidden units: {accuracy:.1%} test accuracy, "
            f"{gain * 100:+.1f} points over the linear baseline ({linear:.1%})"
        ),
        "metrics": {"accuracy": accuracy, "gain_over_linear": gain, "hidden": hidden},
        "artifacts": artifacts,
    }
