"""Criteria that compare two measurements (SPEC section 3a).

``accuracy: "> p1_logreg:accuracy"`` compares this sub-experiment's ``accuracy`` with
``p1_logreg``'s; ``gain: ">= :baseline_acc"`` with another metric of the same sub-experiment.
The operator is applied to the difference (this side minus the other) against 0:

- the same seeds on both sides: **paired** by seed; ``aggregate`` and ``confidence`` apply to
  the per-seed differences (a paired Student-t interval);
- different seeds, at least 2 values on each side: **Welch**'s interval of the difference of the
  means; ``aggregate`` is taken on each side (``all``: every value against every other value);
- a side with one value: it is a **constant**, and the other side's values minus it (or it minus
  them) are judged as paired differences would be (a one-sample interval);
- one value on each side: the plain difference (a ``confidence`` criterion is inconclusive).

No default borderline (the margin of a difference has no natural scale); an explicit
``borderline`` applies to the difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pytest_mlexp.criteria.base import HOW, OPS, UNICODE_OPS, CriterionError, Op, Outcome, display_name, fmt
from pytest_mlexp.criteria.base import near_miss as _near_miss
from pytest_mlexp.criteria.base import pct as _pct
from pytest_mlexp.criteria.forms import Form, Schema, compare_ci, compare_margin, compare_score
from pytest_mlexp.criteria.judging import (
    Lookup,
    Measurements,
    accept,
    aggregate,
    borderline_margins,
    is_borderline,
    judged_value,
    missing,
    read,
    who,
)
from pytest_mlexp.model import Contrast, Judgement, Pairing, Stats
from pytest_mlexp.stats import (
    _interval,
    _mean_std,
    seeds_phrase,
    seeds_to_settle,
    seeds_to_settle_welch,
    welch_interval,
)

from ..structs import struct
from ..textutil import lazy_re

if TYPE_CHECKING:
    from pytest_mlexp.model import Criterion, Level

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_REF_RE = lazy_re(rf"^\s*({OPS})\s*({_ID})?:(\S+)\s*$")
_STRICT = (">", "<", "!=")
_WORDS: dict[str, tuple[str, str]] = {
    ">": ("beats", "does not beat"),
    ">=": ("matches or beats", "falls short of"),
    "<": ("stays below", "does not stay below"),
    "<=": ("does not exceed", "exceeds"),
    "==": ("equals", "differs from"),
    "!=": ("differs from", "equals"),
}


@struct(frozen=True)
class MetricComparison(Form):
    """``<op> sub:metric`` or ``<op> :metric``: this metric against another measurement."""

    name: ClassVar[str] = "metric_comparison"
    kind: ClassVar[Literal["metric"]] = "metric"
    aggregates_metric: ClassVar[bool] = False

    op: Op
    sub: str | None  # another sub-experiment's id; None: the judged sub-experiment itself
    other: str  # the other metric's name

    @property
    def written(self) -> str:
        """The right side as written: ``p1_logreg:accuracy`` or ``:baseline_acc``."""
        return f"{self.sub or ''}:{self.other}"

    # --- parsing ------------------------------------------------------------------------------
    @classmethod
    def from_text(cls, metric: str, text: str) -> MetricComparison | None:
        m = _REF_RE.match(text)
        if m is None:
            return None
        op = UNICODE_OPS.get(m.group(1), cast(Op, m.group(1)))
        return cls(op, m.group(2), m.group(3))

    def for_sub(self, metric: str, sub_id: str | None) -> MetricComparison:
        """Resolved where the criterion is judged: naming its own sub-experiment is ``:metric``;
        comparing a metric with itself is refused."""
        form = (
            MetricComparison(self.op, None, self.other)
            if self.sub is not None and self.sub == sub_id
            else self
        )
        if form.sub is None and form.other == metric:
            where = f"{sub_id}'s" if sub_id else "its own"
            raise CriterionError(
                f"criterion {metric!r}: compares {metric} with {where} {metric}, which always ties",
                f'name another sub-experiment ("> other_id:{metric}") or another metric (">= :baseline")',
            )
        return form

    # --- what passes: the operator against 0, applied to the difference ------------------------
    def margin(self, x: float) -> float:
        return compare_margin(self.op, 0.0, x)

    def passes(self, x: float) -> bool:
        margin = compare_margin(self.op, 0.0, x)
        return margin > 0 if self.op in _STRICT else margin >= 0

    def borderline_margins(self, explicit: float | None) -> tuple[float, float]:
        if self.op in ("==", "!="):
            return 0.0, 0.0
        return super().borderline_margins(explicit)

    def default_borderline(self) -> tuple[float, float]:
        return 0.0, 0.0  # SPEC 3a: none by default for this form

    def ci_outcome(self, lo: float, hi: float) -> Outcome:
        return compare_ci(self.op, 0.0, lo, hi) or super().ci_outcome(lo, hi)

    def pass_threshold(self, near: float) -> float:
        return 0.0

    def score(self, v: float) -> float:
        return compare_score(self.op, 0.0, v)

    # --- words --------------------------------------------------------------------------------
    def rule_text(self) -> str:
        return f"{self.op} {self.written}"

    def describe(self, subject: str, x: float, level: str) -> str:  # pragma: no cover - see sentence
        return f"{subject}: {level}."

    def own_metrics(self, metric: str) -> tuple[str, ...]:
        return (metric,) if self.sub is not None else (metric, self.other)

    def references(self) -> tuple[str, str] | None:
        return (self.sub, self.other) if self.sub is not None else None

    @classmethod
    def schema_string(cls) -> Schema:
        return {
            "pattern": rf"^\s*({OPS})\s*({_ID})?:\S+\s*$",
            "description": (
                'a comparison with another measurement: "> p1_logreg:accuracy", ">= :baseline_acc"'
            ),
        }

    # --- judging ------------------------------------------------------------------------------
    def point_value(self, c: Criterion, measured: Measurements) -> float | None:
        # A sweep point is ranked by the difference when both sides are in the point; against
        # another sub-experiment the other side is the same for every point, so this side alone
        # ranks them (in the operator's direction; == / != need the other side: not ranked).
        if self.sub is None:
            pair = _sides(c, self, measured, measured)
            return None if isinstance(pair, str) else pair.judged
        if self.op in ("==", "!="):
            return None
        return judged_value(c, measured.values(c.metric))

    def judge(
        self, c: Criterion, measured: Measurements | None, lookup: Lookup | None, stub: bool
    ) -> Judgement:
        rule = self.rule_text()
        if measured is None:
            measured = Measurements({}, {})
        other = measured if self.sub is None else lookup(self.sub) if lookup is not None else None
        if other is None:
            if stub:  # the other side is not this handler's wiring: say so, do not fail
                return _unavailable(c, self, measured, rule)
            why = f"{self.sub} has no result to compare with"
            return missing(c, rule, why, why)
        pair = _sides(c, self, measured, other)
        if isinstance(pair, str):
            return missing(c, rule, pair, pair)
        return pair.judgement(c, self, rule, stub)

    def judge_values(self, c: Criterion, values: Sequence[Any], seeds: int | None, stub: bool) -> Judgement:
        # Only this side's values: a same-sub-experiment comparison finds no other metric in them.
        return self.judge(c, Measurements.of_values(c.metric, list(values)), None, stub)

    def sentence(self, j: Judgement, c: Criterion) -> str:
        name = display_name(c.metric)
        src = f" (from {j.source})" if j.source else ""
        if j.value is None or j.contrast is None:
            if j.accepted is not None:
                return f"{name} was not compared{src} but was accepted{who(j.accepted)}: {j.accepted.reason}."
            return f"{name} could not be compared with {self.written}{src}: {j.reason or 'not reported'}."
        k = j.contrast
        subject = f"{name} {fmt(j.value)}{src}"
        theirs = _their(self, c.metric, k.other_value)
        ci = f", {_pct(k.confidence)} CI [{fmt(k.ci[0])}, {fmt(k.ci[1])}]" if k.ci is not None else ""
        how = _how_phrase(c, self, k)
        if j.accepted is not None:
            return f"{subject} against {theirs} was accepted{who(j.accepted)}: {j.accepted.reason}."
        if j.level == "inconclusive":
            if k.ci is None:
                return (
                    f"{subject} against {theirs} is inconclusive: a {_pct(c.confidence or 0.95)} confidence "
                    f"criterion needs at least 2 values on a side ({how})."
                )
            return (
                f"{subject} against {theirs} is inconclusive: the{ci[1:]} of the difference straddles 0 "
                f"({how}); {seeds_phrase(j.seeds_needed)} would settle it."
            )
        d = cast(float, k.difference)
        good, bad = _WORDS[self.op]
        if j.level == "pass":
            by = f" by {fmt(abs(d))}" if self.op not in ("==", "!=") and d != 0 else f": difference {fmt(d)}"
            text = f"{subject} {good} {theirs}{by}{ci}, {how}."
        else:
            text = f"{subject} {bad} {theirs}: difference {fmt(d)}{ci}, {how}; it needs {self.rule_text()}."
        if j.borderline:
            below, above = borderline_margins(c)
            text += f" This is borderline (within {fmt(max(below, above))} of 0) and requires human review."
        return text


# --- the two sides, and how they are compared ---------------------------------------------------


@struct(frozen=True)
class _Pair:
    """Both sides read and paired: the per-value differences (paired, constant, single), or the
    two samples (Welch); ``judgement`` judges them."""

    c: Criterion
    pairing: Pairing
    left: list[float]
    right: list[float]
    diffs: list[float]  # the per-value differences (empty for Welch)
    left_raw: Any

    @property
    def judged(self) -> float:
        c = self.c
        if self.pairing != "welch":
            return _agg(c, self.diffs)
        if c.aggregate == "all":
            return aggregate(c, [a - b for a in self.left for b in self.right])
        return _agg(c, self.left) - _agg(c, self.right)

    def interval(self, confidence: float) -> tuple[float, float] | None:
        """The interval of the mean difference (None with too few values)."""
        if self.pairing == "welch":
            return welch_interval(self.left, self.right, confidence)[1]
        if len(self.diffs) < 2:
            return None
        mean, std = _mean_std(self.diffs)
        return _interval(mean, std, len(self.diffs), confidence)

    def seeds_needed(self, confidence: float) -> int | None:
        if self.pairing == "welch":
            return seeds_to_settle_welch(self.left, self.right, 0.0, confidence)
        return seeds_to_settle(self.diffs, 0.0, confidence)

    def judgement(self, c: Criterion, form: MetricComparison, rule: str, stub: bool) -> Judgement:
        conf = c.confidence
        left_value = self.left_raw if len(self.left) == 1 else _side_value(c, self.left)
        right_value = _side_value(c, self.right)
        stats: Stats | None = None
        if len(self.left) > 1:
            mean, std = _mean_std(self.left)
            stats = Stats(mean, std, len(self.left), _interval(mean, std, len(self.left), 0.95))
        seeds_needed: int | None = None
        suffix = ""
        if conf is not None:
            value = (
                math.fsum(self.diffs) / len(self.diffs)
                if self.pairing != "welch"
                else _mean_std(self.left)[0] - _mean_std(self.right)[0]
            )
            ci = self.interval(conf)
            if ci is None:
                level: Level = "inconclusive"
                passed = borderline = False
                suffix = f", a {_pct(conf)} confidence criterion needs at least 2 values on a side"
            else:
                outcome = form.ci_outcome(*ci)
                if outcome == "inconclusive":
                    level, passed, borderline = "inconclusive", False, False
                    seeds_needed = self.seeds_needed(conf)
                    suffix = f", {seeds_phrase(seeds_needed)} would settle it"
                else:
                    passed = outcome == "pass"
                    level = form.level(value, passed)
                    borderline = passed and (is_borderline(c, ci[0]) or is_borderline(c, ci[1]))
        else:
            value = self.judged
            ci = self.interval(0.95) if c.aggregate == "mean" else None
            passed = form.passes(value)
            level = form.level(value, passed)
            borderline = passed and is_borderline(c, value)
        contrast = Contrast(
            other=form.written,
            other_value=right_value,
            difference=value,
            pairing=self.pairing,
            n=len(self.left),
            n_other=len(self.right),
            ci=ci,
            confidence=conf if conf is not None else 0.95,
        )
        detail = _how_phrase(c, form, contrast)
        if ci is not None:
            detail += f", {_pct(contrast.confidence)} CI [{fmt(ci[0])}, {fmt(ci[1])}]"
        message = (
            f"{c.metric} = {fmt(left_value)} needs {form.op} {form.written} ({fmt(right_value)}): "
            f"difference {fmt(value)} ({detail}): {level}{suffix}"
        )
        if borderline:
            below, above = borderline_margins(c)
            message += f" (borderline: within {fmt(max(below, above))} of 0; requires human review)"
        if c.accepted is not None:
            return accept(c, left_value, rule, message, None, stats, contrast)
        if stub:
            if not passed:
                message += " (stub: not enforced)"
            passed, borderline = True, False
        return Judgement(
            c.metric,
            left_value,
            level,
            passed,
            borderline,
            rule,
            message,
            stats=stats,
            seeds_needed=seeds_needed,
            note=c.note,
            contrast=contrast,
        )


def _agg(c: Criterion, nums: Sequence[float]) -> float:
    return nums[0] if len(nums) == 1 else aggregate(c, nums)


def _side_value(c: Criterion, nums: Sequence[float]) -> float:
    """One side's value as shown: its aggregate (the mean for ``all`` and under ``confidence``)."""
    if len(nums) == 1:
        return nums[0]
    if c.aggregate in ("median", "min", "max") and c.confidence is None:
        return _agg(c, nums)
    return math.fsum(nums) / len(nums)


