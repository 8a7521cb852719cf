"""Adopting an existing research project (SPEC section 10), end to end on ``tests/adopted``: a plan
of the shape a team writes before it switches (tiered experiment-level criteria only, status /
outcome / achieved annotations, a pivot block, replaced and deferred experiments, a handler
registry per package, four gates) with results.yaml files its own runner wrote."""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project, git

FIXTURE = Path(__file__).resolve().parents[1] / "adopted"
P2 = "p2-hybrid-encoder"


@pytest.fixture
def adopted(project: Project) -> Project:
    shutil.copytree(FIXTURE, project.path, dirs_exist_ok=True)
    return project


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (pytest's own caches aside) with a hash of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        # pytest's caches, and matplotlib's font cache under $HOME (pytester's HOME is the
        # project folder): not ours.
        if {".pytest_cache", "__pycache__", ".cache"} & set(rel.parts) or not path.is_file():
            continue
        out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def calls(project: Project, sub_id: str) -> int:
    path = project.path / "calls" / sub_id
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def seed_file(sub_folder: str) -> bytes:
    return (FIXTURE / "research" / "experiments" / sub_folder / "results.yaml").read_bytes()


# --- 1. looking writes nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--co", "--experiment", P2),
        ("--co", "--experiment", "all"),
        ("--co", "-q", "--experiment", "e3_8"),
        ("--help",),
        ("--version",),
        ("--fixtures", "--experiment", "all"),
        ("--markers",),
        ("--mlexp-scaffold",),
        ("--experiment", "all", "-k", "no_such_item"),  # ran no experiment item
        ("test_unit.py",),  # an ordinary test run next to the plan
        ("--experiment", "all", "--stub", "-k", "no_such_item"),
    ],
    ids=[
        "co-one",
        "co-all",
        "co-group",
        "help",
        "version",
        "fixtures",
        "markers",
        "scaffold",
        "no-item",
        "unit",
        "stub-no-item",
    ],
)
def test_looking_writes_nothing(adopted: Project, args: tuple[str, ...]) -> None:
    (adopted.path / "test_unit.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    # Leftovers of another session: a journal of one that died, and an unreadable results file.
    folder = adopted.path / "research" / "experiments"
    (folder / "p1-baseline" / ".results.999999-dead.journal").write_text(
        '{"op":"r","sub":"e_p1_2","point":null,"history":[],"entry":{"status":"passed","metrics":{}}}\n',
        encoding="utf-8",
    )
    (folder / "c4-fusion").mkdir()
    (folder / "c4-fusion" / "results.yaml").write_text(
        "schema: 2\nsub_experiments: [unclosed\n", encoding="utf-8"
    )
    before = tree(adopted.path)
    result = adopted.run(*args)
    assert result.ret in (0, 5), result.stdout.str()
    assert tree(adopted.path) == before
    assert not list(adopted.path.rglob("*.lock"))
    assert not (adopted.path / "calls" / "imported").exists()  # no handler module was imported


def test_writing_one_experiment_leaves_the_others_alone_and_uses_no_lock_files(adopted: Project) -> None:
    before = tree(adopted.path)
    adopted.run("--experiment", P2, "-k", "assessment").assert_outcomes(passed=1)
    after = tree(adopted.path)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    charts = {p for p in changed if p.startswith(f"research/experiments/{P2}/plots/")}  # matplotlib's
    assert changed - charts == {
        f"research/experiments/{P2}/results.yaml",
        f"research/experiments/{P2}/results.legacy.yaml",
        f"research/experiments/{P2}/FINDINGS.md",
        "research/FINDINGS.md",
    }
    assert not [p for p in after if p.endswith(".lock")]


# --- 2. results in the seed runner's format ---------------------------------------------------


def test_imported_results_feed_gates_and_dependencies_on_replaced_experiments(adopted: Project) -> None:
    # c2-adapter waits for gate_1 (p1-baseline, p2-hybrid-encoder: both only imported) and depends
    # on c1-vlm, which p2-hybrid-encoder replaces.
    result = adopted.run("--experiment", "c2", "-rs")
    result.assert_outcomes(passed=2, failed=2)  # e_c2_3's registry lacks it; the assessment fails
    assert "blocked" not in result.stdout.str().split("experiment summary")[1]
    assert calls(adopted, "e_c2_1") == calls(adopted, "e_c2_2") == 1
    # Read, not written: the seed runner's files are still byte for byte what it wrote.
    for exp_id in ("p1-baseline", P2, "e3-scene-graph", "c1-vlm"):
        folder = adopted.experiment_dir(exp_id)
        assert (folder / "results.yaml").read_bytes() == seed_file(exp_id)
        assert not (folder / "results.legacy.yaml").exists()
    overview = adopted.findings()
    assert f"`{P2}`: 3 result(s) imported from the previous runner (modal-3fa91c20" in overview


def test_imported_results_move_into_results_yaml_when_the_experiment_is_written(adopted: Project) -> None:
    result = adopted.run("--experiment", P2, "-k", "assessment", "--junitxml=report.xml")
    result.assert_outcomes(passed=1)
    summary = " ".join(result.stdout.str().split("experiment summary")[1].split())
    assert f"verdict {P2}: passed, proceed (completed; 2/2 criteria met; confidence high)" in summary
    assert "[3 result(s) imported: e_p2_1, e_p2_2, e_p2_3]" in summary
    folder = adopted.experiment_dir(P2)
    assert (folder / "results.legacy.yaml").read_bytes() == seed_file(P2)
    doc = adopted.results(P2)
    subs = doc["sub_experiments"]
    assert list(subs) == ["e_p2_1", "e_p2_2", "e_p2_3"]
    marker = {"executed_by": "modal-3fa91c20", "started_at": "2026-02-03T09:12:44.120931Z"}
    assert subs["e_p2_1"]["imported"] == marker
    assert subs["e_p2_3"]["imported"] == {**marker, "source_key": "e_p2_3_ablation"}
    assert subs["e_p2_1"]["status"] == "passed" and "params" not in subs["e_p2_1"]  # never stale
    assert subs["e_p2_1"]["metrics"] == {
        "spatial_iou": 0.72,
        "per_class_iou": [0.69, 0.74, 0.73],
        "probe.r2": 0.55,
    }
    assert subs["e_p2_1"]["extra"] == {"seconds": 812.5}
    assert subs["e_p2_1"]["artifacts"] == [
        f"experiments/{P2}/artifacts/iou_hist.png",
        f"experiments/{P2}/artifacts/iou_raw.json",
    ]
    assert doc["previous_runner"]["recommendation_notes"] == "Gate 1 can open."
    xml = (adopted.path / "report.xml").read_text(encoding="utf-8")
    assert '<property name="verdict.imported" value="e_p2_1, e_p2_2, e_p2_3"' in xml

    findings = adopted.findings(P2)
    # The team's hand-written file: the block goes after its first heading, with a line saying so.
    assert findings.startswith("# P2: Hybrid encoder — findings\n\n_pytest-mlexp placed its generated block")
    assert findings.index("<!-- mlexp:end -->") < findings.index("Gate 1 PASSED ✅")
    assert findings.endswith("The conv stem matters most on small objects.\n")
    assert "#### `e_p2_1`: passed — imported" in findings
    assert "where it was recorded as `e_p2_3_ablation`" in findings
    assert (
        "### What the previous runner said" in findings
        and "Recommendation: proceed (Gate 1 can open.)" in findings
    )
    assert "![iou_hist.png](artifacts/iou_hist.png)" in findings  # there: linked
    assert f"- iou_raw.json (missing: `experiments/{P2}/artifacts/iou_raw.json`)" in findings
    assert "](artifacts/iou_raw.json)" not in findings
    assert "**Description:** ViT global tokens plus a conv stem for spatial detail." in findings
    assert "**Achieved:** spatial_iou 0.72, lpips 0.21" in findings
    assert "**Future study:** larger stems; multi-scale tokens" in findings
    assert "3 result(s) imported from the previous runner" in findings  # listed for review


def test_failed_unknown_and_unfinished_entries_of_the_seed_runner(adopted: Project) -> None:
    # The original criterion misses on the imported value; the pivot's is met by what the plan
    # recorded (achieved): the verdict passes with the pivot.
    adopted.run("--experiment", "e3-scene-graph", "-k", "assessment").assert_outcomes(passed=1)
    doc = adopted.results("e3-scene-graph")
    assert doc["verdict"] == "passed_with_pivot"
    subs, stale = doc["sub_experiments"], doc["stale"]
    assert subs["e3_1"]["imported"]["source_key"] == "e3_1_sanity_check"
    assert subs["e3_1"]["status"] == "passed"  # it has no criteria of its own
    # ... and the experiment's criterion judges its value today: 0.41 misses 0.6.
    assert doc["criteria"]["edge_recall"] == {
        **doc["criteria"]["edge_recall"],
        "value": 0.41,
        "level": "miss",
    }
    assert subs["e3_2"]["status"] == "error"
    assert subs["e3_2"]["error"]["message"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "e3_8a" not in subs and stale["e3_8a"]["stale_reason"].startswith(
        "imported with status 'in_progress'"
    )
    assert stale["e3_legacy_probe"]["stale_reason"] == "not in plan"
    findings = adopted.findings("e3-scene-graph")
    assert "**Pivot E3.8: Relation tokens (`pivot_e3_8`) rationale:** Predict relations as tokens" in findings
    assert "relation vocabulary not frozen" in findings  # the previous runner's blockers, as it said


# --- the verdict table on an adopted project: pivot, recorded, accepted -------------------------


def _verdict_props(xml: Path, exp_id: str) -> dict[str, str]:
    root = ET.parse(xml).getroot()
    case = next(
        c
        for c in root.iter("testcase")
        if c.get("name") == "assessment" and exp_id in (c.get("classname") or "")
    )
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def test_pivot_recorded_and_accepted_verdicts_open_what_they_unlock(adopted: Project) -> None:
    # c4-fusion (phase 3) waits for gate_2, which e3-scene-graph holds: its original criterion
    # misses on the previous runner's value, its pivot is met by what the plan recorded. c4 also
    # depends on c3-tokens (deferred; accepted against its own criterion) and on q4-ablation
    # (met only by `achieved`). None of the three has run under pytest-mlexp.
    result = adopted.run("--experiment", "c4", "-rs")
    result.assert_outcomes(passed=2)
    assert calls(adopted, "e_c4_1") == 1
    assert adopted.results("c4-fusion")["verdict"] == "passed"

    result = adopted.run(
        "--experiment", "e3-scene-graph,c3,q4", "-k", "assessment", "-rA", "--junitxml=report.xml"
    )
    result.assert_outcomes(passed=3)
    xml = adopted.path / "report.xml"

    # The pivot: passed_with_pivot, through pivot_e3_8, the original and the pivot side by side.
    e3 = adopted.results("e3-scene-graph")
    assert (e3["verdict"], e3["opens_gates"], e3["pivot"]) == ("passed_with_pivot", True, "pivot_e3_8")
    assert (e3["criteria"]["edge_recall"]["value"], e3["criteria"]["edge_recall"]["passed"]) == (0.41, False)
    graph_f1 = e3["pivots"]["pivot_e3_8"]["criteria"]["graph_f1"]
    assert e3["pivots"]["pivot_e3_8"]["met"] is True
    assert (graph_f1["value"], graph_f1["passed"]) == (0.74, True)
    assert graph_f1["recorded"].startswith("research/research_plan.yaml:")
    assert _verdict_props(xml, "e3-scene-graph")["verdict.verdict"] == "passed_with_pivot"
    findings = adopted.findings("e3-scene-graph")
    assert "**Verdict:** passed_with_pivot via pivot_e3_8" in findings
    assert "The plan says: passed_with_pivot" in findings
    assert "This experiment has 1 pivot; the verdict passes through `pivot_e3_8`." in findings
    assert "| `edge_recall` | 0.41 from e3_1: ❌ miss | — |" in findings
    assert "| **met** | ❌ | ✅ |" in findings
    # The pivot's unfinished sub-experiment (in_progress under the previous runner) never ran.
    assert "Run what never ran (e3_8a, e3_8b, e3_8c)" in findings
    assert "changed under" not in findings

    # Recorded: every criterion met by the plan's `achieved`, nothing measured.
    q4 = adopted.results("q4-ablation")
    assert (q4["verdict"], q4["opens_gates"], q4["confidence"]) == ("recorded", True, "low")
    assert q4["criteria"]["ablation_gain"]["value"] == 0.06
    assert q4["criteria"]["ablation_gain"]["recorded"].startswith("research/research_plan.yaml:")
    assert _verdict_props(xml, "q4-ablation")["verdict.verdict"] == "recorded"
    findings = adopted.findings("q4-ablation")
    assert "**Verdict:** recorded · **Recommendation:** proceed" in findings
    assert "Recorded, not measured: 1 criterion is met only by values recorded in the plan" in findings
    assert "0.06, recorded in the plan (line " in findings
    # What it went on without is said as such, not as what "the original criteria lack"
    assert "Not measured here:" in findings and "original criteria lack" not in findings

    # Accepted: the team's decision quoted, the recorded miss kept as it is and listed for review.
    c3 = adopted.results("c3-tokens")
    assert (c3["verdict"], c3["opens_gates"], c3["success_criteria_met"]) == ("accepted", True, False)
    assert c3["criteria"]["cosine_sim_t5"]["level"] == "miss"
    props = _verdict_props(xml, "c3-tokens")
    assert props["verdict.verdict"] == "accepted"
    assert props["verdict.message"] == (
        "accepted by research lead on 2026-02-11: 0.61 is enough for the adapter work"
    )
    findings = adopted.findings("c3-tokens")
    assert "**Verdict:** accepted" in findings
    assert "Accepted by research lead on 2026-02-11: 0.61 is enough for the adapter work." in findings
    assert "The plan says: deferred" in findings

    # The overview shows the three verdicts and lists each for review.
    overview = adopted.findings()
    for row in (
        "| ✅ passed_with_pivot via pivot_e3_8 |",
        "| [`q4-ablation`](experiments/q4-ablation/FINDINGS.md) | Q4: Stem ablation | 3 | ✅ recorded |",
        "| [`c3-tokens`](experiments/c3-tokens/FINDINGS.md) | C3: Token budget | 2 | ✅ accepted |",
        "| Gate 2: Structure (`gate_2`) | e3-scene-graph | ✅ passed |",
    ):
        assert row in overview
    review = overview.split("REQUIRES HUMAN REVIEW")[1]
    assert "- `e3-scene-graph`: passed with pivot pivot_e3_8" in review
    assert "- `q4-ablation`: recorded, not measured" in review
    assert "- `c3-tokens`: experiment accepted by research lead on 2026-02-11" in review
    # The plan's own status disagrees with c4's verdict: listed with the line to fix.
    assert (
        "- `c4-fusion`: the plan says `status: not_started` but the verdict is passed: "
        "update the status at research/research_plan.yaml:" in review
    )


@pytest.mark.parametrize("drop", ["pivot", "recorded", "accepted"])
def test_without_the_pivot_the_record_or_the_decision_c4_stays_blocked(adopted: Project, drop: str) -> None:
    plan = adopted.path / "research" / "research_plan.yaml"
    text = plan.read_text(encoding="utf-8")
    line, why = {
        "pivot": ("      achieved: {graph_f1: 0.74}\n", "gate gate_2 (Gate 2: Structure)"),
        "recorded": ("    achieved: {ablation_gain: 0.06}\n", "dependency q4-ablation"),
        "accepted": (
            '    accepted: {reason: "0.61 is enough for the adapter work", by: "research lead", '
            'date: "2026-02-11"}\n',
            "dependency c3-tokens",
        ),
    }[drop]
    assert line in text
    plan.write_text(text.replace(line, ""), encoding="utf-8")
    result = adopted.run("--experiment", "c4", "-rs")
    result.assert_outcomes(skipped=2)
    assert calls(adopted, "e_c4_1") == 0
    (reason,) = {line.split(": ", 1)[1] for line in result.stdout.lines if line.startswith("SKIPPED")}
    assert reason.startswith(why), reason
    if drop == "accepted":
        # The next step names the `accepted` that unblocks (on the experiment c4 depends on), and
        # offers no criterion-level one for a criterion nothing has reported.
        steps = adopted.findings("c4-fusion").split("### Next steps")[1].split("###")[0]
        assert "record that decision on the experiment `c3-tokens` in the plan" in steps
        assert "as it stands" not in steps


# --- 3 and 4. handler registries and the runner the seed's handlers call -----------------------


@pytest.mark.parametrize("executor", ["local", "process"])
def test_registries_resolve_and_the_seed_runner_api_works(adopted: Project, executor: str) -> None:
    result = adopted.run("--experiment", P2, "--mlexp-executor", executor)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*e_p2_1: the handler returned 'config' besides metrics/finding/artifacts*"])
    subs = adopted.results(P2)["sub_experiments"]
    assert subs["e_p2_1"]["metrics"] == {"spatial_iou": 0.73, "per_class_iou": [0.7, 0.75, 0.74]}
    assert subs["e_p2_1"]["extra"] == {"config": {"stem": "conv3x3", "tokens": 196}}
    fp = {k: subs[k]["provenance"]["fingerprint"][:12] for k in ("e_p2_1", "e_p2_2")}  # a folder each
    assert subs["e_p2_1"]["artifacts"] == [
        f"artifacts/e_p2_1/{fp['e_p2_1']}/iou_hist.txt"
    ]  # get_artifact_path
    assert subs["e_p2_2"]["artifacts"] == [
        f"artifacts/e_p2_2/{fp['e_p2_2']}/lpips_per_scene.csv"
    ]  # log_artifact
    assert subs["e_p2_3"]["issues"] == [
        "the stem ablation reuses P1's data split; re-split before publishing"
    ]
    assert subs["e_p2_1"]["history"][0]["imported"]["executed_by"] == "modal-3fa91c20"
    adopted.run("--experiment", "p1", "--mlexp-executor", executor).assert_outcomes(passed=3)
    p1 = adopted.results("p1-baseline")["sub_experiments"]["e_p1_1"]
    assert p1["metrics"] == {"recon_psnr": 27.8, "probe.r2": 0.52, "probe.mae": 0.11}
    p1_fp = p1["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert p1["artifacts"] == [f"artifacts/e_p1_1/{p1_fp}/summary.json"]  # save_json_artifact
    summary = adopted.path / "research" / "artifacts" / "e_p1_1" / p1_fp / "summary.json"
    assert yaml.safe_load(summary.read_text(encoding="utf-8")) == {"epochs": 3, "psnr": [25.1, 26.9, 27.8]}
    findings = adopted.findings(P2)
    assert "**Issues:**\n\n- the stem ablation reuses P1's data split" in findings


@pytest.mark.parametrize("executor", ["local", "process"])
def test_a_registry_missing_an_id_is_a_clear_item_error(adopted: Project, executor: str) -> None:
    result = adopted.run("--experiment", "e_c2_3", "--mlexp-executor", executor)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "e_c2_3: error (handler): HandlerNotFound: handler registry "
            "experiments.adapters.registry:get_handlers (experiments/adapters/registry.py) has no handler "
            "for 'e_c2_3' (did you mean e_c2_3_lora?); it maps: e_c2_1, e_c2_2, e_c2_3_lora.",
        ]
    )
    assert calls(adopted, "e_c2_3_lora") == 0


def test_an_explicit_handler_wins_over_the_inherited_registry_and_blockers_are_recorded(
    adopted: Project,
) -> None:
    # e6-report names its handler; its dependency c5-audio is deferred, so it is blocked first.
    result = adopted.run("--experiment", "e6", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*dependency c5-audio is retired (status: Deferred): add `accepted` to c5-audio*"]
    )
    assert calls(adopted, "e6_1") == 0
    adopted.run("--experiment", "e6", "--stub").assert_outcomes(passed=2)  # --stub enforces no gate
    assert calls(adopted, "e6_1") == 1  # experiments.report:make_figures, not the registry
    # The pivot's sub-experiments, through the pivot block's own registry (PIVOT_HANDLERS).
    adopted.run("--experiment", "e3_8").assert_outcomes(passed=4)
    assert [calls(adopted, s) for s in ("e3_8a", "e3_8b", "e3_8c")] == [1, 1, 1]
    entry = adopted.results("e3-scene-graph")["sub_experiments"]["e3_8c"]
    assert entry["blockers"] == ["needs the relation vocabulary from E3.8b before a full run"]
    assert "**Blockers:**\n\n- needs the relation vocabulary" in adopted.findings("e3-scene-graph")


# --- 5. --lf and experiment-level criteria ----------------------------------------------------


def test_lf_reruns_the_suppliers_of_an_unmeasured_criterion_and_rejudges_a_measured_miss(
    adopted: Project,
) -> None:
    adopted.run("--experiment", "c2-adapter").assert_outcomes(passed=2, failed=2)
    assert (calls(adopted, "e_c2_1"), calls(adopted, "e_c2_2")) == (1, 1)
    criteria = adopted.results("c2-adapter")["criteria"]
    assert criteria["param_efficiency"]["level"] == "missing"  # e_c2_1 reported NaN
    assert criteria["merge_loss"]["level"] == "miss"  # measured, and missed
    (adopted.path / "FIXED").write_text("the parameter count is fixed\n", encoding="utf-8")
    result = adopted.run("--lf", "-v")
    result.stdout.fnmatch_lines(["*c2-adapter::e_c2_1 PASSED*", "*c2-adapter::assessment FAILED*"])
    assert not [line for line in result.stdout.lines if "::e_c2_2 " in line]
    # The fixed handler ran again; the measured miss was re-judged from its stored value only.
    assert (calls(adopted, "e_c2_1"), calls(adopted, "e_c2_2")) == (2, 1)
    criteria = adopted.results("c2-adapter")["criteria"]
    assert criteria["param_efficiency"]["value"] == 0.92 and criteria["param_efficiency"]["passed"]
    assert criteria["merge_loss"]["level"] == "miss"
    # Nothing unmeasured is left: --lf re-judges, and re-runs only the errored sub-experiment.
    adopted.run("--lf")
    assert (calls(adopted, "e_c2_1"), calls(adopted, "e_c2_2")) == (2, 1)
    assert "Attempts: 2 (this one and 1 earlier, in results.yaml)" in adopted.findings("c2-adapter")
    # The code behind the measured miss changed since it ran: now --lf re-runs its supplier.
    registry = adopted.path / "experiments" / "adapters" / "registry.py"
    registry.write_text(registry.read_text(encoding="utf-8") + "# merging reworked\n", encoding="utf-8")
    result = adopted.run("--lf", "-v")
    result.stdout.fnmatch_lines(["*c2-adapter::e_c2_2 PASSED*", "*c2-adapter::assessment FAILED*"])
    assert (calls(adopted, "e_c2_1"), calls(adopted, "e_c2_2")) == (2, 2)
    adopted.run("--lf")  # re-run on the new code: measured, missed, re-judged only
    assert (calls(adopted, "e_c2_1"), calls(adopted, "e_c2_2")) == (2, 2)


# --- 6. selection and retirement --------------------------------------------------------------


def test_short_ids_and_groups(adopted: Project) -> None:
    result = adopted.run("--experiment", "p2", "--co", "-q")
    result.stdout.fnmatch_lines([f"*{P2}::e_p2_1", f"*{P2}::assessment", "*4/* tests collected*"])
    result = adopted.run("--experiment", "e3_8", "--co", "-q")
    result.stdout.fnmatch_lines(
        [
            "*e3-scene-graph::e3_8a",
            "*e3-scene-graph::e3_8b",
            "*e3-scene-graph::e3_8c",
            "*e3-scene-graph::assessment",
            "*4/* tests collected*",
        ]
    )
    result = adopted.run("--experiment", "c3", "--co", "-q")  # deferred, but named: it runs
    result.stdout.fnmatch_lines(["*c3-tokens::c3_1", "*c3-tokens::assessment"])
    result = adopted.run("--experiment", "p9")
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [
            "*--experiment p9 matches no experiment or sub-experiment (did you mean p1?); "
            "candidates: p1-baseline, *"
        ]
    )
    assert "collected" not in result.stdout.str().replace("no tests collected", "")
    result = adopted.run("--experiment", "p9", "-n", "2")  # the xdist controller says it too
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--experiment p9 matches no experiment*(did you mean p1?)*"])
    assert "collected" not in result.stdout.str().replace("no tests collected", "")


