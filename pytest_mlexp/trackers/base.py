"""The tracker protocol: what an experiment tracker (W&B, or a third party's) implements.

A tracker is built and used **where the handler runs** (the pytest process, a worker process or
a Modal container), from plain settings the pytest process put in ``Task.tracking``.  So a
tracker class must be importable there and constructible with no arguments; everything it
needs per run is read from ``task.tracking`` in :meth:`Tracker.start`.

Third parties return an instance from a ``pytest_mlexp_tracker(config)`` hook implementation
(see ``hookspecs.py`` and docs/wandb.md); that instance may add its own plain settings with
:meth:`Tracker.task_settings`.  Workers then import the class by its ``module:qualname`` path.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..execution import Task

__all__ = ["SWITCHED_OFF", "Tracker", "TrackerError", "TrackerRun", "TrackerTimeout", "call_with_timeout"]

#: In a tracker's warning when it switched itself off after a failure (``<name>: ... <name> is
#: off for the rest of this run of pytest``): the pytest process, seeing it come back from a
#: worker, stops giving later seeds tracking settings, so a failure is not retried per seed.
SWITCHED_OFF = "is off for the rest of this run of pytest"

T = TypeVar("T")


class TrackerError(Exception):
    """A tracker could not do something; becomes a warning, never a failed item."""


class TrackerTimeout(TrackerError):
    """A tracker call did not return in time (its thread is left behind, as a daemon)."""


class TrackerRun(abc.ABC):
    """One tracked run: one sub-experiment (sweep point) and seed."""

    @abc.abstractmethod
    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        """Log already-prefixed metrics (``<sub_id>/<name>``) at ``step`` (never decreasing)."""

    def progress(self, fraction: float, stage: str | None) -> None:  # noqa: B027 - optional
        """``runner.progress``: by default nothing (the W&B run logs ``<sub_id>/progress``)."""

    @abc.abstractmethod
    def finish(
        self, summary: Mapping[str, Any], *, artifacts: Sequence[Path] = (), failed: bool = False
    ) -> dict[str, Any]:
        """Close the run.  Returns where it is, as plain data, which results.yaml records under
        ``tracking:`` (with ``tracker``, the tracker's :attr:`Tracker.key`, and ``seed`` added):
        ``{url, run_path}`` for a run a browser can open (``url`` becomes the link in FINDINGS.md,
        JUnit's ``tracking.url`` and the HTML report), ``{offline_dir, sync}`` for an offline
        one, ``{run_path, ui}`` for a run in a local store (``ui``: the command that serves it)."""


class Tracker(abc.ABC):
    """Opens runs.  One instance per process, reused for every seed run there."""

    #: short name used in messages and link labels ("W&B", "MLflow")
    name: str = "tracker"
    #: what results.yaml records as ``tracking.tracker`` (``wandb``, ``mlflow``); a third party's
    #: tracker leaves it empty and is recorded by its :attr:`name`
    key: str = ""
    #: environment variables a remote worker needs (a Modal executor passes them as a secret)
    env_vars: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._warnings: list[str] = []
        self._said: set[str] = set()  # a message is reported once per process, not once per seed
        self._lock = threading.Lock()

    @abc.abstractmethod
    def start(self, task: Task) -> TrackerRun | None:
        """Open a run for ``task`` (settings in ``task.tracking``), or None to skip it.
        May raise: the caller turns any exception into a warning."""

    def task_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Called in the pytest process with each task's tracking settings (plain data: mode,
        project, group, job_type, name, config, dir, ...); return them, with your own additions.
        They travel to the worker, so keep them JSON-safe."""
        return settings

    def teardown(self) -> None:  # noqa: B027 - optional
        """Release resources at the end of the session (in each process that started runs)."""

    def worker_env(
        self, tracking: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment variables (name -> local value) a remote worker needs for ``tracking``;
        by default those of :attr:`env_vars` that are set here."""
        import os

        env = os.environ if environ is None else environ
        return {name: env[name] for name in self.env_vars if env.get(name)}

    # --- warnings: collected here, carried back in the outcome, printed once by pytest -----
    def warn(self, message: str) -> None:
        with self._lock:
            if message not in self._said:
                self._said.add(message)
                self._warnings.append(message)

    def drain_warnings(self) -> list[str]:
        with self._lock:
            out, self._warnings = self._warnings, []
        return out

    @classmethod
    def import_path(cls) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"


def call_with_timeout(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` seconds.

    Tracker calls that talk to a server (W&B init and finish) can hang on a bad network whatever
    their own timeout settings say; a session must never hang on them.  On timeout the thread
    is abandoned (daemon: it cannot keep the process alive) and :class:`TrackerTimeout` raised.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported to the caller, never to threading.excepthook
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"mlexp-tracker-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TrackerTimeout(f"{what} did not return within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
