"""FINDINGS.md rendering and the marker-preserving file update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.findings import (
    BEGIN,
    END,
    PLACED_NOTE,
    cell,
    relative_artifact,
    render_experiment,
    render_project,
    update_findings_file,
)
from pytest_mlexp.model import (
    Accepted,
    Criterion,
    Experiment,
    Gate,
    Judgement,
    Loc,
    Plan,
    Project,
    Stats,
    SubExperiment,
    Unlocks,
    Verdict,
)
from tests import factories

LOC = Loc("research_plan.yaml", 1)


def make_sub(
    sub_id: str, exp_id: str = "p2", *, sweep: dict[str, tuple[Any, ...]] | None = None
) -> SubExperiment:
    return factories.sub(
        sub_id,
        exp_id,
        sweep=sweep,
        seeds=(0, 1, 2),
        seeds_given=True,
        meta={"name": f"Sub {sub_id}"},
        success_criteria=(parse_criterion("acc", ">= 0.9", loc=None, experiment_level=False),),
        loc=LOC,
    )


LPIPS = parse_criterion(
    "lpips",
    {"target": 0.25, "acceptable": 0.35, "failure": 0.45, "direction": "lower"},
    loc=None,
    experiment_level=True,
)
IOU = parse_criterion(
    "spatial_iou",
    {"target": 0.7, "acceptable": 0.6, "failure": 0.5, "direction": "higher"},
    loc=None,
    experiment_level=True,
)


def make_exp(exp_id: str = "p2", **kw: Any) -> Experiment:
    subs = kw.pop("subs", (make_sub("e_p2_1"), make_sub("e_p2_2", sweep={"h": (16, 32)}), make_sub("e_p2_3")))
    fields: dict[str, Any] = dict(
        name="P2: Hybrid | Encoder", phase=1, success_criteria=(LPIPS, IOU), loc=LOC
    )
    fields.update(kw)
    return factories.experiment(exp_id, subs, **fields)


def judgement(metric: str, value: Any, level: str, passed: bool, **kw: Any) -> Judgement:
    base: dict[str, Any] = dict(
        metric=metric,
        value=value,
        level=level,
        passed=passed,
        borderline=False,
        rule="<= 0.35 (target 0.25)",
        message=f"{metric} = {value}: {level}",
    )
    base.update(kw)
    return Judgement(**base)


def make_verdict(**kw: Any) -> Verdict:
    base: dict[str, Any] = dict(
        experiment_id="p2",
        status="failed",
        criteria=(
            judgement("lpips", 0.162, "target", True, source="e_p2_3"),
            judgement(
                "spatial_iou",
                0.61,
                "inconclusive",
                False,
                rule=">= 0.6 (target 0.7)",
                source="e_p2_1",
                seeds_needed=7,
                stats=Stats(0.61, 0.02, 3, (0.56, 0.66)),
            ),
        ),
        success_criteria_met=False,
        confidence="medium",
        recommendation="investigate",
        passed=False,
        problems=("e_p2_2 errored", "spatial_iou is inconclusive"),
        review=("spatial_iou = 0.61 is inconclusive (95% CI [0.56, 0.66] straddles 0.6)",),
    )
    base.update(kw)
    return Verdict(**base)


def make_doc() -> dict[str, Any]:
    return {
        "schema": 1,
        "experiment_id": "p2",
        "updated_at": "2026-11-27T18:00:00Z",
        "sub_experiments": {
            "e_p2_1": {
                "status": "passed",
                "finding": "IoU | reaches 0.61",
                "metrics": {"spatial_iou": 0.61, "acc": 0.95},
                "per_seed": {0: {"spatial_iou": 0.6}, 1: {"spatial_iou": 0.62}},
                "stats": {"spatial_iou": {"mean": 0.61, "std": 0.02, "n": 3, "ci95": [0.56, 0.66]}},
                "criteria": {
                    "acc": {
                        "value": 0.95,
                        "rule": ">= 0.9",
                        "level": "pass",
                        "passed": True,
                        "borderline": True,
                    }
                },
                "artifacts": [
                    "artifacts/e_p2_1/probe.png",
                    "artifacts/e_p2_1/model.pt",
                    "artifacts/e_p2_1/my plot.svg",
                ],
                "executor": "modal",
                "duration_s": 812.4,
                "wandb": {"url": "https://wandb.ai/team/proj/runs/abc", "run_path": "team/proj/abc"},
                "provenance": {
                    "git_commit": "0123456789abcdef",
                    "git_dirty": False,
                    "handler_sha256": "f" * 64,
                    "params_sha256": "e" * 64,
                    "python": "3.11.7",
                    "packages": {"torch": "2.5.1"},
                },
                "finished_at": "2026-11-27T17:00:00Z",
            },
            "e_p2_2": {
                "status": "error",
                "selected": "h_32",
                "points": {
                    "h_16": {"status": "passed", "metrics": {"acc": 0.91}},
                    "h_32": {
                        "status": "error",
                        "metrics": {},
                        "error": {
                            "kind": "handler",
                            "type": "RuntimeError",
                            "message": "CUDA out of memory\nmore",
                        },
                        "wandb": {
                            "offline_dir": "wandb/offline-run-1",
                            "sync": "wandb sync wandb/offline-run-1",
                        },
                    },
                },
                "error": {
                    "kind": "handler",
                    "type": "RuntimeError",
                    "message": "CUDA out of memory\nTried to allocate",
                },
                "wandb": {"offline_dir": "wandb/offline-run-1", "sync": "wandb sync wandb/offline-run-1"},
            },
        },
        "stale": {},
    }


def fake_sentence(j: Judgement, c: Criterion) -> str:
    return f"SENTENCE {c.metric} {j.value}."


def render(**kw: Any) -> str:
    return render_experiment(make_exp(), make_doc(), make_verdict(), sentence=fake_sentence, **kw)


# --- render_experiment ------------------------------------------------------------------------


def test_status_line_and_key_metrics_table() -> None:
    text = render()
    assert "## Results: P2: Hybrid | Encoder (`p2`)" in text
    assert (
        "**Verdict:** failed · **Recommendation:** investigate · **Status:** failed · "
        "**Confidence:** medium · **Criteria met:** 1/2" in text
    )
    assert "| Metric | Value | Target | Acceptable | Failure | Result |" in text
    assert "| `lpips` | 0.162 from e_p2_3 | 0.25 | 0.35 | 0.45 | ✅ target |" in text
    # the spread of the seeds reads as such: std, never a bare "±" that looks like an interval
    assert "| `spatial_iou` | 0.61 (std 0.02, n=3) from e_p2_1 | 0.7 | 0.6 | 0.5 | ⚠️ inconclusive |" in text
    assert "±" not in text
    assert "**1/2 criteria met.**" in text
    assert "Last updated: 2026-11-27T18:00:00Z" in text


def test_one_sentence_per_criterion_with_its_source() -> None:
    text = render()
    assert "- SENTENCE lpips 0.162 (from e_p2_3)." in text
    assert "- SENTENCE spatial_iou 0.61 (from e_p2_1)." in text
    # sub-level criteria are judged again from the plan and said too
    assert "SENTENCE acc 0.95." in text


def test_real_criteria_sentences_are_used_by_default() -> None:
    text = render_experiment(make_exp(), make_doc(), make_verdict())
    assert "from e_p2_3" in text
    assert "SENTENCE" not in text


def test_a_failing_sentence_function_falls_back() -> None:
    def broken(j: Judgement, c: Criterion) -> str:
        raise RuntimeError("bug")

    text = render_experiment(make_exp(), make_doc(), make_verdict(), sentence=broken)
    assert "lpips = 0.162: target (from e_p2_3)." in text


def test_sub_experiment_sections() -> None:
    text = render()
    assert "#### `e_p2_1`: passed (Sub e_p2_1)" in text
    assert "**Finding:** IoU | reaches 0.61" in text
    assert "| `spatial_iou` | 0.61 | std 0.02, n=3, 95% CI [0.56, 0.66] |" in text
    assert "Ran: executor `modal`, 812.4 s, finished 2026-11-27T17:00:00Z." in text
    assert "W&B run: [team/proj/abc](https://wandb.ai/team/proj/runs/abc)" in text
    assert "**Error (handler):** `RuntimeError: CUDA out of memory`" in text
    assert "Tried to allocate" not in text  # errors in short: the first line
    assert "W&B (offline): `wandb/offline-run-1`; upload with `wandb sync wandb/offline-run-1`" in text
    assert "#### `e_p2_3`: not run" in text


def test_images_inline_with_paths_relative_to_the_findings_file() -> None:
    text = render()
    assert "![probe.png](../../artifacts/e_p2_1/probe.png)" in text
    assert "![my plot.svg](<../../artifacts/e_p2_1/my plot.svg>)" in text
    assert "- [model.pt](../../artifacts/e_p2_1/model.pt)" in text


def test_relative_artifact_paths() -> None:
    assert relative_artifact("artifacts/a/x.png", "experiments/p2") == "../../artifacts/a/x.png"
    assert relative_artifact("experiments/p2/artifacts/x.png", "experiments/p2") == "artifacts/x.png"
    assert relative_artifact("/vol/x.png", "experiments/p2") == "/vol/x.png"
    assert relative_artifact("https://h/x.png", "experiments/p2") == "https://h/x.png"


def test_sweep_points_table_marks_the_selected_point() -> None:
    text = render()
    assert "Sweep (2 point(s)):" in text
    assert "| Point | Status | `acc` |" in text
    # selected again from the stored points by the current plan (h_32 errored: not a candidate)
    assert "| **h_16** (selected) | passed | 0.91 |" in text
    assert "| h_32 | error | — |" in text


def test_large_sweeps_are_capped_but_keep_the_selected_point() -> None:
    sweep = make_sub("e_p2_2", sweep={"h": tuple(range(120))})
    exp = make_exp(subs=(make_sub("e_p2_1"), sweep, make_sub("e_p2_3")))
    doc = make_doc()
    points = {f"h_{i}": {"status": "passed", "metrics": {"acc": (i % 100) / 100}} for i in range(120)}
    doc["sub_experiments"]["e_p2_2"] = {"status": "passed", "selected": "h_3", "points": points}
    text = render_experiment(exp, doc, make_verdict(), sentence=fake_sentence)
    assert "| **h_99** (selected) | passed | 0.99 |" in text
    assert "| h_60 |" not in text
    assert "… and 69 more point(s) in results.yaml." in text


def test_sweep_table_lists_new_and_stale_points() -> None:
    # A value added to the sweep is listed as not run; a point whose params changed is shown
    # stale with its reason, not lost.
    sweep = make_sub("e_p2_2", sweep={"h": (16, 32, 64)})
    exp = make_exp(subs=(make_sub("e_p2_1"), sweep, make_sub("e_p2_3")))
    doc = make_doc()
    doc["sub_experiments"]["e_p2_2"] = {"points": {"h_16": {"status": "passed", "metrics": {"acc": 0.95}}}}
    doc["stale"] = {
        "e_p2_2[h_32]": {"status": "passed", "metrics": {"acc": 0.97}, "stale_reason": "params changed: lr"}
    }
    text = render_experiment(exp, doc, make_verdict(), sentence=fake_sentence)
    assert "#### `e_p2_2`: passed (Sub e_p2_2)" in text  # not "not run" above points that passed
    assert "Sweep (3 point(s), 2 not run yet):" in text
    assert "| **h_16** (selected) | passed | 0.95 |" in text
    assert "| h_64 | not run | — |" in text
    assert "| h_32 | stale (params changed: lr) | 0.97 |" in text


def test_a_stale_result_is_shown_with_its_reason() -> None:
    doc = make_doc()
    doc["stale"] = {
        "e_p2_3": {
            "status": "passed",
            "metrics": {"acc": 0.93},
            "finished_at": "2026-11-20T10:00:00Z",
            "stale_reason": "params changed: lr 0.01 → 0.1",
        }
    }
    text = render_experiment(make_exp(), doc, make_verdict(), sentence=fake_sentence)
    section = text.split("#### `e_p2_3`", 1)[1]
    assert section.startswith(": stale (Sub e_p2_3)")
    assert "(params changed: lr 0.01 → 0.1): it counts as never run" in section
    assert "Stale result: finished 2026-11-20T10:00:00Z." in section
    assert "| `acc` | 0.93 | — |" in section
    assert "No result recorded yet" not in section


def test_review_block_lists_the_verdicts_review_lines() -> None:
    text = render()
    assert "REQUIRES HUMAN REVIEW" in text
    assert "- spatial_iou = 0.61 is inconclusive (95% CI [0.56, 0.66] straddles 0.6)" in text
    clean = render_experiment(make_exp(), make_doc(), make_verdict(review=()), sentence=fake_sentence)
    assert "REQUIRES HUMAN REVIEW" not in clean


def test_next_steps() -> None:
    text = render()
    steps = text.split("### Next steps", 1)[1].split("###", 1)[0]
    assert "Fix and re-run what errored (e_p2_2): `pytest --experiment e_p2_2`." in steps
    assert "Run what never ran (e_p2_3): `pytest --experiment p2`." in steps
    assert "about 7 seeds would settle it (set `seeds: 7` on `e_p2_1`)" in steps
    assert 'accepted: {reason: "...", by: "<name>", date: "YYYY-MM-DD"}' in steps


def test_next_steps_for_a_pivot_name_what_must_be_beaten() -> None:
    verdict = make_verdict(
        criteria=(judgement("lpips", 0.5, "failure", False, source="e_p2_3"),),
        recommendation="pivot",
        review=(),
    )
    text = render_experiment(make_exp(), make_doc(), verdict, sentence=fake_sentence)
    assert "must beat: `lpips` <= 0.35 (target 0.25) (now 0.5)" in text
    assert "a pivot block under `p2`" in text


def test_several_errors_rerun_with_lf_and_blockers_are_shown() -> None:
    doc = make_doc()
    doc["sub_experiments"]["e_p2_1"]["status"] = "infra_error"
    text = render_experiment(
        make_exp(), doc, make_verdict(), sentence=fake_sentence, blockers=("gate_1 not passed: p1 failed",)
    )
    assert "`pytest --experiment p2 --lf`" in text
    assert "**Blocked by:**\n\n- gate_1 not passed: p1 failed" in text
    assert "Unblock it" in text


def test_passing_experiment_says_proceed() -> None:
    exp = make_exp(subs=(make_sub("e_p2_1"),))
    doc = make_doc()
    del doc["sub_experiments"]["e_p2_2"]
    doc["sub_experiments"]["e_p2_1"]["criteria"]["acc"]["borderline"] = False
    verdict = make_verdict(
        status="completed",
        criteria=(judgement("lpips", 0.162, "target", True),),
        recommendation="proceed",
        confidence="high",
        passed=True,
        verdict="passed",
        problems=(),
        review=(),
        success_criteria_met=True,
    )
    text = render_experiment(exp, doc, verdict, sentence=fake_sentence)
    assert "Every criterion is met: proceed" in text
    assert "Every sub-experiment passed and every success criterion is met." in text


def test_accepted_and_borderline_results_show() -> None:
    verdict = make_verdict(
        criteria=(
            judgement("lpips", 0.34, "acceptable", True, borderline=True),
            judgement(
                "spatial_iou", 0.55, "accepted", True, accepted=Accepted("good enough", "ana", "2026-11-01")
            ),
        )
    )
    text = render_experiment(make_exp(), make_doc(), verdict, sentence=fake_sentence)
    assert "⚠️ acceptable (borderline)" in text
    assert "✅ accepted (review)" in text


def test_provenance_table() -> None:
    text = render()
    assert "| Sub-experiment | Git commit | Dirty | Python | Packages | Handler sha256 |" in text
    assert "| `e_p2_1` | 0123456789ab | false | 3.11.7 | torch 2.5.1 | ffffffffffff |" in text


def test_output_is_deterministic_and_scrubbed() -> None:
    assert render() == render()
    text = render(scrub=lambda s: s.replace("team/proj", "***"))
    assert "team/proj" not in text and "***" in text


def test_table_cells_escape_pipes() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    doc = make_doc()
    doc["sub_experiments"]["e_p2_2"]["points"]["h_16"]["status"] = "pass|ed"
    text = render_experiment(make_exp(), doc, make_verdict(), sentence=fake_sentence)
    assert "| h_16 | pass\\|ed | 0.91 |" in text


def test_empty_doc_renders() -> None:
    verdict = make_verdict(criteria=(), problems=(), review=(), status="not_started")
    text = render_experiment(make_exp(), {}, verdict, sentence=fake_sentence)
    assert "3 sub-experiment(s): 3 not run." in text
    assert "Run what never ran (e_p2_1, e_p2_2, e_p2_3)" in text


# --- update_findings_file ---------------------------------------------------------------------


def test_new_file_gets_title_block_and_researcher_sections(tmp_path: Path) -> None:
    path = tmp_path / "experiments" / "p2" / "FINDINGS.md"
    update_findings_file(path, "generated\n", title="P2 — findings")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# P2 — findings\n\n{BEGIN}\ngenerated\n{END}\n\n## Analysis\n")
    for heading in (
        "### What worked",
        "### What didn't",
        "### What was unexpected",
        "## Implications for the hypothesis",
    ):
        assert heading in text


def test_outside_text_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "FINDINGS.md"
    before = "# Title é  \r\n\r\nMy notes with trailing space   \r\n".encode()
    after = "\r\n## Analysis\r\n\tIt worked ünïcode\u2028 \xff-free".encode() + b"\xff\xfe raw bytes"
    path.write_bytes(before + f"{BEGIN}\r\nold\r\n{END}".encode() + after)
    update_findings_file(path, "new line 1\nnew line 2\n", title="ignored")
    data = path.read_bytes()
    assert data.startswith(before)
    assert data.endswith(after)
    assert f"{BEGIN}\r\nnew line 1\r\nnew line 2\r\n{END}".encode() in data
    update_findings_file(path, "new line 1\nnew line 2\n", title="ignored")
    assert path.read_bytes() == data


def test_unchanged_content_is_not_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "FINDINGS.md"
    update_findings_file(path, "block", title="T")
    import pytest_mlexp.findings.file as findings

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rewrote an unchanged file")

    monkeypatch.setattr(findings, "atomic_write_bytes", fail)
    update_findings_file(path, "block", title="T")


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("", f"{BEGIN}\nBLOCK\n{END}\n"),
        # No heading: the block goes on top, the notes follow unchanged.
        ("notes", f"{PLACED_NOTE}\n\n{BEGIN}\nBLOCK\n{END}\n\nnotes"),
        ("notes\n\n", f"{PLACED_NOTE}\n\n{BEGIN}\nBLOCK\n{END}\n\nnotes\n\n"),
        # A hand-written file: right after its first heading, never appended below the notes.
        (
            "# P2 findings\n\nGate 1 PASSED ✅\n\n## More\n",
            f"# P2 findings\n\n{PLACED_NOTE}\n\n{BEGIN}\nBLOCK\n{END}\n\nGate 1 PASSED ✅\n\n## More\n",
        ),
        ("# Only a title", f"# Only a title\n\n{PLACED_NOTE}\n\n{BEGIN}\nBLOCK\n{END}\n"),
        (
            "```\n# not a heading\n```\n## Real\ntext\n",
            f"```\n# not a heading\n```\n## Real\n\n{PLACED_NOTE}\n\n{BEGIN}\nBLOCK\n{END}\ntext\n",
        ),
        (
            "intro\r\n# T\r\nbody\r\n",
            f"intro\r\n# T\r\n\r\n{PLACED_NOTE}\r\n\r\n{BEGIN}\r\nBLOCK\r\n{END}\r\nbody\r\n",
        ),
    ],
    ids=["empty", "no-heading", "no-heading-blank-lines", "hand-written", "title-only", "fenced", "crlf"],
)
def test_file_without_markers_gets_the_block_after_its_first_heading(
    tmp_path: Path, existing: str, expected: str
) -> None:
    path = tmp_path / "FINDINGS.md"
    path.write_bytes(existing.encode())
    update_findings_file(path, "BLOCK", title="T")
    assert path.read_bytes().decode() == expected
    update_findings_file(path, "AGAIN", title="T")  # from then on, only the block changes
    assert path.read_bytes().decode() == expected.replace("BLOCK", "AGAIN")


def test_stray_markers_never_eat_the_researchers_text(tmp_path: Path) -> None:
    path = tmp_path / "FINDINGS.md"
    # An END whose BEGIN was deleted, then a real block, then a BEGIN left alone in the notes.
    text = f"intro {END} keep\n{BEGIN}\nold\n{END}\nnotes {BEGIN} keep too\n"
    path.write_text(text, encoding="utf-8")
    update_findings_file(path, "new", title="T")
    assert (
        path.read_text(encoding="utf-8") == f"intro {END} keep\n{BEGIN}\nnew\n{END}\nnotes {BEGIN} keep too\n"
    )


def test_no_temp_files_left(tmp_path: Path) -> None:
    path = tmp_path / "FINDINGS.md"
    update_findings_file(path, "a", title="T")
    update_findings_file(path, "b", title="T")
    assert [p.name for p in tmp_path.iterdir()] == ["FINDINGS.md"]


# --- render_project ---------------------------------------------------------------------------


def make_plan(tmp_path: Path) -> Plan:
    p1 = make_exp("p1", name="P1: Baselines", subs=(make_sub("e_p1_1", "p1"),), retired=True)
    p2 = make_exp("p2", phase=2, replaces=("p1",))
    gate = Gate(
        id="gate_1",
        name="Gate 1: Reconstruction",
        experiments=("p1",),
        unlocks=Unlocks(kind="phase", phase=2, text="Phase 2 (Adapter | Training)"),
        accepted=None,
        meta={},
        loc=LOC,
    )
    gate2 = Gate(
        id="gate_2",
        name="Gate 2",
        experiments=("p2",),
        unlocks=Unlocks(kind="text", text="paper"),
        accepted=Accepted("deadline", "ana", "2026-11-01"),
        meta={},
        loc=LOC,
    )
    return Plan(
        path=tmp_path / "research" / "research_plan.yaml",
        project=Project("Foresight", "Hybrid encoders reconstruct better", None, {}),
        experiments=(p1, p2),
        gates=(gate, gate2),
        modal={},
        meta={},
    )


def test_project_overview(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    docs = {"p2": make_doc(), "p1": {}}
    verdicts = {"p2": make_verdict()}
    gates = [(plan.gates[0], False, "p1 not started"), (plan.gates[1], False, "")]
    text = render_project(plan, docs, verdicts, gates)
    assert "**Hypothesis:** Hybrid encoders reconstruct better" in text
    assert "| Gate | Experiments | Status | Unlocks |" in text
    assert (
        "| Gate 1: Reconstruction (`gate_1`) | p1 | ❌ not passed: p1 not started "
        "| Phase 2 (Adapter \\| Training) |" in text
    )
    assert "| Gate 2 (`gate_2`) | p2 | ✅ accepted (deadline) | paper |" in text
    assert (
        "| Experiment | Name | Phase | Verdict | Status | Criteria met | Key numbers | Recommendation "
        "| Last run |" in text
    )
    assert (
        "| [`p1`](experiments/p1/FINDINGS.md) | P1: Baselines (retired) (replaced by `p2`) "
        "| 1 | — | not_started | — | — | — | — |" in text
    )
    assert (
        "| [`p2`](experiments/p2/FINDINGS.md) | P2: Hybrid \\| Encoder | 2 "
        "| ⛔ blocked; last verdict: failed "
        "| failed | 1/2 "
        "| lpips 0.162 (target); spatial_iou 0.61 (inconclusive) | investigate | 2026-11-27T17:00:00Z |"
        in text
    )
    # why each experiment that does not pass fails, in a line
    assert "### Why the others do not pass yet" in text
    assert "- `p2` (failed, blocked): e_p2_2 errored; spatial_iou is inconclusive" in text
    assert "REQUIRES HUMAN REVIEW" in text and "- `p2`: spatial_iou = 0.61 is inconclusive" in text
    assert "- [P2: Hybrid | Encoder](experiments/p2/FINDINGS.md)" in text
    assert render_project(plan, docs, verdicts, gates) == text


def test_project_overview_written_between_markers(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    path = plan.root / "FINDINGS.md"
    update_findings_file(path, render_project(plan, {}, {}, []), title="Foresight — research findings")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Foresight — research findings\n\n" + BEGIN)
    assert END in text and "### Gates" not in text


def test_next_steps_cover_sub_level_borderline_and_inconclusive() -> None:
    from pytest_mlexp.findings.nextsteps import _next_steps
    from pytest_mlexp.model import Verdict

    criteria = (
        parse_criterion("acc", {"min": 0.9, "borderline": 0.01}, loc=None, experiment_level=False),
        parse_criterion("f1", {"min": 0.5, "confidence": 0.95}, loc=None, experiment_level=False),
    )
    sub = factories.sub("s1", "e", seeds=(0, 1), seeds_given=True, success_criteria=criteria)
    exp = factories.experiment("e", (sub,), name="E")
    verdict = Verdict(
        experiment_id="e",
        status="completed",
        criteria=(),
        success_criteria_met=True,
        confidence="high",
        recommendation="investigate",
        passed=True,
        problems=(),
        review=("s1: acc borderline",),
    )
    # judged from the plan's criteria, not from what results.yaml stored beside the values
    entries = {
        "s1": {
            "status": "passed",
            "metrics": {"acc": 0.905, "f1": 0.55},
            "per_seed": {0: {"acc": 0.905, "f1": 0.3}, 1: {"acc": 0.905, "f1": 0.8}},
            "criteria": {"acc": {"level": "miss", "passed": False}},
        }
    }
    steps = _next_steps(exp, entries, verdict, ())
    assert any("`s1`: `acc` passed within the borderline margin" in s for s in steps)
    assert any("`s1`: `f1` is inconclusive: about" in s for s in steps)


# --- markers inside fenced code blocks are text ---------------------------------------------------

REAL = f"{BEGIN}\nold\n{END}"
EXAMPLE = f"{BEGIN}\nan example a researcher pasted\n{END}"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (f"# Notes\n\n```markdown\n{EXAMPLE}\n```\n\n", "\n"),  # an example above the real block
        ("# Notes\n\n", f"\n\n```\n{EXAMPLE}\n```\n"),  # ...and below it
        (f"~~~\n{EXAMPLE}\n~~~\n\n", "\n"),  # tildes
        (f"````md\n```\n{EXAMPLE}\n```\n````\n\n", "\n"),  # a longer fence holding a shorter one
        (f"   ```\n{EXAMPLE}\n   ```\n\n", "\n"),  # indented up to 3 spaces
        (f"~~~~~\n{EXAMPLE}\n~~~\nstill code: {END}\n~~~~~~\n\n", "\n"),  # closed only by >= 5 tildes
        (f"```\r\n{EXAMPLE}\r\n```\r\n\r\n".replace("\n", "\r\n").replace("\r\r", "\r"), "\r\n"),  # CRLF
        (f"> quoted\n\n```python\nx = '{BEGIN}'\n```\n", "\n```\nunclosed fence: {END}\n"),
    ],
    ids=["above", "below", "tildes", "long-fence", "indented", "tilde-lengths", "crlf", "unclosed"],
)
def test_markers_inside_fenced_code_are_text(tmp_path: Path, before: str, after: str) -> None:
    path = tmp_path / "FINDINGS.md"
    newline = "\r\n" if "\r\n" in before else "\n"
    path.write_bytes((before + REAL.replace("\n", newline) + after).encode())
    update_findings_file(path, "new\n", title="T")
    generated = f"{BEGIN}{newline}new{newline}{END}"
    assert path.read_bytes() == (before + generated + after).encode()


def test_only_fenced_markers_means_no_block_yet(tmp_path: Path) -> None:
    path = tmp_path / "FINDINGS.md"
    text = f"# Notes\n\n```\n{EXAMPLE}\n```\n"
    path.write_text(text, encoding="utf-8")
    update_findings_file(path, "gen", title="T")
    fence = f"```\n{EXAMPLE}\n```\n"
    placed = f"# Notes\n\n{PLACED_NOTE}\n\n{BEGIN}\ngen\n{END}\n\n{fence}"
    assert path.read_text(encoding="utf-8") == placed  # after the heading, the example kept
    update_findings_file(path, "gen 2", title="T")  # found again next time: not placed twice
    assert path.read_text(encoding="utf-8") == placed.replace("\ngen\n", "\ngen 2\n")


def test_a_four_space_indented_fence_is_not_a_fence(tmp_path: Path) -> None:
    """(CommonMark: four spaces make an indented code line, not a fence that hides markers.)"""
    path = tmp_path / "FINDINGS.md"
    path.write_text(f"    ```\n{REAL}\n    ```\n", encoding="utf-8")
    update_findings_file(path, "new", title="T")
    assert path.read_text(encoding="utf-8") == f"    ```\n{BEGIN}\nnew\n{END}\n    ```\n"


def _odd_layouts() -> list[tuple[str, bytes]]:
    r, b, e = REAL.encode(), BEGIN.encode(), END.encode()
    return [
        ("crlf", b"# T\r\n\r\n" + REAL.replace("\n", "\r\n").encode() + b"\r\nnotes\r\n"),
        ("bom", b"\xef\xbb\xbf# T\n\n" + r + b"\nnotes\n"),
        ("bom-crlf", b"\xef\xbb\xbf# T\r\n" + REAL.replace("\n", "\r\n").encode() + b"\r\n"),
        ("no-markers", b"# Only notes\n\nsome text\n"),
        ("no-trailing-newline", b"# T\n\nnotes without newline"),
        ("empty", b""),
        ("only-begin", b"notes " + b + b" and more\n"),
        ("only-end", b"notes " + e + b" and more\n"),
        ("reversed", b"a " + e + b"\nmiddle\n" + b + b" z\n"),
        ("duplicated", r + b"\nbetween\n" + r + b"\nafter\n"),
        ("nested-begin", b + b"\n" + r + b"\ntail\n"),
        ("mid-line", b"text " + b + b"old" + e + b" text\n"),
        ("mixed-newlines", b"a\r\nb\n" + r + b"\nc\r\n"),
        ("latin1-bytes", b"caf\xe9 notes\n" + r + b"\n\xff\xfe\n"),
        ("tabs-and-spaces", b"\t# T  \n  \n" + r + b"\n\t \n"),
        ("unicode-separators", "a\u2028b\u0085c\n".encode() + r + b"\n"),
        ("large", (b"line of researcher text\n" * 100_000) + r + b"\n" + b"tail\n" * 1000),
    ]


@pytest.mark.parametrize(("name", "data"), _odd_layouts(), ids=[n for n, _ in _odd_layouts()])
def test_odd_layouts_keep_every_byte_outside_the_block(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / "FINDINGS.md"
    path.write_bytes(data)
    update_findings_file(path, "new\n", title="T")
    once = path.read_bytes()
    generated = f"{BEGIN}\nnew\n{END}".encode()
    begin = once.replace(b"\r\n", b"\n").find(generated)
    # The block's own markers: the first whole block of the file, or the one appended.
    text = data.decode("utf-8", "surrogateescape")
    from pytest_mlexp.findings.file import _find_block

    span = _find_block(text)
    if span is None:
        # Placed as one piece (after the first heading, or on top): every byte that was there
        # is kept, in order, around it.
        k = next((i for i, (a, b) in enumerate(zip(once, data, strict=False)) if a != b), len(data))
        assert once.endswith(data[k:])
        assert not data or PLACED_NOTE.encode() in once[k : len(once) - len(data) + k]
    else:
        head = text[: span[0]].encode("utf-8", "surrogateescape")
        tail = text[span[1] :].encode("utf-8", "surrogateescape")
        assert once.startswith(head) and once.endswith(tail)
        assert (
            once[len(head) : len(once) - len(tail)].replace(b"\r\n", b"\n") == f"{BEGIN}\nnew\n{END}".encode()
        )
    assert begin >= 0
    update_findings_file(path, "new\n", title="T")
    assert path.read_bytes() == once  # stable: the same block is found again
