"""pytest-xdist: one writer, dependency order across workers, no second run after a crash."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import Project

pytest.importorskip("xdist")

PLAN = """
project: {name: Par, hypothesis: "h"}
experiments:
  e-a:
    sub_experiments: [ea_1, ea_2]
  e-b:
    dependencies: [e-a]
    sub_experiments: [eb_1]
  e-x:
    sub_experiments: [ex_1, ex_2]
"""

HANDLERS = """
import os, time
from pathlib import Path

def _mark(runner):
    log = Path(os.environ["MLEXP_TEST_LOG"])
    with log.open("a") as fh:
        fh.write(f"{runner.sub_experiment_id} {os.environ.get('PYTEST_XDIST_WORKER')}\\n")

def _meet(me, other):
    # With MLEXP_TEST_MEET set, ea_1 and ex_1 wait for each other: both workers run (and send
    # results to the one writer) at the same time, or neither passes. 60 s is a hang guard.
    if not os.environ.get("MLEXP_TEST_MEET"):
        return
    meet = Path(os.environ["MLEXP_TEST_MEET"])
    (meet / me).write_text("")
    deadline = time.monotonic() + 60
    while not (meet / other).exists():
        assert time.monotonic() < deadline, f"{me} and {other} never ran at the same time"
        time.sleep(0.01)

def ea_1(runner):
    _mark(runner); _meet("ea_1", "ex_1"); return {"metrics": {"m": 1.0}}
def ea_2(runner):
    _mark(runner); return {"metrics": {"m": 2.0}}
def eb_1(runner):
    _mark(runner); return {"metrics": {"m": 3.0}}
def ex_1(runner):
    _mark(runner)
    if os.environ.get("CRASH"):
        os._exit(3)
    _meet("ex_1", "ea_1")
    return {"metrics": {"m": 4.0}}
def ex_2(runner):
    _mark(runner); return {"metrics": {"m": 5.0}}
"""


def _project(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan and handlers above, each handler logging its call to calls.log."""
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    monkeypatch.setenv("MLEXP_TEST_LOG", str(project.path / "calls.log"))


def _log(project: Project) -> list[list[str]]:
    path = project.path / "calls.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_xdist_runs_components_apart_keeps_order_and_writes_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, monkeypatch)
    (project.path / "meet").mkdir()
    monkeypatch.setenv("MLEXP_TEST_MEET", str(project.path / "meet"))
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "2", "--experiment", "all", "--junitxml=r.xml"
    )
    result.assert_outcomes(passed=8)
    xml = (project.path / "r.xml").read_text()
    assert xml.count('name="metric.m"') == 5 and xml.count('name="verdict.recommendation"') == 3
    calls = _log(project)
    order = [c[0] for c in calls]
    assert sorted(order) == ["ea_1", "ea_2", "eb_1", "ex_1", "ex_2"]  # each ran exactly once
    by_sub = {c[0]: c for c in calls}
    # the dependent ran on the worker that ran what it depends on, after it
    assert by_sub["eb_1"][1] == by_sub["ea_1"][1] == by_sub["ea_2"][1]
    assert order.index("eb_1") > order.index("ea_2")
    assert by_sub["ex_1"][1] != by_sub["ea_1"][1]  # independent component on the other worker
    for exp in ("e-a", "e-b", "e-x"):
        doc = project.results(exp)
        assert all(e["status"] == "passed" for e in doc["sub_experiments"].values())
    assert "e-x" in project.findings()
    assert not list((project.path / "research" / "experiments").glob("*/.results*.journal"))


def test_xdist_worker_crash_is_infra_error_and_not_rerun(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, monkeypatch)
    monkeypatch.setenv("CRASH", "1")
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--experiment", "e-x")
    order = [c[0] for c in _log(project)]
    assert order.count("ex_1") == 1, order
    assert order.count("ex_2") == 1, order
    entry = project.results("e-x")["sub_experiments"]["ex_1"]
    assert entry["status"] == "infra_error"
    assert entry["error"]["kind"] == "lost_worker"
    result.stdout.fnmatch_lines(["*Errors: 1 (infra 1)*"])


def test_a_dist_mode_the_scheduler_replaces_is_named_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, monkeypatch)
    args = ("-p", "no:randomly", "-n", "2", "--experiment", "all")
    result = project.pytester.runpytest_subprocess(*args, "--dist", "worksteal")
    result.assert_outcomes(passed=8)
    lines = [line for line in result.stdout.lines if "--dist" in line]
    assert lines == [
        "mlexp: --dist worksteal is replaced by pytest-mlexp's scheduler while experiments run: "
        "the experiments of one dependency component go to one worker, in order; other tests are "
        "spread by module (as with --dist loadscope)"
    ]
    # dependency order held anyway: e-b's item ran after both of e-a's, on the same worker
    calls = _log(project)
    order = [sub for sub, _ in calls]
    assert order.index("eb_1") > max(order.index("ea_1"), order.index("ea_2"))
    assert {w for sub, w in calls if sub.startswith(("ea", "eb"))} == {dict(calls)["eb_1"]}
    # the default mode (load), and loadscope, which it is, say nothing
    (project.path / "calls.log").unlink()
    plain = project.pytester.runpytest_subprocess(*args, "--dist", "loadscope")
    plain.assert_outcomes(passed=8)
    assert "--dist" not in plain.stdout.str()


