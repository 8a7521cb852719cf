"""Results in the seed runner's format (SPEC section 10): what is imported, how it is marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.legacy import import_seed_results, imported_count, is_seed_runner, match_sub
from pytest_mlexp.model import Loc, Plan, Project
from pytest_mlexp.store import ResultsStore
from tests import factories

LOC = Loc("research/research_plan.yaml", 1)
MODEL = Path(__file__).resolve().parents[1] / "adopted" / "research" / "experiments"


def plan(tmp_path: Path) -> Plan:
    crit = parse_criterion("probe_accuracy", ">= 0.8", loc=LOC, experiment_level=False)
    subs = [
        factories.sub("e_p9_1", "p9", success_criteria=(crit,)),
        factories.sub("e_p9_2", "p9"),
        factories.sub("e_p9_3", "p9"),
        factories.sub("e_p9_4", "p9"),
    ]
    root = tmp_path / "research"
    root.mkdir(exist_ok=True)
    return Plan(
        root / "research_plan.yaml",
        Project("p", "", None, {}),
        (factories.experiment("p9", subs, loc=LOC),),
        (),
        {},
        {},
    )


SEED: dict[str, Any] = {
    "experiment_id": "p9",
    "status": "completed",
    "executed_by": "modal-3fa91c20",
    "started_at": "2026-02-03T09:12:44Z",
    "completed_at": "2026-02-03T09:41:02Z",
    "results": {
        "experiments": {
            "e_p9_1": {
                "status": "completed",
                "finding": "probe 83.1%",
                "metrics": {"probe_accuracy": 0.8312, "n_images": 2400, "nested": {"a": 1}},
                "artifacts": ["artifacts/probe.png", "/abs/x.json", "s3://bucket/y"],
                "gpu_hours": 1.5,
            },
            "e_p9_2_retrieval": {"status": "completed", "metrics": {"per_class_map": [0.31, 0.12]}},
            "e_p9_3": {"status": "failed", "error": "CUDA out of memory", "metrics": {}},
            "e_p9_4": {"status": "skipped"},
            "e_p9_9": {"status": "completed", "metrics": {"x": 1}},
            "e_p9": {"status": "completed", "metrics": {}},
        }
    },
    "assessment": {"success_criteria_met": False},
    "recommendation": "pivot",
    "issues": ["e_p9_3 needs a smaller batch"],
}


def test_what_the_seed_format_is() -> None:
    assert is_seed_runner(SEED)
    assert not is_seed_runner({"sub_experiments": {}})
    assert not is_seed_runner({"results": {"experiments": []}})


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("e3_1", "e3_1"),
        ("e3_1_sanity_check", "e3_1"),
        ("e3_100", None),
        ("e3_10_a", "e3_10"),
        ("e3_1x", None),
        ("e3", None),
    ],
)
def test_a_runner_key_names_a_sub_experiment_by_prefix(key: str, expected: str | None) -> None:
    assert match_sub(key, ["e3_1", "e3_2", "e3_10"]) == expected


def test_import(tmp_path: Path) -> None:
    doc = import_seed_results(SEED, "p9", plan(tmp_path))
    subs, stale = doc["sub_experiments"], doc["stale"]
    marker = {"executed_by": "modal-3fa91c20", "started_at": "2026-02-03T09:12:44Z"}
    one = subs["e_p9_1"]
    assert one["status"] == "passed" and one["imported"] == marker
    assert one["criteria"]["probe_accuracy"]["level"] == "pass"  # judged by today's criteria
    assert one["metrics"] == {"probe_accuracy": 0.8312, "n_images": 2400, "nested.a": 1}
    assert one["artifacts"] == ["experiments/p9/artifacts/probe.png", "/abs/x.json", "s3://bucket/y"]
    assert one["extra"] == {"gpu_hours": 1.5}
    assert one["finished_at"] == "2026-02-03T09:41:02Z"
    assert subs["e_p9_2"]["imported"] == {**marker, "source_key": "e_p9_2_retrieval"}
    assert subs["e_p9_2"]["metrics"] == {"per_class_map": [0.31, 0.12]}
    assert subs["e_p9_3"]["status"] == "error"
    assert subs["e_p9_3"]["error"]["message"] == "CUDA out of memory"
    assert (
        "e_p9_4" not in subs
        and stale["e_p9_4"]["stale_reason"] == "imported with status 'skipped': counts as not run"
    )
    assert stale["e_p9_9"]["stale_reason"] == "not in plan" and stale["e_p9_9"]["status"] == "completed"
    assert stale["e_p9"]["stale_reason"] == "not in plan"
    assert doc["previous_runner"]["recommendation"] == "pivot"
    assert "results" not in doc["previous_runner"]
    assert imported_count(doc) == 3
    assert list(subs) == ["e_p9_1", "e_p9_2", "e_p9_3"]  # plan order


def test_an_exact_id_wins_over_a_longer_key_for_the_same_sub_experiment(tmp_path: Path) -> None:
    seed = {
        "results": {
            "experiments": {
                "e_p9_1_retry": {"status": "completed", "metrics": {"probe_accuracy": 0.5}},
                "e_p9_1": {"status": "completed", "metrics": {"probe_accuracy": 0.9}},
            }
        }
    }
    doc = import_seed_results(seed, "p9", plan(tmp_path))
    assert doc["sub_experiments"]["e_p9_1"]["metrics"]["probe_accuracy"] == 0.9
    assert doc["stale"]["e_p9_1_retry"]["stale_reason"] == "also names e_p9_1; e_p9_1 was imported"


def test_metrics_that_cannot_be_metrics_are_kept_as_information(tmp_path: Path) -> None:
    seed = {
        "results": {
            "experiments": {"e_p9_1": {"status": "completed", "metrics": {"curve": list(range(100))}}}
        }
    }
    entry = import_seed_results(seed, "p9", plan(tmp_path))["sub_experiments"]["e_p9_1"]
    assert entry["metrics"] == {} and entry["extra"]["metrics"] == {"curve": list(range(100))}
    assert "100 values" in entry["extra"]["metrics_problem"]


def test_the_store_reads_the_model_file_without_touching_it(tmp_path: Path) -> None:
    """The fixture's seed file, read by the store: imported, and byte for byte until written."""
    p = plan(tmp_path)
    folder = p.root / "experiments" / "p9"
    folder.mkdir(parents=True)
    path = folder / "results.yaml"
    path.write_text(yaml.safe_dump(SEED, sort_keys=False), encoding="utf-8")
    original = path.read_bytes()
    warnings: list[str] = []
    store = ResultsStore(p, stub=False, warn=warnings.append)
    assert store.doc("p9")["sub_experiments"]["e_p9_1"]["imported"]["executed_by"] == "modal-3fa91c20"
    assert path.read_bytes() == original and warnings == []
    assert ResultsStore(p, stub=True, warn=warnings.append).doc("p9")["sub_experiments"] == {}
    store.record("p9", "e_p9_4", {"status": "passed", "metrics": {}})
    store.flush()
    assert (folder / "results.legacy.yaml").read_bytes() == original
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert written["schema"] == 2
    assert set(written["sub_experiments"]) == {"e_p9_1", "e_p9_2", "e_p9_3", "e_p9_4"}
    assert written["sub_experiments"]["e_p9_1"]["imported"]["executed_by"] == "modal-3fa91c20"
    assert "e_p9_4" not in written["stale"] or written["stale"]["e_p9_4"]["stale_reason"]
    assert len(warnings) == 1 and "3 result(s) were imported" in warnings[0]


@pytest.mark.parametrize("exp_id", ["p1-baseline", "p2-hybrid-encoder", "c1-vlm", "e3-scene-graph"])
def test_the_adopted_fixtures_results_are_in_the_seed_format(exp_id: str) -> None:
    raw = yaml.safe_load((MODEL / exp_id / "results.yaml").read_text(encoding="utf-8"))
    assert "schema" not in raw and is_seed_runner(raw) and raw["experiment_id"] == exp_id
