"""pytest-mlexp: ML experiments as pytest items, judged by their success criteria.

PYTEST_DONT_REWRITE: the plugin has no test assertions to rewrite, and in-process pytester
runs would otherwise warn that it was imported before rewriting could start.
"""

from __future__ import annotations

from .runner import ExperimentRunner

__version__ = "0.1.0"
__all__ = ["ExperimentRunner", "__version__"]
