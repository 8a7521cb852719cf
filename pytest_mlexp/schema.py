"""The JSON Schema (draft 2020-12) of a plan file, generated from the key tables of ``plan/keys.py``.

Editors use it to validate plans as they are typed.  Every level's properties come from
``plan.KNOWN_KEYS``; a key there without a schema fragment here (or the reverse) fails
generation, so the schema cannot drift from the parser.  Annotations stay allowed
(``additionalProperties`` is open wherever the parser keeps unknown keys as metadata).

Regenerate the published copy with::

    python -m pytest_mlexp.schema > pytest_mlexp/schema/plan.schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .criteria import criterion_schema
from .model import ID_RE
from .plan import HANDLER_RE, KNOWN_KEYS, MARK_RE, NOT_INHERITED_KEYS
from .plan.keys import GPU_TYPE_AS, SLURM_KEYS
from .plan.limits import MAX_ID_LENGTH, MAX_SEED_VALUE, MAX_SEEDS, MAX_TIMEOUT

__all__ = ["plan_schema", "render"]

Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    # the parser reads an explicit null as "not set here" (or "back to the default")
    return {"anyOf": [schema, {"type": "null"}]}


_ID: Schema = {"type": "string", "pattern": ID_RE.pattern, "maxLength": MAX_ID_LENGTH}
_ID_LIST: Schema = _nullable({"anyOf": [_ID, {"type": "array", "items": _ID}]})
_TEXT: Schema = {"type": ["string", "number", "boolean", "null"]}
_STRINGS: Schema = _nullable({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
_PHASE: Schema = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"(?i)^\s*(phase\s*)?[0-9]+"}]}
_SCALAR: Schema = {"type": ["string", "number", "boolean", "null"]}

# resources.slurm: the keys with a type worth checking as typed; the rest reach submitit as written
_SLURM_FRAGMENTS: dict[str, Schema] = {
    "partition": {"type": "string", "description": "sbatch --partition"},
    "account": {"type": "string", "description": "sbatch --account"},
    "qos": {"type": "string", "description": "sbatch --qos"},
    "constraint": {"type": "string", "description": "sbatch --constraint"},
    "gpu_type_as": {
        "enum": list(GPU_TYPE_AS),
        "description": "how resources.gpu's type reaches Slurm: --gres=gpu:TYPE:N (default), "
        "--constraint=TYPE, or not at all",
    },
    "additional_parameters": {"type": "object", "description": "any #SBATCH --key=value"},
    "setup": {"type": "array", "items": {"type": "string"}, "description": "shell lines before srun"},
}

_ACCEPTED_FIELDS: dict[str, Schema] = {
    "reason": {"type": "string", "minLength": 1, "description": "the human decision, in words"},
    "by": _TEXT,
    "date": _TEXT,
}

# SPEC section 3: each criterion form supplies its own fragment (criteria/forms.py, contrast.py).
_CRITERION: Schema = criterion_schema("#/$defs/accepted")

_INHERITABLE: dict[str, Schema] = {
    "handler": _nullable(
        {"type": "string", "pattern": HANDLER_RE.pattern, "description": "package.module:function"}
    ),
    "handlers": _nullable(
        {
            "type": "string",
            "pattern": HANDLER_RE.pattern,
            "description": "a handler registry, package.module:get_handlers: a function returning "
            "{sub_id: function}, or a module attribute holding that mapping (handler wins over it)",
        }
    ),
    "params": _nullable({"type": "object", "description": "handed to the handler as runner.params"}),
    "stub_params": _nullable({"type": "object", "description": "laid over params under --stub"}),
    "sweep": _nullable(
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "array", "minItems": 1, "items": _SCALAR},
            "description": "param -> values; one item per point of the cartesian product",
        }
    ),
    "select": _nullable({"$ref": "#/$defs/select"}),
    "seeds": _nullable(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SEEDS,
                    "uniqueItems": True,
                    "items": {"type": "integer", "minimum": 0, "maximum": MAX_SEED_VALUE},
                },
            ],
            "description": "N (seeds 0..N-1) or a list of seeds",
        }
    ),
    "executor": _nullable(
        {"type": "string", "minLength": 1, "description": "local, process, modal, slurm, ..."}
    ),
    "resources": _nullable({"$ref": "#/$defs/resources"}),
    "marks": _nullable(
        {
            "anyOf": [
                {"type": "string", "pattern": MARK_RE.pattern},
                {"type": "array", "items": {"type": "string", "pattern": MARK_RE.pattern}},
            ]
        }
    ),
    "deps": _nullable(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}},
                {"type": "object", "additionalProperties": {"type": ["string", "null"], "minLength": 1}},
            ],
            "description": "files the results depend on besides code: paths or globs relative to the "
            "rootdir (a list, or name -> path merged key by key like params); their content hashes "
            "enter the fingerprint",
        }
    ),
}

_CRITERIA: Schema = _nullable({"type": "object", "additionalProperties": {"$ref": "#/$defs/criterion"}})
_ACCEPTED: Schema = _nullable({"$ref": "#/$defs/accepted"})
# SPEC section 10: measurements recorded by hand; entries that are not numbers are notes.
_ACHIEVED: Schema = {
    "description": "metric -> value recorded by hand, used for a criterion no measured result supplies "
    "(listed for review); entries that are not numbers are notes",
    "anyOf": [{"type": "object"}, {"type": ["string", "number", "boolean", "null", "array"]}],
}
_SUB_EXPERIMENTS: Schema = _nullable(
    {
        "anyOf": [
            {"type": "array", "items": _ID},
            {
                "type": "object",
                "propertyNames": _ID,
                "additionalProperties": _nullable({"$ref": "#/$defs/sub_experiment"}),
            },
        ]
    }
)

_FRAGMENTS: dict[str, dict[str, Schema]] = {
    "plan": {
        "project": _nullable({"anyOf": [{"type": "string"}, {"$ref": "#/$defs/project"}]}),
        "defaults": _nullable({"$ref": "#/$defs/defaults"}),
        "modal": _nullable({"$ref": "#/$defs/modal"}),
        "experiments": _nullable(
            {
                "type": "object",
                "propertyNames": _ID,
                "additionalProperties": _nullable({"$ref": "#/$defs/experiment"}),
            }
        ),
        "gates": _nullable(
            {
                "type": "object",
                "propertyNames": _ID,
                "additionalProperties": _nullable({"$ref": "#/$defs/gate"}),
            }
        ),
    },
    "project": {"name": _TEXT, "hypothesis": _TEXT, "wandb_project": _nullable({"type": "string"})},
    "defaults": {
        **_INHERITABLE,
        # recognised only to be refused: not inherited
        **{key: {"not": {}} for key in NOT_INHERITED_KEYS},
    },
    "experiment": {
        "name": _TEXT,
        "phase": _nullable(_PHASE),
        "sub_experiments": _SUB_EXPERIMENTS,
        "success_criteria": _CRITERIA,
        "dependencies": _ID_LIST,
        "replaces": _ID_LIST,
        "retired": _nullable({"type": "boolean"}),
        "accepted": _ACCEPTED,
        "achieved": _ACHIEVED,
        **_INHERITABLE,
    },
    "sub_experiment": {
        "name": _TEXT,
        "success_criteria": _CRITERIA,
        "dependencies": _ID_LIST,
        "accepted": _ACCEPTED,
        "achieved": _ACHIEVED,
        **_INHERITABLE,
    },
    "pivot": {
        "name": _TEXT,
        "type": _TEXT,
        "rationale": _TEXT,
        "sub_experiments": _SUB_EXPERIMENTS,
        "success_criteria": _CRITERIA,
        "achieved": _ACHIEVED,
        "accepted": _ACCEPTED,
        **_INHERITABLE,
    },
    "gate": {
        "name": _TEXT,
        "experiments": _ID_LIST,
        "unlocks": _nullable(
            {
                "anyOf": [
                    {"type": "integer"},
                    {
                        "type": "string",
                        "description": 'an experiment id, a phase ("Phase 2 (...)"), or free text',
                    },
                    {"type": "array", "items": _ID},
                    {"$ref": "#/$defs/unlocks"},
                ]
            }
        ),
        "accepted": _ACCEPTED,
    },
    "resources": {
        "gpu": _nullable({"type": "string", "description": 'Modal GPU string: "A100-80GB", "H100:2"'}),
        "timeout": _nullable(
            {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT, "description": "seconds"}
        ),
        "memory": _nullable({"type": "number", "exclusiveMinimum": 0, "description": "MiB"}),
        "cpu": _nullable({"type": "number", "exclusiveMinimum": 0}),
        "retries": _nullable({"type": "integer", "minimum": 0}),
        "isolate": _nullable(
            {"type": "boolean", "description": "process executor: a fresh worker process for every seed"}
        ),
        "max_seeds_per_worker": _nullable(
            {
                "type": "integer",
                "minimum": 1,
                "description": "process executor: seeds one warm worker runs, then a new one (default 100)",
            }
        ),
        "slurm": _nullable({"$ref": "#/$defs/slurm"}),
    },
    "slurm": {
        key: _nullable(_SLURM_FRAGMENTS.get(key, {"description": f"submitit's slurm_{key}"}))
        for key in SLURM_KEYS
    },
    "select": {"metric": {"type": "string", "minLength": 1}, "mode": _nullable({"enum": ["max", "min"]})},
    "modal": {
        "python": _nullable({"type": "string", "description": 'quoted: "3.11"'}),
        "pip": _STRINGS,
        "apt": _STRINGS,
        "env": _nullable({"type": "object", "additionalProperties": _TEXT}),
        "secrets": _STRINGS,
        "volumes": _nullable({"type": "object", "additionalProperties": {"type": "string"}}),
    },
    "accepted": _ACCEPTED_FIELDS,
    "unlocks": {"phase": _PHASE},
}

# levels where unknown keys are refused rather than kept as annotations
_CLOSED = {"select", "slurm"}
_REQUIRED = {"select": ["metric"], "accepted": ["reason"], "unlocks": ["phase"]}
_TITLES = {
    "plan": "pytest-mlexp research plan",
    "project": "the project",
    "defaults": "settings inherited by every sub-experiment",
    "experiment": "an experiment",
    "sub_experiment": "a sub-experiment",
    "pivot": "a pivot block (a key starting with pivot, or type: pivot): its own sub-experiments "
    "and criteria; met when the original criteria are not -> verdict passed_with_pivot",
    "gate": "a gate",
    "resources": "resources of a sub-experiment",
    "slurm": "the slurm executor's sbatch settings (submitit's slurm_* parameters)",
    "select": "which sweep point represents the sweep",
    "modal": "the Modal image, secrets and volumes",
    "accepted": "a human decision: counts as passed, always listed for review",
    "unlocks": "a phase to unlock",
}


def _level(level: str) -> Schema:
    keys = KNOWN_KEYS[level]
    fragments = _FRAGMENTS[level]
    missing = [k for k in keys if k not in fragments]
    extra = [k for k in fragments if k not in keys]
    if missing or extra:
        raise RuntimeError(
            f"schema out of step with plan.KNOWN_KEYS[{level!r}]: missing {missing}, extra {extra}"
        )
    out: Schema = {
        "type": "object",
        "description": _TITLES[level],
        "properties": {k: fragments[k] for k in keys},
        "additionalProperties": level not in _CLOSED,
    }
    if level in _REQUIRED:
        out["required"] = _REQUIRED[level]
    if level == "experiment":  # pivot blocks, by key (``type: pivot`` cannot be told apart here)
        pivot = {"anyOf": [{"$ref": "#/$defs/pivot"}, {"not": {"type": "object"}}]}
        out["patternProperties"] = {"^[Pp][Ii][Vv][Oo][Tt]": pivot}
    return out


def plan_schema() -> Schema:
    """The plan's JSON Schema as a dict."""
    if set(_FRAGMENTS) != set(KNOWN_KEYS):
        raise RuntimeError("schema levels out of step with plan.KNOWN_KEYS")
    defs = {level: _level(level) for level in KNOWN_KEYS if level != "plan"}
    defs["criterion"] = _CRITERION
    top = _level("plan")
    accepted = defs["accepted"]
    defs["accepted"] = {"anyOf": [{"type": "string", "minLength": 1}, accepted]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": _TITLES["plan"],
        **{k: v for k, v in top.items() if k != "description"},
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    """The schema as the text of ``schema/plan.schema.json``."""
    return json.dumps(plan_schema(), indent=2, ensure_ascii=False) + "\n"


def published_path() -> Path:
    return Path(__file__).with_name("schema") / "plan.schema.json"


def main(argv: list[str] | None = None) -> int:
    """Print the schema; ``--write`` updates the published file; ``--check`` fails if it drifted."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in args:
        published_path().write_text(text, encoding="utf-8")
        return 0
    if "--check" in args:
        if published_path().read_text(encoding="utf-8") != text:
            sys.stderr.write("plan.schema.json is out of date: run python -m pytest_mlexp.schema --write\n")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
