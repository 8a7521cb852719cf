"""Warm workers through pytest: reuse, isolation, replacement, children, -x, and pytest's death.

Workers report their pid as a metric and the handler module appends the importing pid to a
marker file when it is imported; tests wait on marker files with generous hang guards and
never assert on elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_mlexp.procutil import alive
from tests.conftest import Project

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="warm workers need fork and Unix sockets")

HANG_GUARD_S = 60.0

PREAMBLE = """
import json, os, subprocess, sys, time
from pathlib import Path
MARKS = Path(os.environ["MARKS"])
with open(MARKS / "imports", "a") as fh:
    fh.write(f"{os.getpid()}\\n")

def _wait_for(name):
    deadline = time.monotonic() + 60  # a hang guard
    while not (MARKS / name).exists():
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.01)
"""


def imports(marks: Path) -> list[int]:
    return [int(p) for p in (marks / "imports").read_text().split()]


def run_plan(
    project: Project, plan: str, handlers: str, *args: str, conftest: str = "", concurrency: int = 2
) -> pytest.RunResult:
    """Run every experiment of a one-experiment plan (e-one) under ``process``."""
    project.plan(plan)
    project.handlers("e_one", handlers)
    if conftest:
        project.pytester.makeconftest(conftest)
    return project.run("--experiment", "all", "--mlexp-concurrency", str(concurrency), *args)


def marking_handlers(*names: str) -> str:
    """A handler module whose handlers each leave a marker file named after their
    sub-experiment (what ran) and return one metric."""
    body = "".join(f"\ndef {n}(runner):\n    return _ran(runner)\n" for n in names)
    return (
        PREAMBLE
        + '\ndef _ran(runner):\n    (MARKS / runner.sub_experiment_id).write_text("")\n'
        + ('    return {"metrics": {"ok": 1}}\n' + body)
    )


def wait_until(predicate: Callable[[], object], what: str, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what} {explain()}"
        time.sleep(0.02)


def _describe(pids: list[int]) -> str:
    """What is known of processes still alive (for a failure message)."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            stat, cmd = "?", "?"
        out.append(f"{pid}: {stat[:80]} | {cmd}")
    return "; ".join(out)


REUSE_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      w_a: {seeds: 3}
      w_b: {}
      w_iso: {seeds: 2, resources: {isolate: true}}
      w_max: {seeds: 3, resources: {max_seeds_per_worker: 1}}
      w_kbi: {resources: {retries: 2}}
"""

REUSE = (
    PREAMBLE
    + """
def w_a(runner):
    return {"metrics": {"pid": os.getpid()}}

def w_b(runner):
    return {"metrics": {"pid": os.getpid()}}

def w_iso(runner):
    return {"metrics": {"pid": os.getpid()}}

def w_max(runner):
    return {"metrics": {"pid": os.getpid()}}

def w_kbi(runner):
    (MARKS / "w_kbi").write_text(str(os.getpid()))
    raise KeyboardInterrupt("the handler's own")
"""
)


def test_workers_stay_warm_across_items_and_seeds_unless_told_otherwise(
    project: Project, marks: Path
) -> None:
    result = run_plan(project, REUSE_PLAN, REUSE, "-v", concurrency=1)
    result.assert_outcomes(passed=4, failed=2)  # w_kbi, and the assessment it fails
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a handler's KeyboardInterrupt stops nothing
    subs = project.results("e-one")["sub_experiments"]

    def pids(sub: str) -> list[int]:
        if "per_seed" not in subs[sub]:  # one seed: its metrics are the entry's
            return [subs[sub]["metrics"]["pid"]]
        per_seed = subs[sub]["per_seed"]
        return [per_seed[s]["pid"] for s in sorted(per_seed)]

    warm = pids("w_a")[0]
    assert pids("w_a") == [warm] * 3 and pids("w_b") == [warm]  # one worker, four seeds
    iso = pids("w_iso")
    assert len(set(iso)) == 2 and warm not in iso  # a fresh process for every seed
    most = pids("w_max")
    assert len(set(most)) == 3  # replaced after each seed
    assert warm not in most  # nor started in one that had run 4 seeds already
    # Every worker imported the handler module exactly once, however many seeds it ran.
    everyone = {warm, *iso, *most, int((marks / "w_kbi").read_text())}
    assert sorted(imports(marks)) == sorted(everyone)
    kbi = subs["w_kbi"]
    assert kbi["status"] == "error" and kbi["error"]["type"] == "KeyboardInterrupt"
    assert "attempts" not in kbi["error"]  # not a lost worker, not retried
    assert not any(alive(pid) for pid in everyone)  # all gone with the session


CHILD_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      c_start: {}
      c_check: {}
"""

CHILD = (
    PREAMBLE
    + """
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]

def c_start(runner, fixture_pid):
    child = subprocess.Popen(SLEEPER)
    escaped = subprocess.Popen(SLEEPER, start_new_session=True)
    (MARKS / "children.json").write_text(json.dumps([child.pid, escaped.pid]))
    return {"metrics": {"pid": os.getpid()}}

def c_check(runner, fixture_pid):
    from pytest_mlexp.procutil import alive
    children = json.loads((MARKS / "children.json").read_text())
    return {"metrics": {
        "pid": os.getpid(),
        "children_alive": any(alive(p) for p in children),
        "fixture_process_alive": alive(fixture_pid),
    }}
"""
)

