"""What a Slurm job of the slurm executor runs: one seed through ``remote.run_task``.

submitit unpickles :func:`run_in_job` (by reference: this module is imported in the job) and
calls it with the task.  Around ``run_task`` it only does what Slurm needs:

- **Time limits.**  Slurm sends USR2 ``signal_delay_s`` seconds before the job's limit
  (``#SBATCH --signal=USR2@S``), and the job also stops itself once ``resources.timeout`` has
  passed (Slurm's limit is in whole minutes).  Either way the handler is interrupted where it
  is, and the outcome is ``infra_error (timeout)`` with the handler's traceback at that point,
  never a handler ``error`` and never submitit's "timed-out and not checkpointable" requeue
  logic.
- **Cancellation.**  submitit ignores SIGTERM in its jobs, so a cancelled job would linger for
  Slurm's ``KillWait`` (30 s by default) until SIGKILL; here SIGTERM ends the job at once.
- Progress goes to the task's progress file (the live line follows it on the shared filesystem).

Standard library and ``remote`` only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..records import SeedOutcome, error_info, now_iso
from ..remote import run_task

__all__ = ["TimeLimit", "run_in_job"]


class TimeLimit(BaseException):
    """Raised in the handler when the job's time is up (a BaseException, so that a handler's
    ``except Exception`` does not swallow it)."""


def run_in_job(
    task_data: Mapping[str, Any], fixtures_blob: bytes | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """One seed in a Slurm job: its outcome as plain data (``SeedOutcome.to_dict()``).

    ``settings``: ``timeout_s`` (``resources.timeout``, or None) and ``limit`` (Slurm's time
    limit as words, for the message)."""
    os.environ["MLEXP_WORKER"] = "1"  # one seed per process: trackers finish their files now
    seed = int(task_data.get("seed", 0))
    timeout = settings.get("timeout_s")
    why: list[str] = []  # what stopped the handler, once
    finished = threading.Event()

    def on_usr2(signum: int, frame: Any) -> None:
        if finished.is_set():
            return  # the seed is over: nothing to interrupt
        if not why:
            why.append("slurm")  # Slurm's warning before its time limit
        raise TimeLimit(_reason(why[0], timeout, settings.get("limit")))

    main = threading.main_thread().ident

    def deadline() -> None:
        if not finished.is_set() and not why and main is not None:
            why.append("deadline")
            # A real signal to the main thread: it also cuts short a blocking call there (a
            # sleep, a wait), which a simulated one (_thread.interrupt_main) would not.
            signal.pthread_kill(main, signal.SIGUSR2)

    signal.signal(signal.SIGUSR2, on_usr2)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # scancel, preemption: end now (see above)
    timer: threading.Timer | None = None
    if isinstance(timeout, (int, float)) and timeout > 0:
        timer = threading.Timer(float(timeout), deadline)
        timer.daemon = True
        timer.start()
    started, t0 = now_iso(), time.monotonic()
    data: dict[str, Any] | None = None
    stopped: TimeLimit | None = None
    try:
        try:
            data = run_task(task_data, fixtures_blob, follow=True)
        finally:
            finished.set()
            if timer is not None:
                timer.cancel()
    except TimeLimit as exc:  # time ran out outside the handler (importing it, say)
        stopped = exc
    if not why or (data is not None and data.get("status") == "ok"):
        assert data is not None
        return data  # it finished (a limit that came as it returned changes nothing)
    error = (data or {}).get("error") or {}
    traceback = str(error.get("traceback") or "")
    if stopped is not None:
        traceback = error_info("timeout", stopped)["traceback"]
    return SeedOutcome.failure(
        seed,
        "timeout",
        _reason(why[0], timeout, settings.get("limit")),
        infra=True,
        started_at=started,
        traceback=traceback,
        duration_s=time.monotonic() - t0,
    ).to_dict()


def _reason(why: str, timeout: Any, limit: Any) -> str:
    if why == "deadline":
        return f"exceeded resources.timeout of {float(timeout):g} s on Slurm; the handler was stopped"
    if limit:
        return f"reached Slurm's time limit ({limit}); the handler was stopped"
    return "reached Slurm's time limit; the handler was stopped"
