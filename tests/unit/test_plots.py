"""Learning-curve files and chart specs: the pure parts (curves.py, plots.py, the gate graph)."""

from __future__ import annotations

import dataclasses
import itertools
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import curves
from pytest_mlexp.blocking import gate_status
from pytest_mlexp.findings import mermaid_graph, verdict_class
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.plots import bands, digest, png_digest, specs_for
from pytest_mlexp.records import SeedOutcome
from pytest_mlexp.verdict import experiment_verdict


def test_downsample_keeps_first_last_and_at_most_the_limit() -> None:
    steps = list(range(10_000))
    values = [float(s) for s in steps]
    got_steps, got_values = curves.downsample(steps, values, 1000)
    assert len(got_steps) == len(got_values) == 1000
    assert got_steps[0] == 0 and got_steps[-1] == 9_999 and got_steps == sorted(set(got_steps))
    gaps = {b - a for a, b in itertools.pairwise(got_steps)}
    assert gaps <= {10, 11}  # evenly spaced
    assert curves.downsample([1, 2], [1.0, 2.0], 1000) == ([1, 2], [1.0, 2.0])


def _outcome(seed: int, history: list[dict[str, Any]]) -> SeedOutcome:
    ok = SeedOutcome(seed, "ok", result={"metrics": {}, "finding": None, "artifacts": []})
    return ok.replace(history=history)


def test_curves_from_outcomes_keep_numbers_per_seed() -> None:
    history = [
        {"step": 0, "metrics": {"loss": 1.0, "note": "text", "flag": True, "bad": float("nan")}},
        {"step": 1, "metrics": {"loss": 0.5, "acc": 0.7}},
    ]
    got = curves.from_outcomes([_outcome(0, history), _outcome(1, [])])
    assert got == {
        "0": {"loss": {"steps": [0, 1], "values": [1.0, 0.5]}, "acc": {"steps": [1], "values": [0.7]}}
    }
    assert curves.from_outcomes([_outcome(0, [{"step": 0, "metrics": {"note": "x"}}])]) is None


def test_curve_files_round_trip_and_refuse_other_content(tmp_path: Path) -> None:
    path = curves.curve_path(tmp_path, "e", "s", "w_8")
    assert path == tmp_path / "experiments" / "e" / "curves" / "s[w_8].json"
    curves.write(path, "s", "w_8", {"0": {"loss": {"steps": [0], "values": [1.0]}}})
    assert curves.read(path) == {
        "sub": "s",
        "point": "w_8",
        "seeds": {"0": {"loss": {"steps": [0], "values": [1.0]}}},
    }
    path.write_text("[1, 2]")
    assert curves.read(path) is None
    curves.remove(path)
    curves.remove(path)  # already gone: fine
    assert curves.read(path) is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"target": 0.9, "acceptable": 0.8, "failure": 0.6},
            [[None, 0.6, "failure"], [0.6, 0.8, "miss"], [0.8, 0.9, "acceptable"], [0.9, None, "target"]],
        ),
        (
            {"target": 0.01, "acceptable": 0.02, "failure": 0.05, "direction": "lower"},
            [
                [None, 0.01, "target"],
                [0.01, 0.02, "acceptable"],
                [0.02, 0.05, "miss"],
                [0.05, None, "failure"],
            ],
        ),
        (">= 0.5", [[None, 0.5, "fail"], [0.5, None, "pass"]]),
        ("< 3", [[None, 3.0, "pass"], [3.0, None, "fail"]]),
        ("in [0.2, 0.4]", [[None, 0.2, "fail"], [0.2, 0.4, "pass"], [0.4, None, "fail"]]),
        ("== 1", []),
    ],
    ids=["tiered-higher", "tiered-lower", "at-least", "below", "range", "equals"],
)
def test_bands_of_each_kind_of_criterion(spec: Any, expected: list[list[Any]]) -> None:
    plan = parse_plan_text(
        "project: {name: P, hypothesis: h}\nexperiments:\n  e:\n    sub_experiments:\n      s:\n"
        f"        success_criteria: {{m: {spec!r}}}\n".replace("'", '"'),
        "plan.yaml",
    )
    (c,) = plan.sub("s").success_criteria
    assert bands(c) == expected


