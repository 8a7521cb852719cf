"""pytest-mlexp: ML experiments as pytest items, judged by their success criteria.

The names in ``__all__`` are the public API: what a handler, a third-party executor or a
tracker uses.  Everything else is internal and may change.  Names load on first use: every
pytest run imports this package (the plugin lives in it), so importing it costs nothing.

PYTEST_DONT_REWRITE: the plugin has no test assertions to rewrite, and in-process pytester
runs would otherwise warn that it was imported before rewriting could start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .execution import Task
    from .executors.backend import (
        NotYet,
        RemoteCancelled,
        RemoteError,
        RemoteExecutor,
        RemoteFailed,
        RemoteLost,
        RemotePreempted,
        RemoteTimeout,
        receive_outcome,
    )
    from .executors.base import (
        RETRYABLE,
        Executor,
        ExecutorContext,
        FutureHandle,
        Handle,
        Job,
        PoolExecutor,
        infra_outcome,
    )
    from .executors.signals import keep_signal_handlers
    from .records import ErrorInfo, ResultEntry, ResultOp, SeedOutcome, SeedResult
    from .remote import run_task, run_task_with_files
    from .runner import ExperimentRunner
    from .trackers.base import Tracker, TrackerRun

# The one place the version is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    # handlers
    "ExperimentRunner": "runner",
    # executors (README "Your own executor")
    "Executor": "executors.base",
    "PoolExecutor": "executors.base",
    "Handle": "executors.base",
    "FutureHandle": "executors.base",
    "Job": "executors.base",
    "ExecutorContext": "executors.base",
    "RETRYABLE": "executors.base",
    "infra_outcome": "executors.base",
    "Task": "execution",
    "run_task": "remote",
    # remote back ends (README "Your own executor": RemoteExecutor and its helpers)
    "RemoteExecutor": "executors.backend",
    "NotYet": "executors.backend",
    "RemoteError": "executors.backend",
    "RemoteTimeout": "executors.backend",
    "RemotePreempted": "executors.backend",
    "RemoteLost": "executors.backend",
    "RemoteCancelled": "executors.backend",
    "RemoteFailed": "executors.backend",
    "receive_outcome": "executors.backend",
    "run_task_with_files": "remote",
    "keep_signal_handlers": "executors.signals",
    # records (README "Your own executor": what Handle.result() returns)
    "SeedOutcome": "records",
    "SeedResult": "records",
    "ErrorInfo": "records",
    "ResultEntry": "records",
    "ResultOp": "records",
    # trackers (README "Another tracker")
    "Tracker": "trackers.base",
    "TrackerRun": "trackers.base",
}

__all__ = [
    "RETRYABLE",
    "ErrorInfo",
    "Executor",
    "ExecutorContext",
    "ExperimentRunner",
    "FutureHandle",
    "Handle",
    "Job",
    "NotYet",
    "PoolExecutor",
    "RemoteCancelled",
    "RemoteError",
    "RemoteExecutor",
    "RemoteFailed",
    "RemoteLost",
    "RemotePreempted",
    "RemoteTimeout",
    "ResultEntry",
    "ResultOp",
    "SeedOutcome",
    "SeedResult",
    "Task",
    "Tracker",
    "TrackerRun",
    "__version__",
    "infra_outcome",
    "keep_signal_handlers",
    "receive_outcome",
    "run_task",
    "run_task_with_files",
]


def __getattr__(name: str) -> Any:
    # Loaded when someone asks, not at import: a plain pytest run must not pay for them.
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