def test_the_xdist_hooks_are_registered_only_in_a_distributed_session(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed pytest-xdist alone (most sessions run without -n) does not call our hooks.
    _project(project, monkeypatch)
    project.pytester.makeconftest(
        "def pytest_sessionstart(session):\n"
        "    if not hasattr(session.config, 'workerinput'):\n"
        "        registered = session.config.pluginmanager.has_plugin('mlexp-xdist')\n"
        "        (session.config.rootpath / 'xdist-hooks.txt').write_text(str(registered))\n"
    )
    args = ("-p", "no:randomly", "--experiment", "e-x")
    project.pytester.runpytest_subprocess(*args).assert_outcomes(passed=3)
    assert (project.path / "xdist-hooks.txt").read_text() == "False"
    project.pytester.runpytest_subprocess(*args, "-n", "2").assert_outcomes(passed=3)
    assert (project.path / "xdist-hooks.txt").read_text() == "True"


TERM_PLAN = """
project: {name: Par, hypothesis: "h"}
experiments:
  e-t:
    sub_experiments: [t_1, t_2, t_3]
"""

TERM_HANDLERS = """
import os, time
from pathlib import Path
MARKS = Path(os.environ["MARKS"])

def t_1(runner):
    return {"metrics": {"m": 1.0}}

def t_2(runner):
    deadline = time.monotonic() + 60  # a hang guard: it waits for a mark nobody writes
    try:
        # Inside the try: the test signals once it sees this file, which may be before the
        # write has returned.
        (MARKS / "t_2.pid").write_text(str(os.getpid()))
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except KeyboardInterrupt:
        (MARKS / "t_2-interrupted").write_text("")
        raise
    return {"metrics": {"m": 2.0}}

def t_3(runner):
    (MARKS / "t_3").write_text("")
    return {"metrics": {"m": 3.0}}
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell script's background job


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_to_the_controller_alone_stops_its_workers_as_ctrl_c_would(
    project: Project, marks: Path, sigint: str
) -> None:
    # SIGTERM to the controller only (docker stop, kill <pid>): the workers, which a terminal's
    # Ctrl-C would have reached too, went on through the items xdist had sent them, and the
    # results of what they finished were read by no one.  Now each worker is interrupted in
    # the item it runs (t_2 sees the KeyboardInterrupt) and starts nothing more.  [ignored]:
    # pytest started as a script's background job (`pytest -n 2 & ... kill $!`), whose
    # processes ignore SIGINT: the SIGINT passed on did nothing, the line said otherwise.
    project.plan(TERM_PLAN)
    project.handlers("handlers", TERM_HANDLERS)
    popen = {"preexec_fn": _ignore_sigint} if sigint == "ignored" else {}
    code, out = project.interrupt(
        "-n", "2", "--experiment", "all", started=(marks / "t_2.pid").exists, **popen
    )
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert (marks / "t_2-interrupted").exists(), out
    # (Without the forwarding, execnet interrupts its worker too, but only 5 s into the
    # controller's teardown: time enough to start and finish further items, unrecorded.)
    assert " xdist worker(s) interrupted, as a terminal's Ctrl-C would have" in out, out
    assert not (marks / "t_3").exists()
    assert project.results("e-t")["sub_experiments"]["t_1"]["status"] == "passed"


SHARE_PLAN = """
project: {name: Par, hypothesis: "h"}
experiments:
  e-s:
    executor: process
    sub_experiments: [s_1]
  e-l:
    sub_experiments: [l_1]
"""


def test_more_xdist_workers_than_process_slots_is_named_before_the_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each xdist worker keeps one slot at least (and one GPU): -n 2 with one GPU ran two seeds
    # on it at once, and --mlexp-concurrency 1 -n 2 ran two seeds at once, without a word.
    project.plan(SHARE_PLAN)
    project.handlers(
        "handlers",
        "def s_1(runner):\n    return {'metrics': {'m': 1.0}}\n\n"
        "def l_1(runner):\n    return {'metrics': {'m': 1.0}}\n",
    )
    args = ("-p", "no:randomly", "-n", "2", "--experiment", "all")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    one_gpu = project.pytester.runpytest_subprocess(*args)
    one_gpu.assert_outcomes(passed=4)
    one_gpu.stdout.fnmatch_lines(
        ["mlexp: warning: -n 2 with 1 GPU(s) visible: *up to 2 run at once, sharing GPUs*; use -n 1*"]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    one_slot = project.pytester.runpytest_subprocess(*args, "--mlexp-concurrency", "1")
    one_slot.stdout.fnmatch_lines(
        ["mlexp: warning: -n 2 with --mlexp-concurrency 1: *up to 2 run at once; use -n 1*"]
    )
    enough = project.pytester.runpytest_subprocess(*args, "--mlexp-concurrency", "2")
    enough.assert_outcomes(passed=4)
    assert "mlexp: warning: -n" not in enough.stdout.str()
    # What runs decides, after -k: only e-l's local items here.
    local_only = project.pytester.runpytest_subprocess(*args, "--mlexp-concurrency", "1", "-k", "e-l")
    local_only.assert_outcomes(passed=2)
    assert "mlexp: warning: -n" not in local_only.stdout.str()
