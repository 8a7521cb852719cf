"""Never pay twice for unchanged work (SPEC section 11, issue 17): fingerprints, stale vs
outdated, --mlexp-reuse, edits and undos, artifacts per fingerprint, history, git_dirty, --lf.

Handlers append one line per call to ``calls.txt`` in the project, so every test counts what
actually ran."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Project, git

PLAN = """
project: {name: Reuse, hypothesis: "h"}
experiments:
  e-r:
    sub_experiments:
      r_a:
        params: {lr: 0.01}
        seeds: 2
        success_criteria: {acc: ">= 0.5"}
      r_b:
        dependencies: [r_a]
      r_c:
        params: {width: 4}
"""

HANDLERS = """
from pathlib import Path

from experiments.helpers import SCALE

CALLS = Path(__file__).resolve().parents[1] / "calls.txt"


def _called(name):
    with CALLS.open("a") as f:
        f.write(name + "\\n")


def r_a(runner):
    _called(f"r_a:{runner.seed}")
    path = runner.results.save_artifact("model.txt", f"lr={runner.params['lr']}")
    return {"metrics": {"acc": 0.5 + SCALE * runner.seed}, "artifacts": [path], "finding": "fits"}


def r_b(runner):
    _called("r_b")
    up = runner.upstream["r_a"]
    assert all(Path(p).is_file() for p in up["artifacts"]), up["artifacts"]
    return {"metrics": {"v": up["metrics"]["acc"] * 2}}


def r_c(runner):
    _called("r_c")
    return {"metrics": {"w": float(runner.params["width"])}}
