"""What a results entry's history keeps, and optional stopping read from it (SPEC section 10)."""

from __future__ import annotations

from typing import Any

from pytest_mlexp.resultsdoc import history_after, seeds_added_after_inconclusive


def _entry(seeds: list[int], level: str, sha: str = "a1") -> dict[str, Any]:
    return {
        "status": "failed",
        "metrics": {"acc": 0.8},
        "per_seed": {s: {"acc": 0.8} for s in seeds},
        "criteria": {"acc": {"level": level}, "loss": {"level": "target"}},
        "provenance": {"handler_sha256": sha},
    }


def test_history_keeps_the_code_digest_the_seeds_and_what_was_inconclusive() -> None:
    (item,) = history_after(_entry([0, 1, 2], "inconclusive"))
    assert (item["handler_sha256"], item["seeds"], item["inconclusive"]) == ("a1", [0, 1, 2], ["acc"])
    (item,) = history_after(_entry([0, 1, 2], "target"))
    assert "inconclusive" not in item


def test_seeds_added_after_an_inconclusive_attempt_are_found() -> None:
    now = _entry([0, 1, 2, 3, 4, 5], "target")
    now["history"] = history_after(_entry([0, 1, 2], "inconclusive"))
    assert seeds_added_after_inconclusive(now) == (["acc"], 3, 6)


def test_no_flag_for_the_same_seeds_other_seeds_or_a_conclusive_attempt() -> None:
    same = _entry([0, 1, 2], "target")
    same["history"] = history_after(_entry([0, 1, 2], "inconclusive"))
    other = _entry([3, 4, 5, 6], "target")
    other["history"] = history_after(_entry([0, 1, 2], "inconclusive"))
    conclusive = _entry([0, 1, 2, 3], "target")
    conclusive["history"] = history_after(_entry([0, 1], "miss"))
    for entry in (same, other, conclusive, {"status": "passed"}, None):
        assert seeds_added_after_inconclusive(entry) is None
