"""Criterion forms: one class per way of writing what passes (SPEC section 3).

Each form owns its parsing, what passes, its levels, its margin (how far a value is on the
passing side: borderline and ``aggregate: all`` read it), how it ranks sweep points, its words
(the rule, the FINDINGS sentence) and its JSON-Schema fragment.  The options every form shares
(``aggregate``, ``confidence``, ``borderline``, ``accepted``, ``from``, ``note``) sit on the
``Criterion`` wrapper (model.py) and are parsed in ``parse.py``.

Adding a form: a subclass here (or in a module of its own, as ``contrast.py``), listed in
``parse.FORMS``.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pytest_mlexp.criteria.base import (
    NUM,
    OPS,
    UNICODE_OPS,
    CriterionError,
    Op,
    Outcome,
    exact,
    finite,
    fmt,
    number,
    read_number,
)
from pytest_mlexp.criteria.judging import Lookup, Measurements, judge_values, judged_value, values_sentence

from ..structs import asdict, field_names, struct
from ..textutil import lazy_re

if TYPE_CHECKING:
    from pytest_mlexp.model import Criterion, Direction, Judgement, Level

Schema = dict[str, Any]

_NUMBER: Schema = {"type": "number"}
_DIRECTIONS: dict[str, Direction] = {
    "higher": "higher",
    "maximize": "higher",
    "maximise": "higher",
    "max": "higher",
    "up": "higher",
    "lower": "lower",
    "minimize": "lower",
    "minimise": "lower",
    "min": "lower",
    "down": "lower",
}
_TIER_KEYS = ("target", "acceptable", "failure")


class Form(ABC):
    """What one criterion form decides; ``x`` is the judged number (for a comparison of two
    measurements, their difference)."""

    #: The form's name in plain data (``to_data``) and in ``parse.FORMS``.
    name: ClassVar[str]
    #: ``Criterion.kind``: how the form reads in results and reports.
    kind: ClassVar[Literal["tiered", "compare", "metric"]]
    #: Whether ``aggregate`` applies to the metric's own values (not so for a comparison of two
    #: measurements: it aggregates their differences).
    aggregates_metric: ClassVar[bool] = True

    # --- parsing ------------------------------------------------------------------------------
    @classmethod
    def from_text(cls, metric: str, text: str) -> Form | None:
        """The form written as a string (``">= 0.6"``), or None when ``text`` is not this form."""
        return None

    @classmethod
    def from_mapping(cls, metric: str, spec: Mapping[str, Any]) -> Form | None:
        """The form written with its own keys (``{min: 0.9}``), or None when they are absent."""
        return None

    # --- what passes --------------------------------------------------------------------------
    @abstractmethod
    def margin(self, x: float) -> float:
        """How far ``x`` is on the passing side of the pass threshold (negative: failing side)."""

    def passes(self, x: float) -> bool:
        return self.margin(x) >= 0

    def level(self, x: float, passed: bool) -> Level:
        return "pass" if passed else "fail"

    def borderline_margins(self, explicit: float | None) -> tuple[float, float]:
        """The borderline margin below and above the threshold; (0, 0) means none."""
        if explicit is not None:
            return explicit, explicit
        return self.default_borderline()

    @abstractmethod
    def default_borderline(self) -> tuple[float, float]: ...

    def is_borderline(self, x: float, below: float, above: float) -> bool:
        """For a passing ``x``: is it within the borderline margin of the threshold?"""
        slack = 1e-12 * max(1.0, abs(x))  # 0.61 - 0.6 is 0.010000000000000009, not 0.01
        return below > 0 and self.margin(x) <= below + slack

    def ci_outcome(self, lo: float, hi: float) -> Outcome:
        """Does the whole interval clear the threshold, miss it, or straddle it?  (One-sided
        rules are monotone: the interval clears when both ends pass.)"""
        a, b = self.passes(lo), self.passes(hi)
        return "pass" if a and b else ("fail" if not a and not b else "inconclusive")

    @abstractmethod
    def pass_threshold(self, near: float) -> float:
        """The threshold a value is measured against (for a range: the edge nearer ``near``)."""

    @abstractmethod
    def score(self, v: float) -> float:
        """Bigger is better: how the form ranks the points of a sweep."""

    # --- words --------------------------------------------------------------------------------
    @abstractmethod
    def rule_text(self) -> str:
        """``">= 0.6 (target 0.7)"``, ``"<= 0.35"``, ``"in [0.2, 0.4]"``: ``Judgement.rule``."""

    def needs_text(self) -> str:
        """What the item message says a value needs."""
        return self.rule_text()

    def tiers(self) -> tuple[float | None, float | None, float | None] | None:
        """(target, acceptable, failure) for the findings table; None: the rule says it all."""
        return None

    @abstractmethod
    def describe(self, subject: str, x: float, level: str) -> str:
        """The FINDINGS sentence of a judged value (``subject`` is "Accuracy of 0.912 ...")."""

    # --- judging ------------------------------------------------------------------------------
    def judge(
        self, c: Criterion, measured: Measurements | None, lookup: Lookup | None, stub: bool
    ) -> Judgement:
        """Judge ``c`` (whose form this is) against what its sub-experiment measured."""
        return judge_values(c, measured.values(c.metric) if measured is not None else [None], stub=stub)

    def judge_values(self, c: Criterion, values: Sequence[Any], seeds: int | None, stub: bool) -> Judgement:
        """Judge ``c`` against its metric's per-seed values alone (``criteria.judge``)."""
        return judge_values(c, values, seeds=seeds, stub=stub)

    def sentence(self, j: Judgement, c: Criterion) -> str:
        return values_sentence(j, c)

    def point_value(self, c: Criterion, measured: Measurements) -> float | None:
        """The number a sweep point is ranked by (see ``score``); None: the point cannot be."""
        return judged_value(c, measured.values(c.metric))

    def own_metrics(self, metric: str) -> tuple[str, ...]:
        """The metrics the judged sub-experiment itself must report (the stub's wiring check)."""
        return (metric,)

    def references(self) -> tuple[str, str] | None:
        """(another sub-experiment, its metric) this form reads (an implicit dependency), if any."""
        return None

    # --- plain data and schema ----------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        return {"form": self.name, **asdict(self)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Form:
        fields = set(field_names(cls))
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def schema_string(cls) -> Schema | None:
        """A JSON-Schema fragment for the string form (None: the form has none)."""
        return None

    @classmethod
    def schema_keys(cls) -> dict[str, Schema]:
        """The mapping keys the form adds to a criterion, with their schemas."""
        return {}

    @classmethod
    def schema_required(cls) -> list[str]:
        """Each key here alone makes a mapping this form (for the schema's ``anyOf``)."""
        return []


