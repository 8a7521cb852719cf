"""The executor protocol (submit a job, get a handle, wait for or cancel it) and a small pool.

A third-party executor subclasses :class:`Executor` (or :class:`PoolExecutor`, which brings a
bounded, prioritised queue with retries and cancellation) and is returned by a
``pytest_mlexp_executor(name, config)`` hook implementation (see ``hookspecs.py`` and the README,
"Your own executor").  Standard library only: this module is imported whenever experiments run.
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import itertools
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import INFRA, SeedOutcome, as_outcome, error_info
from ..structs import struct

if TYPE_CHECKING:
    from ..execution import Task
    from ..model import Plan

#: infra_error kinds that are worth another attempt (``resources.retries``); a timeout is not:
#: the same work would overrun again.
RETRYABLE = frozenset({"lost_worker", "preempted"})

#: what a cancelled outcome says when the executor could not stop the work (no ``kill``)
MAY_STILL_RUN = "may still run"


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` says that a wait ran out: ``TimeoutError`` (and the futures' and asyncio's,
    which are that class from Python 3.11 on), ``subprocess.TimeoutExpired``,
    ``concurrent.futures.TimeoutError`` on 3.10.  Looked up only where loaded: nothing is imported
    for it."""
    if isinstance(exc, TimeoutError):
        return True
    for module, name in (("subprocess", "TimeoutExpired"), ("concurrent.futures", "TimeoutError")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def infra_outcome(
    task: Task,
    reason: str,
    message: str,
    *,
    started_at: str | None = None,
    traceback: str = "",
    duration_s: float = 0.0,
) -> SeedOutcome:
    """An outcome for work that did not finish for reasons outside the handler
    (``reason`` is the error kind: timeout, lost_worker, preempted, cancelled, credentials...;
    the error type is made from it: lost_worker -> LostWorker)."""
    return SeedOutcome.failure(
        task.seed,
        reason,
        message,
        infra=True,
        started_at=started_at,
        traceback=traceback,
        duration_s=duration_s,
    )


@struct(frozen=True)
class ExecutorContext:
    """What an executor may know of the session it serves (it never sees the session itself).

    ``plans()`` returns the plans loaded so far; collection loads them all before anything runs.
    """

    root: Path  # the project root (pytest's rootdir)
    handlers_dir: str  # the handler folder, relative to root (ini ``mlexp_handlers``)
    plans: Callable[[], Sequence[Plan]] = tuple


@struct
class Job:
    """One seed of one item, as handed to an executor."""

    task: Task
    #: the sub-experiment's ``resources`` (gpu, timeout, memory, cpu, retries)
    resources: Mapping[str, Any] = field(default_factory=dict)
    #: fixture values other than ``runner`` (live objects; only in-process executors use them)
    fixtures: Mapping[str, Any] = field(default_factory=dict)
    #: the same values pickled (``{name: pickle bytes}`` pickled again), for executors that send
    #: them elsewhere; None when the handler needs only ``runner``
    fixtures_blob: bytes | None = None
    #: lower runs first: the item's position in the session, so the item pytest is waiting for
    #: is never stuck behind work submitted ahead for later items
    priority: int = 0
    #: the pytest process's environment and folder the seed is to run in, for an executor whose
    #: workers outlive a seed (``process``); None: those of the moment it is submitted.  Work
    #: submitted ahead carries the session's start state: no other item's fixtures in it.
    environ: Mapping[str, str] | None = None
    cwd: str | None = None

    @property
    def retries(self) -> int:
        value = self.resources.get("retries")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Handle(abc.ABC):
    """A submitted job.  ``result()`` blocks and returns the seed's
    :class:`~pytest_mlexp.records.SeedOutcome`; it never raises for handler or infrastructure
    errors (those are outcomes), only for bugs."""

    @abc.abstractmethod
    def result(self, timeout: float | None = None) -> SeedOutcome:
        """The outcome; with ``timeout``, raises :class:`TimeoutError` if not done by then."""

    @abc.abstractmethod
    def done(self) -> bool: ...

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the job (queued or running); its outcome becomes infra_error ``cancelled``."""


class FutureHandle(Handle):
    """A handle completed by whoever runs the job (a thread, a callback)."""

    def __init__(self, job: Job, on_cancel: Any = None, *, cancel_note: str | None = None) -> None:
        self.job = job
        self._event = threading.Event()
        self._outcome: SeedOutcome | None = None
        self._lock = threading.Lock()
        self.cancelled = False
        self.started = False
        self.started_at: float | None = None  # time.monotonic() when a worker thread took it
        # Whether started_at is when the work itself began (the process executor: its worker
        # threads are its slots); for a remote back end it is the submission, and the job may
        # then wait in the cluster's queue.
        self.started_exactly = False
        self.finished_at: float | None = None  # time.monotonic() when its outcome was set
        self._on_cancel = on_cancel  # called (once) with this handle when cancelled while running
        # Added to the cancelled outcome of a running job: the executor cannot stop it
        # (PoolExecutor without kill()).
        self.cancel_note = cancel_note
        self._callbacks: list[Callable[[FutureHandle], object]] = []

    def add_done_callback(self, fn: Callable[[FutureHandle], object]) -> None:
        """Call ``fn(self)`` once the outcome is set (at once if it is), in the thread that sets
        it (an executor's worker thread), before :meth:`done` turns true: whoever sees the
        handle done sees what its callbacks did.  What ``fn`` raises is ignored (it must not
        stop the thread that runs the other jobs)."""
        with self._lock:
            if self._outcome is None:
                self._callbacks.append(fn)
                return
        with contextlib.suppress(Exception):
            fn(self)

    def set_result(self, outcome: SeedOutcome) -> bool:
        """Complete the handle; False when it was already complete (e.g. cancelled)."""
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
            self.finished_at = time.monotonic()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            with contextlib.suppress(Exception):
                fn(self)
        self._event.set()
        return True

    def result(self, timeout: float | None = None) -> SeedOutcome:
        outcome = self._outcome
        if outcome is not None:  # set (its callbacks, which may ask for it, may still be running)
            return outcome
        # Waiting in slices keeps the main thread responsive to Ctrl-C on every platform.
        end = None if timeout is None else time.monotonic() + timeout
        while not self._event.wait(0.25 if end is None else max(0.0, min(0.25, end - time.monotonic()))):
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(f"{self.job.task.label} not finished after {timeout} s")
        assert self._outcome is not None
        return self._outcome

    def done(self) -> bool:
        return self._event.is_set()

    def wait_done(self) -> None:
        """Wait until the handle is done: its outcome set *and* its callbacks run.  ``result``
        returns as soon as the outcome is set (a callback may ask for it), so a thread that must
        see what the callbacks did waits here too."""
        while not self._event.wait(0.25):  # in slices: Ctrl-C stays responsive
            pass

    def cancel(self) -> None:
        with self._lock:
            if self._outcome is not None or self.cancelled:
                return
            self.cancelled = True
        running = self.started
        message = "cancelled before it finished (-x, Ctrl-C or SIGTERM)"
        if running and self.cancel_note:
            message = f"cancelled (-x, Ctrl-C or SIGTERM); {self.cancel_note}"
        self.set_result(infra_outcome(self.job.task, "cancelled", message))
        if running and self._on_cancel is not None:
            self._on_cancel(self)


class DoneHandle(Handle):
    """A handle whose job already ran (the local executor runs a job inside ``submit``).

    No event or lock: nothing can complete it twice and no one waits on it, and creating them
    was a measurable part of a trivial item's cost."""

    cancelled = False
    started = True

    def __init__(self, job: Job, outcome: SeedOutcome) -> None:
        self.job = job
        self._outcome = outcome

    def result(self, timeout: float | None = None) -> SeedOutcome:
        return self._outcome

    def done(self) -> bool:
        return True

    def cancel(self) -> None:
        """Nothing to stop: the outcome is final."""


class Executor(abc.ABC):
    """Runs jobs.  ``concurrent`` executors are dispatched ahead (SPEC section 6)."""

    name: str = "executor"
    concurrent: bool = True
    #: Live fixture values other than ``runner`` can be used (only the in-process executor);
    #: the others get them pickled in ``Job.fixtures_blob``.
    supports_fixtures: bool = False
    #: The machine that runs a seed sees this machine's files at the same paths (this machine,
    #: or a cluster with a shared file system).  When False (Modal; Slurm without a shared file
    #: system), a tracker whose store is a local file (an MLflow sqlite or file store) is not
    #: opened there: the pytest process logs each seed's run from its outcome instead.
    shares_filesystem: bool = True

    def __init__(self, *, concurrency: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.concurrency = concurrency
        self.options = dict(options or {})
        self.context: ExecutorContext | None = None

    def bind(self, context: ExecutorContext) -> None:
        """Called once by the session, before the first job, with what the executor may know
        of the session (the project root, the handler folder, the plans)."""
        self.context = context

    @abc.abstractmethod
    def submit(self, job: Job) -> Handle: ...

    def submit_all(self, jobs: Sequence[Job]) -> list[Handle]:
        """The seeds of one item, submitted together (the session always submits an item's
        seeds through this).  By default each is :meth:`submit`-ted; an executor that can start
        them as one unit overrides it (the slurm executor makes them one job array)."""
        return [self.submit(job) for job in jobs]

    def close(self) -> None:  # noqa: B027 - optional: executors with nothing to release skip it
        """Cancel what is still running and release resources (called at session end)."""


class PoolExecutor(Executor):
    """An executor with at most ``concurrency`` jobs running at once, lowest priority first.

    Subclasses implement :meth:`run_job` (blocking: run one attempt and return its outcome)
    and :meth:`kill` (stop a running attempt from another thread).  Worker threads, not
    processes: the work itself happens in child processes or remote containers, and threads
    never fork the pytest process.  Attempts that end in a :data:`RETRYABLE` infra_error are
    retried up to ``resources.retries`` times; an exception from ``run_job`` that says a wait ran
    out (``TimeoutError``, ``subprocess.TimeoutExpired``) is ``infra_error (timeout)``, never
    retried; any other is ``infra_error (executor)``.  Without a ``kill``, cancelling a running
    attempt warns once that the work may still be running, and the cancelled outcome says so.
    """

    def __init__(self, *, concurrency: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(concurrency=max(1, concurrency or 1), options=options)
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int, FutureHandle]] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running: set[FutureHandle] = set()
        self._closed = False
        self._warned_kill = False
        # The default kill() cannot stop anything: cancelled outcomes of running jobs say so.
        self._cancel_note: str | None = None
        if type(self).kill is PoolExecutor.kill:
            self._cancel_note = (
                f"{MAY_STILL_RUN}: the {self.name} executor cannot stop work it started (it has no kill())"
            )

    # --- what a subclass provides ---------------------------------------------------------------
    @abc.abstractmethod
    def run_job(self, handle: FutureHandle, attempt: int) -> SeedOutcome | Mapping[str, Any]:
        """Run one attempt of ``handle.job`` to its end and return the outcome (a
        :class:`SeedOutcome`, or a mapping in its ``to_dict()`` shape, e.g. a worker's JSON)."""

    def kill(self, handle: FutureHandle) -> None:
        """Stop ``handle``'s running attempt (called from another thread on cancel/close).

        This default cannot: it warns once per executor that work may still be running (the
        cancelled outcome says so too).  Override it."""
        if self._warned_kill:
            return
        self._warned_kill = True
        # Never let a warnings filter set to "error" break the cancellation of the other jobs.
        with contextlib.suppress(Warning):
            warnings.warn(
                f"pytest-mlexp: the {self.name} executor cannot stop work it started (it has no "
                f"kill()): work may still be running after -x, Ctrl-C or SIGTERM",
                RuntimeWarning,
                stacklevel=2,
            )

    # --- the pool -------------------------------------------------------------------------------
    def _handle(self, job: Job) -> FutureHandle:
        """A new handle for ``job`` (a subclass may keep track of it)."""
        return FutureHandle(job, on_cancel=self.kill, cancel_note=self._cancel_note)

    def _queued(self, handles: Sequence[FutureHandle]) -> None:
        """Called with the handles of one :meth:`submit_all` before any worker thread can take
        them (a subclass that starts them as a unit notes them here)."""

    def submit(self, job: Job) -> Handle:
        return self.submit_all([job])[0]

    def submit_all(self, jobs: Sequence[Job]) -> list[Handle]:
        # All seeds of the item are queued before any worker thread can take one: an executor
        # that starts them as a unit sees them all.
        handles = [self._handle(job) for job in jobs]
        self._queued(handles)
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                for handle in handles:
                    heapq.heappush(self._queue, (handle.job.priority, next(self._seq), handle))
                    if len(self._threads) < (self.concurrency or 1):
                        name = f"mlexp-{self.name}-{len(self._threads)}"
                        thread = threading.Thread(target=self._work, name=name)
                        thread.daemon = True  # never keeps a finished or interrupted session alive
                        self._threads.append(thread)
                        thread.start()
                self._cond.notify(len(handles))
        if closed:
            for handle in handles:
                handle.cancel()
        return list(handles)

    def _next(self) -> FutureHandle | None:
        with self._cond:
            while True:
                while self._queue:
                    handle = heapq.heappop(self._queue)[2]
                    if not handle.cancelled:
                        handle.started = True
                        handle.started_at = time.monotonic()
                        self._running.add(handle)
                        return handle
                if self._closed:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        while True:
            handle = self._next()
            if handle is None:
                return
            try:
                handle.set_result(self._attempts(handle))
            finally:
                with self._cond:
                    self._running.discard(handle)

    def _attempts(self, handle: FutureHandle) -> SeedOutcome:
        task = handle.job.task
        retries = handle.job.retries
        attempt = 0
        while not handle.cancelled:  # a retry never starts after a cancel
            attempt += 1
            try:
                outcome = as_outcome(self.run_job(handle, attempt), task.seed, f"{self.name} executor")
            except Exception as exc:  # a bug in an executor must not hang the item waiting on it
                if is_timeout(exc):  # e.g. subprocess.run(..., timeout=task.timeout) ran out
                    limit = f"resources.timeout of {task.timeout:g} s" if task.timeout else "a time limit"
                    outcome = infra_outcome(
                        task,
                        "timeout",
                        f"exceeded {limit} in the {self.name} executor ({type(exc).__name__}: {exc})",
                        traceback=error_info("timeout", exc)["traceback"],
                    )
                else:
                    outcome = infra_outcome(
                        task,
                        "executor",
                        f"{self.name} executor failed: {exc}",
                        traceback=error_info("executor", exc)["traceback"],
                    )
            if handle.cancelled:
                return outcome  # ignored: the handle already holds its cancelled outcome
            error = outcome.error
            if outcome.status == INFRA and error is not None and error.get("kind") in RETRYABLE:
                outcome = outcome.with_error(attempts=attempt)
                if attempt <= retries:
                    continue
            return outcome
        return handle.result()  # cancelled between attempts: the outcome the cancel set

    def withdraw(self, handles: Sequence[Handle]) -> bool:
        """Cancel ``handles`` (the seeds of one item) as one unit, if none of them has started:
        no worker thread can take one meanwhile (it takes a job under the same lock).  False,
        and nothing done, when one has started or finished (or is not a FutureHandle)."""
        with self._cond:
            if any(not isinstance(h, FutureHandle) or h.started or h.done() for h in handles):
                return False
            for handle in handles:
                handle.cancel()  # queued: nothing to kill; the worker threads skip it
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            handles = [entry[2] for entry in self._queue] + list(self._running)
            self._queue.clear()
            self._cond.notify_all()
        for handle in handles:
            handle.cancel()  # a running one is killed through kill()