@pytest.mark.parametrize(
    "how",
    [("--experiment", "all"), ("research/research_plan.yaml",), ("-o", "mlexp_select_by_default=true")],
    ids=["all", "plan-file", "select-by-default"],
)
def test_retired_experiments_are_left_out_of_all_with_a_line_each(
    adopted: Project, how: tuple[str, ...]
) -> None:
    result = adopted.run(*how, "--co", "-q")
    result.stdout.fnmatch_lines_random(
        [
            "mlexp: left out c1-vlm: replaced by p2-hybrid-encoder*",
            "mlexp: left out c3-tokens: status: deferred*",
            "mlexp: left out c5-audio: status: Deferred*",
            "mlexp: warning: research/research_plan.yaml:*: experiment 'p2-hybrid-encoder' replaces "
            "'c0-clip-probe', which is not in the plan*",
        ]
    )
    collected = result.stdout.str()
    assert "c1-vlm::" not in collected and "c3-tokens::" not in collected
    assert "e6-report::e6_1" in collected


# --- 7. findings for an adopted project --------------------------------------------------------


def test_overview_links_only_to_findings_that_exist_and_skip_reasons_are_short(adopted: Project) -> None:
    # P2 errored under the previous runner: c2-adapter waits for it twice (gate_1 holds it, and
    # it replaces c1-vlm, c2's dependency): one cause, named once.
    seed = adopted.experiment_dir(P2) / "results.yaml"
    seed.write_text(
        seed.read_text(encoding="utf-8").replace(
            "    e_p2_1:\n      status: completed", "    e_p2_1:\n      status: failed\n      error: CUDA OOM"
        ),
        encoding="utf-8",
    )
    result = adopted.run("--experiment", "c2", "-rs")
    result.assert_outcomes(skipped=4)
    (reason,) = {line.split(": ", 1)[1] for line in result.stdout.lines if line.startswith("SKIPPED")}
    assert reason == (
        "gate gate_1 (Gate 1: Reconstruction) and dependency c1-vlm (replaced by p2-hybrid-encoder) "
        "not passed: "
        "p2-hybrid-encoder: e_p2_1 errored: PreviousRunnerFailure: CUDA OOM"
    )
    overview = adopted.findings()
    assert "[`c2-adapter`](experiments/c2-adapter/FINDINGS.md)" in overview
    assert "`p1-baseline`" in overview and "(experiments/p1-baseline/FINDINGS.md)" not in overview
    assert "(experiments/p2-hybrid-encoder/FINDINGS.md)" in overview  # the team's own file is there


