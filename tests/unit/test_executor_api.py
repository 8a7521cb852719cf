"""The executor API a third party builds on (SPEC section 12), with fakes: the default kill, timeouts
in run_job, the remote back-end base class, the artifact round trip, the signal-handler helper."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import (
    FutureHandle,
    Job,
    PoolExecutor,
    RemoteExecutor,
    SeedOutcome,
    keep_signal_handlers,
    receive_outcome,
    run_task_with_files,
)
from pytest_mlexp.executors.backend import (
    NotYet,
    RemoteCancelled,
    RemoteError,
    RemoteFailed,
    RemoteLost,
    RemotePreempted,
    RemoteTimeout,
)
from pytest_mlexp.runner import ArtifactError
from tests.unit.test_executors import make_task


def _ok(seed: int, **metrics: Any) -> dict[str, Any]:
    return {"seed": seed, "status": "ok", "result": {"metrics": dict(metrics)}}


# --- PoolExecutor: the default kill -------------------------------------------------------------------
class NoKill(PoolExecutor):
    """A third party's executor that never wrote kill(): its work cannot be stopped."""

    name = "nokill"

    def __init__(self) -> None:
        super().__init__(concurrency=2)
        self.running = threading.Barrier(3)  # both jobs and the test
        self.release = threading.Event()

    def run_job(self, handle: FutureHandle, attempt: int) -> dict[str, Any]:
        self.running.wait(30)
        self.release.wait(30)  # a hang guard: the test releases it
        return _ok(handle.job.task.seed)


def test_the_default_kill_warns_once_and_says_the_work_may_still_run(tmp_path: Path) -> None:
    pool = NoKill()
    handles = [pool.submit(Job(make_task(tmp_path, "a", "", seed=s))) for s in (0, 1)]
    pool.running.wait(30)  # both are running
    with pytest.warns(RuntimeWarning, match="work may still be running") as caught:
        pool.close()
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1  # once
    for handle in handles:
        out = handle.result(30)
        assert out.status == "infra_error" and out.error is not None
        assert out.error["kind"] == "cancelled"
        assert "may still run" in out.error["message"] and "nokill" in out.error["message"]
    pool.release.set()


def test_a_warnings_filter_set_to_error_never_breaks_cancellation(tmp_path: Path) -> None:
    pool = NoKill()
    handles = [pool.submit(Job(make_task(tmp_path, "a", "", seed=s))) for s in (0, 1)]
    pool.running.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.close()  # the warning cannot be shown, and still every job is cancelled
    assert all(h.result(30).error["kind"] == "cancelled" for h in handles)  # type: ignore[index]
    pool.release.set()


def test_an_executor_with_a_kill_gets_the_plain_cancelled_outcome(tmp_path: Path) -> None:
    class WithKill(NoKill):
        def kill(self, handle: FutureHandle) -> None:
            self.release.set()

    pool = WithKill()
    handles = [pool.submit(Job(make_task(tmp_path, "a", "", seed=s))) for s in (0, 1)]
    pool.running.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        pool.close()
    for handle in handles:
        error = handle.result(30).error
        assert error is not None and error["kind"] == "cancelled" and "may still run" not in error["message"]


# --- PoolExecutor: a timeout that ran out in run_job ---------------------------------------------------
class Waits(PoolExecutor):
    name = "waits"

    def __init__(self, how: str) -> None:
        super().__init__(concurrency=1)
        self.how = how
        self.attempts = 0

    def run_job(self, handle: FutureHandle, attempt: int) -> dict[str, Any]:
        self.attempts += 1
        task = handle.job.task
        if self.how == "subprocess":  # the README sketch's srun call, with its timeout
            cmd = [sys.executable, "-c", "import time; time.sleep(30)"]
            subprocess.run(cmd, timeout=task.timeout, check=False)
        else:
            import concurrent.futures

            never: concurrent.futures.Future[None] = concurrent.futures.Future()
            never.result(timeout=task.timeout)
        return _ok(task.seed)


@pytest.mark.parametrize("how", ["subprocess", "future"])
def test_an_expired_timeout_in_run_job_is_an_infra_timeout_never_retried(tmp_path: Path, how: str) -> None:
    pool = Waits(how)
    task = make_task(tmp_path, "slow", "", timeout=0.2)
    out = pool.submit(Job(task, {"retries": 2})).result(60)
    pool.close()
    assert out.status == "infra_error" and out.error is not None
    assert out.error["kind"] == "timeout" and out.error["type"] == "Timeout"
    assert "exceeded resources.timeout of 0.2 s in the waits executor" in out.error["message"]
    assert pool.attempts == 1  # a timeout is never retried


# --- RemoteExecutor: submit, poll, map, bring back ---------------------------------------------------
class FakeCall:
    def __init__(self, handle: FutureHandle, attempt: int, steps: list[Any]) -> None:
        self.handle = handle
        self.attempt = attempt
        self.steps = steps  # what each wait() does, in turn: an exception to raise or a result
        self.cancelled = threading.Event()


