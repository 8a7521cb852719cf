"""Standard-library statistics against scipy and the statistics module."""

from __future__ import annotations

import math
import statistics
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlexp.stats import (
    SEEDS_CAP,
    aggregate,
    confidence_interval,
    describe,
    seeds_phrase,
    seeds_to_settle,
    t_quantile,
)

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("p", [0.9, 0.95, 0.975, 0.995])
def test_t_quantile_matches_scipy(p: float) -> None:
    for df in range(1, 201):
        assert t_quantile(p, df) == pytest.approx(float(scipy_stats.t.ppf(p, df)), abs=1e-6, rel=1e-9)


@pytest.mark.parametrize("p", [0.001, 0.025, 0.3, 0.5, 0.51, 0.7, 0.9995, 0.999999])
@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 100, 1000, 10000])
def test_t_quantile_other_points(p: float, df: int) -> None:
    assert t_quantile(p, df) == pytest.approx(float(scipy_stats.t.ppf(p, df)), abs=1e-6, rel=1e-8)


def test_t_quantile_symmetry_and_errors() -> None:
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.1, 4) == -t_quantile(0.9, 4)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p must"):
            t_quantile(bad, 3)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.9, 0)


def test_describe_matches_statistics_and_scipy() -> None:
    values = [0.83, 0.84, 0.851, 0.79]
    s = describe(values)
    assert s.n == 4
    assert s.mean == pytest.approx(statistics.mean(values))
    assert s.std == pytest.approx(statistics.stdev(values))
    lo, hi = scipy_stats.t.interval(0.95, 3, loc=s.mean, scale=s.std / math.sqrt(4))
    assert s.ci95 == pytest.approx((lo, hi))


def test_describe_one_value_and_empty() -> None:
    s = describe([0.5])
    assert (s.mean, s.std, s.n, s.ci95) == (0.5, 0.0, 1, None)
    assert s.to_dict() == {"mean": 0.5, "std": 0.0, "n": 1}
    with pytest.raises(ValueError):
        describe([])


def test_describe_constant_values() -> None:
    s = describe([2.0, 2.0, 2.0])
    assert s.std == 0.0 and s.ci95 == (2.0, 2.0)


def test_confidence_interval() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    lo, hi = scipy_stats.t.interval(0.9, 4, loc=3.0, scale=statistics.stdev(values) / math.sqrt(5))
    assert confidence_interval(values, 0.9) == pytest.approx((lo, hi))
    assert confidence_interval([1.0], 0.9) is None
    with pytest.raises(ValueError):
        confidence_interval(values, 1.0)


def test_aggregate() -> None:
    values = [3.0, 1.0, 2.0, 10.0]
    assert aggregate(values, "mean") == 4.0
    assert aggregate(values, "median") == 2.5
    assert aggregate(values, "min") == 1.0
    assert aggregate(values, "max") == 10.0
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate(values, "all")
    with pytest.raises(ValueError):
        aggregate([], "mean")


def test_seeds_to_settle() -> None:
    values = [0.93, 0.94, 0.97]
    n = seeds_to_settle(values, 0.95, 0.95)
    assert n is not None and n > 3
    # the rule it documents: n is the first count where the half-width drops below the gap
    mean, sd = statistics.mean(values), statistics.stdev(values)
    gap = abs(mean - 0.95)

    def half(k: int) -> float:
        return float(scipy_stats.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)

    assert half(n) < gap <= half(n - 1)
    assert seeds_to_settle([0.4, 0.6], 0.5, 0.95) is None  # mean on the threshold
    assert seeds_to_settle([0.5, 0.5], 0.4, 0.95) is None  # std 0
    assert seeds_to_settle([0.5], 0.4, 0.95) is None
    assert seeds_to_settle([0.0, 100.0], 50.01, 0.95) == SEEDS_CAP + 1
    assert seeds_to_settle([0.1, 0.9], 100.0, 0.95) == 2


def test_seeds_phrase() -> None:
    assert seeds_phrase(12) == "about 12 seeds"
    assert seeds_phrase(SEEDS_CAP + 1) == "more than 1000 seeds"
    assert seeds_phrase(None) == "more seeds"


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=20))
def test_aggregate_order(values: list[float]) -> None:
    lo, med, hi = aggregate(values, "min"), aggregate(values, "median"), aggregate(values, "max")
    mean = aggregate(values, "mean")
    assert lo <= med <= hi
    assert lo - 1e-9 * max(1.0, abs(lo)) <= mean <= hi + 1e-9 * max(1.0, abs(hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=20), st.floats(min_value=0.5, max_value=0.999))
def test_interval_contains_the_mean(values: list[float], confidence: float) -> None:
    interval = confidence_interval(values, confidence)
    assert interval is not None
    mean = math.fsum(values) / len(values)
    assert interval[0] <= mean <= interval[1]
    wider = confidence_interval(values, min(0.9999, confidence + 0.0005))
    assert wider is not None and wider[0] <= interval[0] + 1e-9 and wider[1] >= interval[1] - 1e-9


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.5001, max_value=0.9999), st.integers(min_value=1, max_value=500))
def test_t_quantile_is_above_normal_and_decreasing_in_df(p: float, df: int) -> None:
    z = statistics.NormalDist().inv_cdf(p)
    t = t_quantile(p, df)
    assert t >= z - 1e-9
    assert t_quantile(p, df + 1) <= t + 1e-9


def test_describe_near_the_float_limit_does_not_overflow() -> None:
    # fsum's exact sum of three max/3 rounds past the largest float: found by hypothesis
    # (test_criteria_props); the mean is scaled by the largest value instead.
    big = sys.float_info.max
    s = describe([big, big, big])
    assert s.mean == pytest.approx(big) and s.n == 3
