"""Warm workers below pytest: the pool, the fork server, the worker loop, the wire and scratch.

Every test waits on marker files or on the pool's own answers, with generous hang guards; none
asserts on elapsed time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import wire
from pytest_mlexp.execution import Task
from pytest_mlexp.executors.base import Job
from pytest_mlexp.executors.process import ProcessExecutor
from pytest_mlexp.executors.workers import SeedRun, WorkerPool
from pytest_mlexp.procutil import alive
from pytest_mlexp.scratch import SessionScratch, sweep

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="warm workers need fork and Unix sockets")

HANG_GUARD_S = 60.0


def wait_for(predicate: Any, what: str, guard: float = HANG_GUARD_S) -> None:
    """Poll ``predicate`` until it holds (the guard only stops a hang; it asserts no speed)."""
    deadline = time.monotonic() + guard
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


class Handlers:
    """A handler module in a temp project, and tasks for its functions."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = root
        (root / "warm_handlers.py").write_text(textwrap.dedent(source), encoding="utf-8")
        (root / "marks").mkdir(exist_ok=True)

    def task(self, function: str, seed: int = 0, params: dict[str, Any] | None = None, **kw: Any) -> Task:
        return Task(
            experiment_id="e",
            sub_id=function,
            point=None,
            seed=seed,
            params=params or {},
            stub=False,
            root=str(self.root),
            plan_root=str(self.root),
            module_path="warm_handlers.py",
            module_name="warm_handlers",
            function=function,
            artifacts_dir=str(self.root / "artifacts" / function / f"seed{seed}"),
            workdir=str(self.root / "work" / f"{function}-seed{seed}"),
            **kw,
        )

    def imports(self) -> list[int]:
        path = self.root / "marks" / "imports"
        return [int(p) for p in path.read_text().split()] if path.exists() else []


# Each import of the module appends the importing process's pid: the module-level counter.
PREAMBLE = """
import os, sys, time
from pathlib import Path
MARKS = Path(__file__).parent / "marks"
with open(MARKS / "imports", "a") as fh:
    fh.write(f"{os.getpid()}\\n")
"""


def metrics(run: SeedRun) -> dict[str, Any]:
    assert run.outcome is not None, run
    assert run.outcome["status"] == "ok", run.outcome.get("error")
    result: dict[str, Any] = run.outcome["result"]["metrics"]
    return result


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    made = WorkerPool(size=1, cwd=str(tmp_path), scratch=SessionScratch(tmp_path / "scratch"))
    yield made
    made.close()


def test_a_warm_worker_imports_the_handler_module_once_across_seeds(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(
        tmp_path,
        PREAMBLE
        + """
def first(runner):
    return {"metrics": {"pid": os.getpid()}}

def second(runner):
    return {"metrics": {"pid": os.getpid()}}
""",
    )
    runs = [pool.run(h.task("first", s).to_dict()) for s in (0, 1, 2)]
    runs.append(pool.run(h.task("second", 0).to_dict()))
    pids = {metrics(r)["pid"] for r in runs}
    assert len(pids) == 1 and pids == {runs[0].pid}
    assert h.imports() == [runs[0].pid]  # four seeds, two handlers, one import


SEEDING = (
    PREAMBLE
    + """
import random
import numpy
import torch
KEPT = []

def draws(runner):
    params = runner.params
    if runner.seed == 0:
        # a deep change (refused: params are read-only at every depth), a change to what the
        # module keeps of them, and draws that move every generator on
        try:
            params["optim"]["lr"] *= 1000
        except TypeError:
            pass
        KEPT.append(params)
        random.random(); numpy.random.rand(5); torch.rand(5)
    else:
        assert all(kept is not params for kept in KEPT)  # a fresh copy, not the last seed's
    return {"metrics": {
        "pid": os.getpid(),
        "lr": params["optim"]["lr"],
        "layers": len(params["layers"]),
        "random": random.random(),
        "numpy": float(numpy.random.rand()),
        "torch": float(torch.rand(1)),
    }}
"""
)


def test_each_seed_starts_from_pristine_params_and_is_seeded_like_a_fresh_process(
    pool: WorkerPool, tmp_path: Path
) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("torch")
    h = Handlers(tmp_path, SEEDING)
    params = {"optim": {"lr": 0.01}, "layers": [32, 32]}
    warm = [metrics(pool.run(h.task("draws", s, params).to_dict())) for s in (0, 1)]
    assert warm[0]["pid"] == warm[1]["pid"]  # the same worker ran both seeds
    assert warm[1]["lr"] == 0.01 and warm[1]["layers"] == 2  # seed 1 sees the plan's values
    # Seed 1 as a fresh process runs it: the one-seed entry point, in a new interpreter.
    task_file, out_file = tmp_path / "task.json", tmp_path / "out.json"
    task_file.write_text(json.dumps(h.task("draws", 1, params).to_dict()), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pytest_mlexp.remote", str(task_file), str(out_file)], cwd=tmp_path, check=True
    )
    fresh = json.loads(out_file.read_text(encoding="utf-8"))["result"]["metrics"]
    assert fresh["pid"] != warm[1]["pid"]
    assert {k: warm[1][k] for k in ("random", "numpy", "torch")} == {
        k: fresh[k] for k in ("random", "numpy", "torch")
    }


STATE = (
    PREAMBLE
    + """
import signal

def spoil(runner):
    os.environ["CUDA_VISIBLE_DEVICES"] = "99"
    os.environ["SPOILED"] = "1"
    del os.environ["MLEXP_WORKER"]
    os.chdir(runner.workdir)
    sys.argv = ("train.py", "--spoiled")  # a tuple: the worker's own put-back must not choke on it
    signal.signal(signal.SIGTERM, lambda *a: None)
    signal.signal(signal.SIGPROF, lambda *a: None)
    signal.setitimer(signal.ITIMER_REAL, 3600)
    signal.setitimer(signal.ITIMER_PROF, 3600)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    sys.stdout.close()
    return {"metrics": {"pid": os.getpid()}}

def look(runner):
    print("stdout works again")
    return {"metrics": {
        "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "spoiled": os.environ.get("SPOILED"),
        "worker": os.environ.get("MLEXP_WORKER"),
        "cwd": os.getcwd(),
        "argv_spoiled": "--spoiled" in sys.argv,
        "sigterm_default": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
        "sigprof_default": signal.getsignal(signal.SIGPROF) is signal.SIG_DFL,
        "alarm": signal.getitimer(signal.ITIMER_REAL)[0],
        "prof_timer": signal.getitimer(signal.ITIMER_PROF)[0],
        "usr2_blocked": signal.SIGUSR2 in signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "log_mode": oct(os.fstat(1).st_mode & 0o777),
    }}
"""
)


def pinned_pool(tmp_path: Path) -> WorkerPool:
    """One warm worker whose environment pins it to the GPUs it is given."""
    return WorkerPool(
        size=1,
        cwd=str(tmp_path),
        env=lambda gpus: {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)},
        scratch=SessionScratch(tmp_path / "scratch"),
    )


