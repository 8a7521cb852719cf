"""``mlexp show [EXPERIMENT...]``: the current results as a params × metrics table, with each
criterion's level judged by today's plan (SPEC section 11)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..compare import flat_params
from ..records import outdated_reason
from ..verdict import experiment_verdict, judge_sub, lookup_for
from .project import Project
from .tables import param_text, render

__all__ = ["show"]


def _row(
    project: Project, exp_id: str, sub: Any, point: str | None, entry: Any, selected: bool
) -> dict[str, Any]:
    name = sub.id if point is None else f"{sub.id}[{point}]"
    row: dict[str, Any] = {"experiment": exp_id, "sub_experiment": name, "status": "not run"}
    row.update(
        params={}, metrics={}, levels={}, outdated=None, reused=None, finished_at=None, fingerprint=None
    )
    if point is not None:
        row["selected"] = selected
    if not isinstance(entry, Mapping):
        return row
    row["status"] = str(entry.get("status") or "not run")
    row["params"] = flat_params(entry.get("params"))
    metrics = entry.get("metrics")
    row["metrics"] = dict(metrics) if isinstance(metrics, Mapping) else {}
    if entry.get("status") in ("passed", "failed") and sub.success_criteria:
        lookup = lookup_for(project.plan, project.entry_of) if sub.implicit_dependencies else None
        judged = judge_sub(sub, entry, lookup=lookup)
        row["levels"] = {j.metric: j.level for j in judged}
        if point is None or selected:  # a sweep's criteria are judged on its selected point
            row["status"] = "passed" if all(j.passed for j in judged) else "failed"
    row["outdated"] = outdated_reason(entry)
    reused = entry.get("reused")
    if isinstance(reused, Mapping):
        row["reused"] = str(reused.get("from") or "")[:10] + (" (imported)" if reused.get("imported") else "")
    elif entry.get("imported"):
        row["reused"] = "imported"
    row["finished_at"] = entry.get("finished_at")
    prov = entry.get("provenance")
    row["fingerprint"] = prov.get("fingerprint") if isinstance(prov, Mapping) else None
    return row


def rows_of(project: Project, exp: Any) -> list[dict[str, Any]]:
    subs = project.doc(exp.id).get("sub_experiments") or {}
    out = []
    for sub in exp.sub_experiments:
        entry = subs.get(sub.id)
        points = entry.get("points") if isinstance(entry, Mapping) else None
        if sub.sweep and isinstance(entry, Mapping) and isinstance(points, Mapping) and points:
            selected = entry.get("selected")
            order = [p.key for p in sub.points() if p.key in points]
            order += [k for k in points if k not in order]
            for key in order:
                out.append(_row(project, exp.id, sub, key, points[key], key == selected))
        else:
            out.append(_row(project, exp.id, sub, None, entry, False))
    return out


def show(project: Project, ids: list[str], fmt: str) -> str:
    exps = project.experiments(ids)
    blocks: list[str] = []
    data: list[dict[str, Any]] = []
    flat_rows: list[dict[str, Any]] = []
    for exp in exps:
        rows = rows_of(project, exp)
        verdict = experiment_verdict(project.plan, exp, project.doc(exp.id), entries=project.entry_of)
        met = sum(1 for j in verdict.criteria if j.passed)
        summary = {
            "status": verdict.status,
            "recommendation": verdict.recommendation,
            "confidence": verdict.confidence,
            "criteria_met": f"{met}/{len(verdict.criteria)}",
            "criteria": {
                j.metric: {"value": j.value, "level": j.level, "passed": j.passed} for j in verdict.criteria
            },
        }
        data.append({"experiment": exp.id, "name": exp.name, "verdict": summary, "rows": rows})
        flat_rows += rows
        if fmt in ("table", "md"):
            blocks.append(_text_block(exp, summary, rows, fmt))
    if fmt == "json":
        return render("json", [], [], data={"experiments": data})
    if fmt == "csv":
        header, body = _columns(flat_rows, varying_only=False)
        return render("csv", header, body)
    return "\n\n".join(blocks)


def _columns(rows: list[dict[str, Any]], *, varying_only: bool) -> tuple[list[str], list[list[Any]]]:
    params: list[str] = []
    metrics: list[str] = []
    for row in rows:
        params += [p for p in row["params"] if p not in params]
        metrics += [m for m in row["metrics"] if m not in metrics]
    ran = [r for r in rows if r["status"] != "not run"]
    if varying_only and len(ran) > 1:
        params = [p for p in params if len({repr(r["params"].get(p)) for r in ran}) > 1]
    leveled = [m for m in metrics if any(m in r["levels"] for r in rows)]
    if varying_only:
        header = ["sub_experiment", "status", *params, *metrics, "outdated", "reused", "finished"]
        body = []
        for r in rows:
            cells: list[Any] = [r["sub_experiment"] + (" *" if r.get("selected") else ""), r["status"]]
            cells += [param_text(r["params"].get(p)) for p in params]
            for m in metrics:
                value = r["metrics"].get(m)
                from .tables import cell_text

                level = r["levels"].get(m)
                cells.append(f"{cell_text(value)} ({level})" if level and value is not None else value)
            cells += [r["outdated"] or "", r["reused"] or "", (r["finished_at"] or "")[:16]]
            body.append(cells)
        return header, body
    header = ["experiment", "sub_experiment", "selected", "status"]
    header += (
        [f"param.{p}" for p in params] + [f"metric.{m}" for m in metrics] + [f"level.{m}" for m in leveled]
    )
    header += ["outdated", "reused", "finished_at", "fingerprint"]
    body = []
    for r in rows:
        cells = [r["experiment"], r["sub_experiment"], r.get("selected", ""), r["status"]]
        cells += [r["params"].get(p) for p in params]
        cells += [r["metrics"].get(m) for m in metrics]
        cells += [r["levels"].get(m) for m in leveled]
        cells += [r["outdated"], r["reused"], r["finished_at"], r["fingerprint"]]
        body.append(cells)
    return header, body


def _text_block(exp: Any, summary: Mapping[str, Any], rows: list[dict[str, Any]], fmt: str) -> str:
    met = summary["criteria_met"]
    head = (
        f"{exp.id}: {summary['recommendation']} ({summary['status']}; {met} criteria met; "
        f"confidence {summary['confidence']})"
    )
    lines = [f"## {head}" if fmt == "md" else head]
    params: dict[str, set[str]] = {}
    ran = [r for r in rows if r["status"] != "not run"]
    for row in ran:
        for key, value in row["params"].items():
            params.setdefault(key, set()).add(repr(value))
    common = {
        k: next(iter(v)) for k, v in params.items() if len(v) == 1 and all(k in r["params"] for r in ran)
    }
    if common and len(rows) > 1:
        shown = ", ".join(f"{k}={v.strip(chr(39))}" for k, v in common.items())
        lines.append(f"params of every row: {shown}")
    header, body = _columns(rows, varying_only=True)
    if len(rows) > 1:
        keep = [i for i, h in enumerate(header) if h not in common]
        header = [header[i] for i in keep]
        body = [[row[i] for i in keep] for row in body]
    # columns nobody filled (no result outdated, nothing reused) are left out
    filled = [
        i
        for i, h in enumerate(header)
        if h in ("sub_experiment", "status") or any(r[i] not in (None, "") for r in body)
    ]
    header = [header[i] for i in filled]
    body = [[row[i] for i in filled] for row in body]
    lines += ["", render(fmt, header, body)] if fmt == "md" else [render(fmt, header, body)]
    if any(r.get("selected") for r in rows):
        lines.append("* the point that represents its sweep")
    return "\n".join(lines)
