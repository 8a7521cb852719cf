"""The verdict table end to end (SPEC "Verdicts, once and for all" and section 10): pivots,
values recorded in the plan, accepted decisions, the plan's own status, and --lf."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import Project

HANDLERS = """
import os

def m_main(runner):
    return {"metrics": {"recall": 0.6}}

def m_quant(runner):
    return {"metrics": {"coverage": 0.93}}

def d_next(runner):
    return {"metrics": {"x": 1.0}}

def r_never(runner):
    raise RuntimeError("r_never is not meant to run in these tests")
"""


def _props(xml: Path, classname_part: str) -> dict[str, str]:
    root = ET.parse(xml).getroot()
    case = next(
        c
        for c in root.iter("testcase")
        if c.get("name") == "assessment" and classname_part in (c.get("classname") or "")
    )
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


PIVOT_PLAN = """
project: {name: Floods, hypothesis: "h"}
experiments:
  e-extremes:
    phase: 1
    status: passed_with_pivot
    sub_experiments:
      m_main:
        success_criteria: {recall: {target: 0.8, acceptable: 0.7, failure: 0.5}}
    success_criteria:
      recall: {target: 0.8, acceptable: 0.7, failure: 0.5}
    pivot_quantile:
      name: "Quantile head"
      rationale: "predict the 95th percentile directly"
      sub_experiments: {m_quant: {}}
      success_criteria:
        coverage: {target: 0.95, acceptable: 0.9, failure: 0.8}
    pivot_other:
      sub_experiments: [m_other]
      success_criteria: {f1: ">= 0.9"}
  e-next:
    phase: 2
    sub_experiments: [d_next]
gates:
  g1: {name: "Gate 1", experiments: [e-extremes], unlocks: "Phase 2"}
