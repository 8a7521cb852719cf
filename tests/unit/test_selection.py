"""``--experiment`` values against a plan (SPEC sections 5 and 10): ids, short ids, groups, retirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.model import Loc, Plan, Project
from pytest_mlexp.selection import Selection, SelectionError, in_group, resolve, retired_experiments
from tests import factories

LOC = Loc("research/research_plan.yaml", 1)


def exp(eid: str, subs: list[str], **fields: Any) -> Any:
    return factories.experiment(eid, [factories.sub(s, eid) for s in subs], loc=LOC, **fields)


def plan(*exps: Any) -> Plan:
    return Plan(Path("/r/research/research_plan.yaml"), Project("p", "", None, {}), tuple(exps), (), {}, {})


PLAN = plan(
    exp("p2-hybrid-encoder", ["e_p2_1", "e_p2_2"], replaces=("c1-vlm",)),
    exp("c1-vlm", ["c1_1"]),
    exp("c3-tokens", ["c3_1"], meta={"status": "deferred"}),
    exp("e3-pivot", ["e3_1", "e3_8a", "e3_8b", "e3_8c", "e3_80", "e3_8.x", "e3_8-y", "e3_8_z"]),
    exp("q9", ["q9_a"], retired=True),
)


def test_short_id_is_the_id_up_to_the_first_dash() -> None:
    assert resolve(PLAN, ["p2"]) == Selection(experiments={"p2-hybrid-encoder"})
    assert resolve(PLAN, ["c1"]) == Selection(experiments={"c1-vlm"})  # naming a retired one runs it


def test_a_short_id_two_experiments_share_is_an_error() -> None:
    twins = plan(exp("p2-a", ["a_1"]), exp("p2-b", ["b_1"]))
    with pytest.raises(SelectionError, match="p2 matches the short id of several experiments: p2-a, p2-b"):
        resolve(twins, ["p2"])


@pytest.mark.parametrize(
    ("sub_id", "member"),
    [
        ("e3_8a", True),
        ("e3_8abc", True),
        ("e3_8_z", True),
        ("e3_8.x", True),
        ("e3_8-y", True),
        ("e3_80", False),
        ("e3_8a1", False),
        ("e3_8", False),
        ("e3_1", False),
    ],
)
def test_group_membership(sub_id: str, member: bool) -> None:
    assert in_group("e3_8", sub_id) is member


def test_a_group_selects_its_sub_experiments_with_their_assessment() -> None:
    sel = resolve(PLAN, ["e3_8"])
    assert sel.subs == {"e3_8a", "e3_8b", "e3_8c", "e3_8.x", "e3_8-y", "e3_8_z"}
    assert sel.experiments == set() and sel.unmatched == []


def test_a_group_across_experiments_is_an_error() -> None:
    split = plan(exp("a", ["g_1a"]), exp("b", ["g_1b"]))
    with pytest.raises(
        SelectionError, match="g_1 matches a group of sub-experiments of several experiments: a, b"
    ):
        resolve(split, ["g_1"])


def test_all_leaves_out_retired_experiments_and_says_why() -> None:
    assert resolve(PLAN, ["all"]).experiments == {"p2-hybrid-encoder", "e3-pivot"}
    assert retired_experiments(PLAN) == {
        "c1-vlm": "replaced by p2-hybrid-encoder",
        "c3-tokens": "status: deferred",
        "q9": "retired",
    }
    assert resolve(PLAN, ["all", "c3-tokens"]).experiments == {"p2-hybrid-encoder", "e3-pivot", "c3-tokens"}


def test_values_that_match_nothing_are_unmatched() -> None:
    assert resolve(PLAN, ["p3", "e3_9"]).unmatched == ["p3", "e3_9"]
