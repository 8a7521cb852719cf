"""The bad-plan catalogue (SPEC section 2, "Errors"): each mistake is a PlanError at its line, with a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_mlexp.model import Loc, PlanError
from pytest_mlexp.plan import load_plan, parse_plan_text


def error(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan_text(textwrap.dedent(text).lstrip("\n"), "research/plan.yaml")
    return info.value


def check(text: str, line: int, message: str, fix: str) -> PlanError:
    err = error(text)
    assert err.loc == Loc("research/plan.yaml", line), str(err)
    assert message in err.message, str(err)
    assert fix in err.fix, str(err)
    rendered = str(err)
    assert rendered.startswith(f"research/plan.yaml:{line}: ")
    assert f"fix: {err.fix}" in rendered
    return err


# --- YAML itself ------------------------------------------------------------------------------


def test_malformed_yaml() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments: [a, b
          e2: {}
        """,
        4,
        "malformed YAML",
        "check the indentation",
    )


def test_tab_indentation() -> None:
    check("experiments:\n\te1: {}\n", 2, "malformed YAML", "indent with spaces")


def test_two_documents() -> None:
    check("experiments: {}\n---\nexperiments: {}\n", 2, "single YAML document", "remove the extra '---'")


def test_duplicate_key() -> None:
    check(
        """
        experiments:
          e1:
            phase: 1
          e2: {}
          e1:
            phase: 2
        """,
        5,
        "duplicate key 'e1' (first at line 2)",
        "remove one",
    )


def test_duplicate_key_in_flow_mapping() -> None:
    check(
        """
        experiments:
          e1:
            params: {lr: 0.1, lr: 0.2}
        """,
        3,
        "duplicate key 'lr' (first at line 3)",
        "remove one",
    )


def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    check(
        f"""
        experiments:
          e1:
            params:
              x: !!python/object/apply:os.system ["touch {marker}"]
        """,
        4,
        "tag '!!python/object/apply:os.system' is not allowed",
        "remove the tag",
    )
    assert not marker.exists()


def test_python_name_tag_in_block_form(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    check(
        f"""
        project: !!python/object/new:subprocess.Popen
          args: [["touch", "{marker}"]]
        """,
        1,
        "!!python/object/new:subprocess.Popen",
        "remove the tag",
    )
    assert not marker.exists()


def test_custom_tag() -> None:
    check(
        """
        experiments:
          e1:
            params: {x: !Ref other}
        """,
        3,
        "tag '!Ref' is not allowed",
        "remove the tag",
    )


def test_empty_plan() -> None:
    check("# nothing yet\n", 1, "the plan is empty", "add project:")


def test_plan_not_a_mapping() -> None:
    check("- e1\n- e2\n", 1, "a plan must be a mapping", "experiments:")


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    assert info.value.loc == Loc(str(missing), 1)
    assert "cannot read the plan" in info.value.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"experiments:\n  e1:\n    name: caf\xe9\n")
    with pytest.raises(PlanError) as info:
        load_plan(str(path))
    assert info.value.loc == Loc(str(path), 3)
    assert "UTF-8" in info.value.fix


# --- did you mean -----------------------------------------------------------------------------


def test_did_you_mean_success_criteria() -> None:
    err = check(
        """
        experiments:
          p2:
            phase: 1
            sucess_criteria:
              accuracy: ">= 0.9"
        """,
        4,
        "unknown key 'sucess_criteria' in experiment 'p2'",
        "did you mean success_criteria?",
    )
    assert "did you mean success_criteria?" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "message", "fix"),
    [
        ("experiment:\n  e1: {}\n", 1, "unknown key 'experiment' in the plan", "did you mean experiments?"),
        (
            "experiments:\n  e1:\n    sub_experiments:\n      s1:\n        seed: 3\n",
            5,
            "unknown key 'seed' in sub-experiment 's1'",
            "did you mean seeds?",
        ),
        ("defaults:\n  parmas: {a: 1}\n", 2, "unknown key 'parmas' in defaults", "did you mean params?"),
        (
            "experiments:\n  e1: {}\ngates:\n  g1:\n    experiments: [e1]\n    unlock: [e1]\n",
            6,
            "unknown key 'unlock' in gate 'g1'",
            "did you mean unlocks?",
        ),
        (
            "experiments:\n  e1:\n    resources: {gpus: 2}\n",
            3,
            "unknown key 'gpus' in resources of experiment 'e1'",
            "did you mean gpu?",
        ),
        ("modal:\n  secret: [wandb]\n", 2, "unknown key 'secret' in modal", "did you mean secrets?"),
        ("project:\n  nmae: x\n", 2, "unknown key 'nmae' in project", "did you mean name?"),
    ],
    ids=["experiment", "seed", "parmas", "unlock", "gpus", "secret", "nmae"],  # the misspelt key
)
def test_did_you_mean_at_every_level(text: str, line: int, message: str, fix: str) -> None:
    check(text, line, message, fix)


