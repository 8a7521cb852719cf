"""Success criteria: parse them from the plan, judge measurements against them, say it in words.

Pure (no pytest, no YAML).  The package, bottom up:

- ``base.py``: the parse error, reading numbers, showing numbers and metric names;
- ``judging.py``: ``Measurements`` (what a sub-experiment measured, per seed) and judging one
  metric's values whatever the form (aggregate, confidence interval, missing values, words);
- ``forms.py``: one class per criterion form (tiered, comparison, range): what passes, levels,
  margins, sweep ranking, words, schema;
- ``contrast.py``: the form that compares two measurements (SPEC section 3a) and its statistics;
- ``parse.py``: a criterion as written in the plan, its shared options, the sub-experiments it
  names (implicit dependencies), plain data and JSON Schema.

Decisions the SPEC leaves open are listed in the modules' docstrings and in the README:

- Tiered: at least one of ``target``/``acceptable`` is required; without ``acceptable`` the target
  is the pass threshold; without ``failure`` a value short of acceptable is a ``miss``.
  ``direction`` also accepts ``maximize``/``max``/``up`` and ``minimize``/``min``/``down``.
- ``aggregate: all``: every seed is judged on its own; the value shown (and the level) is the
  worst seed's.
- Borderline: a pass whose margin to the pass threshold is at most the borderline margin
  (for ``in``, to either edge).  Default margin: 10% of |target - acceptable| for tiered (1% of
  |acceptable| when there is no distinct target), 1% of |threshold| otherwise; none for ``==`` /
  ``!=`` and for comparisons of two measurements; an explicit ``borderline: 0`` turns it off.
  Under ``confidence`` the margin is measured from the interval's worse end.
- ``stub=True`` (``judge_stub``): a wiring check.  The level is judged as usual, but ``passed`` is
  True unless the metric is missing or not a number, and nothing is flagged borderline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_mlexp.criteria.base import CriterionError, display_name, fmt
from pytest_mlexp.criteria.contrast import MetricComparison
from pytest_mlexp.criteria.forms import Comparison, Form, Range, Tiered
from pytest_mlexp.criteria.judging import Lookup, Measurements, borderline_margins, judged_value
from pytest_mlexp.criteria.parse import (
    FORMS,
    criterion_from_data,
    criterion_schema,
    criterion_to_data,
    metrics_compared_with,
    parse_criterion,
    resolve_references,
)
from pytest_mlexp.model import Criterion, Judgement

__all__ = [
    "FORMS",
    "Comparison",
    "CriterionError",
    "Form",
    "Lookup",
    "Measurements",
    "MetricComparison",
    "Range",
    "Tiered",
    "borderline_margins",
    "criterion_from_data",
    "criterion_schema",
    "criterion_to_data",
    "display_name",
    "fmt",
    "judge",
    "judge_measured",
    "judge_stub",
    "judged_value",
    "metrics_compared_with",
    "parse_criterion",
    "point_value",
    "resolve_references",
    "rule_text",
    "sentence",
]


def judge(
    criterion: Criterion, values: Sequence[Any], *, seeds: int | None = None, stub: bool = False
) -> Judgement:
    """Judge one criterion against the per-seed values of its metric (one value without seeds).

    ``seeds``: how many seeds the plan asked for; seeds that did not report count as missing.
    ``stub``: a wiring check (see ``judge_stub``).  A comparison with another measurement sees
    only this side here: judge it with ``judge_measured``.
    """
    return criterion.form.judge_values(criterion, values, seeds, stub)


def judge_stub(criterion: Criterion, values: Sequence[Any], *, seeds: int | None = None) -> Judgement:
    """``judge`` for ``--stub``: thresholds are not enforced, only that the metric is a number."""
    return judge(criterion, values, seeds=seeds, stub=True)


def judge_measured(
    criterion: Criterion,
    measured: Measurements | None,
    *,
    lookup: Lookup | None = None,
    stub: bool = False,
) -> Judgement:
    """Judge one criterion against what its sub-experiment measured (None: nothing).

    ``lookup`` gives another sub-experiment's measurements by id, for criteria that compare
    with it (without one, such a criterion is ``missing``).
    """
    return criterion.form.judge(criterion, measured, lookup, stub)


def point_value(criterion: Criterion, measured: Measurements) -> float | None:
    """The number a sweep point is ranked by for this criterion (rank it with ``form.score``)."""
    return criterion.form.point_value(criterion, measured)


def rule_text(c: Criterion) -> str:
    """``">= 0.6 (target 0.7)"``, ``"<= 0.35"``, ``"in [0.2, 0.4]"``, ``"> p1:acc"``: ``Judgement.rule``."""
    return c.form.rule_text()


def sentence(j: Judgement, criterion: Criterion) -> str:
    """One plain-language sentence about a judgement, for FINDINGS.md."""
    return criterion.form.sentence(j, criterion)