# --- stub runs ---------------------------------------------------------------------------------


def test_stub_runs_report_gates_sensibly(adopted: Project) -> None:
    result = adopted.run("--experiment", "p2", "--stub")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        [
            "gate gate_1 (Gate 1: Reconstruction): not enforced under --stub; "
            "wiring ok (p1-baseline not in this run)",
            "gate gate_2 (Gate 2: Structure): not enforced under --stub; not in this run",
        ]
    )
    result = adopted.run("--experiment", "all", "--stub")
    result.stdout.fnmatch_lines_random(
        [
            "gate gate_1 (Gate 1: Reconstruction): not enforced under --stub; wiring ok",
            "gate gate_3 (Gate 3: Adapters): not enforced under --stub; wiring broken: c2-adapter: e_c2_3",
        ]
    )
    # Stub runs never touch the real results, imported ones included.
    assert adopted.experiment_dir(P2).joinpath("results.yaml").read_bytes() == seed_file(P2)


# --- attempts and optional stopping (SPEC section 10, --lf bullet) -------------------------------

STOPPING_PLAN = """
project: {name: Stopping, hypothesis: "h"}
experiments:
  e-s:
    sub_experiments:
      es_seeds:
        seeds: 3
        params: {noise: 0.2}
        success_criteria:
          acc: {target: 0.9, acceptable: 0.8, failure: 0.5, confidence: 0.95}
"""

