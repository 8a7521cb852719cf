"""Reports a researcher can trust (issue 14): every status, level and sentence is judged again
from the current plan and the stored measurements; a mistake reads as a mistake.

Each test is one bullet of the issue, end to end through pytest, reading back what the user
reads: results.yaml, both FINDINGS files, the terminal summary, JUnit.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import Project

PLAN = """
project: {name: Wine, hypothesis: "h"}
experiments:
  e1-trees:
    phase: 1
    sub_experiments:
      e1_rf:
        success_criteria:
          accuracy: {target: 0.97, acceptable: 0.93, failure: 0.85}
      e1_gb: {}
    success_criteria:
      accuracy: {target: 0.97, acceptable: 0.93, failure: 0.85, from: e1_rf}
  e2-after:
    phase: 2
    sub_experiments: [e2_x]
gates:
  g1: {name: "Gate 1", experiments: [e1-trees], unlocks: "Phase 2"}
"""

# Every call of a handler is counted in CALLS: re-judging must never call one.
HANDLERS = """
import os
from pathlib import Path

def _count(runner):
    with Path(os.environ["CALLS"]).open("a") as fh:
        fh.write(runner.sub_experiment_id + "\\n")

def e1_rf(runner):
    _count(runner)
    return {"finding": "RF reaches 95.1%", "metrics": {"accuracy": float(os.environ.get("ACC", "0.951"))}}

def e1_gb(runner):
    _count(runner)
    return {"metrics": {"loss": 0.2}}

def e2_x(runner):
    _count(runner)
    return {"metrics": {"x": 1.0}}
