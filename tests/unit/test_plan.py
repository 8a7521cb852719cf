"""plan.py on valid plans: both dialects, inheritance, YAML 1.2 scalars, annotations kept."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from pytest_mlexp.graph import graph_of
from pytest_mlexp.model import Plan, PlanError, Unlocks
from pytest_mlexp.plan import load_plan, near_miss, parse_plan_text

PLANS = Path(__file__).parent / "plans"


def parse(text: str) -> Plan:
    return parse_plan_text(textwrap.dedent(text).lstrip("\n"), "plan.yaml")


@pytest.fixture(scope="module")
def tiered() -> Plan:
    return load_plan(PLANS / "tiered_plan.yaml")


@pytest.fixture(scope="module")
def detailed() -> Plan:
    return load_plan(str(PLANS / "detailed_plan.yaml"))


# --- the tiered fixture -----------------------------------------------------------------------


def test_tiered_experiments_phases_and_subs(tiered: Plan) -> None:
    assert [e.id for e in tiered.experiments] == [
        "q1-embedding-signal",
        "c1-day-ahead",
        "c0-raw-fields",
        "c2-extremes",
        "q3-horizon",
    ]
    assert [e.phase for e in tiered.experiments] == [1, 1, 1, 2, 3]
    q1 = tiered.experiment("q1-embedding-signal")
    assert q1.name == "Q1: Embedding signal"
    assert [s.id for s in q1.sub_experiments] == ["eq1_1", "eq1_2", "eq1_3"]
    assert q1.loc.line == 9
    sub = tiered.sub("eq1_2")
    assert sub.experiment_id == "q1-embedding-signal"
    assert sub.loc.line == 16
    assert sub.params == {} and sub.stub_params == {} and sub.resources == {}
    assert sub.seeds == (0,) and not sub.seeds_given
    assert sub.executor == "local" and sub.handler is None and sub.sweep is None and sub.select is None
    assert sub.name == "eq1_2"
    assert tiered.experiment("q3-horizon").dependencies == ("c2-extremes",)


def test_tiered_criteria(tiered: Plan) -> None:
    q1 = tiered.experiment("q1-embedding-signal")
    probe = q1.success_criteria[0]
    assert (probe.metric, probe.kind, probe.target, probe.direction) == ("probe_r2", "tiered", 0.6, "higher")
    assert probe.loc is not None and probe.loc.line == 18
    skill = tiered.experiment("c1-day-ahead").success_criteria[1]
    assert skill.accepted is not None and skill.accepted.by == "research lead"


def test_tiered_annotations_are_kept(tiered: Plan) -> None:
    c1 = tiered.experiment("c1-day-ahead")
    assert c1.meta["type"] == "claim"
    assert c1.meta["achieved"] == {"mae_cm": 7.9, "skill": 0.31}
    assert c1.meta["future_study"] == ["longer horizons", "ensembles"]
    assert "name" not in c1.meta and "phase" not in c1.meta
    assert c1.replaces == ("c0-raw-fields",)
    assert not c1.retired
    # the replaced experiment is found through the replacing one
    replaced = {r for e in tiered.experiments for r in e.replaces}
    assert "c0-raw-fields" in replaced
    c2 = tiered.experiment("c2-extremes")
    pivot = c2.meta["pivot_e2_5"]
    assert pivot["sub_experiments"]["e2_5a"]["achieved"] == {"coverage": 0.93}
    assert set(tiered.meta) == {"archived", "links", "last_updated", "future_research"}
    assert tiered.meta["last_updated"] == "2026-02-10"  # YAML 1.2: no implicit dates
    assert tiered.project.name == "Tidewater"
    assert tiered.project.meta == {"architecture": "frozen climate encoder + small forecasting head"}
    assert tiered.project.wandb_project is None
    assert tiered.modal == {}


def test_tiered_gates(tiered: Plan) -> None:
    g1, g2, g3 = tiered.gates
    assert g1.id == "gate_1_signal" and g1.name == "Gate 1: Signal"
    assert g1.experiments == ("q1-embedding-signal", "c1-day-ahead")
    assert (g1.unlocks.kind, g1.unlocks.phase) == ("phase", 2)
    assert (g2.unlocks.kind, g2.unlocks.phase) == ("phase", 3)
    assert g3.unlocks == Unlocks(kind="text", text="Write-up")
    assert g1.meta == {
        "description": "Embeddings carry usable signal and beat raw fields",
        "status": "passed",
        "note": "PASSED 2026-02-04",
    }
    assert g1.accepted is None
    assert [g.id for g in tiered.gates_unlocking("c2-extremes")] == ["gate_1_signal"]
    assert list(graph_of(tiered).experiment_order())[-2:] == ["c2-extremes", "q3-horizon"]


def test_pivot_sub_experiments_are_items_once() -> None:
    # SPEC section 10: a pivot block's sub-experiments are items of the experiment, once even
    # when the main list names them too; they belong to the pivot
    plan = parse(
        """
        experiments:
          e1:
            sub_experiments: [a_1, b_1]
            success_criteria: {acc: ">= 0.9"}
            pivot_x:
              name: "X: a narrower claim"
              rationale: "try the quantile head"
              sub_experiments:
                b_1: {params: {q: 0.95}, achieved: {cov: 0.93}}
                c_1: {}
              success_criteria: {cov: {min: 0.9, achieved: 0.91}}
              accepted: {reason: "good enough", by: "lead"}
            status: passed_with_pivot
            achieved: {acc: 0.85, note: text}
        """
    )
    exp = plan.experiment("e1")
    assert [s.id for s in exp.sub_experiments] == ["a_1", "b_1", "c_1"]
    assert [s.pivot for s in exp.sub_experiments] == [None, "pivot_x", "pivot_x"]
    assert plan.sub("b_1").params == {"q": 0.95}
    assert plan.sub("b_1").achieved["cov"].value == 0.93
    (pivot,) = exp.pivots
    assert (pivot.key, pivot.name, pivot.sub_ids) == ("pivot_x", "X: a narrower claim", ("b_1", "c_1"))
    assert pivot.success_criteria[0].achieved is not None and pivot.success_criteria[0].achieved.value == 0.91
    assert pivot.accepted is not None and pivot.accepted.by == "lead"
    assert set(exp.achieved) == {"acc"}  # "text" is a note, not a measurement
    assert exp.plan_status is not None and exp.plan_status.text == "passed_with_pivot"
    assert exp.plan_status.loc.line == 13


def test_pivot_sub_experiment_ids_stay_unique_across_the_plan() -> None:
    with pytest.raises(PlanError, match="duplicate sub-experiment id 'a_1'"):
        parse(
            """
            experiments:
              e0: {sub_experiments: [a_1]}
              e1:
                sub_experiments: [b_1]
                pivot_x: {sub_experiments: [a_1], success_criteria: {acc: ">= 1"}}
            """
        )
    with pytest.raises(PlanError, match="settings both in the sub_experiments"):
        parse(
            """
            experiments:
              e1:
                sub_experiments: {b_1: {params: {a: 1}}}
                pivot_x: {sub_experiments: {b_1: {params: {a: 2}}}, success_criteria: {acc: ">= 1"}}
            """
        )


# --- the detailed fixture ---------------------------------------------------------------------


def test_detailed_inheritance(detailed: Plan) -> None:
    base1 = detailed.sub("e_base_1")
    assert base1.params == {"epochs": 20, "batch_size": 64, "model": "linear"}
    assert base1.stub_params == {"epochs": 1, "n_train": 128}
    assert base1.resolved_params(stub=True) == {
        "epochs": 1,
        "batch_size": 64,
        "model": "linear",
        "n_train": 128,
    }
    assert base1.resources == {"gpu": "A10G", "timeout": 1800, "retries": 1}
    assert base1.executor == "local" and base1.marks == ()
    base2 = detailed.sub("e_base_2")
    assert base2.seeds == (0, 1, 2) and base2.seeds_given
    assert base2.success_criteria[0].confidence == 0.95
    width2 = detailed.sub("e_width_2")
    assert width2.executor == "process" and width2.marks == ("slow",)
    assert width2.dependencies == ("e_width_1",)
    assert width2.params["eval_only"] is True


def test_detailed_sweep(detailed: Plan) -> None:
    sub = detailed.sub("e_width_1")
    assert sub.sweep == {"hidden": (16, 64, 256), "lr": (0.01, 0.001)}
    assert sub.select is not None and (sub.select.metric, sub.select.mode) == ("accuracy", "max")
    keys = [p.key for p in sub.points()]
    assert keys[0] == "hidden_16-lr_0.01"
    assert keys == [
        "hidden_16-lr_0.01",
        "hidden_16-lr_0.001",
        "hidden_64-lr_0.01",
        "hidden_64-lr_0.001",
        "hidden_256-lr_0.01",
        "hidden_256-lr_0.001",
    ]
    assert sub.seeds == (0, 1, 2)


def test_detailed_experiment_level(detailed: Plan) -> None:
    base = detailed.experiment("e_base")
    assert base.success_criteria[0].from_ == "e_base_2"
    assert detailed.project.wandb_project == "quickdraw"
    assert detailed.modal["volumes"] == {"/cache": "quickdraw-cache"}
    (gate,) = detailed.gates
    assert gate.unlocks == Unlocks(kind="phase", phase=2)
    assert [g.id for g in detailed.gates_unlocking("e_width")] == ["g_base"]
    assert detailed.path.is_absolute() and detailed.path.name == "detailed_plan.yaml"
    assert detailed.experiment("e_base").loc.file == str(PLANS / "detailed_plan.yaml")


# --- merging rules ----------------------------------------------------------------------------


def test_merge_is_deep_lists_replaced_marks_accumulate() -> None:
    plan = parse(
        """
        defaults:
          params: {opt: {name: adam, lr: 0.1}, layers: [1, 2], keep: 1}
          resources: {gpu: A10G, timeout: 60}
          marks: [slow, gpu]
          seeds: 2
        experiments:
          e1:
            params: {opt: {lr: 0.01}}
            resources: {timeout: 120}
            marks: slow
            executor: modal
            sub_experiments:
              s1:
                params: {layers: [3], opt: {momentum: 0.9}}
                marks: [nightly, gpu]
                seeds: [5, 7]
                handler: experiments.mod:run
              s2:
              s3: {}
        """
    )
    s1, s2, s3 = plan.experiment("e1").sub_experiments
    assert s1.params == {"opt": {"name": "adam", "lr": 0.01, "momentum": 0.9}, "layers": [3], "keep": 1}
    assert s1.resources == {"gpu": "A10G", "timeout": 120}
    assert s1.marks == ("slow", "gpu", "nightly")
    assert s1.seeds == (5, 7) and s1.seeds_given
    assert s1.handler == "experiments.mod:run"
    assert s1.executor == "modal"
    for sub in (s2, s3):
        assert sub.params == {"opt": {"name": "adam", "lr": 0.01}, "layers": [1, 2], "keep": 1}
        assert sub.seeds == (0, 1) and sub.seeds_given
        assert sub.marks == ("slow", "gpu")
        assert sub.meta == {}


def test_null_resets_to_the_default() -> None:
    plan = parse(
        """
        defaults: {seeds: 3, executor: modal, sweep: {x: [1, 2]}}
        experiments:
          e1:
            sub_experiments:
              s1: {seeds: null, executor: null, sweep: null}
        """
    )
    sub = plan.sub("s1")
    assert sub.seeds == (0,) and not sub.seeds_given
    assert sub.executor == "local" and sub.sweep is None


def test_select_without_mode_defaults_to_max() -> None:
    plan = parse(
        """
        experiments:
          e1:
            sub_experiments:
              s1: {sweep: {lr: [1e-3, 1e-2]}, select: {metric: loss}}
        """
    )
    sub = plan.sub("s1")
    assert sub.select is not None and sub.select.mode == "max"
    assert [p.key for p in sub.points()] == ["lr_0.001", "lr_0.01"]


def test_sub_meta_keeps_name_and_annotations() -> None:
    plan = parse(
        """
        experiments:
          e1:
            sub_experiments:
              s1: {name: "First", status: done, notes: "x", accepted: {reason: "ok"}}
        """
    )
    sub = plan.sub("s1")
    assert sub.name == "First"
    assert sub.meta == {"name": "First", "status": "done", "notes": "x", "accepted": {"reason": "ok"}}


# --- YAML 1.2 ---------------------------------------------------------------------------------


def test_yaml_1_2_scalars() -> None:
    plan = parse(
        """
        experiments:
          e1:
            sub_experiments:
              s1:
                params:
                  a: 1e-3
                  b: 1E5
                  c: .5
                  d: +1.0e3
                  e: yes
                  f: off
                  g: true
                  h: 2026-02-10
                  i: "1e-3"
                  j: .inf
                  k: 0x10
                  l: 1_000
                  m: ~
        """
    )
    p = plan.sub("s1").params
    assert p["a"] == 0.001 and isinstance(p["a"], float)
    assert p["b"] == 100000.0 and isinstance(p["b"], float)
    assert p["c"] == 0.5 and p["d"] == 1000.0
    assert p["e"] == "yes" and p["f"] == "off" and p["g"] is True
    assert p["h"] == "2026-02-10" and p["i"] == "1e-3"
    assert math.isinf(p["j"]) and p["k"] == 16 and p["l"] == "1_000" and p["m"] is None


def test_yaml_loader_does_not_change_pyyaml_globally() -> None:
    import yaml

    parse("experiments: {}")
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}


def test_anchors_and_merge_keys() -> None:
    plan = parse(
        """
        experiments:
          e1:
            sub_experiments:
              s1:
                params: &common {epochs: 5, lr: 0.1}
              s2:
                params:
                  <<: *common
                  lr: 0.2
        """
    )
    assert plan.sub("s2").params == {"epochs": 5, "lr": 0.2}


# --- other shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unlocks", "expected"),
    [
        ("[e2]", Unlocks(kind="ids", ids=("e2",))),
        ("e2", Unlocks(kind="ids", ids=("e2",))),
        ("2", Unlocks(kind="phase", phase=2)),
        ("'2'", Unlocks(kind="phase", phase=2, text="2")),
        ('"phase 2"', Unlocks(kind="phase", phase=2, text="phase 2")),
        ('"Phase 2 (Adapter Training)"', Unlocks(kind="phase", phase=2, text="Phase 2 (Adapter Training)")),
        ("{phase: 2}", Unlocks(kind="phase", phase=2)),
        ("{phase: '2'}", Unlocks(kind="phase", phase=2)),
        ('"Write-up"', Unlocks(kind="text", text="Write-up")),
        ("null", Unlocks(kind="text")),
    ],
)
def test_unlocks_forms(unlocks: str, expected: Unlocks) -> None:
    plan = parse(
        f"""
        experiments:
          e1: {{phase: 1}}
          e2: {{phase: "2"}}
        gates:
          g1: {{experiments: e1, unlocks: {unlocks}}}
        """
    )
    assert plan.gates[0].unlocks == expected
    assert plan.gates[0].experiments == ("e1",)
    assert plan.experiment("e2").phase == 2


def test_gate_accepted_retired_and_project_string() -> None:
    plan = parse(
        """
        project: Tiny
        experiments:
          e1: {retired: true}
          e2:
        gates:
          g1:
            experiments: [e1]
            unlocks: [e2]
            accepted: {reason: "good enough", by: me, date: 2026-01-02}
        model: resnet     # a top-level annotation, not a typo of modal
        """
    )
    assert plan.project.name == "Tiny"
    assert plan.experiment("e1").retired and not plan.experiment("e2").retired
    accepted = plan.gates[0].accepted
    assert accepted is not None and (accepted.reason, accepted.by, accepted.date) == (
        "good enough",
        "me",
        "2026-01-02",
    )
    assert plan.meta == {"model": "resnet"}
    assert plan.experiment("e2").sub_experiments == ()


def test_empty_sections() -> None:
    plan = parse("project: {name: x}\n")
    assert plan.experiments == () and plan.gates == () and plan.modal == {}


@pytest.mark.parametrize(
    ("key", "level", "expected"),
    [
        ("sucess_criteria", "experiment", "success_criteria"),
        ("Success_Criteria", "experiment", "success_criteria"),
        ("dependecies", "sub_experiment", "dependencies"),
        ("seed", "sub_experiment", "seeds"),
        ("sweeps", "sub_experiment", "sweep"),
        ("stub_param", "defaults", "stub_params"),
        ("experiment", "gate", "experiments"),
        ("unlock", "gate", "unlocks"),
        ("gpus", "resources", "gpu"),
        ("retires", "resources", "retries"),
        ("experiment", "plan", "experiments"),
        ("defualts", "plan", "defaults"),
        ("secret", "modal", "secrets"),
        # annotation keys research teams use are never near misses
        ("type", "experiment", None),
        ("status", "sub_experiment", None),
        ("outcome", "experiment", None),
        ("achieved", "experiment", None),
        ("links", "plan", None),
        ("note", "gate", None),
        ("notes", "sub_experiment", None),
        ("model", "plan", None),
        ("steps", "sub_experiment", None),
        ("tags", "sub_experiment", None),
        ("pivot_e2_5", "experiment", None),
        ("app", "modal", None),
        (3, "experiment", None),
    ],
)
def test_near_miss(key: object, level: str, expected: str | None) -> None:
    assert near_miss(key, level) == expected


def test_ten_thousand_sub_experiments_load() -> None:
    """How fast is bench/inproc.py's (``plan``): a wall-clock bound here failed on loaded machines."""
    lines = ["defaults: {params: {epochs: 3}}", "experiments:"]
    for e in range(100):
        lines += [f"  exp_{e}:", f"    phase: {e % 3 + 1}", "    sub_experiments:"]
        for s in range(100):
            lines += [
                f"      s_{e}_{s}:",
                f"        params: {{lr: 1e-3, hidden: {s}}}",
                "        seeds: 2",
                "        success_criteria: {accuracy: '>= 0.9'}",
            ]
        lines += [
            "    success_criteria:",
            f"      accuracy: {{target: 0.9, acceptable: 0.8, failure: 0.5, from: s_{e}_0}}",
        ]
        if e:
            lines.append(f"    dependencies: [exp_{e - 1}]")
    text = "\n".join(lines) + "\n"
    plan = parse_plan_text(text, "big.yaml")
    assert len(plan.experiments) == 100 and plan.has_sub("s_99_99")
    last = plan.sub("s_99_99")
    assert last.experiment_id == "exp_99" and last.params == {"epochs": 3, "lr": 1e-3, "hidden": 99}
    assert list(plan.experiment("exp_99").dependencies) == ["exp_98"]


def test_pure_python_parser_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the pure parser feeds the same builder: same data, same lines."""
    import yaml

    from pytest_mlexp import yamlload

    for name in ("tiered_plan.yaml", "detailed_plan.yaml"):
        text = (PLANS / name).read_text(encoding="utf-8")
        fast = yamlload.load_yaml(text)
        with monkeypatch.context() as m:
            m.setattr(yamlload, "_BaseLoader", yaml.SafeLoader)
            slow = yamlload.load_yaml(text)
        assert slow.data == fast.data
        assert sorted(map(repr, slow.maps.values())) == sorted(map(repr, fast.maps.values()))
        assert sorted(map(repr, slow.seqs.values())) == sorted(map(repr, fast.seqs.values()))
