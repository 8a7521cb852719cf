"""Executors below pytest: the pool, the process worker, GPU pinning, Modal definitions offline."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.execution import Task
from pytest_mlexp.executors import BUILTIN_EXECUTORS, UnknownExecutor
from pytest_mlexp.executors.base import FutureHandle, Job, PoolExecutor, infra_outcome
from pytest_mlexp.executors.modal import (
    NotYet,
    RemoteLost,
    RemotePreempted,
    RemoteTimeout,
    credentials_problem,
    function_options,
    handler_package,
    translate_modal_error,
)
from pytest_mlexp.executors.process import GpuPool, ProcessExecutor, gpus_wanted, visible_gpus
from pytest_mlexp.model import gpu_request
from pytest_mlexp.remote import FixtureError, pack_fixtures, run_task, unpack_fixtures


def make_task(tmp: Path, function: str, source: str, seed: int = 0, timeout: float | None = None) -> Task:
    (tmp / "handlers_mod.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return Task(
        experiment_id="e",
        sub_id=function,
        point=None,
        seed=seed,
        params={},
        stub=False,
        root=str(tmp),
        plan_root=str(tmp),
        module_path="handlers_mod.py",
        module_name="mlexp_test_handlers_mod",
        function=function,
        artifacts_dir=str(tmp / "artifacts" / function),
        workdir=str(tmp / "work"),
        timeout=timeout,
    )


# --- the pool ----------------------------------------------------------------------------------------
class ScriptedPool(PoolExecutor):
    """Outcomes from a script: one status per attempt; records the order jobs start in."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]], concurrency: int = 1) -> None:
        super().__init__(concurrency=concurrency)
        self.script = script
        self.order: list[str] = []
        self.release = threading.Event()
        self.blocked = threading.Event()  # a "block" step is running: the slot is busy
        self.killed: list[str] = []

    def run_job(self, handle: FutureHandle, attempt: int) -> dict[str, Any]:
        task = handle.job.task
        self.order.append(task.sub_id)
        step = self.script.get(task.sub_id, ["ok"])[attempt - 1]
        if step == "block":
            self.blocked.set()
            self.release.wait(30)  # a hang guard: the test or kill() releases it
            return {"seed": task.seed, "status": "ok", "result": {"metrics": {}}}
        if step == "ok":
            return {"seed": task.seed, "status": "ok", "result": {"metrics": {"attempt": attempt}}}
        return infra_outcome(task, step, step)

    def kill(self, handle: FutureHandle) -> None:
        self.killed.append(handle.job.task.sub_id)
        self.release.set()


def _job(tmp: Path, sub: str, priority: int = 0, retries: int = 0) -> Job:
    task = make_task(tmp, sub, "")
    return Job(task, {"retries": retries} if retries else {}, priority=priority)


def test_pool_retries_lost_workers_but_never_timeouts(tmp_path: Path) -> None:
    pool = ScriptedPool(
        {"a": ["lost_worker", "preempted", "ok"], "b": ["timeout", "ok"], "c": ["lost_worker"] * 2}
    )
    a = pool.submit(_job(tmp_path, "a", retries=2)).result(30)
    b = pool.submit(_job(tmp_path, "b", retries=3)).result(30)
    c = pool.submit(_job(tmp_path, "c", retries=1)).result(30)
    pool.close()
    assert a.status == "ok" and a.result is not None and a.result["metrics"] == {"attempt": 3}
    assert b.status == "infra_error" and b.error is not None and b.error["kind"] == "timeout"
    assert c.error is not None
    assert c.error == {**c.error, "kind": "lost_worker", "type": "LostWorker", "attempts": 2}


def test_pool_runs_lowest_priority_first_and_cancels_on_close(tmp_path: Path) -> None:
    pool = ScriptedPool({"first": ["block"]}, concurrency=1)
    first = pool.submit(_job(tmp_path, "first", priority=0))
    assert pool.blocked.wait(30)  # the only slot is busy from here on
    late = pool.submit(_job(tmp_path, "late", priority=9))
    soon = pool.submit(_job(tmp_path, "soon", priority=1))
    pool.release.set()
    assert soon.result(30).status == "ok" and late.result(30).status == "ok"
    assert pool.order == ["first", "soon", "late"]
    assert first.done()

    pool2 = ScriptedPool({"run": ["block"]}, concurrency=1)
    running = pool2.submit(_job(tmp_path, "run"))
    assert pool2.blocked.wait(30)
    queued = pool2.submit(_job(tmp_path, "queued"))
    pool2.close()
    for handle in (running, queued):
        out = handle.result(30)
        assert out.status == "infra_error" and out.error is not None and out.error["kind"] == "cancelled"
    assert pool2.killed == ["run"]  # the running one was killed, the queued one never started
    assert pool2.order == ["run"]