def test_no_did_you_mean_inside_annotation_blocks() -> None:
    plan = parse_plan_text(
        textwrap.dedent(
            """
            experiments:
              e1:
                sub_experiments: [s1]
                pivot_notes: {sucess_criteria: {x: 1}}
                achieved: {sucess_criteria: 1}
            archived:
              old: {sucess_criteria: 1, dependecies: [nowhere]}
            future_research: {gatse: 1}
            """
        ),
        "plan.yaml",
    )
    assert plan.has_sub("s1") and not plan.has_sub("x")


def test_a_pivot_block_is_read_so_its_typos_are_caught() -> None:
    # SPEC section 10: a pivot block's sub-experiments are items and its criteria decide the
    # passed_with_pivot verdict: a misspelt key there would silently leave a pivot that can
    # never pass
    check(
        """
        experiments:
          e1:
            sub_experiments: [s1]
            pivot_e1_5:
              sucess_criteria: {x: ">= 1"}
              sub_experiments: {p1: {}}
        """,
        5,
        "unknown key 'sucess_criteria' in pivot 'pivot_e1_5' of experiment 'e1'",
        "did you mean success_criteria?",
    )


# --- criteria ---------------------------------------------------------------------------------


def test_bad_criterion() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments:
              s1:
                success_criteria:
                  loss: "< 0.3"
                  accuracy: ">= lots"
        """,
        7,
        "criterion 'accuracy'",
        "such as",
    )


def test_tiers_contradict_direction() -> None:
    check(
        """
        experiments:
          e1:
            success_criteria:
              lpips:
                target: 0.25
                acceptable: 0.35
                failure: 0.45
                direction: higher
        """,
        4,
        "direction is higher",
        "use direction: lower",
    )


def test_success_criteria_not_a_mapping() -> None:
    check(
        """
        experiments:
          e1:
            success_criteria: [accuracy]
        """,
        3,
        "success_criteria of experiment 'e1' must be a mapping",
        "success_criteria: {accuracy:",
    )


def test_success_criteria_under_defaults() -> None:
    check(
        """
        defaults:
          params: {a: 1}
          success_criteria:
            accuracy: ">= 0.9"
        experiments: {}
        """,
        3,
        "success_criteria cannot go under defaults",
        "move success_criteria to each experiment",
    )


def test_dependencies_under_defaults() -> None:
    check(
        "defaults:\n  dependencies: [e1]\n", 2, "dependencies cannot go under defaults", "move dependencies"
    )


# --- unknown ids ------------------------------------------------------------------------------


def test_unknown_dependency() -> None:
    check(
        """
        experiments:
          p2-hybrid-encoder: {}
          c2:
            dependencies:
              - p2-hybrid-encodr
        """,
        5,
        "unknown dependency 'p2-hybrid-encodr' of experiment 'c2'",
        "did you mean p2-hybrid-encoder?",
    )


def test_unknown_dependency_without_a_close_match() -> None:
    check(
        "experiments:\n  e1: {dependencies: [zzz]}\n",
        2,
        "unknown dependency 'zzz'",
        "check the spelling",
    )


def test_experiment_dependency_on_a_sub_experiment() -> None:
    check(
        "experiments:\n  e1: {sub_experiments: [s1]}\n  e2:\n    dependencies: [s1]\n",
        4,
        "is a sub-experiment, not an experiment",
        "depend on its experiment 'e1'",
    )


def test_unknown_gate_member() -> None:
    check(
        """
        experiments:
          e_base: {}
        gates:
          g1:
            experiments:
              - e_base
              - e_bsae
            unlocks: Write-up
        """,
        7,
        "unknown experiment 'e_bsae' in gate 'g1'",
        "did you mean e_base?",
    )


def test_unknown_unlocks_id() -> None:
    check(
        "experiments:\n  e_base: {}\n  e_width: {}\n"
        "gates:\n  g1: {experiments: [e_base], unlocks: [e_widht]}\n",
        5,
        "unknown experiment 'e_widht' in unlocks of gate 'g1'",
        "did you mean e_width?",
    )


def test_unlocks_single_word_near_an_id() -> None:
    check(
        "experiments:\n  e_base: {}\n  e_width: {}\n"
        "gates:\n  g1:\n    experiments: [e_base]\n    unlocks: e_widht\n",
        7,
        "unknown experiment 'e_widht'",
        "did you mean e_width?",
    )


def test_unknown_from() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments: [e1_train, e1_eval]
            success_criteria:
              accuracy:
                target: 0.9
                acceptable: 0.8
                failure: 0.5
                from: e1_evl
        """,
        9,
        "unknown sub-experiment 'e1_evl' in from of 'accuracy'",
        "did you mean e1_eval?",
    )


