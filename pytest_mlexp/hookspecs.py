"""Hooks that third parties implement (in a plugin or a conftest.py) to extend pytest-mlexp."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_mlexp_executor(name: str, config: pytest.Config) -> Any:
    """Return an executor instance (a ``pytest_mlexp.executors.base.Executor``) for ``name``,
    or None when ``name`` is not yours.  Built-in executors: local, process, modal."""


@pytest.hookspec(firstresult=True)
def pytest_mlexp_tracker(config: pytest.Config) -> Any:
    """Return an experiment tracker (a ``pytest_mlexp.trackers.base.Tracker``) to use instead
    of Weights & Biases, or None to keep the default."""


@pytest.hookspec(firstresult=True)
def pytest_mlexp_modal_image(config: pytest.Config) -> Any:
    """Return the ``modal.Image`` that Modal sub-experiments run in (default: built from the
    plan's ``modal:`` section)."""
