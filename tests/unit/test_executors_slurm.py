"""The slurm executor without a cluster: resources as submitit parameters, sacct states as outcomes
(with submitit's own state names), the job array of an item's seeds, the job side's time limits.
tests/slurm runs the same against a real Slurm."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_mlexp.executors import slurm as slurm_mod
from pytest_mlexp.executors.backend import (
    NotYet,
    RemoteCancelled,
    RemoteError,
    RemoteFailed,
    RemoteLost,
    RemotePreempted,
    RemoteTimeout,
)
from pytest_mlexp.executors.base import Job
from pytest_mlexp.executors.slurm import (
    SacctWatch,
    SlurmCall,
    SlurmExecutor,
    expand_job_id,
    job_end,
    parse_gpu,
    remove_stale_folders,
    slurm_parameters,
)
from pytest_mlexp.plan import SLURM_KEYS
from tests.unit.test_executors import make_task


# --- resources -> submitit -------------------------------------------------------------------------
def test_the_plan_knows_exactly_submitits_slurm_parameters() -> None:
    submitit_slurm = pytest.importorskip("submitit.slurm.slurm", reason="pip install 'pytest-mlexp[slurm]'")
    assert set(SLURM_KEYS) - {"gpu_type_as"} == set(submitit_slurm._get_default_parameters())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("A100:2", (2, "a100")),
        ("A100", (1, "a100")),
        ("A100-80GB:4", (4, "a100-80gb")),
        ("2", (2, None)),
        ("any:2", (2, None)),
        ("any", (1, None)),
        (None, (0, None)),
        ("", (0, None)),
    ],
)
def test_gpu_strings(spec: Any, expected: tuple[int, str | None]) -> None:
    assert parse_gpu(spec) == expected


def test_resources_become_submitit_parameters() -> None:
    params = slurm_parameters(
        {"timeout": 61, "memory": 1500, "cpu": 2.5, "gpu": "A100:2", "retries": 3}, name="mlexp-e1"
    )
    assert params == {
        "name": "mlexp-e1",
        "timeout_min": 2,  # rounded up
        "slurm_signal_delay_s": 15,  # min(90, 61 // 4)
        "mem_gb": 2,  # 1500 MiB, rounded up
        "cpus_per_task": 3,
        "slurm_gres": "gpu:a100:2",
        "slurm_additional_parameters": {"no-requeue": True},  # retries are ours
        "slurm_stderr_to_stdout": True,
    }
    assert slurm_parameters({"timeout": 7200})["slurm_signal_delay_s"] == 90
    assert "timeout_min" not in slurm_parameters({})  # the partition's default limit


def test_gpu_type_as_and_the_slurm_section_pass_through() -> None:
    as_constraint = slurm_parameters({"gpu": "H100:4", "slurm": {"gpu_type_as": "constraint"}})
    assert as_constraint["gpus_per_node"] == 4 and as_constraint["slurm_constraint"] == "h100"
    assert "slurm_gres" not in as_constraint
    untyped = slurm_parameters({"gpu": "H100", "slurm": {"gpu_type_as": "none"}})
    assert untyped["gpus_per_node"] == 1 and "slurm_constraint" not in untyped and "slurm_gres" not in untyped
    assert slurm_parameters({"gpu": "2"})["gpus_per_node"] == 2  # no type: no gres type either

    params = slurm_parameters(
        {
            "slurm": {
                "partition": "gpu",
                "account": "lab",
                "qos": "high",
                "constraint": "ib",
                "additional_parameters": {"mail-type": "END", "no-requeue": False},
                "stderr_to_stdout": False,
            }
        }
    )
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    assert params["slurm_qos"] == "high" and params["slurm_constraint"] == "ib"
    assert params["slurm_additional_parameters"] == {"mail-type": "END", "no-requeue": True}  # always
    assert params["slurm_stderr_to_stdout"] is False  # the section wins


# --- what sacct says -------------------------------------------------------------------------------------
def test_submitits_states_and_what_they_become() -> None:
    # submitit's watcher counts these as "not done"; PREEMPTED among them, so its result() waits
    # for ever on a job that will not come back (docs/slurm-notes.md). Ours does not.
    submitit_core = pytest.importorskip("submitit.core.core", reason="pip install 'pytest-mlexp[slurm]'")
    import inspect

    source = inspect.getsource(submitit_core.InfoWatcher.is_done)
    not_done = ["READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED"]
    assert all(f'"{s}"' in source for s in not_done)
    assert [job_end(s) for s in not_done] == [None, None, None, None, None, None, "preempted"]

    assert job_end("COMPLETED") == "completed" and job_end("FAILED") == "failed"
    assert job_end("TIMEOUT") == "timeout" and job_end("DEADLINE") == "timeout"
    assert job_end("NODE_FAIL") == "lost_worker" and job_end("BOOT_FAIL") == "lost_worker"
    assert job_end("CANCELLED by 0") == "cancelled" and job_end("CANCELLED+") == "cancelled"
    assert job_end("OUT_OF_MEMORY") == "out_of_memory"
    assert job_end("SUSPENDED") is None and job_end("") is None


def test_job_ids_from_sacct() -> None:
    assert expand_job_id("12_[0-2%3]") == ["12_0", "12_1", "12_2"]  # pending tasks, folded
    assert expand_job_id("12_[1,4-5]") == ["12_1", "12_4", "12_5"]
    assert expand_job_id("12_3") == ["12_3"] and expand_job_id("12") == ["12"]


def test_one_sacct_call_for_every_job_on_a_grid() -> None:
    calls: list[list[str]] = []
    lines = "7_0|COMPLETED\n7_[1-2%3]|PENDING\n8|CANCELLED by 0\n"

    def fake_run(cmd: list[str], **kwargs: Any) -> Any:
        calls.append(cmd)
        return SimpleNamespace(returncode=0, stdout=lines, stderr="")

    watch = SacctWatch(every_s=3600, run=fake_run)
    watch.add(["7_0", "7_1", "7_2", "8"])
    assert watch.state("7_2") == "PENDING" and watch.state("8") == "CANCELLED by 0"
    assert watch.state("7_0") == "COMPLETED" and watch.state("9") == "UNKNOWN"
    assert calls == [["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", "7,8"]]  # once

    def failing(cmd: list[str], **kwargs: Any) -> Any:
        return SimpleNamespace(returncode=1, stdout="", stderr="sacct: error: slurmdbd not responding")

    watch = SacctWatch(every_s=0, run=failing)
    watch.add(["5"])
    assert watch.state("5") == "UNKNOWN" and watch.error == "sacct: error: slurmdbd not responding"


# --- a job's end, mapped (fake result files and sacct) ----------------------------------------------------
class Recorder:
    def __init__(self, state: str) -> None:
        self.state = state
        self.scancelled: list[list[str]] = []

    def run(self, cmd: list[str], **kwargs: Any) -> Any:
        if cmd[0] == "scancel":
            self.scancelled.append(cmd[1:])
            return SimpleNamespace(returncode=0, stdout="", stderr="")
        job = cmd[-1]
        return SimpleNamespace(returncode=0, stdout=f"{job}|{self.state}\n", stderr="")


def _call(tmp_path: Path, job_id: str = "41", log: str = "") -> SlurmCall:
    paths = SimpleNamespace(
        result_pickle=tmp_path / f"{job_id}_0_result.pkl",
        stdout=tmp_path / f"{job_id}_0_log.out",
        stderr=tmp_path / f"{job_id}_0_log.err",
    )
    if log:
        paths.stdout.write_text(log)
    return SlurmCall(job=SimpleNamespace(paths=paths), job_id=job_id, attempt=1, limit="2 min")


@pytest.fixture
def executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(state: str) -> tuple[SlurmExecutor, Recorder]:
        rec = Recorder(state)
        ex = SlurmExecutor(folder=tmp_path / "base", sacct_every_s=0)
        ex.watch = SacctWatch(every_s=0, run=rec.run)
        monkeypatch.setattr(slurm_mod.subprocess, "run", rec.run)  # scancel
        return ex, rec

    return make


def test_a_result_file_is_the_outcome(executor: Any, tmp_path: Path) -> None:
    ex, _ = executor("RUNNING")
    call = _call(tmp_path, log="submitit INFO (2026-01-01 00:00:00,000) - Starting\nprinted by the handler\n")
    with pytest.raises(NotYet):
        ex.wait(call, 0.01)
    error = {"kind": "handler", "message": "boom", "traceback": "tb"}
    failed = {"seed": 0, "status": "error", "error": error}
    call.job.paths.result_pickle.write_bytes(pickle.dumps(("success", failed)))
    data = ex.wait(call, 1)
    assert data["error"]["output"] == "printed by the handler\n"  # without submitit's own lines


def test_errors_of_the_job_itself(executor: Any, tmp_path: Path) -> None:
    ex, _ = executor("FAILED")
    call = _call(tmp_path)
    trace = 'Traceback (most recent call last):\n  File "x.py"\nModuleNotFoundError: No module named "torch"'
    call.job.paths.result_pickle.write_bytes(pickle.dumps(("error", trace)))
    with pytest.raises(RemoteFailed) as failed:
        ex.wait(call, 1)
    assert failed.value.traceback == trace and failed.value.type_name == "ModuleNotFoundError"

    trace = "UncompletedJobError: Job not requeued because: timed-out and not checkpointable."
    call.job.paths.result_pickle.write_bytes(pickle.dumps(("error", trace)))
    with pytest.raises(RemoteTimeout):  # submitit's own USR2 handler, before ours was installed
        ex.wait(call, 1)


@pytest.mark.parametrize(
    ("state", "raised", "scancel"),
    [
        ("PREEMPTED", RemotePreempted, True),
        ("NODE_FAIL", RemoteLost, True),
        ("TIMEOUT", RemoteTimeout, False),
        ("CANCELLED by 0", RemoteCancelled, False),
        ("OUT_OF_MEMORY", RemoteError, False),
    ],
)
def test_an_ended_job_without_a_result(
    executor: Any, tmp_path: Path, state: str, raised: type[Exception], scancel: bool
) -> None:
    ex, rec = executor(state)
    call = _call(tmp_path, log="last words\n")
    ex.watch.add([call.job_id])
    with pytest.raises(raised) as info:
        ex.wait(call, 5)
    assert isinstance(info.value, RemoteError) and info.value.traceback == "last words\n"
    if state == "OUT_OF_MEMORY":
        assert info.value.kind == "out_of_memory" and "resources.memory" in str(info.value)
    if state.startswith("CANCELLED"):
        assert "outside this session" in str(info.value) and "not retried" in str(info.value)
    # A preempted or failed job is cancelled for good before it is retried (--no-requeue aside).
    assert rec.scancelled == ([["41"]] if scancel else [])


def test_our_own_cancel_is_not_a_persons(executor: Any, tmp_path: Path) -> None:
    ex, rec = executor("CANCELLED by 0")
    call = _call(tmp_path)
    ex.watch.add([call.job_id])
    ex.cancel_call(call)
    assert rec.scancelled == [["41"]]
    with pytest.raises(NotYet):  # the session's own cancel: its handle says cancelled
        ex.wait(call, 1)


def test_a_finished_job_whose_result_never_shows_is_lost(
    executor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slurm_mod, "RESULT_GRACE_S", 0.0)
    ex, _ = executor("COMPLETED")
    call = _call(tmp_path)
    ex.watch.add([call.job_id])
    with pytest.raises(RemoteLost, match="without writing a result"):
        ex.wait(call, 5)


# --- the seeds of an item as one job array ----------------------------------------------------------------
class FakeSbatch(SlurmExecutor):
    """Records every submission; the jobs finish at once (their result files exist)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(folder=tmp / "base", sacct_every_s=3600)
        self.tmp = tmp
        self.batches: list[list[tuple[str, int]]] = []
        self.watch = SacctWatch(every_s=3600, run=lambda *a, **k: SimpleNamespace(returncode=0, stdout=""))
        self.gate = threading.Event()
        self.gate.set()

    def check(self) -> None:
        return None

    def _sbatch(self, members: Any, attempt: int) -> list[SlurmCall]:
        self.gate.wait(30)
        self.batches.append([(h.job.task.sub_id, h.job.task.seed) for h in members])
        calls = []
        for i, h in enumerate(members):
            job_id = f"{len(self.batches)}_{i}" if len(members) > 1 else str(len(self.batches))
            call = _call(self.tmp, job_id)
            out = {"seed": h.job.task.seed, "status": "ok", "result": {"metrics": {"job": job_id}}}
            call.job.paths.result_pickle.write_bytes(pickle.dumps(("success", out)))
            calls.append(SlurmCall(job=call.job, job_id=job_id, attempt=attempt, limit=None))
        return calls


