"""Parsing, judging and describing success criteria (SPEC section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_mlexp.criteria import (
    CriterionError,
    display_name,
    fmt,
    judge,
    judge_stub,
    parse_criterion,
    rule_text,
    sentence,
)
from pytest_mlexp.model import Accepted, Criterion, Loc


def P(raw: Any, metric: str = "acc", *, exp: bool = False) -> Criterion:
    return parse_criterion(metric, raw, loc=None, experiment_level=exp)


def err(raw: Any, metric: str = "acc", *, exp: bool = False) -> CriterionError:
    with pytest.raises(CriterionError) as info:
        parse_criterion(metric, raw, loc=Loc("plan.yaml", 7), experiment_level=exp)
    return info.value


TIER_HI = {"target": 0.7, "acceptable": 0.6, "failure": 0.5, "direction": "higher"}
TIER_LO = {"target": 0.25, "acceptable": 0.35, "failure": 0.45, "direction": "lower"}


# --- parsing: tiered --------------------------------------------------------------------------


def test_tiered_parses_all_fields_and_keeps_raw() -> None:
    c = parse_criterion("iou", TIER_HI, loc=Loc("p.yaml", 3), experiment_level=False)
    assert (c.kind, c.target, c.acceptable, c.failure, c.direction) == ("tiered", 0.7, 0.6, 0.5, "higher")
    assert c.raw is TIER_HI
    assert c.loc == Loc("p.yaml", 3)
    assert c.aggregate == "mean" and c.confidence is None and c.borderline is None


@pytest.mark.parametrize(
    ("raw", "direction"),
    [
        ({"target": 0.7, "acceptable": 0.6, "failure": 0.5}, "higher"),
        ({"target": 0.25, "acceptable": 0.35, "failure": 0.45}, "lower"),
        ({"target": 0.9, "failure": 0.6}, "higher"),
        ({"acceptable": 0.3, "failure": 0.5}, "lower"),
        ({"target": 0.9, "acceptable": 0.8}, "higher"),
        ({"target": 1, "acceptable": 1, "failure": 2}, "lower"),  # target == acceptable: from failure
    ],
)
def test_direction_is_inferred(raw: dict[str, Any], direction: str) -> None:
    assert P(raw).direction == direction


def test_acceptable_defaults_to_target() -> None:
    c = P({"target": 0.9, "failure": 0.6})
    assert c.acceptable == 0.9
    assert rule_text(c) == ">= 0.9"


def test_direction_aliases() -> None:
    assert P({"target": 1, "acceptable": 2, "direction": "minimize"}).direction == "lower"
    assert P({"target": 2, "acceptable": 1, "direction": "Higher"}).direction == "higher"


@pytest.mark.parametrize(
    "raw",
    [
        {"target": 0.7, "acceptable": 0.6, "failure": 0.5, "direction": "lower"},
        {"target": 0.25, "acceptable": 0.35, "failure": 0.45, "direction": "higher"},
        {"target": 0.7, "acceptable": 0.8, "failure": 0.5},  # acceptable better than target
        {"target": 0.7, "acceptable": 0.4, "failure": 0.5},  # acceptable worse than failure
    ],
)
def test_contradictory_tiers_are_errors(raw: dict[str, Any]) -> None:
    e = err(raw)
    assert "tiers must satisfy" in e.message
    assert e.fix
    assert e.loc == Loc("plan.yaml", 7)
    assert str(e).startswith("plan.yaml:7: ")


def test_undecidable_direction_is_an_error() -> None:
    e = err({"target": 0.5})
    assert "higher or lower" in e.message and "direction" in e.fix
    e = err({"target": 0.5, "acceptable": 0.5, "failure": 0.5})
    assert "direction" in e.fix


def test_failure_alone_is_an_error() -> None:
    assert "failure tier alone" in err({"failure": 0.5, "direction": "higher"}).message


def test_bad_direction_value() -> None:
    assert "direction must be higher or lower" in err({**TIER_HI, "direction": "sideways"}).message


def test_tier_values_must_be_numbers() -> None:
    assert "target must be a number" in err({"target": "high", "acceptable": 0.5}).message
    assert "must be a number" in err({"target": True, "acceptable": 0.5}).message
    assert "finite" in err({"target": float("inf"), "acceptable": 0.5}).message


def test_numeric_strings_are_accepted_in_tiers() -> None:
    # A YAML 1.1 loader hands "1e-3" over as a string; researchers mean a number.
    assert P({"target": "1e-3", "acceptable": "2e-3", "direction": "lower"}).target == 0.001


# --- parsing: comparisons ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "threshold"),
    [
        ("< 0.35", "<", 0.35),
        ("<= 0.35", "<=", 0.35),
        ("> 0.6", ">", 0.6),
        (">= 0.6", ">=", 0.6),
        ("== 1", "==", 1.0),
        ("!= 0", "!=", 0.0),
        (">=1e-3", ">=", 0.001),
        ("  <  -2.5E+2 ", "<", -250.0),
        ("≥ 0.9", ">=", 0.9),
        (">= .5", ">=", 0.5),
    ],
)
def test_comparison_strings(text: str, op: str, threshold: float) -> None:
    c = P(text)
    assert (c.kind, c.op, c.threshold) == ("compare", op, threshold)
    assert c.raw == text


def test_in_range() -> None:
    c = P("in [0.2, 0.4]")
    assert (c.op, c.low, c.high, c.threshold) == ("in", 0.2, 0.4, None)
    assert P("IN [1e-3,2]").high == 2.0
    assert "low end above its high end" in err("in [0.4, 0.2]").message


@pytest.mark.parametrize(
    ("raw", "fix_part"),
    [
        ("= 1", '"== 1"'),
        ("0.5", '">= 0.5"'),
        ("about 0.5", "comparison"),
        (">= abc", "comparison"),
        ("__import__('os').system('x') > 1", "comparison"),
        ("in [1, 2, 3]", "comparison"),
    ],
)
def test_unparseable_strings(raw: str, fix_part: str) -> None:
    e = err(raw)
    assert "cannot read" in e.message
    assert fix_part in e.fix


def test_bare_number_and_non_criteria() -> None:
    e = err(0.9)
    assert "bare number" in e.message and '">= 0.9"' in e.fix
    assert "not a criterion" in err(True).message
    assert "not a criterion" in err(None).message
    assert "expected a mapping" in err([1, 2]).message


def test_min_max() -> None:
    assert (P({"min": 0.9}).op, P({"min": 0.9}).threshold) == (">=", 0.9)
    assert (P({"max": 0.1}).op, P({"max": 0.1}).threshold) == ("<=", 0.1)
    both = P({"min": 0.2, "max": 0.4})
    assert (both.op, both.low, both.high) == ("in", 0.2, 0.4)
    assert "above max" in err({"min": 2, "max": 1}).message


def test_rule_key_takes_a_comparison_with_options() -> None:
    c = P({"rule": "<= 0.35", "borderline": 0.01, "note": "lower is better"})
    assert (c.op, c.threshold, c.borderline, c.note) == ("<=", 0.35, 0.01, "lower is better")
    assert "rule must be a comparison" in err({"rule": 3}).message


def test_mixed_kinds_and_empty_mapping() -> None:
    assert "mixes" in err({"target": 1, "acceptable": 0.5, "min": 0.2}).message
    assert "mixes" in err({"min": 1, "rule": ">= 1"}).message
    assert "has no threshold" in err({"note": "x"}).message
    assert "direction belongs" in err({"min": 1, "direction": "higher"}).message


# --- parsing: options -------------------------------------------------------------------------


def test_optional_keys() -> None:
    c = P(
        {**TIER_HI, "note": "n", "borderline": 0.02, "aggregate": "median", "from": "e_1"},
        exp=True,
    )
    assert (c.note, c.borderline, c.aggregate, c.from_) == ("n", 0.02, "median", "e_1")
    assert P({"min": 0.9, "confidence": 0.9}).confidence == 0.9


def test_option_errors() -> None:
    assert "borderline must be a margin" in err({"min": 1, "borderline": -0.1}).message
    assert "aggregate must be one of" in err({"min": 1, "aggregate": "average"}).message
    e = err({"min": 1, "confidence": 95})
    assert "between 0 and 1" in e.message and "0.95" in e.fix
    assert "between 0 and 1" in err({"min": 1, "confidence": 1}).message
    assert "cannot be combined" in err({"min": 1, "confidence": 0.9, "aggregate": "all"}).message
    assert "only for experiment-level" in err({"min": 1, "from": "e_1"}).message
    assert "must name a sub-experiment" in err({"min": 1, "from": 3}, exp=True).message


def test_accepted_forms() -> None:
    c = P({"min": 1, "accepted": "good enough for phase 2"})
    assert c.accepted == Accepted("good enough for phase 2")
    import datetime

    c = P({"min": 1, "accepted": {"reason": "r", "by": "research lead", "date": datetime.date(2026, 2, 3)}})
    assert c.accepted == Accepted("r", "research lead", "2026-02-03")
    assert "needs a reason" in err({"min": 1, "accepted": {"by": "x"}}).message
    assert "needs a reason" in err({"min": 1, "accepted": {"reason": " "}}).message
    assert "must be a reason or a mapping" in err({"min": 1, "accepted": True}).message
    assert "did you mean reason" in err({"min": 1, "accepted": {"reson": "x"}}).message


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("targt", "target"),
        ("acceptible", "acceptable"),
        ("failur", "failure"),
        ("directon", "direction"),
        ("borderlin", "borderline"),
        ("agregate", "aggregate"),
        ("confidance", "confidence"),
        ("acepted", "accepted"),
        ("nte", "note"),
    ],
)
def test_typos_get_did_you_mean(key: str, suggestion: str) -> None:
    e = err({**TIER_HI, key: 1})
    assert f"did you mean {suggestion}?" in e.message
    assert suggestion in e.fix


@pytest.mark.parametrize(
    "key", ["achieved", "description", "status", "outcome", "mean", "current", "notes_long"]
)
def test_annotation_keys_are_tolerated(key: str) -> None:
    raw = {**TIER_HI, key: "whatever"}
    c = P(raw)
    assert c.raw == raw and c.target == 0.7


# --- judging: tiered --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level", "passed"),
    [
        (0.9, "target", True),
        (0.7, "target", True),
        (0.65, "acceptable", True),
        (0.6, "acceptable", True),
        (0.55, "miss", False),
        (0.5, "failure", False),
        (0.1, "failure", False),
    ],
)
def test_tiered_levels_higher(value: float, level: str, passed: bool) -> None:
    j = judge(P(TIER_HI), [value])
    assert (j.level, j.passed, j.value) == (level, passed, value)
    assert j.rule == ">= 0.6 (target 0.7)"


@pytest.mark.parametrize(
    ("value", "level", "passed"),
    [(0.1, "target", True), (0.25, "target", True), (0.3, "acceptable", True), (0.35, "acceptable", True),
     (0.4, "miss", False), (0.45, "failure", False), (0.9, "failure", False)],
)  # fmt: skip
def test_tiered_levels_lower(value: float, level: str, passed: bool) -> None:
    j = judge(P(TIER_LO, "lpips"), [value])
    assert (j.level, j.passed) == (level, passed)
    assert j.rule == "<= 0.35 (target 0.25)"


def test_tiered_without_failure_is_a_miss_and_without_target_is_acceptable() -> None:
    assert judge(P({"target": 0.9, "acceptable": 0.8}), [0.0]).level == "miss"
    c = P({"acceptable": 0.8, "failure": 0.5})
    assert judge(c, [0.95]).level == "acceptable"
    assert judge(c, [0.5]).level == "failure"


def test_message_single_value_and_seeds() -> None:
    c = P({"target": 0.97, "acceptable": 0.95, "failure": 0.9}, "accuracy")
    assert judge(c, [0.912]).message == "accuracy = 0.912 needs >= 0.95 (acceptable; target 0.97): miss"
    j = judge(c, [0.907, 0.912, 0.917])
    assert j.message.startswith("accuracy = 0.912 (mean of 3 seeds, 95% CI [")
    assert j.message.endswith("]) needs >= 0.95 (acceptable; target 0.97): miss")
    assert j.stats is not None and j.stats.n == 3 and j.stats.ci95 is not None
    assert j.stats.ci95[0] < 0.912 < j.stats.ci95[1]


def test_message_shows_enough_digits_to_differ_from_the_threshold() -> None:
    j = judge(P(">= 0.95"), [0.94996])
    assert not j.passed
    assert "acc = 0.94996 needs >= 0.95" in j.message


# --- judging: comparisons ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "passed"),
    [
        ("< 0.35", 0.3, True), ("< 0.35", 0.35, False),
        ("<= 0.35", 0.35, True), ("<= 0.35", 0.36, False),
        ("> 0.6", 0.61, True), ("> 0.6", 0.6, False),
        (">= 0.6", 0.6, True), (">= 0.6", 0.59, False),
        ("== 1", 1, True), ("== 1", 1.0, True), ("== 1", 0.999, False),
        ("!= 0", 1, True), ("!= 0", 0, False),
        ("in [0.2, 0.4]", 0.2, True), ("in [0.2, 0.4]", 0.4, True), ("in [0.2, 0.4]", 0.3, True),
        ("in [0.2, 0.4]", 0.19, False), ("in [0.2, 0.4]", 0.41, False),
    ],
)  # fmt: skip
def test_compare(rule: str, value: float, passed: bool) -> None:
    j = judge(P(rule), [value])
    assert j.passed is passed
    assert j.level == ("pass" if passed else "fail")


def test_compare_rule_and_message() -> None:
    j = judge(P(">= 0.85", "accuracy"), [0.5])
    assert j.rule == ">= 0.85"
    assert j.message == "accuracy = 0.5 needs >= 0.85: fail"
    assert judge(P({"min": 0.2, "max": 0.4}), [0.3]).rule == "in [0.2, 0.4]"
    assert judge(P("== 1"), [1]).value == 1


# --- judging: values that cannot be judged ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason", "message"),
    [
        (None, "metric 'acc' was not reported", "acc: not reported"),
        (float("nan"), "metric 'acc' is NaN", "acc: NaN"),
        (float("inf"), "metric 'acc' is inf", "acc: inf"),
        (float("-inf"), "metric 'acc' is -inf", "acc: -inf"),
        ("abc", "metric 'acc' is not a number: 'abc'", "acc: not a number: 'abc'"),
        (True, "metric 'acc' is a bool (True), not a number", "acc: a bool (True), not a number"),
        (
            [1, 2],
            "metric 'acc' is not a single number (a list of 2 values)",
            "acc: not a single number (a list of 2 values)",
        ),
    ],
)
def test_missing_values(value: Any, reason: str, message: str) -> None:
    for c in (P(TIER_HI), P(">= 0"), P({"min": 0, "confidence": 0.9})):
        j = judge(c, [value])
        assert (j.level, j.passed, j.value, j.borderline) == ("missing", False, None, False)
        assert j.reason == reason
        assert j.message == message


def test_empty_values_are_missing() -> None:
    assert judge(P(">= 0"), []).level == "missing"


def test_one_bad_seed_makes_it_missing() -> None:
    j = judge(P(">= 0"), [0.5, float("nan"), 0.7])
    assert j.level == "missing"
    assert j.reason == "metric 'acc' is NaN in 1 of 3 seeds"


def test_seeds_argument_counts_unreported_seeds() -> None:
    j = judge(P(">= 0"), [0.5, 0.6], seeds=3)
    assert j.level == "missing" and j.reason == "metric 'acc' was not reported in 1 of 3 seeds"


def test_numeric_types() -> None:
    from fractions import Fraction

    assert judge(P(">= 0.5"), [Fraction(3, 4)]).passed  # any numbers.Real counts


# --- aggregates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "value", "passed"),
    [
        ("mean", 0.6, True),
        ("median", 0.7, True),
        ("min", 0.3, False),
        ("max", 0.8, True),
        ("all", 0.3, False),
    ],
)
def test_aggregates(how: str, value: float, passed: bool) -> None:
    c = P({"min": 0.5, "aggregate": how})
    j = judge(c, [0.3, 0.7, 0.8])
    assert j.value == pytest.approx(value)
    assert j.passed is passed
    if how != "mean":
        label = "worst" if how == "all" else how
        assert f"({label} of 3 seeds)" in j.message


def test_all_shows_worst_seed_for_lower_and_in() -> None:
    j = judge(P({**TIER_LO, "aggregate": "all"}), [0.2, 0.3, 0.4])
    assert (j.value, j.level, j.passed) == (0.4, "miss", False)
    assert judge(P({**TIER_LO, "aggregate": "all"}), [0.2, 0.22]).level == "target"
    j = judge(P({"rule": "in [0, 1]", "aggregate": "all"}), [0.5, 0.95, 0.1])
    assert j.passed and j.value == 0.95


def test_median_even_count() -> None:
    assert judge(P({"min": 0, "aggregate": "median"}), [1, 2, 3, 4]).value == 2.5


# --- borderline -------------------------------------------------------------------------------


def test_borderline_tiered_default_is_ten_percent_of_target_gap() -> None:
    c = P(TIER_HI)  # margin 0.01
    assert judge(c, [0.605]).borderline
    assert judge(c, [0.61]).borderline  # 0.61 - 0.6 is 0.010000000000000009 in floats
    assert not judge(c, [0.62]).borderline
    assert not judge(c, [0.59]).borderline  # a miss is not "borderline"
    c = P(TIER_LO)
    assert judge(c, [0.345]).borderline and not judge(c, [0.3]).borderline


def test_borderline_tiered_without_distinct_target_uses_one_percent() -> None:
    c = P({"target": 0.9, "failure": 0.5})
    assert judge(c, [0.905]).borderline and not judge(c, [0.92]).borderline


def test_borderline_compare_default_is_one_percent() -> None:
    assert judge(P(">= 0.9"), [0.905]).borderline
    assert not judge(P(">= 0.9"), [0.92]).borderline
    assert judge(P("< 2"), [1.99]).borderline
    assert not judge(P(">= 0"), [0.0]).borderline  # 1% of 0 is no margin
    assert judge(P("in [10, 20]"), [10.05]).borderline
    assert judge(P("in [10, 20]"), [19.9]).borderline
    assert not judge(P("in [10, 20]"), [15]).borderline


def test_no_borderline_for_equality() -> None:
    assert not judge(P("== 1"), [1]).borderline
    assert not judge(P("!= 0"), [0.0001]).borderline


def test_explicit_borderline() -> None:
    c = P({"min": 0.9, "borderline": 0.05})
    j = judge(c, [0.94])
    assert j.borderline and j.passed and j.needs_review
    assert "borderline" in j.message and "requires human review" in j.message
    assert not judge(c, [0.96]).borderline
    assert not judge(P({"min": 0.9, "borderline": 0}), [0.9]).borderline


# --- confidence -------------------------------------------------------------------------------


def test_confidence_pass_fail_inconclusive() -> None:
    c = P({"target": 0.97, "acceptable": 0.95, "failure": 0.9, "confidence": 0.95}, "accuracy")
    ok = judge(c, [0.975, 0.976, 0.977])
    assert (ok.level, ok.passed, ok.seeds_needed) == ("target", True, None)
    bad = judge(c, [0.80, 0.81, 0.82])
    assert (bad.level, bad.passed) == ("failure", False)
    mid = judge(c, [0.93, 0.94, 0.97])
    assert (mid.level, mid.passed) == ("inconclusive", False)
    assert mid.seeds_needed is not None and mid.seeds_needed > 3
    assert f"inconclusive, about {mid.seeds_needed} seeds would settle it" in mid.message
    assert "(mean of 3 seeds, 95% CI [" in mid.message
    assert mid.needs_review


def test_confidence_uses_the_whole_interval_not_the_mean() -> None:
    c = P({"min": 0.5, "confidence": 0.95})
    # mean 0.6 passes, but the interval reaches below 0.5
    j = judge(c, [0.4, 0.6, 0.8])
    assert j.level == "inconclusive"
    assert judge(P(">= 0.5"), [0.4, 0.6, 0.8]).passed


def test_confidence_with_one_seed_is_inconclusive() -> None:
    j = judge(P({"min": 0.5, "confidence": 0.9}), [0.99])
    assert (j.level, j.passed, j.seeds_needed) == ("inconclusive", False, None)
    assert "needs at least 2 seeds" in j.message and "90%" in j.message


def test_confidence_level_changes_the_interval() -> None:
    values = [0.52, 0.55, 0.6, 0.58]
    assert judge(P({"min": 0.5, "confidence": 0.8}), values).passed
    assert judge(P({"min": 0.5, "confidence": 0.999}), values).level == "inconclusive"


def test_confidence_in_and_equality() -> None:
    assert judge(P({"rule": "in [0, 1]", "confidence": 0.95}), [0.4, 0.5, 0.6]).passed
    assert judge(P({"rule": "in [0, 1]", "confidence": 0.95}), [2.0, 2.1, 2.2]).level == "fail"
    j = judge(P({"rule": "in [0, 1]", "confidence": 0.95}), [0.9, 1.0, 1.05])
    assert j.level == "inconclusive" and j.seeds_needed is not None
    assert judge(P({"rule": "== 1", "confidence": 0.9}), [1, 1, 1]).passed
    assert judge(P({"rule": "== 1", "confidence": 0.9}), [2, 2.1, 2.2]).level == "fail"
    assert judge(P({"rule": "== 1", "confidence": 0.9}), [0.9, 1.0, 1.1]).level == "inconclusive"
    assert judge(P({"rule": "!= 1", "confidence": 0.9}), [2, 2.1, 2.2]).passed
    assert judge(P({"rule": "!= 1", "confidence": 0.9}), [1, 1, 1]).level == "fail"


def test_confidence_mean_on_threshold_gives_no_estimate() -> None:
    j = judge(P({"min": 0.5, "confidence": 0.95}), [0.4, 0.5, 0.6])
    assert j.level == "inconclusive" and j.seeds_needed is None


def test_confidence_huge_spread_says_more_than_cap() -> None:
    j = judge(P({"min": 0.5, "confidence": 0.95}), [-100.0, 101.2])
    assert j.seeds_needed == 1001
    assert "more than 1000 seeds would settle it" in j.message


# --- accepted and stub ------------------------------------------------------------------------


def test_accepted() -> None:
    c = P({**TIER_HI, "accepted": {"reason": "good enough", "by": "lead", "date": "2026-02-03"}})
    j = judge(c, [0.55])
    assert (j.level, j.passed, j.value, j.borderline) == ("accepted", True, 0.55, False)
    assert j.accepted == Accepted("good enough", "lead", "2026-02-03")
    assert j.message.endswith(": miss; accepted by lead on 2026-02-03: good enough")
    assert j.needs_review
    missing = judge(c, [None])
    assert (missing.level, missing.passed, missing.reason) == (
        "accepted",
        True,
        "metric 'acc' was not reported",
    )


def test_stub_passes_unless_missing() -> None:
    c = P(TIER_HI)
    j = judge_stub(c, [0.1])
    assert (j.level, j.passed, j.borderline) == ("failure", True, False)
    assert "stub: threshold not enforced" in j.message
    assert not judge_stub(c, [0.605]).borderline
    assert not judge_stub(c, [None]).passed
    assert not judge(c, ["x"], stub=True).passed
    assert judge_stub(P({"min": 0, "confidence": 0.9}), [1.0]).passed


def test_note_is_carried() -> None:
    assert judge(P({**TIER_HI, "note": "why"}), [0.9]).note == "why"
    assert judge(P({**TIER_HI, "note": "why"}), [None]).note == "why"


def test_to_dict_shape() -> None:
    d = judge(P({"min": 0.5, "confidence": 0.95}), [0.4, 0.6, 0.7]).to_dict()
    assert set(d) >= {"value", "rule", "level", "passed", "borderline", "stats", "seeds_needed"}


# --- display ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.912, "0.912"), (1.23e-05, "1.23e-05"), (0.91234, "0.9123"), (12345.6, "12346"), (1.0, "1"),
     (3, "3"), (0.0, "0"), (float("nan"), "NaN"), (-0.5, "-0.5")],
)  # fmt: skip
def test_fmt(x: float, text: str) -> None:
    assert fmt(x) == text


def test_rule_text_keeps_exact_thresholds() -> None:
    assert rule_text(P(">= 0.12345")) == ">= 0.12345"
    assert rule_text(P({"max": 1e-5})) == "<= 1e-05"
    assert rule_text(P({"target": 0.97, "acceptable": 0.97, "failure": 0.9})) == ">= 0.97"


@pytest.mark.parametrize(
    ("metric", "name"),
    [("spatial_iou", "Spatial IoU"), ("lpips", "LPIPS"), ("accuracy", "Accuracy"), ("val_mse", "Val MSE"),
     ("f1", "F1"), ("param_efficiency", "Param efficiency"), ("pAUC", "pAUC"), ("", "")],
)  # fmt: skip
def test_display_name(metric: str, name: str) -> None:
    assert display_name(metric) == name


def S(raw: Any, values: list[Any], metric: str = "acc", **kw: Any) -> str:
    c = P(raw, metric)
    return sentence(judge(c, values, **kw), c)


def test_sentences_tiered() -> None:
    assert (
        S(TIER_LO, [0.162], "lpips")
        == "LPIPS of 0.162 is below the 0.35 acceptable threshold and meets the 0.25 target."
    )
    assert (
        S(TIER_HI, [0.55], "spatial_iou")
        == "Spatial IoU of 0.55 is below the 0.6 acceptable threshold (miss; failure at 0.5)."
    )
    assert (
        S(TIER_HI, [0.65]) == "Acc of 0.65 is above the 0.6 acceptable threshold but short of the 0.7 target."
    )
    assert S(TIER_HI, [0.4]) == "Acc of 0.4 is below the 0.5 failure threshold (failure; acceptable at 0.6)."
    assert S(TIER_HI, [0.5]).startswith("Acc of 0.5 is at the 0.5 failure threshold")
    assert "borderline" in S(TIER_HI, [0.605]) and "requires human review" in S(TIER_HI, [0.605])
    assert "(mean of 3 seeds)" in S(TIER_HI, [0.8, 0.8, 0.9])


def test_sentences_compare_and_special() -> None:
    assert S(">= 0.9", [0.95], "accuracy") == "Accuracy of 0.95 is at least 0.9."
    assert S(">= 0.9", [0.5], "accuracy") == "Accuracy of 0.5 is below 0.9; it needs >= 0.9."
    assert S("in [0.2, 0.4]", [0.3]) == "Acc of 0.3 lies within [0.2, 0.4]."
    assert S([None] and "< 1", [None]) == "Acc could not be judged: metric 'acc' was not reported."
    inc = S({"min": 0.5, "confidence": 0.95}, [0.45, 0.55, 0.6])
    assert "inconclusive" in inc and "seeds would settle it" in inc
    assert "at least 2 seeds" in S({"min": 0.5, "confidence": 0.95}, [0.6])
    acc = S(
        {"min": 0.9, "accepted": {"reason": "budget", "by": "research lead", "date": "2026-02-03"}}, [0.5]
    )
    assert acc == "Acc of 0.5 was accepted against >= 0.9 by research lead on 2026-02-03: budget."
    miss_acc = S({"min": 0.9, "accepted": "later"}, [None])
    assert miss_acc == "Acc was not measured but was accepted: later."


def test_sentence_names_the_source() -> None:
    import dataclasses

    c = P(TIER_LO, "lpips", exp=True)
    j = dataclasses.replace(judge(c, [0.162]), source="e_p2_3")
    assert sentence(j, c).startswith("LPIPS of 0.162 (from e_p2_3) is below")


def test_judged_value_matches_judge() -> None:
    from pytest_mlexp.criteria import judged_value

    values = [0.3, 0.7, 0.8]
    for raw in (
        TIER_HI,
        {**TIER_HI, "aggregate": "all"},
        {"min": 0, "aggregate": "median"},
        {"min": 0, "confidence": 0.9},
    ):
        c = P(raw)
        j = judge(c, values)
        expected = j.stats.mean if j.level == "inconclusive" and j.stats else j.value
        assert judged_value(c, values) == pytest.approx(expected)
    assert judged_value(None, values) == pytest.approx(0.6)
    assert judged_value(P(TIER_HI), [0.5, None]) is None
    assert judged_value(None, []) is None
