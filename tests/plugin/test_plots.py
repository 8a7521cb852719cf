"""Charts made for you, learning-curve files and the gate graph (SPEC section 13), end to end."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from tests.conftest import Project

pytest.importorskip("matplotlib")
# Imported here, before any in-process run: pytester drops the modules a run imported when it
# ends, and a second copy of matplotlib's Python modules over its compiled ones breaks it.
import matplotlib.backends.backend_agg
import matplotlib.figure
import matplotlib.ticker  # noqa: F401

PLAN = """
project: {name: Charts, hypothesis: "h"}
experiments:
  e-base:
    phase: 1
    sub_experiments:
      b_1:
        success_criteria: {acc: {target: 0.9, acceptable: 0.8, failure: 0.6}}
  e-main:
    phase: 2
    sub_experiments:
      m_fit:
        seeds: 3
        dependencies: [b_1]
        success_criteria: {acc: ">= 0.7"}
      m_width:
        sweep: {width: [8, 32, 128]}
        seeds: 2
        select: {metric: val_acc, mode: max}
    success_criteria:
      acc: {target: 0.95, acceptable: 0.85, failure: 0.7, from: m_fit}
      loss: {max: 0.5, from: m_fit}
gates:
  g1: {name: "Gate 1", experiments: [e-base], unlocks: "Phase 2"}
"""

HANDLERS = """
import os

def b_1(runner):
    return {"metrics": {"acc": 0.85}}

def m_fit(runner):
    steps = 0 if os.environ.get("MLEXP_TEST_QUIET") else int(os.environ.get("MLEXP_TEST_STEPS", "20"))
    for step in range(steps):
        loss = 1.0 / (step + 1) + 0.01 * runner.seed
        runner.log_metrics({"loss": loss, "acc": min(0.99, step / steps)}, step=step)
    runner.log_metrics({"note": "text is not a curve"})
    return {"metrics": {"acc": 0.9 + 0.01 * runner.seed, "loss": 0.2}}

def m_width(runner):
    width = runner.params["width"]
    for step in range(5):
        runner.log_metrics({"val_acc": 0.5 + 0.001 * width * step / 4}, step=step)
    return {"metrics": {"val_acc": 0.6 + width / 1000 + 0.01 * runner.seed}}
"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is cut short"
    return width, height


def _setup(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("charts", HANDLERS)


def test_charts_are_drawn_linked_and_kept_when_unchanged(project: Project) -> None:
    _setup(project)
    assert project.run("--experiment", "all").ret == 0
    plots = project.experiment_dir("e-main") / "plots"
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["criteria.png", "m_fit-curves.png", "m_width-curves.png", "m_width-sweep.png"]
    for path in plots.iterdir():
        width, height = png_size(path)
        assert 400 <= width <= 2000 and 150 <= height <= 1600, (path.name, width, height)
        assert 5_000 < path.stat().st_size < 400_000, path.name
    assert sorted(p.name for p in (project.experiment_dir("e-base") / "plots").iterdir()) == ["criteria.png"]

    findings = project.findings("e-main")
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+)\)", findings)
    assert sorted(links) == sorted(f"plots/{n}" for n in names)  # every chart, shown inline
    for link in links:
        assert (project.experiment_dir("e-main") / link).is_file()
    # the criteria chart after the key metrics, the sweep's after its table, curves in their section
    assert findings.index("plots/criteria.png") < findings.index("#### `m_fit`")
    assert findings.index("Sweep (3 point(s))") < findings.index("plots/m_width-sweep.png")

    # The gate and dependency graph, coloured by verdict
    overview = project.findings()
    graph = overview[overview.index("```mermaid") : overview.index("```", overview.index("```mermaid") + 3)]
    assert 'e0["e-base<br/>passed · proceed"]:::passed' in graph
    assert 'g0{{"Gate 1"}}:::passed' in graph and "e0 --> g0" in graph and "g0 --> e1" in graph
    assert 'e0 -.->|"b_1 → m_fit"| e1' in graph
    assert "classDef failed" in graph

    # Unchanged results: the charts are not drawn again (same bytes, same file)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in plots.iterdir()}
    assert project.run("--experiment", "e-base").ret == 0  # e-main's results did not change
    assert project.run("--experiment", "e-main").ret == 0  # re-run: the same numbers
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in plots.iterdir()}
    assert after == before


