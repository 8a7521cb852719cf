"""The ``local`` executor: in the pytest process, one seed at a time; pdb and fixtures work."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..execution import Task, import_handler, run_seed
from ..records import SeedOutcome, now_iso
from ..runner import MetricSink, ProgressSink
from .base import DoneHandle, Executor, Handle, Job, infra_outcome


class SeedTimeout(BaseException):
    """Raised inside a handler whose ``resources.timeout`` ran out (BaseException: handlers'
    ``except Exception`` must not swallow it)."""


@contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Interrupt the handler after ``seconds`` (POSIX main thread only; elsewhere no limit)."""
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _fire(signum: int, frame: Any) -> None:
        raise SeedTimeout(f"exceeded resources.timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds or 0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_local(
    task: Task,
    fixtures: Mapping[str, Any],
    *,
    metric_sinks: tuple[MetricSink, ...] = (),
    progress_sinks: tuple[ProgressSink, ...] = (),
    handler: Callable[..., Any] | None = None,
) -> SeedOutcome:
    started = now_iso()
    try:
        fn = handler if handler is not None else import_handler(task)
    except Exception as exc:
        return SeedOutcome.failure(task.seed, "import", exc, started_at=started)
    if not task.timeout:  # the common case: no alarm to arm and disarm around the handler
        return run_seed(task, fn, fixtures=fixtures, metric_sinks=metric_sinks, progress_sinks=progress_sinks)
    try:
        with alarm(task.timeout):
            return run_seed(
                task, fn, fixtures=fixtures, metric_sinks=metric_sinks, progress_sinks=progress_sinks
            )
    except SeedTimeout as exc:
        return infra_outcome(task, "timeout", str(exc), started_at=started)


class LocalExecutor(Executor):
    """In the pytest process, one seed at a time, when its item runs (never ahead)."""

    name = "local"
    concurrent = False
    supports_fixtures = True

    def submit(self, job: Job) -> Handle:
        return DoneHandle(job, run_local(job.task, job.fixtures))
