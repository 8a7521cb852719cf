"""What --lf re-runs for a failed assessment (reruns.py, SPEC section 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.model import Loc, Plan, Project
from pytest_mlexp.reruns import criterion_suppliers, rerun_suppliers
from pytest_mlexp.verdict import experiment_verdict
from tests import factories

LOC = Loc("research/research_plan.yaml", 1)


def crit(metric: str, spec: Any) -> Any:
    return parse_criterion(metric, spec, loc=LOC, experiment_level=True)


def setup(entries: dict[str, Any], *criteria: Any) -> tuple[Any, Any, Any]:
    subs = [factories.sub(s, "c2") for s in ("a", "b", "c")]
    exp = factories.experiment("c2", subs, success_criteria=criteria, loc=LOC)
    plan = Plan(Path("/r/research/research_plan.yaml"), Project("p", "", None, {}), (exp,), (), {}, {})
    verdict = experiment_verdict(plan, exp, {"sub_experiments": entries})
    return exp, verdict, entries.get


def R(status: str = "passed", **metrics: Any) -> dict[str, Any]:
    return {"status": status, "metrics": metrics}


def test_a_measured_miss_is_rejudged_not_rerun() -> None:
    exp, verdict, entry_of = setup({"a": R(acc=0.5), "b": R(), "c": R()}, crit("acc", ">= 0.9"))
    assert not verdict.passed
    assert rerun_suppliers(exp, verdict, entry_of) == []


def test_an_unmeasured_criterion_reruns_who_reported_it_else_everyone() -> None:
    nan = {"a": R(), "b": R(acc=float("nan")), "c": R()}
    exp, verdict, entry_of = setup(nan, crit("acc", ">= 0.9"))
    assert rerun_suppliers(exp, verdict, entry_of) == ["b"]  # it reported a NaN
    exp, verdict, entry_of = setup({"a": R(), "b": R(), "c": R()}, crit("acc", ">= 0.9"))
    assert rerun_suppliers(exp, verdict, entry_of) == ["a", "b", "c"]  # nobody reported it


def test_from_names_the_supplier_and_an_errored_supplier_reruns() -> None:
    entries = {"a": R(acc=0.95), "b": R("error"), "c": R()}
    exp, verdict, entry_of = setup(entries, crit("acc", {"min": 0.9, "from": "b"}))
    assert criterion_suppliers(exp, exp.success_criteria[0], entry_of) == ["b"]
    assert rerun_suppliers(exp, verdict, entry_of) == ["b"]


def test_a_changed_supplier_reruns_when_its_criterion_missed() -> None:
    exp, verdict, entry_of = setup({"a": R(acc=0.5), "b": R(), "c": R()}, crit("acc", ">= 0.9"))
    assert rerun_suppliers(exp, verdict, entry_of, changed=lambda sub: sub == "a") == ["a"]
    assert rerun_suppliers(exp, verdict, entry_of, changed=lambda sub: sub == "c") == []


def test_nothing_reruns_for_a_passed_verdict() -> None:
    exp, verdict, entry_of = setup({"a": R(acc=0.95), "b": R(), "c": R()}, crit("acc", ">= 0.9"))
    assert verdict.passed and rerun_suppliers(exp, verdict, entry_of, changed=lambda s: True) == []