# --- tiered: {target, acceptable, failure, direction} ---------------------------------------------


@struct(frozen=True)
class Tiered(Form):
    """``{target, acceptable, failure, direction}``: passes on the good side of ``acceptable``
    (inclusive); levels ``target``, ``acceptable``, ``miss``, ``failure``.

    At least one of target/acceptable is required; without ``acceptable`` the target is the
    pass threshold; without ``failure`` a value short of acceptable is a ``miss``.
    """

    name: ClassVar[str] = "tiered"
    kind: ClassVar[Literal["tiered"]] = "tiered"

    target: float | None
    acceptable: float  # the pass threshold (the target when no acceptable was written)
    failure: float | None
    direction: Direction

    @classmethod
    def from_mapping(cls, metric: str, spec: Mapping[str, Any]) -> Tiered | None:
        tiers = {k: spec[k] for k in _TIER_KEYS if spec.get(k) is not None}
        if not tiers:
            return None
        target = number(metric, "target", tiers["target"]) if "target" in tiers else None
        acceptable = number(metric, "acceptable", tiers["acceptable"]) if "acceptable" in tiers else None
        failure = number(metric, "failure", tiers["failure"]) if "failure" in tiers else None
        if target is None and acceptable is None:
            raise CriterionError(
                f"criterion {metric!r}: a failure tier alone does not say what passes",
                "add acceptable: (the pass threshold) and, if you like, target:",
            )
        raw_dir = spec.get("direction")
        if raw_dir is None:
            direction = _tier_direction(metric, target, acceptable, failure)
        else:
            found = _DIRECTIONS.get(str(raw_dir).strip().lower())
            if found is None:
                raise CriterionError(
                    f"criterion {metric!r}: direction must be higher or lower, got {raw_dir!r}",
                    "write direction: higher (bigger is better) or direction: lower",
                )
            direction = found
        _check_tiers(metric, direction, target, acceptable, failure)
        return cls(target, acceptable if acceptable is not None else cast(float, target), failure, direction)

    def margin(self, x: float) -> float:
        return x - self.acceptable if self.direction == "higher" else self.acceptable - x

    def level(self, x: float, passed: bool) -> Level:
        higher = self.direction == "higher"
        if passed:
            if self.target is not None and (x >= self.target if higher else x <= self.target):
                return "target"
            return "acceptable"
        if self.failure is not None and (x <= self.failure if higher else x >= self.failure):
            return "failure"
        return "miss"

    def default_borderline(self) -> tuple[float, float]:
        # 10% of |target - acceptable|; 1% of |acceptable| when there is no distinct target.
        acc = self.acceptable
        distinct = self.target is not None and self.target != acc
        margin = 0.1 * abs(cast(float, self.target) - acc) if distinct else 0.01 * abs(acc)
        return margin, margin

    def pass_threshold(self, near: float) -> float:
        return self.acceptable

    def score(self, v: float) -> float:
        return v if self.direction == "higher" else -v

    def rule_text(self) -> str:
        base = f"{'>=' if self.direction == 'higher' else '<='} {exact(self.acceptable)}"
        if self.target is not None and self.target != self.acceptable:
            base += f" (target {exact(self.target)})"
        return base

    def needs_text(self) -> str:
        if self.target is not None and self.target != self.acceptable:
            op = ">=" if self.direction == "higher" else "<="
            return f"{op} {exact(self.acceptable)} (acceptable; target {exact(self.target)})"
        return self.rule_text()

    def tiers(self) -> tuple[float | None, float | None, float | None]:
        return self.target, self.acceptable, self.failure

    def describe(self, subject: str, x: float, level: str) -> str:
        higher = self.direction == "higher"
        good, bad = ("above", "below") if higher else ("below", "above")
        acc = self.acceptable
        A = exact(acc)
        has_target = self.target is not None and self.target != acc
        if level in ("target", "acceptable"):
            side = "at" if x == acc else good
            if not has_target:
                what = "target" if self.target is not None else "acceptable threshold"
                return f"{subject} meets the {A} {what}" + ("." if x == acc else f" ({side} it).")
            T = exact(self.target)
            if level == "target":
                return f"{subject} is {side} the {A} acceptable threshold and meets the {T} target."
            return f"{subject} is {side} the {A} acceptable threshold but short of the {T} target."
        if level == "miss":
            tail = f"miss; failure at {exact(self.failure)}" if self.failure is not None else "miss"
            return f"{subject} is {bad} the {A} acceptable threshold ({tail})."
        F = exact(self.failure)
        side = "at" if x == self.failure else bad
        return f"{subject} is {side} the {F} failure threshold (failure; acceptable at {A})."

    @classmethod
    def schema_keys(cls) -> dict[str, Schema]:
        return {
            "target": _NUMBER,
            "acceptable": _NUMBER,
            "failure": _NUMBER,
            "direction": {"enum": ["higher", "lower"]},
        }

    @classmethod
    def schema_required(cls) -> list[str]:
        return ["target", "acceptable"]


