"""Executors end to end through pytest: process workers for real, Modal through the fake backend."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import Project

FAILURES_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments:
      e1_ok: {seeds: 2}
      e1_raise: {}
      e1_exit: {resources: {retries: 1}}
      e1_slow: {resources: {timeout: 1}}
"""

FAILURES = """
import os, time

def e1_ok(runner):
    print("chatter on stdout does not disturb the protocol")
    runner.results.save_artifact("a.txt", f"seed {runner.seed} pid {os.getpid()}")
    return {"metrics": {"acc": 0.5, "pid": os.getpid()}}

def e1_raise(runner):
    raise ValueError("boom from the worker")

def e1_exit(runner):
    print("about to vanish")
    os._exit(7)

def e1_slow(runner):
    time.sleep(60)
"""


def test_process_executor_outcomes(project: Project) -> None:
    project.plan(FAILURES_PLAN)
    project.handlers("e_one", FAILURES)
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines(
        ["*about to vanish*", "*e1_exit: infra_error (lost_worker)*exited with code 7*"]
    )
    subs = project.results("e-one")["sub_experiments"]
    assert subs["e1_ok"]["status"] == "passed" and subs["e1_ok"]["executor"] == "process"
    pids = {subs["e1_ok"]["per_seed"][s]["pid"] for s in (0, 1)}
    assert os.getpid() not in pids  # in worker processes (warm ones: see test_warm_workers.py)
    fp = subs["e1_ok"]["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert sorted(subs["e1_ok"]["artifacts"]) == [
        f"artifacts/e1_ok/{fp}/seed0/a.txt",
        f"artifacts/e1_ok/{fp}/seed1/a.txt",
    ]
    assert (
        (project.path / "research" / "artifacts" / "e1_ok" / fp / "seed1" / "a.txt")
        .read_text()
        .startswith("seed 1")
    )
    err = subs["e1_raise"]["error"]
    assert subs["e1_raise"]["status"] == "error" and err["type"] == "ValueError"
    assert 'raise ValueError("boom from the worker")' in err["traceback"]  # the remote traceback
    lost = subs["e1_exit"]["error"]
    assert subs["e1_exit"]["status"] == "infra_error" and lost["kind"] == "lost_worker"
    assert lost["attempts"] == 2 and "about to vanish" in lost["traceback"]  # retried once, output kept
    slow = subs["e1_slow"]["error"]
    assert subs["e1_slow"]["status"] == "infra_error" and slow["kind"] == "timeout" and "attempts" not in slow


OVERLAP_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  first:
    sub_experiments: [f_a, f_b, f_c, f_d]
  second:
    dependencies: [first]
    sub_experiments: [s_a]
"""

OVERLAP = """
import os, time
from pathlib import Path

FIRSTS = ("f_a", "f_b", "f_c", "f_d")

def _await(names, suffix):
    marks = Path(os.environ["MARKS"])
    deadline = time.monotonic() + 60  # a hang guard
    while not all((marks / f"{n}.{suffix}").exists() for n in names):
        if time.monotonic() > deadline:
            raise AssertionError(f"not all of {names} reached {suffix!r}: they did not run concurrently")
        time.sleep(0.02)

def _work(runner):
    marks = Path(os.environ["MARKS"])
    (marks / f"{runner.sub_experiment_id}.start").write_text("")
    _await(FIRSTS, "start")  # returns only once all four are running at the same time
    (marks / f"{runner.sub_experiment_id}.end").write_text("")
    return {"metrics": {"ok": 1}}

def s_a(runner):
    marks = Path(os.environ["MARKS"])
    ended = all((marks / f"{n}.end").exists() for n in FIRSTS)
    return {"metrics": {"prerequisites_done_at_start": ended}}