"""


def test_a_met_pivot_gives_passed_with_pivot_and_opens_the_gate(project: Project) -> None:
    project.plan(PIVOT_PLAN)
    project.handlers("floods", HANDLERS + "\ndef m_other(runner):\n    return {'metrics': {'f1': 0.5}}\n")
    result = project.run("--experiment", "all", "--junitxml=r.xml")
    # m_main misses its own criterion (its item fails); the pivot is met, so the assessment
    # passes and the gate opens: e-next runs
    result.assert_outcomes(passed=5, failed=1)
    out = " ".join(result.stdout.str().split())
    assert (
        "verdict e-extremes: passed_with_pivot via pivot_quantile, proceed (completed; 0/1 criteria met, "
        "pivot 1/1; confidence high): passed with pivot pivot_quantile (Quantile head): 1/1 of its "
        "criteria met" in out
    )
    doc = project.results("e-extremes")
    assert (doc["verdict"], doc["opens_gates"], doc["pivot"], doc["recommendation"]) == (
        "passed_with_pivot",
        True,
        "pivot_quantile",
        "proceed",
    )
    assert doc["pivots"]["pivot_quantile"]["met"] is True and doc["pivots"]["pivot_other"]["met"] is False
    props = _props(project.path / "r.xml", "e-extremes")
    assert props["verdict.verdict"] == "passed_with_pivot" and props["verdict.pivot"] == "pivot_quantile"
    assert props["verdict.message"].startswith("passed with pivot pivot_quantile (Quantile head)")
    assert project.results("e-next")["verdict"] == "passed"
    findings = project.findings("e-extremes")
    assert "This experiment has 2 pivots; the verdict passes through `pivot_quantile`." in findings
    assert (
        "| Criterion | Original | Quantile head (`pivot_quantile`) | pivot_other (`pivot_other`) |"
        in findings
    )
    assert "| `recall` | 0.6 from m_main: ❌ miss | — | — |" in findings
    assert "| `coverage` | — | 0.93 from m_quant: ✅ acceptable | — |" in findings
    review = findings.split("### ⚠️ REQUIRES HUMAN REVIEW", 1)[1].split("###", 1)[0]
    assert (
        "- passed with pivot pivot_quantile (Quantile head): 1/1 of its criteria met; "
        "the original did not pass" in review
    )
    assert "#### `m_quant`: passed — pivot `pivot_quantile`" in findings
    # the plan's status agrees, so it is shown and not listed
    assert "The plan says: passed_with_pivot (line 6)." in findings and "the plan says" not in review

    # An experiment whose verdict opens gates never puts its items into the last-failed set:
    # m_main missed its own criterion, but re-running it would change nothing.
    again = project.run("--lf")
    again.stdout.fnmatch_lines(["*no previously failed tests*"])


def test_an_achieved_only_experiment_passes_as_recorded_and_opens_its_dependents(project: Project) -> None:
    project.plan(
        """
        project: {name: Floods, hypothesis: "h"}
        experiments:
          e-old:
            sub_experiments: [r_never]
            achieved: {mae_cm: 7.9, note: "from the 2025 runs"}
            success_criteria:
              mae_cm: {target: 6.0, acceptable: 9.0, failure: 12.0, direction: lower, confidence: 0.95}
          e-next:
            dependencies: [e-old]
            sub_experiments: [d_next]
        """
    )
    project.handlers("floods", HANDLERS)
    project.run("--experiment", "e-next").assert_outcomes(passed=2)  # not blocked: e-old is recorded
    # its assessment passes too, saying what it rests on; nothing of it ran
    result = project.run("research/research_plan.yaml::e-old::assessment", "--junitxml=r.xml")
    result.assert_outcomes(passed=1)
    props = _props(project.path / "r.xml", "e-old")
    assert (props["verdict.verdict"], props["verdict.recommendation"], props["verdict.confidence"]) == (
        "recorded",
        "proceed",
        "low",
    )
    assert (
        props["verdict.message"]
        == "recorded, not measured: 1 criterion is met only by values recorded in the plan (achieved)"
    )
    doc = project.results("e-old")
    judged = doc["criteria"]["mae_cm"]
    assert (judged["value"], judged["level"], judged["recorded"]) == (
        7.9,
        "acceptable",
        "research/research_plan.yaml:6",
    )
    findings = project.findings("e-old")
    assert (
        "| `mae_cm` | 7.9, recorded in the plan (line 6), not measured | 6 | 9 | 12 "
        "| 📝 acceptable (recorded, review) |" in findings
    )
    review = findings.split("### ⚠️ REQUIRES HUMAN REVIEW", 1)[1].split("###", 1)[0]
    assert "recorded, not measured: 1 criterion is met only by values recorded in the plan" in review
    assert "its 95% confidence is not applied to a recorded value" in review


def test_an_experiment_level_accepted_unblocks_its_dependents(project: Project) -> None:
    plan = """
        project: {name: Floods, hypothesis: "h"}
        experiments:
          e-main:
            sub_experiments: [m_main]
            success_criteria:
              recall: {target: 0.8, acceptable: 0.7, failure: 0.5}
          e-next:
            dependencies: [e-main]
            sub_experiments: [d_next]
        """
    project.plan(plan)
    project.handlers("floods", HANDLERS)
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    steps = project.findings("e-next").split("### Next steps", 1)[1]
    # the advice names the accepted that actually unblocks: on the experiment it depends on
    assert "record that decision on the experiment `e-main` in the plan" in steps
    assert "a gate's `accepted` would not help" in steps

    project.plan(
        plan.replace(
            "          e-main:\n",
            "          e-main:\n"
            '            accepted: {reason: "recall 0.6 is enough for a pilot",'
            ' by: ana, date: "2026-02-03"}\n',
        )
    )
    result = project.run("--experiment", "all", "--junitxml=r.xml")
    result.assert_outcomes(passed=4)  # e-main's assessment passes; e-next is no longer blocked
    props = _props(project.path / "r.xml", "e-main")
    assert props["verdict.verdict"] == "accepted"
    assert props["verdict.message"] == "accepted by ana on 2026-02-03: recall 0.6 is enough for a pilot"
    assert props["verdict.recommendation"] == "pivot"  # as measured
    review = project.findings("e-main").split("### ⚠️ REQUIRES HUMAN REVIEW", 1)[1]
    assert (
        "experiment accepted by ana on 2026-02-03: recall 0.6 is enough for a pilot (as measured:" in review
    )


def test_the_plans_status_is_shown_and_a_disagreement_listed_with_its_line(project: Project) -> None:
    project.plan(
        """
        project: {name: Floods, hypothesis: "h"}
        experiments:
          e-main:
            name: "Main"
            status: passed
            sub_experiments: [m_main]
            success_criteria:
              recall: {target: 0.8, acceptable: 0.7, failure: 0.5}
        """
    )
    project.handlers("floods", HANDLERS)
    project.run("--experiment", "all").assert_outcomes(passed=1, failed=1)
    findings = project.findings("e-main")
    assert "The plan says: passed (line 6)." in findings
    line = (
        "the plan says `status: passed` but the verdict is failed: update the status at "
        "research/research_plan.yaml:6, or record the team's decision with `accepted: {reason, by, date}`"
    )
    review = findings.split("### ⚠️ REQUIRES HUMAN REVIEW", 1)[1].split("###", 1)[0]
    assert f"- {line}" in review
    assert f"- `e-main`: {line}" in project.findings()


@pytest.mark.parametrize("accepted_on", ["sub", "pivot"])
def test_accepted_on_a_sub_experiment_or_a_pivot(project: Project, accepted_on: str) -> None:
    plan = PIVOT_PLAN.replace(
        '    pivot_other:\n      sub_experiments: [m_other]\n      success_criteria: {f1: ">= 0.9"}\n', ""
    )
    if accepted_on == "sub":
        # m_main counts as passed for the assessment; the original criterion decides then
        plan = plan.replace(
            "      m_main:\n", '      m_main:\n        accepted: {reason: "recall is noisy here", by: ana}\n'
        ).replace(
            "recall: {target: 0.8, acceptable: 0.7, failure: 0.5}\n    pivot", 'recall: ">= 0.5"\n    pivot'
        )
    else:
        plan = plan.replace(
            "      coverage: {target: 0.95, acceptable: 0.9, failure: 0.8}",
            '      coverage: {min: 0.99}\n      accepted: {reason: "0.93 is what a quantile head gets"}',
        )
    project.plan(plan)
    project.handlers("floods", HANDLERS)
    project.run("--experiment", "e-extremes").assert_outcomes(passed=2, failed=1)  # m_main's own item
    doc = project.results("e-extremes")
    assert doc["verdict"] == ("passed" if accepted_on == "sub" else "passed_with_pivot")
    assert doc["opens_gates"] is True
