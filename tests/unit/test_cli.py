"""``mlexp show / diff / estimate`` on a prepared results folder: outputs parse (csv, json) and
are right; the command imports no pytest and writes nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mlexp.cli import main

PLAN = """
project: {name: Cli, hypothesis: "h"}
experiments:
  e-a:
    success_criteria: {acc: {target: 0.9, acceptable: 0.8, failure: 0.6, from: a_fit}}
    sub_experiments:
      a_fit:
        params: {lr: 0.1, epochs: 5}
        seeds: [0, 1, 2]
        executor: modal
        resources: {gpu: "H100:2"}
        success_criteria: {acc: {target: 0.9, acceptable: 0.8, failure: 0.6}}
      a_width:
        params: {epochs: 5}
        sweep: {width: [8, 16]}
        select: {metric: acc, mode: max}
        resources: {gpu: A100-80GB}
      a_new: {}
"""

HANDLERS = """
def a_fit(runner):
    return {"metrics": {"acc": 0.9}}
def a_width(runner):
    return {"metrics": {"acc": 0.9}}
def a_new(runner):
    return {"metrics": {}}
"""

NEW = {0: 0.91, 1: 0.93, 2: 0.92}
OLD = {0: 0.78, 1: 0.80, 2: 0.79}


def _entry(per_seed: dict[int, float], lr: float, finished: str, commit: str) -> dict[str, Any]:
    return {
        "status": "passed",
        "metrics": {"acc": sum(per_seed.values()) / len(per_seed)},
        "per_seed": {s: {"acc": v} for s, v in per_seed.items()},
        "params": {"lr": lr, "epochs": 5},
        "duration_s": 5400.0,  # 3 seeds: 1800 s each
        "provenance": {"git_commit": commit, "seeds": [0, 1, 2]},
        "finished_at": finished,
    }


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmlexp_gpu_prices = H100=4 A100-80GB=2.5\n")
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "research_plan.yaml").write_text(textwrap.dedent(PLAN))
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "e_a.py").write_text(textwrap.dedent(HANDLERS))
    new = _entry(NEW, 0.1, "2026-02-02T10:00:00Z", "b" * 40)
    old = _entry(OLD, 0.01, "2026-01-15T10:00:00Z", "a" * 40)
    new["history"] = [{k: v for k, v in old.items() if k not in ("provenance",)} | {"git_commit": "a" * 40}]
    point = {
        "status": "passed",
        "metrics": {"acc": 0.85},
        "params": {"epochs": 5, "width": 8},
        "duration_s": 600.0,
    }
    doc = {
        "schema": 2,
        "experiment_id": "e-a",
        "sub_experiments": {
            "a_fit": new,
            "a_width": {
                "status": "passed",
                "selected": "width_16",
                "points": {
                    "width_8": point,
                    "width_16": {**point, "metrics": {"acc": 0.88}, "params": {"epochs": 5, "width": 16}},
                },
            },
        },
        "stale": {},
    }
    folder = tmp_path / "research" / "experiments" / "e-a"
    folder.mkdir(parents=True)
    (folder / "results.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path / "research")  # found from a subfolder, as pytest finds its rootdir
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_show_csv_is_the_params_by_metrics_table_with_todays_levels(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_digest(study)
    rows = list(csv.DictReader(io.StringIO(run(capsys, "show", "--format", "csv"))))
    assert [r["sub_experiment"] for r in rows] == ["a_fit", "a_width[width_8]", "a_width[width_16]", "a_new"]
    fit = rows[0]
    assert float(fit["metric.acc"]) == pytest.approx(0.92) and fit["level.acc"] == "target"
    assert fit["param.lr"] == "0.1" and fit["param.epochs"] == "5" and fit["status"] == "passed"
    assert rows[2]["selected"] == "True" and rows[1]["selected"] == "False"
    assert rows[1]["param.width"] == "8" and float(rows[2]["metric.acc"]) == 0.88
    assert rows[3]["status"] == "not run"
    assert tree_digest(study) == before  # looking writes nothing


def test_show_json_and_table(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, "show", "e-a", "--format", "json"))
    (exp,) = data["experiments"]
    assert exp["verdict"]["criteria"]["acc"]["level"] == "target"
    assert exp["verdict"]["status"] == "partial"  # a_new never ran
    assert exp["rows"][0]["params"] == {"lr": 0.1, "epochs": 5}
    table = run(capsys, "show")
    assert "params of every row: epochs=5" in table
    assert "a_fit" in table and "0.92 (target)" in table and "a_width[width_16] *" in table
    md = run(capsys, "show", "--format", "md")
    assert md.startswith("## e-a: ") and "| sub_experiment | status |" in md


def test_diff_against_previous_date_and_commit(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, "diff", "e-a", "--format", "json"))
    fit = next(r for r in data["results"] if r["sub_experiment"] == "a_fit")
    (acc,) = fit["metrics"]
    diffs = [NEW[s] - OLD[s] for s in (0, 1, 2)]
    mean = sum(diffs) / 3
    assert acc["delta"] == pytest.approx(mean) and acc["pairing"] == "paired" and acc["n"] == 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    stats = pytest.importorskip("scipy.stats")
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert acc["ci95"] == pytest.approx([mean - half, mean + half])
    assert fit["params"] == [{"name": "lr", "old": 0.01, "new": 0.1}]
    assert fit["levels"] == [{"metric": "acc", "old": "miss", "new": "target"}]  # judged by today's criteria
    points = [r for r in data["results"] if r["sub_experiment"].startswith("a_width")]
    assert all(r["earlier"] is None for r in points)  # no earlier run of the points
    rows = list(csv.DictReader(io.StringIO(run(capsys, "diff", "e-a", "--format", "csv"))))
    metric = next(r for r in rows if r["sub_experiment"] == "a_fit" and r["kind"] == "metric")
    assert float(metric["ci95_low"]) == pytest.approx(mean - half)
    by_date = json.loads(run(capsys, "diff", "e-a", "--against", "2026-01-20", "--format", "json"))
    assert (
        next(r for r in by_date["results"] if r["sub_experiment"] == "a_fit")["earlier"]
        == "2026-01-15T10:00:00Z"
    )
    too_early = json.loads(run(capsys, "diff", "e-a", "--against", "2026-01-01", "--format", "json"))
    assert next(r for r in too_early["results"] if r["sub_experiment"] == "a_fit")["earlier"] is None
    by_commit = json.loads(run(capsys, "diff", "e-a", "--against", "aaaaaaa", "--format", "json"))
    assert (
        next(r for r in by_commit["results"] if r["sub_experiment"] == "a_fit")["earlier"]
        == "2026-01-15T10:00:00Z"
    )
    text = run(capsys, "diff", "e-a")
    assert "param lr: 0.01 → 0.1" in text and "level acc: miss → target" in text
    assert main(["diff", "e-a", "--against", "last week"]) == 2
    assert "--against must be" in capsys.readouterr().err


def test_estimate_per_experiment(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, "estimate", "--format", "json"))
    est = data["experiments"]["e-a"]
    # a_fit: 1800 s x 3 seeds on modal (concurrent) x 2 H100 = 3 GPU-hours; a_width: 600 s a point,
    # 2 points, local, 1 A100-80GB = 1/3 GPU-hour; a_new never ran
    assert est["items"] == 4 and est["seeds"] == 6 and est["unknown"] == 1
    assert est["gpu_hours"] == {"H100": 3.0, "A100-80GB": pytest.approx(0.3333, abs=1e-4)}
    assert est["cost"] == pytest.approx(3.0 * 4 + 2.5 / 3, abs=0.01)
    assert est["wall_s"] == 1800.0  # local 1200 s while the three modal seeds run at once
    line = run(capsys, "estimate", "--experiment", "e-a")
    assert line.startswith("e-a: estimate for 4 items (6 seeds): ~30 min wall, 3.33 GPU-hours")
    assert "unknown for 1 never run" in line
    rows = list(csv.DictReader(io.StringIO(run(capsys, "estimate", "--format", "csv"))))
    assert [r["experiment"] for r in rows] == ["e-a", "total"] and rows[1]["unknown"] == "1"
    assert main(["estimate", "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_the_command_imports_no_pytest(study: Path) -> None:
    code = (
        "import sys; from pytest_mlexp.cli import main; rc = main(['show', '--format', 'json']);"
        "bad = sorted(m for m in sys.modules if m == 'pytest' or m.startswith('_pytest'));"
        "assert not bad, bad; raise SystemExit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=study, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["experiments"][0]["experiment"] == "e-a"


def test_the_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "mlexp"]
    assert script.value == "pytest_mlexp.cli:main"


MODULES_CONFTEST = """
import json, sys