def test_process_state_the_plugin_set_up_is_put_back_before_each_seed(tmp_path: Path) -> None:
    h = Handlers(tmp_path, STATE)
    pool = pinned_pool(tmp_path)
    try:
        spoiled = metrics(pool.run(h.task("spoil").to_dict(), gpus=["3"]))
        seen = metrics(pool.run(h.task("look").to_dict(), gpus=["3"]))
    finally:
        pool.close()
    assert seen["pid"] == spoiled["pid"]
    assert seen == {
        "pid": spoiled["pid"],
        "cuda": "3",
        "spoiled": None,
        "worker": "warm",
        "cwd": str(tmp_path),
        "argv_spoiled": False,
        "sigterm_default": True,
        "sigprof_default": True,
        "alarm": 0.0,
        "prof_timer": 0.0,
        "usr2_blocked": False,
        "log_mode": "0o600",  # the seed's output goes to a file only its owner may read
    }


IMPORT_TIME = (
    PREAMBLE
    + """
import signal
# What importing the module changes stays the worker's: the module is not imported again.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
signal.signal(signal.SIGUSR1, lambda *a: None)
os.chdir(Path(__file__).parent / "marks")

def look(runner):
    seed_set_before = os.environ.get("SEED_SET")
    os.environ["SEED_SET"] = "1"  # a seed's own change: gone for the next seed
    return {"metrics": {
        "pid": os.getpid(),
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "item": os.environ.get("ITEM"),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "seed_set_before": seed_set_before,
        "usr1_kept": signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL,
        "cwd": os.getcwd(),
    }}
"""
)


def test_what_the_module_import_changed_stays_and_each_seed_runs_in_the_environment_it_was_sent(
    tmp_path: Path,
) -> None:
    # The pytest process sends the environment of the moment each seed was submitted (its
    # item's fixtures' variables included): a worker started earlier runs the seed in it, keeps
    # its own GPU, and keeps what its module's import set (not imported again for seed 2).
    h = Handlers(tmp_path, IMPORT_TIME)
    pool = pinned_pool(tmp_path)
    given = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    try:
        seen = [
            metrics(pool.run(h.task("look", seed).to_dict(), gpus=["3"], environ={**given, "ITEM": item}))
            for seed, item in ((0, "s_a"), (1, "s_b"))
        ]
        worker_own = metrics(pool.run(h.task("look", 2).to_dict(), gpus=["3"]))
    finally:
        pool.close()
    assert seen[0]["pid"] == seen[1]["pid"] == worker_own["pid"]
    assert h.imports() == [seen[0]["pid"]]  # imported once
    for got, item in zip(seen, ("s_a", "s_b"), strict=True):
        assert got["item"] == item and got["cuda"] == "3" and got["cublas"] == ":4096:8"
        assert got["seed_set_before"] is None and got["usr1_kept"]
        assert got["cwd"] == str(tmp_path / "marks")
    assert worker_own["item"] is None and worker_own["cublas"] == ":4096:8"  # no environment sent


