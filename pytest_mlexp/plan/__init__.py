"""Reading a plan file: ``load_plan``/``parse_plan_text`` give the frozen model (``model.py``),
and every user mistake is a ``PlanError`` naming the file, the line and the fix.

One concern per module, each importing only those above it in this list:

- ``keys``: the key tables of each level (the JSON Schema is generated from them), near misses;
- ``limits``: every limit on what a plan may ask for (ids, seeds, sweeps, timeouts, and the
  YAML-level ones of ``yamlload.py``), in one place;
- ``context``: the parsing context and the small shared value parsers (ids, text, phase);
- ``layers``: inheritable settings and how levels merge; sweeps, seeds, resources, marks;
- ``decisions``: what a plan records besides what to run (SPEC section 10): ``achieved``
  values, pivot blocks, the plan's ``status``;
- ``checks``: references across the plan, criterion references, and the cycle check;
- ``gates``: gates and what they unlock;
- ``load``: the file, the document, project, defaults, experiments and sub-experiments.

The YAML itself (1.2 scalars, line marks, the limits on aliases, nesting and numbers) is read
by ``yamlload.py``.
"""

from __future__ import annotations

from .keys import (
    ANNOTATION_KEYS,
    GPU_TYPE_AS,
    HANDLER_RE,
    KNOWN_KEYS,
    MARK_RE,
    NOT_INHERITED_KEYS,
    SLURM_KEYS,
    near_miss,
)
from .load import load_plan, parse_plan_text

__all__ = [
    "ANNOTATION_KEYS",
    "GPU_TYPE_AS",
    "HANDLER_RE",
    "KNOWN_KEYS",
    "MARK_RE",
    "NOT_INHERITED_KEYS",
    "SLURM_KEYS",
    "load_plan",
    "near_miss",
    "parse_plan_text",
]