def test_the_seeds_of_an_item_are_one_submission(tmp_path: Path) -> None:
    ex = FakeSbatch(tmp_path)
    ex.gate.clear()  # every worker thread has its seed before the first sbatch returns
    handles = ex.submit_all([Job(make_task(tmp_path, "e1", "", seed=s)) for s in (0, 1, 2)])
    single = ex.submit(Job(make_task(tmp_path, "e2", "", seed=0)))
    ex.gate.set()
    jobs = [h.result(30).result["metrics"]["job"] for h in handles]  # type: ignore[index]
    assert single.result(30).ok
    ex.close()
    array = next(b for b in ex.batches if b[0][0] == "e1")
    assert array == [("e1", 0), ("e1", 1), ("e1", 2)]
    assert len(ex.batches) == 2  # the array and the single job: nothing else
    assert jobs == [j.rsplit("_", 1)[0] + f"_{i}" for i, j in enumerate(jobs)]  # one array id


def test_missing_sbatch_fails_every_job_at_once_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands
    ex = SlurmExecutor(folder=tmp_path / "base")
    outs = [h.result(0) for h in ex.submit_all([Job(make_task(tmp_path, "e", "", seed=s)) for s in (0, 1)])]
    ex.close()
    for out in outs:
        assert out.status == "infra_error" and out.error is not None and out.error["kind"] == "setup"
        assert "sbatch" in out.error["message"]
        assert 'pip install "pytest-mlexp[slurm]"' in out.error["message"]
    assert not (tmp_path / "base").exists()  # nothing was started


