"""P2: does a small non-linear model beat the linear baseline, and how wide must it be?"""

from __future__ import annotations

import torch

from experiments import common


def _train_mlp(runner, digits, hidden: int) -> tuple[torch.nn.Module, dict, list[dict[str, float]]]:
    common.setup_torch(runner.params)
    torch.manual_seed(runner.seed)
    data = digits(runner.params).tensors(runner.device)
    model = common.mlp(hidden)
    curve = common.train_classifier(
        runner,
        model,
        data,
        progress=runner.progress,
    )
    return model, data, curve


def p2_width(runner, digits) -> dict:
    """One point (and seed) of the width sweep; the plan selects the best mean validation accuracy."""
    hidden = int(runner.params["hidden"])
    model, data, curve = _train_mlp(runner, digits, hidden)
    accuracy = common.accuracy(model, data["x_test"], data["y_test"])
    return {
        "finding": (
            f"{hidden} hidden units, seed {runner.seed}: "
            f"{curve[-1]['val_accuracy']:.1%} validation, {accuracy:.1%} test accuracy"
        ),
        "metrics": {"val_accuracy": curve[-1]["val_accuracy"], "accuracy": accuracy},
    }


def p2_mlp(runner, digits) -> dict:
    """The MLP over several seeds (one call per seed), against P1's logistic regression."""
    hidden = int(runner.params["hidden"])
    linear = runner.upstream["p1_logreg"]["metrics"]
    model, data, curve = _train_mlp(runner, digits, hidden)
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
            reference=("logistic regression (P1), validation", linear["val_accuracy"]),
        )
        artifacts.append(runner.save_figure(fig, "learning_curve.png"))
        common.close(fig)

    # The comparison with logistic regression is the plan's criterion (accuracy: "> p1_logreg:
    # accuracy"), paired seed by seed with P1's stored results: nothing to compute here.
    return {
        "finding": f"MLP with {hidden} hidden units, seed {runner.seed}: {accuracy:.1%} test accuracy",
        "metrics": {"accuracy": accuracy},
        "artifacts": artifacts,
    }
