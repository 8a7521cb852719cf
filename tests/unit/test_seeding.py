"""Seeding a seed (``execution.seed_everything``): every time the state ``random.seed`` gives."""

from __future__ import annotations

import random

import pytest

from pytest_mlexp import execution
from pytest_mlexp.execution import seed_everything


def _draws() -> list[float]:
    return [random.random(), random.gauss(0.0, 1.0), random.random(), random.gauss(0.0, 1.0)]


@pytest.mark.parametrize("seed", [0, 1, 7, 2**40 + 3, -5])
def test_seeding_again_gives_what_random_seed_gives(seed: int) -> None:
    random.seed(seed)
    expected = _draws()  # gauss keeps a second value between calls: the state must reset it
    for _ in range(3):  # the first time seeds; later times put the kept state back
        random.random()
        random.gauss(0.0, 1.0)  # leaves a pending gauss value behind
        seed_everything(seed)
        assert _draws() == expected


def test_only_a_few_states_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution, "_SEEDED", {})
    for seed in range(execution._SEEDED_MAX + 10):
        seed_everything(seed)
    assert len(execution._SEEDED) == execution._SEEDED_MAX
    seed_everything(execution._SEEDED_MAX + 5)  # not kept: seeded the long way, same state
    got = random.random()
    random.seed(execution._SEEDED_MAX + 5)
    assert random.random() == got
