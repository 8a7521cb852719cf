"""``runner.params`` (and ``variant``, ``upstream``) are read-only at every depth, yet plain data."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from pytest_mlexp.runner import ExperimentRunner, FrozenDict, FrozenList, freeze

PLAN_PARAMS: dict[str, Any] = {"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "layers": [64, 64], "name": "x"}


def _runner(params: dict[str, Any]) -> ExperimentRunner:
    return ExperimentRunner(
        experiment_id="e",
        sub_experiment_id="s",
        params=params,
        variant={"lr": 0.1},
        seed=0,
        stub=False,
        workdir="/tmp/w",
        artifacts_dir="/tmp/a",
        plan_root="/tmp",
        upstream={"dep": {"metrics": {"acc": 0.9}, "artifacts": ["a.png"]}},
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.__setitem__("new", 1),
        lambda p: p["optim"].__setitem__("lr", 1.0),
        lambda p: p["optim"].update(lr=1.0),
        lambda p: p["optim"].pop("lr"),
        lambda p: p["optim"].setdefault("x", 1),
        lambda p: p["optim"].clear(),
        lambda p: p["optim"].__delitem__("lr"),
        lambda p: p["optim"].__ior__({"x": 1}),
        lambda p: p["layers"].append(1),
        lambda p: p["layers"].extend([1]),
        lambda p: p["layers"].__setitem__(0, 1),
        lambda p: p["layers"].__iadd__([1]),
        lambda p: p["layers"].sort(),
        lambda p: p["optim"]["betas"].pop(),
    ],
    ids=[
        "top-set",
        "nested-set",
        "update",
        "pop",
        "setdefault",
        "clear",
        "del",
        "ior",
        "append",
        "extend",
        "list-set",
        "iadd",
        "sort",
        "deep-list-pop",
    ],
)
def test_every_change_is_refused_with_a_message_that_says_to_copy(change: Any) -> None:
    runner = _runner(copy.deepcopy(PLAN_PARAMS))
    with pytest.raises(
        TypeError, match=r"runner\.params is read-only.*copy\.deepcopy\(dict\(runner\.params\)\)"
    ):
        change(runner.params)
    assert runner.params == PLAN_PARAMS


def test_the_plans_objects_are_never_handed_out() -> None:
    plan = copy.deepcopy(PLAN_PARAMS)
    runner = _runner(plan)
    assert runner.params["optim"] is not plan["optim"]
    mine = copy.deepcopy(dict(runner.params))
    mine["optim"]["lr"] = 1.0
    mine["layers"].append(3)
    assert type(mine["optim"]) is dict and type(mine["layers"]) is list
    assert plan == PLAN_PARAMS and runner.params == PLAN_PARAMS


def test_still_plain_data_for_everything_that_reads_it() -> None:
    runner = _runner(copy.deepcopy(PLAN_PARAMS))
    p = runner.params
    assert isinstance(p, dict) and isinstance(p["optim"], dict) and isinstance(p["layers"], list)
    assert json.loads(json.dumps(p)) == PLAN_PARAMS
    assert {**p} == PLAN_PARAMS and dict(p) == PLAN_PARAMS
    assert p["layers"] + [1] == [64, 64, 1]
    back = pickle.loads(pickle.dumps(p))
    assert back == PLAN_PARAMS and type(back) is dict and type(back["optim"]) is dict
    back["optim"]["lr"] = 2.0  # a pickled copy (a spawned worker's) is plain


def test_variant_and_upstream_are_read_only_too() -> None:
    runner = _runner({})
    with pytest.raises(TypeError, match=r"runner\.variant is read-only"):
        runner.variant["lr"] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match=r"runner\.upstream is read-only"):
        runner.upstream["dep"]["metrics"]["acc"] = 1.0
    with pytest.raises(TypeError, match=r"runner\.upstream is read-only"):
        runner.upstream["dep"]["artifacts"].append("b.png")


def test_freeze_keeps_scalars_and_tuples() -> None:
    frozen = freeze({"t": (1, [2])}, "x")
    assert isinstance(frozen, FrozenDict)
    assert isinstance(frozen["t"], tuple) and isinstance(frozen["t"][1], FrozenList)
