"""The executor protocol: submit a task, get a handle, wait for or cancel it.

A third-party executor subclasses :class:`Executor` and is returned by a
``pytest_mlexp_executor(name, config)`` hook implementation (see ``hookspecs.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from ..execution import INFRA, Task, now_iso


class Handle(abc.ABC):
    """A submitted task: ``result()`` blocks and returns the outcome dict; never raises for
    handler errors (those are outcomes), only for bugs."""

    @abc.abstractmethod
    def result(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...


class Executor(abc.ABC):
    """Runs tasks.  ``concurrent`` executors are dispatched ahead (SPEC section 6)."""

    name: str = "executor"
    concurrent: bool = True
    #: Fixture values other than ``runner`` can be used (only the in-process executor).
    supports_fixtures: bool = False

    def __init__(self, *, concurrency: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        self.concurrency = concurrency
        self.options = dict(options or {})

    @abc.abstractmethod
    def submit(self, task: Task) -> Handle: ...

    def close(self) -> None:
        """Cancel what is still running and release resources (called at session end)."""


def infra_outcome(task: Task, reason: str, message: str, *, started_at: str | None = None) -> dict[str, Any]:
    """An outcome for work that did not finish for reasons outside the handler."""
    return {
        "seed": task.seed,
        "status": INFRA,
        "error": {"kind": reason, "type": reason.capitalize(), "message": message, "traceback": ""},
        "started_at": started_at or now_iso(),
        "finished_at": now_iso(),
        "duration_s": 0.0,
        "history": [],
    }
