"""Judging one metric's per-seed values, form-agnostic: the form says what passes, this says
what the values are (aggregate, confidence interval, missing values) and puts it in words.

``judge_values`` runs once per item and criterion, so it does the least it can: statistics are
computed only when there are several seeds or a ``confidence`` asks for them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pytest_mlexp.criteria.base import HOW, display_name, fmt, pct, shown
from pytest_mlexp.model import Accepted, Contrast, Criterion, Judgement, Level, Stats
from pytest_mlexp.records import as_mapping
from pytest_mlexp.stats import _interval, _mean_std, seeds_phrase, seeds_to_settle

from ..structs import struct

__all__ = [
    "Lookup",
    "Measurements",
    "accept",
    "aggregate",
    "borderline_margins",
    "is_borderline",
    "judge_values",
    "judged_value",
    "problem",
    "values_sentence",
    "who",
]


@struct(frozen=True, slots=True)
class Measurements:
    """What one sub-experiment (or the selected point of a sweep) measured, as criteria read it.

    ``per_seed``: seed -> that seed's metrics (empty when the result holds no seeds);
    ``metrics``: the aggregate (a single seed's own values when there is one seed).
    """

    per_seed: Mapping[Any, Mapping[str, Any]]
    metrics: Mapping[str, Any]

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any]) -> Measurements:
        """From a results entry (SPEC section 8 shape: ``metrics``, and ``per_seed`` with seeds)."""
        per_seed, metrics = entry.get("per_seed"), entry.get("metrics")
        return cls(as_mapping(per_seed) or {}, as_mapping(metrics) or {})

    @classmethod
    def of_values(cls, metric: str, values: Sequence[Any]) -> Measurements:
        """One metric's values, one per seed (seeds numbered from 0)."""
        if len(values) <= 1:
            return cls({}, {metric: values[0] if values else None})
        return cls({i: {metric: v} for i, v in enumerate(values)}, {})

    def values(self, metric: str) -> list[Any]:
        """The per-seed values of ``metric`` (``[metrics[metric]]`` when no seed reported it)."""
        if self.per_seed:
            vals = [s.get(metric) if isinstance(s, Mapping) else None for s in self.per_seed.values()]
            if any(v is not None for v in vals):
                return vals
        return [self.metrics.get(metric)]

    def by_seed(self, metric: str) -> dict[str, Any] | None:
        """``{seed: value}`` when ``metric`` is stored per seed (keys as text: ``0`` pairs with
        ``"0"`` from a JSON round trip); None when it is one value."""
        if self.per_seed:
            vals = {
                str(k): s.get(metric) if isinstance(s, Mapping) else None for k, s in self.per_seed.items()
            }
            if any(v is not None for v in vals.values()):
                return vals
        return None

    def names(self) -> list[str]:
        """Every metric name reported (for a did-you-mean)."""
        out = list(self.metrics)
        for seed in self.per_seed.values():
            if isinstance(seed, Mapping):
                out.extend(n for n in seed if n not in out)
        return [str(n) for n in out]


#: Another sub-experiment's measurements by id (None: it has no result).  The results view of
#: the session provides it; see ``verdict.measurements``.
Lookup = Callable[[str], "Measurements | None"]


def problem(value: Any) -> tuple[str, float]:
    """('' , number) for a usable value, else (what is wrong with it, nan)."""
    if type(value) is float:  # the common case first: it is the hot path
        if math.isfinite(value):
            return "", value
    elif type(value) is int and -(2**1000) < value < 2**1000:
        return "", float(value)
    if value is None:
        return "not reported", math.nan
    if isinstance(value, bool):
        return f"a bool ({value!r}), not a number", math.nan
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:
            return "too large for a float", math.nan
        if math.isfinite(number):
            return "", number
        return ("NaN" if math.isnan(number) else ("inf" if number > 0 else "-inf")), math.nan
    if isinstance(value, (list, tuple)):  # a short series kept as information (SPEC section 10)
        return f"not a single number (a list of {len(value)} values)", math.nan
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"not a number: {text}", math.nan


def _non_finite(value: Any) -> bool:
    """A reported number that is NaN or infinite (not a bool, not text)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and problem(value)[0] in ("NaN", "inf", "-inf")
    )


def read(values: Sequence[Any]) -> tuple[list[float], int, str]:
    """(the usable numbers, how many values were not, what was wrong with the first of those)."""
    nums: list[float] = []
    bad_short = ""
    bad_count = 0
    for v in values:
        short, number = problem(v)
        if short:
            bad_count += 1
            bad_short = bad_short or short
        else:
            nums.append(number)
    return nums, bad_count, bad_short


def aggregate(c: Criterion, nums: Sequence[float]) -> float:
    """The value judged over several seeds (the mean's interval is handled by the caller)."""
    how = c.aggregate
    if how == "all":
        # Every seed must pass: the worst seed decides, and is the value shown.
        form = c.form
        return min(nums, key=lambda x: (form.passes(x), form.margin(x)))
    if how == "median":
        ordered = sorted(nums)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
    if how == "min":
        return min(nums)
    if how == "max":
        return max(nums)
    return math.fsum(nums) / len(nums)


def judged_value(criterion: Criterion | None, values: Sequence[Any]) -> float | None:
    """The number ``judge`` would show for these per-seed values, cheaply (no message, no stats).

    The criterion's aggregate (``all``: the worst seed; with ``confidence``: the mean); the mean
    without a criterion; None when a value is missing or not a number.  Used to rank sweep points.
    """
    nums: list[float] = []
    for v in values or (None,):
        short, number = problem(v)
        if short:
            return None
        nums.append(number)
    if len(nums) == 1:
        return nums[0]
    if criterion is None or criterion.confidence is not None:
        return math.fsum(nums) / len(nums)
    return aggregate(criterion, nums)


def borderline_margins(c: Criterion) -> tuple[float, float]:
    """The borderline margin below and above (they differ only for ``in``); (0, 0) means none."""
    return c.form.borderline_margins(c.borderline)


def is_borderline(c: Criterion, x: float) -> bool:
    """For a passing ``x``: is it within the borderline margin of the threshold?"""
    below, above = c.form.borderline_margins(c.borderline)
    return c.form.is_borderline(x, below, above)


def who(acc: Accepted | None) -> str:
    if acc is None:
        return ""
    return "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))


def accept(
    c: Criterion,
    value: Any,
    rule: str,
    message: str,
    reason: str | None,
    stats: Stats | None,
    contrast: Contrast | None = None,
) -> Judgement:
    acc = cast(Accepted, c.accepted)
    # The judged outcome stays visible in the message; the level records the human decision.
    message = f"{message}; accepted{who(acc)}: {acc.reason}"
    return Judgement(
        c.metric,
        value,
        "accepted",
        True,
        False,
        rule,
        message,
        reason=reason,
        stats=stats,
        note=c.note,
        accepted=acc,
        contrast=contrast,
    )


def missing(c: Criterion, rule: str, short: str, reason: str) -> Judgement:
    """A criterion that could not be judged: ``short`` goes in the message, ``reason`` says why."""
    message = f"{c.metric}: {short}"
    if c.accepted is not None:
        return accept(c, None, rule, message, reason, None)
    return Judgement(c.metric, None, "missing", False, False, rule, message, reason=reason, note=c.note)


def judge_values(
    c: Criterion, values: Sequence[Any], *, seeds: int | None = None, stub: bool = False
) -> Judgement:
    """Judge a one-metric criterion against its metric's per-seed values (one without seeds).

    ``seeds``: how many seeds the plan asked for; seeds that did not report count as missing.
    ``stub``: a wiring check: the level is judged as usual, but ``passed`` is True unless the
    metric is missing or not a number, and nothing is flagged borderline.
    """
    form = c.form
    metric = c.metric
    rule = form.rule_text()
    vals = list(values) if values else [None]
    if seeds is not None and seeds > len(vals):
        vals.extend([None] * (seeds - len(vals)))
    nums, bad_count, bad_short = read(vals)
    if bad_count:
        where = f" in {bad_count} of {len(vals)} seeds" if len(vals) > 1 else ""
        reason = (
            f"metric {metric!r} was not reported{where}"
            if bad_short == "not reported"
            else f"metric {metric!r} is {bad_short}{where}"
        )
        if stub and all(v is not None and _non_finite(v) for v in vals if problem(v)[0]):
            # SPEC 5a: a reported NaN or infinity is wired (tiny stub params can give NaN)
            message = f"{metric}: {bad_short}{where} (stub: reported, threshold not enforced)"
            return Judgement(metric, None, "missing", True, False, rule, message, reason=reason, note=c.note)
        return missing(c, rule, f"{bad_short}{where}", reason)

    n = len(nums)
    stats: Stats | None = None
    detail = ""
    seeds_needed: int | None = None
    suffix = ""
    if n > 1:
        mean, std = _mean_std(nums)
        ci95 = _interval(mean, std, n, 0.95)
        stats = Stats(mean=mean, std=std, n=n, ci95=ci95)
    if c.confidence is not None:
        conf = c.confidence
        value: float = stats.mean if stats is not None else nums[0]
        if stats is None:
            level: Level = "inconclusive"
            passed = False
            borderline = False
            suffix = f", a {pct(conf)} confidence criterion needs at least 2 seeds"
        else:
            lo, hi = cast(tuple[float, float], _interval(stats.mean, stats.std, n, conf))
            detail = f" (mean of {n} seeds, {pct(conf)} CI [{fmt(lo)}, {fmt(hi)}])"
            outcome = form.ci_outcome(lo, hi)
            if outcome == "inconclusive":
                level, passed, borderline = "inconclusive", False, False
                threshold = form.pass_threshold(value)
                seeds_needed = seeds_to_settle(nums, threshold, conf)
                suffix = f", {seeds_phrase(seeds_needed)} would settle it"
            else:
                passed = outcome == "pass"
                level = form.level(value, passed)
                borderline = passed and (is_borderline(c, lo) or is_borderline(c, hi))
    else:
        how = c.aggregate
        if n == 1:
            value = vals[0] if type(vals[0]) is int else nums[0]
        elif how == "mean":
            value = cast(Stats, stats).mean
        else:
            value = aggregate(c, nums)
        if n > 1:
            detail = f" ({HOW[how]} of {n} seeds"
            if how == "mean" and stats is not None and stats.ci95 is not None:
                detail += f", 95% CI [{fmt(stats.ci95[0])}, {fmt(stats.ci95[1])}]"
            detail += ")"
        passed = form.passes(value)
        level = form.level(value, passed)
        borderline = passed and is_borderline(c, value)

    value_text = shown(value, form.pass_threshold(value))
    message = f"{metric} = {value_text}{detail} needs {form.needs_text()}: {level}{suffix}"
    if borderline:
        below, above = borderline_margins(c)
        message += f" (borderline: within {fmt(max(below, above))} of the threshold; requires human review)"
    if c.accepted is not None:
        return accept(c, value, rule, message, None, stats)
    if stub:
        if not passed:
            message += " (stub: threshold not enforced)"
        passed, borderline = True, False
    return Judgement(
        metric,
        value,
        level,
        passed,
        borderline,
        rule,
        message,
        stats=stats,
        seeds_needed=seeds_needed,
        note=c.note,
    )


def values_sentence(j: Judgement, c: Criterion) -> str:
    """The FINDINGS.md sentence about a one-metric judgement: the form says pass or fail in its
    own words (``Form.describe``); missing, accepted and inconclusive are said here."""
    name = display_name(c.metric)
    src = f" (from {j.source})" if j.source else ""
    if j.value is None:
        if j.accepted is not None:
            return f"{name} was not measured{src} but was accepted{who(j.accepted)}: {j.accepted.reason}."
        return f"{name} could not be judged{src}: {j.reason or 'not reported'}."
    subject = f"{name} of {fmt(j.value)}"
    if j.stats is not None and j.stats.n > 1:
        how = "mean" if c.confidence is not None else HOW[c.aggregate]
        subject += f" ({how} of {j.stats.n} seeds)"
    subject += src
    needs = c.form.needs_text()
    if j.accepted is not None:
        return f"{subject} was accepted against {needs}{who(j.accepted)}: {j.accepted.reason}."
    if j.level == "inconclusive":
        conf = pct(c.confidence or 0.95)
        if j.stats is None:
            return (
                f"{subject} is inconclusive: a {conf} confidence criterion ({needs}) needs at least 2 seeds."
            )
        return (
            f"{subject} is inconclusive: its {conf} confidence interval straddles {needs}; "
            f"{seeds_phrase(j.seeds_needed)} would settle it."
        )
    text = c.form.describe(subject, float(j.value), j.level)
    if j.borderline:
        below, above = borderline_margins(c)
        margin = fmt(max(below, above))
        text += f" This is borderline (within {margin} of the threshold) and requires human review."
    return text
