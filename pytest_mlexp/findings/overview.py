"""The project overview, research/FINDINGS.md: the table of experiments and gates, key numbers,
the review list and the Mermaid gate and dependency graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import (
    Experiment,
    Gate,
    Plan,
    Verdict,
)
from ..textutil import fmt_number as fmt_value  # the one number formatter
from ..verdictwords import blocked_line, recommendation_text, verdict_word
from .common import _NOTICE, ExistsFn, ScrubFn, _always, _identity, _is_map, _link_target, _table

# --- the project overview ---------------------------------------------------------------------


def _unlocks_text(gate: Gate) -> str:
    u = gate.unlocks
    if u.kind == "ids":
        return ", ".join(u.ids)
    if u.kind == "phase":
        return u.text or f"phase {u.phase}"
    return u.text


def _phase(exp: Experiment) -> str:
    return "—" if exp.phase is None else str(exp.phase)


def _verdict_mark(v: Verdict) -> str:
    mark = "✅" if v.passed else ("·" if v.verdict == "not_run" else "❌")
    return f"{mark} {verdict_word(v)}"


def _key_numbers(v: Verdict) -> str:
    """Each deciding criterion's value and level: ``accuracy 0.973 (target)``."""
    judged = list(v.criteria)
    if v.pivot is not None:
        judged += [j for pv in v.pivots if pv.pivot.key == v.pivot for j in pv.criteria]
    parts = []
    for j in judged:
        value = fmt_value(j.value) if j.value is not None else "—"
        mark = ", recorded" if j.recorded is not None else ""
        parts.append(f"{j.metric} {value} ({j.level}{mark})")
    return "; ".join(parts) or "—"


def _criteria_met(verdict: Verdict | None) -> str:
    if verdict is None or not verdict.criteria:
        return "—"
    return f"{sum(1 for j in verdict.criteria if j.passed)}/{len(verdict.criteria)}"


def _last_run(doc: Mapping[str, Any] | None) -> str:
    if not _is_map(doc):
        return "—"
    latest = ""
    subs = doc.get("sub_experiments")
    if _is_map(subs):
        # The greatest stamp as text (what max() of them gives), compared as each is read: once
        # per entry, with no list or generator made for the one stamp most entries hold.
        for entry in subs.values():
            if not _is_map(entry):
                continue
            stamp = entry.get("finished_at")
            if stamp and (text := str(stamp)) > latest:
                latest = text
            points = entry.get("points")
            if points is not None and _is_map(points):
                for p in points.values():
                    if _is_map(p):
                        stamp = p.get("finished_at")
                        if stamp and (text := str(stamp)) > latest:
                            latest = text
    return latest or str(doc.get("updated_at") or "—")


# Node colours of the Mermaid graph, by verdict.
_MERMAID_CLASSES = {
    "passed": "fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20",
    "review": "fill:#fff3cd,stroke:#b8860b,color:#5d4300",
    "failed": "fill:#f8d7da,stroke:#b71c1c,color:#7f0000",
    "notrun": "fill:#eeeeee,stroke:#9e9e9e,color:#424242",
}
_MERMAID_LEGEND = (
    "Green: passed · amber: passed, to review · red: did not pass · grey: not run yet. Hexagons "
    "are gates. Solid arrows: a gate and what it unlocks, an experiment's `dependencies`; dotted: "
    "a sub-experiment that waits for one in another experiment (the label says which)."
)


def verdict_class(v: Verdict | None) -> str:
    """passed, review, failed or notrun: the colour of an experiment in the graph."""
    if v is None:
        return "notrun"
    named = getattr(v, "verdict", None)  # the wave-2 verdict names, where the model has them
    if named == "not_run":
        return "notrun"
    if named in ("passed_with_pivot", "accepted", "recorded"):
        return "review"
    if v.passed:
        return "passed" if v.recommendation == "proceed" and not v.review else "review"
    if named is None and v.status in ("not_started", "blocked"):
        return "notrun"
    return "failed"


def _mm(text: Any) -> str:
    """Text inside a quoted Mermaid label."""
    out = str(text).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return " ".join(out.replace("|", "/").split())


def mermaid_graph(
    plan: Plan, verdicts: Mapping[str, Verdict], gates: Sequence[tuple[Gate, bool, str]]
) -> list[str]:
    """The gates and dependencies as a Mermaid flowchart, each node coloured by its verdict."""
    ids = {exp.id: f"e{i}" for i, exp in enumerate(plan.experiments)}
    classes = {exp.id: verdict_class(verdicts.get(exp.id)) for exp in plan.experiments}
    lines = ["```mermaid", "flowchart LR"]
    for exp in plan.experiments:
        v = verdicts.get(exp.id)
        # the verdict and what to do about it: "passed · investigate"
        state = f"{getattr(v, 'verdict', v.status)} · {v.recommendation}" if v is not None else "not run"
        if classes[exp.id] == "notrun":
            state = "not run yet" if v is None or v.status == "not_started" else v.status
        lines.append(f'  {ids[exp.id]}["{_mm(exp.id)}<br/>{_mm(state)}"]:::{classes[exp.id]}')
    by_phase: dict[int, list[str]] = {}
    for exp in plan.experiments:
        if exp.phase is not None:
            by_phase.setdefault(exp.phase, []).append(exp.id)
    for k, (gate, passed, _detail) in enumerate(gates):
        gid = f"g{k}"
        members = [m for m in gate.experiments if m in ids]
        if gate.accepted is not None:
            cls = "review"
        elif passed:
            cls = "passed"
        elif members and all(classes[m] == "notrun" for m in members):
            cls = "notrun"
        else:
            cls = "failed"
        lines.append(f'  {gid}{{{{"{_mm(gate.name)}"}}}}:::{cls}')
        lines += [f"  {ids[m]} --> {gid}" for m in members]
        u = gate.unlocks
        targets: list[str] = list(u.ids) if u.kind == "ids" else []
        if u.kind == "phase" and u.phase is not None:
            targets = by_phase.get(u.phase, [])
        targets = [t for t in targets if t in ids]
        lines += [f"  {gid} --> {ids[t]}" for t in targets]
        if not targets and u.text:
            lines.append(f'  {gid} -.-> u{k}["{_mm(u.text)}"]')
    seen: set[tuple[str, str]] = set()
    for exp in plan.experiments:
        for dep in exp.dependencies:
            if dep in ids:
                lines.append(f"  {ids[dep]} -->|depends| {ids[exp.id]}")
                seen.add((dep, exp.id))
        for sub in exp.sub_experiments:
            for dep in (*sub.dependencies, *sub.implicit_dependencies):
                if not plan.has_sub(dep):
                    continue
                other = plan.sub(dep).experiment_id
                if other != exp.id and (other, exp.id) not in seen:
                    seen.add((other, exp.id))
                    lines.append(f'  {ids[other]} -.->|"{_mm(dep)} → {_mm(sub.id)}"| {ids[exp.id]}')
    lines += [f"  classDef {name} {style}" for name, style in _MERMAID_CLASSES.items()]
    return [*lines, "```", "", _MERMAID_LEGEND]


