"""Two sessions writing different experiments at once: research/FINDINGS.md ends up showing both
(issue 15, SPEC section 14 "FINDINGS.md")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Project

PLAN = """
project: {name: Two, hypothesis: "h"}
experiments:
  e-one:
    sub_experiments:
      a_1:
        success_criteria: {m: ">= 0.5"}
  e-two:
    sub_experiments:
      b_1:
        success_criteria: {m: ">= 0.5"}
"""

# Each session's item waits for the other's to have started, so both sessions loaded every
# stored result before either wrote any: the one that writes last once showed the other's
# experiment as never run.  A barrier on marker files, with a generous guard (not a timing).
HANDLERS = """
import os, time
from pathlib import Path

def _meet(mine, theirs):
    folder = Path(os.environ["BARRIER"])
    (folder / mine).write_text("started")
    deadline = time.monotonic() + 120
    while not (folder / theirs).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the other session never started")
        time.sleep(0.01)

def a_1(runner):
    _meet("a", "b")
    return {"metrics": {"m": 1.0}}

def b_1(runner):
    _meet("b", "a")
    return {"metrics": {"m": 1.0}}
"""


def test_two_sessions_on_different_experiments_both_show_in_the_overview(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    barrier = project.path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("BARRIER", str(barrier))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                "--experiment",
                exp,
            ],
            cwd=project.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for exp in ("e-one", "e-two")
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    overview = project.findings()
    rows = {line.split("|")[1].strip(): line for line in overview.splitlines() if line.startswith("| [`e-")}
    assert set(rows) == {
        "[`e-one`](experiments/e-one/FINDINGS.md)",
        "[`e-two`](experiments/e-two/FINDINGS.md)",
    }
    for row in rows.values():
        assert "not_started" not in row, overview
        assert "proceed" in row
