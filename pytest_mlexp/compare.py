"""Comparing a result with an earlier run of it (SPEC section 11): ``mlexp diff`` and the
``vs previous`` column of FINDINGS.md.  Pure functions on stored entries; no pytest.

An earlier run is a history item of the same sub-experiment (or sweep point): the newest one
(``previous``), the newest that finished on or before a date, or the newest made at a git
commit.  Metric deltas come with the confidence interval of the difference where seeds allow,
with the statistics the criteria use (SPEC section 3a): paired by seed when both runs hold the
same seeds, Welch's interval otherwise (at least 2 values on each side).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any, Literal

from .stats import confidence_interval, welch_interval
from .structs import struct
from .textutil import lazy_re

__all__ = [
    "MetricDelta",
    "RunDiff",
    "against",
    "diff_entries",
    "earlier_runs",
    "flat_params",
    "previous_value",
]

_RAN = ("passed", "failed")
_DATE = lazy_re(r"^\d{4}-\d{2}-\d{2}")  # mlexp diff --against only
_COMMIT = lazy_re(r"^[0-9a-fA-F]{4,40}$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _history(entry: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    items = entry.get("history") if isinstance(entry, Mapping) else None
    return [h for h in items if isinstance(h, Mapping)] if isinstance(items, list) else []


def previous_value(
    entry: Mapping[str, Any] | None, metric: str, stale: Mapping[str, Any] | None = None
) -> float | None:
    """``metric`` in the newest earlier run of ``entry`` (:func:`earlier_runs`) that ran to a
    result and reported it."""
    for item in earlier_runs(entry, stale):
        if item.get("status") not in _RAN:
            continue
        metrics = item.get("metrics")
        value = _number(metrics.get(metric)) if isinstance(metrics, Mapping) else None
        if value is not None:
            return value
    return None


def earlier_runs(
    entry: Mapping[str, Any] | None, stale: Mapping[str, Any] | None = None
) -> list[Mapping[str, Any]]:
    """Earlier runs of a result, newest first: its history, and a stale entry of the same
    result (a run with other params or seeds) with its history."""
    items = list(_history(entry))
    if isinstance(stale, Mapping):
        items += [stale, *_history(stale)]
    now = str(entry.get("finished_at") or "") if isinstance(entry, Mapping) else ""
    out = [h for h in items if h.get("status") not in (None, "blocked")]
    out = [h for h in out if not now or str(h.get("finished_at") or "") != now or h is stale]
    return sorted(out, key=lambda h: str(h.get("finished_at") or ""), reverse=True)


def against(
    entry: Mapping[str, Any] | None, spec: str, stale: Mapping[str, Any] | None = None
) -> Mapping[str, Any] | None:
    """The earlier run ``spec`` names (:func:`earlier_runs`): ``previous`` (the newest), a date
    (``2026-01-31`` or a full time: the newest finished by then), or a git commit (a prefix of
    at least 4 hex digits: the newest made at it)."""
    items = earlier_runs(entry, stale)
    if spec == "previous":
        return items[0] if items else None
    if _DATE.match(spec):
        bound = spec if "T" in spec else spec + "T23:59:59Z"
        found = [h for h in items if str(h.get("finished_at") or "") <= bound]
        return found[0] if found else None
    if _COMMIT.match(spec):
        low = spec.lower()
        for h in items:
            commit = str(h.get("git_commit") or "")
            if commit and commit.lower().startswith(low):
                return h
        # the current result itself may be the one made at that commit: nothing earlier then
        return None
    raise ValueError(f"--against must be 'previous', a date (YYYY-MM-DD) or a git commit, not {spec!r}")


@struct(frozen=True)
class MetricDelta:
    """One metric in two runs: ``old`` → ``new``, the difference and, where seeds allow, its
    confidence interval (``pairing``: paired by seed, or Welch)."""

    metric: str
    old: float | None
    new: float | None
    delta: float | None
    ci: tuple[float, float] | None = None
    pairing: Literal["paired", "welch", "none"] = "none"
    n: int = 0  # seeds (pairs when paired; the smaller side otherwise)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "old": self.old, "new": self.new, "delta": self.delta}
        if self.ci is not None:
            out["ci95"] = [self.ci[0], self.ci[1]]
            out["pairing"] = self.pairing
            out["n"] = self.n
        return out


@struct(frozen=True)
class RunDiff:
    """Two runs of one result: metric deltas, params that changed, criteria levels that moved."""

    metrics: tuple[MetricDelta, ...]
    params: tuple[tuple[str, Any, Any], ...]  # (name, old, new), only those that changed
    levels: tuple[tuple[str, str | None, str | None], ...]  # (metric, old level, new level) that moved
    old_finished_at: str | None = None
    new_finished_at: str | None = None
    notes: tuple[str, ...] = field(default=())


def _per_seed(entry: Mapping[str, Any], metric: str) -> dict[Any, float]:
    per_seed = entry.get("per_seed")
    out: dict[Any, float] = {}
    if isinstance(per_seed, Mapping):
        for seed, values in per_seed.items():
            value = _number(values.get(metric)) if isinstance(values, Mapping) else None
            if value is not None:
                out[str(seed)] = value
    return out


def metric_delta(metric: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> MetricDelta:
    """``metric`` in ``old`` and ``new`` (entries or history items)."""
    found_old, found_new = old.get("metrics"), new.get("metrics")
    old_metrics: Mapping[str, Any] = found_old if isinstance(found_old, Mapping) else {}
    new_metrics: Mapping[str, Any] = found_new if isinstance(found_new, Mapping) else {}
    a, b = _number(old_metrics.get(metric)), _number(new_metrics.get(metric))
    delta = b - a if a is not None and b is not None else None
    before, after = _per_seed(old, metric), _per_seed(new, metric)
    if delta is None or len(before) < 2 or len(after) < 2:
        return MetricDelta(metric, a, b, delta)
    if set(before) == set(after):
        diffs = [after[s] - before[s] for s in sorted(after)]
        ci = confidence_interval(diffs, 0.95)
        return MetricDelta(metric, a, b, math.fsum(diffs) / len(diffs), ci, "paired", len(diffs))
    diff, ci, _ = welch_interval(list(after.values()), list(before.values()), 0.95)
    return MetricDelta(metric, a, b, diff, ci, "welch", min(len(before), len(after)))


def flat_params(params: Any, prefix: str = "") -> dict[str, Any]:
    """Nested params as one mapping of dotted names (``opt.lr``); an empty mapping stays a value."""
    out: dict[str, Any] = {}
    if isinstance(params, Mapping):
        for key, value in params.items():
            if isinstance(value, Mapping) and value:
                out.update(flat_params(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
    return out


def diff_entries(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    old_levels: Mapping[str, str] | None = None,
    new_levels: Mapping[str, str] | None = None,
    metrics: Sequence[str] | None = None,
) -> RunDiff:
    """What changed from ``old`` to ``new``.  ``*_levels``: each criterion's level in each run,
    judged by today's criteria (the caller judges; levels stored then may come from older ones)."""
    names: list[str] = list(metrics or ())
    if not names:
        for entry in (new, old):
            found = entry.get("metrics")
            if isinstance(found, Mapping):
                names += [str(n) for n in found if str(n) not in names]
    deltas = tuple(metric_delta(n, old, new) for n in names)
    before, after = flat_params(old.get("params")), flat_params(new.get("params"))
    params = tuple(
        (k, before.get(k), after.get(k))
        for k in dict.fromkeys([*after, *before])
        if k not in before or k not in after or before[k] != after[k]
    )
    levels: list[tuple[str, str | None, str | None]] = []
    olds, news = dict(old_levels or {}), dict(new_levels or {})
    for metric in dict.fromkeys([*news, *olds]):
        if olds.get(metric) != news.get(metric):
            levels.append((metric, olds.get(metric), news.get(metric)))
    notes: list[str] = []
    if old.get("fingerprint") and _fp(new) and old.get("fingerprint") == _fp(new):
        notes.append("same fingerprint: the same code, params and data (a re-run or a reused result)")
    return RunDiff(
        deltas,
        params,
        tuple(levels),
        str(old.get("finished_at") or "") or None,
        str(new.get("finished_at") or "") or None,
        tuple(notes),
    )


def _fp(entry: Mapping[str, Any]) -> Any:
    prov = entry.get("provenance")
    return prov.get("fingerprint") if isinstance(prov, Mapping) else entry.get("fingerprint")
