"""Gates and dependencies however the plan is run: order, skips with reasons, --lf (issue 3)."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import Project

PLAN = """
project: {name: Gated, hypothesis: "h"}
experiments:
  e-a:
    phase: 1
    sub_experiments:
      ea_1:
        params: {acc: 0.5}
        success_criteria: {acc: ">= 0.85"}
  e-b:
    phase: 2
    sub_experiments: [eb_1]
  e-c:
    phase: 3
    dependencies: [e-b]
    sub_experiments: [ec_1]
gates:
  g1:
    name: "Gate 1"
    experiments: [e-a]
    unlocks: "Phase 2 (the rest)"
"""

HANDLERS = """
import os
def ea_1(runner):
    return {"metrics": {"acc": float(os.environ.get("ACC", runner.params["acc"]))}}
def eb_1(runner):
    return {"metrics": {"x": 1.0}}
def ec_1(runner):
    return {"metrics": {"y": 1.0}}
"""


def _setup(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)


def test_gate_blocks_later_phase_with_reason_and_records_blocked(project: Project) -> None:
    _setup(project)
    result = project.run("--experiment", "all", "-rs")
    result.assert_outcomes(failed=2, skipped=4)
    result.stdout.fnmatch_lines(
        [
            "*Completed: 0 | Failed: 1 | Errors: 0 (infra 0) | Blocked: 2*",
            "SKIPPED * research/research_plan.yaml:*: gate g1 (Gate 1) not passed: e-a: "
            "*acc = 0.5 needs >= 0.85*",
        ]
    )
    assert project.results("e-b")["sub_experiments"]["eb_1"]["status"] == "blocked"
    assert project.results("e-b")["status"] == "blocked"
    assert "blocked" in project.findings("e-b").lower()
    assert "g1" in project.findings()


def test_all_blocked_session_fails_and_names_blocker(project: Project) -> None:
    _setup(project)
    project.run("--experiment", "e-a").assert_outcomes(failed=2)
    result = project.run("--experiment", "e-b")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*every selected sub-experiment was blocked*gate g1*"])


def test_an_experiment_skipped_by_a_mark_blocks_its_dependents_without_failing_the_session(
    project: Project,
) -> None:
    # e-b skipped as asked, e-c waits for it: nothing ran, but not every selected
    # sub-experiment was *blocked* (SPEC: exit 1 only then), so pytest's all-skipped exit 0.
    project.plan(PLAN.replace("    phase: 2\n", "    phase: 2\n    marks: [\"skip(reason='later')\"]\n"))
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "e-b", "--experiment", "e-c", "-rs")
    result.assert_outcomes(skipped=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*nothing ran: 1 sub-experiment item(s) were skipped (a mark or a conftest)"
            " and the other 1 blocked*e-b*"
        ]
    )
    assert "every selected sub-experiment was blocked" not in result.stdout.str()


def test_prerequisites_judged_from_stored_results(project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _setup(project)
    monkeypatch.setenv("ACC", "0.9")
    project.run("--experiment", "e-a").assert_outcomes(passed=2)
    # e-a is not part of this session: its stored results open the gate
    project.run("--experiment", "e-b").assert_outcomes(passed=2)


def test_lf_reruns_failed_and_gate_skipped_items(project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _setup(project)
    project.run("--experiment", "all").assert_outcomes(failed=2, skipped=4)
    monkeypatch.setenv("ACC", "0.9")
    result = project.run("--lf", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*e-a::ea_1 PASSED*", "*e-b::eb_1 PASSED*", "*e-c::assessment PASSED*"])
    assert project.results("e-c")["status"] == "completed"
    overview = project.findings()
    assert "blocked" not in overview.split("### Experiments")[1].split("###")[0]
    # nothing left to re-run
    result = project.run("--lf")
    result.stdout.fnmatch_lines(["*no previously failed tests*"])


def test_dependency_order_survives_failed_first(project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _setup(project)
    project.run("--experiment", "all").assert_outcomes(failed=2, skipped=4)
    monkeypatch.setenv("ACC", "0.9")
    # --ff would put e-a's failures first anyway; -p randomly would shuffle: order is restored
    result = project.run("--experiment", "all", "--ff", "-v")
    lines = [line for line in result.stdout.lines if "PASSED" in line or "FAILED" in line]
    names = [line.split("::")[1] for line in lines if "::" in line]
    assert names == ["e-a", "e-a", "e-b", "e-b", "e-c", "e-c"], lines


def test_stub_reports_gates_without_enforcing(project: Project) -> None:
    _setup(project)
    result = project.run("--experiment", "all", "--stub")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*gate g1*not enforced under --stub*"])


def test_sub_dependency_reads_upstream(project: Project) -> None:
    project.plan(
        """
        project: {name: Up, hypothesis: "h"}
        experiments:
          train:
            sub_experiments:
              t_fit: {}
              t_eval: {dependencies: [t_fit], success_criteria: {acc: ">= 0.5"}}
        """
    )
    project.handlers(
        "train",
        textwrap.dedent(
            """
            import pathlib
            def t_fit(runner):
                path = runner.results.save_artifact("w.txt", "0.75")
                return {"metrics": {"loss": 0.1}}
            def t_eval(runner):
                up = runner.upstream["t_fit"]
                acc = float(pathlib.Path(up["artifacts"][0]).read_text())
                return {"metrics": {"acc": acc, "upstream_loss": up["metrics"]["loss"]}}
            """
        ),
    )
    project.run("--experiment", "train").assert_outcomes(passed=3)
    entry = project.results("train")["sub_experiments"]["t_eval"]
    assert entry["metrics"] == {"acc": 0.75, "upstream_loss": 0.1}


def test_dependency_order_survives_random_order_plugin(project: Project) -> None:
    _setup(project)
    for seed in ("1", "2", "3"):
        result = project.pytester.runpytest(
            "-p",
            "randomly",
            "-p",
            "no:cacheprovider",
            f"--randomly-seed={seed}",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "--experiment",
            "all",
            "--stub",
            "-v",
        )
        lines = [line for line in result.stdout.lines if "PASSED" in line]
        names = [line.split("::")[1] for line in lines if "::" in line]
        assert names == ["e-a", "e-a", "e-b", "e-b", "e-c", "e-c"], lines


def test_stepwise_resumes_at_the_failed_item_even_under_random_order(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project)
    args = ("-p", "randomly", "--randomly-seed=7", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    first = project.pytester.runpytest(*args, "--experiment", "e-a", "--sw")
    first.assert_outcomes(failed=1)  # ea_1 fails, stepwise stops there
    monkeypatch.setenv("ACC", "0.9")
    again = project.pytester.runpytest(*args, "--randomly-seed=3", "--experiment", "e-a", "--sw", "-v")
    # stepwise cuts the list by position: it must see the plan's order, not the shuffled one
    # (seed 3 shuffles the assessment first: without the early ordering only ea_1 would run)
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*e-a::ea_1 PASSED*", "*e-a::assessment PASSED*"])
