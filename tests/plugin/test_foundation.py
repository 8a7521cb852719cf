"""End to end through pytest: collection, selection, running, judging, writing (issue 2)."""

from __future__ import annotations

from tests.conftest import Project

PLAN = """
project: {name: Toy, hypothesis: "Bigger is better"}
experiments:
  e-one:
    name: "E1: one"
    phase: 1
    sub_experiments:
      e1_a:
        params: {value: 0.9}
        stub_params: {value: 0.1}
        success_criteria: {accuracy: ">= 0.8"}
      e1_b:
        params: {value: 0.5}
    success_criteria:
      accuracy: {target: 0.95, acceptable: 0.85, failure: 0.5}
"""

HANDLERS = """
def e1_a(runner):
    return {"finding": "a works", "metrics": {"accuracy": runner.params["value"]}}

def e1_b(runner):
    return {"metrics": {"loss": runner.params["value"]}}
"""


def test_plain_pytest_deselects_experiments(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    result = project.run("research", "test_unit.py")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*3 experiment items deselected*--experiment*"])
    assert not (project.path / "research" / "experiments").exists()


def test_experiment_run_writes_results_and_findings(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    result = project.run("--experiment", "e-one", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*research_plan.yaml::e-one::e1_a PASSED*",
            "*research_plan.yaml::e-one::e1_b PASSED*",
            "*research_plan.yaml::e-one::assessment PASSED*",
            "*experiment summary*",
            "Completed: 2 | Failed: 0 | Errors: 0 (infra 0) | Blocked: 0",
        ]
    )
    doc = project.results("e-one")
    assert doc["schema"] == 1
    assert doc["sub_experiments"]["e1_a"]["metrics"] == {"accuracy": 0.9}
    assert doc["sub_experiments"]["e1_a"]["status"] == "passed"
    assert doc["sub_experiments"]["e1_a"]["finding"] == "a works"
    assert doc["criteria"]["accuracy"]["from"] == "e1_a"
    findings = project.findings("e-one")
    assert "<!-- mlexp:begin -->" in findings and "a works" in findings
    assert "e-one" in project.findings()