"""


def calls(project: Project) -> list[str]:
    path = project.path / "calls.txt"
    if not path.exists():
        return []
    lines = path.read_text().split()
    path.unlink()
    return lines


def setup(project: Project, plan: str = PLAN, handlers: str = HANDLERS) -> None:
    project.plan(plan)
    project.handlers("e_r", handlers)
    project.handlers("helpers", "SCALE = 0.1\n")
    project.handlers("unrelated", "X = 1\n")


def run_one(project: Project, sub: str, *args: str) -> None:
    """Run one sub-experiment (its assessment, which would judge the others too, left out)."""
    project.run("--experiment", sub, "-k", "not assessment", *args).assert_outcomes(passed=1)


def subs(project: Project, exp: str = "e-r") -> dict[str, Any]:
    return dict(project.results(exp)["sub_experiments"])


def edit_plan(project: Project, old: str, new: str) -> None:
    path = project.path / "research" / "research_plan.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        out[case.get("name", "")] = props
    return out


# --- reuse -------------------------------------------------------------------------------------


def test_an_unchanged_sub_experiment_is_not_run_under_reuse_and_junit_says_reused(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    assert sorted(calls(project)) == ["r_a:0", "r_a:1", "r_b", "r_c"]
    first = subs(project)
    xml = project.path / "report.xml"
    result = project.run("--experiment", "all", "--mlexp-reuse", f"--junitxml={xml}")
    result.assert_outcomes(passed=4)
    assert calls(project) == []  # nothing ran
    day = first["r_a"]["finished_at"][:10]
    result.stdout.fnmatch_lines([f"*r_a*passed*(reused {day})*acc=0.55*", f"*r_c*passed*(reused {day})*"])
    props = junit_properties(xml)
    assert props["r_a"]["reused"] == day and props["r_a"]["mlexp.status"] == "passed"
    assert props["r_c"]["reused"] == day
    now = subs(project)
    # the same result, re-judged: its own dates, no copy of itself in its history
    assert now["r_a"]["finished_at"] == first["r_a"]["finished_at"]
    assert now["r_a"]["reused"] == {"from": first["r_a"]["finished_at"]}
    assert "history" not in now["r_a"]
    assert now["r_a"]["metrics"] == first["r_a"]["metrics"]
    assert "reused from the run of " + day in project.findings("e-r")
    # without the flag (and with it turned off explicitly) everything runs again
    project.run("--experiment", "all", "--mlexp-reuse=no").assert_outcomes(passed=4)
    assert len(calls(project)) == 4


def test_ini_option_turns_reuse_on_and_the_flag_wins(project: Project) -> None:
    setup(project)
    project.pytester.makeini("[pytest]\nmlexp_reuse = true\n")
    project.run("--experiment", "all").assert_outcomes(passed=4)
    assert len(calls(project)) == 4
    project.run("--experiment", "all").assert_outcomes(passed=4)
    assert calls(project) == []
    project.run("--experiment", "all", "--mlexp-reuse=no").assert_outcomes(passed=4)
    assert len(calls(project)) == 4


def test_changing_one_params_runs_it_and_its_dependents_nothing_else(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    calls(project)
    edit_plan(project, "lr: 0.01", "lr: 0.1")
    project.run("--experiment", "all", "--mlexp-reuse").assert_outcomes(passed=4)
    assert sorted(calls(project)) == ["r_a:0", "r_a:1", "r_b"]  # r_c reused
    doc = project.results("e-r")
    assert doc["stale"]["r_a"]["stale_reason"] == "params changed: lr 0.01 → 0.1"
    assert doc["sub_experiments"]["r_a"]["params"] == {"lr": 0.1}


def test_reverting_a_change_restores_the_earlier_result_with_its_original_date(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    calls(project)
    original = subs(project)["r_a"]
    edit_plan(project, "lr: 0.01", "lr: 0.1")
    project.run("--experiment", "all").assert_outcomes(passed=4)
    assert len(calls(project)) == 4
    edited = subs(project)["r_a"]
    assert edited["params"] == {"lr": 0.1}
    edit_plan(project, "lr: 0.1", "lr: 0.01")
    # Without reuse, any session that writes the experiment brings the stale result back ...
    run_one(project, "r_c")
    assert calls(project) == ["r_c"]
    doc = project.results("e-r")
    back = doc["sub_experiments"]["r_a"]
    assert back["finished_at"] == original["finished_at"] and back["params"] == {"lr": 0.01}
    assert back["metrics"] == original["metrics"] and "stale_reason" not in back
    assert back["artifacts"] == original["artifacts"]  # its own files, in its fingerprint's folder
    assert all((project.path / "research" / a).read_text() == "lr=0.01" for a in back["artifacts"])
    # ... and the edited run is kept under stale, with why
    assert doc["stale"]["r_a"]["stale_reason"] == "params changed: lr 0.1 → 0.01"
    assert doc["stale"]["r_a"]["finished_at"] == edited["finished_at"]
    # With reuse, nothing runs: r_a is the restored result, r_b and r_c match their history.
    project.run("--experiment", "all", "--mlexp-reuse").assert_outcomes(passed=4)
    assert calls(project) == []
    assert subs(project)["r_a"]["finished_at"] == original["finished_at"]


def test_edit_then_undo_twice_loses_nothing(project: Project) -> None:
    setup(project)
    run_one(project, "r_a")
    dates = {"0.01": subs(project)["r_a"]["finished_at"]}
    for lr in ("0.1", "0.3"):
        edit_plan(project, "lr: 0.01" if lr == "0.1" else "lr: 0.1", f"lr: {lr}")
        run_one(project, "r_a")
        dates[lr] = subs(project)["r_a"]["finished_at"]
    calls(project)
    # back to 0.1 then 0.01: each earlier result comes back from where it was kept
    for old, lr in (("0.3", "0.1"), ("0.1", "0.01")):
        edit_plan(project, f"lr: {old}", f"lr: {lr}")
        run_one(project, "r_a", "--mlexp-reuse")
        assert calls(project) == []
        got = subs(project)["r_a"]
        assert got["params"] == {"lr": float(lr)} and got["finished_at"] == dates[lr]


def test_adding_seeds_runs_only_the_new_seeds(project: Project) -> None:
    setup(project)
    run_one(project, "r_a")
    before = subs(project)["r_a"]
    calls(project)
    edit_plan(project, "seeds: 2", "seeds: 4")
    result = project.run("--experiment", "r_a", "-k", "not assessment", "--mlexp-reuse")
    result.assert_outcomes(passed=1)
    assert sorted(calls(project)) == ["r_a:2", "r_a:3"]
    result.stdout.fnmatch_lines(["*r_a*passed*(2 seeds reused *)*"])
    got = project.results("e-r")
    entry = got["sub_experiments"]["r_a"]
    assert sorted(entry["per_seed"]) == [0, 1, 2, 3]
    assert entry["per_seed"][0] == before["per_seed"][0]
    assert entry["reused"]["seeds"] == [0, 1]
    assert entry["provenance"]["seeds"] == [0, 1, 2, 3]
    assert got["stale"]["r_a"]["stale_reason"] == "seeds changed: [0, 1] → 0..3"
    # without reuse, a change of seeds runs every seed
    edit_plan(project, "seeds: 4", "seeds: 3")
    run_one(project, "r_a")
    assert sorted(calls(project)) == ["r_a:0", "r_a:1", "r_a:2"]


def test_error_and_infra_error_results_are_never_reused(project: Project) -> None:
    plan = """
    project: {name: Err, hypothesis: "h"}
    experiments:
      e-x:
        sub_experiments:
          x_err: {}
          x_slow: {executor: process, resources: {timeout: 1}}
    """
    handlers = """
    import os, time
    from pathlib import Path
    CALLS = Path(__file__).resolve().parents[1] / "calls.txt"
    def x_err(runner):
        with CALLS.open("a") as f:
            f.write("x_err\\n")
        raise ValueError("boom")
    def x_slow(runner):
        with CALLS.open("a") as f:
            f.write("x_slow\\n")
        if os.environ.get("SLOW"):
            time.sleep(30)
        return {"metrics": {"m": 1.0}}
    """
    project.plan(plan)
    project.handlers("e_x", handlers)
    os_env = pytest.MonkeyPatch()
    os_env.setenv("SLOW", "1")
    try:
        project.run("--experiment", "all").assert_outcomes(failed=3)
    finally:
        os_env.undo()
    assert {k: v["status"] for k, v in subs(project, "e-x").items()} == {
        "x_err": "error",
        "x_slow": "infra_error",
    }
    calls(project)
    project.run("--experiment", "all", "--mlexp-reuse").assert_outcomes(passed=1, failed=2)
    assert sorted(calls(project)) == ["x_err", "x_slow"]  # both ran again
    assert subs(project, "e-x")["x_slow"]["status"] == "passed"


def test_no_reuse_under_stub(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all", "--stub").assert_outcomes(passed=4)
    calls(project)
    project.run("--experiment", "all", "--stub", "--mlexp-reuse").assert_outcomes(passed=4)
    assert len(calls(project)) == 3  # the first seed only, every item


# --- outdated ---------------------------------------------------------------------------------


def test_editing_a_helper_module_marks_results_outdated_and_changes_the_fingerprint(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    calls(project)
    fp = subs(project)["r_a"]["provenance"]["fingerprint"]
    # an unrelated module: nothing changes, everything is reused
    (project.path / "experiments" / "unrelated.py").write_text("X = 2\n")
    project.run("--experiment", "all", "--mlexp-reuse").assert_outcomes(passed=4)
    assert calls(project) == []
    assert subs(project)["r_a"]["provenance"]["fingerprint"] == fp
    assert "outdated" not in subs(project)["r_a"]
    # the helper the handlers import: outdated (still counted), listed for review, not reused
    (project.path / "experiments" / "helpers.py").write_text("SCALE = 0.1  # same value, new text\n")
    project.run("--experiment", "r_c")  # a session that writes the experiment
    assert calls(project) == ["r_c"]
    got = subs(project)
    assert got["r_a"]["outdated"] == "experiments/helpers.py changed"
    assert got["r_a"]["status"] == "passed"  # it still counts
    assert "outdated" not in got["r_c"]
    assert project.results("e-r")["recommendation"] in ("proceed", "investigate")
    findings = project.findings("e-r")
    assert "**Outdated:** experiments/helpers.py changed" in findings
    assert "r_a: outdated (experiments/helpers.py changed)" in findings  # REQUIRES HUMAN REVIEW
    run_one(project, "r_a", "--mlexp-reuse")
    assert sorted(calls(project)) == ["r_a:0", "r_a:1"]
    new = subs(project)["r_a"]
    assert new["provenance"]["fingerprint"] != fp and "outdated" not in new
    # the dependent now waits on a result with another fingerprint
    assert subs(project)["r_b"]["outdated"].startswith("experiments/helpers.py changed")


def test_a_deps_file_enters_the_fingerprint(project: Project) -> None:
    plan = PLAN.replace("      r_c:\n", '      r_c:\n        deps: [data/train.csv, "data/shards/*.npz"]\n')
    setup(project, plan)
    data = project.path / "data"
    (data / "shards").mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "shards" / "s0.npz").write_bytes(b"x")
    run_one(project, "r_c")
    entry = subs(project)["r_c"]
    inputs = entry["provenance"]["inputs"]
    assert {"deps:data/train.csv", "deps:data/shards/s0.npz"} <= set(inputs)
    calls(project)
    run_one(project, "r_c", "--mlexp-reuse")
    assert calls(project) == []
    (data / "train.csv").write_text("a,b\n1,3\n")
    project.run("--experiment", "r_a")
    calls(project)
    assert subs(project)["r_c"]["outdated"] == "deps data/train.csv changed"
    run_one(project, "r_c", "--mlexp-reuse")
    assert calls(project) == ["r_c"]
    assert subs(project)["r_c"]["provenance"]["fingerprint"] != entry["provenance"]["fingerprint"]
    # a new file matching the glob changes it too
    (data / "shards" / "s1.npz").write_bytes(b"y")
    run_one(project, "r_c", "--mlexp-reuse")
    assert calls(project) == ["r_c"]


# --- artifacts, history, provenance -------------------------------------------------------------


def test_artifacts_live_per_fingerprint_and_missing_ones_are_shown_and_rerun(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    calls(project)
    entry = subs(project)["r_a"]
    fp = entry["provenance"]["fingerprint"][:12]
    assert entry["artifacts"] == [
        f"artifacts/r_a/{fp}/seed0/model.txt",
        f"artifacts/r_a/{fp}/seed1/model.txt",
    ]
    (project.path / "research" / entry["artifacts"][1]).unlink()
    # r_b reads r_a's files: r_a is not reused while they are gone; r_c is
    result = project.run("--experiment", "all", "--mlexp-reuse")
    result.assert_outcomes(passed=4)
    assert sorted(calls(project)) == ["r_a:1"]  # only the seed whose file is gone
    assert (project.path / "research" / entry["artifacts"][1]).is_file()
    # a result whose files are gone is shown so
    (project.path / "research" / entry["artifacts"][0]).unlink()
    project.run("--experiment", "r_c")
    calls(project)
    got = subs(project)["r_a"]
    assert got["artifacts_missing"] == [entry["artifacts"][0]]
    assert f"**Artifacts missing:** `{entry['artifacts'][0]}`" in project.findings("e-r")


def test_history_entries_carry_params_fingerprint_commit_and_tracker_link(project: Project) -> None:
    setup(project)
    run_one(project, "r_c")
    first = subs(project)["r_c"]
    run_one(project, "r_c")
    (item,) = subs(project)["r_c"]["history"]
    assert item["finished_at"] == first["finished_at"] and item["status"] == "passed"
    assert item["metrics"] == first["metrics"] and item["params"] == {"width": 4}
    assert item["params_sha256"] == first["provenance"]["params_sha256"]
    assert item["fingerprint"] == first["provenance"]["fingerprint"]
    assert item["seeds"] == first["provenance"]["seeds"] == [0]
    assert item["duration_s"] == first["duration_s"] and isinstance(item["duration_s"], float)
    assert "git_commit" in item and item["git_commit"] is None  # not a git work tree
    # the tracker link, when the run had one (W&B is disabled in tests: a hand-made entry)
    path = project.experiment_dir("e-r") / "results.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["sub_experiments"]["r_c"]["wandb"] = {"url": "https://wandb.ai/x/y/runs/abc", "run_path": "x/y/abc"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_one(project, "r_c")
    assert subs(project)["r_c"]["history"][0]["tracking"] == {
        "url": "https://wandb.ai/x/y/runs/abc",
        "run_path": "x/y/abc",
    }


def test_stale_entries_record_why(project: Project) -> None:
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    edit_plan(project, "      r_c:\n        params: {width: 4}\n", "      r_d:\n        params: {width: 4}\n")
    edit_plan(project, "lr: 0.01", "lr: 0.01, epochs: 3")
    project.handlers("e_r", HANDLERS + "\n\ndef r_d(runner):\n    return {'metrics': {'w': 1.0}}\n")
    project.run("--experiment", "r_d")
    stale = project.results("e-r")["stale"]
    assert stale["r_c"]["stale_reason"] == "not in plan"
    assert stale["r_a"]["stale_reason"] == "params changed: epochs added (3)"


def test_the_verdict_and_findings_read_the_reason_the_store_wrote(project: Project) -> None:
    """One name written, the same name read (records.STALE_REASON): a stale result's reason as the
    store recorded it reaches the verdict and FINDINGS, not a generic "the plan changed"."""
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    edit_plan(project, "lr: 0.01", "lr: 0.1")
    project.run("--experiment", "r_c", "-k", "not assessment")  # writes the experiment, runs no r_a
    calls(project)
    doc = project.results("e-r")
    assert "r_a" not in doc["sub_experiments"]
    assert doc["stale"]["r_a"]["stale_reason"] == "params changed: lr 0.01 → 0.1"
    findings = project.findings("e-r")
    assert "(params changed: lr 0.01 → 0.1)" in findings
    assert "its params or the plan changed since it ran" not in findings
    result = project.run("--experiment", "e-r", "-k", "assessment")
    result.stdout.fnmatch_lines(
        ["*r_a never ran under the current plan (its stored result is stale: params changed: lr 0.01*"]
    )


def test_git_dirty_follows_the_fingerprints_files_and_the_plan(project: Project) -> None:
    setup(project)
    root = project.path
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    (root / "README.txt").write_text("an edit elsewhere")  # untracked, not read by any handler
    (root / "experiments" / "unrelated.py").write_text("X = 3\n")  # modified, not imported
    run_one(project, "r_c")
    prov = subs(project)["r_c"]["provenance"]
    assert prov["git_dirty"] is False and len(prov["git_commit"]) == 40
    run_one(project, "r_c")  # the commit travels into the history item of the replaced attempt
    assert subs(project)["r_c"]["history"][0]["git_commit"] == prov["git_commit"]
    # an untracked module the handler imports makes it dirty (git status -uno would miss it)
    project.handlers("helpers", "from experiments.extra import S\nSCALE = S\n")
    project.handlers("extra", "S = 0.1\n")
    run_one(project, "r_c")
    assert subs(project)["r_c"]["provenance"]["git_dirty"] is True


# --- --lf ------------------------------------------------------------------------------------------


LF_PLAN = """
project: {name: Lf, hypothesis: "h"}
experiments:
  e-l:
    sub_experiments:
      l_1: {}
      l_2: {}
      l_3: {}
      l_4: {}
      l_sw: {sweep: {k: [1, 2]}}