CHILD_CONFTEST = """
import subprocess, sys
import pytest

@pytest.fixture(scope="session")
def fixture_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc.pid
    proc.kill()
    proc.wait()
"""


def test_children_of_a_handler_end_with_its_seed_but_a_fixture_process_lives_on(
    project: Project, marks: Path
) -> None:
    result = run_plan(project, CHILD_PLAN, CHILD, conftest=CHILD_CONFTEST, concurrency=1)
    result.assert_outcomes(passed=3)
    subs = project.results("e-one")["sub_experiments"]
    check = subs["c_check"]["metrics"]
    assert subs["c_start"]["metrics"]["pid"] == check["pid"]  # the same warm worker
    assert check["children_alive"] is False  # the first seed's children ended with it
    assert check["fixture_process_alive"] is True  # pytest's own children are never touched
    children = json.loads((marks / "children.json").read_text())
    assert not any(alive(pid) for pid in children)


STOP_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [x_fail, x_slow]
"""

STOP = (
    PREAMBLE
    + """
def x_fail(runner):
    _wait_for("x_slow.json")  # the other item is running when this one fails
    raise ValueError("stop here")

def x_slow(runner):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    (MARKS / "x_slow.json").write_text(json.dumps([os.getpid(), child.pid]))
    time.sleep(300)
"""
)


def test_x_stops_the_session_and_kills_work_in_flight(project: Project, marks: Path) -> None:
    result = run_plan(project, STOP_PLAN, STOP, "-x")
    result.assert_outcomes(failed=1)
    running = json.loads((marks / "x_slow.json").read_text())
    # The worker and its child were sent SIGKILL before pytest returned; on a loaded machine the
    # child may take a moment to be gone (the bound is the hang guard, not a timing assertion).
    wait_until(
        lambda: not any(alive(pid) for pid in running),
        "the worker and its child to end",
        lambda: _describe([pid for pid in running if alive(pid)]),
    )
    subs = project.results("e-one")["sub_experiments"]
    assert "x_slow" not in subs  # never reported: nothing recorded for it


KILL_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [k_a, k_b]
"""

KILL = (
    PREAMBLE
    + """
def _hold(runner):
    if (MARKS / "quick").exists():
        return {"metrics": {}}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    name = runner.sub_experiment_id
    (MARKS / f"{name}.tmp").write_text(json.dumps([os.getpid(), child.pid]))
    (MARKS / f"{name}.tmp").rename(MARKS / f"{name}.json")  # whole, when the test sees it
    # the seed's output file, in the session's private scratch folder (Linux: /proc)
    log = os.readlink("/proc/self/fd/1") if os.path.exists("/proc/self/fd/1") else ""
    (MARKS / f"{name}.log").write_text(log)
    time.sleep(300)

def k_a(runner):
    return _hold(runner)

def k_b(runner):
    return _hold(runner)
"""
)


def test_no_worker_or_child_is_left_when_pytest_is_killed(project: Project, marks: Path) -> None:
    project.plan(KILL_PLAN)
    project.handlers("e_one", KILL)
    proc = project.pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "--experiment",
            "all",
            "--mlexp-concurrency",
            "2",
        ],
        stdin=None,
    )
    try:
        wait_until(
            lambda: all((marks / f"{s}.json").exists() for s in ("k_a", "k_b")) or proc.poll() is not None,
            "both workers to start",
        )
        assert proc.poll() is None, proc.communicate()
        pids = [pid for s in ("k_a", "k_b") for pid in json.loads((marks / f"{s}.json").read_text())]
        assert all(alive(pid) for pid in pids)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD_S)
        wait_until(
            lambda: not any(alive(pid) for pid in pids),
            "the workers and their children to end",
            lambda: _describe([pid for pid in pids if alive(pid)]),
        )
        log = Path((marks / "k_a.log").read_text())
        if log.is_absolute():
            # The killed session's scratch folder is private, and the next session removes it.
            assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o700
            (marks / "quick").write_text("")
            project.run("--experiment", "all", "--mlexp-executor", "local").assert_outcomes(passed=3)
            assert not log.parent.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


BOUND_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process, seeds: 2}
experiments:
  e-one:
    sub_experiments:
      o_1: {seeds: 1}
      o_2: {}
      o_3: {}
      o_4: {}
      o_5: {}
"""

BOUND = (
    PREAMBLE
    + """
def _count(suffix):
    return len(list(MARKS.glob(f"*.{suffix}")))

def _work(runner, after=None):
    me = f"{runner.sub_experiment_id}-{runner.seed}"
    (MARKS / f"{me}.start").write_text("")
    if after:
        _wait_for(after)
    deadline = time.monotonic() + 60  # a hang guard
    while _count("start") < 2:  # two seeds run at once: the bound is reached, not only obeyed
        assert time.monotonic() < deadline, "no second seed ever started"
        time.sleep(0.01)
    running = _count("start") - _count("end")  # seeds between their start and end marks now
    runner.results.save_artifact("who.txt", me)
    (MARKS / f"{me}.end").write_text("")
    return {"metrics": {"pid": os.getpid(), "running": running}}

