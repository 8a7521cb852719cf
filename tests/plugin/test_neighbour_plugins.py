"""pytest-rerunfailures and pytest-timeout, the real plugins, next to experiment items (issue 20,
SPEC section 13 "Plugins that re-run or time out tests")."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project
from tests.factories import recording_tracker_conftest

pytest.importorskip("pytest_rerunfailures")
pytest.importorskip("pytest_timeout")

TRACKER = recording_tracker_conftest("runs.log", "[self.task.sub_id, self.task.seed]")

RERUN_PLAN = """
project: {name: Reruns, hypothesis: "h"}
experiments:
  e-r:
    sub_experiments:
      r_fail:
        success_criteria: {acc: ">= 0.9"}
      r_error: {}
"""

RERUN_HANDLERS = """
def r_fail(runner):
    return {"metrics": {"acc": 0.5}}

def r_error(runner):
    raise RuntimeError("nondeterministic GPU trouble")
"""

FLAKY_TEST = """
from pathlib import Path

def test_flaky(tmp_path_factory):
    marker = Path(__file__).with_name("flaky.count")
    count = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(count + 1))
    assert count >= 1  # fails the first time: pytest-rerunfailures re-runs it
"""


def test_reruns_never_re_run_an_experiment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(RERUN_PLAN)
    project.handlers("handlers", RERUN_HANDLERS)
    project.pytester.makeconftest(TRACKER)
    project.pytester.makepyfile(test_unit=FLAKY_TEST)
    monkeypatch.setenv("WANDB_MODE", "offline")  # the hook's tracker counts runs
    result = project.run("research/research_plan.yaml", "test_unit.py", "--reruns", "2")
    out = result.stdout.str()
    # the unit test was re-run (the plugin is active), the experiments were not
    assert "1 rerun" in out
    assert result.parseoutcomes() == {"passed": 1, "failed": 3, "rerun": 1}
    runs = [tuple(json.loads(line)) for line in (project.path / "runs.log").read_text().splitlines()]
    assert sorted(runs) == [("r_error", 0), ("r_fail", 0)]  # one tracker run each, not three
    assert len([line for line in result.outlines if "--reruns 2 applies to unit tests only" in line]) == 1
    subs = project.results("e-r")["sub_experiments"]
    assert subs["r_fail"]["status"] == "failed" and "history" not in subs["r_fail"]
    assert subs["r_error"]["status"] == "error" and "history" not in subs["r_error"]


TIMEOUT_PLAN = """
project: {name: Timeouts, hypothesis: "h"}
experiments:
  e-t:
    executor: EXECUTOR
    sub_experiments:
      t_before: {}
      t_slow:
        seeds: [0, 1, 2]
        marks: ["timeout(2)"]
      t_after: {}
"""

TIMEOUT_HANDLERS = """
import os, time

def _note(runner):
    with open(os.environ["CALLS"], "a") as fh:
        fh.write(f"{runner.sub_experiment_id}:{runner.seed}\\n")

def t_before(runner):
    _note(runner)
    return {"metrics": {"m": 1.0}}

def t_slow(runner):
    _note(runner)
    if runner.seed == 1:
        time.sleep(300)  # stopped by the timeout mark long before this ends
    return {"metrics": {"m": 2.0}}

def t_after(runner):
    _note(runner)
    return {"metrics": {"m": 3.0}}
"""


@pytest.mark.parametrize("executor", ["local", "process"])
def test_a_timeout_mark_from_the_plan_is_an_infra_error_that_keeps_the_other_results(
    project: Project, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    project.plan(TIMEOUT_PLAN.replace("EXECUTOR", executor))
    project.handlers("handlers", TIMEOUT_HANDLERS)
    calls = project.path / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "--experiment", "all", "--mlexp-concurrency", "1"
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "pytest_timeout" not in out
    subs = project.results("e-t")["sub_experiments"]
    slow = subs["t_slow"]
    assert slow["status"] == "infra_error"
    assert slow["error"]["kind"] == "timeout"
    assert "timeout mark" in slow["error"]["message"]
    assert slow["error"]["seed"] == 1
    assert subs["t_before"]["status"] == subs["t_after"]["status"] == "passed"
    # seed 2 never ran; the others each once
    assert sorted(calls.read_text().split()) == ["t_after:0", "t_before:0", "t_slow:0", "t_slow:1"]
    result.stdout.fnmatch_lines(["*t_slow*infra_error*timeout*"])


UNIT_TIMEOUT_PLAN = """
project: {name: UnitTimeout, hypothesis: "h"}
experiments:
  e-u:
    sub_experiments:
      u_1: {}
"""

UNIT_TIMEOUT_HANDLERS = """
import time

def u_1(runner):
    time.sleep(0.5)  # longer than the unit tests' timeout, which is not meant for it
    return {"metrics": {"m": 1.0}}
"""

UNIT_TESTS = """
import time

def test_fast_unit():
    pass

def test_slow_unit():
    if SLOW:
        time.sleep(5)  # stopped by the ini timeout: pytest-timeout is active for unit tests