def _values(m: Measurements, metric: str) -> tuple[dict[str, Any] | None, list[Any]]:
    by_seed = m.by_seed(metric)
    return by_seed, list(by_seed.values()) if by_seed is not None else m.values(metric)


def _bad(values: Sequence[Any], what: str, metric: str, names: Sequence[str]) -> str | None:
    """Why one side cannot be judged (None: it can), with a did-you-mean for a name never seen."""
    nums, bad_count, bad_short = read(values)
    if not bad_count:
        return None
    where = f" in {bad_count} of {len(values)} seeds" if len(values) > 1 else ""
    if bad_short != "not reported":
        return f"{what} is {bad_short}{where}"
    text = f"{what} was not reported{where}"
    if not nums:
        guess = _near_miss(metric, [n for n in names if n != metric])
        if guess is not None:
            text += f" (did you mean {guess}?)"
    return text


def _sides(c: Criterion, form: MetricComparison, mine: Measurements, theirs: Measurements) -> _Pair | str:
    """Read both sides and decide how they pair; a string says why they cannot be compared."""
    left_by_seed, left_raw = _values(mine, c.metric)
    right_by_seed, right_raw = _values(theirs, form.other)
    owner = f"{form.sub}'s" if form.sub is not None else "its"
    problem = _bad(left_raw, f"metric {c.metric!r}", c.metric, mine.names()) or _bad(
        right_raw, f"{owner} metric {form.other!r}", form.other, theirs.names()
    )
    if problem is not None:
        return problem
    left, right = read(left_raw)[0], read(right_raw)[0]
    if left_by_seed is not None and right_by_seed is not None and left_by_seed.keys() == right_by_seed.keys():
        # The same seeds: difference seed by seed (the order of the mappings does not matter).
        keys = list(left_by_seed)
        lefts = read([left_by_seed[k] for k in keys])[0]
        rights = read([right_by_seed[k] for k in keys])[0]
        diffs = [a - b for a, b in zip(lefts, rights, strict=True)]
        return _Pair(c, "paired" if len(keys) > 1 else "single", lefts, rights, diffs, left_raw[0])
    if len(left) == 1 and len(right) == 1:
        return _Pair(c, "single", left, right, [left[0] - right[0]], left_raw[0])
    if len(right) == 1:
        return _Pair(c, "constant", left, right, [a - right[0] for a in left], left_raw[0])
    if len(left) == 1:
        return _Pair(c, "constant", left, right, [left[0] - b for b in right], left_raw[0])
    return _Pair(c, "welch", left, right, [], left_raw[0])


