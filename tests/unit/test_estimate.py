"""Cost estimates (SPEC section 11) and the git state behind ``git_dirty`` (SPEC section 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mlexp.estimate import (
    Estimate,
    ItemCost,
    PriceError,
    estimate,
    gpu_of,
    parse_prices,
    per_seed_seconds,
    render_duration,
)
from pytest_mlexp.gitstate import git_state
from tests import factories
from tests.conftest import git


def test_prices_and_gpus() -> None:
    assert parse_prices("H100=3.95 A100-80GB=2.50") == {"H100": 3.95, "A100-80GB": 2.5}
    assert parse_prices("H100=4,\nL4=0.8") == {"H100": 4.0, "L4": 0.8}
    with pytest.raises(PriceError, match=r"'H100:3\.95' is not TYPE=PRICE"):
        parse_prices("H100:3.95")
    assert gpu_of({"gpu": "H100:2"}) == ("H100", 2)
    assert gpu_of({"gpu": "A100-80GB"}) == ("A100-80GB", 1)
    assert gpu_of({}) == (None, 0)
    assert gpu_of({"gpu": "2"}) == gpu_of({"gpu": "any:2"}) == ("any", 2)  # was ("2", 1), ("any", 2)
    assert [render_duration(s) for s in (12, 600, 3600, 5400, 90000)] == [
        "12 s",
        "10 min",
        "1 h",
        "1 h 30 min",
        "25 h",
    ]


def test_seconds_per_seed_come_from_the_newest_result_that_ran() -> None:
    sub = factories.sub("s", "e", seeds=(0, 1))
    doc = {
        "sub_experiments": {
            "s": {
                "status": "error",
                "duration_s": 1.0,
                "history": [{"status": "passed", "duration_s": 40.0, "seeds": [0, 1]}],
            }
        },
        "stale": {},
    }
    assert per_seed_seconds(doc, sub, None) == 20.0  # the error is not a duration to go by
    sweep = factories.sub("w", "e", sweep={"k": (1, 2, 3)})
    doc = {
        "sub_experiments": {
            "w": {
                "points": {
                    "k_1": {"status": "passed", "duration_s": 10.0},
                    "k_2": {"status": "failed", "duration_s": 30.0},
                }
            }
        }
    }
    assert per_seed_seconds(doc, sweep, "k_2") == 30.0
    assert per_seed_seconds(doc, sweep, "k_3") == 20.0  # a new point: the mean of the others
    assert per_seed_seconds({"sub_experiments": {}}, sub, None) is None


def test_wall_time_gpu_hours_and_cost() -> None:
    gpu = factories.sub("g", "e", resources={"gpu": "H100:2"}, seeds=(0, 1, 2, 3))
    cpu = factories.sub("c", "e")
    docs = {
        "e": {
            "sub_experiments": {
                "g": {"status": "passed", "duration_s": 7200.0, "provenance": {"seeds": [0, 1, 2, 3]}},
                "c": {"status": "passed", "duration_s": 60.0},
            }
        }
    }
    items = [
        ItemCost(gpu, None, 4, "modal"),
        ItemCost(cpu, None, 1, "local"),
        ItemCost(factories.sub("n", "e"), None, 1, "local"),
    ]
    est = estimate(items, docs.__getitem__, prices={"H100": 4.0}, concurrency=lambda e: 2)
    assert est.unknown == 1 and est.seeds == 6
    assert est.gpu_hours == {"H100": 4.0}  # 4 seeds x 1800 s x 2 GPUs
    assert est.cost == 16.0
    assert est.wall_s == 3600.0  # 4 seeds of 1800 s, 2 at a time, while the local 60 s runs
    assert est.line() == (
        "estimate for 3 items (6 seeds): ~1 h wall, 4.00 GPU-hours (H100 4.00), ~$16.00; "
        "unknown for 1 never run"
    )
    priced = estimate(items, docs.__getitem__, prices={"A100": 1.0})
    assert priced.unpriced == ["H100"] and "no price for H100" in priced.line()
    assert Estimate(items=2, unknown=2).line() == "estimate for 2 items (0 seeds); unknown for 2 never run"
    reused = estimate([ItemCost(gpu, None, 4, "modal", reused=True)], docs.__getitem__)
    assert reused.line() == "estimate for 1 item (4 seeds); 1 reused (no cost)"


def test_git_dirty_is_about_the_files_named(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "project" / "experiments").mkdir(parents=True)
    (root / "project" / "experiments" / "h.py").write_text("x = 1\n")
    (root / "project" / "plan.yaml").write_text("a: 1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "c")
    (root / "project" / "notes.txt").write_text("untracked, unrelated")
    (root / "project" / "new").mkdir()
    (root / "project" / "new" / "helper.py").write_text("y = 2\n")
    state = git_state(str(root / "project"))
    assert state.commit is not None and len(state.commit) == 40
    project = str(root / "project")
    assert state.dirty(project, ["experiments/h.py", "plan.yaml"]) is False
    assert state.dirty(project, ["new/helper.py"]) is True  # in an untracked folder
    (root / "project" / "experiments" / "h.py").write_text("x = 2\n")
    assert git_state(project).dirty(project, ["experiments/h.py"]) is True
    assert git_state(str(tmp_path)).dirty(str(tmp_path), ["x"]) is None  # not a work tree