PLAN = """
project: {name: P, hypothesis: h}
experiments:
  e-a:
    phase: 1
    sub_experiments:
      a_1: {success_criteria: {acc: ">= 0.5"}}
  e-b:
    phase: 2
    dependencies: [e-a]
    sub_experiments:
      b_1:
        seeds: 3
        dependencies: [a_1]
      b_2:
        sweep: {w: [1, 2]}
    success_criteria:
      acc: {target: 0.9, acceptable: 0.8, failure: 0.6, from: b_1}
  e-c:
    phase: 3
    sub_experiments: [c_1]
gates:
  g: {name: "The \\"gate\\"", experiments: [e-a], unlocks: "Phase 2"}
  h: {name: "Later", experiments: [e-b], unlocks: "something else"}
"""


def _plan(tmp_path: Path) -> Any:
    plan = parse_plan_text(PLAN, "research/research_plan.yaml")
    return dataclasses.replace(plan, path=tmp_path / "research" / "research_plan.yaml")


def test_specs_say_what_each_chart_shows(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    exp = plan.experiment("e-b")
    doc = {
        "sub_experiments": {
            "b_1": {
                "status": "passed",
                "metrics": {"acc": 0.85},
                "per_seed": {0: {"acc": 0.84}, 1: {"acc": 0.85}, 2: {"acc": 0.86}},
                "stats": {"acc": {"mean": 0.85, "std": 0.01, "n": 3, "ci95": [0.825, 0.875]}},
            },
            "b_2": {
                "status": "passed",
                "selected": "w_2",
                "points": {
                    "w_1": {"status": "passed", "metrics": {"x": 1.0}},
                    "w_2": {"status": "passed", "metrics": {"x": 2.0}},
                },
            },
        }
    }
    curves.write(curves.curve_path(plan.root, "e-b", "b_1", None), "b_1", None, {
        "0": {"loss": {"steps": [0, 1], "values": [1.0, 0.5]}},
        "1": {"loss": {"steps": [0, 1], "values": [3.0, 1.5]}},
    })  # fmt: skip
    verdict = experiment_verdict(plan, exp, doc)
    specs = {s["name"]: s for s in specs_for(plan, exp, doc, verdict)}
    assert sorted(specs) == ["b_1-curves.png", "b_2-sweep.png", "criteria.png"]
    (row,) = specs["criteria.png"]["rows"]
    assert row["label"] == "acc (from b_1)" and row["value"] == pytest.approx(0.85)
    assert row["ci"][0] < 0.84 and row["ci"][1] > 0.86  # over the 3 seeds
    assert row["seeds"] == [0.84, 0.85, 0.86] and row["level"] == "acceptable" and row["passed"]
    sweep = specs["b_2-sweep.png"]
    assert sweep["metric"] == "x" and sweep["params"] == ["w"] and sweep["selected"] == "w_2"
    assert [(r["key"], r["values"], r["value"]) for r in sweep["rows"]] == [
        ("w_1", {"w": 1}, 1.0),
        ("w_2", {"w": 2}, 2.0),
    ]
    lines = {line["label"]: line["curves"]["loss"] for line in specs["b_1-curves.png"]["lines"]}
    assert lines["mean of 2 seeds"] == [[0.0, 2.0], [1.0, 1.0]]
    # the digest follows the data, and only the data
    changed = {**specs["criteria.png"], "rows": [{**row, "value": 0.86}]}
    assert digest(specs["criteria.png"]) == digest(dict(specs["criteria.png"])) != digest(changed)


def test_curve_files_read_only_when_the_folder_holds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The curves folder is listed once per experiment: a sub-experiment (or sweep point)
    without a curve file costs no open() at session end, and one with a file is still read."""
    plan = _plan(tmp_path)
    exp = plan.experiment("e-b")
    doc = {
        "sub_experiments": {
            "b_1": {"status": "passed", "metrics": {"acc": 0.85}},
            "b_2": {
                "status": "passed",
                "selected": "w_2",
                "points": {
                    "w_1": {"status": "passed", "metrics": {"x": 1.0}},
                    "w_2": {"status": "passed", "metrics": {"x": 2.0}},
                },
            },
        }
    }
    read: list[str] = []
    real_read = curves.read

    def counting(path: Path) -> Any:
        read.append(path.name)
        return real_read(path)

    monkeypatch.setattr(curves, "read", counting)
    verdict = experiment_verdict(plan, exp, doc)
    assert sorted(s["name"] for s in specs_for(plan, exp, doc, verdict)) == ["b_2-sweep.png", "criteria.png"]
    assert read == []  # no curves folder at all: nothing opened
    curves.write(curves.curve_path(plan.root, "e-b", "b_2", "w_1"), "b_2", "w_1", {
        "0": {"loss": {"steps": [0, 1], "values": [1.0, 0.5]}},
    })  # fmt: skip
    specs = {s["name"]: s for s in specs_for(plan, exp, doc, verdict)}
    assert read == ["b_2[w_1].json"]  # only the file that is there
    assert [line["label"] for line in specs["b_2-curves.png"]["lines"]] == ["w_1"]


def test_png_digest_reads_our_chunk_only(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_mlexp.plots import draw

    spec = {"chart": "criteria", "name": "criteria.png", "title": "t", "rows": [
        {"label": "m", "value": 0.5, "ci": None, "seeds": [], "level": "pass", "passed": True, "rule": ">= 0",
         "bands": [[None, 0.0, "fail"], [0.0, None, "pass"]]},
    ]}  # fmt: skip
    path = tmp_path / "criteria.png"
    path.write_bytes(draw(spec, "abc123"))
    assert png_digest(path) == "abc123"
    assert draw(spec, "abc123") == path.read_bytes()  # the same data, the same bytes
    path.write_bytes(b"not a png")
    assert png_digest(path) is None
    assert png_digest(tmp_path / "missing.png") is None


def test_the_gate_graph_names_every_link_and_colours_by_verdict(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    docs = {
        "e-a": {"sub_experiments": {"a_1": {"status": "passed", "metrics": {"acc": 0.9}}}},
        "e-b": {"sub_experiments": {"b_1": {"status": "error", "error": {"kind": "handler"}}}},
    }
    verdicts = {
        e.id: experiment_verdict(plan, e, docs.get(e.id, {"sub_experiments": {}})) for e in plan.experiments
    }
    assert [verdict_class(verdicts[e]) for e in ("e-a", "e-b", "e-c")] == ["passed", "failed", "notrun"]
    gates = [(g, *gate_status(plan, g, verdicts)) for g in plan.gates]
    text = "\n".join(mermaid_graph(plan, verdicts, gates))
    assert text.startswith("```mermaid\nflowchart LR\n")
    assert 'e0["e-a<br/>passed · proceed"]:::passed' in text
    assert ":::failed" in text.split("\n")[3]  # e-b
    assert 'e2["e-c<br/>not run yet"]:::notrun' in text
    assert 'g0{{"The #quot;gate#quot;"}}:::passed' in text  # quotes escaped inside the label
    assert "e0 --> g0" in text and "g0 --> e1" in text  # a phase unlocked: its experiments
    assert 'g1 -.-> u1["something else"]' in text  # free text: a note, not an experiment
    assert "e0 -->|depends| e1" in text
    assert 'e0 -.->|"a_1 → b_1"|' not in text  # e-b already depends on e-a: one arrow
    for name in ("passed", "review", "failed", "notrun"):
        assert f"classDef {name} " in text


def test_entries_that_are_not_dicts_give_the_same_specs(tmp_path: Path) -> None:
    """``criteria_spec`` answers a dict entry without a call (most: no stored criteria) and any
    other mapping through ``as_mapping``; ``specs_for`` looks up only the entries that can have a
    chart.  Read-only mappings give what dicts give."""
    plan = _plan(tmp_path)
    exp = plan.experiment("e-b")
    entries = {
        "b_1": {
            "status": "passed",
            "metrics": {"acc": 0.85},
            "criteria": {"acc": {"rule": ">= 0.9", "value": 0.85, "passed": False, "level": "fail"}},
        },
        "b_2": {
            "status": "passed",
            "selected": "w_2",
            "criteria": {},
            "points": {
                "w_1": {"status": "passed", "metrics": {"x": 1.0}},
                "w_2": {"status": "passed", "metrics": {"x": 2.0}},
            },
        },
    }
    doc = {"sub_experiments": entries}
    frozen = {"sub_experiments": {k: types.MappingProxyType(v) for k, v in entries.items()}}
    verdict = experiment_verdict(plan, exp, doc)
    specs = specs_for(plan, exp, doc, verdict)
    assert specs_for(plan, exp, frozen, verdict) == specs
    assert [s["name"] for s in specs] == ["criteria.png", "b_2-sweep.png"]
    assert [r["label"] for r in specs[0]["rows"]][-1] == "b_1: acc"  # the stored sub-level criterion