def _tier_direction(
    metric: str, target: float | None, acceptable: float | None, failure: float | None
) -> Direction:
    for better, worse in ((target, failure), (acceptable, failure), (target, acceptable)):
        if better is not None and worse is not None and better != worse:
            return "higher" if better > worse else "lower"
    raise CriterionError(
        f"criterion {metric!r}: cannot tell whether higher or lower is better from its tiers",
        "add direction: higher (or direction: lower)",
    )


def _check_tiers(
    metric: str, direction: Direction, target: float | None, acceptable: float | None, failure: float | None
) -> None:
    names = [(n, v) for n, v in zip(_TIER_KEYS, (target, acceptable, failure), strict=True) if v is not None]
    for (n1, v1), (n2, v2) in itertools.pairwise(names):
        bad = v1 < v2 if direction == "higher" else v1 > v2
        if bad:
            word = "below" if direction == "higher" else "above"
            order = ">=" if direction == "higher" else "<="
            other = "lower" if direction == "higher" else "higher"
            raise CriterionError(
                f"criterion {metric!r}: direction is {direction} but {n1} {exact(v1)} is {word} "
                f"{n2} {exact(v2)}; with direction {direction} the tiers must satisfy "
                f"target {order} acceptable {order} failure",
                f"use direction: {other}, or fix the tier values",
            )


