"""Experiment verdicts, sweep selection, gates and blocking (SPEC sections 3, 5 and 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.blocking import blockers, gate_status, sub_blockers
from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.model import (
    Accepted,
    Criterion,
    Experiment,
    Gate,
    Loc,
    Plan,
    Project,
    Select,
    SubExperiment,
    Unlocks,
    Verdict,
)
from pytest_mlexp.verdict import (
    experiment_verdict,
    judge_sub,
    select_point,
    sub_values,
    summarize_sweep,
)
from tests import factories

LOC = Loc("research/research_plan.yaml", 1)


def C(metric: str, raw: Any, *, exp: bool = False) -> Criterion:
    return parse_criterion(metric, raw, loc=None, experiment_level=exp)


def S(
    sid: str,
    *criteria: Criterion,
    exp: str = "x",
    sweep: dict[str, tuple[Any, ...]] | None = None,
    select: Select | None = None,
    deps: tuple[str, ...] = (),
    seeds: tuple[int, ...] = (0,),
) -> SubExperiment:
    return factories.sub(
        sid,
        exp,
        sweep=sweep,
        select=select,
        seeds=seeds,
        seeds_given=len(seeds) > 1,
        success_criteria=criteria,
        dependencies=deps,
        loc=LOC,
    )


def E(
    eid: str,
    subs: list[SubExperiment],
    *criteria: Criterion,
    deps: tuple[str, ...] = (),
    phase: int | None = None,
) -> Experiment:
    return factories.experiment(
        eid, subs, name=eid.upper(), phase=phase, success_criteria=criteria, dependencies=deps, loc=LOC
    )


def G(
    gid: str, members: tuple[str, ...], unlocks: Unlocks, name: str = "", accepted: Accepted | None = None
) -> Gate:
    return Gate(gid, name or gid, members, unlocks, accepted, {}, LOC)


def PL(*exps: Experiment, gates: tuple[Gate, ...] = ()) -> Plan:
    return Plan(Path("/r/research/research_plan.yaml"), Project("p", "h", None, {}), exps, gates, {}, {})


def R(status: str = "passed", **metrics: Any) -> dict[str, Any]:
    return {"status": status, "metrics": metrics}


def doc(**entries: Any) -> dict[str, Any]:
    return {"schema": 1, "sub_experiments": entries}


def verdict(exp: Experiment, d: dict[str, Any], **kw: Any) -> Verdict:
    return experiment_verdict(PL(exp), exp, d, **kw)


TIER = {"target": 0.9, "acceptable": 0.8, "failure": 0.6}


# --- sub_values / judge_sub -------------------------------------------------------------------


def test_sub_values() -> None:
    s = S("a")
    assert sub_values(s, R(acc=0.5), "acc") == [0.5]
    assert sub_values(s, R(acc=0.5), "loss") == [None]
    assert sub_values(s, None, "acc") == [None]
    seeded = {
        "status": "passed",
        "metrics": {"acc": 0.6, "n": 3},
        "per_seed": {0: {"acc": 0.5}, 1: {"acc": 0.7}},
    }
    assert sub_values(s, seeded, "acc") == [0.5, 0.7]
    assert sub_values(s, seeded, "n") == [3]  # only in the aggregate
    partial = {"status": "error", "metrics": {}, "per_seed": {0: {"acc": 0.5}, 1: {}}}
    assert sub_values(s, partial, "acc") == [0.5, None]


def test_judge_sub_rejudges_with_current_criteria() -> None:
    s = S("a", C("acc", ">= 0.8"), C("loss", "< 1"))
    j = judge_sub(s, R(acc=0.9))
    assert [(x.metric, x.passed, x.level) for x in j] == [("acc", True, "pass"), ("loss", False, "missing")]
    assert judge_sub(s, R(acc=0.1, loss=0.5), stub=True)[0].passed


# --- verdict: the happy path and sourcing -----------------------------------------------------


def test_completed_and_met() -> None:
    exp = E("x", [S("a", C("acc", ">= 0.5")), S("b")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.7), b=R(acc=0.85)))
    assert (v.status, v.success_criteria_met, v.confidence, v.recommendation, v.passed) == (
        "completed", True, "high", "proceed", True,
    )  # fmt: skip
    assert v.problems == () and v.review == ()
    (j,) = v.criteria
    assert (j.source, j.value, j.level) == ("b", 0.85, "acceptable")  # the last sub that reported it


def test_last_reporter_skips_subs_that_did_not_report() -> None:
    exp = E("x", [S("a"), S("b"), S("c")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.95), b=R(acc=0.7), c=R(loss=1.0)))
    assert v.criteria[0].source == "b"
    assert v.criteria[0].level == "miss"


def test_from_names_the_source() -> None:
    exp = E("x", [S("a"), S("b")], C("acc", {**TIER, "from": "a"}, exp=True))
    v = verdict(exp, doc(a=R(acc=0.95), b=R(acc=0.1)))
    assert (v.criteria[0].source, v.criteria[0].level) == ("a", "target")
    assert v.criteria[0].to_dict()["from"] == "a"


def test_from_a_sub_that_has_not_run() -> None:
    exp = E("x", [S("a"), S("b")], C("acc", {**TIER, "from": "a"}, exp=True))
    v = verdict(exp, doc(b=R(acc=0.95)))
    j = v.criteria[0]
    assert (j.level, j.source, j.reason) == ("unmeasured", "a", "a has not run")
    assert "criterion acc unmeasured: a has not run" in v.problems
    assert "a never ran" in v.problems


def test_from_a_sub_that_did_not_report_it() -> None:
    exp = E("x", [S("a")], C("acc", {**TIER, "from": "a"}, exp=True))
    v = verdict(exp, doc(a=R(loss=1)))
    assert v.criteria[0].reason == "not reported by a (reported: loss)"
    # and a's item is a wiring error (SPEC 5a): from names a metric the handler did not return
    assert v.subs[0].status == "error" and v.subs[0].wiring
    assert "did not report 'acc', needed by criterion 'acc' of experiment x (from: a)" in v.subs[0].detail


def test_unmeasured_criteria_lower_confidence() -> None:
    crits = [C("acc", TIER, exp=True), C("lpips", "< 0.3", exp=True)]
    exp = E("x", [S("a")], *crits)
    v = verdict(exp, doc(a=R(acc=0.95)))
    assert v.confidence == "medium"  # 1 of 2 measured: at least half
    assert "criterion lpips unmeasured: not reported by any sub-experiment (reported: acc)" in v.problems
    assert v.recommendation == "investigate"  # an unmeasured criterion is not a pivot
    assert not v.passed and not v.success_criteria_met
    exp3 = E("x", [S("a")], *crits, C("f1", ">= 0.5", exp=True))
    assert verdict(exp3, doc(a=R(acc=0.95))).confidence == "low"


def test_nan_metric_is_unmeasured_with_its_reason() -> None:
    exp = E("x", [S("a")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=float("nan"))))
    assert v.criteria[0].level == "missing" and v.criteria[0].source == "a"
    assert "criterion acc unmeasured: metric 'acc' is NaN" in v.problems


# --- verdict: statuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "status"),
    [
        ({"a": R(), "b": R("failed")}, "completed"),
        ({"a": R(), "b": R("error")}, "failed"),
        ({"a": R(), "b": R("infra_error")}, "failed"),
        ({"a": R()}, "partial"),
        ({"a": R(), "b": R("blocked")}, "partial"),
        ({"a": R("blocked"), "b": R("blocked")}, "blocked"),
        ({"a": R("blocked")}, "blocked"),
        ({}, "not_started"),
        ({"a": R("skipped")}, "not_started"),
        ({"a": R("error"), "b": R("blocked")}, "failed"),
    ],
)
def test_status(entries: dict[str, Any], status: str) -> None:
    exp = E("x", [S("a"), S("b")])
    assert verdict(exp, doc(**entries)).status == status


def test_no_sub_experiments() -> None:
    v = verdict(E("x", []), doc())
    assert (v.status, v.passed, v.verdict, v.recommendation) == ("not_started", False, "not_run", None)
    assert v.problems == ("x has no sub-experiments: nothing has run",)


def test_experiment_without_criteria_counts_subs_for_confidence() -> None:
    exp = E("x", [S("a"), S("b")])
    assert verdict(exp, doc(a=R(), b=R())).confidence == "high"
    assert verdict(exp, doc(a=R())).confidence == "medium"
    v = verdict(exp, doc())
    assert (v.confidence, v.verdict, v.recommendation, v.passed) == ("low", "not_run", None, False)
    assert v.problems == ("a never ran", "b never ran")
    v = verdict(exp, doc(a=R()))  # partly run: failed, and why investigate is spelled out
    assert (v.verdict, v.recommendation) == ("failed", "investigate")
    assert v.reasons == ("b never ran",)


# --- verdict: recommendation truth table ------------------------------------------------------


def test_error_means_investigate() -> None:
    exp = E("x", [S("a"), S("b")], C("acc", TIER, exp=True))
    err = {
        "status": "error",
        "metrics": {},
        "error": {"kind": "handler", "type": "RuntimeError", "message": "boom\nmore"},
    }
    v = verdict(exp, doc(a=err, b=R(acc=0.95)))
    assert (v.status, v.recommendation, v.passed) == ("failed", "investigate", False)
    assert "a errored: RuntimeError: boom" in v.problems
    infra = {"status": "infra_error", "error": {"kind": "timeout", "message": "ran past 60 s"}}
    v = verdict(exp, doc(a=infra, b=R(acc=0.95)))
    assert "a had an infrastructure error: timeout: ran past 60 s" in v.problems


def test_unmet_criterion_means_pivot() -> None:
    exp = E("x", [S("a")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.7)))
    assert (v.recommendation, v.success_criteria_met, v.passed, v.confidence) == (
        "pivot",
        False,
        False,
        "high",
    )
    assert v.problems == (
        "criterion acc not met: acc = 0.7 needs >= 0.8 (acceptable; target 0.9): miss (from a)",
    )


def test_failed_sub_means_pivot() -> None:
    exp = E("x", [S("a", C("accuracy", ">= 0.85")), S("b")], C("f1", ">= 0", exp=True))
    v = verdict(exp, doc(a=R("failed", accuracy=0.5), b=R(f1=0.5)))
    assert (v.recommendation, v.success_criteria_met, v.passed, v.status) == (
        "pivot",
        True,
        False,
        "completed",
    )
    assert v.problems == ("a failed: accuracy = 0.5 needs >= 0.85: fail",)


def test_stored_status_is_rejudged() -> None:
    exp = E("x", [S("a", C("accuracy", ">= 0.4"))])
    v = verdict(exp, doc(a=R("failed", accuracy=0.5)))  # the criterion was relaxed since
    assert v.passed and v.recommendation == "proceed"
    exp = E("x", [S("a", C("accuracy", ">= 0.9"))])
    assert not verdict(exp, doc(a=R("passed", accuracy=0.5))).passed


def test_borderline_means_investigate_but_passes() -> None:
    exp = E("x", [S("a")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.805)))
    assert (v.passed, v.success_criteria_met, v.recommendation, v.confidence) == (
        True,
        True,
        "investigate",
        "high",
    )
    assert len(v.review) == 1 and v.review[0].startswith("criterion acc borderline: acc = 0.805")


def test_sub_level_borderline_is_reviewed() -> None:
    exp = E("x", [S("a", C("acc", ">= 0.8"))])
    v = verdict(exp, doc(a=R(acc=0.801)))
    assert v.passed and v.recommendation == "investigate"
    assert v.review[0].startswith("a: acc borderline:")


def test_inconclusive_lowers_confidence_and_investigates() -> None:
    exp = E("x", [S("a", seeds=(0, 1, 2))], C("acc", {"min": 0.8, "confidence": 0.95}, exp=True))
    entry = {
        "status": "passed",
        "metrics": {"acc": 0.81},
        "per_seed": {0: {"acc": 0.7}, 1: {"acc": 0.83}, 2: {"acc": 0.9}},
    }
    v = verdict(exp, doc(a=entry))
    assert v.criteria[0].level == "inconclusive"
    assert (v.confidence, v.recommendation, v.passed, v.success_criteria_met) == (
        "medium",
        "investigate",
        False,
        False,
    )
    assert v.review[0].startswith("criterion acc inconclusive:")
    assert "seeds would settle it" in v.review[0]


def test_accepted_counts_as_met_and_is_reviewed() -> None:
    acc = {"reason": "good enough", "by": "lead", "date": "2026-02-03"}
    exp = E("x", [S("a")], C("acc", {**TIER, "accepted": acc}, exp=True))
    v = verdict(exp, doc(a=R(acc=0.5)))
    assert (v.passed, v.success_criteria_met, v.recommendation) == (True, True, "proceed")
    assert v.review == ("criterion acc accepted by lead on 2026-02-03: good enough",)


def test_partial_with_met_criteria() -> None:
    exp = E("x", [S("a"), S("b")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.95)))
    # the verdict is failed, so the recommendation is never proceed: it says why
    assert (v.status, v.passed, v.verdict, v.recommendation) == ("partial", False, "failed", "investigate")
    assert v.problems == ("b never ran",) and v.reasons == ("b never ran",)


def test_blocked_problem_names_the_reason() -> None:
    exp = E("x", [S("a")])
    v = verdict(exp, doc(a={"status": "blocked", "reason": "gate g1 not passed"}))
    assert v.problems == ("a is blocked: gate g1 not passed",)


# --- verdict: stub ----------------------------------------------------------------------------


def test_stub_does_not_enforce_thresholds() -> None:
    exp = E("x", [S("a", C("acc", ">= 0.99"))], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R(acc=0.1)), stub=True)
    assert (v.passed, v.success_criteria_met, v.confidence, v.recommendation, v.review) == (
        True, True, "low", "proceed", (),
    )  # fmt: skip


def test_stub_fails_on_wiring() -> None:
    exp = E("x", [S("a"), S("b")], C("acc", TIER, exp=True))
    v = verdict(exp, doc(a=R("error"), b=R(acc=0.1)), stub=True)
    assert (v.passed, v.recommendation) == (False, "investigate")
    assert v.problems == ("a errored",)
    # the metric a criterion needs is not reported although every sub ran
    v = verdict(exp, doc(a=R(), b=R(loss=1)), stub=True)
    assert v.problems == ("criterion acc unmeasured: not reported by any sub-experiment (reported: loss)",)
    # ... but a sub that was not part of the stub run is no wiring failure
    assert verdict(exp, doc(a=R()), stub=True).passed
    # a sub's own criterion metric missing is its wiring failure
    exp = E("x", [S("a", C("acc", ">= 0.99"))])
    (problem,) = verdict(exp, doc(a=R(loss=1)), stub=True).problems
    assert problem.startswith(
        "a has a wiring error: the handler did not report 'acc', needed by the criterion"
    )
    # a reported NaN is wired (tiny stub params can give NaN): thresholds are not enforced
    assert verdict(exp, doc(a=R(acc=float("nan"))), stub=True).passed


# --- sweeps -----------------------------------------------------------------------------------


def SW(*criteria: Criterion, select: Select | None = None) -> SubExperiment:
    return S("w", *criteria, sweep={"hidden": (16, 32, 64)}, select=select)


def pts(*values: Any, status: str = "passed", metric: str = "acc") -> dict[str, Any]:
    keys = ["hidden_16", "hidden_32", "hidden_64"]
    return {
        k: R(status, **({metric: v} if v is not None else {})) for k, v in zip(keys, values, strict=False)
    }


def test_select_by_direction() -> None:
    assert select_point(SW(C("acc", TIER)), pts(0.7, 0.9, 0.8)) == "hidden_32"
    assert select_point(SW(C("acc", {"target": 0.1, "acceptable": 0.2})), pts(0.7, 0.9, 0.3)) == "hidden_64"
    assert select_point(SW(C("acc", "> 0")), pts(1, 3, 2)) == "hidden_32"
    assert select_point(SW(C("acc", "<= 5")), pts(1, 3, 0.5)) == "hidden_64"
    assert select_point(SW(C("acc", "in [0, 10]")), pts(1, 4, 9)) == "hidden_32"
    assert select_point(SW(C("acc", "== 2")), pts(1, 2.5, 9)) == "hidden_32"
    assert select_point(SW(C("acc", "!= 2")), pts(1, 2.5, 9)) == "hidden_64"


def test_select_explicit_and_ties() -> None:
    sub = SW(C("acc", TIER), select=Select("loss", "min"))
    points = {
        "hidden_16": R(acc=0.9, loss=0.5),
        "hidden_32": R(acc=0.5, loss=0.1),
        "hidden_64": R(acc=0.5, loss=0.1),
    }
    assert select_point(sub, points) == "hidden_32"  # tie: first in plan order
    # plan order, not the mapping's order
    reordered = {"hidden_64": R(acc=0.9), "hidden_16": R(acc=0.9)}
    assert select_point(SW(C("acc", TIER)), reordered) == "hidden_16"


def test_select_skips_errors_and_non_numbers() -> None:
    points = pts(0.99, 0.5, 0.6)
    points["hidden_16"]["status"] = "error"
    points["hidden_64"]["metrics"]["acc"] = float("nan")
    assert select_point(SW(C("acc", TIER)), points) == "hidden_32"
    assert select_point(SW(C("acc", TIER)), pts(None, None, None)) is None
    assert select_point(SW(C("acc", TIER)), pts(1, 2, 3, status="infra_error")) is None
    assert select_point(SW(C("acc", TIER)), {}) is None


def test_select_uses_the_first_reported_criterion() -> None:
    sub = SW(C("f1", ">= 0"), C("acc", "<= 1"))
    assert select_point(sub, pts(0.3, 0.1, 0.2)) == "hidden_32"  # f1 never reported: acc, lower wins
    assert select_point(SW(), pts(0.3, 0.1, 0.2)) == "hidden_16"  # nothing to rank by: the first


def test_select_uses_the_seed_aggregate() -> None:
    sub = SW(C("acc", {"min": 0, "aggregate": "min"}))
    points = {
        "hidden_16": {
            "status": "passed",
            "metrics": {"acc": 0.6},
            "per_seed": {0: {"acc": 0.3}, 1: {"acc": 0.9}},
        },
        "hidden_32": {
            "status": "passed",
            "metrics": {"acc": 0.5},
            "per_seed": {0: {"acc": 0.5}, 1: {"acc": 0.5}},
        },
    }
    assert select_point(sub, points) == "hidden_32"


def test_summarize_sweep() -> None:
    sub = SW(C("acc", TIER))
    out = summarize_sweep(sub, pts(0.7, 0.95, 0.8))
    assert out["status"] == "passed" and out["selected"] == "hidden_32"
    assert out["metrics"] == {"acc": 0.95}
    assert out["criteria"]["acc"]["level"] == "target"
    assert out["error"] is None  # every summary key is written: an old error cannot linger
    assert summarize_sweep(sub, pts(0.7, 0.75, 0.65))["status"] == "failed"
    stub = summarize_sweep(sub, pts(0.7, 0.75, 0.65), stub=True)
    assert stub["status"] == "passed"


def test_summarize_sweep_with_errors() -> None:
    sub = SW(C("acc", TIER))
    points = pts(0.7, 0.95, 0.8)
    points["hidden_64"]["status"] = "error"
    out = summarize_sweep(sub, points)
    assert (out["status"], out["selected"]) == ("error", "hidden_32")
    assert out["error"] == {"kind": "sweep", "message": "1 of 3 points errored: hidden_64"}
    out = summarize_sweep(sub, pts(1, 2, 3, status="infra_error"))
    assert (out["status"], out["selected"], out["metrics"]) == ("infra_error", None, {})
    out = summarize_sweep(sub, pts(None, None, None))
    assert out["status"] == "error" and out["error"]["message"] == "no point of the sweep reported acc"
    assert summarize_sweep(sub, pts(1, 2, 3, status="blocked"))["status"] == "blocked"


def test_summarize_sweep_copies_seed_data() -> None:
    sub = SW()
    points = {
        "hidden_16": {
            "status": "passed",
            "metrics": {"a": 1},
            "per_seed": {0: {"a": 1}},
            "stats": {},
            "finding": "f",
        }
    }
    out = summarize_sweep(sub, points)
    assert (out["per_seed"], out["stats"], out["finding"]) == ({0: {"a": 1}}, {}, "f")


def test_experiment_reads_a_sweep_through_its_selected_point() -> None:
    sub = SW(C("acc", TIER))
    exp = E("x", [sub], C("acc", TIER, exp=True), C("loss", "< 1", exp=True))
    points = {
        "hidden_16": R(acc=0.7, loss=0.1),
        "hidden_32": R(acc=0.95, loss=2.0),
        "hidden_64": R(acc=0.8, loss=0.2),
    }
    entry = {"status": "passed", "selected": "hidden_16", "points": points}  # stale selection: recomputed
    v = verdict(exp, doc(w=entry))
    by = {j.metric: j for j in v.criteria}
    assert (by["acc"].value, by["acc"].source) == (0.95, "w")
    assert (by["loss"].value, by["loss"].passed) == (2.0, False)  # all metrics from the one point
    assert sub_values(sub, entry, "loss") == [2.0]


def test_a_point_error_fails_the_experiment() -> None:
    sub = SW(C("acc", TIER))
    points = pts(0.7, 0.95, 0.8)
    points["hidden_16"]["status"] = "error"
    v = verdict(E("x", [sub]), doc(w={"status": "error", "points": points}))
    assert (v.status, v.recommendation, v.passed) == ("failed", "investigate", False)
    assert v.problems == ("w errored: 1 of 3 points errored: hidden_16",)


# --- gates and blockers -----------------------------------------------------------------------


def _passed(eid: str) -> Verdict:
    return Verdict(eid, "completed", (), True, "high", "proceed", True, (), ())


def _failed(eid: str, problem: str) -> Verdict:
    return Verdict(eid, "completed", (), False, "high", "pivot", False, (problem,), ())


def gated_plan(accepted: Accepted | None = None) -> Plan:
    p2 = E("p2-hybrid-encoder", [S("e_p2_1", exp="p2-hybrid-encoder")], phase=1)
    c2 = E("c2-adapter", [S("e2_1", exp="c2-adapter")], deps=("p2-hybrid-encoder",), phase=2)
    c3 = E("c3", [S("e3_1", exp="c3")], phase=2)
    gate = G("gate_1", ("p2-hybrid-encoder",), Unlocks("phase", phase=2), "Gate 1: Reconstruction", accepted)
    return PL(p2, c2, c3, gates=(gate,))


def test_gate_status() -> None:
    plan = gated_plan()
    gate = plan.gate("gate_1")
    bad = {"p2-hybrid-encoder": _failed("p2-hybrid-encoder", "e_p2_1 failed: acc = 0.5 needs >= 0.85: fail")}
    assert gate_status(plan, gate, bad) == (
        False,
        "gate gate_1 (Gate 1: Reconstruction) not passed: "
        "p2-hybrid-encoder: e_p2_1 failed: acc = 0.5 needs >= 0.85: fail",
    )
    assert gate_status(plan, gate, {"p2-hybrid-encoder": _passed("p2-hybrid-encoder")}) == (
        True,
        "gate gate_1 (Gate 1: Reconstruction) passed",
    )
    assert gate_status(plan, gate, {}) == (
        False,
        "gate gate_1 (Gate 1: Reconstruction) not passed: p2-hybrid-encoder: has no results",
    )
    plan = gated_plan(Accepted("moving on", "lead", "2026-02-03"))
    ok, reason = gate_status(plan, plan.gate("gate_1"), bad)
    assert ok and reason == "gate gate_1 (Gate 1: Reconstruction) accepted by lead on 2026-02-03: moving on"


def test_blockers_name_each_unpassed_experiment_once() -> None:
    plan = gated_plan()
    bad = {"p2-hybrid-encoder": _failed("p2-hybrid-encoder", "e_p2_2 never ran")}
    # c2 waits for p2 twice (its dependency, and the gate of its phase): one cause, said once.
    assert blockers(plan, "c2-adapter", bad) == [
        "gate gate_1 (Gate 1: Reconstruction) and dependency p2-hybrid-encoder not passed: "
        "p2-hybrid-encoder: e_p2_2 never ran",
    ]
    assert blockers(plan, "c3", bad) == [
        "gate gate_1 (Gate 1: Reconstruction) not passed: p2-hybrid-encoder: e_p2_2 never ran"
    ]
    assert blockers(plan, "p2-hybrid-encoder", bad) == []
    good = {"p2-hybrid-encoder": _passed("p2-hybrid-encoder")}
    assert blockers(plan, "c2-adapter", good) == []
    assert blockers(plan, "c2-adapter", {}) == [
        "gate gate_1 (Gate 1: Reconstruction) and dependency p2-hybrid-encoder not passed: "
        "p2-hybrid-encoder: has no results",
    ]


def test_blockers_stay_short() -> None:
    plan = gated_plan()
    long = "; ".join(f"e_p2_{i} failed: acc = 0.{i} needs >= 0.85: fail" for i in range(40))
    (line,) = blockers(plan, "c2-adapter", {"p2-hybrid-encoder": _failed("p2-hybrid-encoder", long)})
    assert len(line) < 300 and line.endswith(" …")
    assert "e_p2_0 failed: acc = 0.0 needs >= 0.85: fail" in line  # cut between clauses, not inside one


def test_blockers_from_real_verdicts() -> None:
    plan = gated_plan()
    p2 = plan.experiment("p2-hybrid-encoder")
    v = experiment_verdict(plan, p2, doc())
    assert blockers(plan, "c2-adapter", {"p2-hybrid-encoder": v})[0] == (
        "gate gate_1 (Gate 1: Reconstruction) and dependency p2-hybrid-encoder not passed: "
        "p2-hybrid-encoder: e_p2_1 never ran"
    )


def retired_plan() -> Plan:
    old = E("c1-vlm", [S("c1_1", exp="c1-vlm")])
    new = factories.experiment("p2-hybrid", [S("p2_1", exp="p2-hybrid")], replaces=("c1-vlm",), loc=LOC)
    deferred = factories.experiment(
        "c4-later", [S("c4_1", exp="c4-later")], meta={"status": "Deferred"}, loc=LOC
    )
    user = E("e3", [S("e3_1", exp="e3")], deps=("c1-vlm",))
    late = E("e5", [S("e5_1", exp="e5")], deps=("c4-later",))
    return PL(old, new, deferred, user, late)


def test_a_dependency_on_a_replaced_experiment_follows_its_replacement() -> None:
    plan = retired_plan()
    assert plan.decider("c1-vlm") == "p2-hybrid" and plan.decider("e3") == "e3"
    # c1-vlm never passed (it never ran): its replacement decides.
    assert blockers(plan, "e3", {"p2-hybrid": _passed("p2-hybrid")}) == []
    assert blockers(plan, "e3", {"p2-hybrid": _failed("p2-hybrid", "p2_1 failed")}) == [
        "dependency c1-vlm (replaced by p2-hybrid) not passed: p2-hybrid: p2_1 failed"
    ]
    assert blockers(plan, "e3", {"c1-vlm": _passed("c1-vlm")}) == [
        "dependency c1-vlm (replaced by p2-hybrid) not passed: p2-hybrid: has no results"
    ]


def test_a_dependency_on_a_retired_experiment_says_to_accept_it() -> None:
    plan = retired_plan()
    assert plan.retirement("c4-later") == "status: Deferred"
    assert plan.retirement("c1-vlm") == "replaced by p2-hybrid"
    assert plan.retirement("e3") is None
    assert blockers(plan, "e5", {}) == [
        "dependency c4-later is retired (status: Deferred): add `accepted` to c4-later"
    ]
    # A retired experiment whose verdict passes (it ran, or the team accepted it) opens it.
    assert blockers(plan, "e5", {"c4-later": _passed("c4-later")}) == []


def test_retirement_by_flag_and_by_status_only_exactly() -> None:
    exps = [
        factories.experiment(eid, [S(f"{eid}_1", exp=eid)], loc=LOC, **fields)
        for eid, fields in [
            ("a", {"retired": True}),
            ("b", {"meta": {"status": "RETIRED"}}),
            ("c", {"meta": {"status": "deferred "}}),
            ("d", {"meta": {"status": "deferred_to_q3"}}),
            ("e", {"meta": {"status": "passed"}}),
        ]
    ]
    plan = PL(*exps)
    assert [plan.retirement(e.id) for e in exps] == [
        "retired",
        "status: RETIRED",
        "status: deferred",
        None,
        None,
    ]


def test_sub_blockers() -> None:
    sub = S("eval", deps=("train", "prep", "other", "gone", "err", "infra"))
    entries = {
        "train": R("failed"),
        "prep": R(),
        "other": R("blocked"),
        "err": R("error"),
        "infra": R("infra_error"),
    }
    assert sub_blockers(PL(), sub, entries) == [
        "depends on train, which failed",
        "depends on other, which is blocked",
        "depends on gone, which has not run",
        "depends on err, which errored",
        "depends on infra, which had an infrastructure error",
    ]
    assert sub_blockers(PL(), S("eval", deps=("prep",)), entries) == []


# --- a fresh result judged as the item reports it, and as stored ----------------------------------


@pytest.mark.parametrize(
    ("criteria", "entry"),
    [
        ((), R(acc=0.5)),  # no criteria: passed
        ((C("acc", ">= 0.5"), C("loss", "< 1")), R(acc=0.7, loss=0.5)),  # all met
        ((C("acc", ">= 0.9"), C("loss", "< 1")), R(acc=0.7, loss=0.5)),  # one not met: failed
        ((C("acc", ">= 0.5"),), R(loss=0.5)),  # its metric not reported: a wiring error
        ((C("acc", ">= 0.5"),), R("error", acc=0.7)),  # stored as a wiring error, wired now
    ],
)
@pytest.mark.parametrize("stub", [False, True])
def test_judge_result_is_the_stored_judgement(
    criteria: tuple[Criterion, ...], entry: Any, stub: bool
) -> None:
    # build_entry reports what judge_result says; every later report judges the stored entry
    # (judge_stored): the same judgements, the same status, the same wiring message.
    from pytest_mlexp.subjudge import judge_result, judge_stored

    s = S("a", *criteria)
    plan = PL(E("x", [s]))
    entry = dict(entry)
    if entry["status"] == "error":
        entry["error"] = {"kind": "wiring", "type": "MissingMetric", "message": "", "traceback": ""}
    judgements, why = judge_result(plan, s, entry, stub=stub)
    state = judge_stored(plan, s, entry, stub=stub)
    assert judgements == state.judgements
    assert (why is not None) == state.wiring and (why or "") == state.detail
    status = "error" if why is not None else ("passed" if all(j.passed for j in judgements) else "failed")
    assert status == state.status


def test_review_reads_outdated_and_imported_entries_only() -> None:
    # Entries without outdated/imported/per_seed are looked at once (verdict._NOTED); the others
    # still get their review lines, in plan order.
    exp = E("x", [S("a"), S("b"), S("c"), S("d")])
    entries = doc(
        a=R(acc=1),
        b={**R(acc=1), "outdated": "experiments/h.py changed"},
        c={**R(acc=1), "imported": {"executed_by": "modal", "started_at": "2026-01-01"}},
        d={**R(acc=1), "imported": {}, "outdated": "deps changed"},
    )
    review = verdict(exp, entries).review
    assert [line for line in review if "outdated" in line] == [
        "b: outdated (experiments/h.py changed); re-run it to refresh the result",
        "d: outdated (deps changed); re-run it to refresh the result",
    ]
    assert [line for line in review if "imported" in line] == [
        "2 result(s) imported from the previous runner (modal, 2026-01-01), not measured under "
        "pytest-mlexp: c, d; re-run them to measure them here"
    ]