# --- GPUs --------------------------------------------------------------------------------------------
def test_visible_gpus_from_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2, 3"}) == ["0", "2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_gpu_pool_gives_distinct_gpus_round_robin_then_shares() -> None:
    pool = GpuPool(["0", "1", "2"], slots=6)  # --mlexp-concurrency 6 on 3 GPUs: two a GPU
    assert pool.per_gpu == 2
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    assert a is not None and b is not None and c is not None
    assert sorted(a + b + c) == ["0", "1", "2"]
    pool.release(b)
    assert pool.acquire() == b  # the free one, not a busy one
    two = pool.acquire(2)
    assert two is not None and len(set(two)) == 2  # shared, still distinct within a worker
    assert GpuPool([]).acquire() == []
    assert GpuPool(["0", "1"]).per_gpu == 1 and GpuPool(["0", "1"], slots=3).per_gpu == 2


HANG_GUARD_S = 60.0


def wait_for(predicate: Any, what: str) -> None:
    """Poll ``predicate`` until it holds (the guard only stops a hang; it asserts no speed)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_a_seed_that_wants_several_gpus_waits_for_them_in_its_turn() -> None:
    # A slot per GPU (the default concurrency): two seeds that want both GPUs used to run at
    # once, each pinned to both (four claims on two GPUs).
    pool = GpuPool(["0", "1"])
    first = pool.acquire(2)
    assert first is not None and sorted(first) == ["0", "1"]
    assert pool.acquire(2, cancelled=lambda: True) is None  # busy: it would wait
    got: list[list[str] | None] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(2)))
    waiter.start()
    wait_for(lambda: pool.waiting == 1, "the second seed to wait")
    pool.release(first[:1])
    # One GPU is free, but the seed that wants two came first: a seed that wants one waits too.
    assert pool.acquire(1, cancelled=lambda: True) is None
    pool.release(first[1:])
    waiter.join(HANG_GUARD_S)
    assert not waiter.is_alive() and got and sorted(got[0] or []) == ["0", "1"]
    assert pool.waiting == 0
    # Asking for more than there are gets them all (the executor says so in the outcome).
    assert pool.acquire(4, cancelled=lambda: True) is None  # still busy: waits, in turn
    pool.release(got[0] or [])
    assert sorted(pool.acquire(4) or []) == ["0", "1"]
    assert gpus_wanted({"gpu": "A100:2"}) == 2 and gpus_wanted({"gpu": "H100"}) == 1 and gpus_wanted({}) == 1
    # Read as Slurm reads it (model.gpu_request): "2" and "any:2" are two GPUs (were one here).
    assert gpus_wanted({"gpu": "2"}) == gpus_wanted({"gpu": "any:2"}) == gpus_wanted({"gpu": 2}) == 2
    assert gpu_request("A100-80GB:4") == (4, "A100-80GB") and gpu_request("gpu") == (1, None)
    assert gpu_request(True) == (0, None) and gpu_request(" ") == (0, None)


def test_process_workers_are_pinned_to_distinct_gpus(tmp_path: Path) -> None:
    # Both workers hold their GPU at once: each marks its start, then waits for the other's
    # mark (a barrier across processes; 60 s is only a hang guard).
    source = f"""
    import os, time
    from pathlib import Path
    def which_gpu(runner):
        marks = Path({str(tmp_path / "marks")!r})
        (marks / f"seed{{runner.seed}}").write_text("")
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2:
            assert time.monotonic() < deadline, "the two workers never ran at the same time"
            time.sleep(0.01)
        return {{"metrics": {{"gpu": os.environ["CUDA_VISIBLE_DEVICES"]}}}}
    """
    (tmp_path / "marks").mkdir()
    ex = ProcessExecutor(concurrency=2, gpus=["4", "7"])
    handles = [ex.submit(Job(make_task(tmp_path, "which_gpu", source, seed=s))) for s in (0, 1)]
    outs = [h.result(30) for h in handles]
    ex.close()
    assert sorted(o.result["metrics"]["gpu"] for o in outs if o.result is not None) == ["4", "7"]


# --- the worker entry point ----------------------------------------------------------------------------
def test_remote_main_keeps_the_protocol_clean_of_handler_output(tmp_path: Path) -> None:
    import subprocess

    source = "def chatty(runner):\n    print('{not json')\n    return {'metrics': {'x': 1}}\n"
    task = make_task(tmp_path, "chatty", source)
    (tmp_path / "task.json").write_text(json.dumps(task.to_dict()), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_mlexp.remote",
            str(tmp_path / "task.json"),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "{not json" in proc.stdout
    outcome = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert outcome["status"] == "ok" and outcome["result"]["metrics"] == {"x": 1}


def test_fixtures_travel_pickled_and_failures_name_the_fixture(tmp_path: Path) -> None:
    blob = pack_fixtures({"dataset": [1, 2, 3]}, "process")
    assert unpack_fixtures(blob) == {"dataset": [1, 2, 3]}
    expected = r"fixture 'lock' could not be sent to the process executor.*local executor"
    with pytest.raises(FixtureError, match=expected):
        pack_fixtures({"lock": threading.Lock()}, "process")
    bad = pickle.dumps({"dataset": b"not a pickle"})
    source = "def uses(runner, dataset):\n    return {'metrics': {'n': len(dataset)}}\n"
    task = make_task(tmp_path, "uses", source)
    out = run_task(task.to_dict(), bad)
    assert (
        out["status"] == "error"
        and out["error"]["kind"] == "fixture"
        and "'dataset'" in out["error"]["message"]
    )
    assert run_task(task.to_dict(), blob)["result"]["metrics"] == {"n": 3}


# --- Modal, offline ------------------------------------------------------------------------------------
def test_credentials_from_env_or_the_active_profile(tmp_path: Path) -> None:
    cfg = tmp_path / "modal.toml"
    base = {"MODAL_CONFIG_PATH": str(cfg)}
    problem = credentials_problem(base)
    assert (
        problem is not None
        and "modal token new" in problem
        and "MODAL_TOKEN_ID" in problem
        and str(cfg) in problem
    )
    assert credentials_problem({**base, "MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": "as-1"}) is None
    cfg.write_text('[other]\ntoken_id = "x"\n\n[me]\ntoken_id = "ak"\ntoken_secret = "as"\nactive = true\n')
    assert credentials_problem(base) is None
    assert credentials_problem({**base, "MODAL_PROFILE": "other"}) is not None  # that profile has no secret
    assert credentials_problem({"MODAL_CONFIG_PATH": str(tmp_path / "absent.toml")}) is not None


def test_function_options_from_resources() -> None:
    assert function_options(
        {"gpu": "A100-80GB", "timeout": 90.5, "memory": 4096, "cpu": 2, "retries": 3}
    ) == {
        "gpu": "A100-80GB",
        "timeout": 91,
        "memory": 4096,
        "cpu": 2.0,
    }
    assert function_options({}) == {}


def test_modal_errors_map_to_infra_kinds() -> None:
    pytest.importorskip("modal")
    from modal import exception as mx

    assert isinstance(translate_modal_error(mx.FunctionTimeoutError("t")), RemoteTimeout)
    assert isinstance(translate_modal_error(mx.TimeoutError()), NotYet)  # only our poll interval
    assert isinstance(translate_modal_error(mx.InternalFailure("x")), RemotePreempted)
    assert isinstance(translate_modal_error(mx.ExecutionError("x")), RemoteLost)
    user = ValueError("from the handler's own code")
    assert translate_modal_error(user) is user


def test_handler_package_names() -> None:
    root = Path("/proj")
    assert handler_package(root, "experiments") == ("experiments", "experiments")
    assert handler_package(root, "src/exps") == ("src.exps", "src/exps")
    assert handler_package(root, "my-experiments") == (None, "my-experiments")


def test_unknown_executor_message_lists_the_builtins() -> None:
    text = str(UnknownExecutor("sge"))
    assert "'sge'" in text and all(n in text for n in BUILTIN_EXECUTORS) and "pytest_mlexp_executor" in text


def test_a_handles_done_callbacks_run_once_before_it_reads_done_and_never_break_its_thread(
    tmp_path: Path,
) -> None:
    # The dispatcher withdraws queued work from such a callback (-x): whoever sees the handle
    # done must see the withdrawal made.
    task = make_task(tmp_path, "f", "def f(runner):\n    return {}\n")
    handle = FutureHandle(Job(task))
    seen: list[tuple[str, bool, str]] = []

    def look(h: FutureHandle) -> None:
        seen.append(("look", h.done(), h.result().status))  # result() inside: no deadlock

    def broken(h: FutureHandle) -> None:
        raise RuntimeError("a callback's bug")

    handle.add_done_callback(broken)
    handle.add_done_callback(look)
    assert handle.set_result(infra_outcome(task, "lost_worker", "gone"))
    assert seen == [("look", False, "infra_error")] and handle.done()
    assert not handle.set_result(infra_outcome(task, "timeout", "again"))  # once only
    handle.add_done_callback(look)  # already done: called at once
    assert seen[-1] == ("look", True, "infra_error") and len(seen) == 2
