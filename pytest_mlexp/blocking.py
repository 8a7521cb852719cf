"""Gates and blocking: whether a gate is open, what holds an experiment or a sub-experiment back,
and how each blocker is said.  Pure functions of the plan and the verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from .model import (
    Gate,
    Plan,
    SubExperiment,
    SubState,
    Verdict,
)
from .records import as_mapping
from .structs import struct
from .verdict import _RAN, _who

__all__ = ["Blocker", "blocker_details", "blockers", "gate_detail", "gate_status", "sub_blockers"]


# --- gates and blocking -----------------------------------------------------------------------


@struct(frozen=True)
class Blocker:
    """Why an experiment is blocked: a prerequisite (``dependency`` or ``gate``) and the text."""

    kind: Literal["dependency", "gate"]
    id: str
    text: str


def _gate_label(gate: Gate) -> str:
    return f"gate {gate.id} ({gate.name})" if gate.name and gate.name != gate.id else f"gate {gate.id}"


def _why_not(verdict: Verdict | None) -> str:
    if verdict is None:
        return "has no results"
    if verdict.problems:
        return verdict.problems[0]
    return f"its verdict is {verdict.verdict}"


def _passed(verdicts: Mapping[str, Verdict], experiment_id: str) -> bool:
    verdict = verdicts.get(experiment_id)
    return verdict is not None and verdict.passed


def gate_status(plan: Plan, gate: Gate, verdicts: Mapping[str, Verdict]) -> tuple[bool, str]:
    """(passed, reason): a gate passes when every member's verdict opens gates, or it is ``accepted``."""
    label = _gate_label(gate)
    if gate.accepted is not None:
        return True, f"{label} accepted{_who(gate.accepted)}: {gate.accepted.reason}"
    passed, detail = gate_detail(gate, verdicts)
    return (True, f"{label} passed") if passed else (False, f"{label} not passed: {detail}")


def gate_detail(gate: Gate, verdicts: Mapping[str, Verdict]) -> tuple[bool, str]:
    """(passed, why not) without the gate's name: for a table whose row already names the gate
    (an ``accepted`` gate is the caller's to show)."""
    failing = [e for e in gate.experiments if not (e in verdicts and verdicts[e].passed)]
    return not failing, "; ".join(f"{e}: {_why_not(verdicts.get(e))}" for e in failing)


def blocker_details(plan: Plan, experiment_id: str, verdicts: Mapping[str, Verdict]) -> list[Blocker]:
    """Why an experiment is blocked (empty: it is not): dependencies whose verdict does not open
    gates, then gates that have not passed.

    A dependency on a replaced experiment is decided by its replacement (SPEC section 10:
    ``Plan.decider``; not a gate member, which the team lists by name); one on a retired
    experiment (``retired: true``, ``status: deferred``) that did not pass says to accept it."""
    out: list[Blocker] = []
    for prereq in plan.prerequisites(experiment_id):
        if prereq.kind == "dependency":
            dep = cast(str, prereq.experiment_id)
            decider = _decider(plan, dep, experiment_id)
            verdict = verdicts.get(decider)
            if verdict is not None and verdict.passed:
                continue
            retired = plan.retirement(dep) if decider == dep else None
            if retired is not None:
                text = f"dependency {dep} is retired ({retired}): add `accepted` to {dep}"
                out.append(Blocker("dependency", dep, text))
            else:
                label = f"dependency {dep}" + (f" (replaced by {decider})" if decider != dep else "")
                out.append(Blocker("dependency", decider, f"{label} not passed: {_why_not(verdict)}"))
        else:
            gate = plan.gate(cast(str, prereq.gate_id))
            passed, reason = gate_status(plan, gate, verdicts)
            if not passed:
                out.append(Blocker("gate", gate.id, reason))
    return out


def _decider(plan: Plan, dep: str, experiment_id: str) -> str:
    """The experiment whose verdict decides ``experiment_id``'s dependency on ``dep``: its
    replacement, unless that is the experiment itself (it depends on what it replaces)."""
    decider = plan.decider(dep)
    return dep if decider == experiment_id else decider