# --- a comparison with a number: "< 0.35", ">= 0.6", "== 1", "!= 0", {min: x}, {max: x} -----------

_CMP_RE = lazy_re(rf"^\s*({OPS})\s*({NUM})\s*$")
_COMPARE_WORDS: dict[str, tuple[str, str]] = {
    ">=": ("is at least {t}", "is below {t}"),
    ">": ("is above {t}", "is not above {t}"),
    "<=": ("is at most {t}", "is above {t}"),
    "<": ("is below {t}", "is not below {t}"),
    "==": ("equals {t}", "does not equal {t}"),
    "!=": ("differs from {t}", "equals {t}"),
}
_STRICT = (">", "<", "!=")


def compare_margin(op: Op, t: float, x: float) -> float:
    """How far ``x`` is on the passing side of ``x <op> t``."""
    if op in (">=", ">"):
        return x - t
    if op in ("<=", "<"):
        return t - x
    if op == "==":
        return -abs(x - t)
    return abs(x - t)  # "!="


def compare_ci(op: Op, t: float, lo: float, hi: float) -> Outcome | None:
    """The interval outcome of ``==`` / ``!=`` (None for the monotone one-sided operators)."""
    if op not in ("==", "!="):
        return None
    outside = t < lo or t > hi
    point = lo == hi == t
    if op == "==":
        return "pass" if point else ("fail" if outside else "inconclusive")
    return "pass" if outside else ("fail" if point else "inconclusive")


def compare_score(op: Op, t: float, v: float) -> float:
    if op in (">", ">="):
        return v
    if op in ("<", "<="):
        return -v
    return -abs(v - t) if op == "==" else abs(v - t)


@struct(frozen=True)
class Comparison(Form):
    """``x <op> threshold``; ``{min: x}`` is ``>= x`` and ``{max: x}`` is ``<= x``.  No default
    borderline for ``==`` / ``!=`` (there is no side to be close to)."""

    name: ClassVar[str] = "comparison"
    kind: ClassVar[Literal["compare"]] = "compare"

    op: Op
    threshold: float

    @classmethod
    def from_text(cls, metric: str, text: str) -> Comparison | None:
        m = _CMP_RE.match(text)
        if m is None:
            return None
        op = UNICODE_OPS.get(m.group(1), cast(Op, m.group(1)))
        return cls(op, finite(metric, "threshold", read_number(m.group(2)), text.strip()))

    @classmethod
    def from_mapping(cls, metric: str, spec: Mapping[str, Any]) -> Comparison | None:
        low, high = spec.get("min"), spec.get("max")
        if low is not None and high is None:
            return cls(">=", number(metric, "min", low))
        if high is not None and low is None:
            return cls("<=", number(metric, "max", high))
        return None  # both: a Range; neither: not this form

    def margin(self, x: float) -> float:
        return compare_margin(self.op, self.threshold, x)

    def passes(self, x: float) -> bool:
        margin = compare_margin(self.op, self.threshold, x)
        return margin > 0 if self.op in _STRICT else margin >= 0

    def borderline_margins(self, explicit: float | None) -> tuple[float, float]:
        if self.op in ("==", "!="):
            return 0.0, 0.0
        return super().borderline_margins(explicit)

    def default_borderline(self) -> tuple[float, float]:
        margin = 0.01 * abs(self.threshold)
        return margin, margin

    def ci_outcome(self, lo: float, hi: float) -> Outcome:
        return compare_ci(self.op, self.threshold, lo, hi) or super().ci_outcome(lo, hi)

    def pass_threshold(self, near: float) -> float:
        return self.threshold

    def score(self, v: float) -> float:
        return compare_score(self.op, self.threshold, v)

    def rule_text(self) -> str:
        return f"{self.op} {exact(self.threshold)}"

    def describe(self, subject: str, x: float, level: str) -> str:
        good, bad = _COMPARE_WORDS[self.op]
        words = (good if level == "pass" else bad).format(t=exact(self.threshold))
        return f"{subject} {words}" + ("." if level == "pass" else f"; it needs {self.rule_text()}.")

    @classmethod
    def schema_string(cls) -> Schema:
        return {
            "pattern": rf"^\s*({OPS})\s*[-+]?([0-9][0-9_]*(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$",
            "description": 'a comparison: "< 0.35", ">= 0.6", "== 1", "!= 0"',
        }

    @classmethod
    def schema_keys(cls) -> dict[str, Schema]:
        return {"min": _NUMBER, "max": _NUMBER}

    @classmethod
    def schema_required(cls) -> list[str]:
        return ["min", "max"]


