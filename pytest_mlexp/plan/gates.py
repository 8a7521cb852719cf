"""Gates: their member experiments and what they unlock (experiment ids, a phase, or text)."""

from __future__ import annotations

import re
from typing import Any

from ..model import ID_RE, Experiment, Gate, Unlocks
from ..textutil import lazy_re
from .checks import unknown_ref
from .context import Ctx, as_text, check_id, id_list, parse_accepted, parse_phase, type_name
from .keys import closest_id
from .limits import shown

_PHASE_IN_TEXT = lazy_re(r"\bphase\s*(\d+)", re.IGNORECASE)


def parse_gates(ctx: Ctx, top: dict[Any, Any], raw: Any, experiments: list[Experiment]) -> list[Gate]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "gates"),
            f"gates must be a mapping of id -> gate, not {type_name(raw)}",
            "write gates: {g1: {...}}",
        )
    exp_ids = [e.id for e in experiments]
    known_ids = set(exp_ids)
    out: list[Gate] = []
    for gate_id, spec in raw.items():
        line = ctx.kline(raw, gate_id)
        check_id(ctx, gate_id, line, "gate")
        where = f"gate {gate_id!r}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ctx.err(
                line,
                f"{where} must be a mapping, not {type_name(spec)}",
                "write experiments: and unlocks: below it",
            )
        known, meta = ctx.split(spec, "gate", where)
        members = id_list(ctx, spec, "experiments", "experiment")
        for member, mline in members:
            if member not in known_ids:
                raise unknown_ref(ctx, mline, member, f"experiment {member!r} in {where}", exp_ids)
        accepted = known.get("accepted")
        name = known.get("name")
        out.append(
            Gate(
                id=gate_id,
                name=gate_id if name is None else as_text(ctx, name, ctx.kline(spec, "name"), "name"),
                experiments=tuple(m for m, _ in members),
                unlocks=_parse_unlocks(ctx, spec, where, exp_ids),
                accepted=None
                if accepted is None
                else parse_accepted(ctx, accepted, ctx.kline(spec, "accepted")),
                meta=meta,
                loc=ctx.loc(line),
            )
        )
    return out


def _parse_unlocks(ctx: Ctx, spec: dict[Any, Any], where: str, exp_ids: list[str]) -> Unlocks:
    raw = spec.get("unlocks")
    line = ctx.kline(spec, "unlocks")
    fix = 'write unlocks: [experiment-id, ...], unlocks: 2 (a phase), or unlocks: "Phase 2 (...)"'
    if raw is None:
        return Unlocks(kind="text")
    if isinstance(raw, bool):
        raise ctx.err(line, f"unlocks of {where} cannot be a boolean", fix)
    if isinstance(raw, int):
        return Unlocks(kind="phase", phase=raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text in exp_ids:
            return Unlocks(kind="ids", ids=(text,))
        if text.isdigit():
            return Unlocks(kind="phase", phase=int(text), text=raw)
        m = _PHASE_IN_TEXT.search(text)
        if m:
            return Unlocks(kind="phase", phase=int(m.group(1)), text=raw)
        guess = closest_id(text, exp_ids) if ID_RE.fullmatch(text) else None
        if guess is not None:
            # one id-like word close to an experiment id is a typo, not free text: as text it
            # would silently unlock nothing
            raise ctx.err(
                line,
                f"unlocks of {where} names an unknown experiment {shown(text)}",
                f"did you mean {guess}?",
            )
        return Unlocks(kind="text", text=raw)
    if isinstance(raw, list):
        ids = id_list(ctx, spec, "unlocks", "experiment")
        for ident, iline in ids:
            if ident not in exp_ids:
                raise unknown_ref(ctx, iline, ident, f"experiment {ident!r} in unlocks of {where}", exp_ids)
        return Unlocks(kind="ids", ids=tuple(i for i, _ in ids))
    if isinstance(raw, dict):
        known, _ = ctx.split(raw, "unlocks", f"unlocks of {where}")
        if "phase" not in known:
            raise ctx.err(line, f"unlocks of {where} is a mapping without phase", "write unlocks: {phase: 2}")
        phase = parse_phase(ctx, known["phase"], ctx.kline(raw, "phase"))
        if phase is None:
            raise ctx.err(line, f"unlocks of {where} has an empty phase", "write unlocks: {phase: 2}")
        return Unlocks(kind="phase", phase=phase)
    raise ctx.err(line, f"unlocks of {where} cannot be {type_name(raw)}", fix)