def test_unknown_sub_dependency() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments:
              train: {}
              evaluate:
                dependencies: [trian]
        """,
        6,
        "unknown dependency 'trian' of sub-experiment 'evaluate'",
        "did you mean train?",
    )


# --- cycles -----------------------------------------------------------------------------------


def test_experiment_cycle() -> None:
    check(
        """
        experiments:
          a:
            dependencies: [b]
          b:
            dependencies: [a]
        """,
        3,
        "dependency cycle among experiments: a -> b -> a",
        "a depends on b (line 3); b depends on a (line 5)",
    )


def test_self_dependency() -> None:
    check("experiments:\n  a:\n    dependencies: [a]\n", 3, "a -> a", "a depends on a")


def test_cycle_through_a_gate() -> None:
    check(
        """
        experiments:
          e1: {phase: 1}
          e2:
            phase: 2
            dependencies: [e1]
        gates:
          g1:
            experiments: [e2]
            unlocks: [e1]
        """,
        7,
        "dependency cycle among experiments: e1 -> e2 -> e1",
        "gate g1 (line 7) unlocks e1 and waits for e2",
    )


def test_cycle_through_a_phase_gate() -> None:
    check(
        """
        experiments:
          e1: {phase: 1}
          e2: {phase: 1}
        gates:
          g1:
            experiments: [e1, e2]
            unlocks: "Phase 1 (everything)"
        """,
        5,
        "e1 -> e2 -> e1",
        "gate g1 (line 5) unlocks e1 and waits for e2",
    )


def test_sub_experiment_cycle() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments:
              s1: {dependencies: [s2]}
              s2:
                dependencies: [s3]
              s3: {dependencies: [s1]}
        """,
        4,
        "dependency cycle among sub-experiments: s1 -> s2 -> s3 -> s1",
        "s3 depends on s1 (line 7)",
    )


def test_cycle_across_experiments_through_subs() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments:
              s1: {dependencies: [t1]}
          e2:
            sub_experiments:
              t1: {}
              t2: {}
            dependencies: [e1]
        """,
        4,
        "dependency cycle among experiments: e1 -> e2 -> e1",
        "s1 depends on t1",
    )


# --- sub-experiment ids -----------------------------------------------------------------------


def test_duplicated_sub_experiment_id() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments: [s1, s2]
          e2:
            sub_experiments:
              s3: {}
              s1: {}
        """,
        7,
        "duplicate sub-experiment id 's1' (first at line 3, in experiment 'e1')",
        "rename one",
    )


def test_invalid_id() -> None:
    check(
        "experiments:\n  e1:\n    sub_experiments: [ok, 'not ok']\n",
        3,
        "invalid sub-experiment id 'not ok'",
        "rename",
    )


def test_numeric_id() -> None:
    check("experiments:\n  7: {}\n", 2, "experiment id must be a string", "quote the id")


def test_sub_experiments_wrong_type() -> None:
    check(
        "experiments:\n  e1:\n    sub_experiments: s1\n",
        3,
        "sub_experiments of experiment 'e1' must be a list of ids or a mapping",
        "sub_experiments: [e_1, e_2]",
    )


def test_sub_experiments_list_of_mappings() -> None:
    check(
        "experiments:\n  e1:\n    sub_experiments:\n      - s1: {params: {a: 1}}\n",
        4,
        "its items must be ids",
        "mapping of id -> spec",
    )


def test_experiments_not_a_mapping() -> None:
    check("experiments: [e1, e2]\n", 1, "experiments must be a mapping", "experiments:")


def test_experiment_not_a_mapping() -> None:
    check("experiments:\n  e1: 3\n", 2, "experiment 'e1' must be a mapping", "indented below the id")


# --- sweep, select, seeds and the other inheritable keys --------------------------------------


