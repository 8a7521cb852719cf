"""The verdict table (SPEC "Verdicts, once and for all"): each row, and the precedence between
them, as pure functions of the plan and the stored results."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.blocking import sub_blockers
from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.model import (
    OPENING,
    VERDICTS,
    Accepted,
    Achieved,
    Criterion,
    Experiment,
    Loc,
    Pivot,
    Plan,
    PlanStatus,
    Project,
    SubExperiment,
    Verdict,
)
from pytest_mlexp.verdict import experiment_verdict, status_disagreement
from pytest_mlexp.verdictwords import blocked_line, verdict_line
from tests import factories

LOC = Loc("research/research_plan.yaml", 7)
TIER = {"target": 0.9, "acceptable": 0.8, "failure": 0.6}


def C(metric: str, raw: Any, *, exp: bool = True, achieved: float | None = None) -> Criterion:
    c = parse_criterion(metric, raw, loc=LOC, experiment_level=exp)
    if achieved is not None:
        c = dataclasses.replace(c, achieved=Achieved(achieved, LOC, "criterion"))
    return c


def S(sid: str, *criteria: Criterion, pivot: str | None = None, **kw: Any) -> SubExperiment:
    return factories.sub(sid, "x", success_criteria=tuple(c for c in criteria), pivot=pivot, **kw)


def E(subs: list[SubExperiment], *criteria: Criterion, **kw: Any) -> Experiment:
    return factories.experiment("x", subs, success_criteria=criteria, **kw)


def P(key: str, subs: tuple[str, ...], *criteria: Criterion, accepted: Accepted | None = None) -> Pivot:
    return Pivot(key, key, "", subs, tuple(criteria), {}, accepted, LOC)


def R(status: str = "passed", **metrics: Any) -> dict[str, Any]:
    return {"status": status, "metrics": metrics, "finished_at": "2026-11-29T10:00:00Z"}


def V(exp: Experiment, **entries: Any) -> Verdict:
    plan = Plan(Path("/r/research/research_plan.yaml"), Project("p", "h", None, {}), (exp,), (), {}, {})
    return experiment_verdict(plan, exp, {"sub_experiments": entries})


ACCEPTED = Accepted("good enough for the pilot", "ana", "2026-02-03")


def test_the_table_in_precedence_order() -> None:
    assert VERDICTS == ("passed", "passed_with_pivot", "accepted", "recorded", "failed", "not_run")
    assert {"passed", "passed_with_pivot", "accepted", "recorded"} == OPENING


def test_passed_every_sub_passed_every_criterion_met_by_measured_values() -> None:
    v = V(E([S("a")], C("acc", TIER)), a=R(acc=0.95))
    assert (v.verdict, v.passed, v.opens_gates, v.recommendation) == ("passed", True, True, "proceed")
    assert v.message == "" and v.review == ()


def test_failed_anything_else_that_ran_and_never_proceed() -> None:
    v = V(E([S("a")], C("acc", TIER)), a=R(acc=0.5))
    assert (v.verdict, v.passed, v.recommendation) == ("failed", False, "pivot")
    v = V(E([S("a")], C("acc", TIER)), a={"status": "error", "error": {"type": "E", "message": "x"}})
    assert (v.verdict, v.recommendation) == ("failed", "investigate")
    assert v.reasons[0] == "a errored: E: x"


def test_not_run_nothing_measured_nothing_recorded() -> None:
    exp = E([S("a"), S("b")], C("acc", TIER))
    v = V(exp)
    assert (v.verdict, v.passed, v.recommendation, v.confidence) == ("not_run", False, None, "low")
    blocked = {"status": "blocked", "blocked_reason": "gate g1 not passed"}
    assert V(exp, a=blocked, b=blocked).verdict == "not_run"  # a placeholder measures nothing


def test_passed_with_pivot_when_the_original_is_not_met_and_one_pivot_is() -> None:
    subs = [S("a"), S("q", pivot="p_q"), S("r", pivot="p_r")]
    exp = E(
        subs,
        C("recall", TIER),
        pivots=(P("p_r", ("r",), C("f1", ">= 0.9")), P("p_q", ("q",), C("coverage", {"min": 0.9}))),
    )
    v = V(exp, a=R(recall=0.5), q=R(coverage=0.93), r=R(f1=0.5))
    assert (v.verdict, v.pivot, v.passed, v.recommendation) == ("passed_with_pivot", "p_q", True, "proceed")
    assert [pv.met for pv in v.pivots] == [False, True]
    assert v.message == "passed with pivot p_q: 1/1 of its criteria met"
    assert v.review[0].startswith(
        "passed with pivot p_q: 1/1 of its criteria met; the original did not pass:"
    )
    # the original's criteria read only the main list: q's coverage and r's f1 never reach it
    assert [j.source for j in v.criteria] == ["a"]
    # a pivot's criteria read only its own sub-experiments
    assert V(exp, a=R(recall=0.5), r=R(coverage=0.99)).verdict == "failed"


def test_a_pivot_without_criteria_is_met_only_when_accepted() -> None:
    exp = E([S("a"), S("q", pivot="p")], C("recall", TIER), pivots=(P("p", ("q",)),))
    assert V(exp, a=R(recall=0.5), q=R()).verdict == "failed"
    accepted = dataclasses.replace(exp, pivots=(P("p", ("q",), accepted=ACCEPTED),))
    assert V(accepted, a=R(recall=0.5)).verdict == "passed_with_pivot"


def test_accepted_on_the_experiment() -> None:
    exp = E([S("a")], C("acc", TIER), accepted=ACCEPTED)
    v = V(exp, a=R(acc=0.5))
    assert (v.verdict, v.passed, v.recommendation) == ("accepted", True, "pivot")  # as measured
    assert v.message == "accepted by ana on 2026-02-03: good enough for the pilot"
    assert v.review[0].startswith(
        "experiment accepted by ana on 2026-02-03: good enough for the pilot (as measured:"
    )
    # nothing ran yet: still a human decision that opens
    assert V(exp).verdict == "accepted"


def test_recorded_when_every_criterion_is_met_and_one_only_through_achieved() -> None:
    achieved = {"mae": Achieved(7.9, LOC, "experiment")}
    exp = E([S("a")], C("mae", {"max": 9.0}), achieved=achieved)
    v = V(exp)  # a never ran: no measured result, so it does not count as "never ran" here
    assert (v.verdict, v.passed, v.recommendation, v.confidence) == ("recorded", True, "proceed", "low")
    (j,) = v.criteria
    assert (j.value, j.recorded, j.level) == (7.9, achieved["mae"], "pass")
    assert j.message == "mae = 7.9 (recorded in the plan (line 7), not measured) needs <= 9: pass"
    assert (
        v.message
        == "recorded, not measured: 1 criterion is met only by values recorded in the plan (achieved)"
    )
    # measured values always win over recorded ones
    assert V(exp, a=R(mae=12.0)).verdict == "failed"
    assert V(exp, a=R(mae=5.0)).verdict == "passed"
    # recorded but not met: failed, not not_run
    assert (
        V(dataclasses.replace(exp, achieved={"mae": Achieved(10.0, LOC, "experiment")})).verdict == "failed"
    )


def test_achieved_innermost_wins_and_non_numbers_are_notes() -> None:
    exp_level = {"mae": Achieved(20.0, LOC, "experiment")}
    sub_level = {"mae": Achieved(8.0, Loc("plan", 9), "sub-experiment a")}
    exp = E([S("a", achieved=sub_level)], C("mae", {"max": 9.0}), achieved=exp_level)
    assert V(exp).criteria[0].recorded == sub_level["mae"]
    exp = E([S("a", achieved=sub_level)], C("mae", {"max": 9.0}, achieved=1.0), achieved=exp_level)
    assert V(exp).criteria[0].value == 1.0  # the criterion's own achieved


def test_recorded_values_supply_sub_level_criteria_of_a_sub_that_never_ran() -> None:
    sub = S("a", C("acc", ">= 0.9", exp=False), achieved={"acc": Achieved(0.95, LOC, "sub-experiment a")})
    v = V(E([sub]))
    assert v.verdict == "recorded" and v.subs[0].recorded_only
    unmet = S("a", C("acc", ">= 0.9", exp=False), C("f1", ">= 0.5", exp=False), achieved=dict(sub.achieved))
    assert V(E([unmet])).verdict == "failed"  # f1 is neither measured nor recorded


def test_precedence_passed_over_pivot_over_accepted_over_recorded() -> None:
    achieved = {"acc": Achieved(0.95, LOC, "experiment")}
    pivot = P("p", ("q",), C("cov", {"min": 0.9}))
    exp = E(
        [S("a"), S("q", pivot="p")], C("acc", TIER), accepted=ACCEPTED, achieved=achieved, pivots=(pivot,)
    )
    assert V(exp, a=R(acc=0.95), q=R(cov=0.95)).verdict == "passed"
    assert V(exp, a=R(acc=0.5), q=R(cov=0.95)).verdict == "passed_with_pivot"
    assert V(exp, a=R(acc=0.5), q=R(cov=0.5)).verdict == "accepted"
    no_decision = dataclasses.replace(exp, accepted=None)
    assert V(no_decision, q=R(cov=0.5)).verdict == "recorded"  # a not run: the recorded 0.95 stands


def test_accepted_on_a_sub_experiment_counts_as_passed_for_the_assessment_and_dependents() -> None:
    a = S("a", C("acc", ">= 0.9", exp=False), accepted=ACCEPTED)
    b = S("b", dependencies=("a",))
    v = V(E([a, b]), a=R(acc=0.5), b=R())
    assert (v.verdict, v.passed) == ("passed", True)
    assert any(line.startswith("a accepted by ana on 2026-02-03") for line in v.review)
    assert sub_blockers(_plan(E([a, b])), b, {"a": v.subs[0]}) == []  # a blocks nothing


def _plan(exp: Experiment) -> Plan:
    return Plan(Path("/r/research/research_plan.yaml"), Project("p", "h", None, {}), (exp,), (), {}, {})


def test_the_plans_status_against_the_verdict() -> None:
    status = PlanStatus("passed", Loc("research/research_plan.yaml", 14))
    line = status_disagreement(status, "failed", False)
    assert line is not None and "research/research_plan.yaml:14" in line and "`status: passed`" in line
    assert status_disagreement(status, "recorded", True) is None  # both open
    assert status_disagreement(PlanStatus("failed", LOC), "passed", True) is not None
    assert status_disagreement(PlanStatus("not_started", LOC), "failed", False) is not None
    assert status_disagreement(PlanStatus("completed", LOC), "not_run", False) is not None
    assert status_disagreement(PlanStatus("Completed", LOC), "failed", False) is None
    assert status_disagreement(PlanStatus("pivoted", LOC), "passed", True) is None  # not compared
    exp = E([S("a")], C("acc", TIER), plan_status=status)
    v = V(exp, a=R(acc=0.5))
    assert v.plan_disagrees == line and line in v.review


@pytest.mark.parametrize(
    ("verdict", "line"),
    [
        ("passed", "passed, proceed (completed; 1/1 criteria met; confidence high)"),
        ("failed", "failed, pivot (completed; 0/1 criteria met; confidence high)"),
    ],
)
def test_verdict_lines(verdict: str, line: str) -> None:
    v = V(E([S("a")], C("acc", TIER)), a=R(acc=0.95 if verdict == "passed" else 0.5))
    assert verdict_line(v) == line
    assert (
        blocked_line(v, ["gate g1 not passed"])
        == f"blocked (gate g1 not passed); last verdict: {verdict} (2026-11-29)"
    )
    assert blocked_line(V(E([S("a")])), ["gate g1 not passed"]).endswith(
        "no verdict yet (nothing of it has run)"
    )


def test_an_outdated_result_gives_way_to_a_recorded_value() -> None:
    # SPEC 10: outdated entries (code changed since they ran) do not count as measured where the
    # plan records a value; without one they still count (SPEC 11)
    achieved = {"mae": Achieved(7.9, LOC, "experiment")}
    exp = E([S("a")], C("mae", {"max": 9.0}), achieved=achieved)
    stale_code = {**R(mae=12.0), "outdated": "handler changed"}
    assert V(exp, a=stale_code).criteria[0].recorded == achieved["mae"]
    assert V(E([S("a")], C("mae", {"max": 9.0})), a=stale_code).criteria[0].value == 12.0
    sub = S("a", C("acc", ">= 0.9", exp=False), achieved={"acc": Achieved(0.95, LOC, "sub-experiment a")})
    v = V(E([sub]), a={**R(acc=0.5), "outdated": "handler changed"})
    assert v.subs[0].judgements[0].recorded is not None and v.subs[0].status == "passed"
