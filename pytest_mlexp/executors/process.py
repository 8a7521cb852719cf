"""The ``process`` executor: seeds in warm worker processes (SPEC sections 6 and 12).

Workers (``workers.py``) run the same entry point as a Modal container (``remote.py``), one
seed after another, and talk to us over a socket (handler output can never corrupt the
protocol: it goes to a log whose tail is kept for errors).  Each has its own process group and
session: Ctrl-C in the terminal reaches pytest only, which then cancels workers explicitly, and
a timeout kills the whole group (a handler's DataLoader workers included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..model import gpu_request
from ..records import OutcomeError, SeedOutcome, now_iso
from .base import FutureHandle, Handle, Job, PoolExecutor, infra_outcome
from .workers import START_TIMEOUT_S, WorkerPool, WorkerStartError

#: seeds a warm worker runs before it is replaced (``resources.max_seeds_per_worker``)
DEFAULT_MAX_SEEDS = 100


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, found without importing torch.

    ``CUDA_VISIBLE_DEVICES`` wins when set (empty or ``-1``: none); else ``nvidia-smi -L``.
    """
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = [v.strip() for v in value.split(",") if v.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    return list(_nvidia_smi_gpus())


_smi_cache: tuple[str, ...] | None = None


def _nvidia_smi_gpus() -> tuple[str, ...]:
    global _smi_cache
    if _smi_cache is None:
        found: tuple[str, ...] = ()
        exe = shutil.which("nvidia-smi")
        if exe:
            try:
                out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
                found = tuple(str(i) for i in range(len(lines)))
            except (OSError, subprocess.SubprocessError):
                found = ()
        _smi_cache = found
    return _smi_cache


def gpus_wanted(resources: Mapping[str, Any]) -> int:
    """GPUs one worker gets: the count of ``resources.gpu`` (``"A100:2"``, ``"2"``, ``"any:2"``:
    2, read as every executor reads it, ``model.gpu_request``), else 1."""
    return max(1, gpu_request(resources.get("gpu"))[0])


class GpuPool:
    """Hands out GPU ids: a seed gets as many distinct GPUs as it asks for (all of them at
    most), and waits while that many are not free.

    Each GPU runs ``per_gpu`` seeds at once: one while the concurrency is at most the number of
    GPUs (the default, a slot per GPU), so two seeds that want two GPUs each never sit on the
    same two; with a higher ``--mlexp-concurrency`` they share, as evenly as possible
    (``ceil(slots / GPUs)`` each).  Requests are served in the order they came, so one that
    wants several GPUs is not passed over for ever by seeds that want one.  Among the free
    GPUs: round-robin over the least used.
    """

    def __init__(self, gpus: Sequence[str], slots: int | None = None) -> None:
        self.gpus = list(gpus)
        n = len(self.gpus)
        self.per_gpu = max(1, -(-(slots or n) // n)) if n else 1
        self._use = dict.fromkeys(self.gpus, 0)
        self._next = 0
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for GPUs (tests, diagnostics)."""
        with self._cond:
            return len(self._queue)

    def acquire(self, count: int = 1, cancelled: Callable[[], bool] = lambda: False) -> list[str] | None:
        """``count`` distinct GPU ids (at most all of them), once they are free; None when
        ``cancelled()`` turns true first (asked between waits)."""
        if not self.gpus:
            return []
        n = len(self.gpus)
        count = min(max(1, count), n)
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if self._queue[0] is ticket:
                        free = [g for g in self.gpus if self._use[g] < self.per_gpu]
                        if len(free) >= count:
                            return self._take(free, count)
                    if cancelled():
                        return None
                    self._cond.wait(0.25)  # woken by a release; the timeout re-asks cancelled()
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may go now

    def _take(self, free: list[str], count: int) -> list[str]:
        n = len(self.gpus)
        chosen: list[str] = []
        for _ in range(count):
            # scan from the round-robin cursor; the first least-used free id wins
            order = [self.gpus[(self._next + i) % n] for i in range(n)]
            best = min((g for g in order if g in free and g not in chosen), key=lambda g: self._use[g])
            chosen.append(best)
            self._use[best] += 1
            self._next = (self.gpus.index(best) + 1) % n
        return chosen

    def release(self, ids: Sequence[str]) -> None:
        with self._cond:
            for g in ids:
                if self._use.get(g, 0) > 0:
                    self._use[g] -= 1
            self._cond.notify_all()


def max_seeds_per_worker(resources: Mapping[str, Any]) -> int:
    """``resources.max_seeds_per_worker`` (default 100): seeds a warm worker runs before it is replaced."""
    value = resources.get("max_seeds_per_worker")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return DEFAULT_MAX_SEEDS


class ProcessExecutor(PoolExecutor):
    """Seeds in warm worker processes (``workers.WorkerPool``), at most ``concurrency`` at once.

    A worker per concurrency slot, pinned to its GPU; ``resources.isolate: true`` (or an item
    asking for more GPUs than a slot has) runs each seed in a worker of its own."""

    name = "process"

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        gpus: Sequence[str] | None = None,
        python: str | None = None,
        cwd: str | None = None,
        fork_server: bool = True,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self.gpu_pool = GpuPool(visible_gpus() if gpus is None else gpus, slots=self.concurrency)
        self._environ: dict[str, str] | None = None  # the last environment seeds were submitted in
        # handlers see the same working directory as under local
        self.pool = WorkerPool(
            size=self.concurrency or 1,
            env=self._env,
            python=python or sys.executable,
            cwd=cwd or os.getcwd(),
            fork_server=fork_server,
        )

    def _env(self, gpus: Sequence[str]) -> dict[str, str]:
        env = dict(os.environ)
        if self.gpu_pool.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return env

    def submit(self, job: Job) -> Handle:
        self.pool.start()  # the fork server imports while the first items are handed out
        return super().submit(job)

    def _queued(self, handles: Sequence[FutureHandle]) -> None:
        # The environment a fresh process started now would get, fixtures' variables included
        # (an item's seeds are submitted after its set-up): a warm worker, started earlier,
        # runs each seed in it (``remote.Baseline.seed_environ``).  Work submitted ahead says
        # which (Job.environ, Job.cwd): not the item's that pytest is running meanwhile.
        environ = self._environ
        if environ is None or environ != os.environ:  # one copy shared while it stays the same
            environ = self._environ = dict(os.environ)
        # The folder too, when it is not the one workers start in (a fixture's chdir).
        try:
            current = os.getcwd()
        except OSError:  # pytest's folder was removed: "" makes the seed fail, as under local
            current = ""
        for handle in handles:
            job = handle.job
            folder = current if job.cwd is None else job.cwd
            handle.environ = environ if job.environ is None else job.environ  # type: ignore[attr-defined]
            handle.cwd = None if folder == self.pool.cwd else folder  # type: ignore[attr-defined]

    def run_job(self, handle: FutureHandle, attempt: int) -> SeedOutcome:
        wanted = gpus_wanted(handle.job.resources)
        outcome = self._run_job(handle, attempt, wanted)
        have = len(self.gpu_pool.gpus)
        if wanted > have and (have or gpu_request(handle.job.resources.get("gpu"))[0] > 0):
            plural = "s" if wanted > 1 else ""
            gpu = handle.job.resources.get("gpu")
            asks = f"{handle.job.task.sub_id} asks for {wanted} GPU{plural} (resources.gpu {gpu!r})"
            if have:
                said = (
                    f"{asks}; {have} are visible here ({','.join(self.gpu_pool.gpus)}): it ran on all {have}"
                )
            else:  # a GPU study on a machine without one (or CUDA_VISIBLE_DEVICES hiding them)
                said = (
                    f"{asks}; none is visible here (CUDA_VISIBLE_DEVICES, nvidia-smi): it ran without a GPU"
                )
            outcome = outcome.with_warnings([said])
        return outcome

    def _run_job(self, handle: FutureHandle, attempt: int, wanted: int) -> SeedOutcome:
        job = handle.job
        task = job.task
        started, t0 = now_iso(), time.monotonic()
        got = self.gpu_pool.acquire(wanted, cancelled=lambda: handle.cancelled or self._closed)
        if got is None:  # cancelled (or the session ended) while it waited for GPUs
            return infra_outcome(task, "cancelled", "cancelled while it waited for GPUs", started_at=started)
        # Its slot's thread and its GPUs: the seed starts now (an item's timeout mark counts
        # from here, not the wait for GPUs another item held).
        handle.started_at = time.monotonic()
        handle.started_exactly = True
        gpus = got
        # A slot has one GPU: an item that wants more gets a worker of its own, pinned to them.
        fresh = job.resources.get("isolate") is True or (bool(self.gpu_pool.gpus) and wanted > 1)
        try:
            run = self.pool.run(
                task.to_dict(),
                blob=job.fixtures_blob or b"",
                gpus=gpus,
                fresh=fresh,
                max_seeds=max_seeds_per_worker(job.resources),
                timeout=task.timeout,
                token=handle,
                environ=getattr(handle, "environ", None),
                cwd=getattr(handle, "cwd", None),
            )
        except WorkerStartError as exc:
            return infra_outcome(
                task,
                "lost_worker",
                f"no worker process could be started (attempt {attempt} of {job.retries + 1}): {exc}",
                started_at=started,
                duration_s=time.monotonic() - t0,
            )
        finally:
            self.gpu_pool.release(gpus)
        if run.timed_out:
            if run.started or run.import_limit is None:
                what = f"exceeded resources.timeout of {task.timeout:g} s; the worker was killed"
            else:  # the seed's own clock had not started: its module never finished importing
                what = (
                    f"the import of {task.module_name} took more than {run.import_limit:g} s in a new "
                    "worker; the worker was killed (resources.timeout counts from the handler's "
                    f"call; its module's import may take the larger of it and {START_TIMEOUT_S:g} s)"
                )
            return infra_outcome(
                task,
                "timeout",
                what,
                started_at=started,
                traceback=run.output,
                duration_s=time.monotonic() - t0,
            )
        if run.outcome is None:
            gpu_note = f" on GPU {','.join(gpus)}" if gpus else ""
            # Before "started": while the handler's module was imported (a module that ends the
            # process at import, os._exit or a crash, is not a handler that did).
            when = "before reporting a result" if run.started else f"while importing {task.module_name}"
            said = "its output ends with the lines above" if run.output.strip() else "it printed nothing"
            return infra_outcome(
                task,
                "lost_worker",
                f"the worker process{gpu_note} {run.exit_text} {when} "
                f"(attempt {attempt} of {job.retries + 1}); {said}",
                started_at=started,
                traceback=run.output,
                duration_s=time.monotonic() - t0,
            )
        try:
            outcome = SeedOutcome.from_dict(run.outcome)
        except OutcomeError as exc:
            return infra_outcome(task, "executor", f"the worker sent an outcome that is not one: {exc}")
        output = run.output
        if not outcome.ok and outcome.error is not None and output.strip() and "output" not in outcome.error:
            outcome = outcome.with_error(output=output)  # what the handler printed before failing
        return outcome

    def kill(self, handle: FutureHandle) -> None:
        self.pool.kill(handle)

    def close(self) -> None:
        super().close()  # cancels what is queued and kills what runs
        self.pool.close()
