"""Tracking end to end in-process, with a fake wandb (fast) and with a third party's hook."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.unit.test_trackers import FakeWandb

PLAN = """
project: {name: Demo}
experiments:
  exp-a:
    sub_experiments:
      e_a_1:
        params: {lr: 0.1, api_key: "sk-plan-secret-123456"}
        seeds: 2
        success_criteria: {acc: ">= 0.5"}
"""

HANDLERS = """
def e_a_1(runner):
    runner.log_metrics({"loss": 0.5})
    runner.progress(1.0)
    return {"metrics": {"acc": 0.8}}
"""


@pytest.fixture
def fake(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWandb]:
    fake = FakeWandb(project.path)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("HOME", str(project.path))  # no ~/.netrc: no credentials
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    yield fake
    fake.release.set()


def test_offline_notice_and_locations(project: Project, fake: FakeWandb) -> None:
    result = project.run("--experiment", "exp-a")
    assert result.ret == 0
    out = result.stdout.str()
    assert out.count("no credentials (WANDB_API_KEY or `wandb login`)") == 1
    assert len(fake.runs) == 2
    assert [r.kwargs["name"] for r in fake.runs] == ["e_a_1-seed0", "e_a_1-seed1"]
    assert all(r.kwargs["mode"] == "offline" and r.kwargs["config"]["api_key"] == "***" for r in fake.runs)
    assert fake.runs[0].kwargs["dir"] == str(project.path)  # <project root>/wandb
    assert fake.torn_down == 1  # once, at session end
    runs = project.results("exp-a")["sub_experiments"]["e_a_1"]["tracking"]["runs"]
    assert [r["offline_dir"] for r in runs] == ["wandb/offline-run-x-run0", "wandb/offline-run-x-run1"]
    assert [(r["tracker"], r["seed"]) for r in runs] == [("wandb", 0), ("wandb", 1)]


def test_hanging_wandb_warns_once_and_keeps_results(
    project: Project, fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.hang_init = True
    monkeypatch.setenv("MLEXP_WANDB_INIT_TIMEOUT", "0.2")
    result = project.run("--experiment", "exp-a", "--mlexp-wandb", "online")
    assert result.ret == 0
    out = result.stdout.str()
    lines = [line for line in out.splitlines() if "did not return within" in line]
    assert len(lines) == 1 and lines[0].startswith("mlexp: warning: W&B: starting the run of e_a_1 seed 0")
    entry = project.results("exp-a")["sub_experiments"]["e_a_1"]
    assert entry["status"] == "passed" and entry["metrics"] == {"acc": 0.8} and "tracking" not in entry


def test_stub_and_disabled_never_start_wandb(
    project: Project, fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert project.run("--experiment", "exp-a", "--stub").ret == 0
    assert project.run("--experiment", "exp-a", "--mlexp-wandb", "disabled").ret == 0
    assert fake.runs == []
    assert project.run("--experiment", "exp-a", "--stub", "--mlexp-wandb", "offline").ret == 0
    assert len(fake.runs) == 1  # asked for explicitly: the stub's single seed is tracked


def test_wandb_not_installed_is_one_warning(
    project: Project, fake: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    result = project.run("--experiment", "exp-a", "--mlexp-wandb", "online")
    assert result.ret == 0
    assert result.stdout.str().count("wandb is not installed") == 1
    assert fake.runs == []


HOOK_CONFTEST = """
import json
from pathlib import Path

from pytest_mlexp.trackers.base import Tracker, TrackerRun

LOG = Path(__file__).parent / "tracker.log"


class Run(TrackerRun):
    def __init__(self, task):
        self.task = task

    def log(self, metrics, step):
        with LOG.open("a") as f:
            f.write(json.dumps(["log", metrics, step]) + "\\n")

    def progress(self, fraction, stage):
        with LOG.open("a") as f:
            f.write(json.dumps(["progress", fraction]) + "\\n")

    def finish(self, summary, *, artifacts=(), failed=False):
        with LOG.open("a") as f:
            f.write(json.dumps(["finish", summary, failed]) + "\\n")
        return {"url": "https://mlflow.example/runs/" + self.task.tracking["name"], "run_path": "x"}


class FileTracker(Tracker):
    name = "file"

    def start(self, task):
        with LOG.open("a") as f:
            t = task.tracking
            f.write(json.dumps(["start", t["group"], t["config"], t["uri"]]) + "\\n")
        return Run(task)

    def task_settings(self, settings):
        return {**settings, "uri": "file:///mlruns"}


def pytest_mlexp_tracker(config):
    return FileTracker()
"""


def test_hook_tracker(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    project.plan(PLAN.replace("seeds: 2", "seeds: 1"))
    project.handlers("exp_a", HANDLERS)
    project.pytester.makeconftest(HOOK_CONFTEST)
    result = project.run("--experiment", "exp-a", "--junitxml=report.xml")
    assert result.ret == 0
    events = [json.loads(line) for line in (project.path / "tracker.log").read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "log", "progress", "finish"]
    assert events[0][1] == "exp-a" and events[0][2]["api_key"] == "***" and events[0][3] == "file:///mlruns"
    assert events[1][1:] == [{"e_a_1/loss": 0.5}, 0]
    assert events[3][1]["e_a_1/acc"] == 0.8 and events[3][2] is False
    url = "https://mlflow.example/runs/e_a_1-seed0"
    tracking = project.results("exp-a")["sub_experiments"]["e_a_1"]["tracking"]
    assert tracking["url"] == url and tracking["tracker"] == "file"  # a third party's: its name
    assert "file run: [x](https://mlflow.example/runs/e_a_1-seed0)" in project.findings("exp-a")
    xml = (project.path / "report.xml").read_text()
    assert 'name="tracking.url"' in xml and 'name="tracking.tracker" value="file"' in xml
    assert 'name="wandb.url"' not in xml  # only W&B's link keeps the first release's name
    assert url in (project.path / "report.xml").read_text()
    assert url in project.findings("exp-a")
    # --stub: no tracking unless asked for
    (project.path / "tracker.log").unlink()
    assert project.run("--experiment", "exp-a", "--stub").ret == 0
    assert not Path(project.path / "tracker.log").exists()