def pytest_unconfigure(config):
    with open("modules.json", "w") as fh:
        json.dump(sorted(m for m in sys.modules if m.startswith("pytest_mlexp")), fh)
"""


def test_a_pytest_run_imports_none_of_the_command(tmp_path: Path) -> None:
    """The other way round: ``mlexp`` costs a pytest run nothing. A run without a plan imports
    none of what reuse and comparison add; a plan's ``--co`` (which prints the cost estimate)
    imports none of the command."""

    def modules(cwd: Path, *args: str) -> set[str]:
        (cwd / "conftest.py").write_text(MODULES_CONFTEST)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode in (0, 5), done.stdout + done.stderr
        return set(json.loads((cwd / "modules.json").read_text()))

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "test_x.py").write_text("def test_x():\n    pass\n")
    loaded = modules(plain, "-q")
    assert "pytest_mlexp.plugin" in loaded  # the plugin did load
    added = ("cli", "compare", "estimate", "fingerprint", "reuse", "gitstate", "lastfailed")
    assert not {m for m in loaded if m.partition(".")[2].split(".")[0] in added}, loaded
    planned = tmp_path / "planned"
    (planned / "research").mkdir(parents=True)
    (planned / "research" / "research_plan.yaml").write_text(textwrap.dedent(PLAN))
    (planned / "experiments").mkdir()
    (planned / "experiments" / "e_a.py").write_text(textwrap.dedent(HANDLERS))
    loaded = modules(planned, "--experiment", "all", "--co", "-q")
    assert "pytest_mlexp.estimate" in loaded  # the estimate line was made
    assert not {m for m in loaded if m.startswith("pytest_mlexp.cli")}, loaded