# A skip reason is read in a terminal line and results.yaml: one cause per experiment, kept short.
_WHY_LIMIT = 200


def _short(text: str, limit: int = _WHY_LIMIT) -> str:
    """``text`` cut at a clause boundary (``; ``) when longer than ``limit``, never mid-word."""
    if len(text) <= limit:
        return text
    cut = text.rfind("; ", 0, limit)
    if cut < limit // 2:
        cut = text.rfind(" ", 0, limit)
    return text[: max(cut, 1)].rstrip(" ;,") + " …"


def blockers(plan: Plan, experiment_id: str, verdicts: Mapping[str, Verdict]) -> list[str]:
    """Why an experiment is blocked (empty: it is not), as a skip reason reads it: each
    experiment that holds it back named once, with the prerequisites it holds back (``gate g3
    and dependency c3 not passed: c3: <why>``), and only its first problem, kept short."""
    held: dict[str, list[str]] = {}  # unpassed experiment -> the prerequisites it holds back
    alone: list[str] = []
    prereqs = plan.prerequisites(experiment_id)
    for prereq in prereqs:  # gates first (they are what a phase waits for), then dependencies
        if prereq.kind != "gate":
            continue
        gate = plan.gate(cast(str, prereq.gate_id))
        if gate.accepted is not None:
            continue
        for member in gate.experiments:
            if not _passed(verdicts, member):
                held.setdefault(member, []).append(_gate_label(gate))
    for b in blocker_details(plan, experiment_id, verdicts):
        if b.kind != "dependency":
            continue
        if b.text.startswith(f"dependency {b.id} is retired"):
            alone.append(b.text)
            continue
        label = b.text.split(" not passed: ", 1)[0]
        held.setdefault(b.id, []).append(label)
    grouped: dict[tuple[str, ...], list[str]] = {}
    for member, labels in held.items():
        grouped.setdefault(tuple(dict.fromkeys(labels)), []).append(member)
    out = [
        f"{' and '.join(labels)} not passed: "
        + "; ".join(f"{m}: {_short(_why_not(verdicts.get(m)))}" for m in members)
        for labels, members in grouped.items()
    ]
    return out + alone


_SUB_WORDS = {
    "failed": "which failed",
    "error": "which errored",
    "infra_error": "which had an infrastructure error",
    "blocked": "which is blocked",
}


def sub_blockers(plan: Plan, sub: SubExperiment, states_by_sub: Mapping[str, Any]) -> list[str]:
    """Why a sub-experiment is blocked by its sub-level dependencies, judged now.

    ``states_by_sub``: each dependency's :class:`SubState` (or, for callers without one, its
    stored entry).  A dependency passes when it passed or is ``accepted``.  A sub-experiment its
    criteria compare with (``implicit_dependencies``) blocks only when it has no result to
    compare with: it errored, is blocked or never ran; not when it missed its own criteria
    (SPEC section 3a)."""
    out: list[str] = []

    def status_of(dep: str) -> tuple[str | None, bool]:
        got = states_by_sub.get(dep)
        if isinstance(got, SubState):
            return got.status, got.counts_as_passed
        entry = as_mapping(got)
        status = entry.get("status") if entry is not None else None
        accepted = plan.has_sub(dep) and plan.sub(dep).accepted is not None
        return (str(status) if status is not None else None), status == "passed" or accepted

    for dep in sub.dependencies:
        status, ok = status_of(dep)
        if not ok:
            out.append(f"depends on {dep}, {_SUB_WORDS.get(str(status), 'which has not run')}")
    for dep in sub.implicit_dependencies:
        if dep in sub.dependencies:
            continue
        status, ok = status_of(dep)
        if status not in _RAN and not ok:
            out.append(f"compares with {dep}, {_SUB_WORDS.get(str(status), 'which has not run')}")
    return out
