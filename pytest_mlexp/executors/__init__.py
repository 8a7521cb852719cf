"""Executors and the dispatcher that hands tasks to them (SPEC section 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..execution import Task
from .base import Executor, Handle, infra_outcome

if TYPE_CHECKING:
    import pytest

    from ..session import MlexpSession

__all__ = ["Dispatcher", "Executor", "Handle", "infra_outcome"]


class Dispatcher:
    """Runs an item's tasks on the executor its sub-experiment names."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state

    def run(
        self, item: pytest.Item, executor: str, tasks: Sequence[Task], fixtures: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        from .local import run_local

        if executor != "local":
            raise NotImplementedError(executor)
        return [run_local(task, fixtures) for task in tasks]

    def close(self) -> None:
        pass
