"""The executor examples of the docs, run as the conftest.py of a project: the README's own
(docs/examples/executor_example.py, shown in the README as it is here) and the Ray one
(docs/examples/ray_executor.py, when ray is installed: it is not a dependency)."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from tests.conftest import Project

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
HANG_GUARD_S = 120

PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: EXECUTOR}
experiments:
  e-one:
    sub_experiments:
      b_ok: {seeds: 2, success_criteria: {acc: ">= 0.5"}}
      b_raise: {}
      b_lost: {resources: {retries: 1}}
      b_slow: {resources: {timeout: 1}}
"""

HANDLERS = """
import os, time

def b_ok(runner):
    runner.results.save_artifact("a.txt", f"seed {runner.seed}")
    return {"metrics": {"acc": 0.5 + runner.seed / 10, "pid": os.getpid()}}

def b_raise(runner):
    raise ValueError("boom in the worker")

def b_lost(runner):
    os._exit(3)

def b_slow(runner):
    time.sleep(60)
"""


def test_the_readme_shows_the_executor_example_as_the_suite_runs_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (EXAMPLES / "executor_example.py").read_text(encoding="utf-8")
    assert f"```python\n{example}```" in readme, "README's executor example differs from the file"


def test_the_executor_example_keeps_the_contract(project: Project) -> None:
    project.plan(PLAN.replace("EXECUTOR", "background"))
    project.handlers("e_one", HANDLERS)
    project.pytester.makeconftest((EXAMPLES / "executor_example.py").read_text(encoding="utf-8"))
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=4)
    subs = project.results("e-one")["sub_experiments"]
    ok = subs["b_ok"]
    assert ok["status"] == "passed" and ok["executor"] == "background"
    assert os.getpid() not in {ok["per_seed"][s]["pid"] for s in (0, 1)}
    fp = ok["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert sorted(ok["artifacts"]) == [f"artifacts/b_ok/{fp}/seed0/a.txt", f"artifacts/b_ok/{fp}/seed1/a.txt"]
    raised = subs["b_raise"]["error"]
    assert raised["kind"] == "handler" and "ValueError: boom in the worker" in raised["traceback"]
    lost = subs["b_lost"]["error"]
    assert subs["b_lost"]["status"] == "infra_error" and lost["kind"] == "lost_worker"
    assert lost["attempts"] == 2 and "exited with code 3" in lost["message"]
    slow = subs["b_slow"]["error"]  # the base class enforces resources.timeout for it
    assert slow["kind"] == "timeout"
    assert (
        slow["message"] == "exceeded resources.timeout of 1 s in a background process; the call was cancelled"
    )


STOP_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: EXECUTOR}
experiments:
  e-one:
    sub_experiments: [s_a, s_b]
"""

STOP = """
import os, time
from pathlib import Path

def _run(runner):
    marks = Path(os.environ["MARKS"])
    # Written whole, then renamed: the test waits for the file and reads it (SIGTERM may
    # come between an open and its write).
    tmp = marks / f"{runner.sub_experiment_id}.pid.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.replace(marks / f"{runner.sub_experiment_id}.pid")
    time.sleep(120)
    return {"metrics": {"value": 1}}

def s_a(runner):
    return _run(runner)

def s_b(runner):
    return _run(runner)
"""


def _sigterm_mid_run(project: Project, executor: str, example: str, marks: Path) -> tuple[int, str]:
    """Start a session whose two items both run, SIGTERM it; (exit code, output)."""
    project.plan(STOP_PLAN.replace("EXECUTOR", executor))
    project.handlers("e_one", STOP)
    project.pytester.makeconftest((EXAMPLES / example).read_text(encoding="utf-8"))
    return project.interrupt(
        "--experiment", "all", started=lambda: all((marks / f"{s}.pid").exists() for s in ("s_a", "s_b"))
    )


def _assert_stopped(project: Project, marks: Path, code: int, out: str) -> None:
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert "interrupted (SIGTERM): work in flight was cancelled" in out
    sub = project.results("e-one")["sub_experiments"]["s_a"]  # results.yaml was written
    assert sub["status"] == "infra_error" and sub["error"]["kind"] == "cancelled"
    for s in ("s_a", "s_b"):
        pid = int((marks / f"{s}.pid").read_text())
        deadline = time.monotonic() + 30  # a killed process may take a moment to be reaped
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"{s}'s worker was left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_executor_example_stops_its_work_on_sigterm(project: Project, marks: Path) -> None:
    code, out = _sigterm_mid_run(project, "background", "executor_example.py", marks)
    _assert_stopped(project, marks, code, out)


needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (not a dependency of pytest-mlexp): pip install ray to run the Ray example",
)


@needs_ray
def test_the_ray_example_runs_seeds_on_ray(project: Project) -> None:
    project.plan(PLAN.replace("EXECUTOR", "ray").replace("      b_lost: {resources: {retries: 1}}\n", ""))
    project.handlers("e_one", HANDLERS)
    project.pytester.makeconftest((EXAMPLES / "ray_executor.py").read_text(encoding="utf-8"))
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all", timeout=300)
    result.assert_outcomes(passed=1, failed=3)
    subs = project.results("e-one")["sub_experiments"]
    ok = subs["b_ok"]
    assert ok["status"] == "passed" and ok["executor"] == "ray"
    fp = ok["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert sorted(ok["artifacts"]) == [f"artifacts/b_ok/{fp}/seed0/a.txt", f"artifacts/b_ok/{fp}/seed1/a.txt"]
    assert (project.path / "research" / "artifacts" / "b_ok" / fp / "seed1" / "a.txt").read_text() == "seed 1"
    assert "ValueError: boom in the worker" in subs["b_raise"]["error"]["traceback"]
    assert subs["b_slow"]["error"]["kind"] == "timeout"


@needs_ray
def test_the_ray_example_keeps_pytests_sigterm_handler(project: Project, marks: Path) -> None:
    # ray.init replaces SIGTERM's handler; the example restores it (keep_signal_handlers), so a
    # SIGTERM still cancels the work, writes results.yaml and ends the session as interrupted.
    code, out = _sigterm_mid_run(project, "ray", "ray_executor.py", marks)
    _assert_stopped(project, marks, code, out)
