"""Property tests: parsing round-trips and judging is monotone and total."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_mlexp.criteria import judge, judge_stub, parse_criterion, rule_text
from pytest_mlexp.criteria.judging import problem
from pytest_mlexp.model import Criterion

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
LEVEL_RANK = {"failure": 0, "miss": 1, "acceptable": 2, "target": 3}


def P(raw: Any) -> Criterion:
    return parse_criterion("m", raw, loc=None, experiment_level=False)


@settings(max_examples=300, deadline=None)
@given(ops, finite)
def test_compare_roundtrip(op: str, threshold: float) -> None:
    c = P(f"{op} {threshold!r}")
    assert (c.op, c.threshold) == (op, threshold)
    again = P(rule_text(c))
    assert (again.op, again.threshold) == (c.op, c.threshold)


@settings(max_examples=200, deadline=None)
@given(finite, finite)
def test_in_roundtrip(a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    c = P(f"in [{low!r}, {high!r}]")
    again = P(rule_text(c))
    assert (again.op, again.low, again.high) == ("in", low, high)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=3, max_size=3, unique=True), st.booleans())
def test_tiers_roundtrip_through_rule(tiers: list[float], higher: bool) -> None:
    failure, acceptable, target = sorted(tiers, reverse=not higher)
    c = P({"target": target, "acceptable": acceptable, "failure": failure})
    assert c.direction == ("higher" if higher else "lower")
    op, rest = rule_text(c).split(" ", 1)
    assert op == (">=" if higher else "<=")
    assert float(rest.split(" ")[0]) == acceptable


@settings(max_examples=300, deadline=None)
@given(finite, finite, ops)
def test_compare_is_monotone(x: float, y: float, op: str) -> None:
    c = P(f"{op} 0.5")
    assume(op not in ("==", "!="))
    lo, hi = min(x, y), max(x, y)
    if op in (">", ">=") and judge(c, [lo]).passed:
        assert judge(c, [hi]).passed
    if op in ("<", "<=") and judge(c, [hi]).passed:
        assert judge(c, [lo]).passed


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=3, max_size=3, unique=True), finite, finite, st.booleans())
def test_tiered_levels_are_monotone(tiers: list[float], x: float, y: float, higher: bool) -> None:
    failure, acceptable, target = sorted(tiers, reverse=not higher)
    c = P({"target": target, "acceptable": acceptable, "failure": failure})
    worse, better = (min(x, y), max(x, y)) if higher else (max(x, y), min(x, y))
    jw, jb = judge(c, [worse]), judge(c, [better])
    assert LEVEL_RANK[jw.level] <= LEVEL_RANK[jb.level]
    if jw.passed:
        assert jb.passed
    assert jb.passed == (jb.level in ("target", "acceptable"))


values_any = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values_any, max_size=5), st.sampled_from(["mean", "median", "min", "max", "all"]))
def test_judge_is_total_and_stub_only_checks_wiring(values: list[Any], how: str) -> None:
    for c in (
        P({"target": 0.7, "acceptable": 0.6, "failure": 0.5, "aggregate": how}),
        P({"rule": "in [0, 1]", "aggregate": how}),
    ):
        j = judge(c, values)
        assert j.message and j.rule
        assert (j.level == "missing") == (j.value is None)
        stub = judge_stub(c, values)
        # the wiring check: every seed reported a number (SPEC 5a: NaN and infinity included)
        wired = bool(values) and all(problem(v)[0] in ("", "NaN", "inf", "-inf") for v in values)
        assert stub.passed == (j.level != "missing" or wired)
        assert not stub.borderline


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=10), min_size=2, max_size=8))
def test_confidence_pass_implies_mean_pass(values: list[float]) -> None:
    with_ci = judge(P({"min": 0.0, "confidence": 0.9}), values)
    plain = judge(P({"min": 0.0}), values)
    if with_ci.passed:
        assert plain.passed
    if with_ci.level == "fail":
        assert not plain.passed
