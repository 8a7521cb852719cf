"""The one prerequisite graph (graph.py): links, order, components, dispatch's prerequisites,
and the cycle check that the plan loader reports."""

from __future__ import annotations

import textwrap

import pytest

from pytest_mlexp.graph import PrerequisiteGraph, graph_of
from pytest_mlexp.model import Gate, Loc, PlanError, Unlocks
from pytest_mlexp.plan import parse_plan_text
from tests.factories import experiment, sub


def _gate(gate_id: str, members: tuple[str, ...], unlocks: Unlocks, line: int = 9) -> Gate:
    return Gate(gate_id, gate_id, members, unlocks, None, {}, Loc("plan.yaml", line))


def test_links_from_dependencies_gates_and_sub_experiments() -> None:
    exps = [
        experiment("a", [sub("a1", "a")], phase=1),
        experiment("b", [sub("b1", "b", dependencies=("a1",))], phase=2),
        experiment("c", [sub("c1", "c", implicit_dependencies=("b1",))], dependencies=("a",), phase=2),
        experiment("d", [sub("d1", "d")], phase=3),
    ]
    g = PrerequisiteGraph(exps, [_gate("g1", ("b", "c"), Unlocks("phase", phase=3))])
    assert g.blocking_experiments("c") == ("a",)  # what can hold the experiment back
    assert g.blocking_experiments("d") == ("b", "c")  # the gate's members
    assert g.blocking_experiments("b") == ()  # a sub-level link holds back only that sub
    assert g.experiment_prerequisites("b") == ("a",)  # ... but orders the experiment
    assert g.experiment_prerequisites("c") == ("a", "b")
    assert g.sub_prerequisites("b1") == ("a1",) and g.sub_prerequisites("c1") == ("b1",)
    assert g.cycle() is None


def test_a_gate_blocks_even_where_a_sub_level_link_came_first() -> None:
    exps = [
        experiment("y", [sub("y1", "y")], phase=1),
        experiment("x", [sub("x1", "x", dependencies=("y1",))], phase=2),
    ]
    g = PrerequisiteGraph(exps, [_gate("g", ("y",), Unlocks("phase", phase=2))])
    assert g.blocking_experiments("x") == ("y",)
    assert g.experiment_links["x"]["y"].kind == "gate"


def test_order_is_topological_and_otherwise_plan_order() -> None:
    exps = [
        experiment("late", [sub("l1", "late", implicit_dependencies=("e1",))]),
        experiment("early", [sub("e2", "early", dependencies=("e1",)), sub("e1", "early")]),
        experiment("free", [sub("f1", "free")]),
    ]
    g = PrerequisiteGraph(exps, [])
    assert g.experiment_order() == ("early", "late", "free")
    assert g.sub_order("early") == ("e1", "e2")
    exp_rank, sub_rank = g.ranks()
    assert exp_rank == {"early": 0, "late": 1, "free": 2}
    assert sub_rank["e1"] < sub_rank["e2"]


def test_components_join_every_kind_of_link() -> None:
    exps = [
        experiment("a", [sub("a1", "a")]),
        experiment("b", [sub("b1", "b", implicit_dependencies=("a1",))]),  # only a comparison
        experiment("c", [sub("c1", "c")]),
        experiment("d", [sub("d1", "d")]),
    ]
    comps = PrerequisiteGraph(exps, [_gate("g", ("c",), Unlocks("ids", ids=("d",)))]).components()
    assert comps["a"] == comps["b"] and comps["c"] == comps["d"] and comps["a"] != comps["c"]


def test_a_cycle_through_a_comparison_is_named_with_its_links() -> None:
    exps = [
        experiment("a", [sub("a1", "a", implicit_dependencies=("b1",), loc=Loc("plan.yaml", 4))]),
        experiment("b", [sub("b1", "b", dependencies=("a1",), loc=Loc("plan.yaml", 8))]),
    ]
    cycle = PrerequisiteGraph(exps, []).cycle()
    assert cycle is not None and cycle.kind == "sub-experiments"
    assert cycle.path == ("a1", "b1", "a1") and cycle.line == 4
    assert cycle.fix == "remove one of these links: a1 compares with b1 (line 4); b1 depends on a1 (line 8)"


def test_the_graph_of_a_plan_is_built_once() -> None:
    plan = parse_plan_text("experiments:\n  a: {}\n", "plan.yaml")
    assert graph_of(plan) is graph_of(plan)


def _load(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan_text(textwrap.dedent(text), "research/research_plan.yaml")
    return info.value


def test_a_gate_that_unlocks_its_own_experiments_phase_is_a_collection_error() -> None:
    # Issue 15: otherwise the experiment waits for its own verdict and stays blocked for ever.
    err = _load(
        """\
        experiments:
          e1: {phase: 1}
          e2: {phase: 2}
        gates:
          g_one:
            experiments: [e1]
            unlocks: {phase: 1}
        """
    )
    assert err.loc is not None and err.loc.line == 5  # the gate's line
    assert "gate g_one unlocks e1, one of the experiments it waits for" in err.message
    assert "take e1 out of the gate" in err.fix


def test_a_gate_that_unlocks_a_member_by_id_is_a_collection_error() -> None:
    err = _load(
        """\
        experiments:
          e1: {}
        gates:
          g:
            experiments: [e1]
            unlocks: [e1]
        """
    )
    assert err.loc is not None and err.loc.line == 4 and "gate g unlocks e1" in err.message


def test_a_gate_that_unlocks_the_next_phase_is_fine() -> None:
    plan = parse_plan_text(
        textwrap.dedent(
            """\
            experiments:
              e1: {phase: 1}
              e2: {phase: 2}
            gates:
              g: {experiments: [e1], unlocks: {phase: 2}}
            """
        ),
        "research/research_plan.yaml",
    )
    assert graph_of(plan).experiment_order() == ("e1", "e2")
    assert graph_of(plan).blocking_experiments("e2") == ("e1",)


def test_a_dependency_on_a_replaced_experiment_waits_for_its_replacement() -> None:
    exps = [
        experiment("user", [sub("u1", "user")], dependencies=("old",)),
        experiment("old", [sub("o1", "old")]),
        experiment("new", [sub("n1", "new")], replaces=("old",)),
        experiment("newer", [sub("m1", "newer")], replaces=("new",), dependencies=("new",)),
    ]
    g = PrerequisiteGraph(exps, [])
    # old -> new -> newer: the end of the chain decides, and user runs after it.
    assert g.blocking_experiments("user") == ("newer",)
    assert "which newer replaces" in g.experiment_links["user"]["newer"].why
    # An experiment that depends on what it replaces waits for that one, never for itself.
    assert g.blocking_experiments("newer") == ("new",)
    assert g.experiment_order().index("newer") < g.experiment_order().index("user")
    assert g.cycle() is None


def test_replaces_naming_an_unknown_id_is_a_warning_not_an_error() -> None:
    plan = parse_plan_text(
        textwrap.dedent(
            """\
            experiments:
              p2-hybrid:
                replaces: [c1-vlm, c1-vml]
                sub_experiments: [p2_1]
              c1-vlm:
                sub_experiments: [c1_1]
            """
        ),
        "plan.yaml",
    )
    assert plan.replaced_by("c1-vlm") == "p2-hybrid"
    assert plan.warnings == (
        "plan.yaml:3: experiment 'p2-hybrid' replaces 'c1-vml', which is not in the plan "
        "(did you mean c1-vlm?); nothing is left out for it",
    )
