"""bench/perf.py judges the time budgets on the per-round ratios with their noise: "met" only
when the whole 90% interval of the rounds' median is within the budget, "OVER" only when it is
all past it, "NOT SHOWN" when the rounds cannot tell.  (The ratio of the medians alone flipped
between "ok" and "OVER" from one run of the bench to the next on a noisy machine.)"""

from __future__ import annotations

import statistics
from types import ModuleType

import pytest

from tests.unit.test_bench_plugins import _bench_perf


@pytest.fixture(scope="module")
def perf() -> ModuleType:
    return _bench_perf()


def test_interval_contains_the_median_and_is_reproducible(perf: ModuleType) -> None:
    rounds = [1.05, 1.31, 1.12, 1.19, 1.08, 1.27, 1.15, 1.22, 1.10, 1.17, 1.24]
    low, high = perf.median_interval(rounds)
    assert min(rounds) <= low <= statistics.median(rounds) <= high <= max(rounds)
    assert low < high  # these rounds spread: the median is not pinned
    assert perf.median_interval(rounds) == (low, high)  # seeded: same rounds, same interval


def test_steady_rounds_under_the_budget_are_met(perf: ModuleType) -> None:
    text = perf.interval_verdict([1.08, 1.09, 1.10, 1.08, 1.11, 1.09, 1.10], 1.15)
    assert text.startswith("<= 1.15 met (90% interval of the rounds' median 1.0")


def test_steady_rounds_past_the_budget_are_over(perf: ModuleType) -> None:
    text = perf.interval_verdict([1.24, 1.22, 1.25, 1.23, 1.26, 1.22, 1.24], 1.15)
    assert text.startswith("<= 1.15 OVER (90% interval of the rounds' median 1.2")


def test_a_median_under_the_budget_by_luck_is_not_shown(perf: ModuleType) -> None:
    # The ratio of the medians would say "ok" (median 1.14), but the rounds straddle 1.15 widely.
    rounds = [0.95, 1.30, 1.14, 1.02, 1.28, 1.14, 1.33, 1.05, 1.20, 0.99, 1.12]
    assert statistics.median(rounds) <= 1.15
    assert perf.verdict(statistics.median(rounds), 1.15).endswith("ok")
    assert " NOT SHOWN (" in perf.interval_verdict(rounds, 1.15)


def test_one_round_judges_on_itself(perf: ModuleType) -> None:
    assert perf.interval_verdict([1.2], 1.15).startswith(
        "<= 1.15 OVER (90% interval of the rounds' median 1.20-1.20"
    )
    assert perf.interval_verdict([1.1], 1.15).startswith("<= 1.15 met")