def _unavailable(c: Criterion, form: MetricComparison, measured: Measurements, rule: str) -> Judgement:
    """Under --stub, the other sub-experiment has no result: this side's wiring is all there is
    to check."""
    values = measured.values(c.metric)
    problem = _bad(values, f"metric {c.metric!r}", c.metric, measured.names())
    if problem is not None:
        return missing(c, rule, problem, problem)
    value = _side_value(c, read(values)[0])
    message = f"{c.metric} = {fmt(value)}; {form.sub} has no result to compare with (stub: not compared)"
    return Judgement(c.metric, value, "inconclusive", True, False, rule, message, note=c.note)


def _their(form: MetricComparison, metric: str, value: float | None) -> str:
    shown_value = fmt(value) if value is not None else "?"
    if form.sub is None:
        return f"its {form.other} of {shown_value}"
    if form.other == metric:
        return f"{form.sub}'s {shown_value}"
    return f"{form.sub}'s {form.other} of {shown_value}"


def _how_phrase(c: Criterion, form: MetricComparison, k: Contrast) -> str:
    """``paired over 5 seeds``, ``Welch, 5 and 3 seeds``, ``p1_logreg:accuracy is one value,
    taken as a constant, against 5 seeds``, ``one value each``; with the aggregate when not the
    mean."""
    how = HOW[c.aggregate] if c.confidence is None and c.aggregate != "mean" else ""
    if k.pairing == "paired":
        base = f"paired over {k.n} seeds"
        return f"{how} difference, {base}" if how else base
    if k.pairing == "welch":
        base = f"Welch, {k.n} and {k.n_other} seeds"
        if not how:
            return base
        return f"{base}, worst pair" if c.aggregate == "all" else f"{base}, {how} of each side"
    if k.pairing == "constant":
        one = form.written if k.n_other == 1 else c.metric
        many = k.n if k.n_other == 1 else k.n_other
        base = f"{one} is one value, taken as a constant, against {many} seeds"
        return f"{base}, {how} difference" if how else base
    return "one value each"