class FakeRemote(RemoteExecutor):
    """A back end scripted per sub-experiment: one list of wait() steps per attempt."""

    name = "fake"
    where = "on the fake back end"
    poll_s = 0.05

    def __init__(
        self,
        script: Mapping[str, list[list[Any]]],
        *,
        problem: tuple[str, str] | None = None,
        start_error: Exception | None = None,
        launch_error: Exception | None = None,
    ) -> None:
        super().__init__(concurrency=4)
        self.script = {k: [list(a) for a in v] for k, v in script.items()}
        self._fake_problem = problem
        self.start_error = start_error
        self.launch_error = launch_error
        self.launched: list[tuple[str, int]] = []
        self.cancelled: list[str] = []
        self.started = self.stopped = 0
        self.waiting = threading.Event()

    def check(self) -> tuple[str, str] | None:
        return self._fake_problem

    def start(self) -> None:
        self.started += 1
        if self.start_error is not None:
            raise self.start_error

    def stop(self) -> None:
        self.stopped += 1

    def launch(self, handle: FutureHandle, attempt: int) -> FakeCall:
        self.launched.append((handle.job.task.sub_id, attempt))
        if self.launch_error is not None:
            raise self.launch_error
        return FakeCall(handle, attempt, self.script[handle.job.task.sub_id][attempt - 1])

    def wait(self, call: FakeCall, timeout: float) -> Any:
        self.waiting.set()
        if not call.steps:  # runs until cancelled
            if call.cancelled.wait(timeout):
                raise RemoteCancelled("should not be seen: the handle is cancelled")
            raise NotYet()
        step = call.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        if step == "not yet":
            raise NotYet()
        return _ok(call.handle.job.task.seed, attempt=call.attempt)

    def cancel_call(self, call: FakeCall) -> None:
        self.cancelled.append(call.handle.job.task.sub_id)
        call.cancelled.set()


def _run(tmp_path: Path, ex: FakeRemote, sub: str, retries: int = 0) -> SeedOutcome:
    return ex.submit(Job(make_task(tmp_path, sub, ""), {"retries": retries})).result(30)


def test_remote_failures_map_to_outcomes_and_retries(tmp_path: Path) -> None:
    ex = FakeRemote(
        {
            "ok": [["not yet", "not yet", "done"]],
            "slow": [[RemoteTimeout("the limit")]],
            "pre": [[RemotePreempted("node taken")], ["done"]],
            "lost": [[RemoteLost("gone")], [RemoteLost("gone again")]],
            "scancel": [[RemoteCancelled("someone ran scancel")]],
            "oom": [[RemoteError("out of memory", "log tail", kind="out_of_memory")]],
            "broken": [
                [RemoteFailed("failed outside the handler", "Traceback\nImportError: x", "ImportError")]
            ],
            "raised": [[ValueError("from our remote code")]],
        }
    )
    ok = _run(tmp_path, ex, "ok")
    assert ok.ok and ok.result is not None and ok.result["metrics"] == {"attempt": 1}

    slow = _run(tmp_path, ex, "slow", retries=3)
    assert slow.error is not None and slow.error["kind"] == "timeout"
    assert slow.error["message"] == "ran out of time on the fake back end (the limit)"
    assert ("slow", 2) not in ex.launched  # never retried

    pre = _run(tmp_path, ex, "pre", retries=1)
    assert pre.ok and pre.result is not None and pre.result["metrics"] == {"attempt": 2}

    lost = _run(tmp_path, ex, "lost", retries=1)
    assert lost.error is not None and lost.error["kind"] == "lost_worker" and lost.error["attempts"] == 2
    assert lost.error["message"] == "gone again (attempt 2 of 2)"

    person = _run(tmp_path, ex, "scancel", retries=2)
    assert person.status == "infra_error" and person.error is not None
    assert person.error["kind"] == "cancelled" and person.error["message"] == "someone ran scancel"
    assert ("scancel", 2) not in ex.launched  # a person's cancel is not retried

    oom = _run(tmp_path, ex, "oom", retries=2)
    assert oom.error is not None and oom.error["kind"] == "out_of_memory"
    assert oom.error["traceback"] == "log tail"
    assert ("oom", 2) not in ex.launched

    broken = _run(tmp_path, ex, "broken")
    assert broken.status == "error" and broken.error is not None
    assert broken.error["kind"] == "remote" and broken.error["type"] == "ImportError"
    assert broken.error["traceback"].endswith("ImportError: x")

    raised = _run(tmp_path, ex, "raised")
    assert raised.status == "error" and raised.error is not None and raised.error["kind"] == "remote"
    assert "ValueError: from our remote code" in raised.error["traceback"]

    ex.close()
    assert ex.started == 1 and ex.stopped == 1


def test_a_problem_fails_every_job_at_once_without_starting(tmp_path: Path) -> None:
    ex = FakeRemote({}, problem=("setup", "install the thing: pip install it"))
    handles = ex.submit_all([Job(make_task(tmp_path, "a", "", seed=s)) for s in (0, 1, 2)])
    outs = [h.result(0) for h in handles]  # already done: no wait at all
    assert [o.error["kind"] for o in outs if o.error] == ["setup"] * 3
    assert all("pip install it" in o.error["message"] for o in outs if o.error)
    ex.close()
    assert ex.launched == [] and ex.started == 0 and ex.stopped == 0