# --- a range: "in [0.2, 0.4]", {min: x, max: y} ----------------------------------------------------

_IN_RE = lazy_re(rf"^\s*in\s*\[\s*({NUM})\s*,\s*({NUM})\s*\]\s*$", re.IGNORECASE)
# Parentheses read as an open interval to a mathematician: refused rather than read as closed.
_IN_PAREN_RE = lazy_re(rf"^\s*in\s*[\[(]\s*({NUM})\s*,\s*({NUM})\s*[\])]\s*$", re.IGNORECASE)


@struct(frozen=True)
class Range(Form):
    """``in [low, high]`` (both ends included); borderline near either end."""

    name: ClassVar[str] = "range"
    kind: ClassVar[Literal["compare"]] = "compare"

    low: float
    high: float

    @property
    def op(self) -> Literal["in"]:
        return "in"

    @classmethod
    def from_text(cls, metric: str, text: str) -> Range | None:
        m = _IN_RE.match(text)
        if m is None:
            paren = _IN_PAREN_RE.match(text)
            if paren is not None:
                low, high = paren.group(1), paren.group(2)
                raise CriterionError(
                    f"criterion {metric!r}: {text.strip()!r} uses parentheses, which read as an open "
                    "interval; a range includes both ends",
                    f'write "in [{low}, {high}]"',
                )
            return None
        low = finite(metric, "low end", read_number(m.group(1)), text.strip())
        high = finite(metric, "high end", read_number(m.group(2)), text.strip())
        if low > high:
            raise CriterionError(
                f"criterion {metric!r}: range {text.strip()!r} has its low end above its high end",
                f'write "in [{fmt(high)}, {fmt(low)}]"',
            )
        return cls(low, high)

    @classmethod
    def from_mapping(cls, metric: str, spec: Mapping[str, Any]) -> Range | None:
        if spec.get("min") is None or spec.get("max") is None:
            return None
        low, high = number(metric, "min", spec["min"]), number(metric, "max", spec["max"])
        if low > high:
            raise CriterionError(
                f"criterion {metric!r}: min {fmt(low)} is above max {fmt(high)}", "swap min and max"
            )
        return cls(low, high)

    def margin(self, x: float) -> float:
        return min(x - self.low, self.high - x)

    def default_borderline(self) -> tuple[float, float]:
        return 0.01 * abs(self.low), 0.01 * abs(self.high)

    def is_borderline(self, x: float, below: float, above: float) -> bool:
        slack = 1e-12 * max(1.0, abs(x))
        return (below > 0 and x - self.low <= below + slack) or (above > 0 and self.high - x <= above + slack)

    def ci_outcome(self, lo: float, hi: float) -> Outcome:
        if self.low <= lo and hi <= self.high:
            return "pass"
        return "fail" if hi < self.low or lo > self.high else "inconclusive"

    def pass_threshold(self, near: float) -> float:
        return self.low if abs(near - self.low) <= abs(near - self.high) else self.high

    def score(self, v: float) -> float:
        return -abs(v - (self.low + self.high) / 2.0)  # the point closest to the middle

    def rule_text(self) -> str:
        return f"in [{exact(self.low)}, {exact(self.high)}]"

    def describe(self, subject: str, x: float, level: str) -> str:
        where = "lies within" if level == "pass" else "lies outside"
        return f"{subject} {where} [{exact(self.low)}, {exact(self.high)}]."

    @classmethod
    def schema_string(cls) -> Schema:
        return {"pattern": r"^\s*(in|IN|In|iN)\s*\[.*,.*\]\s*$", "description": 'a range: "in [0.2, 0.4]"'}