def render_project(
    plan: Plan,
    docs: Mapping[str, Mapping[str, Any]],
    verdicts: Mapping[str, Verdict],
    gates: Sequence[tuple[Gate, bool, str]],
    *,
    scrub: ScrubFn = _identity,
    exists: ExistsFn = _always,
) -> str:
    """The generated block of ``research/FINDINGS.md``: gates, experiments, what needs review.

    An experiment's FINDINGS.md is linked only when ``exists`` says it is there."""
    project = plan.project
    out: list[str] = [_NOTICE, f"## {project.name}: research overview", ""]
    if project.hypothesis:
        out += [f"**Hypothesis:** {project.hypothesis}", ""]
    replaced_by: dict[str, str] = {}
    for exp in plan.experiments:
        for old in exp.replaces:
            replaced_by.setdefault(old, exp.id)

    if gates:
        out += ["### Gates", ""]
        rows = []
        for gate, passed, detail in gates:
            if gate.accepted is not None:
                shown = f"✅ accepted ({gate.accepted.reason})"
            elif passed:
                shown = "✅ passed"
            else:
                shown = "❌ not passed" + (f": {detail}" if detail else "")
            rows.append(
                [f"{gate.name} (`{gate.id}`)", ", ".join(gate.experiments), shown, _unlocks_text(gate)]
            )
        out += _table(["Gate", "Experiments", "Status", "Unlocks"], rows)
        out.append("")

    from ..blocking import blockers as blockers_of

    if plan.experiments and (gates or any(e.dependencies for e in plan.experiments)):
        out += ["### Gates and dependencies", ""]
        out += mermaid_graph(plan, verdicts, gates)
        out.append("")

    out += ["### Experiments", ""]
    rows = []
    unmet: list[str] = []
    for exp in plan.experiments:
        v = verdicts.get(exp.id)
        doc = docs.get(exp.id)
        findings = f"experiments/{exp.id}/FINDINGS.md"
        link = f"[`{exp.id}`]({_link_target(findings)})" if exists(findings) else f"`{exp.id}`"
        name = exp.name
        if exp.retired:
            name += " (retired)"
        if exp.id in replaced_by:
            name += f" (replaced by `{replaced_by[exp.id]}`)"
        if v is None:
            stored = doc.get("status") if _is_map(doc) else None
            rows.append(
                [link, name, _phase(exp), "—", str(stored or "not_started"), "—", "—", "—", _last_run(doc)]
            )
            continue
        blocking = blockers_of(plan, exp.id, verdicts)
        shown = ("⛔ " + blocked_line(v, [])) if blocking else _verdict_mark(v)
        rows.append(
            [
                link,
                name,
                _phase(exp),
                shown,
                v.status,
                _criteria_met(v),
                _key_numbers(v),
                recommendation_text(v),
                _last_run(doc),
            ]
        )
        if not v.passed:
            why = list(v.problems[:3]) or [f"its verdict is {v.verdict}"]
            more = f" (and {len(v.problems) - 3} more)" if len(v.problems) > 3 else ""
            head = f"- `{exp.id}` ({v.verdict}{', blocked' if blocking else ''}): "
            unmet.append(head + "; ".join(why) + more)
    out += _table(
        [
            "Experiment",
            "Name",
            "Phase",
            "Verdict",
            "Status",
            "Criteria met",
            "Key numbers",
            "Recommendation",
            "Last run",
        ],
        rows,
    )
    out.append("")
    if unmet:
        out += ["### Why the others do not pass yet", ""]
        out += unmet
        out.append("")

    review = [
        (exp.id, line)
        for exp in plan.experiments
        for line in (verdicts[exp.id].review if exp.id in verdicts else ())
    ]
    if review:
        out += ["### ⚠️ REQUIRES HUMAN REVIEW", ""]
        out += [f"- `{exp_id}`: {line}" for exp_id, line in review]
        out.append("")
    linked = [exp for exp in plan.experiments if exists(f"experiments/{exp.id}/FINDINGS.md")]
    if linked:
        out += ["### Experiment findings", ""]
        out += [f"- [{exp.name}]({_link_target(f'experiments/{exp.id}/FINDINGS.md')})" for exp in linked]
    return scrub("\n".join(out).rstrip("\n") + "\n")