def test_start_and_launch_failures_are_infra_errors(tmp_path: Path) -> None:
    ex = FakeRemote({"a": [["done"]]}, start_error=RuntimeError("no app"))
    out = _run(tmp_path, ex, "a")
    assert out.error is not None and out.error["kind"] == "setup" and "no app" in out.error["message"]
    ex.close()
    assert ex.stopped == 0  # never started

    ex = FakeRemote({"a": [["done"]]}, launch_error=RuntimeError("sbatch: error: invalid partition"))
    out = _run(tmp_path, ex, "a", retries=2)
    assert out.error is not None and out.error["kind"] == "submit"
    assert out.error["message"] == (
        "could not submit the job on the fake back end: sbatch: error: invalid partition"
    )
    assert ex.launched == [("a", 1)]
    ex.close()


def test_a_call_past_resources_timeout_is_cancelled_unless_the_back_end_enforces_it(tmp_path: Path) -> None:
    ex = FakeRemote({"forever": [[]]})
    out = ex.submit(Job(make_task(tmp_path, "forever", "", timeout=0.3), {"retries": 1})).result(30)
    assert out.error is not None and out.error["kind"] == "timeout"
    assert out.error["message"] == (
        "exceeded resources.timeout of 0.3 s on the fake back end; the call was cancelled"
    )
    assert ex.cancelled == ["forever"] and ex.launched == [("forever", 1)]  # not retried
    ex.close()

    class Enforcing(FakeRemote):
        enforces_timeout = True  # it would raise RemoteTimeout itself

    ex = Enforcing({"late": [["not yet"] * 10 + ["done"]]})
    out = ex.submit(Job(make_task(tmp_path, "late", "", timeout=0.01))).result(30)
    assert out.ok and ex.cancelled == []
    ex.close()


def test_cancelling_a_waiting_job_cancels_its_call(tmp_path: Path) -> None:
    ex = FakeRemote({"forever": [[]]})
    handle = ex.submit(Job(make_task(tmp_path, "forever", "")))
    assert ex.waiting.wait(30)
    handle.cancel()
    out = handle.result(30)
    assert out.error is not None and out.error["kind"] == "cancelled"
    assert ex.cancelled == ["forever"]
    ex.close()


# --- artifacts for back ends without a shared filesystem ------------------------------------------------
HANDLER = """
def art(runner):
    runner.results.save_artifact("curve.txt", "points")
    runner.results.save_artifact("big.bin", b"x" * 5000)
    return {"metrics": {"acc": 0.9}}
"""


def test_artifacts_travel_back_with_the_outcome(tmp_path: Path) -> None:
    local = make_task(tmp_path, "art", HANDLER)
    local.module_name = "mlexp_test_api_artifacts"  # imported here: a name no other test uses
    remote = local.to_dict()  # the other side's folders: nothing of them is visible here
    elsewhere = tmp_path / "elsewhere"
    remote["plan_root"] = str(elsewhere)
    remote["artifacts_dir"] = str(elsewhere / "artifacts" / "art")
    remote["workdir"] = str(elsewhere / "work")

    data = run_task_with_files(remote, max_artifact_bytes=1000)
    assert set(data["artifact_files"]) == {"artifacts/art/curve.txt"}  # the big one stays
    assert data["artifact_volume"] == {"artifacts/art/big.bin": ""}

    out = receive_outcome(local, data)
    assert out.ok and out.result is not None
    assert (Path(local.plan_root) / "artifacts/art/curve.txt").read_text() == "points"
    assert out.result["artifacts"] == ["artifacts/art/curve.txt", "(not kept: artifacts/art/big.bin)"]
    assert not (Path(local.plan_root) / "artifacts/art/big.bin").exists()


def test_returned_files_never_land_outside_the_plan_folder(tmp_path: Path) -> None:
    task = make_task(tmp_path, "art", HANDLER)
    data = {**_ok(0), "artifact_files": {"../../escaped.txt": b"no"}}
    with pytest.raises(ArtifactError):
        receive_outcome(task, data)
    assert not (tmp_path.parent / "escaped.txt").exists()


# --- the plugin's signal handlers -------------------------------------------------------------------
def test_keep_signal_handlers_puts_back_what_a_library_replaced() -> None:
    def ours(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    before_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with keep_signal_handlers() as restored:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is before_int
        assert restored == ["SIGTERM"]

        with keep_signal_handlers() as restored:
            pass  # a library that leaves them alone
        assert restored == []
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_keep_signal_handlers_outside_the_main_thread_just_runs_the_block() -> None:
    seen: list[Any] = []

    def body() -> None:
        with keep_signal_handlers() as restored:
            seen.append("ran")
        seen.append(restored)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    assert seen == ["ran", []]
