"""``mlexp diff EXPERIMENT [--against previous|<date>|<git commit>]``: each result of an
experiment against an earlier run of it (``compare.py``): metric deltas with the confidence
interval of the difference where seeds allow, params that changed, criteria levels that moved
(both runs judged by today's criteria)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..compare import RunDiff, against, diff_entries
from ..verdict import judge_sub, lookup_for
from .project import CliError, Project
from .tables import cell_text, param_text, render

__all__ = ["diff"]


def _levels(project: Project, sub: Any, entry: Mapping[str, Any]) -> dict[str, str]:
    if not sub.success_criteria or entry.get("status") not in ("passed", "failed"):
        return {}
    lookup = lookup_for(project.plan, project.entry_of) if sub.implicit_dependencies else None
    return {j.metric: j.level for j in judge_sub(sub, entry, lookup=lookup)}


def _nodes(project: Project, exp: Any) -> list[tuple[Any, str, Mapping[str, Any]]]:
    """(sub-experiment, result name, current entry) of every result that ran."""
    subs = project.doc(exp.id).get("sub_experiments") or {}
    out = []
    for sub in exp.sub_experiments:
        entry = subs.get(sub.id)
        if not isinstance(entry, Mapping):
            continue
        points = entry.get("points")
        if sub.sweep and isinstance(points, Mapping):
            for key in [p.key for p in sub.points() if p.key in points]:
                if isinstance(points[key], Mapping):
                    out.append((sub, f"{sub.id}[{key}]", points[key]))
        elif entry.get("status") not in (None, "blocked"):
            out.append((sub, sub.id, entry))
    return out


def diff(project: Project, experiment: str, spec: str, fmt: str) -> str:
    (exp,) = project.experiments([experiment])
    results: list[tuple[str, RunDiff | None]] = []
    stale = project.doc(exp.id).get("stale") or {}
    for sub, name, entry in _nodes(project, exp):
        try:
            old = against(entry, spec, stale.get(name))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if old is None:
            results.append((name, None))
            continue
        results.append(
            (
                name,
                diff_entries(
                    old,
                    entry,
                    old_levels=_levels(project, sub, old),
                    new_levels=_levels(project, sub, entry),
                ),
            )
        )
    if fmt == "json":
        data = {
            "experiment": exp.id,
            "against": spec,
            "results": [
                {"sub_experiment": name, "earlier": None}
                if d is None
                else {
                    "sub_experiment": name,
                    "earlier": d.old_finished_at,
                    "current": d.new_finished_at,
                    "metrics": [m.to_dict() for m in d.metrics],
                    "params": [{"name": n, "old": a, "new": b} for n, a, b in d.params],
                    "levels": [{"metric": m, "old": a, "new": b} for m, a, b in d.levels],
                    "notes": list(d.notes),
                }
                for name, d in results
            ],
        }
        return render("json", [], [], data=data)
    if fmt == "csv":
        header = [
            "sub_experiment",
            "kind",
            "name",
            "old",
            "new",
            "delta",
            "ci95_low",
            "ci95_high",
            "pairing",
            "n",
        ]
        rows: list[list[Any]] = []
        for name, d in results:
            if d is None:
                rows.append([name, "none", "", "", "", "", "", "", "", ""])
                continue
            for m in d.metrics:
                low, high = m.ci if m.ci is not None else (None, None)
                rows.append(
                    [name, "metric", m.metric, m.old, m.new, m.delta, low, high, m.pairing, m.n or None]
                )
            for n, a, b in d.params:
                rows.append([name, "param", n, a, b, None, None, None, None, None])
            for metric, a, b in d.levels:
                rows.append([name, "level", metric, a, b, None, None, None, None, None])
        return render("csv", header, rows)
    blocks = [f"{exp.id}: against {spec}"]
    for name, d in results:
        if d is None:
            why = "history is empty" if spec == "previous" else f"none matches {spec}"
            blocks.append(f"{name}: no earlier run ({why})")
            continue
        head = f"{name}: {d.old_finished_at or '?'} → {d.new_finished_at or '?'}"
        lines = [f"### {head}" if fmt == "md" else head]
        rows = []
        for m in d.metrics:
            ci = ""
            if m.ci is not None:
                ci = f"[{cell_text(m.ci[0])}, {cell_text(m.ci[1])}] ({m.pairing}, n={m.n})"
            delta = "" if m.delta is None else ("+" if m.delta > 0 else "") + cell_text(m.delta)
            rows.append([m.metric, m.old, m.new, delta, ci])
        if rows:
            lines.append(render(fmt, ["metric", "earlier", "now", "delta", "95% CI of the delta"], rows))
        for n, a, b in d.params:
            before = param_text(a) if a is not None else "(none)"
            after = param_text(b) if b is not None else "(none)"
            lines.append(f"param {n}: {before} → {after}")
        for metric, a, b in d.levels:
            lines.append(f"level {metric}: {a or '(none)'} → {b or '(none)'}")
        lines += list(d.notes)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
