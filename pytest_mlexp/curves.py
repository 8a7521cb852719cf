"""Learning curves: what ``runner.log_metrics`` logged, per seed, in a file of its own.

``research/experiments/<experiment>/curves/<sub_id>[<point>].json`` holds one item's curves:
``{"sub": ..., "point": ..., "seeds": {"0": {"loss": {"steps": [...], "values": [...]}}}}``.
Each key keeps at most :data:`MAX_POINTS` points (evenly spaced, first and last kept), so a
handler that logs every batch of a long run never makes the results owner write megabytes per
item, and results.yaml never holds curves at all (its writing stays linear in the items).

The points are cut down where the item ran (``from_outcomes``, before they travel on the test
report) and the file is written by the process that owns the results files (``write``).
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes

__all__ = ["MAX_POINTS", "curve_name", "curve_path", "downsample", "from_outcomes", "read", "remove", "write"]

MAX_POINTS = 1000
FOLDER = "curves"

Curves = dict[str, dict[str, dict[str, list[Any]]]]  # seed -> key -> {"steps", "values"}


def downsample(
    steps: Sequence[int], values: Sequence[float], limit: int = MAX_POINTS
) -> tuple[list[int], list[float]]:
    """At most ``limit`` points, evenly spaced by position, the first and the last included."""
    n = len(steps)
    if n <= limit:
        return list(steps), list(values)
    if limit < 2:
        return [steps[-1]], [values[-1]]
    picks = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    return [steps[i] for i in picks], [values[i] for i in picks]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def from_outcomes(outcomes: Sequence[Any], limit: int = MAX_POINTS) -> Curves | None:
    """The item's curves from its seeds' outcomes (``SeedOutcome.history``), or None when no
    seed logged a number."""
    out: Curves = {}
    for outcome in outcomes:
        keys: dict[str, tuple[list[int], list[float]]] = {}
        for point in outcome.history:
            metrics = point.get("metrics") if isinstance(point, Mapping) else None
            step = point.get("step") if isinstance(point, Mapping) else None
            if not isinstance(metrics, Mapping) or not isinstance(step, int):
                continue
            for key, raw in metrics.items():
                value = _number(raw)
                if value is not None:
                    steps, values = keys.setdefault(str(key), ([], []))
                    steps.append(step)
                    values.append(value)
        if keys:
            out[str(outcome.seed)] = {
                key: dict(zip(("steps", "values"), downsample(s, v, limit), strict=True))
                for key, (s, v) in keys.items()
            }
    return out or None


def curve_name(sub_id: str, point: str | None) -> str:
    """The name of an item's curve file in its experiment's curves folder."""
    return f"{sub_id}[{point}].json" if point else f"{sub_id}.json"


def curve_path(plan_root: Path, experiment_id: str, sub_id: str, point: str | None) -> Path:
    return plan_root / "experiments" / experiment_id / FOLDER / curve_name(sub_id, point)


def write(path: Path, sub_id: str, point: str | None, curves: Mapping[str, Any]) -> None:
    """The item's curve file, replaced whole (atomically: a reader never sees half of one)."""
    data = {"sub": sub_id, "point": point, "seeds": curves}
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # Not fsynced: curves are re-made by the next run of the item; results.yaml is the record.
    atomic_write_bytes(path, text.encode("utf-8"), fsync=False)


def remove(path: Path) -> None:
    """A re-run that logged nothing leaves no curve of an earlier run behind."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()


def read(path: Path) -> dict[str, Any] | None:
    """A curve file's content, or None when it is missing or not one (edited, half-copied)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    seeds = data.get("seeds") if isinstance(data, dict) else None
    return data if isinstance(seeds, dict) else None