def o_1(runner):
    # The first item ends only after a later item has: it still reports first.
    return _work(runner, after="o_3-1.end")

def o_2(runner):
    return _work(runner)

def o_3(runner):
    return _work(runner)

def o_4(runner):
    return _work(runner)

def o_5(runner):
    return _work(runner)
"""
)


def test_dispatch_ahead_to_warm_workers_is_bounded_and_reports_in_plan_order(
    project: Project, marks: Path
) -> None:
    result = run_plan(project, BOUND_PLAN, BOUND, "-v")
    result.assert_outcomes(passed=6)  # and the assessment
    # Reported in plan order, though o_1 finished after o_2 and o_3 (fnmatch_lines keeps order).
    result.stdout.fnmatch_lines([f"*::e-one::o_{i} PASSED*" for i in range(1, 6)])
    subs = project.results("e-one")["sub_experiments"]
    seeds = [subs["o_1"]["metrics"]] + [subs[f"o_{i}"]["per_seed"][s] for i in range(2, 6) for s in (0, 1)]
    assert max(m["running"] for m in seeds) == 2  # never more seeds at once than slots
    assert len({m["pid"] for m in seeds}) == 2  # two warm workers ran all nine seeds
    assert sorted(imports(marks)) == sorted({m["pid"] for m in seeds})
    # Each seed wrote into an artifacts folder of its own, though workers ran several seeds.
    for i in range(2, 6):
        fp = subs[f"o_{i}"]["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
        assert sorted(subs[f"o_{i}"]["artifacts"]) == [
            f"artifacts/o_{i}/{fp}/seed{s}/who.txt" for s in (0, 1)
        ]
        for s in (0, 1):
            who = project.path / "research" / "artifacts" / f"o_{i}" / fp / f"seed{s}" / "who.txt"
            assert who.read_text() == f"o_{i}-{s}"


def test_an_xdist_worker_closes_its_warm_workers_and_scratch_folder(
    project: Project, marks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An xdist worker writes no results (the controller does), and it skipped the session end
    # that closes the executors: its idle warm workers were killed by the fork server rather
    # than let go, and its scratch folder was left until a later session swept it.
    scratch_tmp = project.path / "tmp"
    scratch_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_tmp))  # the xdist workers' temp folder: only ours
    project.plan(REUSE_PLAN.replace("      w_kbi: {resources: {retries: 2}}\n", ""))
    project.handlers("e_one", REUSE)
    result = project.run("--experiment", "all", "-n", "2")
    result.assert_outcomes(passed=5)
    subs = project.results("e-one")["sub_experiments"]
    assert all(subs[s]["status"] == "passed" for s in ("w_a", "w_b", "w_iso", "w_max"))
    roots = list(scratch_tmp.glob("pytest-mlexp-*"))
    assert roots, "the xdist workers made no scratch folder here: the test checks nothing"
    left = [p for root in roots for p in root.iterdir()]
    assert left == [], f"left behind: {left}"


AHEAD_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [h_fail, h_done, h_hang]
"""

AHEAD = (
    PREAMBLE
    + """
def h_fail(runner):
    _wait_for("h_hang")  # h_hang has started: nothing is left queued to withdraw
    raise RuntimeError("the first item fails")

def h_done(runner):
    return {"metrics": {"pid": os.getpid()}}

def h_hang(runner):
    (MARKS / "h_hang").write_text(str(os.getpid()))
    _wait_for("never")  # in flight when the session stops
"""
)

# Helpers of the conftest.py files below: they run in the pytest process under test.
CONFTEST_HELPERS = """
import os, time
from pathlib import Path
import pytest
from pytest_mlexp.session import session_of

MARKS = Path(os.environ["MARKS"])

def wait_ahead(item, name, also=lambda: True):
    # Until the seeds of `name`, dispatched ahead, are done and also() holds (60 s: a hang
    # guard); False when `name` was not dispatched ahead.
    ahead = session_of(item.config).dispatcher._ahead
    found = [n for n in ahead if n.endswith(name)]
    if not found:
        return False
    deadline = time.monotonic() + 60
    while not (all(h.done() for h in ahead[found[0]]) and also()):
        assert time.monotonic() < deadline, f"{name} never finished ahead"
        time.sleep(0.01)
    return True
"""

# The first item waits (in the pytest process) until the second, dispatched ahead to the other
# worker, has come back, and h_hang has started: then -x stops the session on the first.
AHEAD_CONFTEST = (
    CONFTEST_HELPERS
    + """
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.name == "h_fail":  # h_done is not dispatched ahead in the --lf run (not selected)
        wait_ahead(item, "h_done", also=(MARKS / "h_hang").exists)
"""
)