FOLDER = (
    PREAMBLE
    + """
def here(runner):
    os.chdir("/")  # a seed's own change: gone for the next seed
    return {"metrics": {"pid": os.getpid()}}

def where(runner):
    return {"metrics": {"pid": os.getpid(), "cwd": os.getcwd()}}
"""
)


def test_a_seed_runs_in_the_folder_it_was_sent_and_the_next_one_in_the_workers(tmp_path: Path) -> None:
    # The pytest process sends its folder where a fixture changed it (monkeypatch.chdir). The
    # first seed imports the module while in that folder: the import did not change the folder,
    # so the folder stays the seed's, not the worker's.
    h = Handlers(tmp_path, FOLDER)
    sent = tmp_path / "fixture-folder"
    sent.mkdir()
    pool = pinned_pool(tmp_path)
    try:
        first = metrics(pool.run(h.task("here", 0).to_dict(), cwd=str(sent)))
        runs = [
            metrics(pool.run(h.task("where", seed).to_dict(), cwd=folder))
            for seed, folder in ((1, str(sent)), (2, None))
        ]
        gone = pool.run(h.task("where", 3).to_dict(), cwd=str(tmp_path / "removed-meanwhile"))
    finally:
        pool.close()
    assert {first["pid"], *(r["pid"] for r in runs)} == {first["pid"]}  # one warm worker
    assert [r["cwd"] for r in runs] == [str(sent), str(tmp_path)]
    # A folder gone before its seed started: under local the handler would fail in it; this
    # seed did not run elsewhere instead (its relative files would land in the worker's folder).
    assert gone.outcome is not None and gone.outcome["status"] == "error"
    assert "removed-meanwhile, is gone" in gone.outcome["error"]["message"]


AT_EXIT = (
    PREAMBLE
    + """
import atexit
_csv = open(MARKS / f"rows-{os.getpid()}.csv", "a")  # buffered: flushed when it is closed

def _bye():
    _csv.close()
    (MARKS / f"bye-{os.getpid()}").write_text("")

atexit.register(_bye)

def row(runner):
    _csv.write(f"{runner.seed}\\n")
    return {"metrics": {"pid": os.getpid()}}
"""
)


@pytest.mark.parametrize("fresh", [False, True], ids=["warm", "isolate"])
def test_the_atexit_functions_of_a_handlers_module_run_when_its_worker_ends(
    tmp_path: Path, fresh: bool
) -> None:
    # Under local they run at the end of the pytest process; a worker ends with os._exit.
    h = Handlers(tmp_path, AT_EXIT)
    pool = WorkerPool(size=1, cwd=str(tmp_path), scratch=SessionScratch(tmp_path / "scratch"))
    try:
        pids = [metrics(pool.run(h.task("row", seed).to_dict(), fresh=fresh))["pid"] for seed in (0, 1)]
    finally:
        pool.close()
    marks = tmp_path / "marks"
    for pid in set(pids):
        wait_for(lambda pid=pid: (marks / f"bye-{pid}").exists(), f"the atexit function of worker {pid}")
    rows = sorted(line for pid in set(pids) for line in (marks / f"rows-{pid}.csv").read_text().split())
    assert rows == ["0", "1"]
    assert (len(set(pids)) == 2) is fresh


CRASHY = (
    PREAMBLE
    + """
def crash(runner):
    print("last words")
    os._exit(7)

def fine(runner):
    return {"metrics": {"pid": os.getpid()}}

def hang(runner):
    (MARKS / f"hang-{os.getpid()}").write_text("")
    time.sleep(120)
"""
)


