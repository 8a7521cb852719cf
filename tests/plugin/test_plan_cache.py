"""The plan's parsed form cached between runs (pytest_mlexp/plancache.py), seen from pytest: an
unchanged plan is not parsed again, and an edit, or its undo, is always read afresh."""

from __future__ import annotations

import sys

import pytest

import pytest_mlexp.plan as plan_pkg
from tests.conftest import Project

PLAN = """\
project: {name: cache, hypothesis: h}
defaults: {handler: "experiments.h:run"}
experiments:
  e1:
    sub_experiments: [a, b]
"""


def _ids(result: pytest.RunResult) -> list[str]:
    return sorted(line.split("::")[-1] for line in result.stdout.lines if "::" in line)


def test_an_edit_and_its_undo_are_read_afresh_and_an_unchanged_plan_is_not_parsed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as for any user, whatever the suite runs under
    project.handlers("h", "def run(runner):\n    return {'metrics': {'m': 1.0}}\n")
    project.plan(PLAN)
    project.run("--experiment", "all").assert_outcomes(passed=3)
    cached = list((project.path / "research" / "__pycache__").glob("research_plan.yaml.*.pickle"))
    assert len(cached) == 1

    # Unchanged: the model comes from the cache (a parse would fail here).
    def no_parse(text: str, shown: str) -> object:
        raise AssertionError("the plan was parsed again")

    with monkeypatch.context() as m:
        m.setattr(plan_pkg, "parse_plan_text", no_parse)
        assert _ids(project.run("--experiment", "all", "--co", "-q")) == ["a", "assessment", "b"]

    # An edit of the same size, within the same second: read afresh (the key is the content).
    project.plan(PLAN.replace("[a, b]", "[a, c]"))
    assert _ids(project.run("--experiment", "all", "--co", "-q")) == ["a", "assessment", "c"]
    # And its undo.
    project.plan(PLAN)
    assert _ids(project.run("--experiment", "all", "--co", "-q")) == ["a", "assessment", "b"]
    # A mistake is reported from the parser, every time, as without a cache.
    project.plan(PLAN.replace("[a, b]", "[a, a]"))
    for _ in range(2):
        result = project.run("--experiment", "all", "--co", "-q")
        assert "research_plan.yaml:5" in result.stdout.str() + result.stderr.str()
