"""Tables in four formats: a plain terminal table, Markdown, CSV and JSON (standard library only:
a table library would not earn its place for aligned columns)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["FORMATS", "cell_text", "param_text", "render"]

FORMATS = ("table", "md", "csv", "json")
_MAX_CELL = 48


def cell_text(value: Any) -> str:
    """A value for a cell: numbers to 4 significant digits (as everywhere in pytest-mlexp)."""
    from ..textutil import fmt_number

    if value is None:
        return ""
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return fmt_number(value)
    return str(value)


def param_text(value: Any) -> str:
    """A param's value as the plan writes it (``3.0`` stays ``3.0``: a param is an input, exact)."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _plain(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cut = [[c if len(c) <= _MAX_CELL else c[: _MAX_CELL - 1] + "…" for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in cut:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cut]
    return "\n".join(lines)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(text: str) -> str:
        return " ".join(text.splitlines()).replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render(fmt: str, header: Sequence[str], rows: Sequence[Sequence[Any]], data: Any = None) -> str:
    """``rows`` under ``header`` as ``fmt``; JSON prints ``data`` (structured) when given."""
    if fmt == "json":
        payload = data if data is not None else [dict(zip(header, row, strict=True)) for row in rows]
        return json.dumps(_json_safe(payload), indent=2, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if c is None else (repr(c) if isinstance(c, float) else c) for c in row])
        return buf.getvalue().rstrip("\n")
    text_rows = [[cell_text(c) for c in row] for row in rows]
    return _md(header, text_rows) if fmt == "md" else _plain(header, text_rows)
