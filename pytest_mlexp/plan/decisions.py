"""What a plan records besides what to run (SPEC section 10): measurements written by hand
(``achieved:``), pivot blocks with their own sub-experiments and criteria, and the plan's own
``status``.  The verdict (``verdict.py``) reads what this builds; ``load.py`` calls it.

Decisions the SPEC leaves open (also in the README):

- ``achieved`` at sub-experiment, pivot and experiment level is a mapping metric -> number; on
  a criterion it is the number itself.  Anything else (text, a list, a bool, a bare number
  where a mapping is expected) is metadata and never judged.
- A pivot block is a mapping under an experiment whose key starts with ``pivot`` (any case) or
  that says ``type: pivot``, *and* holds ``sub_experiments`` or ``success_criteria``; any other
  such mapping stays an annotation.  A pivot block is read, so a near miss of one of its keys
  (``sucess_criteria``) is an error, as anywhere else.  Its inheritable settings (``params``,
  ``executor``, ...) sit between the experiment's and its sub-experiments'.
- A sub-experiment named both by the main list and by a pivot is one sub-experiment of the
  pivot, in the main list's place; its settings are written in one of the two places.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from ..model import Achieved, Criterion, Loc, Pivot, PlanStatus
from .context import Ctx, as_text, check_id, parse_accepted, type_name
from .keys import PIVOT_KEYS
from .layers import Layer, merge_layers, parse_layer

__all__ = [
    "SubEntry",
    "achieved_map",
    "achieved_of",
    "achieved_value",
    "is_pivot_block",
    "parse_pivots",
    "plan_status",
    "sub_entries",
]

#: (id as written, spec or None, line): one entry of a ``sub_experiments`` list or mapping.
SubEntry = tuple[Any, Any, int]
#: ``load._parse_criteria``: (owner mapping, where) -> the criteria it holds.
ParseCriteria = Callable[[Ctx, dict[Any, Any], str], tuple[Criterion, ...]]


def _number(value: Any) -> float | None:
    """A finite float from a number written in the plan; None for anything else (metadata)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        out = float(value)
    except (OverflowError, ValueError):
        return None
    return out if math.isfinite(out) else None


def achieved_value(raw: Any, loc: Loc, where: str) -> Achieved | None:
    """``achieved: 0.93`` on a criterion: the value, or None when it is not a finite number."""
    value = _number(raw)
    return None if value is None else Achieved(value, loc, where)


def achieved_map(raw: Any, file: str, lines: Mapping[Any, int], where: str) -> dict[str, Achieved]:
    """``achieved: {metric: number}`` at sub-experiment, pivot or experiment level.

    ``lines``: the line of each key of ``raw``.  Entries that are not numbers are metadata."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, Achieved] = {}
    for metric, value in raw.items():
        got = achieved_value(value, Loc(file, lines.get(metric, 1)), where)
        if got is not None and isinstance(metric, str):
            out[metric] = got
    return out


def achieved_of(ctx: Ctx, owner: dict[Any, Any], raw: Any, where: str) -> dict[str, Achieved]:
    """``owner``'s ``achieved: {metric: number}`` with the line of each value."""
    if not isinstance(raw, dict):
        return {}
    lines = {k: ctx.doc.value_line(raw, k, ctx.kline(owner, "achieved")) for k in raw}
    return achieved_map(raw, ctx.file, lines, where)


def is_pivot_block(key: Any, value: Any) -> bool:
    """Whether an experiment's annotation ``key: value`` is a pivot block (module docstring)."""
    if not isinstance(value, Mapping):
        return False
    named = isinstance(key, str) and key.lower().startswith("pivot")
    typed = str(value.get("type", "")).strip().lower() == "pivot"
    return (named or typed) and ("sub_experiments" in value or "success_criteria" in value)


def plan_status(raw: Any, loc: Loc) -> PlanStatus | None:
    """The plan's ``status:`` of an experiment, when it is a plain word or phrase."""
    if raw is None or isinstance(raw, (Mapping, list)):
        return None
    text = str(raw).strip()
    return PlanStatus(text, loc) if text else None


def sub_entries(ctx: Ctx, owner: dict[Any, Any], raw_subs: Any, where: str) -> list[SubEntry]:
    """``sub_experiments`` as (id, spec, line): a list of ids, or a mapping of id -> spec."""
    sub_line = ctx.kline(owner, "sub_experiments")
    entries: list[SubEntry] = []
    if isinstance(raw_subs, list):
        for index, item in enumerate(raw_subs):
            item_line = ctx.doc.item_line(raw_subs, index, sub_line)
            if isinstance(item, dict):
                raise ctx.err(
                    item_line,
                    f"sub_experiments of {where} is a list, so its items must be ids",
                    "write sub_experiments as a mapping of id -> spec (no '-' before each id)",
                )
            entries.append((item, None, item_line))
    elif isinstance(raw_subs, dict):
        entries = [(sid, sspec, ctx.kline(raw_subs, sid)) for sid, sspec in raw_subs.items()]
    elif raw_subs is not None:
        raise ctx.err(
            sub_line,
            f"sub_experiments of {where} must be a list of ids or a mapping of id -> spec, "
            f"not {type_name(raw_subs)}",
            "write sub_experiments: [e_1, e_2]",
        )
    return entries


def parse_pivots(
    ctx: Ctx, exp_id: str, meta: Mapping[Any, Any], base: Layer, parse_criteria: ParseCriteria
) -> tuple[list[Pivot], dict[str, tuple[str, Any, int, Layer]]]:
    """The experiment's pivot blocks (found among its annotations ``meta``), and their
    sub-experiments: id -> (pivot key, spec, line, inherited settings).  A pivot's criteria are
    experiment-level criteria that read only its own sub-experiments."""
    pivots: list[Pivot] = []
    found: dict[str, tuple[str, Any, int, Layer]] = {}
    for key, block in meta.items():
        if not is_pivot_block(key, block):
            continue
        pkey = str(key)
        where = f"pivot {pkey!r} of experiment {exp_id!r}"
        known, _ = ctx.split(block, "pivot", where, also_meta=PIVOT_KEYS)
        layer = merge_layers(base, parse_layer(ctx, block, known, where))
        ids: list[str] = []
        for sid, sspec, sline in sub_entries(ctx, block, known.get("sub_experiments"), where):
            check_id(ctx, sid, sline, "sub-experiment")
            if sid in found:
                raise ctx.err(
                    sline,
                    f"sub-experiment {sid!r} is in two pivot blocks of experiment {exp_id!r} "
                    f"({found[sid][0]!r} and {pkey!r})",
                    "a sub-experiment belongs to one pivot: rename one",
                )
            found[sid] = (pkey, sspec, sline, layer)
            ids.append(sid)
        raw_name, rationale, accepted = known.get("name"), known.get("rationale"), known.get("accepted")
        where_line = (
            ctx.kline(block, "sub_experiments") if "sub_experiments" in block else ctx.doc.line(block)
        )
        pivots.append(
            Pivot(
                key=pkey,
                name=pkey if raw_name is None else as_text(ctx, raw_name, ctx.kline(block, "name"), "name"),
                rationale="" if rationale is None else str(rationale).strip(),
                sub_ids=tuple(ids),
                success_criteria=parse_criteria(ctx, block, where),
                achieved=achieved_of(ctx, block, known.get("achieved"), f"pivot {pkey}"),
                accepted=None
                if accepted is None
                else parse_accepted(ctx, accepted, ctx.kline(block, "accepted")),
                loc=ctx.loc(where_line),
            )
        )
    return pivots, found