""" + "".join(f"\ndef {n}(runner):\n    return _work(runner)\n" for n in ("f_a", "f_b", "f_c", "f_d"))


def test_dispatch_ahead_overlaps_and_dependents_wait(project: Project, marks: Path) -> None:
    project.plan(OVERLAP_PLAN)
    project.handlers("first", OVERLAP)
    result = project.run("--experiment", "all", "--mlexp-concurrency", "4", "-v")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*::first::f_a PASSED*", "*::first::f_d PASSED*", "*::second::s_a PASSED*"])
    # Each of the four waits until all four have started: they can only pass when submitted
    # together (with items run one at a time, the first would wait in vain and fail).
    subs = project.results("first")["sub_experiments"]
    assert all(subs[n]["status"] == "passed" for n in ("f_a", "f_b", "f_c", "f_d"))
    # The dependent experiment started only after its prerequisite's items had all finished.
    assert project.results("second")["sub_experiments"]["s_a"]["metrics"] == {
        "prerequisites_done_at_start": True
    }


def test_fixtures_are_sent_pickled_or_named_when_they_cannot_be(project: Project) -> None:
    project.plan(
        """
        project: {name: Toy, hypothesis: "x"}
        experiments:
          e-one:
            sub_experiments:
              e1_data: {executor: process}
              e1_lock: {executor: process}
        """
    )
    project.handlers(
        "e_one",
        """
        def e1_data(runner, numbers):
            return {"metrics": {"total": sum(numbers)}}

        def e1_lock(runner, lock):
            return {"metrics": {}}
        """,
    )
    project.pytester.makeconftest(
        """
        import threading, pytest

        @pytest.fixture
        def numbers():
            return [1, 2, 3]

        @pytest.fixture
        def lock():
            return threading.Lock()
        """
    )
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*fixture 'lock' could not be sent to the process executor*local executor*"])
    subs = project.results("e-one")["sub_experiments"]
    assert subs["e1_data"]["metrics"] == {"total": 6}
    assert subs["e1_lock"]["error"]["kind"] == "fixture"


SIMPLE_PLAN = """
project: {name: Toy, hypothesis: "x"}
experiments:
  e-one:
    sub_experiments:
      e1_a: {executor: %s}
"""
SIMPLE = "def e1_a(runner):\n    return {'metrics': {'x': 1}}\n"


def test_unknown_executor_flag_is_a_usage_error(project: Project) -> None:
    project.plan(SIMPLE_PLAN % "local")
    project.handlers("e_one", SIMPLE)
    result = project.run("--experiment", "all", "--mlexp-executor", "sge")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = "*--mlexp-executor: unknown executor 'sge'; available: local, process, modal, slurm*"
    result.stderr.fnmatch_lines([expected])


def test_unknown_executor_in_the_plan_fails_its_item(project: Project) -> None:
    project.plan(SIMPLE_PLAN % "sge")
    project.handlers("e_one", SIMPLE)
    result = project.run("--experiment", "all")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*unknown executor 'sge'; available: local, process, modal, slurm*"])


def test_stub_runs_local_unless_an_executor_is_named(project: Project) -> None:
    project.plan(SIMPLE_PLAN % "modal")
    project.handlers("e_one", SIMPLE)
    project.run("--experiment", "all", "--stub").assert_outcomes(passed=2)
    assert project.results("e-one", stub=True)["sub_experiments"]["e1_a"]["executor"] == "local"
    project.run("--experiment", "all", "--stub", "--mlexp-executor", "process").assert_outcomes(passed=2)
    assert project.results("e-one", stub=True)["sub_experiments"]["e1_a"]["executor"] == "process"


# --- Modal through the fake backend ------------------------------------------------------------------
MODAL_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: modal}
modal: {python: "3.11", pip: [numpy]}
experiments:
  e-one:
    sub_experiments:
      m_ok: {seeds: 2, resources: {gpu: "A100-80GB", timeout: 600}}
      m_raise: {}
      m_pre: {resources: {retries: 1}}
      m_lost: {resources: {retries: 1}}
      m_slow: {resources: {timeout: 5}}
"""