STOPPING_HANDLERS = """
import random
def es_seeds(runner):
    return {"metrics": {"acc": 0.85 + random.uniform(-1, 1) * runner.params["noise"]}}
"""


def test_attempts_count_unchanged_code_and_seeds_added_after_an_inconclusive_result_are_flagged(
    project: Project,
) -> None:
    project.plan(STOPPING_PLAN)
    handlers = project.handlers("handlers", STOPPING_HANDLERS)
    project.run("--experiment", "e-s")
    entry = project.results("e-s")["sub_experiments"]["es_seeds"]
    assert entry["criteria"]["acc"]["level"] == "inconclusive"
    # The same code again: two attempts, both with this code; no seed was added.
    project.run("--experiment", "e-s")
    findings = project.findings("e-s")
    assert "Attempts: 2 (this one and 1 earlier, in results.yaml)" in findings
    assert "optional stopping" not in findings
    # More seeds after the inconclusive result, and a changed handler.
    project.plan(STOPPING_PLAN.replace("seeds: 3", "seeds: 6"))
    handlers.write_text(STOPPING_HANDLERS + "# tuned\n", encoding="utf-8")
    project.run("--experiment", "e-s")
    doc = project.results("e-s")
    # A seeds change makes the earlier result stale (SPEC section 11); it is still an earlier
    # attempt of this experiment, for the count and for optional stopping.
    assert "history" not in doc["sub_experiments"]["es_seeds"]
    earlier = doc["stale"]["es_seeds"]
    assert earlier["provenance"]["seeds"] == [0, 1, 2]
    assert earlier["criteria"]["acc"]["level"] == "inconclusive"
    findings = project.findings("e-s")
    assert (
        "Attempts: 3 (this one and 2 earlier, in results.yaml; 1 with the handler's code unchanged)"
        in findings
    )
    assert (
        "⚠️ Seeds added after an inconclusive result (optional stopping): `acc` was inconclusive on "
        "3 seed(s), this attempt has 6." in findings
    )
    review = findings.split("REQUIRES HUMAN REVIEW")[1].split("###")[0]
    assert (
        "- es_seeds: seeds added after an inconclusive result (optional stopping): acc inconclusive "
        "on 3 seed(s), then run on 6" in review
    )
    assert "es_seeds: seeds added after an inconclusive result" in project.findings()