def test_work_that_finished_ahead_is_kept_when_x_stops_the_session(project: Project, marks: Path) -> None:
    # Dispatched ahead to a warm worker, h_done finished before pytest reached it; -x stopped
    # the session on h_fail, and h_done's result was thrown away (and --lf ran it again).
    result = run_plan(project, AHEAD_PLAN, AHEAD, "-x", conftest=AHEAD_CONFTEST)
    result.assert_outcomes(failed=1)
    subs = project.results("e-one")["sub_experiments"]
    assert subs["h_done"]["status"] == "passed" and subs["h_done"]["executor"] == "process"
    assert subs["h_fail"]["status"] == "error"
    assert "h_hang" not in subs  # in flight: stopped, nothing recorded
    result.stdout.fnmatch_lines(
        [
            "*1 item(s) finished in a worker before the session stopped, without a pytest report;"
            " their results are kept: h_done*"
        ]
    )
    assert not alive(int((marks / "h_hang").read_text()))
    # --lf runs what failed and what never finished, not what was kept.
    (marks / "never").write_text("")
    again = project.run("--experiment", "all", "--lf", "-v")
    again.stdout.fnmatch_lines(["*h_fail*", "*h_hang*"])
    assert "h_done" not in again.stdout.str().split("experiment summary")[0]


WITHDRAW_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [w_gate, w_fail, w_later, w_last]
"""

WITHDRAW = (
    PREAMBLE
    + """
def w_gate(runner):
    (MARKS / "w_gate").write_text("")
    _wait_for("release")  # pytest waits on this item while w_fail fails in the other worker
    return {"metrics": {"ok": 1}}

def w_fail(runner):
    (MARKS / "w_fail").write_text("")
    raise RuntimeError("fails while pytest still waits on w_gate")

def w_later(runner):
    (MARKS / "w_later").write_text("")
    return {"metrics": {"ok": 1}}

def w_last(runner):
    (MARKS / "w_last").write_text("")
    return {"metrics": {"ok": 1}}
"""
)

# w_gate is released once w_fail's seed is done (a handle is done once its callbacks ran):
# the two items after w_fail were still queued behind the two busy workers then.  The "flip"
# run turns w_fail's report into a pass, as a plugin may: pytest then reaches the withdrawn
# items, which run when reached.
WITHDRAW_CONFTEST = (
    CONFTEST_HELPERS
    + """
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.name == "w_gate":
        wait_ahead(item, "w_fail")
        (MARKS / "release").write_text("")

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if item.name == "w_last":  # was it submitted ahead (again) before pytest reached it?
        ahead = item.nodeid in session_of(item.config).dispatcher._ahead
        (Path(os.environ["MARKS"]) / "w_last-ahead").write_text(str(ahead))

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get("FLIP") and item.name == "w_fail" and report.when == "call":
        report.outcome = "passed"
    return report
"""
)


def test_x_withdraws_queued_work_once_a_failure_ahead_means_the_session_stops_there(
    project: Project, marks: Path
) -> None:
    # The session stopped at w_fail, yet the two items queued after it started in the workers
    # that w_fail and then w_gate freed: work (GPU time) that -x was always going to throw away.
    result = run_plan(project, WITHDRAW_PLAN, WITHDRAW, "-x", conftest=WITHDRAW_CONFTEST)
    result.assert_outcomes(passed=1, failed=1)
    assert not (marks / "w_later").exists() and not (marks / "w_last").exists()
    result.stdout.fnmatch_lines(
        [
            "*2 item(s) submitted ahead were withdrawn before they started, as -x stops the session"
            " at an earlier failure: w_later, w_last*"
        ]
    )
    subs = project.results("e-one")["sub_experiments"]
    assert sorted(subs) == ["w_fail", "w_gate"]  # nothing recorded for what never ran


def test_a_withdrawn_item_that_pytest_reaches_after_all_runs_then(
    project: Project, marks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIP", "1")
    result = run_plan(project, WITHDRAW_PLAN, WITHDRAW, "-x", conftest=WITHDRAW_CONFTEST)
    result.assert_outcomes(passed=4, failed=1)  # the assessment still sees w_fail's error
    assert (marks / "w_later").exists() and (marks / "w_last").exists()
    assert "submitted ahead were withdrawn" not in result.stdout.str()
    subs = project.results("e-one")["sub_experiments"]
    assert subs["w_later"]["status"] == "passed" and subs["w_last"]["status"] == "passed"
    # pytest went on past w_fail: what was withdrawn went ahead again, not one by one
    assert (marks / "w_last-ahead").read_text() == "True"


SKIP_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      s_skip: {marks: ["skip(reason='not today')"]}
      s_maybe: {marks: ["skipif('sys.platform == \\"nowhere\\"', reason='runs after all')"]}
      s_true: {marks: ["skipif('sys.platform != \\"nowhere\\"', reason='skipped here')"]}
      s_norun: {marks: ["xfail(run=False, reason='known to hang')"]}
      s_plain: {}
"""

SKIP = marking_handlers("s_skip", "s_maybe", "s_norun", "s_true", "s_plain")


# Whether s_maybe (a skipif that does not hold) went ahead like an unmarked item.
SKIP_CONFTEST = """
import os
from pathlib import Path
import pytest
from pytest_mlexp.session import session_of

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if item.name == "s_maybe":
        ahead = item.nodeid in session_of(item.config).dispatcher._ahead
        (Path(os.environ["MARKS"]) / "s_maybe-ahead").write_text(str(ahead))
"""