"""


@pytest.fixture
def calls(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = project.path / "calls.txt"
    path.write_text("")
    monkeypatch.setenv("CALLS", str(path))
    project.plan(PLAN)
    project.handlers("wine", HANDLERS)
    return path


def _calls(path: Path) -> list[str]:
    return path.read_text().split()


def test_editing_a_criterion_rejudges_every_output_without_running_anything(
    project: Project, calls: Path
) -> None:
    project.run("--experiment", "e1-trees").assert_outcomes(passed=3)
    assert project.results("e1-trees")["sub_experiments"]["e1_rf"]["status"] == "passed"
    ran = _calls(calls)
    assert ran == ["e1_rf", "e1_gb"]

    # The team raises the bar above what was measured: 0.951 no longer clears 0.96.
    project.plan(PLAN.replace("acceptable: 0.93", "acceptable: 0.96"))
    result = project.run("research/research_plan.yaml::e1-trees::assessment", "--junitxml=r.xml")
    result.assert_outcomes(failed=1)
    assert _calls(calls) == ran  # nothing ran: the stored measurement was judged again

    # results.yaml: the sub-experiment's status, level and rule are today's
    doc = project.results("e1-trees")
    rf = doc["sub_experiments"]["e1_rf"]
    assert rf["status"] == "failed"
    assert rf["metrics"] == {"accuracy": 0.951}  # the measurement itself is never touched
    assert (rf["criteria"]["accuracy"]["rule"], rf["criteria"]["accuracy"]["level"]) == (
        ">= 0.96 (target 0.97)",
        "miss",
    )
    assert (doc["verdict"], doc["opens_gates"], doc["recommendation"]) == ("failed", False, "pivot")

    # FINDINGS: the sub-experiment's line and sentence agree with the new threshold
    findings = project.findings("e1-trees")
    assert "#### `e1_rf`: failed" in findings
    assert "❌ miss: Accuracy of 0.951 is below the 0.96 acceptable threshold" in findings
    assert "✅" not in findings.split("#### `e1_rf`", 1)[1].split("####", 1)[0]
    assert "**Verdict:** failed · **Recommendation:** pivot" in findings

    # the terminal: an assessment-only run shows what it judged, not an empty heading
    result.stdout.fnmatch_lines(
        [
            "e1-trees  (assessment only: stored results judged by the current plan)",
            "  e1_rf * failed * accuracy=0.951 (>= 0.96 (target 0.97): miss)*",
            "  e1_gb * passed *",
            "Completed: 0 | Failed: 0 | Errors: 0 (infra 0) | Blocked: 0 (no sub-experiment ran: "
            "1 assessment(s) judged stored results)",
            "verdict e1-trees: failed, pivot (completed; 0/1 criteria met; confidence high)",
        ]
    )
    # JUnit: the assessment carries the verdict
    props = _properties(project.path / "r.xml", "assessment")
    assert props["verdict.verdict"] == "failed" and props["verdict.opens_gates"] == "False"

    # and back: the old bar passes again, still without running anything
    project.plan(PLAN)
    project.run("research/research_plan.yaml::e1-trees::assessment").assert_outcomes(passed=1)
    assert project.results("e1-trees")["sub_experiments"]["e1_rf"]["status"] == "passed"
    assert _calls(calls) == ran


def _properties(xml_path: Path, name: str) -> dict[str, str]:
    root = ET.parse(xml_path).getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == name)
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def test_a_sub_level_metric_typo_is_a_wiring_error_with_did_you_mean(project: Project, calls: Path) -> None:
    # The criterion says "acc"; the handler reports "accuracy".
    project.plan(
        PLAN.replace(
            "      e1_rf:\n        success_criteria:\n          accuracy:",
            "      e1_rf:\n        success_criteria:\n          acc:",
        )
    )
    result = project.run("--experiment", "e1-trees")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "e1_rf: error (wiring): MissingMetric: the handler did not report 'acc', needed by the criterion "
            "'acc' at research/research_plan.yaml:9; did you mean 'accuracy'? (it reported: accuracy)",
            "*Completed: 1 | Failed: 0 | Errors: 1 (infra 0) | Blocked: 0*",
        ]
    )
    assert "verdict e1-trees: failed, investigate" in result.stdout.str()  # an error, not science
    entry = project.results("e1-trees")["sub_experiments"]["e1_rf"]
    assert entry["status"] == "error" and entry["error"]["kind"] == "wiring"


def test_an_unreported_experiment_criterion_is_unmeasured_and_says_why(project: Project, calls: Path) -> None:
    # An experiment-level criterion on "acc" without from: nobody reports it.  SPEC 5a: the
    # verdict is failed with investigate, the reason has a did-you-mean, and no item errors.
    project.plan(
        PLAN.replace(
            "      accuracy: {target: 0.97, acceptable: 0.93, failure: 0.85, from: e1_rf}",
            "      acc: {target: 0.97, acceptable: 0.93, failure: 0.85}",
        )
    )
    result = project.run("--experiment", "e1-trees", "-rA")
    result.assert_outcomes(passed=2, failed=1)  # the sub-experiments pass; the assessment fails
    out = result.stdout.str()
    assert "Errors: 0" in out
    reason = "not reported by any sub-experiment; did you mean 'accuracy'? (reported: accuracy, loss)"
    assert (
        "verdict e1-trees: failed, investigate (completed; 0/1 criteria met; confidence low): "
        f"criterion acc unmeasured: {reason}" in " ".join(out.split())
    )
    doc = project.results("e1-trees")
    assert doc["criteria"]["acc"]["level"] == "unmeasured"
    assert doc["recommendation"] == "investigate"
    assert f"criterion acc unmeasured: {reason}" in doc["recommendation_reasons"]
    findings = project.findings("e1-trees")
    assert "Why investigate:" in findings and f"criterion acc unmeasured: {reason}" in findings


def test_a_select_typo_errors_every_point_instead_of_passing(project: Project, calls: Path) -> None:
    project.plan(
        PLAN.replace(
            "      e1_gb: {}",
            "      e1_gb:\n        sweep: {depth: [2, 4]}\n        select: {metric: val_los, mode: min}",
        )
    )
    result = project.run("--experiment", "e1_gb")
    result.stdout.fnmatch_lines(
        [
            "*e1_gb[[]depth_2[]]: error (wiring): MissingMetric: the handler did not report "
            "'val_los', needed by select at research/research_plan.yaml:12*",
            "*Completed: 0 | Failed: 0 | Errors: 2 (infra 0)*",
        ]
    )


def test_a_blocked_experiment_says_blocked_with_its_last_verdict_as_context(
    project: Project, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.run("--experiment", "all").assert_outcomes(passed=5)
    # e1 now fails: e2's stored result says "passed", but it is blocked now
    monkeypatch.setenv("ACC", "0.5")
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=2, skipped=2)
    today = re.search(
        r"finished_at: \"(\d{4}-\d\d-\d\d)", (project.experiment_dir("e2-after") / "results.yaml").read_text()
    )
    assert today is not None
    lines = " ".join(result.stdout.str().split())
    assert (
        "verdict e2-after: blocked (gate g1 (Gate 1) not passed: e1-trees: e1_rf failed: accuracy = 0.5 "
        f"needs >= 0.93 (acceptable; target 0.97): failure); last verdict: passed ({today.group(1)})" in lines
    )
    assert "verdict e2-after: passed" not in lines
    findings = project.findings("e2-after")
    assert f"**Verdict:** blocked; last verdict: passed ({today.group(1)})" in findings


def test_naming_a_plan_file_collects_that_file_only(project: Project, calls: Path) -> None:
    alt = project.path / "alt"
    alt.mkdir()
    other = "project: {name: Alt, hypothesis: h}\nexperiments:\n  a1:\n    sub_experiments: [a1_x]\n"
    (alt / "research_plan.yaml").write_text(other)
    project.handlers("alt", "def a1_x(runner):\n    return {'metrics': {'m': 1.0}}\n")
    result = project.run("alt/research_plan.yaml", "-v")
    result.assert_outcomes(passed=2)  # a1_x and its assessment: the default plan is not collected
    assert "e1-trees" not in result.stdout.str()
    # a plan under another name is a plan when named: a top-level experiments: key says so
    (alt / "my_plan.yaml").write_text(other.replace("a1", "b1"))
    project.handlers("alt_b", "def b1_x(runner):\n    return {'metrics': {'m': 1.0}}\n")
    result = project.run("alt/my_plan.yaml", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["alt/my_plan.yaml::b1::b1_x PASSED*"])
    assert (alt / "experiments" / "b1" / "results.yaml").is_file()
    # .yml is YAML too
    (alt / "other.yml").write_text(other.replace("a1", "c1"))
    project.handlers("alt_c", "def c1_x(runner):\n    return {'metrics': {'m': 1.0}}\n")
    project.run("alt/other.yml").assert_outcomes(passed=2)
    # a YAML file that is not a plan stays out of it
    (alt / "config.yaml").write_text("lr: 0.1\n")
    assert "config.yaml::" not in project.run("alt/config.yaml", "--co").stdout.str()


def test_stale_results_are_shown_with_their_reason_not_hidden(project: Project, calls: Path) -> None:
    plan = PLAN.replace("      e1_gb: {}", "      e1_gb: {params: {depth: 2}}")
    project.plan(plan)
    project.run("--experiment", "e1-trees").assert_outcomes(passed=3)
    project.plan(plan.replace("depth: 2", "depth: 3"))
    result = project.run("--experiment", "e1_rf")
    result.assert_outcomes(passed=1, failed=1)  # the assessment: e1_gb's result no longer counts
    findings = project.findings("e1-trees")
    section = findings.split("#### `e1_gb`", 1)[1].split("####", 1)[0]
    assert section.startswith(": stale")
    assert "it counts as never run" in section and "| `loss` | 0.2 | — |" in section
    assert "No result recorded yet" not in section
    assert "e1_gb never ran under the current plan (its stored result is stale" in findings


def test_stubs_follow_spec_5a(project: Project, calls: Path) -> None:
    # A reported NaN passes the wiring check (tiny stub params can give NaN) ...
    project.handlers("wine", HANDLERS.replace('float(os.environ.get("ACC", "0.951"))', 'float("nan")'))
    result = project.run("--experiment", "all", "--stub")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "verdict e1-trees: wiring ok (completed) [[]stub: thresholds not enforced[]]",
            "gate g1 (Gate 1): not enforced under --stub; wiring ok",
        ]
    )
    # ... a missing metric does not, and the stub assessment fails with it
    project.handlers("wine", HANDLERS.replace('"accuracy": float', '"accurcy": float'))
    result = project.run("--experiment", "e1-trees", "--stub")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "e1-trees: wiring check failed in e1_rf",
            "gate g1 (Gate 1): not enforced under --stub; wiring broken: e1-trees: e1_rf",
        ]
    )
    # a gate whose experiments are not in this run says so
    result = project.run("--experiment", "e2-after", "--stub")
    result.stdout.fnmatch_lines(["gate g1 (Gate 1): not enforced under --stub; not in this run"])


def test_multi_seed_findings_are_labelled_and_upstream_carries_seeds(project: Project) -> None:
    project.plan(
        """
        project: {name: Seeds, hypothesis: "h"}
        experiments:
          e1:
            sub_experiments:
              s_train: {seeds: 3}
              s_eval: {dependencies: [s_train]}
        """
    )
    project.handlers(
        "seeds",
        """
        def s_train(runner):
            return {"finding": f"reaches {90 + runner.seed}%", "metrics": {"acc": 0.9 + runner.seed / 100}}

        def s_eval(runner):
            up = runner.upstream["s_train"]
            per_seed = [up["per_seed"][seed]["acc"] for seed in sorted(up["per_seed"])]
            return {"metrics": {"n": up["stats"]["acc"]["n"], "first": per_seed[0], "last": per_seed[-1]}}
        """,
    )
    project.run("--experiment", "e1").assert_outcomes(passed=3)
    subs = project.results("e1")["sub_experiments"]
    # seed 0's words beside the mean of 3 seeds: labelled, never passed off as the mean's
    assert subs["s_train"]["finding"] == "seed 0 (of 3 seeds): reaches 90%"
    assert subs["s_eval"]["metrics"] == {"n": 3.0, "first": 0.9, "last": 0.92}


def test_review_is_listed_once_std_is_labelled_and_investigate_says_why(
    project: Project, calls: Path
) -> None:
    # 0.951 is within the borderline margin of 0.95, at sub level and at experiment level (the
    # same value, from e1_rf): one review line, not two
    plan = PLAN.replace("acceptable: 0.93", "acceptable: 0.95").replace(
        "      e1_rf:\n", "      e1_rf:\n        seeds: 3\n"
    )
    project.plan(plan)
    result = project.run("--experiment", "e1-trees")
    result.assert_outcomes(passed=3)
    out = " ".join(result.stdout.str().split())
    assert (
        "verdict e1-trees: passed, investigate (completed; 1/1 criteria met; confidence high): "
        "criterion accuracy borderline (accuracy = 0.951 (mean of 3 seeds" in out
    )
    doc = project.results("e1-trees")
    assert doc["recommendation"] == "investigate"
    assert [r.split(" (")[0] for r in doc["recommendation_reasons"]] == ["criterion accuracy borderline"]
    findings = project.findings("e1-trees")
    review = findings.split("### ⚠️ REQUIRES HUMAN REVIEW", 1)[1].split("###", 1)[0]
    assert [line for line in review.splitlines() if line.startswith("- ")] == [
        line for line in review.splitlines() if line.startswith("- criterion accuracy borderline")
    ]
    assert len([line for line in review.splitlines() if line.startswith("- ")]) == 1
    assert "Why investigate:" in findings
    assert "(std 0, n=3)" in findings and "±" not in findings


def test_long_reasons_wrap_in_the_summary_instead_of_being_cut(
    project: Project, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_name = "A gate whose name alone is longer than any terminal line " * 3
    project.plan(PLAN.replace('name: "Gate 1"', f'name: "{long_name.strip()}"'))
    monkeypatch.setenv("ACC", "0.5")
    result = project.run("--experiment", "all")
    out = " ".join(result.stdout.str().split())
    # the whole reason is there, in the sub-experiment's row and in the verdict line
    assert (
        f"e2_x blocked gate g1 ({long_name.strip()}) not passed: e1-trees: e1_rf failed: "
        "accuracy = 0.5 needs >= 0.93 (acceptable; target 0.97): failure" in out
    )
    assert all(
        len(line) <= 100
        for line in result.stdout.lines
        if line.startswith(("  e2_x", "verdict e2-after", "    ", "      "))
    )


def test_the_selected_point_is_marked_in_the_summary_and_junit(project: Project, calls: Path) -> None:
    project.plan(
        PLAN.replace(
            "      e1_gb: {}",
            "      e1_gb:\n        sweep: {depth: [2, 4, 8]}\n        select: {metric: loss, mode: min}",
        )
    )
    project.handlers(
        "wine", HANDLERS.replace('{"loss": 0.2}', '{"loss": abs(runner.params["depth"] - 4) / 10}')
    )
    result = project.run("--experiment", "e1-trees", "--junitxml=r.xml")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["  e1_gb[[]depth_4[]] * passed * loss=0 *[[]selected[]]"])
    assert "depth_2] * [selected]" not in result.stdout.str()
    props = _properties(project.path / "r.xml", "assessment")
    assert props["selected.e1_gb"] == "e1_gb[depth_4]"


def test_the_project_overview_shows_key_numbers_and_why_each_unmet_experiment_fails(
    project: Project, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACC", "0.9")
    project.run("--experiment", "all")
    overview = project.findings()
    row = next(line for line in overview.splitlines() if line.startswith("| [`e1-trees`]"))
    assert "❌ failed" in row and "accuracy 0.9 (miss)" in row and "pivot" in row
    assert "### Why the others do not pass yet" in overview
    assert (
        "- `e1-trees` (failed): e1_rf failed: accuracy = 0.9 needs >= 0.93 (acceptable; target 0.97): miss"
        in overview
    )
    assert "- `e2-after` (not_run, blocked): e2_x is blocked: gate g1 (Gate 1) not passed" in overview
    # The gates table's row names the gate once: its status cell says only why it is not passed
    gate_row = next(line for line in overview.splitlines() if line.startswith("| Gate 1 (`g1`)"))
    assert "| ❌ not passed: e1-trees: e1_rf failed: " in gate_row and gate_row.count("not passed") == 1


def test_a_comparison_is_rejudged_when_its_other_side_ran_again(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.plan(
        """
        project: {name: Cmp, hypothesis: "h"}
        experiments:
          e1:
            sub_experiments:
              c_base: {}
              c_new:
                success_criteria: {acc: "> c_base:acc"}
        """
    )
    project.handlers(
        "cmp",
        """
        import os
        def c_base(runner):
            return {"metrics": {"acc": float(os.environ.get("BASE", "0.8"))}}
        def c_new(runner):
            return {"metrics": {"acc": 0.9}}
        """,
    )
    project.run("--experiment", "e1").assert_outcomes(passed=3)
    assert "#### `c_new`: passed" in project.findings("e1")
    # only the baseline runs again, and now beats c_new: c_new's stored result is judged again
    monkeypatch.setenv("BASE", "0.95")
    project.run("--experiment", "c_base").assert_outcomes(passed=1, failed=1)
    findings = project.findings("e1")
    section = findings.split("#### `c_new`", 1)[1].split("####", 1)[0]
    assert section.startswith(": failed")
    assert "does not beat c_base's 0.95" in section
    assert project.results("e1")["sub_experiments"]["c_new"]["status"] == "failed"


def test_a_sweep_lists_its_new_points_instead_of_saying_not_run(project: Project, calls: Path) -> None:
    plan = PLAN.replace("      e1_gb: {}", "      e1_gb: {sweep: {depth: [2, 4]}}")
    project.plan(plan)
    project.run("--experiment", "e1-trees").assert_outcomes(passed=4)
    project.plan(plan.replace("depth: [2, 4]", "depth: [2, 4, 8]"))
    project.run("--experiment", "e1_rf")  # e1-trees is written again; depth_8 never ran
    section = project.findings("e1-trees").split("#### `e1_gb`", 1)[1].split("####", 1)[0]
    assert section.startswith(": passed")  # judged on the points that ran, not "not run"
    assert "Sweep (3 point(s), 1 not run yet):" in section
    assert "| **depth_2** (selected) | passed | 0.2 |" in section
    assert "| depth_4 | passed | 0.2 |" in section
    assert "| depth_8 | not run | — |" in section
