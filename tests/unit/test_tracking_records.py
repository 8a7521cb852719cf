"""Tracker-neutral records (results schema 2) and MLflow's pure helpers (no MLflow import)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.findings import tracking_line
from pytest_mlexp.html_report import parse_properties, render_block
from pytest_mlexp.records import SeedOutcome, tracker_label, tracking_of
from pytest_mlexp.reporting import run_link
from pytest_mlexp.resultsdoc import upgrade_doc
from pytest_mlexp.trackers import SWITCHED_OFF, SessionTracking
from pytest_mlexp.trackers.mlflow import (
    flatten,
    is_local_store,
    metric_key,
    normalize_uri,
    run_url,
    store_location,
    ui_command,
)


def test_schema_1_wandb_blocks_become_tracking_blocks_in_place() -> None:
    doc: dict[str, Any] = {
        "sub_experiments": {
            "s1": {
                "status": "passed",
                "duration_s": 1.0,
                "wandb": {"url": "https://w/1", "run_path": "t/p/1", "runs": [{"url": "https://w/1"}]},
                "provenance": {},
            },
            "sweep": {"points": {"w_8": {"status": "passed", "wandb": {"offline_dir": "wandb/off-1"}}}},
        },
        "stale": {"old": {"status": "failed", "wandb": {"url": "https://w/0"}}},
    }
    upgrade_doc(doc)
    s1 = doc["sub_experiments"]["s1"]
    assert list(s1) == ["status", "duration_s", "tracking", "provenance"]  # same place in the file
    assert s1["tracking"] == {
        "tracker": "wandb",
        "url": "https://w/1",
        "run_path": "t/p/1",
        "runs": [{"tracker": "wandb", "url": "https://w/1"}],
    }
    point = doc["sub_experiments"]["sweep"]["points"]["w_8"]
    assert point["tracking"] == {"tracker": "wandb", "offline_dir": "wandb/off-1"}
    assert doc["stale"]["old"]["tracking"]["tracker"] == "wandb" and "wandb" not in doc["stale"]["old"]


def test_an_entry_is_read_either_way() -> None:
    assert tracking_of({"tracking": {"tracker": "mlflow", "run_path": "3/r"}}) == {
        "tracker": "mlflow",
        "run_path": "3/r",
    }
    assert tracking_of({"wandb": {"url": "u"}}) == {"tracker": "wandb", "url": "u"}
    assert tracking_of({"status": "passed"}) is None
    assert [tracker_label(k) for k in ("wandb", "mlflow", "neptune", None)] == [
        "W&B",
        "MLflow",
        "neptune",
        "tracker",
    ]


def test_links_are_labelled_with_the_trackers_name() -> None:
    mlflow_server = {
        "tracker": "mlflow",
        "url": "https://ml.example/#/experiments/7/runs/r1",
        "run_path": "7/r1",
    }
    assert tracking_line(mlflow_server) == "MLflow run: [7/r1](https://ml.example/#/experiments/7/runs/r1)"
    local = {
        "tracker": "mlflow",
        "run_path": "7/r1",
        "ui": "mlflow ui --backend-store-uri sqlite:///mlruns.db",
        "ui_url": "http://127.0.0.1:5000/#/experiments/7/runs/r1",
    }
    runs = {**local, "seed": 0, "runs": [{**local, "seed": 0}, {**local, "seed": 1, "run_path": "7/r2"}]}
    line = tracking_line(runs)
    assert line.startswith("MLflow runs: [seed 0](http://127.0.0.1:5000/#/experiments/7/runs/r1) · [seed 1](")
    assert "`mlflow ui --backend-store-uri sqlite:///mlruns.db`" in line
    offline = {
        "tracker": "wandb",
        "offline_dir": "wandb/a",
        "runs": [{"offline_dir": "wandb/a"}, {"offline_dir": "wandb/b c"}],
    }
    assert (
        tracking_line(offline)
        == "W&B (offline): `wandb/a`, `wandb/b c`; upload with `wandb sync wandb/a 'wandb/b c'`"
    )
    assert run_link(mlflow_server) == "MLflow run: https://ml.example/#/experiments/7/runs/r1"
    assert run_link(runs) == (
        "MLflow run 7/r1 (local store: mlflow ui --backend-store-uri sqlite:///mlruns.db)"
        " (+1 more in results.yaml)"
    )
    assert run_link({"tracker": "wandb", "sync": "wandb sync wandb/a"}) == "W&B (offline): wandb sync wandb/a"


def test_html_rows_name_the_tracker() -> None:
    props = [
        ("mlexp.status", "passed"),
        ("tracking.tracker", "mlflow"),
        ("tracking.url", "https://ml.example/#/experiments/7/runs/r1"),
        ("tracking.run_path", "7/r1"),
    ]
    view = parse_properties(props)
    assert view is not None
    block = render_block(view, lambda s: s)
    assert (
        'MLflow run: <a href="https://ml.example/#/experiments/7/runs/r1"' in block and ">7/r1</a>" in block
    )
    # W&B: both names are written (wandb.url for CI scripts); one link is shown
    wandb = parse_properties(
        [
            ("mlexp.status", "passed"),
            ("tracking.tracker", "wandb"),
            ("tracking.url", "https://w/1"),
            ("wandb.url", "https://w/1"),
        ]
    )
    assert wandb is not None and render_block(wandb, lambda s: s).count("https://w/1</a>") == 1
    local = parse_properties(
        [
            ("mlexp.status", "passed"),
            ("tracking.tracker", "mlflow"),
            ("tracking.run_path", "7/r1"),
            ("tracking.ui", "mlflow ui"),
        ]
    )
    assert (
        local is not None
        and "MLflow run <code>7/r1</code> (a local store: <code>mlflow ui</code>)"
        in render_block(local, lambda s: s)
    )


def test_mlflow_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, artifacts = store_location({}, tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns.db"  # four slashes: an absolute path
    assert artifacts == str(tmp_path.resolve() / "mlartifacts")
    monkeypatch.chdir(tmp_path)
    assert store_location({"MLFLOW_TRACKING_URI": "sqlite:///rel.db"}, "/x") == (
        f"sqlite:///{tmp_path.resolve()}/rel.db",
        None,
    )
    assert normalize_uri("file:./runs", tmp_path) == (tmp_path / "runs").resolve().as_uri()
    assert normalize_uri("./runs", tmp_path) == (tmp_path / "runs").resolve().as_uri()
    assert normalize_uri("file:///abs/runs", tmp_path) == "file:///abs/runs"
    assert normalize_uri("https://ml.example", tmp_path) == "https://ml.example"
    assert normalize_uri("databricks", tmp_path) == "databricks"  # a name, not a path
    stores = ("sqlite:////a.db", "file:///a", "/a", "https://x", "postgresql://h/db", "databricks")
    assert [is_local_store(u) for u in stores] == [True, True, True, False, False, False]


def test_mlflow_links_use_the_uri_and_the_real_experiment_id(tmp_path: Path) -> None:
    assert run_url("https://ml.example/", "42", "abc") == "https://ml.example/#/experiments/42/runs/abc"
    assert run_url("http://127.0.0.1:5000", "3", "r") == "http://127.0.0.1:5000/#/experiments/3/runs/r"
    assert run_url(f"sqlite:///{tmp_path}/m.db", "3", "r") is None  # no file: links
    assert (
        ui_command(f"sqlite:///{tmp_path}/m.db", tmp_path) == "mlflow ui --backend-store-uri sqlite:///m.db"
    )
    assert ui_command((tmp_path / "runs").as_uri(), tmp_path) == "mlflow ui --backend-store-uri runs"
    outside = ui_command("sqlite:////elsewhere/m.db", tmp_path)
    assert outside == "mlflow ui --backend-store-uri sqlite:////elsewhere/m.db"
    assert ui_command("https://ml.example", tmp_path) is None


def test_mlflow_names_and_params() -> None:
    assert metric_key("e_1/acc@1") == "e_1/acc_1"
    assert metric_key("a//b/./c/..") == "a/b/_/c/_"  # no name that resolves to another
    assert len(metric_key("x" * 400)) == 250
    assert flatten({"lr": 0.1, "opt": {"beta": 0.9, "eps": {"x": 1}}, "tags": [1, 2], "empty": {}}) == {
        "lr": "0.1",
        "opt.beta": "0.9",
        "opt.eps.x": "1",
        "tags": "[1, 2]",
        "empty": "{}",
    }
    assert len(flatten({"long": "y" * 10_000})["long"]) == 6000


def test_importing_the_mlflow_tracker_does_not_import_mlflow() -> None:
    import subprocess

    code = "import pytest_mlexp.trackers.mlflow, sys; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Off:
    name = "MLflow"


def test_a_tracker_switched_off_in_a_worker_stays_off_for_later_seeds() -> None:
    tracking = SessionTracking.__new__(SessionTracking)
    tracking.tracker = _Off()  # type: ignore[assignment]
    ok = SeedOutcome(0, "ok", result={"metrics": {}, "finding": None, "artifacts": []})
    tracking.observe([ok.with_warnings(["W&B: slow"])])
    assert tracking.tracker is not None  # another tracker's warning, or no switch: still on
    tracking.observe(
        [ok.with_warnings([f"MLflow: starting the run of s seed 0 failed (x); MLflow {SWITCHED_OFF}"])]
    )
    assert tracking.tracker is None
