"""Criteria that compare two measurements, end to end (SPEC section 3a): the sub-experiment a
criterion names runs first, under xdist and the process executor too, and blocks only when it
has no result."""

from __future__ import annotations

import pytest

from tests.conftest import Project

# e-b is listed first, and its sub-experiment compares with one of e-a, listed last: only the
# implicit dependency puts a_lin first (otherwise b_mlp runs first and is blocked).
PLAN = """
project: {name: Cmp, hypothesis: "h"}
experiments:
  e-b:
    sub_experiments:
      b_mlp:
        seeds: 3
        success_criteria:
          accuracy: {rule: "> a_lin:accuracy", confidence: 0.95}
          gain: ">= :base"
    success_criteria:
      accuracy: {rule: "> a_lin:accuracy", from: b_mlp}
  e-x:
    sub_experiments: [x_1]
  e-a:
    sub_experiments:
      a_lin:
        seeds: 3
        success_criteria: {accuracy: ">= 0.5"}
"""

HANDLERS = """
import os
import time
from pathlib import Path

def _mark(runner, what):
    line = f"{runner.sub_experiment_id} {what} {runner.seed} {os.environ.get('PYTEST_XDIST_WORKER', '-')}\\n"
    with Path(os.environ["MLEXP_TEST_LOG"]).open("a") as fh:
        fh.write(line)

def _b_mlp_started():
    return any(line.startswith("b_mlp start") for line in Path(os.environ["MLEXP_TEST_LOG"]).open())

def a_lin(runner):
    _mark(runner, "start")
    # Under dispatch ahead, give b_mlp the chance to start too early: wait (bounded) for the
    # event that must not happen.  Submitted correctly, it never starts while a_lin runs.
    deadline = time.monotonic() + float(os.environ.get("A_LIN_WAITS_FOR_B", "0"))
    while time.monotonic() < deadline and not _b_mlp_started():
        time.sleep(0.02)
    if os.environ.get("A_LIN_RAISES"):
        raise RuntimeError("no baseline today")
    accuracy = float(os.environ.get("A_LIN_ACC", "0.9")) + 0.01 * runner.seed
    _mark(runner, "end")
    return {"metrics": {os.environ.get("A_LIN_NAME", "accuracy"): accuracy}}

def b_mlp(runner):
    _mark(runner, "start")
    return {"metrics": {"accuracy": 0.95 + 0.011 * runner.seed, "gain": 0.3, "base": 0.1}}

def x_1(runner):
    _mark(runner, "start")
    return {"metrics": {"m": 1.0}}
"""


def _setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    monkeypatch.setenv("MLEXP_TEST_LOG", str(project.path / "calls.log"))


def _log(project: Project) -> list[list[str]]:
    return [line.split() for line in (project.path / "calls.log").read_text().splitlines()]


