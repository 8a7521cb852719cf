"""The plan's key tables (the JSON Schema is generated from these) and near-miss detection.

Unknown keys are annotations (kept in ``meta``) unless they are a near miss of a key that means
something at that level: a silently ignored ``sucess_criteria`` would make an experiment pass
with no criteria at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..textutil import closest, lazy_re

# --- key tables (the schema is generated from these) ------------------------------------------

INHERITABLE_KEYS: tuple[str, ...] = (
    "handler",
    "handlers",
    "params",
    "stub_params",
    "sweep",
    "select",
    "seeds",
    "executor",
    "resources",
    "marks",
    "deps",
)
INHERITABLE_SET = frozenset(INHERITABLE_KEYS)
NOT_INHERITED_KEYS: tuple[str, ...] = ("success_criteria", "dependencies", "accepted")
TOP_KEYS: tuple[str, ...] = ("project", "defaults", "modal", "experiments", "gates")
PROJECT_KEYS: tuple[str, ...] = ("name", "hypothesis", "wandb_project")
EXPERIMENT_KEYS: tuple[str, ...] = (
    "name",
    "phase",
    "sub_experiments",
    "success_criteria",
    "dependencies",
    "replaces",
    "retired",
    "accepted",
    "achieved",
    *INHERITABLE_KEYS,
)
SUB_EXPERIMENT_KEYS: tuple[str, ...] = (
    "name",
    "success_criteria",
    "dependencies",
    "accepted",
    "achieved",
    *INHERITABLE_KEYS,
)
# A pivot block under an experiment (SPEC section 10; which mappings are one: decisions.py): the
# keys it gives meaning to, besides the settings its sub-experiments inherit.
PIVOT_KEYS: tuple[str, ...] = (
    "name",
    "type",
    "rationale",
    "sub_experiments",
    "success_criteria",
    "achieved",
    "accepted",
)
PIVOT_BLOCK_KEYS: tuple[str, ...] = (*PIVOT_KEYS, *INHERITABLE_KEYS)
GATE_KEYS: tuple[str, ...] = ("name", "experiments", "unlocks", "accepted")
RESOURCES_KEYS: tuple[str, ...] = (
    "gpu",
    "timeout",
    "memory",
    "cpu",
    "retries",
    "isolate",
    "max_seeds_per_worker",
    "slurm",
)
#: ``resources.slurm``: ``gpu_type_as`` (ours), then submitit 1.5's Slurm parameters (each passed
#: as ``slurm_<key>``; tests/unit/test_executors_slurm.py checks this list against submitit's)
SLURM_KEYS: tuple[str, ...] = (
    "partition", "account", "qos", "constraint", "gpu_type_as", "additional_parameters",
    "array_parallelism", "comment", "cpus_per_gpu", "cpus_per_task", "dependency", "exclude",
    "exclusive", "gpus_per_node", "gpus_per_task", "gres", "job_name", "mail_type", "mail_user",
    "mem", "mem_per_cpu", "mem_per_gpu", "nodelist", "nodes", "ntasks_per_node", "num_gpus",
    "setup", "signal_delay_s", "srun_args", "stderr_to_stdout", "teardown", "time", "use_srun",
    "wckey",
)  # fmt: skip
GPU_TYPE_AS: tuple[str, ...] = ("gres", "constraint", "none")
SELECT_KEYS: tuple[str, ...] = ("metric", "mode")
MODAL_KEYS: tuple[str, ...] = ("python", "pip", "apt", "env", "secrets", "volumes")
ACCEPTED_KEYS: tuple[str, ...] = ("reason", "by", "date")
UNLOCKS_KEYS: tuple[str, ...] = ("phase",)

KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "plan": TOP_KEYS,
    "project": PROJECT_KEYS,
    # success_criteria/dependencies/accepted are recognised under defaults only to say they are wrong
    "defaults": INHERITABLE_KEYS + NOT_INHERITED_KEYS,
    "experiment": EXPERIMENT_KEYS,
    "sub_experiment": SUB_EXPERIMENT_KEYS,
    "pivot": PIVOT_BLOCK_KEYS,
    "gate": GATE_KEYS,
    "resources": RESOURCES_KEYS,
    "slurm": SLURM_KEYS,
    "select": SELECT_KEYS,
    "modal": MODAL_KEYS,
    "accepted": ACCEPTED_KEYS,
    "unlocks": UNLOCKS_KEYS,
}

KNOWN_SETS = {level: frozenset(keys) for level, keys in KNOWN_KEYS.items()}

# Words research teams use as annotations.  They are never near-miss errors even when they sit
# within the edit distance of a known key (``model`` vs ``modal``, ``notes``...).
COMMON_ANNOTATIONS: frozenset[str] = frozenset(
    {
        "type", "status", "outcome", "achieved", "description", "note", "notes", "rationale",
        "proposal", "architecture", "future_study", "owner", "author", "authors", "tags", "links",
        "link", "model", "models", "dataset", "datasets", "date", "version", "reason", "summary",
        "title", "comment", "comments", "todo", "results", "findings", "priority", "references",
        "goal", "goals", "metrics", "ideas", "hypothesis",
    }
)  # fmt: skip

ANNOTATION_KEYS: dict[str, frozenset[str]] = {
    "plan": COMMON_ANNOTATIONS | {"archived", "links", "last_updated", "future_research"},
    "project": COMMON_ANNOTATIONS,
    "defaults": COMMON_ANNOTATIONS,
    "experiment": COMMON_ANNOTATIONS,
    "sub_experiment": COMMON_ANNOTATIONS,
    "pivot": COMMON_ANNOTATIONS,
    "gate": COMMON_ANNOTATIONS,
    "resources": COMMON_ANNOTATIONS,
    "slurm": frozenset(),
    "select": frozenset(),
    "modal": COMMON_ANNOTATIONS | {"app", "app_name", "image"},
    "accepted": COMMON_ANNOTATIONS,
    "unlocks": COMMON_ANNOTATIONS,
}

HANDLER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
MARK_RE = lazy_re(r"^[A-Za-z_]\w*(\(.*\))?$")  # a name, or a call: timeout(3600)


def near_miss(key: Any, level: str) -> str | None:
    """The known key of ``level`` that an unknown ``key`` was probably meant to be, if any."""
    if not isinstance(key, str) or key in ANNOTATION_KEYS[level]:
        return None
    return closest(key, KNOWN_KEYS[level])


def closest_id(word: str, ids: Iterable[str]) -> str | None:
    # ids are long and similar (e_p2_1, e_p2_2): a distance of 2 only suggests, never decides
    return closest(word, ids, short=4)


def closest_key(word: str, keys: Iterable[str]) -> str | None:
    """The key of ``keys`` that ``word`` was probably meant to be (the near-miss rule), if any."""
    return closest(word, keys)