"""

LF_HANDLERS = """
import os
from pathlib import Path
CALLS = Path(__file__).resolve().parents[1] / "calls.txt"
def _run(name):
    with CALLS.open("a") as f:
        f.write(name + "\\n")
    if os.environ.get("STOP_AT") == name:
        raise KeyboardInterrupt
    return {"metrics": {"m": 1.0}}
def l_1(runner): return _run("l_1")
def l_2(runner): return _run("l_2")
def l_3(runner): return _run("l_3")
def l_4(runner): return _run("l_4")
def l_sw(runner): return _run(f"l_sw{runner.params['k']}")
"""


def test_lf_after_ctrl_c_runs_only_what_never_finished(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.plan(LF_PLAN)
    project.handlers("e_l", LF_HANDLERS)
    monkeypatch.setenv("STOP_AT", "l_3")
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    assert result.ret == 2  # interrupted in l_3
    assert calls(project) == ["l_1", "l_2", "l_3"]
    monkeypatch.delenv("STOP_AT")
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--lf")
    assert result.ret == 0
    assert calls(project) == ["l_3", "l_4", "l_sw1", "l_sw2"]  # not l_1 and l_2 again
    # nothing failed or left: --lf has nothing experiment-specific to do
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--lf", "--experiment", "all")
    assert len(calls(project)) == 6


def test_lf_runs_new_sweep_points_and_stale_items(project: Project) -> None:
    project.plan(LF_PLAN)
    project.handlers("e_l", LF_HANDLERS)
    project.run("--experiment", "all").assert_outcomes(passed=7)
    calls(project)
    edit_plan(project, "k: [1, 2]", "k: [1, 2, 3]")
    edit_plan(project, "l_2: {}", "l_2: {params: {p: 1}}")
    result = project.run("--lf")
    result.assert_outcomes(passed=3)  # the new point, the stale item, their assessment
    assert sorted(calls(project)) == ["l_2", "l_sw3"]


def test_lf_adds_the_outdated_suppliers_of_a_failing_assessment(project: Project) -> None:
    plan = """
    project: {name: Sup, hypothesis: "h"}
    experiments:
      e-s:
        success_criteria: {acc: ">= 0.9"}
        sub_experiments:
          s_fit: {}
          s_other: {}
    """
    handlers = """
    from pathlib import Path
    from experiments.level import LEVEL
    CALLS = Path(__file__).resolve().parents[1] / "calls.txt"
    def s_fit(runner):
        with CALLS.open("a") as f:
            f.write("s_fit\\n")
        return {"metrics": {"acc": LEVEL}}
    def s_other(runner):
        with CALLS.open("a") as f:
            f.write("s_other\\n")
        return {"metrics": {"loss": 1.0}}
    """
    project.plan(plan)
    project.handlers("e_s", handlers)
    project.handlers("level", "LEVEL = 0.5\n")
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=2, failed=1)  # the assessment: acc = 0.5 misses
    calls(project)
    # a measured miss is re-judged, not re-run
    project.run("--lf").assert_outcomes(failed=1)
    assert calls(project) == []
    # the code that supplies acc changed since it ran: --lf runs the supplier (and only it)
    (project.path / "experiments" / "level.py").write_text("LEVEL = 0.95\n")
    project.run("--lf").assert_outcomes(passed=2)
    assert calls(project) == ["s_fit"]


# --- imported results ------------------------------------------------------------------------------


def test_an_imported_result_is_reused_until_the_sub_experiment_first_runs(project: Project) -> None:
    setup(project)
    folder = project.experiment_dir("e-r")
    folder.mkdir(parents=True)
    doc = {
        "schema": 2,
        "experiment_id": "e-r",
        "sub_experiments": {
            "r_c": {
                "status": "passed",
                "finding": "from the old runner",
                "metrics": {"w": 4.0},
                "imported": {"executed_by": "run_experiments.py", "started_at": "2025-06-01T10:00:00Z"},
                "finished_at": "2025-06-01T11:00:00Z",
            }
        },
        "stale": {},
    }
    (folder / "results.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = project.run("--experiment", "r_c", "-k", "not assessment", "--mlexp-reuse")
    result.assert_outcomes(passed=1)
    assert calls(project) == []
    result.stdout.fnmatch_lines(["*r_c*passed*(reused (imported) 2025-06-01)*"])
    entry = subs(project)["r_c"]
    assert entry["reused"] == {"from": "2025-06-01T11:00:00Z", "imported": True}
    assert "reused (imported) from the run of 2025-06-01" in project.findings("e-r")
    # until it runs under the plugin: then the imported entry is history, and reuse is by fingerprint
    run_one(project, "r_c")
    assert calls(project) == ["r_c"]
    run_one(project, "r_c", "--mlexp-reuse")
    assert calls(project) == []
    assert "imported" not in subs(project)["r_c"].get("reused", {})


# --- cost before launching ---------------------------------------------------------------------------


def test_collect_only_ends_with_the_cost_estimate(project: Project) -> None:
    plan = PLAN.replace(
        "      r_c:\n        params: {width: 4}\n",
        "      r_c:\n        params: {width: 4}\n        resources: {gpu: 'H100:2'}\n"
        "      r_d: {resources: {gpu: A100-80GB}, sweep: {k: [1, 2]}}\n",
    )
    setup(project, plan)
    project.pytester.makeini("[pytest]\nmlexp_gpu_prices = H100=3.95 A100-80GB=2.50\n")
    result = project.run("--experiment", "all", "--co", "-q")
    result.stdout.fnmatch_lines(["mlexp: estimate for 5 items (6 seeds); unknown for 5 never run"])
    # Items a plan mark skips cost nothing: counted apart, not in the estimate.
    project.plan(plan.replace("      r_c:\n", "      r_c:\n        marks: [\"skip(reason='later')\"]\n"))
    result = project.run("--experiment", "all", "--co", "-q")
    result.stdout.fnmatch_lines(
        [
            "mlexp: estimate for 4 items (5 seeds); unknown for 4 never run;"
            " not counted: 1 item(s) a mark skips"
        ]
    )
    project.plan(plan)
    # stored durations: r_a 2 seeds in 7200 s, r_c 1800 s, r_d one point 3600 s
    folder = project.experiment_dir("e-r")
    folder.mkdir(parents=True)

    def entry(duration: float, seeds: list[int]) -> dict[str, Any]:
        return {"status": "passed", "metrics": {}, "duration_s": duration, "provenance": {"seeds": seeds}}

    doc = {
        "schema": 2,
        "experiment_id": "e-r",
        "sub_experiments": {
            "r_a": entry(7200.0, [0, 1]),
            "r_c": entry(1800.0, [0]),
            "r_d": {"points": {"k_1": entry(3600.0, [0])}},
        },
        "stale": {},
    }
    (folder / "results.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    before = (folder / "results.yaml").read_bytes()
    result = project.run("--experiment", "all", "--co", "-q")
    # wall: 7200 + 1800 + 3600 + 3600 (k_2 from k_1) s = 4 h 30 min, all local; GPU-hours:
    # r_c 0.5 h x 2 H100 = 1.0, r_d 2 x 1 h A100-80GB = 2.0; cost 1.0 x 3.95 + 2.0 x 2.50 = 8.95
    result.stdout.fnmatch_lines(
        [
            "mlexp: estimate for 5 items (6 seeds): ~4 h 30 min wall, 3.00 GPU-hours "
            "(H100 1.00, A100-80GB 2.00), ~$8.95; unknown for 1 never run",
            "*6 tests collected*",
        ]
    )
    assert (folder / "results.yaml").read_bytes() == before  # looking writes nothing
    bad = project.pytester.makeini("[pytest]\nmlexp_gpu_prices = H100:3.95\n")
    assert bad.is_file()
    result = project.run("--experiment", "all", "--co")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*mlexp_gpu_prices*'H100:3.95' is not TYPE=PRICE*"])


def test_findings_key_metrics_gain_a_vs_previous_column(project: Project) -> None:
    plan = """
    project: {name: Prev, hypothesis: "h"}
    experiments:
      e-p:
        success_criteria: {acc: ">= 0.5"}
        sub_experiments:
          p_1: {params: {v: 0.6}}
    """
    project.plan(plan)
    project.handlers("e_p", "def p_1(runner):\n    return {'metrics': {'acc': runner.params['v']}}\n")
    project.run("--experiment", "all").assert_outcomes(passed=2)
    assert "vs previous" not in project.findings("e-p")  # no earlier run yet
    edit_plan(project, "v: 0.6", "v: 0.75")
    project.run("--experiment", "all").assert_outcomes(passed=2)
    text = project.findings("e-p")
    header = next(line for line in text.splitlines() if line.startswith("| Metric"))
    assert header.endswith("| vs previous |")
    row = next(line for line in text.splitlines() if line.startswith("| `acc`"))
    assert row.endswith("| +0.15 (was 0.6) |"), row


def test_fingerprints_are_the_same_under_xdist(project: Project) -> None:
    pytest.importorskip("xdist")
    setup(project)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    calls(project)
    first = {k: v["provenance"]["fingerprint"] for k, v in subs(project).items()}
    project.run("--experiment", "all", "--mlexp-reuse", "-n", "2").assert_outcomes(passed=4)
    assert calls(project) == []
    assert {k: v["provenance"]["fingerprint"] for k, v in subs(project).items()} == first
    assert re.fullmatch(r"[0-9a-f]{64}", first["r_a"])


def test_a_reused_result_is_judged_by_todays_criteria_and_works_with_dispatch_ahead(project: Project) -> None:
    plan = PLAN.replace(
        "      r_c:\n        params: {width: 4}\n",
        "      r_c:\n        params: {width: 4}\n        executor: process\n",
    )
    setup(project, plan)
    project.run("--experiment", "all").assert_outcomes(passed=4)
    assert sorted(calls(project)) == ["r_a:0", "r_a:1", "r_b", "r_c"]
    # a stricter criterion: the stored values are judged again, nothing runs (process included)
    edit_plan(project, 'acc: ">= 0.5"', 'acc: ">= 0.6"')
    result = project.run("--experiment", "all", "--mlexp-reuse")
    assert calls(project) == []
    result.stdout.fnmatch_lines(
        ["*r_a*failed*(reused *)*acc=0.55 (>= 0.6: fail)*", "*r_c*passed*(reused *)*"]
    )
    entry = subs(project)["r_a"]
    assert entry["status"] == "failed" and entry["criteria"]["acc"]["level"] == "fail"