@pytest.mark.parametrize(
    ("spec", "line", "message", "fix"),
    [
        ("sweep: [16, 32]", 4, "sweep of sub-experiment 's1' must be a mapping", "sweep: {param: [value"),
        ("sweep: {}", 4, "sweep of sub-experiment 's1' must be a mapping", "sweep: {param: [value"),
        (
            "sweep: {hidden: 16}",
            4,
            "sweep param 'hidden' of sub-experiment 's1' must be a non-empty list",
            "sweep:",
        ),
        ("sweep: {hidden: []}", 4, "must be a non-empty list", "sweep:"),
        ("sweep: {hidden: [16, {a: 1}]}", 4, "must be a scalar", "put structured settings in params"),
        ("sweep: {name: ['a b', 'a_b']}", 4, "the same id [name_a_b]", "make the swept values distinct"),
        ("sweep: {hidden: [16, 16]}", 4, "the same id [hidden_16]", "make the swept values distinct"),
    ],
)
def test_bad_sweep(spec: str, line: int, message: str, fix: str) -> None:
    check(f"experiments:\n  e1:\n    sub_experiments:\n      s1: {{{spec}}}\n", line, message, fix)


def test_bad_sweep_value_on_its_own_line() -> None:
    check(
        """
        experiments:
          e1:
            sub_experiments:
              s1:
                sweep:
                  hidden:
                    - 16
                    - [32, 64]
        """,
        8,
        "sweep value of 'hidden' in sub-experiment 's1' must be a scalar",
        "params",
    )


def test_sweep_collision_reported_where_the_sweep_is_written() -> None:
    check(
        """
        defaults:
          sweep: {lr: [0.1, "0.1"]}
        experiments:
          e1: {sub_experiments: [s1]}
        """,
        2,
        "the same id [lr_0.1]",
        "distinct",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("select: accuracy", "select of sub-experiment 's1' must be a mapping"),
        ("select: {mode: max}", "select of sub-experiment 's1' needs a metric name"),
        ("select: {metric: acc, mode: best}", "select mode of sub-experiment 's1' must be max or min"),
        ("select: {metric: acc, by: max}", "unknown key 'by' in select"),
    ],
)
def test_bad_select(spec: str, message: str) -> None:
    check(
        f"experiments:\n  e1:\n    sub_experiments:\n      s1: {{sweep: {{a: [1, 2]}}, {spec}}}\n",
        4,
        message,
        "select: {metric: accuracy, mode: max}",
    )


def test_select_mode_near_miss() -> None:
    check(
        "experiments:\n  e1:\n    select:\n      metric: acc\n      mdoe: min\n",
        5,
        "unknown key 'mdoe' in select of experiment 'e1'",
        "did you mean mode?",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("three", "seeds of sub-experiment 's1' must be a positive integer or a list of integers"),
        ("0", "seeds of sub-experiment 's1' must be at least 1"),
        ("-2", "must be at least 1"),
        ("[]", "must be a positive integer or a list"),
        ("true", "not a boolean"),
        ("2.5", "must be a positive integer or a list"),
        ("[0, 1, 1]", "seed 1 of sub-experiment 's1' is listed twice"),
        ("[0, one]", "seed 'one' of sub-experiment 's1' must be a non-negative integer"),
        ("[-1]", "must be a non-negative integer"),
    ],
)
def test_bad_seeds(value: str, message: str) -> None:
    check(
        f"experiments:\n  e1:\n    sub_experiments:\n      s1:\n        seeds: {value}\n",
        5,
        message,
        "seeds: 3",
    )


@pytest.mark.parametrize(
    ("spec", "message", "fix"),
    [
        (
            "handler: my_module.run",
            "handler of experiment 'e1' must look like 'package.module:function'",
            "handler:",
        ),
        ("handler: 3", "must look like 'package.module:function'", "handler:"),
        ("params: [1, 2]", "params of experiment 'e1' must be a mapping", "params: {name: value}"),
        ("stub_params: 3", "stub_params of experiment 'e1' must be a mapping", "stub_params:"),
        ("executor: 3", "executor of experiment 'e1' must be a name", "executor: local"),
        ("resources: A100", "resources of experiment 'e1' must be a mapping", "resources:"),
        ("resources: {gpu: 2}", "resources.gpu of experiment 'e1' must be a string", "quote it"),
        (
            "resources: {timeout: -5}",
            "resources.timeout of experiment 'e1' must be a positive number",
            "timeout:",
        ),
        ("resources: {retries: 1.5}", "resources.retries", "retries: 1"),
        ("resources: {isolate: yes please}", "resources.isolate of experiment 'e1'", "isolate: true"),
        (
            "resources: {max_seeds_per_worker: 0}",
            "resources.max_seeds_per_worker of experiment 'e1' must be a whole number >= 1",
            "max_seeds_per_worker: 20",
        ),
        ("marks: [slow, 'not a mark']", "mark 'not a mark' of experiment 'e1'", "marks: [slow, gpu]"),
        ("marks: {slow: true}", "marks of experiment 'e1' must be a list", "marks:"),
        ("phase: two", "phase must be a whole number", "phase: 2"),
        ("retired: yes", "retired of experiment 'e1' must be true or false", "retired: true"),
        ("accepted: {by: me}", "accepted needs a reason", "accepted: {reason:"),
    ],
)
def test_bad_experiment_values(spec: str, message: str, fix: str) -> None:
    check(f"experiments:\n  e1:\n    {spec}\n", 3, message, fix)


