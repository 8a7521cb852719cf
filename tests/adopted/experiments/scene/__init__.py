"""Scene graphs: the registry is a module attribute (a mapping), not a function."""

from __future__ import annotations

from typing import Any

from experiments.common import count


def edge_scores(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"finding": "Edge recall stays low", "metrics": {"edge_recall": 0.43}}


def node_classifier(runner: Any) -> dict[str, Any]:
    count(runner)
    return {"metrics": {"node_acc": 0.81}}


def relation_tokens(runner: Any) -> dict[str, Any]:
    count(runner)
    if runner.sub_experiment_id == "e3_8c":
        runner.add_blocker("needs the relation vocabulary from E3.8b before a full run")
    return {"metrics": {"graph_f1": 0.74}}


HANDLERS = {"e3_1": edge_scores, "e3_2": node_classifier}

# The pivot block names a registry of its own (``handlers:`` under ``pivot_e3_8``).
PIVOT_HANDLERS = {"e3_8a": relation_tokens, "e3_8b": relation_tokens, "e3_8c": relation_tokens}