MODAL_HANDLERS = """
def m_ok(runner):
    runner.results.save_artifact("small.txt", "small")
    runner.results.save_artifact("big.bin", b"x" * 4096)
    return {"metrics": {"acc": 0.9}}

def m_raise(runner):
    raise RuntimeError("remote boom")

def m_pre(runner):
    return {"metrics": {"acc": 1.0}}

def m_lost(runner):
    return {"metrics": {"acc": 1.0}}

def m_slow(runner):
    return {"metrics": {"acc": 1.0}}
"""

MODAL_CONFTEST = """
import json
from pathlib import Path
from pytest_mlexp.executors.modal import ModalExecutor
from pytest_mlexp.executors.modal_fake import FakeModalBackend

FAULTS = {"m_pre": ["preempt", "ok"], "m_lost": ["lost", "lost"], "m_slow": ["timeout"]}
BACKEND = FakeModalBackend(faults=FAULTS)

def pytest_mlexp_executor(name, config):
    if name == "modal":
        return ModalExecutor(config, backend=BACKEND)

def pytest_unconfigure(config):
    Path("backend.json").write_text(json.dumps({
        "started": BACKEND.started, "stopped": BACKEND.stopped,
        "spawned": [[t["sub_id"], t["root"], t["artifacts_dir"], r] for t, r in BACKEND.spawned],
    }))
"""


def test_modal_executor_through_the_fake_backend(project: Project) -> None:
    project.plan(MODAL_PLAN)
    project.handlers("e_one", MODAL_HANDLERS)
    project.pytester.makeconftest(MODAL_CONFTEST)
    project.pytester.makeini("[pytest]\nmlexp_max_artifact_mb = 0.001\n")  # 1 KiB: big.bin stays remote
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=2, failed=4)
    subs = project.results("e-one")["sub_experiments"]
    ok = subs["m_ok"]
    assert ok["status"] == "passed" and ok["executor"] == "modal"
    assert "artifacts/e1_ok" not in str(ok["artifacts"])
    fp = ok["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert f"artifacts/m_ok/{fp}/seed0/small.txt" in ok["artifacts"]
    big = [a for a in ok["artifacts"] if a.endswith("big.bin")]
    assert len(big) == 2 and all(a.startswith("modal-volume://mlexp-artifacts/") for a in big)
    art = project.path / "research" / "artifacts" / "m_ok" / fp
    assert (art / "seed1" / "small.txt").read_text() == "small"  # came back with the result
    assert not (art / "seed1" / "big.bin").exists()
    raised = subs["m_raise"]["error"]
    assert subs["m_raise"]["status"] == "error" and 'raise RuntimeError("remote boom")' in raised["traceback"]
    assert subs["m_pre"]["status"] == "passed"  # preempted once, retried
    assert subs["m_lost"]["error"]["kind"] == "lost_worker" and subs["m_lost"]["error"]["attempts"] == 2
    assert subs["m_slow"]["error"]["kind"] == "timeout"
    backend = json.loads((project.path / "backend.json").read_text())
    assert backend["started"] == 1 and backend["stopped"] == 1  # one app for the session, closed at the end
    spawned = {s[0]: s for s in backend["spawned"]}
    assert spawned["m_ok"][3] == {"gpu": "A100-80GB", "timeout": 600}
    assert f"/plan/artifacts/m_ok/{fp}/seed" in spawned["m_ok"][2]  # remapped into the container's scratch
    assert [s[0] for s in backend["spawned"]].count("m_pre") == 2


def test_modal_without_credentials_fails_every_item_at_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("modal")
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.path / "no-modal.toml"))
    project.plan(MODAL_PLAN)
    project.handlers("e_one", MODAL_HANDLERS)
    result = project.run("--experiment", "all")
    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines(["*infra_error (credentials)*modal token new*MODAL_TOKEN_ID*"])
    subs = project.results("e-one")["sub_experiments"]
    assert {s["error"]["kind"] for s in subs.values()} == {"credentials"}


SLURM_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: slurm}
experiments:
  e-one:
    sub_experiments:
      s_a: {seeds: 2}
      s_b: {resources: {slurm: {partition: gpu}}}
