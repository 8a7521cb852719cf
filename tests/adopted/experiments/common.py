"""Helpers the team's handlers share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def count(runner: Any) -> None:
    """One line per handler call, so tests can tell what ran again."""
    calls = ROOT / "calls"
    calls.mkdir(exist_ok=True)
    with open(calls / runner.sub_experiment_id, "a", encoding="utf-8") as handle:
        handle.write(f"seed {runner.seed}\n")


def fixed(name: str) -> bool:
    """A fix the researcher made (a file at the project root stands for the edit)."""
    return (ROOT / name).exists()