def _check_compared_after(project: Project) -> list[list[str]]:
    calls = _log(project)
    a_ends = [i for i, c in enumerate(calls) if c[:2] == ["a_lin", "end"]]
    b_starts = [i for i, c in enumerate(calls) if c[:2] == ["b_mlp", "start"]]
    assert len(a_ends) == 3 and len(b_starts) == 3
    assert max(a_ends) < min(b_starts)  # every seed of a_lin finished before b_mlp started
    subs = project.results("e-b")["sub_experiments"]
    assert subs["b_mlp"]["status"] == "passed"
    compared = subs["b_mlp"]["criteria"]["accuracy"]["compared"]
    assert (compared["other"], compared["pairing"], compared["n"]) == ("a_lin:accuracy", "paired", 3)
    assert compared["difference"] == pytest.approx(0.05 + 0.001)  # mean of 0.05, 0.051, 0.052
    findings = project.findings("e-b")
    assert "Accuracy 0.961 beats a_lin's 0.91 by 0.051, 95% CI [" in findings
    assert "Gain 0.3 matches or beats its base of 0.1 by 0.2" in findings
    return calls


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("-n", "2"), id="xdist"),
        pytest.param(("--mlexp-executor", "process", "--mlexp-concurrency", "8"), id="process"),
    ],
)
def test_the_compared_sub_experiment_runs_first(
    project: Project, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    if args[0] == "-n":
        pytest.importorskip("xdist")
    _setup(project, monkeypatch)
    # A first run stores a baseline, so b_mlp is not blocked by a missing result: only the
    # implicit dependency keeps it from starting before (and being judged against) the old one.
    monkeypatch.setenv("A_LIN_ACC", "0.2")
    run = ("-p", "no:randomly", "--experiment", "all", *args)
    project.pytester.runpytest_subprocess(*run).assert_outcomes(passed=4, failed=2)
    (project.path / "calls.log").unlink()
    monkeypatch.setenv("A_LIN_ACC", "0.9")
    if "process" in args:
        monkeypatch.setenv("A_LIN_WAITS_FOR_B", "2")
    result = project.pytester.runpytest_subprocess(*run)
    result.assert_outcomes(passed=6)
    calls = _check_compared_after(project)
    if args[0] == "-n":  # the comparison keeps both on one worker: its result is there to read
        workers = {c[3] for c in calls if c[0] in ("a_lin", "b_mlp")}
        assert len(workers) == 1
    verdict = project.results("e-b")
    assert verdict["criteria"]["accuracy"]["passed"] is True
    assert verdict["criteria"]["accuracy"]["from"] == "b_mlp"


def test_the_other_side_blocks_only_when_it_has_no_result(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch)
    monkeypatch.setenv("A_LIN_RAISES", "1")
    result = project.run("--experiment", "all", "-rs")
    result.assert_outcomes(passed=2, failed=3, skipped=1)  # x_1 and e-x; a_lin, two assessments
    result.stdout.fnmatch_lines(["*SKIPPED*compares with a_lin, which errored*"])
    assert project.results("e-b")["sub_experiments"]["b_mlp"]["status"] == "blocked"

    # a_lin misses its own criterion (0.3 < 0.5): b_mlp still runs, and is judged against it
    monkeypatch.delenv("A_LIN_RAISES")
    monkeypatch.setenv("A_LIN_ACC", "0.3")
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=4, failed=2)  # a_lin and e-a's assessment
    b_mlp = project.results("e-b")["sub_experiments"]["b_mlp"]
    assert b_mlp["status"] == "passed"
    assert b_mlp["criteria"]["accuracy"]["compared"]["other_value"] == pytest.approx(0.31)


def test_an_unknown_sub_experiment_is_a_collection_error(project: Project) -> None:
    project.plan(PLAN.replace('"> a_lin:accuracy", confidence', '"> a_lni:accuracy", confidence'))
    result = project.run("--experiment", "all", "--co")
    assert result.ret == 2
    result.stdout.fnmatch_lines(
        [
            "research/research_plan.yaml:9: criterion 'accuracy' compares with unknown "
            "sub-experiment 'a_lni'",
            "  fix: did you mean a_lin?",
        ]
    )


def test_stub_wiring_check_asks_the_other_side_for_the_compared_metric(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch)
    project.plan(PLAN.replace('success_criteria: {accuracy: ">= 0.5"}', "params: {}"))
    monkeypatch.setenv("A_LIN_NAME", "acc")  # a_lin reports acc, which b_mlp cannot compare with
    result = project.run("--experiment", "all", "--stub")
    result.assert_outcomes(passed=4, failed=2)  # a_lin (wiring) and e-a's assessment
    subs = project.results("e-a", stub=True)["sub_experiments"]
    message = subs["a_lin"]["error"]["message"]
    assert message.startswith(
        "the handler did not report 'accuracy', needed by the criterion 'accuracy' of b_mlp"
    )
    assert "did you mean 'acc'?" in message
    # b_mlp's own wiring is fine: with nothing on the other side to compare, it is not judged
    b_mlp = project.results("e-b", stub=True)["sub_experiments"]["b_mlp"]
    assert b_mlp["status"] == "passed"
    judged = b_mlp["criteria"]["accuracy"]
    assert (judged["level"], judged["passed"], judged["value"]) == ("inconclusive", True, 0.95)
    assert "compared" not in judged
