"""Seeds, sweeps and statistical criteria end to end (issue 7)."""

from __future__ import annotations

from tests.conftest import Project

PLAN = """
project: {name: Stats, hypothesis: "h"}
experiments:
  e-s:
    sub_experiments:
      es_seeds:
        seeds: 4
        params: {noise: 0.01}
        success_criteria:
          acc: {target: 0.9, acceptable: 0.8, failure: 0.5, confidence: 0.95}
      es_sweep:
        params: {base: 0.1}
        sweep: {hidden: [16, 64], lr: [0.01, 0.001]}
        select: {metric: acc, mode: max}
        success_criteria: {acc: ">= 0.6"}
    success_criteria:
      acc: {target: 0.95, acceptable: 0.6, failure: 0.3, from: es_sweep}
"""

HANDLERS = """
import random
def es_seeds(runner):
    jitter = random.uniform(-1, 1) * runner.params["noise"]
    return {"metrics": {"acc": 0.85 + jitter + 0.001 * runner.seed, "note": "text kept"}}
def es_sweep(runner):
    acc = runner.params["hidden"] / 100 + runner.params["lr"]
    return {"finding": f"hidden {runner.variant['hidden']}", "metrics": {"acc": acc, "loss": 1 - acc}}
"""


def test_seeds_stats_and_confidence(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "es_seeds", "--junitxml=r.xml")
    result.assert_outcomes(passed=1, failed=1)  # the assessment: es_sweep never ran
    entry = project.results("e-s")["sub_experiments"]["es_seeds"]
    assert sorted(entry["per_seed"]) == [0, 1, 2, 3]
    st = entry["stats"]["acc"]
    assert st["n"] == 4 and st["ci95"][0] < st["mean"] < st["ci95"][1]
    assert entry["criteria"]["acc"]["passed"] is True
    assert entry["metrics"]["note"] == "text kept"
    # deterministic seeding: the same per-seed values on a second run
    project.run("--experiment", "es_seeds")
    again = project.results("e-s")["sub_experiments"]["es_seeds"]
    assert again["per_seed"] == entry["per_seed"]
    xml = (project.path / "r.xml").read_text()
    assert 'name="stats.acc"' in xml and "ci95=" in xml
    assert "95% CI" in project.findings("e-s") or "CI" in project.findings("e-s")


def test_inconclusive_interval_fails_and_says_how_many_seeds(project: Project) -> None:
    project.plan(PLAN.replace("noise: 0.01", "noise: 0.2").replace("seeds: 4", "seeds: 3"))
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "es_seeds")
    result.stdout.fnmatch_lines(["*acc = * (mean of 3 seeds, 95% CI [[]*needs*inconclusive*seeds*"])
    entry = project.results("e-s")["sub_experiments"]["es_seeds"]
    assert entry["criteria"]["acc"]["level"] == "inconclusive"
    assert entry["criteria"]["acc"]["seeds_needed"] > 3


def test_sweep_points_ids_selection_and_experiment_value(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "e-s", "--co", "-q")
    result.stdout.fnmatch_lines(
        [
            "*::e-s::es_seeds",
            "*::e-s::es_sweep[[]hidden_16-lr_0.01]",
            "*::e-s::es_sweep[[]hidden_16-lr_0.001]",
            "*::e-s::es_sweep[[]hidden_64-lr_0.01]",
            "*::e-s::es_sweep[[]hidden_64-lr_0.001]",
            "*::e-s::assessment",
        ]
    )
    project.run("--experiment", "e-s", "-k", "hidden_64 and lr_0.01 or es_seeds").assert_outcomes(
        passed=2, deselected=4
    )
    project.run("--experiment", "e-s").assert_outcomes(passed=6)
    doc = project.results("e-s")
    sweep = doc["sub_experiments"]["es_sweep"]
    assert set(sweep["points"]) == {
        "hidden_16-lr_0.01",
        "hidden_16-lr_0.001",
        "hidden_64-lr_0.01",
        "hidden_64-lr_0.001",
    }
    assert sweep["selected"] == "hidden_64-lr_0.01"
    assert sweep["metrics"]["acc"] == 0.65
    assert sweep["finding"] == "hidden 64"
    assert doc["criteria"]["acc"]["value"] == 0.65
    assert doc["criteria"]["acc"]["from"] == "es_sweep"
    assert "hidden_64-lr_0.01" in project.findings("e-s")


def test_sweep_point_fails_only_on_error_and_sub_criteria_judged_on_selection(project: Project) -> None:
    project.plan(PLAN.replace('{acc: ">= 0.6"}', '{acc: ">= 0.7"}'))
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "es_sweep")
    # every point passes (no errors); the sweep's criterion (0.65 < 0.7) fails the assessment
    result.assert_outcomes(passed=4, failed=1)
    sweep = project.results("e-s")["sub_experiments"]["es_sweep"]
    assert sweep["status"] == "failed"
    assert sweep["criteria"]["acc"]["passed"] is False


def test_duplicate_sweep_point_ids_are_a_collection_error(project: Project) -> None:
    project.plan(PLAN.replace("lr: [0.01, 0.001]", 'lr: ["a b", "a_b"]'))
    project.handlers("handlers", HANDLERS)
    result = project.run("--experiment", "e-s")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*research_plan.yaml:*"])


def test_dependent_of_a_sweep_sees_its_selected_point(project: Project) -> None:
    project.plan(
        PLAN.replace(
            "    success_criteria:\n      acc: {target: 0.95",
            "      es_after:\n        dependencies: [es_sweep]\n"
            "    success_criteria:\n      acc: {target: 0.95",
        )
    )
    project.handlers(
        "handlers",
        HANDLERS
        + "\ndef es_after(runner):\n"
        + "    return {'metrics': {'up': runner.upstream['es_sweep']['metrics']['acc']}}\n",
    )
    result = project.run("--experiment", "es_sweep,es_after")
    result.assert_outcomes(passed=5, failed=1)  # the assessment: es_seeds never ran
    assert project.results("e-s")["sub_experiments"]["es_after"]["metrics"]["up"] == 0.65