# --- git_dirty (SPEC section 10) -----------------------------------------------------------------


def _dirty(project: Project) -> bool:
    prov = project.results("e-s")["sub_experiments"]["es_seeds"]["provenance"]
    assert isinstance(prov["git_dirty"], bool)
    return bool(prov["git_dirty"])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_dirty_when_the_plan_or_the_handler_is_modified_or_untracked(project: Project) -> None:
    project.plan(STOPPING_PLAN)
    handlers = project.handlers("handlers", STOPPING_HANDLERS)
    (project.path / ".gitignore").write_text("research/experiments/\n.pytest_cache/\n__pycache__/\n")
    git(project.path, "init", "-q")
    git(project.path, "add", "-A")
    git(project.path, "commit", "-q", "-m", "the study")
    (project.path / "notes.txt").write_text("an untracked file the study does not read\n")
    project.run("--experiment", "e-s")
    assert not _dirty(project)
    git(project.path, "rm", "-q", "--cached", str(handlers.relative_to(project.path)))  # untracked
    project.run("--experiment", "e-s")
    assert _dirty(project)
    git(project.path, "add", "-A")
    git(project.path, "commit", "-q", "-m", "again")
    project.run("--experiment", "e-s")
    assert not _dirty(project)
    plan = project.path / "research" / "research_plan.yaml"
    plan.write_text(plan.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    project.run("--experiment", "e-s")
    assert _dirty(project)