def test_an_item_that_a_mark_skips_is_never_dispatched_ahead(project: Project, marks: Path) -> None:
    # Dispatch ahead ignored marks: a skip-marked item's handler ran in a worker while pytest
    # reported the item skipped (and, under -x, its failure stopped dispatch ahead).  A skipif
    # that does not hold (a platform guard) still goes ahead.
    result = run_plan(project, SKIP_PLAN, SKIP, "-rsx", conftest=SKIP_CONFTEST)
    result.assert_outcomes(passed=2, skipped=2, xfailed=1, failed=1)  # the assessment: 3 never ran
    assert not any((marks / s).exists() for s in ("s_skip", "s_norun", "s_true"))
    assert (marks / "s_maybe").exists() and (marks / "s_plain").exists()
    assert (marks / "s_maybe-ahead").read_text() == "True"


TIMEOUT_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      t_slow: {marks: ["timeout(1)"]}
      t_later: {}
"""

TIMEOUT = (
    PREAMBLE
    + """
def t_slow(runner):
    _wait_for("never")  # runs into the item's 1-s timeout mark

def t_later(runner):
    (MARKS / "t_later").write_text("")
    return {"metrics": {"ok": 1}}
"""
)


def test_an_items_timeout_mark_under_x_withdraws_what_is_queued_before_its_worker_is_freed(
    project: Project, marks: Path
) -> None:
    # The seed cancelled at the item's deadline read as "cancelled", not a failure, and the
    # worker its kill freed started t_later, which -x then killed.
    result = run_plan(project, TIMEOUT_PLAN, TIMEOUT, "-x", concurrency=1)
    result.assert_outcomes(failed=1)
    assert not (marks / "t_later").exists()
    result.stdout.fnmatch_lines(["*1 item(s) submitted ahead were withdrawn before they started*: t_later*"])


QUEUED_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      q_first: {}
      q_fix: {marks: ["timeout(2)", "usefixtures('set_up')"]}
      q_long: {}
"""

QUEUED = (
    PREAMBLE
    + """
def q_first(runner):
    return {"metrics": {"ok": 1}}

def q_fix(runner):
    return {"metrics": {"ok": 1}}

def q_long(runner):
    # Holds the only worker until q_fix's 2 s would have run out counted from its set-up.
    _wait_for("q_fix-set-up")
    held_until = float((MARKS / "q_fix-set-up").read_text()) + 2.5
    while time.time() < held_until:
        time.sleep(0.05)
    return {"metrics": {"ok": 1}}
"""
)

QUEUED_CONFTEST = """
import os, time
from pathlib import Path
import pytest

@pytest.fixture
def set_up():
    (Path(os.environ["MARKS"]) / "q_fix-set-up").write_text(str(time.time()))
"""


def test_an_items_timeout_mark_does_not_count_the_time_its_seed_waited_for_a_worker(
    project: Project, marks: Path
) -> None:
    # q_long went ahead and took the only worker when q_first ended; q_fix (a fixture reaches
    # it: submitted when pytest gets there) waited behind it, and its 2 s, counted from its
    # set-up, ran out before its seed started: "infra_error (timeout) ... the running seed was
    # stopped", for a seed that never ran. (Under local nothing waits.)
    pytest.importorskip("pytest_timeout")
    result = run_plan(project, QUEUED_PLAN, QUEUED, conftest=QUEUED_CONFTEST, concurrency=1)
    result.assert_outcomes(passed=4)
    assert project.results("e-one")["sub_experiments"]["q_fix"]["status"] == "passed"


AHEAD_LIMIT_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      l_first: {}
      l_limited: {marks: ["timeout(1)"]}
"""

AHEAD_LIMIT = (
    PREAMBLE
    + """
def l_first(runner):
    _wait_for("l_limited-done")  # pytest reaches l_limited only once its seed has finished
    return {"metrics": {"ok": 1}}

def l_limited(runner):
    # Runs past its item's 1-s mark ahead of the item: under local it would be stopped at 1 s.
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        time.sleep(0.05)
    (MARKS / "l_limited-done").write_text("")
    return {"metrics": {"ok": 1}}
"""
)


def test_an_items_timeout_mark_counts_the_time_its_seed_ran_ahead(project: Project, marks: Path) -> None:
    # The mark's clock started when pytest reached the item: a seed that ran ahead for longer
    # than the limit passed under process and failed under local (same plan, two verdicts).
    pytest.importorskip("pytest_timeout")
    result = run_plan(project, AHEAD_LIMIT_PLAN, AHEAD_LIMIT)
    result.assert_outcomes(passed=1, failed=2)  # l_limited, and the assessment
    entry = project.results("e-one")["sub_experiments"]["l_limited"]
    assert entry["status"] == "infra_error", entry
    assert entry["duration_s"] >= 1.5, entry  # how long it ran (the handler's own loop), not 0.0
    result.stdout.fnmatch_lines(
        ["*l_limited*timeout mark ran out (1 s, pytest-timeout) while its seed ran ahead*"]
    )


EDITED_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      c_first: {}
      c_fresh: {resources: {isolate: true}}
"""

