"""Seeds folded into one entry's metrics (orchestrate.aggregate_seeds)."""

from __future__ import annotations

from typing import Any

from pytest_mlexp.orchestrate import aggregate_seeds
from pytest_mlexp.records import SeedOutcome


def ok(seed: int, **metrics: Any) -> SeedOutcome:
    return SeedOutcome(seed, "ok", result={"metrics": metrics, "finding": None, "artifacts": []})


def error(seed: int) -> SeedOutcome:
    return SeedOutcome.failure(seed, "handler", "boom")


def test_one_seed_gives_its_values_with_numbers_as_floats() -> None:
    agg, per_seed = aggregate_seeds([ok(3, acc=1, loss=0.5, flag=True, note="n", missing=None)])
    assert agg == {"acc": 1.0, "loss": 0.5, "flag": True, "note": "n", "missing": None}
    assert type(agg["acc"]) is float and agg["flag"] is True
    assert per_seed == {3: {"acc": 1, "loss": 0.5, "flag": True, "note": "n", "missing": None}}


def test_seeds_average_numbers_and_keep_the_first_of_anything_else() -> None:
    outcomes = [
        ok(0, acc=0.5, note="a", mixed=1.0),
        error(1),
        ok(2, acc=0.75, note="b", mixed="x", late=2),
    ]
    agg, per_seed = aggregate_seeds(outcomes)
    assert agg == {"acc": 0.625, "note": "a", "mixed": 1.0, "late": 2.0}
    assert list(per_seed) == [0, 2]


def test_no_successful_seed_gives_nothing() -> None:
    assert aggregate_seeds([error(0)]) == ({}, {})


def said(seed: int, text: str | None) -> SeedOutcome:
    return SeedOutcome(seed, "ok", result={"metrics": {"acc": 0.9}, "finding": text, "artifacts": []})


def test_a_multi_seed_finding_is_labelled_with_its_seed() -> None:
    from pytest_mlexp.orchestrate import _finding

    assert _finding([said(0, "reaches 95%")]) == "reaches 95%"
    assert _finding([said(0, "same"), said(1, "same")]) == "same"  # every seed said it
    # seed 0's words beside the mean of the seeds: say whose words they are
    assert _finding([said(0, "reaches 95%"), said(1, "reaches 97%")]) == "seed 0 (of 2 seeds): reaches 95%"
    assert _finding([said(0, "seed 0: 95%"), said(1, "seed 1: 97%")]) == "seed 0: 95% (1 of 2 seeds)"
    assert _finding([said(0, None), said(1, "only this one")]) == "seed 1 (of 2 seeds): only this one"
    assert _finding([error(0)]) is None
