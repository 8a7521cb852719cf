"""The base of executors whose seeds run elsewhere: submit, poll, map failures, bring back.

:class:`RemoteExecutor` is a :class:`~pytest_mlexp.executors.base.PoolExecutor` whose subclass
says how to talk to one back end, and nothing else:

- :meth:`~RemoteExecutor.check`: a problem that fails every job at once, found without any
  network call (no credentials, no ``sbatch`` on PATH);
- :meth:`~RemoteExecutor.start` / :meth:`~RemoteExecutor.stop`: once per session, on first use
  and at its end;
- :meth:`~RemoteExecutor.launch`: submit one attempt of a job and return a *call* (anything);
- :meth:`~RemoteExecutor.wait`: the call's result within ``timeout`` seconds, or one of the
  exceptions below: :class:`NotYet` (ask again), :class:`RemoteTimeout`,
  :class:`RemotePreempted`, :class:`RemoteLost`, :class:`RemoteCancelled` or any
  :class:`RemoteError` (an infra_error of its ``kind``), :class:`RemoteFailed` (an ``error``);
- :meth:`~RemoteExecutor.cancel_call`: stop a call (``-x``, Ctrl-C, SIGTERM, session end);
- :meth:`~RemoteExecutor.bring_back`: the outcome from what the call returned (by default
  :func:`receive_outcome`, which also writes artifact files that travelled with it).

The base class does the rest the same way for every back end: the queue, the check before any
submission, cancelling a call whose job is cancelled, the infra kinds (``timeout``,
``preempted``, ``lost_worker``, ``cancelled``, ``submit``, ``setup``), retries of preempted and
lost work, and stopping the back end at the end.  The modal and slurm executors are built on it.

Back ends without a shared filesystem run the seed with
:func:`pytest_mlexp.remote.run_task_with_files` (the outcome plus the artifact files as bytes)
and :func:`receive_outcome` writes those files where a local run would have.
Standard library only.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import ErrorInfo, SeedOutcome, as_outcome, error_info, now_iso
from .base import RETRYABLE, FutureHandle, Handle, Job, PoolExecutor, infra_outcome

__all__ = [
    "NotYet",
    "RemoteCancelled",
    "RemoteError",
    "RemoteExecutor",
    "RemoteFailed",
    "RemoteLost",
    "RemotePreempted",
    "RemoteTimeout",
    "receive_outcome",
]


# --- what wait() raises -------------------------------------------------------------------------
class NotYet(Exception):
    """``wait(call, timeout)`` found no result within ``timeout`` (the base class asks again)."""


class RemoteError(Exception):
    """The work did not finish, for a reason outside the handler: infra_error ``kind``
    (retried per ``resources.retries`` when the kind is in ``RETRYABLE``).  ``traceback``: what
    the remote side left to read (a log's tail), kept with the error."""

    kind: str = "remote"

    def __init__(self, message: str = "", traceback: str = "", *, kind: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback
        if kind is not None:
            self.kind = kind


class RemoteTimeout(RemoteError):
    """The call ran past its time limit (infra_error ``timeout``, never retried)."""

    kind = "timeout"


class RemotePreempted(RemoteError):
    """The work was preempted (infra_error ``preempted``, retried per ``resources.retries``)."""

    kind = "preempted"


class RemoteLost(RemoteError):
    """The work was lost: a node or container failed, a connection broke (infra_error
    ``lost_worker``, retried per ``resources.retries``)."""

    kind = "lost_worker"


class RemoteCancelled(RemoteError):
    """Someone outside this session cancelled the work (infra_error ``cancelled``, not retried)."""

    kind = "cancelled"


class RemoteFailed(Exception):
    """The remote side failed outside the handler (an ``error`` of kind ``remote``, not an
    infra_error), with the remote traceback as text."""

    def __init__(self, message: str, traceback: str = "", type_name: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.type_name = type_name


# --- artifacts that travel with the result --------------------------------------------------------
def _safe_write(base: Path, rel: str, blob: bytes) -> None:
    from ..runner import safe_artifact_path

    dest = safe_artifact_path(base, rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(blob)


def receive_outcome(
    task: Any,
    data: Mapping[str, Any] | SeedOutcome,
    *,
    kept_as: Callable[[str, str], str] | None = None,
) -> SeedOutcome:
    """The outcome of a seed run where this machine's files are out of reach, with its files
    written where a local run would have written them.

    ``data`` is what :func:`pytest_mlexp.remote.run_task_with_files` returned on the other side:
    an outcome in ``SeedOutcome.to_dict()`` shape plus ``artifact_files`` (``{path relative to
    the plan folder: bytes}``, written under ``task.plan_root``), ``wandb_files`` (an offline
    W&B run's files, relative to the project root, so that the recorded ``wandb sync`` command
    works here) and ``artifact_volume`` (``{path: where it was kept}`` for files too large to
    travel; ``kept_as(path, where)`` says how the result names them, by default ``where``, or
    ``(not kept: path)``).  Paths are checked as ``runner.save_artifact`` checks them: nothing
    is written outside those folders.  A plain outcome (no files) is read as it is."""
    if isinstance(data, SeedOutcome):
        return data
    data = dict(data)
    files = data.pop("artifact_files", None) or {}
    large = data.pop("artifact_volume", None) or {}
    for rel, blob in files.items():
        _safe_write(Path(task.plan_root), str(rel), blob)
    for rel, blob in (data.pop("wandb_files", None) or {}).items():
        _safe_write(Path(task.root), str(rel), blob)
    result = data.get("result")
    if large and isinstance(result, Mapping):
        name = kept_as or (lambda rel, where: where or f"(not kept: {rel})")
        renamed = {rel: name(rel, where) for rel, where in large.items()}
        data["result"] = {
            **result,
            "artifacts": [renamed.get(a, a) for a in result.get("artifacts") or []],
        }
    return SeedOutcome.from_dict(data)


# --- the executor ----------------------------------------------------------------------------------
class RemoteExecutor(PoolExecutor):
    """Seeds submitted to a back end and waited for, at most ``concurrency`` in flight."""

    #: where the work runs, for messages ("on Modal", "on Slurm")
    where: str = "remotely"
    #: how long one ``wait`` may block before the base class looks at cancellation again
    poll_s: float = 5.0
    #: the back end stops work at ``resources.timeout`` itself (and reports it with
    #: :class:`RemoteTimeout`); when False, the base class cancels a call still running
    #: ``resources.timeout`` seconds after its launch (queue time included) and records
    #: infra_error ``timeout``
    enforces_timeout: bool = False

    def __init__(self, *, concurrency: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(concurrency=concurrency, options=options)
        self._problem: tuple[str, str] | None = None
        self._checked = False
        self._start_error: ErrorInfo | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self._calls: dict[FutureHandle, Any] = {}
        self._calls_lock = threading.Lock()

    # --- what a subclass provides -----------------------------------------------------------------
    def check(self) -> tuple[str, str] | None:
        """``(infra_error kind, message with the fix)`` when no job can run (found without
        network calls: it is asked once, before the first submission); None when ready."""
        return None

    def start(self) -> None:
        """Open the back end (once, before the first launch); an exception fails every job
        with infra_error ``setup``."""

    def stop(self) -> None:
        """Close the back end (once, at session end, when it was started)."""

    @abc.abstractmethod
    def launch(self, handle: FutureHandle, attempt: int) -> Any:
        """Submit attempt ``attempt`` of ``handle.job`` and return a call object; an exception
        is infra_error ``submit`` (the back end refused the job)."""

    @abc.abstractmethod
    def wait(self, call: Any, timeout: float) -> Mapping[str, Any] | SeedOutcome:
        """The call's result (an outcome, or a mapping :meth:`bring_back` reads), waiting at most
        ``timeout`` seconds; raises :class:`NotYet` when it is not there yet, or
        :class:`RemoteTimeout`, :class:`RemotePreempted`, :class:`RemoteLost`,
        :class:`RemoteCancelled`, :class:`RemoteFailed` (any other exception is an ``error`` of
        kind ``remote``, with its traceback)."""

    @abc.abstractmethod
    def cancel_call(self, call: Any) -> None:
        """Stop the call's work (never raises; called from any thread)."""

    def bring_back(self, task: Any, data: Mapping[str, Any] | SeedOutcome) -> SeedOutcome:
        """The outcome of what :meth:`wait` returned (files that travelled with it are written
        in place: :func:`receive_outcome`)."""
        return receive_outcome(task, data)

    # --- helpers for subclasses -------------------------------------------------------------------
    def register(self, handle: FutureHandle, call: Any) -> None:
        """Make ``call`` the one a cancel of ``handle`` stops (``run_job`` does this for the call
        :meth:`launch` returns; a back end that launches several jobs at once registers the
        others itself)."""
        with self._calls_lock:
            self._calls[handle] = call

    def call_of(self, handle: FutureHandle) -> Any:
        with self._calls_lock:
            return self._calls.get(handle)

    def calls(self) -> list[Any]:
        """The calls in flight."""
        with self._calls_lock:
            return list(self._calls.values())

    # --- the protocol -----------------------------------------------------------------------------
    def problem(self) -> tuple[str, str] | None:
        if not self._checked:
            self._problem = self.check()
            self._checked = True
        return self._problem

    def submit_all(self, jobs: Sequence[Job]) -> list[Handle]:
        problem = self.problem()
        if problem is None:
            return super().submit_all(jobs)
        out: list[Handle] = []
        for job in jobs:  # every job fails at once, with the fix, and nothing is submitted
            handle = FutureHandle(job)
            handle.set_result(infra_outcome(job.task, problem[0], problem[1]))
            out.append(handle)
        return out

    def _ensure_started(self) -> ErrorInfo | None:
        with self._start_lock:
            if not self._started and self._start_error is None:
                try:
                    self.start()
                    self._started = True
                except Exception as exc:
                    self._start_error = error_info("setup", exc)
            return self._start_error

    def run_job(self, handle: FutureHandle, attempt: int) -> SeedOutcome:
        task = handle.job.task
        started, t0 = now_iso(), time.monotonic()

        def infra(kind: str, message: str, traceback: str = "") -> SeedOutcome:
            return infra_outcome(
                task,
                kind,
                message,
                started_at=started,
                traceback=traceback,
                duration_s=time.monotonic() - t0,
            )

        failed = self._ensure_started()
        if failed is not None:
            return infra(
                "setup",
                f"could not start the {self.name} executor: {failed.get('message', '')}",
                failed.get("traceback", ""),
            )
        if handle.cancelled:
            return infra("cancelled", "cancelled before it started")
        try:
            call = self.launch(handle, attempt)
        except Exception as exc:
            info = error_info("submit", exc)
            return infra("submit", f"could not submit the job {self.where}: {exc}", info["traceback"])
        self.register(handle, call)
        launched = time.monotonic()
        limit = task.timeout if not self.enforces_timeout else None
        try:
            if handle.cancelled:  # cancelled while it was being submitted
                self.cancel_call(call)
            tries = f"attempt {attempt} of {handle.job.retries + 1}"
            while True:
                try:
                    poll = self.poll_s
                    if limit:  # never wait much past the time limit
                        poll = max(0.0, min(poll, launched + limit - time.monotonic()))
                    data = self.wait(call, poll)
                    break
                except NotYet:
                    if handle.cancelled:
                        return infra("cancelled", "cancelled")
                    if limit and time.monotonic() - launched >= limit:
                        self.cancel_call(call)
                        return infra(
                            "timeout",
                            f"exceeded resources.timeout of {limit:g} s {self.where}; the call was cancelled",
                        )
                except RemoteTimeout as exc:
                    limit = task.timeout
                    what = f"exceeded resources.timeout of {limit:g} s" if limit else "ran out of time"
                    detail = f" ({exc})" if str(exc) else ""
                    return infra("timeout", f"{what} {self.where}{detail}", exc.traceback)
                except RemoteCancelled as exc:
                    message = str(exc) or f"cancelled {self.where}, outside this session"
                    return infra("cancelled", message, exc.traceback)
                except RemoteError as exc:
                    message = str(exc) or f"{exc.kind} {self.where}"
                    if exc.kind in RETRYABLE:
                        message = f"{message} ({tries})"
                    return infra(exc.kind, message, exc.traceback)
                except RemoteFailed as exc:
                    return SeedOutcome.failure(
                        task.seed,
                        "remote",
                        str(exc),
                        started_at=started,
                        traceback=exc.traceback,
                        type_name=exc.type_name or "RemoteError",
                        duration_s=time.monotonic() - t0,
                    )
                except Exception as exc:  # raised by the remote code itself: keep its traceback
                    return SeedOutcome.failure(task.seed, "remote", exc, started_at=started)
        finally:
            with self._calls_lock:
                if self._calls.get(handle) is call:
                    del self._calls[handle]
        return as_outcome(self.bring_back(task, data), task.seed, f"{self.name} executor")

    def kill(self, handle: FutureHandle) -> None:
        call = self.call_of(handle)
        if call is not None:
            self.cancel_call(call)

    def close(self) -> None:
        super().close()
        if self._started:
            self.stop()
