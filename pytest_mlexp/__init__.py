"""pytest-mlexp: ML experiments as pytest items, judged by their success criteria."""

from __future__ import annotations

from .runner import ExperimentRunner

__version__ = "0.1.0"
__all__ = ["ExperimentRunner", "__version__"]