def test_a_worker_that_crashes_is_replaced(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    first = pool.run(h.task("fine").to_dict())
    crashed = pool.run(h.task("crash").to_dict())
    after = pool.run(h.task("fine").to_dict())
    assert crashed.outcome is None and crashed.code == 7 and "last words" in crashed.output
    assert crashed.pid == first.pid  # the crash took the warm worker down...
    assert metrics(after)["pid"] != first.pid  # ...and a new one ran the next seed
    assert h.imports() == [first.pid, after.pid]
    assert not alive(first.pid)


def test_a_timeout_kills_the_worker_and_the_next_seed_gets_a_new_one(
    pool: WorkerPool, tmp_path: Path
) -> None:
    h = Handlers(tmp_path, CRASHY)
    first = pool.run(h.task("fine").to_dict())
    late = pool.run(h.task("hang").to_dict(), timeout=1.0)
    assert late.timed_out and late.outcome is None and late.pid == first.pid
    assert (tmp_path / "marks" / f"hang-{first.pid}").exists()  # it did start
    assert not alive(first.pid)  # killed, not left running
    after = pool.run(h.task("fine").to_dict())
    assert metrics(after)["pid"] not in (first.pid,)


def test_kill_stops_a_running_seed_and_its_worker(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    token = object()
    got: list[SeedRun] = []
    thread = threading.Thread(target=lambda: got.append(pool.run(h.task("hang").to_dict(), token=token)))
    thread.start()
    wait_for(lambda: list((tmp_path / "marks").glob("hang-*")), "the seed to start")
    pool.kill(token)
    thread.join(HANG_GUARD_S)
    assert got and got[0].outcome is None and not got[0].timed_out
    assert not alive(got[0].pid)
    assert metrics(pool.run(h.task("fine").to_dict()))["pid"] != got[0].pid


def test_max_seeds_per_worker_replaces_the_worker(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    pids = [metrics(pool.run(h.task("fine", s).to_dict(), max_seeds=2))["pid"] for s in range(5)]
    a, b, c = pids[0], pids[2], pids[4]
    assert pids == [a, a, b, b, c] and len({a, b, c}) == 3
    assert h.imports() == [a, b, c]


def test_fresh_runs_each_seed_in_a_worker_of_its_own(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    warm = metrics(pool.run(h.task("fine").to_dict()))["pid"]
    fresh = [metrics(pool.run(h.task("fine", s).to_dict(), fresh=True))["pid"] for s in (0, 1)]
    again = metrics(pool.run(h.task("fine").to_dict()))["pid"]
    assert len({warm, *fresh}) == 3 and again == warm  # the warm worker stays warm meanwhile
    assert sorted(h.imports()) == sorted([warm, *fresh])
    wait_for(lambda: not any(alive(p) for p in fresh), "the one-seed workers to exit")


CHILDREN = (
    PREAMBLE
    + """
import json, subprocess
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
AT_IMPORT = subprocess.Popen(SLEEPER)  # started at import time: the worker's, not a seed's

def spawn(runner):
    child = subprocess.Popen(SLEEPER)
    escaped = subprocess.Popen(SLEEPER, start_new_session=True)  # its own process group
    # a daemon: the middle process exits at once, its child is re-parented
    code = "import subprocess; p = subprocess.Popen(%r, stdout=subprocess.DEVNULL); print(p.pid)" % SLEEPER
    middle = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    pids = {"children": [child.pid, escaped.pid, int(middle.stdout)], "at_import": AT_IMPORT.pid}
    (MARKS / "pids.json").write_text(json.dumps(pids))
    return {"metrics": {}}

def check(runner):
    import pytest_mlexp.procutil as p
    pids = json.loads((MARKS / "pids.json").read_text())["children"]
    return {"metrics": {"any_alive": any(p.alive(x) for x in pids)}}
"""
)


def test_children_a_handler_starts_are_gone_when_its_seed_ends(pool: WorkerPool, tmp_path: Path) -> None:
    h = Handlers(tmp_path, CHILDREN)
    run = pool.run(h.task("spawn").to_dict())
    metrics(run)
    started = json.loads((tmp_path / "marks" / "pids.json").read_text())
    kids: list[int] = started["children"]
    assert not any(alive(pid) for pid in kids)  # ended before the outcome came back
    assert alive(started["at_import"])  # what the module started on import lives with the worker
    assert metrics(pool.run(h.task("check").to_dict())) == {"any_alive": False}
    pool.close()
    wait_for(lambda: not alive(started["at_import"]) and not alive(run.pid), "the worker to end")


def test_close_ends_every_worker_and_the_scratch_folder(tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    scratch = SessionScratch(tmp_path / "scratch")
    pool = WorkerPool(size=3, cwd=str(tmp_path), scratch=scratch)
    token = object()
    hung = threading.Thread(target=lambda: pool.run(h.task("hang").to_dict(), token=token))
    hung.start()
    warm = [pool.run(h.task("fine", s).to_dict()).pid for s in (0, 1)]
    wait_for(lambda: list((tmp_path / "marks").glob("hang-*")), "the hanging seed to start")
    folder = scratch.path
    pool.close()  # the hanging seed is killed with its worker
    hung.join(HANG_GUARD_S)
    assert not hung.is_alive()
    assert pool.started and not any(alive(pid) for pid in pool.started)
    assert warm[0] in pool.started and not folder.exists()


HOLDING = (
    PREAMBLE
    + """
import subprocess

def hold(runner):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    (MARKS / "hold.tmp").write_text(f"{os.getpid()} {child.pid}")
    (MARKS / "hold.tmp").rename(MARKS / "hold")
    time.sleep(300)
"""
)


def test_the_fork_server_takes_its_workers_and_their_children_when_it_is_told_to_go(
    pool: WorkerPool, tmp_path: Path
) -> None:
    # SIGTERM is what the server gets from the kernel when pytest dies (and the lifeline
    # closes at the same moment): it must still kill every worker's group before it ends.
    h = Handlers(tmp_path, HOLDING)
    got: list[SeedRun] = []
    thread = threading.Thread(target=lambda: got.append(pool.run(h.task("hold").to_dict())))
    thread.start()
    wait_for(lambda: (tmp_path / "marks" / "hold").exists(), "the seed to start")
    pids = [int(p) for p in (tmp_path / "marks" / "hold").read_text().split()]
    server = pool.server_pid
    assert server is not None and all(alive(pid) for pid in pids)
    os.kill(server, signal.SIGTERM)
    thread.join(HANG_GUARD_S)
    assert got and got[0].outcome is None
    wait_for(lambda: not any(alive(pid) for pid in [*pids, server]), "the server, worker and child to end")


def test_workers_started_without_the_fork_server_behave_the_same(tmp_path: Path) -> None:
    h = Handlers(tmp_path, CRASHY)
    pool = WorkerPool(size=1, cwd=str(tmp_path), fork_server=False, scratch=SessionScratch(tmp_path / "s"))
    try:
        pids = [metrics(pool.run(h.task("fine", s).to_dict()))["pid"] for s in (0, 1)]
        crashed = pool.run(h.task("crash").to_dict())
        after = metrics(pool.run(h.task("fine").to_dict()))["pid"]
    finally:
        pool.close()
    assert pids[0] == pids[1] == crashed.pid and crashed.code == 7 and after != pids[0]
    assert h.imports() == [pids[0], after]
    assert not any(alive(pid) for pid in pool.started)


# --- the process executor on the pool -----------------------------------------------------------
PINNED = (
    PREAMBLE
    + """
def where(runner):
    return {"metrics": {"pid": os.getpid(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}}

def interrupted(runner):
    raise KeyboardInterrupt("from the handler")
"""
)


def test_warm_workers_keep_their_gpu_and_a_bigger_item_gets_its_own(tmp_path: Path) -> None:
    h = Handlers(tmp_path, PINNED)
    ex = ProcessExecutor(concurrency=2, gpus=["4", "7"], cwd=str(tmp_path))
    try:
        seen = [ex.submit(Job(h.task("where", s))).result(HANG_GUARD_S) for s in range(4)]
        big = ex.submit(Job(h.task("where", 9), {"gpu": "A100:2"})).result(HANG_GUARD_S)
        last = ex.submit(Job(h.task("where", 10))).result(HANG_GUARD_S)
        over = ex.submit(Job(h.task("where", 11), {"gpu": "A100:4"})).result(HANG_GUARD_S)
        assert ex.gpu_pool.per_gpu == 1  # a slot per GPU: seeds never share one
    finally:
        ex.close()
    # More GPUs than there are: all of them, and the outcome says so (it was silent).
    assert over.result is not None and sorted(over.result["metrics"]["gpu"].split(",")) == ["4", "7"]
    assert over.warnings == (
        "where asks for 4 GPUs (resources.gpu 'A100:4'); 2 are visible here (4,7): it ran on all 2",
    )
    pins = {(o.result["metrics"]["pid"], o.result["metrics"]["gpu"]) for o in seen if o.result}
    assert {gpu for _, gpu in pins} == {"4", "7"} and len(pins) == 2  # one worker per GPU, reused
    assert big.result is not None and last.result is not None
    assert sorted(big.result["metrics"]["gpu"].split(",")) == ["4", "7"]
    assert big.result["metrics"]["pid"] not in {pid for pid, _ in pins}  # a worker of its own
    assert (last.result["metrics"]["pid"], last.result["metrics"]["gpu"]) in pins


def test_a_worker_that_dies_importing_the_handler_module_says_so(tmp_path: Path) -> None:
    # It read as any lost worker ("before reporting a result ... its output ends with the lines
    # above", with no lines): the module's import ended the process, not a handler.
    h = Handlers(tmp_path, "import os\nos._exit(7)\n\ndef f(runner):\n    return {'metrics': {}}\n")
    ex = ProcessExecutor(concurrency=1, gpus=[], cwd=str(tmp_path))
    try:
        out = ex.submit(Job(h.task("f"))).result(HANG_GUARD_S)
    finally:
        ex.close()
    assert out.status == "infra_error" and out.error is not None and out.error["kind"] == "lost_worker"
    assert "exited with code 7 while importing warm_handlers" in out.error["message"], out.error
    assert out.error["message"].endswith("it printed nothing"), out.error


def test_an_item_asking_for_gpus_where_none_is_visible_says_it_ran_without(tmp_path: Path) -> None:
    # It ran on the CPU without a word (with too few GPUs visible it said so).
    h = Handlers(tmp_path, PINNED)
    ex = ProcessExecutor(concurrency=1, gpus=[], cwd=str(tmp_path))
    try:
        one = ex.submit(Job(h.task("where"), {"gpu": "A100"})).result(HANG_GUARD_S)
        none = ex.submit(Job(h.task("where"))).result(HANG_GUARD_S)
    finally:
        ex.close()
    assert one.ok and none.ok
    assert one.warnings == (
        "where asks for 1 GPU (resources.gpu 'A100'); none is visible here (CUDA_VISIBLE_DEVICES, "
        "nvidia-smi): it ran without a GPU",
    )
    assert none.warnings == ()


def test_a_keyboard_interrupt_from_a_handler_is_an_error_not_a_lost_worker(tmp_path: Path) -> None:
    h = Handlers(tmp_path, PINNED)
    ex = ProcessExecutor(concurrency=1, gpus=[], cwd=str(tmp_path))
    try:
        out = ex.submit(Job(h.task("interrupted"), {"retries": 2})).result(HANG_GUARD_S)
        after = ex.submit(Job(h.task("where"))).result(HANG_GUARD_S)
    finally:
        ex.close()
    assert out.status == "error" and out.error is not None
    assert out.error["type"] == "KeyboardInterrupt" and "attempts" not in out.error
    assert "from the handler" in out.error["message"]
    assert after.ok and h.imports() == [after.result["metrics"]["pid"]]  # the worker lived on


# --- the wire ----------------------------------------------------------------------------------
def test_wire_round_trip_end_of_stream_timeout_and_garbage() -> None:
    a, b = socket.socketpair()
    with a, b:
        wire.send(a, {"op": "run", "text": "caf\udce9"}, b"\x00blob")
        assert wire.recv(b, timeout=HANG_GUARD_S) == ({"op": "run", "text": "caf\udce9"}, b"\x00blob")
        with pytest.raises(TimeoutError):
            wire.recv(b, timeout=0.01)
        a.sendall(b"\x00\x00\x00\x05\x00\x00\x00\x00nope!")
        with pytest.raises(wire.WireError):
            wire.recv(b, timeout=HANG_GUARD_S)
        a.close()
        assert wire.recv(b) is None


# --- the scratch folder ------------------------------------------------------------------------
_HOLDER = """
import os, signal, sys
from pathlib import Path
from pytest_mlexp.scratch import SessionScratch
s = SessionScratch(Path(sys.argv[1]))
s.new_file("task", ".json").write_text("raw params")
print(s.path, flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()  # held until the test closes our stdin
"""


def test_scratch_is_private_and_swept_once_its_session_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()

    def holder(mode: str) -> tuple[subprocess.Popen[str], Path]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(root), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        return proc, Path(proc.stdout.readline().strip())

    dead, dead_path = holder("die")
    dead.communicate(timeout=HANG_GUARD_S)
    assert dead.returncode == -signal.SIGKILL and dead_path.is_dir()  # left behind by SIGKILL
    assert dead_path.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in dead_path.iterdir())
    live, live_path = holder("live")
    try:
        assert not dead_path.exists()  # swept by the next session...
        mine = SessionScratch(root)
        mine_path = mine.path
        assert mine_path.is_dir()
        assert live_path.is_dir()  # a session that still runs keeps its folder
        assert sweep(root) == []
        mine.close()
        assert not mine_path.exists()
    finally:
        live.communicate(timeout=HANG_GUARD_S)  # closes its stdin: it ends
    assert [p.name for p in sweep(root)] == [live_path.name]  # gone once its owner ended


# --- a seed's clock, a worker that died while idle, the seeds-per-worker limit, multiprocessing --

SLOW_IMPORT = (
    PREAMBLE
    + """
time.sleep(float(os.environ.get("MLEXP_TEST_IMPORT_S", "0")))  # torch + CUDA, say

def quick(runner):
    return {"metrics": {"pid": os.getpid()}}
"""
)


def test_the_timeout_counts_from_the_handlers_call_not_its_modules_import(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under local the module is imported before any seed runs; a new warm worker imports it
    # inside the seed's message.  Counted against the timeout, an import longer than it timed
    # out every seed: the worker was killed, and its replacement imported again.
    monkeypatch.setenv("MLEXP_TEST_IMPORT_S", "3")
    h = Handlers(tmp_path, SLOW_IMPORT)
    runs = [pool.run(h.task("quick", s, timeout=1.0).to_dict(), timeout=1.0) for s in (0, 1)]
    assert [metrics(r)["pid"] for r in runs] == [runs[0].pid] * 2  # one worker, one import
    assert all(r.started and not r.timed_out for r in runs)


def test_an_import_that_never_ends_is_still_stopped_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLEXP_TEST_IMPORT_S", "300")
    h = Handlers(tmp_path, SLOW_IMPORT)
    pool = WorkerPool(size=1, cwd=str(tmp_path), scratch=SessionScratch(tmp_path / "scratch"))
    try:
        run = pool.run(h.task("quick").to_dict(), timeout=1.0, import_timeout=0.5)
    finally:
        pool.close()
    assert run.outcome is None and run.timed_out and not run.started and run.import_limit == 0.5
    assert not alive(run.pid)
    # Through the executor, the seed says what took too long (the import bound there is the
    # larger of the timeout and START_TIMEOUT_S, made small here).
    monkeypatch.setattr("pytest_mlexp.executors.workers.START_TIMEOUT_S", 0.5)
    ex = ProcessExecutor(concurrency=1, gpus=[], cwd=str(tmp_path))
    try:
        out = ex.submit(Job(h.task("quick", timeout=0.2), {"timeout": 0.2})).result(HANG_GUARD_S)
    finally:
        ex.close()
    assert out.status == "infra_error" and out.error is not None and out.error["kind"] == "timeout"
    assert "the import of warm_handlers took more than 0.5 s in a new worker" in out.error["message"]


def test_a_worker_that_died_while_idle_costs_the_next_seed_nothing(pool: WorkerPool, tmp_path: Path) -> None:
    # The kernel's OOM killer picks an idle worker holding a data set; or a thread an earlier
    # seed left behind ends the process.  The next seed sent to it never began: it used to come
    # back as a lost worker, an attempt spent.
    h = Handlers(tmp_path, SLOW_IMPORT)
    first = pool.run(h.task("quick", 0).to_dict())
    os.kill(first.pid, signal.SIGKILL)
    wait_for(lambda: not alive(first.pid), "the idle worker to die")
    second = pool.run(h.task("quick", 1).to_dict())
    assert metrics(second)["pid"] == second.pid != first.pid
    assert h.imports() == [first.pid, second.pid]


def test_a_seed_never_starts_in_a_worker_past_its_own_seeds_per_worker_limit(
    pool: WorkerPool, tmp_path: Path
) -> None:
    h = Handlers(tmp_path, SLOW_IMPORT)
    warm = [pool.run(h.task("quick", s).to_dict()).pid for s in range(3)]
    assert warm == [warm[0]] * 3
    leaky = [pool.run(h.task("quick", s).to_dict(), max_seeds=2).pid for s in range(3)]
    assert warm[0] not in leaky  # it had run 3 seeds: too many for an item that allows 2
    assert leaky[0] == leaky[1] != leaky[2]  # and the new one is replaced after 2


FORKSERVER = (
    PREAMBLE
    + """
import multiprocessing

def pooled(runner):
    # A Pool (or a torch DataLoader) with the "forkserver" start method: the default on Linux
    # from Python 3.14.  The standard library starts its fork server once per process.
    with multiprocessing.get_context("forkserver").Pool(1) as workers:
        got = workers.map(abs, [-1, -2, -3])
    return {"metrics": {"pid": os.getpid(), "sum": sum(got)}}
"""
)


def test_seeds_of_one_worker_can_each_use_multiprocessings_fork_server(
    pool: WorkerPool, tmp_path: Path
) -> None:
    # The fork server a seed starts ends with the seed's other children; multiprocessing kept
    # its pid and failed every later seed with ChildProcessError ("No child processes").
    h = Handlers(tmp_path, FORKSERVER)
    runs = [pool.run(h.task("pooled", s).to_dict()) for s in range(3)]
    assert [metrics(r)["sum"] for r in runs] == [6, 6, 6]
    assert len({r.pid for r in runs}) == 1


TOGETHER = (
    PREAMBLE
    + """
import subprocess

# A process this module starts when it is imported: the worker's, for as long as it lives.
KEEPER = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
(MARKS / f"keeper-{os.getpid()}").write_text(str(KEEPER.pid))

def together(runner):
    # three seeds at once, so that three warm workers exist (60 s is only a hang guard)
    (MARKS / f"in-{os.getpid()}").write_text("")
    deadline = time.monotonic() + 60
    while len(list(MARKS.glob("in-*"))) < 3:
        assert time.monotonic() < deadline, "the three seeds never ran at once"
        time.sleep(0.01)
    return {"metrics": {"pid": os.getpid()}}

def alone(runner):
    return {"metrics": {"pid": os.getpid(), "keeper": KEEPER.poll() is None}}
"""
)


def _other_module(h: Handlers, name: str, source: str) -> Task:
    (h.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return dataclasses.replace(h.task("boom"), module_path=f"{name}.py", module_name=name)


def test_a_module_whose_import_kills_its_worker_gets_one_free_retry_not_one_per_idle_worker(
    tmp_path: Path,
) -> None:
    h = Handlers(tmp_path, TOGETHER)
    pool = WorkerPool(size=3, cwd=str(tmp_path), scratch=SessionScratch(tmp_path / "scratch"))
    try:
        threads = [
            threading.Thread(target=lambda s=s: pool.run(h.task("together", s).to_dict())) for s in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD_S)
        warm = set(h.imports())
        assert len(warm) == 3
        crash = _other_module(
            h,
            "crash_handlers",
            """
            import os
            from pathlib import Path
            with open(Path(__file__).parent / "marks" / "crash_imports", "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            os._exit(7)
            """,
        )
        run = pool.run(crash.to_dict())
    finally:
        pool.close()
    assert run.outcome is None and run.code == 7  # lost, and counted: the new worker's death
    died = [int(p) for p in (tmp_path / "marks" / "crash_imports").read_text().split()]
    # A warm worker it was sent to first (it might have died idle: one free retry), then a new
    # one; it used to go through every idle warm worker before one was counted.
    assert len(died) == 2 and died[0] in warm and died[1] not in warm


def test_a_module_that_does_not_import_leaves_other_modules_processes_alone(
    pool: WorkerPool, tmp_path: Path
) -> None:
    h = Handlers(tmp_path, TOGETHER)
    first = pool.run(h.task("alone").to_dict())
    assert metrics(first)["keeper"] is True
    keeper = int((tmp_path / "marks" / f"keeper-{first.pid}").read_text())
    broken = _other_module(h, "broken_handlers", "raise ImportError('not today')\n")
    failed = pool.run(broken.to_dict())
    assert failed.outcome is not None and failed.outcome["error"]["kind"] == "import"
    assert failed.pid == first.pid and alive(keeper)  # the other module's process lives on
    again = pool.run(h.task("alone", 1).to_dict())
    assert metrics(again) == {"pid": first.pid, "keeper": True}


JSON_PATCHER = (
    PREAMBLE
    + """
import json

# What research code does to make NumPy values "just work" (or a call counter): json's own
# functions replaced for the whole interpreter, here with ones that would break any protocol.
def _dumps(obj, *args, **kwargs):
    return "<not json>"

def _loads(text, *args, **kwargs):
    raise ValueError("patched out")

json.dumps = _dumps
json.loads = _loads
json.JSONDecoder.raw_decode = _loads  # what JSONDecoder().decode looks up at each call

def patched(runner):
    return {"metrics": {"pid": os.getpid(), "mine": json.dumps({"a": 1})}}
"""
)


def test_a_handler_module_that_replaces_json_dumps_does_not_break_its_worker(
    pool: WorkerPool, tmp_path: Path
) -> None:
    # The worker's messages went through json.dumps/json.loads looked up at each call: the
    # reply to the first seed was "<not json>", and the seed read as a lost worker.
    h = Handlers(tmp_path, JSON_PATCHER)
    runs = [pool.run(h.task("patched", s).to_dict()) for s in range(2)]
    assert [metrics(r) for r in runs] == [{"pid": runs[0].pid, "mine": "<not json>"}] * 2
    assert h.imports() == [runs[0].pid]  # the same warm worker, the module imported once


def test_the_worker_entry_point_writes_its_outcome_past_a_replaced_json_dumps(tmp_path: Path) -> None:
    h = Handlers(tmp_path, JSON_PATCHER)
    task_file, out_file = tmp_path / "task.json", tmp_path / "out.json"
    task_file.write_text(json.dumps(h.task("patched").to_dict()), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pytest_mlexp.remote", str(task_file), str(out_file)], cwd=tmp_path, check=True
    )
    outcome = json.loads(out_file.read_text(encoding="utf-8"))
    assert outcome["status"] == "ok" and outcome["result"]["metrics"]["mine"] == "<not json>"


LAZY = (
    PREAMBLE
    + """
def lazy(runner):
    import importlib.util
    assert importlib.util.find_spec("torch") is not None  # as a library asks "is torch there?"
    import numpy, torch  # in the body: not imported when the seed starts in a new process
    return {"metrics": {
        "pid": os.getpid(), "numpy": float(numpy.random.rand()), "torch": float(torch.rand(1))
    }}
"""
)


def test_numpy_and_torch_first_imported_by_a_seed_are_seeded_for_it(pool: WorkerPool, tmp_path: Path) -> None:
    # The first seed a process ran drew unseeded numbers when its handler imported numpy and
    # torch inside its body, while later seeds of that process were seeded: seed 1's numbers
    # depended on whether it was its worker's first (--mlexp-concurrency, isolate).
    pytest.importorskip("numpy")
    pytest.importorskip("torch")
    h = Handlers(tmp_path, LAZY)
    warm = [metrics(pool.run(h.task("lazy", s).to_dict())) for s in (0, 1)]
    assert warm[0]["pid"] == warm[1]["pid"]
    fresh = []
    for s in (0, 1):  # each seed the first of a new process: the one-seed entry point
        task_file, out_file = tmp_path / f"task{s}.json", tmp_path / f"out{s}.json"
        task_file.write_text(json.dumps(h.task("lazy", s).to_dict()), encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "pytest_mlexp.remote", str(task_file), str(out_file)],
            cwd=tmp_path,
            check=True,
        )
        fresh.append(json.loads(out_file.read_text(encoding="utf-8"))["result"]["metrics"])
    for s in (0, 1):
        assert (warm[s]["numpy"], warm[s]["torch"]) == (fresh[s]["numpy"], fresh[s]["torch"]), s
    assert warm[0]["numpy"] != warm[1]["numpy"]


def test_the_seeding_loader_stands_in_for_the_librarys_own() -> None:
    # What importlib.util.find_spec("torch") hands a library while a seed runs: it answers as
    # the real loader does, and a copy of it (made without __init__) does not recurse.
    import copy

    from pytest_mlexp.execution import _SeededLoader

    class Real:
        is_package = staticmethod(lambda name: True)

    seeded = _SeededLoader(Real(), "numpy", 0)
    assert seeded.is_package("numpy") is True
    with pytest.raises(AttributeError):
        copy.copy(seeded).missing  # noqa: B018 - the attribute access is the test
