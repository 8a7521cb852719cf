"""The ``local`` executor: in the pytest process, one seed at a time; pdb and fixtures work.

A handler here shares the process with pytest, so what it does to the process must cost its
own result only (SPEC section 14, "Handlers under local"):

* ``os._exit`` called in the pytest process is caught (``infra_error``, ``lost_worker``): the
  function is patched while the handler runs and acts only for pytest's own pid, so the
  workers of a fork-based data loader still exit as they should;
* a child the handler forks never returns into the session (``execution.run_seed``);
* ``sys.stdout`` / ``sys.stderr`` closed by the handler are usable again after the seed;
* ``resources.timeout`` (and an item's ``timeout`` mark) stop the handler with ``SIGALRM``:
  ``infra_error`` (``timeout``), as under ``process``, never retried.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, NoReturn

from ..execution import HandlerExited, SeedTimeout, Task, import_failure, import_handler, run_seed
from ..records import SeedOutcome, now_iso
from ..runner import MetricSink, ProgressSink
from .base import DoneHandle, Executor, Handle, Job, infra_outcome

__all__ = ["LocalExecutor", "SeedTimeout", "alarm", "guard", "run_local", "unguard"]


@contextmanager
def alarm(seconds: float | None, message: str | None = None) -> Iterator[None]:
    """Interrupt the handler after ``seconds`` (POSIX main thread only; elsewhere no limit)."""
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    text = message or f"exceeded resources.timeout of {seconds:g} s"

    def _fire(signum: int, frame: Any) -> None:
        raise SeedTimeout(text)

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, max(float(seconds or 0), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Unclosable:
    """A stream that only flushes when closed, for streams whose ``close`` cannot be patched on
    the object itself (the interpreter's own ``sys.stdout`` under ``-s``)."""

    def __init__(self, stream: Any) -> None:
        object.__setattr__(self, "_stream", stream)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.flush()

    @property
    def closed(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._stream, name, value)


# What guard() changed, for unguard() to put back: os._exit as it was and its stand-in, the
# streams as they were, and the __dict__s of those whose close was patched.
_Undo = tuple[Callable[[int], NoReturn], Callable[[int], None], tuple[Any, Any], list[dict[str, Any]]]


def guard(exits: list[int]) -> _Undo:
    """Everything a handler in the pytest process may do to it, made harmless until
    :func:`unguard` (call it whatever happens: ``try``/``finally``):

    * ``os._exit`` raises :class:`HandlerExited` instead of ending pytest, when called in this
      process (a forked child, e.g. a DataLoader worker, exits for real); ``exits`` collects
      the codes asked for;
    * ``sys.stdout`` and ``sys.stderr`` are as they were, and still open, afterwards: pytest's
      capture puts the same stream objects back whenever it resumes (the live line suspends
      it), so a replacement would not last; ``close`` is made a flush on the objects
      themselves, and only a stream that has no instance attributes (a C-level stream: no
      capture, ``-s``) is swapped for a stand-in.

    Two functions rather than a context manager: once per seed, a class's construction,
    ``__enter__`` and ``__exit__`` cost as much as the patching itself."""
    pid = os.getpid()
    real = os._exit

    def _exit(code: int) -> None:
        if os.getpid() != pid:
            real(code)
        exits.append(code)
        raise HandlerExited(
            f"the handler called os._exit({code}) in the pytest process (local executor); the "
            "process was kept and the session goes on. Return or raise instead, or run it with "
            "the process executor"
        )

    os._exit = _exit  # type: ignore[assignment]
    saved = (sys.stdout, sys.stderr)
    patched: list[dict[str, Any]] = []  # the streams' __dict__s (kept: asked for once)
    for name, stream in (("stdout", saved[0]), ("stderr", saved[1])):
        if stream is None:
            continue
        try:
            attributes = vars(stream)
        except TypeError:  # no __dict__: a C-level stream (no capture, -s)
            setattr(sys, name, _Unclosable(stream))
        else:
            attributes["close"] = partial(_flush_quietly, stream)
            patched.append(attributes)
    return real, _exit, saved, patched


def unguard(undo: _Undo) -> None:
    """Undo :func:`guard`."""
    real, stand_in, saved, patched = undo
    for attributes in patched:
        try:  # noqa: SIM105 - not contextlib.suppress: an object per stream per seed
            del attributes["close"]
        except KeyError:  # the handler removed it (or replaced the stream's __dict__)
            pass
    sys.stdout, sys.stderr = saved
    if os._exit is stand_in:
        os._exit = real  # type: ignore[assignment]


def _flush_quietly(stream: Any) -> None:
    """A patched stream's ``close``: ``partial(_flush_quietly, stream)`` (a C-level object:
    cheaper to make than a closure, twice per seed)."""
    with contextlib.suppress(Exception):
        stream.flush()


def run_local(
    task: Task,
    fixtures: Mapping[str, Any],
    *,
    metric_sinks: tuple[MetricSink, ...] = (),
    progress_sinks: tuple[ProgressSink, ...] = (),
    handler: Callable[..., Any] | None = None,
    deadline: float | None = None,
    deadline_text: str | None = None,
) -> SeedOutcome:
    """Run one seed here.  ``deadline`` (``time.monotonic()``): the item's own time limit
    (a ``timeout`` mark), on top of ``resources.timeout``; ``deadline_text`` says what it was."""
    started = now_iso()
    try:
        fn = handler if handler is not None else import_handler(task)
    except Exception as exc:
        return import_failure(task.seed, exc, started)
    seconds = task.timeout
    message = None
    if deadline is not None:
        left = deadline - time.monotonic()
        if seconds is None or left < seconds:
            seconds, message = left, deadline_text
        if left <= 0:
            return infra_outcome(
                task, "timeout", deadline_text or "the item's time ran out", started_at=started
            )
    exits: list[int] = []
    try:
        undo = guard(exits)
        try:
            if seconds:
                with alarm(seconds, message):
                    outcome = run_seed(
                        task, fn, fixtures=fixtures, metric_sinks=metric_sinks, progress_sinks=progress_sinks
                    )
            else:  # no time limit (the common case): no context entered and left for nothing
                outcome = run_seed(
                    task, fn, fixtures=fixtures, metric_sinks=metric_sinks, progress_sinks=progress_sinks
                )
        finally:
            unguard(undo)
    except SeedTimeout as exc:  # ran out after the handler returned (a tracker finishing)
        return infra_outcome(task, "timeout", str(exc), started_at=started)
    except HandlerExited as exc:
        return infra_outcome(task, "lost_worker", str(exc), started_at=started)
    if exits and not (outcome.error and outcome.error.get("kind") == "lost_worker"):
        # The handler caught our HandlerExited and went on: it still meant to end the process.
        return infra_outcome(
            task,
            "lost_worker",
            f"the handler called os._exit({exits[0]}) in the pytest process (local executor) and "
            "then went on; its result is not kept",
            started_at=started,
        )
    return outcome


class LocalExecutor(Executor):
    """In the pytest process, one seed at a time, when its item runs (never ahead)."""

    name = "local"
    concurrent = False
    supports_fixtures = True

    def submit(self, job: Job) -> Handle:
        return DoneHandle(job, run_local(job.task, job.fixtures))