def test_folders_of_dead_sessions_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"vm-{dead.pid}-abc").mkdir()
    (tmp_path / f"vm-{os.getpid()}-abc").mkdir()  # alive: this session
    (tmp_path / f"other-{dead.pid}-abc").mkdir()  # another host's: not ours to judge
    removed = remove_stale_folders(tmp_path, "vm")
    assert [p.name for p in removed] == [f"vm-{dead.pid}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"other-{dead.pid}-abc", f"vm-{os.getpid()}-abc"]


def test_the_session_folder_is_owner_only_and_removed(tmp_path: Path) -> None:
    ex = SlurmExecutor(folder=tmp_path / "base")
    ex.start()
    assert ex.folder is not None and (ex.folder.stat().st_mode & 0o777) == 0o700
    folder = ex.folder
    ex.stop()
    assert not folder.exists()


# --- the job side: time limits ------------------------------------------------------------------------
JOB_HANDLER = """
import os, time
from pathlib import Path

def slow(runner):
    Path(os.environ["MLEXP_TEST_STARTED"]).write_text("")
    time.sleep(60)
    return {"metrics": {"done": 1}}

def fast(runner):
    return {"metrics": {"done": 1}}

def stubborn(runner):
    try:
        time.sleep(60)
    except Exception:  # a handler that swallows errors does not swallow the time limit
        return {"metrics": {"swallowed": 1}}
"""


def _in_job(tmp_path: Path, function: str, settings: dict[str, Any], *, usr2: bool = False) -> Any:
    """run_in_job in a process of its own (it sets signal handlers, as in a job)."""
    task = make_task(tmp_path, function, JOB_HANDLER)
    (tmp_path / "task.json").write_text(json.dumps(task.to_dict()))
    started = tmp_path / f"started-{function}"
    started.unlink(missing_ok=True)
    code = textwrap.dedent(
        f"""
        import json, sys
        from pytest_mlexp.executors.slurm_job import run_in_job
        task = json.load(open({str(tmp_path / "task.json")!r}))
        out = run_in_job(task, None, {settings!r})
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "MLEXP_TEST_STARTED": str(started)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    if usr2:
        deadline = time.monotonic() + 60  # a hang guard
        while not started.exists():  # the handler runs: our USR2 handler is in place
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR2)  # what Slurm sends before the job's time limit
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_the_job_stops_the_handler_at_resources_timeout(tmp_path: Path) -> None:
    out = _in_job(tmp_path, "slow", {"timeout_s": 0.5, "limit": "1 min"})
    assert out["status"] == "infra_error" and out["error"]["kind"] == "timeout"
    assert out["error"]["message"] == "exceeded resources.timeout of 0.5 s on Slurm; the handler was stopped"
    assert "in slow" in out["error"]["traceback"]  # where the handler was

    out = _in_job(tmp_path, "stubborn", {"timeout_s": 0.5, "limit": "1 min"})
    assert out["status"] == "infra_error" and out["error"]["kind"] == "timeout"

    assert _in_job(tmp_path, "fast", {"timeout_s": 30, "limit": "1 min"})["status"] == "ok"


def test_slurms_warning_signal_is_a_timeout(tmp_path: Path) -> None:
    out = _in_job(tmp_path, "slow", {"timeout_s": None, "limit": "5 min"}, usr2=True)
    assert out["status"] == "infra_error" and out["error"]["kind"] == "timeout"
    assert out["error"]["message"] == "reached Slurm's time limit (5 min); the handler was stopped"


def test_missing_submitit_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = slurm_mod.importlib.util.find_spec
    monkeypatch.setattr(
        slurm_mod.importlib.util, "find_spec", lambda name, *a: None if name == "submitit" else real(name, *a)
    )
    ex = SlurmExecutor(folder=tmp_path / "base")
    out = ex.submit(Job(make_task(tmp_path, "e", ""))).result(0)
    ex.close()
    assert out.error is not None and out.error["kind"] == "setup"
    assert 'needs submitit, which is not installed: pip install "pytest-mlexp[slurm]"' in out.error["message"]