def test_curve_files_are_bounded_and_stay_out_of_results(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project)
    monkeypatch.setenv("MLEXP_TEST_STEPS", "5000")
    assert project.run("--experiment", "all", "-p", "no:cacheprovider").ret == 0
    path = project.experiment_dir("e-main") / "curves" / "m_fit.json"
    data = json.loads(path.read_text())
    assert data["sub"] == "m_fit" and sorted(data["seeds"]) == ["0", "1", "2"]
    for seed in data["seeds"].values():
        assert sorted(seed) == ["acc", "loss"]  # numbers only: "note" was text
        for curve in seed.values():
            assert len(curve["steps"]) == len(curve["values"]) == 1000
            assert curve["steps"][0] == 0 and curve["steps"][-1] == 4999  # first and last kept
    assert path.stat().st_size < 200_000  # 3 seeds x 2 keys x 1,000 points
    point = project.experiment_dir("e-main") / "curves" / "m_width[width_32].json"
    assert json.loads(point.read_text())["point"] == "width_32"
    results = (project.experiment_dir("e-main") / "results.yaml").read_text()
    assert "4999" not in results and "steps" not in results  # results.yaml holds no curves
    # a re-run that logs nothing leaves no curve of the earlier run behind
    monkeypatch.setenv("MLEXP_TEST_QUIET", "1")
    assert project.run("--experiment", "all", "-p", "no:cacheprovider").ret == 0
    assert not path.exists() and point.exists()
    assert not (project.experiment_dir("e-main") / "plots" / "m_fit-curves.png").exists()


def test_no_matplotlib_is_one_note_and_the_ini_option_turns_charts_off(project: Project) -> None:
    _setup(project)
    import pytest_mlexp.plots

    with pytest.MonkeyPatch.context() as patch:  # not `monkeypatch.undo()`: pytester's chdir is in it
        patch.setattr(pytest_mlexp.plots, "available", lambda: False)
        result = project.run("--experiment", "all")
    assert result.ret == 0
    notes = [line for line in result.stdout.lines if line.startswith("mlexp:") and "matplotlib" in line]
    assert notes == [
        "mlexp: no charts: matplotlib is not installed (pip install matplotlib, "
        "or set the ini option mlexp_plots = false)"
    ]
    assert not (project.experiment_dir("e-main") / "plots").exists()
    assert "plots/" not in project.findings("e-main")
    project.pytester.makeini("[pytest]\nmlexp_plots = false\n")
    result = project.run("--experiment", "all")
    assert result.ret == 0 and "matplotlib is not installed" not in result.stdout.str()
    assert not (project.experiment_dir("e-main") / "plots").exists()


def test_stub_runs_keep_no_curves_and_draw_nothing(project: Project) -> None:
    _setup(project)
    assert project.run("--experiment", "all", "--stub").ret == 0
    assert not (project.experiment_dir("e-main") / "curves").exists()
    assert not (project.experiment_dir("e-main") / "plots").exists()


def test_curves_come_back_from_xdist_workers(project: Project) -> None:
    pytest.importorskip("xdist")
    _setup(project)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--experiment", "all")
    result.assert_outcomes(passed=7)
    curves = project.experiment_dir("e-main") / "curves"
    assert sorted(p.name for p in curves.iterdir()) == [
        "m_fit.json",
        "m_width[width_128].json",
        "m_width[width_32].json",
        "m_width[width_8].json",
    ]
    assert (project.experiment_dir("e-main") / "plots" / "m_fit-curves.png").is_file()
