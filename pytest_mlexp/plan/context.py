"""The parsing context (file, loaded document, errors at a line) and the small value parsers
every level of a plan shares: ids, id lists, text, ``accepted`` and ``phase``."""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any

from ..model import ID_RE, Accepted, Loc, PlanError
from ..structs import struct
from ..textutil import lazy_re
from ..yamlload import Doc
from .keys import KNOWN_SETS, near_miss
from .limits import MAX_ID_LENGTH, shown

PHASE_VALUE = lazy_re(r"^\s*(?:phase\s*)?(\d+)\b", re.IGNORECASE)
_MESSAGE_CHARS = 300
ID_RULE = "ids are letters, digits, '_', '.' and '-', starting with a letter or digit"

UNSET: Any = object()


@struct
class Ctx:
    file: str
    doc: Doc
    # ids of the params mappings and lists already checked (aliases share them)
    walked: set[int] = field(default_factory=set)

    def loc(self, line: int) -> Loc:
        return Loc(self.file, line)

    def err(self, line: int, message: str, fix: str) -> PlanError:
        # Values quoted in messages are cut where they are quoted (``shown``); this is the net
        # for text built elsewhere (a criterion's parser), so a message always stays short.
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 3] + "..."
        if len(fix) > _MESSAGE_CHARS:
            fix = fix[: _MESSAGE_CHARS - 3] + "..."
        return PlanError(self.loc(line), message, fix)

    def split(
        self, mapping: dict[Any, Any], level: str, where: str, *, also_meta: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any], dict[Any, Any]]:
        """Known keys of ``level`` and the annotations, in plan order; near misses are errors."""
        known_keys = KNOWN_SETS[level]
        known: dict[str, Any] = {}
        meta: dict[Any, Any] = {}
        for key, value in mapping.items():
            if key in known_keys:
                known[key] = value
                if key in also_meta:
                    meta[key] = value
                continue
            guess = near_miss(key, level)
            if guess is not None:
                raise self.err(
                    self.doc.key_line(mapping, key),
                    f"unknown key {shown(key)} in {where}",
                    f"did you mean {guess}?",
                )
            meta[key] = value
        return known, meta

    def kline(self, mapping: Any, key: Any) -> int:
        """The line of ``key`` in ``mapping``, else of the mapping itself."""
        info = self.doc.maps.get(id(mapping))
        if info is None:
            return 1
        entry = info[1].get(key)
        return entry[0] if entry is not None else info[0]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {shown(value)}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def check_id(ctx: Ctx, value: Any, line: int, what: str) -> str:
    if not isinstance(value, str):
        raise ctx.err(line, f"{what} id must be a string, not {type_name(value)}", "quote the id")
    if len(value) > MAX_ID_LENGTH:
        raise ctx.err(
            line,
            f"{what} id {shown(value)} is {len(value):,} characters long: ids are at most "
            f"{MAX_ID_LENGTH} (they name folders and files)",
            f"shorten it to {MAX_ID_LENGTH} characters or fewer",
        )
    if not ID_RE.fullmatch(value):  # fullmatch: "$" alone lets a trailing newline through
        raise ctx.err(line, f"invalid {what} id {shown(value)}: {ID_RULE}", f"rename {shown(value)}")
    return value


def id_list(ctx: Ctx, mapping: dict[Any, Any], key: str, what: str) -> list[tuple[str, int]]:
    """A list of ids (a single string is a list of one), each with the line it was written on."""
    raw = mapping.get(key)
    line = ctx.kline(mapping, key)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [(check_id(ctx, raw, line, what), line)]
    if not isinstance(raw, list):
        raise ctx.err(
            line, f"{key} must be a list of {what} ids, not {type_name(raw)}", f"write {key}: [id, ...]"
        )
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        item_line = ctx.doc.item_line(raw, index, line)
        ident = check_id(ctx, item, item_line, what)
        if ident not in seen:
            seen.add(ident)
            out.append((ident, item_line))
    return out


def as_text(ctx: Ctx, value: Any, line: int, what: str) -> str:
    if isinstance(value, dict | list):
        raise ctx.err(
            line, f"{what} must be text, not {type_name(value)}", f"write {what} as a quoted string"
        )
    return "" if value is None else str(value)


def parse_accepted(ctx: Ctx, raw: Any, line: int) -> Accepted:
    fix = 'write accepted: {reason: "...", by: "...", date: "YYYY-MM-DD"}'
    if isinstance(raw, str) and raw.strip():
        return Accepted(reason=raw)
    if not isinstance(raw, dict):
        raise ctx.err(line, f"accepted must be a mapping with a reason, not {type_name(raw)}", fix)
    known, _ = ctx.split(raw, "accepted", "accepted")
    reason = known.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ctx.err(line, "accepted needs a reason (the human decision, in words)", fix)
    return Accepted(
        reason=reason,
        by=as_text(ctx, known.get("by"), ctx.kline(raw, "by"), "accepted.by"),
        date=as_text(ctx, known.get("date"), ctx.kline(raw, "date"), "accepted.date"),
    )


def parse_phase(ctx: Ctx, raw: Any, line: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        m = PHASE_VALUE.match(raw)
        if m:
            return int(m.group(1))
    raise ctx.err(line, f"phase must be a whole number, not {type_name(raw)}", "write phase: 2")
