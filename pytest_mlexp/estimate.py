"""What a run will cost before it is launched (SPEC section 11): wall time, GPU-hours and money,
from the durations stored with earlier results.  Pure functions; no pytest.

Each item (a sub-experiment, or one point of its sweep) costs its seconds per seed times its
seeds.  Seconds per seed come from its own stored results (current, then stale, then history:
the newest that ran to a result), else from the other points of its sweep; an item with none is
"never run" and counted apart.  GPU-hours count ``resources.gpu`` (``"H100:2"``: two H100s) for
every second a seed runs; ini ``mlexp_gpu_prices`` (``H100=3.95 A100-80GB=2.50``, per GPU-hour)
turns them into money.  Wall time: items on the ``local`` executor run one after another; the
others run concurrently (``--mlexp-concurrency``) while they do, so the estimate is the larger of
the two (an estimate: dependencies may serialise more).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .model import gpu_request

if TYPE_CHECKING:
    from .model import SubExperiment

__all__ = [
    "Estimate",
    "ItemCost",
    "PriceError",
    "estimate",
    "gpu_of",
    "parse_prices",
    "per_seed_seconds",
    "render_duration",
]

_RAN = ("passed", "failed")
_PRICE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=([0-9]+(?:\.[0-9]+)?)$")


class PriceError(ValueError):
    """A malformed ``mlexp_gpu_prices`` value; the message says what is expected."""


def parse_prices(text: str) -> dict[str, float]:
    """``"H100=3.95 A100-80GB=2.50"`` (spaces, commas or new lines between) -> {type: price}."""
    out: dict[str, float] = {}
    for token in re.split(r"[\s,]+", text.strip()):
        if not token:
            continue
        m = _PRICE.match(token)
        if m is None:
            raise PriceError(
                f"{token!r} is not TYPE=PRICE; write e.g. 'H100=3.95 A100-80GB=2.50' (per GPU-hour)"
            )
        out[m.group(1)] = float(m.group(2))
    return out


def gpu_of(resources: Mapping[str, Any]) -> tuple[str | None, int]:
    """``resources.gpu`` as (type, count), read as the executors read it (``model.gpu_request``):
    ``"H100:2"`` -> ("H100", 2); ``"2"`` or ``"any:2"`` -> ("any", 2) (hours of no one type,
    never priced); none -> (None, 0)."""
    count, kind = gpu_request(resources.get("gpu"))
    if not count:
        return None, 0
    return kind or "any", count


def _seconds(entry: Mapping[str, Any]) -> float | None:
    """Seconds per seed of one stored result (or history item), when it ran to a result."""
    if entry.get("status") not in _RAN:
        return None
    duration = entry.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        return None
    prov = entry.get("provenance")
    seeds = prov.get("seeds") if isinstance(prov, Mapping) else entry.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        per_seed = entry.get("per_seed")
        seeds = list(per_seed) if isinstance(per_seed, Mapping) and per_seed else [0]
    return float(duration) / len(seeds)


def _newest(entries: Iterable[Any]) -> float | None:
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for candidate in (entry, *(h for h in entry.get("history") or () if isinstance(h, Mapping))):
            got = _seconds(candidate)
            if got is not None:
                return got
    return None


def per_seed_seconds(doc: Mapping[str, Any], sub: SubExperiment, point: str | None) -> float | None:
    """Seconds per seed of an item from its experiment's results document (see the module
    docstring); None when neither it nor (for a sweep) another of its points ever ran."""
    subs = doc.get("sub_experiments") or {}
    stale = doc.get("stale") or {}
    if point is None:
        return _newest([subs.get(sub.id), stale.get(sub.id)])
    holder = subs.get(sub.id)
    points = holder.get("points") if isinstance(holder, Mapping) else None
    points = points if isinstance(points, Mapping) else {}
    own = _newest([points.get(point), stale.get(f"{sub.id}[{point}]")])
    if own is not None:
        return own
    known = [v for v in (_newest([p]) for p in points.values()) if v is not None]
    return math.fsum(known) / len(known) if known else None


@dataclass(frozen=True)
class ItemCost:
    """One item to estimate: its sub-experiment, point, seeds it will run, executor."""

    sub: SubExperiment
    point: str | None
    seeds: int
    executor: str
    reused: bool = False  # every seed's result is reused: it costs nothing


@dataclass
class Estimate:
    items: int = 0
    seeds: int = 0
    wall_s: float = 0.0
    gpu_hours: dict[str, float] = field(default_factory=dict)  # GPU type -> GPU-hours
    cost: float | None = None
    unpriced: list[str] = field(default_factory=list)  # GPU types without a price
    unknown: int = 0  # items never run: nothing to estimate them from
    reused: int = 0

    @property
    def total_gpu_hours(self) -> float:
        return math.fsum(self.gpu_hours.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "seeds": self.seeds,
            "wall_s": round(self.wall_s, 1),
            "gpu_hours": {k: round(v, 4) for k, v in self.gpu_hours.items()},
            "cost": None if self.cost is None else round(self.cost, 2),
            "unpriced": list(self.unpriced),
            "unknown": self.unknown,
            "reused": self.reused,
        }

    def line(self) -> str:
        """``estimate for 12 items (30 seeds): ~1 h 23 min wall, 3.4 GPU-hours (H100 2.1), ~$12.80;
        unknown for 2 never run``."""
        head = f"estimate for {self.items} item{'s' if self.items != 1 else ''} ({self.seeds} seeds)"
        known = self.items - self.unknown - self.reused
        parts: list[str] = []
        if known > 0:
            parts.append(f"~{render_duration(self.wall_s)} wall")
            if self.gpu_hours:
                split = ", ".join(f"{k} {v:.2f}" for k, v in self.gpu_hours.items())
                parts.append(f"{self.total_gpu_hours:.2f} GPU-hours ({split})")
            else:
                parts.append("0 GPU-hours")
            if self.cost is not None:
                priced = f"~${self.cost:,.2f}"
                if self.unpriced:
                    priced += f" (no price for {', '.join(self.unpriced)}: add it to mlexp_gpu_prices)"
                parts.append(priced)
        tail: list[str] = []
        if self.reused:
            tail.append(f"{self.reused} reused (no cost)")
        if self.unknown:
            tail.append(f"unknown for {self.unknown} never run")
        text = head + (": " + ", ".join(parts) if parts else "")
        return text + ("; " + "; ".join(tail) if tail else "")


def render_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def estimate(
    items: Sequence[ItemCost],
    doc_of: Callable[[str], Mapping[str, Any]],
    *,
    prices: Mapping[str, float] | None = None,
    concurrency: Callable[[str], int] = lambda executor: 1,
) -> Estimate:
    """The cost of running ``items``; ``doc_of(experiment_id)`` gives stored results."""
    out = Estimate(items=len(items))
    serial = 0.0
    parallel: dict[str, list[float]] = {}
    for item in items:
        out.seeds += item.seeds
        if item.reused:
            out.reused += 1
            continue
        per = per_seed_seconds(doc_of(item.sub.experiment_id), item.sub, item.point)
        if per is None:
            out.unknown += 1
            continue
        if item.executor == "local":
            serial += per * item.seeds
        else:
            parallel.setdefault(item.executor, []).extend([per] * item.seeds)
        kind, count = gpu_of(item.sub.resources)
        if kind is not None:
            out.gpu_hours[kind] = out.gpu_hours.get(kind, 0.0) + per * item.seeds * count / 3600.0
    wall = serial
    for executor, seeds in parallel.items():
        slots = max(1, concurrency(executor))
        wall = max(wall, max(seeds), math.fsum(seeds) / min(slots, len(seeds)))
    out.wall_s = wall
    if prices is not None and prices:
        out.cost = math.fsum(hours * prices[k] for k, hours in out.gpu_hours.items() if k in prices)
        out.unpriced = sorted(k for k in out.gpu_hours if k not in prices)
    return out