EDITED = (
    PREAMBLE
    + """
def c_first(runner):
    # The researcher's edit, made while the session runs (before c_fresh's worker starts:
    # there is one slot).
    Path(__file__).write_text(Path(__file__).read_text() + "\\n# edited\\n")
    return {"metrics": {"ok": 1}}

def c_fresh(runner):
    return {"metrics": {"ok": 1}}
"""
)


def test_a_worker_that_imports_an_edited_handler_module_refuses_to_run_it(
    project: Project, marks: Path
) -> None:
    # A worker started after the edit (isolate: a fresh one per seed) imported the new source
    # and ran it, while the result's provenance (handler_sha256, the fingerprint) named the
    # source the session read: a later --mlexp-reuse could reuse a number of other code.
    result = run_plan(project, EDITED_PLAN, EDITED, concurrency=1)
    result.assert_outcomes(passed=1, failed=2)  # c_fresh, and the assessment
    entry = project.results("e-one")["sub_experiments"]["c_fresh"]
    assert entry["status"] == "error", entry
    assert "changed on disk after the session read it" in entry["error"]["message"]
    assert entry["error"]["kind"] == "handler"


RUNNING_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [r_fail, r_long]
"""

RUNNING = (
    PREAMBLE
    + """
def r_fail(runner):
    _wait_for("r_long-started")  # r_long went ahead and runs when this one fails
    raise RuntimeError("r_fail fails")

def r_long(runner):
    (MARKS / "r_long-started").write_text("")
    _wait_for("never")  # a hang guard: the session's stop ends it
"""
)


def test_items_running_ahead_that_a_stop_ends_are_named(project: Project, marks: Path) -> None:
    # -x stopped the session while r_long ran ahead in a worker: it was cancelled with the
    # session and no line said so (the withdrawn, never started, and the kept were named).
    result = run_plan(project, RUNNING_PLAN, RUNNING, "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["mlexp: 1 item(s) running ahead in a worker were stopped with the session, *: r_long"]
    )
    assert "r_long" not in project.results("e-one")["sub_experiments"]


MAXFAIL_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [w_gate, w_fail]
  e-two:
    sub_experiments: [m_1, m_2, m_3]
"""

MAXFAIL = marking_handlers("m_1", "m_2", "m_3")


def test_maxfail_counts_the_assessment_a_failed_sub_experiment_fails_too(
    project: Project, marks: Path
) -> None:
    # --maxfail=2: w_fail and then e-one's assessment are the two failures pytest stops after;
    # counting only failed seeds, nothing was withdrawn and e-two's items started.
    project.plan(MAXFAIL_PLAN)
    project.handlers("e_one", WITHDRAW)
    project.handlers("e_two", MAXFAIL)
    project.pytester.makeconftest(WITHDRAW_CONFTEST)
    result = project.run("--experiment", "all", "--mlexp-concurrency", "2", "--maxfail=2")
    result.assert_outcomes(passed=1, failed=2)
    assert not any((marks / m).exists() for m in ("m_1", "m_2", "m_3"))
    result.stdout.fnmatch_lines(
        ["*3 item(s) submitted ahead were withdrawn*as --maxfail=2 stops the session at an earlier*: m_1,*"]
    )


WARM_UP_PLAN = """
project: {name: Toy, hypothesis: "x"}
experiments:
  e-one:
    executor: process
    sub_experiments: [u_a]
  e-two:
    sub_experiments: [u_local]
"""

WARM_UP = (
    PREAMBLE
    + """
def u_a(runner):
    return {"metrics": {"ok": 1}}

def u_local(runner):
    return {"metrics": {"ok": 1}}
"""
)

# What collection left behind, seen before the run loop starts: the fork server's pid, if any.
WARM_UP_CONFTEST = """
import os
from pathlib import Path
from pytest_mlexp.executors.process import ProcessExecutor
from pytest_mlexp.session import session_of

def pytest_collection_finish(session):
    dispatcher = session_of(session.config).dispatcher
    ex = None if dispatcher is None else dispatcher._executors.get("process")
    pid = ex.pool.server_pid if isinstance(ex, ProcessExecutor) else None
    (Path(os.environ["MARKS"]) / "server").write_text(str(pid))
"""


def test_collection_starts_the_fork_server_when_a_selected_item_runs_under_process(
    project: Project, marks: Path
) -> None:
    # The server's interpreter start and imports (~0.1 s) were in the first seed's way: it
    # started when the run loop handed out the first seed.
    project.plan(WARM_UP_PLAN)
    project.handlers("e_one", WARM_UP)
    project.handlers("e_two", WARM_UP.replace("def u_a(", "def _unused("))
    project.pytester.makeconftest(WARM_UP_CONFTEST)
    server = marks / "server"

    project.run("--experiment", "e-one").assert_outcomes(passed=2)
    pid = int(server.read_text())
    wait_until(lambda: not alive(pid), "the fork server to end with the session")

    for nothing_under_process in (["--experiment", "e-two"], ["--experiment", "all", "--co"]):
        project.run(*nothing_under_process)
        assert server.read_text() == "None", nothing_under_process

    # Collected and warmed up, then every item deselected: the server still ends with pytest.
    project.run("--experiment", "all", "-k", "no_such_item").assert_outcomes()
    pid = int(server.read_text())
    wait_until(lambda: not alive(pid), "the fork server of a session that ran nothing to end")


