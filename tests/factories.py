"""Model objects for unit tests, built directly (not through the YAML parser): every field has
a plain default and tests override what they are about."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_mlexp.model import Experiment, Loc, SubExperiment

LOC = Loc("research/research_plan.yaml", 1)


def sub(sub_id: str, experiment_id: str = "exp", **fields: Any) -> SubExperiment:
    base: dict[str, Any] = dict(
        id=sub_id,
        experiment_id=experiment_id,
        handler=None,
        params={},
        stub_params={},
        sweep=None,
        select=None,
        seeds=(0,),
        seeds_given=False,
        executor="local",
        resources={},
        marks=(),
        success_criteria=(),
        dependencies=(),
        meta={},
        loc=LOC,
    )
    base.update(fields)
    return SubExperiment(**base)


def experiment(exp_id: str, subs: Any = (), **fields: Any) -> Experiment:
    base: dict[str, Any] = dict(
        id=exp_id,
        name=exp_id,
        phase=None,
        sub_experiments=tuple(subs),
        success_criteria=(),
        dependencies=(),
        replaces=(),
        retired=False,
        meta={},
        loc=LOC,
    )
    base.update(fields)
    return Experiment(**base)


def recording_tracker_conftest(log_name: str, line: str) -> str:
    """A conftest.py whose ``pytest_mlexp_tracker`` hook gives a tracker that appends, at each
    run's finish, ``json.dumps(<line>)`` to ``<log_name>`` next to it: ``line`` is a Python
    expression over ``self.task``, ``summary`` and ``artifacts``.  Tests read the log back to
    see what a tracker was given."""
    return f'''
import json
from pathlib import Path

from pytest_mlexp.trackers.base import Tracker, TrackerRun

LOG = Path(__file__).parent / "{log_name}"


class Run(TrackerRun):
    def __init__(self, task):
        self.task = task

    def log(self, metrics, step):
        pass

    def finish(self, summary, *, artifacts=(), failed=False):
        with LOG.open("a") as f:
            f.write(json.dumps({line}) + "\\n")
        return None


class Recorder(Tracker):
    name = "recorder"

    def start(self, task):
        return Run(task)


def pytest_mlexp_tracker(config):
    return Recorder()
'''


def write_small_study(root: Path, subs: tuple[str, ...] = ("a",)) -> None:
    """A one-experiment plan (``e1``, an ``acc`` criterion) whose sub-experiments all run the
    handler ``experiments/h.py:trivial`` (``acc`` 0.9: passed), for tests that run pytest on it."""
    (root / "experiments").mkdir()
    (root / "experiments" / "h.py").write_text(
        "def trivial(runner):\n    return {'metrics': {'acc': 0.9}}\n", encoding="utf-8"
    )
    (root / "research").mkdir()
    (root / "research" / "research_plan.yaml").write_text(
        "project: {name: p, hypothesis: h}\n"
        'defaults: {handler: "experiments.h:trivial"}\n'
        "experiments:\n"
        "  e1:\n"
        f"    sub_experiments: [{', '.join(subs)}]\n"
        "    success_criteria: {acc: {target: 0.8, acceptable: 0.5}}\n",
        encoding="utf-8",
    )


def run_pytest(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m pytest *args`` in a fresh process (without this repository's random-order
    plugin), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def child_env(*drop: str, **extra: str) -> dict[str, str]:
    """This process's environment for a child pytest: without what would make it an xdist worker
    or add options, nor ``drop``; with W&B disabled and ``extra``."""
    gone = {"PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", *drop}
    env = {k: v for k, v in os.environ.items() if k not in gone}
    env.update(WANDB_MODE="disabled", **extra)
    return env