@pytest.mark.parametrize(
    ("spec", "message", "fix"),
    [
        ("unlocks: true", "unlocks of gate 'g1' cannot be a boolean", "unlocks:"),
        ("unlocks: {phsae: 2}", "unknown key 'phsae'", "did you mean phase?"),
        ("unlocks: {when: 2}", "unlocks of gate 'g1' is a mapping without phase", "unlocks: {phase: 2}"),
        ("unlocks: 1.5", "unlocks of gate 'g1' cannot be the number 1.5", "unlocks:"),
        ("experiments: {e1: 1}", "experiments must be a list of experiment ids", "experiments: [id, ...]"),
        ("accepted: 3", "accepted must be a mapping with a reason", "accepted: {reason:"),
    ],
)
def test_bad_gate_values(spec: str, message: str, fix: str) -> None:
    check(f"experiments:\n  e1: {{}}\ngates:\n  g1:\n    {spec}\n", 5, message, fix)


def test_gates_not_a_mapping() -> None:
    check("gates: [g1]\n", 1, "gates must be a mapping", "gates:")


@pytest.mark.parametrize(
    ("spec", "message", "fix"),
    [
        ("python: 3.10", "modal.python must be a quoted version string", 'python: "3.1"'),
        ("pip: {torch: 2}", "modal.pip must be a list of strings", "pip: [name, ...]"),
        ("volumes: [/cache]", "modal.volumes must be a mapping", "volumes:"),
    ],
)
def test_bad_modal(spec: str, message: str, fix: str) -> None:
    check(f"modal:\n  {spec}\n", 2, message, fix)


def test_modal_not_a_mapping() -> None:
    check("modal: yes\n", 1, "modal must be a mapping", "modal:")


def test_project_not_a_mapping() -> None:
    check("project: [a]\n", 1, "project must be a mapping", "project:")


def test_inherited_bad_value_is_reported_once_where_written() -> None:
    check(
        """
        defaults:
          seeds: three
        experiments:
          e1: {sub_experiments: [a, b]}
        """,
        2,
        "seeds of defaults",
        "seeds: 3",
    )


# --- resources.slurm: every key reaches sbatch --------------------------------------------------


def test_unknown_slurm_key_is_an_error_with_a_guess() -> None:
    check(
        """
        experiments:
          e1:
            resources:
              slurm:
                partion: gpu
        """,
        5,
        "unknown key 'partion' in resources.slurm of experiment 'e1'",
        "did you mean partition?",
    )


def test_slurm_section_values() -> None:
    check(
        "experiments:\n  e1:\n    resources:\n      slurm: [gpu]\n",
        4,
        "resources.slurm of experiment 'e1' must be a mapping",
        "write slurm: {partition: gpu, account: my-lab}",
    )
    check(
        "experiments:\n  e1:\n    resources:\n      slurm: {gpu_type_as: feature}\n",
        4,
        "resources.slurm.gpu_type_as of experiment 'e1' must be one of gres, constraint, none",
        "write gpu_type_as: constraint",
    )
    check(
        "experiments:\n  e1:\n    resources:\n      slurm:\n        account: 42\n",
        5,
        "resources.slurm.account of experiment 'e1' must be a string",
        "quote it",
    )
    check(
        "experiments:\n  e1:\n    resources:\n      slurm:\n        zzz_nothing_like_it: 1\n",
        5,
        "unknown key 'zzz_nothing_like_it' in resources.slurm",
        "use one of: partition, account, qos, constraint, gpu_type_as",
    )


def test_a_slurm_section_is_kept_for_the_executor() -> None:
    plan = parse_plan_text(
        "experiments:\n  e1:\n    sub_experiments: [s1]\n    resources:\n      gpu: A100:2\n"
        "      slurm: {partition: gpu, account: lab, additional_parameters: {mail-type: END}}\n",
        "research/plan.yaml",
    )
    (sub,) = plan.experiments[0].sub_experiments
    extra = {"mail-type": "END"}
    assert sub.resources["slurm"] == {"partition": "gpu", "account": "lab", "additional_parameters": extra}