"""


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_an_ini_timeout_for_unit_tests_does_not_touch_experiment_items(project: Project, method: str) -> None:
    project.plan(UNIT_TIMEOUT_PLAN)
    project.handlers("handlers", UNIT_TIMEOUT_HANDLERS)
    (project.path / "pytest.ini").write_text(f"[pytest]\ntimeout = 0.1\ntimeout_method = {method}\n")
    # (the thread method ends the whole session when a unit test overruns: no slow one then)
    project.pytester.makepyfile(test_unit=UNIT_TESTS.replace("SLOW", str(method == "signal")))
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "research/research_plan.yaml", "test_unit.py"
    )
    subs = project.results("e-u")["sub_experiments"]
    assert subs["u_1"]["status"] == "passed"
    lines = [
        line for line in result.outlines if "pytest-timeout's timeout (0.1 s) applies to unit tests" in line
    ]
    assert len(lines) == 1
    if method == "signal":
        result.assert_outcomes(passed=3, failed=1)
        assert "Timeout (>0.1s) from pytest-timeout" in result.stdout.str()
    else:
        result.assert_outcomes(passed=4)


def test_an_experiments_timeout_mark_times_its_sub_experiments_and_leaves_its_assessment_alone(
    project: Project,
) -> None:
    # The experiment's marks reach its assessment too (an experiment is skipped or selected
    # whole); its timeout mark is for the work, not for judging it: no timer, and no note that
    # pytest-timeout's timeout is not for experiment items.
    project.plan(UNIT_TIMEOUT_PLAN.replace("  e-u:\n", '  e-u:\n    marks: ["timeout(60)"]\n'))
    project.handlers("handlers", UNIT_TIMEOUT_HANDLERS)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    result.assert_outcomes(passed=2)
    assert "applies to unit tests" not in result.stdout.str()
    assert project.results("e-u")["sub_experiments"]["u_1"]["status"] == "passed"


NESTED_TIMEOUT_PLAN = """
project: {name: Nested, hypothesis: "h"}
defaults: {marks: ["timeout(OUTER)"]}
experiments:
  e-n:
    sub_experiments:
      n_1:
        marks: ["timeout(INNER)"]
"""

NESTED_TIMEOUT_HANDLERS = """
import time

def n_1(runner):
    time.sleep(2)
    return {"metrics": {"m": 1.0}}
"""


@pytest.mark.parametrize(("outer", "inner", "status"), [(1, 60, "passed"), (60, 1, "infra_error")])
def test_the_innermost_timeout_mark_of_the_plan_wins(
    project: Project, outer: int, inner: int, status: str
) -> None:
    # Plan marks accumulate outermost first; pytest-timeout takes the closest mark, so they are
    # put on the item innermost first: a sub-experiment's own limit beats the defaults'.
    project.plan(NESTED_TIMEOUT_PLAN.replace("OUTER", str(outer)).replace("INNER", str(inner)))
    project.handlers("handlers", NESTED_TIMEOUT_HANDLERS)
    project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    entry = project.results("e-n")["sub_experiments"]["n_1"]
    assert entry["status"] == status
    if status == "infra_error":
        assert entry["error"]["kind"] == "timeout" and "(1 s, pytest-timeout)" in entry["error"]["message"]


def test_a_timeout_mark_a_conftest_adds_to_an_experiment_item_is_its_limit(project: Project) -> None:
    project.plan(
        NESTED_TIMEOUT_PLAN.replace('defaults: {marks: ["timeout(OUTER)"]}\n', "").replace(
            '        marks: ["timeout(INNER)"]\n', "        seeds: 1\n"
        )
    )
    project.handlers("handlers", NESTED_TIMEOUT_HANDLERS)
    project.pytester.makeconftest(
        "import pytest\n\ndef pytest_collection_modifyitems(items):\n"
        "    for item in items:\n        item.add_marker(pytest.mark.timeout(1))\n"
    )
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    entry = project.results("e-n")["sub_experiments"]["n_1"]
    assert entry["status"] == "infra_error" and entry["error"]["kind"] == "timeout"
    assert "applies to unit tests" not in result.stdout.str()  # it came from a mark, not the ini


LANE_CONFTEST = """
import queue, threading
from pytest_mlexp import NotYet, RemoteExecutor
from pytest_mlexp.remote import run_task

class OneLane(RemoteExecutor):
    # A cluster that runs one job at a time, in order: jobs submitted ahead wait in its queue.
    name = "lane"
    poll_s = 0.05

    def __init__(self):
        super().__init__(concurrency=4)
        self.jobs = queue.Queue()
        threading.Thread(target=self._lane, daemon=True).start()

    def _lane(self):
        while True:
            task, box = self.jobs.get()
            box.append(run_task(task))

    def launch(self, handle, attempt):
        box = []
        self.jobs.put((handle.job.task.to_dict(), box))
        return box

    def wait(self, call, timeout):
        if not call:
            raise NotYet()
        return call[0]

    def cancel_call(self, call):
        pass

def pytest_mlexp_executor(name, config):
    return OneLane() if name == "lane" else None
"""

LANE_PLAN = """
project: {name: Lane, hypothesis: "h"}
defaults: {handler: "experiments.handlers:nap", executor: lane, marks: ["timeout(1.2)"]}
experiments:
  e-l:
    sub_experiments: [n_1, n_2, n_3, n_4]
"""


def test_a_timeout_mark_does_not_count_the_time_a_job_waited_in_a_back_ends_queue(project: Project) -> None:
    # Work submitted ahead to a remote back end "starts" when it is submitted (a slot of the
    # executor takes it); the cluster's queue then holds it.  Counted from there, n_3 and n_4
    # (0.5 s of work each, queued behind the others) ran past their 1.2-s marks: a regression
    # of counting the time a seed ran ahead, which only the process executor knows exactly.
    pytest.importorskip("pytest_timeout")
    project.plan(LANE_PLAN)
    project.handlers(
        "handlers",
        "import time\n\ndef nap(runner):\n    time.sleep(0.5)\n    return {'metrics': {'m': 1.0}}\n",
    )
    project.pytester.makeconftest(LANE_CONFTEST)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    result.assert_outcomes(passed=5)
