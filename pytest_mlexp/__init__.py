"""pytest-mlexp: ML experiments as pytest items, judged by their success criteria.

The names in ``__all__`` are the public API: what a handler, a third-party executor or a
tracker uses.  Everything else is internal and may change.  Names load on first use: every
pytest run imports this package (the plugin lives in it), so importing it costs nothing.

PYTEST_DONT_REWRITE: the plugin has no test assertions to rewrite, and in-process pytester
runs would otherwise warn that it was imported before rewriting could start.  For the same
reason the package's other modules load through Python's own importer, not pytest's
assertion-rewriting one (``_load_without_assertion_rewriting`` below).
"""

from __future__ import annotations

import importlib
import sys
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


def _load_without_assertion_rewriting() -> None:
    """Take this package off the list of what pytest's assertion rewriter loads.

    pytest marks every plugin's package for rewriting before it imports the plugin, and then
    loads each of the package's modules through its own import hook: it reads and hashes the
    module's source to check its cached byte-code, and reads the byte-code with
    ``marshal.load`` on a file object, which makes a read call for every object it decodes.
    For the ~60 modules a plan run imports that cost 15-40 ms a run (README "Performance"),
    for nothing: the package makes no test assertions (it raises its own failures), which is
    also why its docstring says PYTEST_DONT_REWRITE.  Only this ``__init__`` still comes
    through the hook (it is what runs this).  ``_must_rewrite`` is pytest's own set of marked
    names: if a later pytest names it otherwise, nothing changes here and the package is
    simply rewritten again (``test_the_package_is_not_loaded_by_the_assertion_rewriter``
    says so)."""
    prefix = __name__ + "."
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if not isinstance(marked, set):
            continue
        ours = [name for name in marked if name == __name__ or name.startswith(prefix)]
        if not ours:
            continue
        marked.difference_update(ours)
        seen = getattr(finder, "_marked_for_rewrite_cache", None)  # name -> marked, memoised
        if isinstance(seen, dict):
            for name in [n for n in seen if n == __name__ or n.startswith(prefix)]:
                del seen[name]


_load_without_assertion_rewriting()


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
