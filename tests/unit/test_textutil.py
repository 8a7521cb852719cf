"""The one did-you-mean rule and the one number formatter (textutil.py)."""

from __future__ import annotations

import pytest

from pytest_mlexp.textutil import closest, distance, fmt_number, listed, suggestions


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("width", "width", 0), ("widht", "width", 1), ("sucess", "success", 1), ("ab", "", 2)],
)
def test_distance_counts_a_transposition_as_one_edit(a: str, b: str, d: int) -> None:
    assert distance(a, b) == d


def test_closest_allows_two_edits_for_long_words_and_one_for_short_ones() -> None:
    assert closest("sucess_critera", ["success_criteria", "seeds"]) == "success_criteria"
    assert closest("sedes", ["seeds"]) == "seeds"  # a transposition: one edit
    assert closest("sds", ["seeds"]) is None  # two edits from a 5-letter word: too far
    assert closest("e_p2", ["e_p1", "e_p3"], short=4) == "e_p1"  # ties: the first candidate
    assert closest("Metrics", ["metrics"]) == "metrics"  # case is ignored
    assert closest("metrics", ["metrics"]) is None  # an exact match is not a typo


def test_suggestions_are_closest_first_and_bounded() -> None:
    names = ["train_modell", "train_model", "train_mode", "unrelated"]
    assert suggestions("train_modle", names, limit=3) == ["train_model", "train_mode", "train_modell"]
    assert suggestions("train_modle", names, limit=1) == ["train_model"]
    assert suggestions("zzz", names, limit=3) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.91234, "0.9123"),
        (12345.6, "12346"),
        (1.23e-5, "1.23e-05"),
        (1e20, "1e+20"),
        (0.0, "0"),
        (float("nan"), "NaN"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (7, "7"),
        (True, "true"),
        (None, "—"),
        ("cat", "cat"),
    ],
)
def test_fmt_number(value: object, text: str) -> None:
    assert fmt_number(value) == text


def test_listed_names_a_few_and_counts_the_rest() -> None:
    assert listed(["a", "b"]) == "a, b"
    assert listed([f"p{i}" for i in range(10)]) == ", ".join(f"p{i}" for i in range(10))
    assert listed([f"p{i}" for i in range(38)], limit=3) == "p0, p1, p2 and 35 more"
