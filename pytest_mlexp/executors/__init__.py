"""Executors: the protocol (``base.py``), the built-ins and their registry.

An executor runs the seeds of an item somewhere and hands back one
:class:`~pytest_mlexp.records.SeedOutcome` per seed.  Nothing here knows the pytest session: the
session's dispatcher (``dispatch.py``) asks for an executor by name and binds it to an
:class:`~pytest_mlexp.executors.base.ExecutorContext`.  This package imports nothing above
``execution`` (the seed runner and the records).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import (
    RETRYABLE,
    Executor,
    ExecutorContext,
    FutureHandle,
    Handle,
    Job,
    PoolExecutor,
    infra_outcome,
)
from .local import LocalExecutor

if TYPE_CHECKING:
    import pytest

    from .backend import RemoteExecutor

__all__ = [
    "BUILTIN_EXECUTORS",
    "RETRYABLE",
    "Executor",
    "ExecutorContext",
    "FutureHandle",
    "Handle",
    "Job",
    "PoolExecutor",
    "RemoteExecutor",
    "UnknownExecutor",
    "builtin_executor",
    "infra_outcome",
]

BUILTIN_EXECUTORS = ("local", "process", "modal", "slurm")
DEFAULT_MODAL_CONCURRENCY = 32
#: seeds submitted to Slurm at once (submitit's own default array parallelism): the cluster's
#: scheduler decides what runs
DEFAULT_SLURM_CONCURRENCY = 256


if not TYPE_CHECKING:  # (hidden from mypy, which then checks every other name imported from here)

    def __getattr__(name: str) -> Any:
        # RemoteExecutor (backend.py) is imported when asked for: only remote back ends build on
        # it, and a local run would import it for nothing.
        if name == "RemoteExecutor":
            from .backend import RemoteExecutor

            globals()[name] = RemoteExecutor
            return RemoteExecutor
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownExecutor(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown executor {name!r}; available: {', '.join(BUILTIN_EXECUTORS)}, "
            "or one that a plugin or conftest.py provides through the pytest_mlexp_executor hook"
        )


def _xdist_share(config: pytest.Config) -> tuple[int, int]:
    """(this worker's index, number of workers); (0, 1) outside pytest-xdist.  Read from the
    config, not PYTEST_XDIST_* variables, which a pytest started inside a worker inherits."""
    info: Mapping[str, Any] = getattr(config, "workerinput", None) or {}
    try:
        count = int(info.get("workercount", 1))
        index = int(str(info.get("workerid", "gw0"))[2:])
    except ValueError:
        return 0, 1
    return (index, count) if count > 1 else (0, 1)


def builtin_executor(name: str, config: pytest.Config) -> Executor | None:
    """The built-in executor called ``name``, or None.  Concurrency and GPUs are split evenly
    among pytest-xdist workers so that the session as a whole keeps to the limit."""
    flag: int | None = config.getoption("mlexp_concurrency", None)
    index, workers = _xdist_share(config)
    if name == "local":
        return LocalExecutor()
    if name == "process":
        from .process import ProcessExecutor, visible_gpus

        gpus = visible_gpus()
        if workers > 1 and gpus:
            gpus = gpus[index::workers] or [gpus[index % len(gpus)]]
        total = flag or len(gpus) or os.cpu_count() or 1
        return ProcessExecutor(concurrency=max(1, total // workers), gpus=gpus)
    if name == "modal":
        from .modal import ModalExecutor

        total = flag or DEFAULT_MODAL_CONCURRENCY
        return ModalExecutor(config, concurrency=max(1, total // workers))
    if name == "slurm":
        from .slurm import SlurmExecutor

        total = flag or DEFAULT_SLURM_CONCURRENCY
        return SlurmExecutor(folder=slurm_folder(config), concurrency=max(1, total // workers))
    return None


def slurm_folder(config: pytest.Config) -> Path:
    """Where the slurm executor makes its session folder: pytest's cache folder, in the project
    (which the cluster's nodes see), else the temporary folder."""
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        return Path(cache.mkdir("mlexp-slurm"))
    import tempfile

    return Path(tempfile.gettempdir()) / f"mlexp-slurm-{os.getuid() if hasattr(os, 'getuid') else 0}"
