"""The runner the seed runner's handlers call (SPEC section 10), and what a seed carries back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.execution import Task, loaded_packages, run_seed
from pytest_mlexp.records import SeedOutcome
from pytest_mlexp.runner import ArtifactError, ExperimentRunner
from pytest_mlexp.structs import field_names


def make_runner(
    tmp_path: Path, sink: list[tuple[dict[str, Any], int | None]] | None = None
) -> ExperimentRunner:
    root = tmp_path / "research"
    return ExperimentRunner(
        experiment_id="p2",
        sub_experiment_id="e_p2_1",
        params={},
        variant=None,
        seed=0,
        stub=False,
        workdir=tmp_path / "work",
        artifacts_dir=root / "artifacts" / "e_p2_1",
        plan_root=root,
        metric_sinks=(lambda m, step: sink.append((dict(m), step)),) if sink is not None else (),
    )


def test_save_json_artifact(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    path = runner.results.save_json_artifact(
        "probe_metrics", {"acc": 0.8, "per_class": (1, 2), "where": tmp_path}
    )
    assert path == "artifacts/e_p2_1/probe_metrics.json"
    data = json.loads((tmp_path / "research" / path).read_text(encoding="utf-8"))
    assert data == {"acc": 0.8, "per_class": [1, 2], "where": str(tmp_path)}
    assert runner.results.save_json_artifact("x.txt", [math.inf]) == "artifacts/e_p2_1/x.txt"
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ArtifactError, match="cannot be written as JSON"):
        runner.results.save_json_artifact("c", cyclic)


def test_get_artifact_path_is_recorded_only_when_written(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    written = runner.results.get_artifact_path("ckpt/model.pt")
    unused = runner.results.get_artifact_path("never.bin")
    assert written.is_absolute() and written.parent.is_dir()
    written.write_bytes(b"weights")
    assert unused.parent.is_dir() and not unused.exists()
    assert runner.results.written() == ["artifacts/e_p2_1/ckpt/model.pt"]
    with pytest.raises(ArtifactError, match=r"may not contain '\.\.'"):
        runner.results.get_artifact_path("../escape.pt")


def test_log_artifact_records_files_inside_the_artifacts_folder_only(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    inside = runner.results.folder / "table.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("a,b\n", encoding="utf-8")
    assert runner.log_artifact(inside) == "artifacts/e_p2_1/table.csv"
    assert runner.log_artifact("table.csv") == "artifacts/e_p2_1/table.csv"  # relative to the folder
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x\n", encoding="utf-8")
    with pytest.raises(ArtifactError, match="outside the artifacts folder"):
        runner.log_artifact(outside)
    with pytest.raises(ArtifactError, match="outside the artifacts folder"):
        runner.log_artifact(runner.results.folder / ".." / ".." / ".." / "elsewhere.csv")
    with pytest.raises(ArtifactError, match="no such file"):
        runner.log_artifact(runner.results.folder / "missing.csv")
    assert runner.results.written() == ["artifacts/e_p2_1/table.csv"]


def test_logged_keys_are_prefixed_once_and_nested_ones_flatten(tmp_path: Path) -> None:
    sink: list[tuple[dict[str, Any], int | None]] = []
    runner = make_runner(tmp_path, sink)
    runner.log_metrics({"e_p2_1/loss": 0.5, "acc": 0.9, "probe": {"r2": 0.1}}, step=3)
    assert sink == [({"e_p2_1/loss": 0.5, "e_p2_1/acc": 0.9, "e_p2_1/probe.r2": 0.1}, 3)]
    assert runner.history == [{"step": 3, "metrics": {"loss": 0.5, "acc": 0.9, "probe.r2": 0.1}}]


def test_issues_and_blockers_are_noted_once_each(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    runner.add_issue("split leaks")
    runner.add_issue(" split leaks ")
    runner.add_blocker("needs the vocabulary")
    runner.add_issue("")
    assert runner.issues == ["split leaks"] and runner.blockers == ["needs the vocabulary"]


def _task(tmp_path: Path) -> Task:
    root = tmp_path / "research"
    return Task(
        experiment_id="p2",
        sub_id="e_p2_1",
        point=None,
        seed=0,
        params={},
        stub=False,
        root=str(tmp_path),
        plan_root=str(root),
        module_path="x.py",
        module_name="x",
        function="f",
        artifacts_dir=str(root / "artifacts" / "e_p2_1"),
        workdir=str(tmp_path / "work"),
    )


def test_a_seed_carries_issues_extra_and_claimed_artifacts_across_processes(tmp_path: Path) -> None:
    def handler(runner: ExperimentRunner) -> dict[str, Any]:
        runner.add_issue("split leaks")
        runner.results.get_artifact_path("hist.txt").write_text("1\n", encoding="utf-8")
        return {"metrics": {"iou": 0.7, "per_class": [0.6, 0.8]}, "config": {"tokens": 196}}

    outcome = run_seed(_task(tmp_path), handler)
    assert outcome.ok and outcome.issues == ("split leaks",)
    assert outcome.result is not None and outcome.result["extra"] == {"config": {"tokens": 196}}
    assert outcome.result["artifacts"] == ["artifacts/e_p2_1/hist.txt"]
    assert any("'config'" in w and "kept under 'extra'" in w for w in outcome.warnings)
    back = SeedOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))
    assert back.issues == outcome.issues and back.result == outcome.result


def test_issues_noted_before_an_error_are_kept(tmp_path: Path) -> None:
    def handler(runner: ExperimentRunner) -> dict[str, Any]:
        runner.add_blocker("no GPU quota")
        raise RuntimeError("out of memory")

    outcome = run_seed(_task(tmp_path), handler)
    assert not outcome.ok and outcome.blockers == ("no GPU quota",)
    assert SeedOutcome.from_dict(outcome.to_dict()).blockers == ("no GPU quota",)


def test_a_seeds_outcome_has_each_value_in_its_own_field(tmp_path: Path) -> None:
    # run_seed passes SeedOutcome's fields by position (a class call with keywords costs a dict)
    task = _task(tmp_path)
    task.seed = 7

    def handler(runner: ExperimentRunner) -> dict[str, Any]:
        runner.log_metrics({"loss": 0.5})
        runner.add_issue("an issue")
        runner.add_blocker("a blocker")
        return {"metrics": {"acc": 0.9}, "finding": "it works", "note": 1}

    outcome = run_seed(task, handler)
    got = {name: getattr(outcome, name) for name in field_names(SeedOutcome)}
    assert got.pop("started_at") <= got.pop("finished_at")
    assert isinstance(got.pop("duration_s"), float)
    assert len(got.pop("warnings")) == 1
    assert got.pop("packages") == loaded_packages()  # (whatever this process has imported)
    assert got == {
        "seed": 7,
        "status": "ok",
        "result": {"metrics": {"acc": 0.9}, "finding": "it works", "artifacts": [], "extra": {"note": 1}},
        "error": None,
        "history": [{"step": 0, "metrics": {"loss": 0.5}}],
        "device": None,
        "tracking": None,
        "issues": ("an issue",),
        "blockers": ("a blocker",),
        "exc": None,
    }

    def failing(runner: ExperimentRunner) -> dict[str, Any]:
        raise KeyError("k")

    failed = run_seed(task, failing)
    assert failed.status == "error" and failed.result is None
    assert failed.error is not None and failed.error["type"] == "KeyError"
    assert isinstance(failed.exc, KeyError) and failed.history == [] and failed.warnings == ()