RACE_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      r_0: {}
      r_fail: {}
      r_dep: {dependencies: [r_0]}
"""

RACE = (
    PREAMBLE
    + """
def r_0(runner):
    return {"metrics": {"ok": 1}}

def r_fail(runner):
    _wait_for("submitting")  # r_dep is being submitted
    raise RuntimeError("fails while r_dep is being submitted")

def r_dep(runner):
    (MARKS / "r_dep").write_text("")
    return {"metrics": {"ok": 1}}
"""
)

# r_dep goes ahead once r_0 has reported; its submission is held open until r_fail's outcome
# is in: the failure ahead ends in the middle of the submission.
RACE_CONFTEST = """
import os, time
from pathlib import Path
from pytest_mlexp.executors.process import ProcessExecutor
from pytest_mlexp.session import session_of

CONFIG = []
_submit_all = ProcessExecutor.submit_all

def pytest_configure(config):
    CONFIG.append(config)

def submit_all(self, jobs):
    handles = _submit_all(self, jobs)
    if jobs and jobs[0].task.sub_id == "r_dep":
        (Path(os.environ["MARKS"]) / "submitting").write_text("")
        ahead = session_of(CONFIG[0]).dispatcher._ahead
        failing = [h for n, hs in ahead.items() if n.endswith("r_fail") for h in hs]
        deadline = time.monotonic() + 60  # a hang guard
        while not all(h._outcome is not None for h in failing):
            assert time.monotonic() < deadline, "r_fail never failed"
            time.sleep(0.01)
    return handles

ProcessExecutor.submit_all = submit_all

def pytest_unconfigure(config):
    ProcessExecutor.submit_all = _submit_all  # the session runs in the test's own process
"""


# Added to RACE_CONFTEST: the executor's thread that counts r_fail's failure (and withdraws r_dep)
# does not get the CPU until the main thread, which has r_fail's outcome, waits for that thread,
# as on a busy machine.
STARVED_CONFTEST = """
import threading
from pytest_mlexp.dispatch import Dispatcher
from pytest_mlexp.executors.base import FutureHandle

_failed, _wait_done = Dispatcher._failed, FutureHandle.wait_done
WAITING = threading.Event()

def failed(self, position):
    if threading.current_thread() is not threading.main_thread():
        WAITING.wait(30)  # a hang guard: without the wait below, r_fail reports first
    return _failed(self, position)

def wait_done(self):
    if self.job.task.sub_id == "r_fail":
        WAITING.set()
    return _wait_done(self)

Dispatcher._failed, FutureHandle.wait_done = failed, wait_done

_race_unconfigure = pytest_unconfigure  # RACE_CONFTEST's, which this one follows

def pytest_unconfigure(config):
    Dispatcher._failed, FutureHandle.wait_done = _failed, _wait_done
    _race_unconfigure(config)
"""


@pytest.mark.parametrize("starved", [False, True], ids=["", "its-failure-counted-late"])
def test_a_failure_ahead_during_a_submission_withdraws_the_item_being_submitted(
    project: Project, marks: Path, starved: bool
) -> None:
    # r_fail's failure was counted while r_dep was being submitted: r_dep was not in the
    # dispatcher's books yet, so it was not withdrawn, and the worker r_fail freed took it.
    # Starved: the thread that counts the failure runs late; r_fail's item reported first, -x
    # ended the session, and the line below was missing (seen once under -n 2).
    conftest = RACE_CONFTEST + (STARVED_CONFTEST if starved else "")
    result = run_plan(project, RACE_PLAN, RACE, "-x", conftest=conftest, concurrency=1)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 item(s) submitted ahead were withdrawn before they started*: r_dep"])
    assert not (marks / "r_dep").exists()


FIXTURE_ENV_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      f_a: {seeds: 2}
      f_b: {seeds: 2}
      f_c: {}
"""


def seeing_handlers(seen: str, *names: str) -> str:
    """A handler module whose handlers all return ``_seen(runner)`` (``seen``: its body)."""
    body = "".join(f"\ndef {n}(runner):\n    return _seen(runner)\n" for n in names)
    return PREAMBLE + "\ndef _seen(runner):\n" + seen + body


FIXTURE_ENV = seeing_handlers(
    """    return {"metrics": {
        "mine": float(os.environ.get("ITEM") == runner.sub_experiment_id),
        "session": float(os.environ.get("DATA_HOME") == "set-up"),
        "folder": float(os.path.basename(os.getcwd()) == runner.sub_experiment_id),
        "pid": os.getpid(),
    }}
""",
    "f_a",
    "f_b",
    "f_c",
)

