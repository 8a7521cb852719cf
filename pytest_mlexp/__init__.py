"""pytest-mlexp: ML experiments as pytest items, judged by their success criteria.

PYTEST_DONT_REWRITE: the plugin has no test assertions to rewrite, and in-process pytester
runs would otherwise warn that it was imported before rewriting could start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import ExperimentRunner

__version__ = "0.1.0"
__all__ = ["ExperimentRunner", "__version__"]


def __getattr__(name: str) -> Any:
    # Every pytest run imports this package (the plugin lives in it): load the runner only
    # when someone asks for it.
    if name == "ExperimentRunner":
        from .runner import ExperimentRunner

        return ExperimentRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
