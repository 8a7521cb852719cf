"""Hooks that third parties implement (in a plugin or a conftest.py) to extend pytest-mlexp.

Each is ``firstresult``: the first implementation that returns something other than None wins,
so a conftest.py can replace a built-in (return None to leave a name to others).  They are
called once per session and name (not per item).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .executors.base import Executor
    from .trackers.base import Tracker


@pytest.hookspec(firstresult=True)
def pytest_mlexp_executor(name: str, config: pytest.Config) -> Executor | None:
    """Return the executor that runs the sub-experiments whose ``executor:`` is ``name``.

    :param name: the executor name, from the plan (``executor: slurm``) or
        ``--mlexp-executor``.  Built in: ``local``, ``process``, ``modal``.
    :param config: the pytest config (options, ini values, ``config.hook``).
    :returns: a :class:`pytest_mlexp.Executor` (usually a :class:`pytest_mlexp.PoolExecutor`
        subclass), or None when ``name`` is not yours.  The session binds it to an
        :class:`pytest_mlexp.ExecutorContext` before the first job and closes it at the end.
    """


@pytest.hookspec(firstresult=True)
def pytest_mlexp_tracker(config: pytest.Config) -> Tracker | None:
    """Return the experiment tracker to use instead of Weights & Biases.

    :param config: the pytest config.
    :returns: a :class:`pytest_mlexp.Tracker`, or None to keep the default (W&B).  It runs
        where each seed runs (the pytest process, a worker, a container), so it must be
        importable there by its ``import_path()``.
    """


@pytest.hookspec(firstresult=True)
def pytest_mlexp_modal_image(config: pytest.Config) -> Any:
    """Return the ``modal.Image`` that Modal sub-experiments run in.

    :param config: the pytest config.
    :returns: a ``modal.Image`` (typed ``Any``: modal is an optional dependency), or None to
        build one from the plan's ``modal:`` section.  Either way pytest-mlexp adds the handler
        package and itself as the last steps.
    """