# A session fixture (a variable, as one that starts a data service would export its address)
# and an autouse fixture per item; the handlers take only `runner`.
FIXTURE_ENV_CONFTEST = """
import os, pytest

@pytest.fixture(scope="session", autouse=True)
def data_home():
    os.environ["DATA_HOME"] = "set-up"
    yield
    del os.environ["DATA_HOME"]

@pytest.fixture(autouse=True)
def item_env(monkeypatch, request, tmp_path):
    monkeypatch.setenv("ITEM", request.node.name)
    folder = tmp_path / request.node.name
    folder.mkdir()
    monkeypatch.chdir(folder)
"""


AHEAD_STATE_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      d_a: {}
      d_fix: {marks: ["usefixtures('into_tmp')"]}
      d_b: {dependencies: [d_a]}
"""

AHEAD_STATE = seeing_handlers(
    """    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return {
        "metrics": {
            "fixture_var": float("FIX" in os.environ),
            "current_test": float(current.endswith(f"::{runner.sub_experiment_id} (call)")),
        },
        "finding": os.getcwd(),
    }
""",
    "d_a",
    "d_fix",
    "d_b",
)

AHEAD_STATE_CONFTEST = """
import pytest

@pytest.fixture
def into_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIX", "d_fix's")
"""


def test_work_submitted_ahead_runs_in_the_state_of_the_sessions_start_not_another_items(
    project: Project, marks: Path
) -> None:
    # d_b goes ahead once d_a has reported: while pytest runs d_fix, whose fixture moved into
    # its tmp_path and set a variable. d_b ran there, with that variable (and failed when the
    # fixture's folder was removed); under local it runs in the project's folder, without it.
    result = run_plan(project, AHEAD_STATE_PLAN, AHEAD_STATE, conftest=AHEAD_STATE_CONFTEST, concurrency=2)
    result.assert_outcomes(passed=4)
    subs = project.results("e-one")["sub_experiments"]
    seen = {s: (subs[s]["finding"], subs[s]["metrics"]["fixture_var"]) for s in ("d_a", "d_fix", "d_b")}
    assert seen["d_a"] == seen["d_b"] == (str(project.path), 0.0)
    assert seen["d_fix"][0] != str(project.path) and seen["d_fix"][1] == 1.0
    # What pytest sets while an item's call runs, as under local (the start state has none)
    assert [subs[s]["metrics"]["current_test"] for s in ("d_a", "d_fix", "d_b")] == [1.0, 1.0, 1.0]


GONE_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      g_rm: {marks: ["usefixtures('into_session_folder')"]}
      g_next: {marks: ["usefixtures('into_session_folder')"]}
"""

GONE = (
    PREAMBLE
    + """
import shutil

def g_rm(runner):
    shutil.rmtree(os.environ["SESSION_FOLDER"])  # the folder pytest itself is in
    return {"metrics": {"ok": 1}}

def g_next(runner):
    Path("next.txt").write_text("x")  # relative: under local, FileNotFoundError
    return {"metrics": {"ok": 1}}
"""
)

GONE_CONFTEST = """
import os, tempfile
import pytest

@pytest.fixture(scope="session")
def into_session_folder():
    before = os.getcwd()
    folder = tempfile.mkdtemp()
    os.chdir(folder)
    os.environ["SESSION_FOLDER"] = folder
    yield
    os.chdir(before)
    del os.environ["SESSION_FOLDER"]  # the inner session runs in the test's own process
"""


def test_a_seed_whose_folder_is_gone_fails_instead_of_writing_elsewhere(
    project: Project, marks: Path
) -> None:
    # The pytest process's own folder was removed by an earlier seed: g_next ran in the worker's
    # folder (the project) and left next.txt there, where under local it fails.
    result = run_plan(project, GONE_PLAN, GONE, conftest=GONE_CONFTEST, concurrency=1)
    result.assert_outcomes(passed=1, failed=2)  # g_next and the assessment
    entry = project.results("e-one")["sub_experiments"]["g_next"]
    assert entry["status"] == "error"
    assert "the pytest process's current folder, is gone" in entry["error"]["message"]
    assert not (project.path / "next.txt").exists()


def test_fixtures_that_reach_an_item_are_set_up_before_its_seeds_run_in_a_warm_worker(
    project: Project, marks: Path
) -> None:
    # Autouse fixtures reach every item: such items are not dispatched ahead (their seeds ran
    # before their set-up), and each seed runs in the environment and the folder of the
    # moment it was submitted (a warm worker kept the ones it started with: f_b saw ITEM=f_a,
    # and no seed ran in the folder its fixture changed to, as it does under local).
    result = run_plan(project, FIXTURE_ENV_PLAN, FIXTURE_ENV, conftest=FIXTURE_ENV_CONFTEST, concurrency=1)
    result.assert_outcomes(passed=4)
    subs = project.results("e-one")["sub_experiments"]
    assert len({subs[s]["metrics"]["pid"] for s in ("f_a", "f_b", "f_c")}) == 1  # one warm worker
    for sub in ("f_a", "f_b", "f_c"):
        metrics = subs[sub]["metrics"]
        assert (metrics["mine"], metrics["session"], metrics["folder"]) == (1.0, 1.0, 1.0), sub