"""


def test_slurm_without_sbatch_fails_every_item_at_once_with_the_fix(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine outside the cluster: no Slurm commands on PATH (the real cluster: tests/slurm).
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    project.plan(SLURM_PLAN)
    project.handlers("e_one", "def s_a(runner):\n    pass\n\ndef s_b(runner):\n    pass\n")
    result = project.run("--experiment", "all")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ['*s_a: infra_error (setup)*needs sbatch, srun, sacct, scancel on PATH*"pytest-mlexp?slurm?"*']
    )
    subs = project.results("e-one")["sub_experiments"]
    assert {s["error"]["kind"] for s in subs.values()} == {"setup"}
    assert not (project.path / ".pytest_cache" / "d" / "mlexp-slurm").exists() or not any(
        (project.path / ".pytest_cache" / "d" / "mlexp-slurm").iterdir()
    )


# --- interruption ------------------------------------------------------------------------------------
CANCEL_PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: process}
experiments:
  e-one:
    sub_experiments: [c_a, c_b]
"""

CANCEL = """
import os, time
from pathlib import Path

def _run(runner):
    marks = Path(os.environ["MARKS"])
    if (marks / "slow").exists():
        # Written whole, then renamed: the test waits for the file and reads it (SIGTERM may
        # come between an open and its write).
        tmp = marks / f"{runner.sub_experiment_id}.pid.tmp"
        tmp.write_text(str(os.getpid()))
        tmp.replace(marks / f"{runner.sub_experiment_id}.pid")
        time.sleep(60)
    return {"metrics": {"value": 1}}

def c_a(runner):
    return _run(runner)

def c_b(runner):
    return _run(runner)
"""


@pytest.mark.parametrize("stop_first", [[], ["-x"]], ids=["plain", "x"])
def test_sigterm_cancels_work_in_flight_without_losing_stored_results(
    project: Project, marks: Path, stop_first: list[str]
) -> None:
    # With -x, the cancelled item's failure ended the session as failed (exit code 1), not
    # interrupted.
    project.plan(CANCEL_PLAN)
    project.handlers("e_one", CANCEL)
    project.run("--experiment", "c_b").assert_outcomes(passed=1, failed=1)  # c_b: stored
    (marks / "slow").write_text("")
    code, out = project.interrupt(  # once both went ahead
        "--experiment",
        "all",
        *stop_first,
        started=lambda: all((marks / f"{s}.pid").exists() for s in ("c_a", "c_b")),
    )
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert "interrupted (SIGTERM)" in out
    for s in ("c_a", "c_b"):
        pid = int((marks / f"{s}.pid").read_text())
        with pytest.raises(ProcessLookupError):  # the workers were killed, not orphaned
            os.kill(pid, 0)
    subs = project.results("e-one")["sub_experiments"]
    assert subs["c_a"]["status"] == "infra_error" and subs["c_a"]["error"]["kind"] == "cancelled"
    assert subs["c_b"]["status"] == "passed"  # a cancelled run never overwrites a stored result


def test_an_item_cancelled_over_its_stored_result_has_its_row_in_the_summary(
    project: Project, marks: Path
) -> None:
    # The item pytest was waiting on when SIGTERM came, with a result stored: nothing was
    # recorded (right), and nothing shown either: the summary's counts left out the failure
    # pytest itself reported.
    project.plan(CANCEL_PLAN)
    project.handlers("e_one", CANCEL)
    project.run("--experiment", "all").assert_outcomes(passed=3)  # c_a and c_b: stored
    (marks / "slow").write_text("")
    code, text = project.interrupt("--experiment", "c_a", started=(marks / "c_a.pid").exists)
    assert code == pytest.ExitCode.INTERRUPTED, text
    assert re.search(r"c_a +infra_error +\[cancelled\] +\(the stored result is kept\)", text), text
    assert "Errors: 1 (infra 1)" in text, text
    assert project.results("e-one")["sub_experiments"]["c_a"]["status"] == "passed"
