"""Verdicts, sweep selection, gates and blocking: pure functions of the plan and stored results.

Results are plain dicts in the SPEC section 8 ``results.yaml`` shape.  Everything is recomputed
from stored metrics (sub-experiment statuses ``passed``/``failed`` are re-judged against the
current criteria), so editing a criterion re-judges old results without re-running anything.

Decisions the SPEC leaves open (also in the README):

- Sweeps: the selected point is recomputed from the stored points (``select_point``).  A sweep's
  sub-level status is ``error`` (or ``infra_error``) when any point errored, else the selected
  point judged by the sub's criteria (``passed``/``failed``); ``error`` when no point can be
  selected; ``blocked``/``skipped`` when every point was.  Points that never ran are ignored.
- Default selection: the first criterion (plan order) that some usable point reports; higher /
  ``>`` / ``>=`` pick the max, lower / ``<`` / ``<=`` the min, ``in`` the point closest to the
  middle of the range, ``==`` the closest to the value, ``!=`` the farthest from it.  The value
  compared is the criterion's aggregate over seeds (``all``: the worst seed).  With no criteria
  and no ``select``: the first usable point.  Ties go to the first point in plan order.
- Confidence counts the experiment-level criteria that were measured (level not ``missing``;
  ``accepted`` counts as measured).  An experiment without experiment-level criteria counts its
  sub-experiments that ran to a result instead.  An inconclusive criterion anywhere in the
  experiment (experiment or sub level) lowers it one step.
- Recommendation: SPEC section 5, plus: an unmeasured experiment-level criterion (missing, NaN,
  not a number) is ``investigate`` (it is neither a miss nor a pass).
- An experiment with no sub-experiments is ``not_started`` and does not pass its verdict (a
  placeholder must not open a gate; record ``accepted`` on the gate instead).
- Under ``stub`` (a wiring run): thresholds are not enforced; the verdict passes unless a
  sub-experiment failed its wiring check (stored ``failed``, ``error`` or ``infra_error``, or it
  does not report a metric its criteria need), or an experiment-level criterion's metric is not
  reported once its source has run.  Confidence is always ``low`` (a wiring run measures
  nothing), the recommendation is ``investigate`` when it does not pass and ``proceed`` otherwise,
  and nothing is listed for review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from pytest_mlexp.criteria import Lookup, Measurements, judge_measured, judged_value, point_value
from pytest_mlexp.model import Criterion, Experiment, Gate, Judgement, Plan, SubExperiment, Verdict
from pytest_mlexp.records import ResultEntry, new_entry

__all__ = [
    "EntryOf",
    "blockers",
    "experiment_verdict",
    "gate_status",
    "judge_sub",
    "lookup_for",
    "measurements",
    "select_point",
    "sub_blockers",
    "sub_values",
    "summarize_sweep",
]

#: The stored results entry of any sub-experiment of the plan, by id (None: none stored).  What
#: criteria that compare with another sub-experiment (SPEC section 3a) need from the results.
EntryOf = Callable[[str], "Mapping[str, Any] | None"]

_ERRORED = ("error", "infra_error")
_RAN = ("passed", "failed")
_UNMET = ("miss", "failure", "fail")


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _raw_values(entry: Mapping[str, Any], metric: str) -> list[Any]:
    per_seed = _mapping(entry.get("per_seed"))
    if per_seed:
        vals = [s.get(metric) if isinstance(s, Mapping) else None for s in per_seed.values()]
        if any(v is not None for v in vals):
            return vals
    metrics = _mapping(entry.get("metrics")) or {}
    return [metrics.get(metric)]


def _value_entry(
    sub: SubExperiment, entry: Mapping[str, Any], lookup: Lookup | None = None
) -> Mapping[str, Any] | None:
    """The entry that holds a sub-experiment's values: for a sweep, its selected point."""
    points = _mapping(entry.get("points"))
    if not points:
        return entry
    selected = select_point(sub, points, lookup)
    return _mapping(points.get(selected)) if selected is not None else None


def sub_values(sub: SubExperiment, entry: Mapping[str, Any] | None, metric: str) -> list[Any]:
    """The per-seed values of ``metric`` (``per_seed`` when stored, else ``[metrics[metric]]``).

    A sweep entry (with ``points``) gives its selected point's values.  Missing: ``[None]``.
    """
    if entry is None:
        return [None]
    values_entry = _value_entry(sub, entry)
    return [None] if values_entry is None else _raw_values(values_entry, metric)


def _reported(entry: Mapping[str, Any] | None, metric: str) -> bool:
    return entry is not None and any(v is not None for v in _raw_values(entry, metric))


def measurements(sub: SubExperiment, entry: Any) -> Measurements | None:
    """What a stored entry measured, as criteria read it (a sweep: its selected point); None when
    there is nothing to read (never ran, blocked, errored)."""
    entry = _mapping(entry)
    if entry is None:
        return None
    if _mapping(entry.get("points")):
        values = _value_entry(sub, entry)
        return Measurements.of_entry(values) if values is not None else None
    return Measurements.of_entry(entry) if entry.get("status") in _RAN else None


def lookup_for(plan: Plan, entry_of: EntryOf) -> Lookup:
    """Other sub-experiments' measurements, from their stored entries (``entry_of``)."""

    def lookup(sub_id: str) -> Measurements | None:
        return measurements(plan.sub(sub_id), entry_of(sub_id)) if plan.has_sub(sub_id) else None

    return lookup


def judge_sub(
    sub: SubExperiment, entry: Mapping[str, Any], *, stub: bool = False, lookup: Lookup | None = None
) -> tuple[Judgement, ...]:
    """The sub-experiment's own criteria judged on its stored values (a sweep: the selected point).

    ``lookup``: other sub-experiments' measurements, for criteria that compare with them."""
    values_entry = _value_entry(sub, entry, lookup)
    measured = Measurements.of_entry(values_entry) if values_entry is not None else None
    return tuple(judge_measured(c, measured, lookup=lookup, stub=stub) for c in sub.success_criteria)


# --- sweeps -----------------------------------------------------------------------------------


# Plan order of a sweep's point keys, per sub-experiment object: a 10,000-point sweep takes
# ~20 ms to expand, and sweeps are summarised often.  Keyed by id() (SubExperiment holds dicts,
# so it is not hashable); the object is kept alongside so a recycled id cannot match.
_ORDER_CACHE: dict[int, tuple[SubExperiment, dict[str, int]]] = {}


def _plan_order(sub: SubExperiment) -> dict[str, int]:
    hit = _ORDER_CACHE.get(id(sub))
    if hit is not None and hit[0] is sub:
        return hit[1]
    order = {p.key: i for i, p in enumerate(sub.points())}
    if len(_ORDER_CACHE) >= 64:
        _ORDER_CACHE.clear()
    _ORDER_CACHE[id(sub)] = (sub, order)
    return order


def _ordered_points(sub: SubExperiment, points: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    order = _plan_order(sub)
    unknown = len(order)  # points no longer in the plan go last, in the mapping's order
    keys = sorted(points, key=lambda k: order.get(k, unknown))
    out = []
    for key in keys:
        entry = _mapping(points[key])
        if entry is not None and entry.get("status") not in _ERRORED:
            out.append((key, entry))
    return out


def select_point(sub: SubExperiment, points: Mapping[str, Any], lookup: Lookup | None = None) -> str | None:
    """The key of the point that represents a sweep (see the module docstring); None if none can.

    The criteria's forms rank the points (``Form.point_value`` and ``Form.score``)."""
    usable = _ordered_points(sub, points)
    if not usable:
        return None
    if sub.select is not None:
        metric = sub.select.metric
        # The metric's own criterion aggregates it (one comparing two measurements aggregates
        # their differences, not the metric: the mean then).
        crit = next(
            (c for c in sub.success_criteria if c.metric == metric and c.form.aggregates_metric), None
        )
        sign = 1.0 if sub.select.mode == "max" else -1.0
        scored = [(k, judged_value(crit, _raw_values(e, metric))) for k, e in usable]
        return _best([(k, None if v is None else sign * v) for k, v in scored])
    for crit in sub.success_criteria:
        scored = [(k, point_value(crit, Measurements.of_entry(e))) for k, e in usable]
        if any(v is not None for _, v in scored):
            score = crit.form.score
            return _best([(k, None if v is None else score(v)) for k, v in scored])
    if sub.success_criteria:
        return None  # points ran but none reported a criterion's metric
    return usable[0][0]


def _best(scored: Sequence[tuple[str, float | None]]) -> str | None:
    best: tuple[str, float] | None = None
    for key, score in scored:
        if score is not None and (best is None or score > best[1]):  # strict: ties keep plan order
            best = (key, score)
    return best[0] if best else None


def _sweep(
    sub: SubExperiment, points: Mapping[str, Any], stub: bool, lookup: Lookup | None = None
) -> tuple[str, str | None, tuple[Judgement, ...], str]:
    """(status, selected, judgements on the selected point, error message)."""
    statuses = {k: (_mapping(e) or {}).get("status") for k, e in points.items()}
    errored = [k for k, s in statuses.items() if s in _ERRORED]
    if statuses and all(s == "blocked" for s in statuses.values()):
        return "blocked", None, (), ""
    if statuses and all(s == "skipped" for s in statuses.values()):
        return "skipped", None, (), ""
    selected = select_point(sub, points, lookup)
    kind = "infra_error" if errored and all(statuses[k] == "infra_error" for k in errored) else "error"
    message = f"{len(errored)} of {len(points)} points errored: {', '.join(errored)}" if errored else ""
    if selected is None:
        if not message:
            metric = sub.select.metric if sub.select else ", ".join(c.metric for c in sub.success_criteria)
            message = f"no point of the sweep reported {metric or 'a result'}"
        return kind, None, (), message
    judgements = judge_sub(sub, cast(Mapping[str, Any], points[selected]), stub=stub, lookup=lookup)
    if errored:
        return kind, selected, judgements, message
    return ("passed" if all(j.passed for j in judgements) else "failed"), selected, judgements, ""


def summarize_sweep(
    sub: SubExperiment,
    points: Mapping[str, ResultEntry],
    *,
    stub: bool = False,
    lookup: Lookup | None = None,
) -> ResultEntry:
    """The summary fields of a sweep's sub-experiment entry (``points`` themselves are not copied).

    Keys: ``status``, ``selected``, ``metrics``, ``criteria`` and, where the selected point has
    them, ``per_seed``, ``stats``, ``finding``; ``error`` ({kind: sweep, message}) when not passed
    because of errors.
    """
    status, selected, judgements, message = _sweep(sub, points, stub, lookup)
    out = new_entry(status, selected=selected, metrics={})
    if selected is not None:
        point = cast(Mapping[str, Any], points[selected])
        out["metrics"] = dict(_mapping(point.get("metrics")) or {})
        for key in ("per_seed", "stats", "finding"):
            if key in point:
                out[key] = point[key]
    out["criteria"] = {j.metric: j.to_dict() for j in judgements}
    if message:
        out["error"] = {"kind": "sweep", "message": message}
    return out


# --- experiment verdicts ----------------------------------------------------------------------


@dataclass(frozen=True)
class _SubState:
    sub: SubExperiment
    status: str  # passed | failed | error | infra_error | blocked | not_run
    judgements: tuple[Judgement, ...]
    values_entry: Mapping[str, Any] | None
    detail: str  # why it errored or is blocked


def _error_detail(entry: Mapping[str, Any]) -> str:
    err = _mapping(entry.get("error"))
    if err is None:
        return str(entry.get("error") or "")
    text = str(err.get("message") or "").strip().splitlines()
    first = text[0] if text else ""
    kind = err.get("type") or (err.get("kind") if err.get("kind") not in ("handler", "sweep") else None)
    return f"{kind}: {first}" if kind and first else str(kind or first)


def _sub_state(sub: SubExperiment, entry: Any, stub: bool, lookup: Lookup | None) -> _SubState:
    entry = _mapping(entry)
    if entry is None:
        return _SubState(sub, "not_run", (), None, "")
    stored = entry.get("status")
    if stored == "blocked":
        detail = entry.get("reason") or entry.get("blocked_by") or _error_detail(entry)
        return _SubState(sub, "blocked", (), None, str(detail or ""))
    points = _mapping(entry.get("points"))
    if points:
        status, selected, judgements, message = _sweep(sub, points, stub, lookup)
        values = _mapping(points.get(selected)) if selected is not None else None
        status = "not_run" if status == "skipped" else status
        return _SubState(sub, status, judgements, values, message)
    if stored in _ERRORED:
        return _SubState(sub, str(stored), (), entry, _error_detail(entry))
    if stored not in _RAN:  # skipped, cancelled, unknown: counts as never run
        return _SubState(sub, "not_run", (), None, "")
    judgements = judge_sub(sub, entry, stub=stub, lookup=lookup)
    # Re-judged against the current criteria; a stored "failed" without criteria stays failed.
    failed = any(not j.passed for j in judgements) or (stored == "failed" and not sub.success_criteria)
    return _SubState(sub, "failed" if failed else "passed", judgements, entry, "")


def _judge_experiment_criterion(
    c: Criterion, states: Sequence[_SubState], doc_subs: Mapping[str, Any], stub: bool, lookup: Lookup
) -> tuple[Judgement, bool]:
    """(judgement with ``source``, whether its source has run)."""
    if c.from_ is not None:
        state = next((s for s in states if s.sub.id == c.from_), None)
        if state is not None:
            ran = state.status not in ("not_run", "blocked")
            values_entry = state.values_entry
        else:  # a sub of another experiment: read what this document holds of it
            entry = _mapping(doc_subs.get(c.from_))
            ran = entry is not None and entry.get("status") not in ("blocked", "skipped", None)
            if entry is not None:
                points = _mapping(entry.get("points"))
                if points and entry.get("selected") in points:
                    entry = _mapping(points[entry["selected"]])
            values_entry = entry
        measured = Measurements.of_entry(values_entry) if values_entry is not None else None
        j = dataclasses.replace(judge_measured(c, measured, lookup=lookup, stub=stub), source=c.from_)
        if j.level == "missing" and not ran:
            j = dataclasses.replace(
                j,
                reason=f"{c.from_} has not run",
                message=f"{c.metric}: not reported ({c.from_} has not run)",
            )
        elif j.value is None and j.reason and j.reason.startswith("metric "):  # the source's own
            j = dataclasses.replace(j, reason=f"{j.reason} by {c.from_}")
        return j, ran
    for state in reversed(states):  # the last sub-experiment in plan order that reported it
        if state.status not in ("not_run", "blocked") and _reported(state.values_entry, c.metric):
            measured = Measurements.of_entry(cast(Mapping[str, Any], state.values_entry))
            j = judge_measured(c, measured, lookup=lookup, stub=stub)
            return dataclasses.replace(j, source=state.sub.id), True
    j = judge_measured(c, None, lookup=lookup, stub=stub)
    everything_ran = all(s.status not in ("not_run", "blocked") for s in states)
    if j.level == "missing":
        j = dataclasses.replace(
            j,
            reason="not reported by any sub-experiment",
            message=f"{c.metric}: not reported by any sub-experiment",
        )
    return j, everything_ran


def _lower(level: Literal["high", "medium", "low"]) -> Literal["high", "medium", "low"]:
    return "medium" if level == "high" else "low"


def _review_line(where: str, j: Judgement) -> str | None:
    if j.level == "accepted" and j.accepted is not None:
        acc = j.accepted
        who = "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))
        return f"{where} {j.metric} accepted{who}: {acc.reason}"
    if j.level == "inconclusive":
        return f"{where} {j.metric} inconclusive: {j.message}"
    if j.borderline:
        return f"{where} {j.metric} borderline: {j.message}"
    return None


def _sub_problem(state: _SubState) -> str | None:
    sid = state.sub.id
    detail = f": {state.detail}" if state.detail else ""
    if state.status == "passed":
        return None
    if state.status == "failed":
        failing = [j.message for j in state.judgements if not j.passed]
        return f"{sid} failed: {'; '.join(failing)}" if failing else f"{sid} failed"
    if state.status == "error":
        return f"{sid} errored{detail}"
    if state.status == "infra_error":
        return f"{sid} had an infrastructure error{detail}"
    if state.status == "blocked":
        return f"{sid} is blocked{detail}"
    return f"{sid} never ran"


def _status(
    states: Sequence[_SubState],
) -> Literal["completed", "failed", "partial", "blocked", "not_started"]:
    if not states:
        return "not_started"
    statuses = [s.status for s in states]
    if any(s in _ERRORED for s in statuses):
        return "failed"
    if all(s == "blocked" for s in statuses):
        return "blocked"
    if all(s in _RAN for s in statuses):
        return "completed"
    if not any(s in _RAN for s in statuses):
        return "blocked" if "blocked" in statuses else "not_started"
    return "partial"


def experiment_verdict(
    plan: Plan, exp: Experiment, doc: Mapping[str, Any], *, stub: bool = False, entries: EntryOf | None = None
) -> Verdict:
    """An experiment's verdict from the plan and its merged results document (SPEC sections 5, 8).

    ``entries``: stored entries of sub-experiments outside this document, for criteria that
    compare with them (SPEC section 3a); without it only this document is read."""
    doc_subs = _mapping(doc.get("sub_experiments")) or {}

    def entry_of(sub_id: str) -> Mapping[str, Any] | None:
        if sub_id in doc_subs or entries is None:
            return _mapping(doc_subs.get(sub_id))
        return entries(sub_id)

    lookup = lookup_for(plan, entry_of)
    states = [_sub_state(sub, doc_subs.get(sub.id), stub, lookup) for sub in exp.sub_experiments]
    judged = [_judge_experiment_criterion(c, states, doc_subs, stub, lookup) for c in exp.success_criteria]
    criteria = tuple(j for j, _ in judged)
    status = _status(states)
    success_met = all(j.passed for j in criteria)
    sub_judgements = [j for s in states for j in s.judgements]

    problems: list[str] = []
    if not exp.sub_experiments:
        problems.append(f"{exp.id} has no sub-experiments: nothing has run")
    if stub:
        for state in states:
            if state.status in ("failed", *_ERRORED):
                problems.append(cast(str, _sub_problem(state)))
        for j, source_ran in judged:
            if j.level == "missing" and source_ran:
                problems.append(f"criterion {j.metric} unmeasured: {j.reason}")
        passed = not problems
        return Verdict(
            experiment_id=exp.id,
            status=status,
            criteria=criteria,
            success_criteria_met=success_met,
            confidence="low",
            recommendation="proceed" if passed else "investigate",
            passed=passed,
            problems=tuple(problems),
            review=(),
        )

    for state in states:
        line = _sub_problem(state)
        if line is not None:
            problems.append(line)
    for j in criteria:
        if j.passed:
            continue
        if j.level == "missing":
            problems.append(f"criterion {j.metric} unmeasured: {j.reason}")
        else:
            src = f" (from {j.source})" if j.source else ""
            problems.append(f"criterion {j.metric} not met: {j.message}{src}")
    passed = bool(exp.sub_experiments) and not problems

    if criteria:
        measured, total = sum(j.level != "missing" for j in criteria), len(criteria)
    else:
        measured, total = sum(s.status in _RAN for s in states), len(states)
    confidence: Literal["high", "medium", "low"]
    if total and measured == total:
        confidence = "high"
    elif total and 2 * measured >= total:
        confidence = "medium"
    else:
        confidence = "low"
    everything = [*criteria, *sub_judgements]
    if any(j.level == "inconclusive" for j in everything):
        confidence = _lower(confidence)

    recommendation: Literal["proceed", "investigate", "pivot"]
    if (
        any(s.status in _ERRORED for s in states)
        or any(j.level == "inconclusive" or j.borderline for j in everything)
        or any(j.level == "missing" for j in criteria)
        or confidence == "low"
    ):
        recommendation = "investigate"
    elif any(j.level in _UNMET for j in criteria) or any(s.status == "failed" for s in states):
        recommendation = "pivot"
    else:
        recommendation = "proceed"

    review: list[str] = []
    for state in states:
        for j in state.judgements:
            line = _review_line(f"{state.sub.id}:", j)
            if line:
                review.append(line)
    for j in criteria:
        line = _review_line("criterion", j)
        if line:
            review.append(line)

    return Verdict(
        experiment_id=exp.id,
        status=status,
        criteria=criteria,
        success_criteria_met=success_met,
        confidence=confidence,
        recommendation=recommendation,
        passed=passed,
        problems=tuple(problems),
        review=tuple(review),
    )


# --- gates and blocking -----------------------------------------------------------------------


def _gate_label(gate: Gate) -> str:
    return f"gate {gate.id} ({gate.name})" if gate.name and gate.name != gate.id else f"gate {gate.id}"


def _why_not(verdict: Verdict | None) -> str:
    if verdict is None:
        return "has no results"
    return verdict.problems[0] if verdict.problems else "did not pass its verdict"


def gate_status(plan: Plan, gate: Gate, verdicts: Mapping[str, Verdict]) -> tuple[bool, str]:
    """(passed, reason): a gate passes when every member passed its verdict, or it is ``accepted``."""
    label = _gate_label(gate)
    if gate.accepted is not None:
        acc = gate.accepted
        who = "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))
        return True, f"{label} accepted{who}: {acc.reason}"
    failing = [e for e in gate.experiments if not (e in verdicts and verdicts[e].passed)]
    if not failing:
        return True, f"{label} passed"
    return False, f"{label} not passed: " + "; ".join(f"{e}: {_why_not(verdicts.get(e))}" for e in failing)


def blockers(plan: Plan, experiment_id: str, verdicts: Mapping[str, Verdict]) -> list[str]:
    """Why an experiment is blocked (empty: it is not): unpassed dependencies, then unpassed gates."""
    out: list[str] = []
    for prereq in plan.prerequisites(experiment_id):
        if prereq.kind == "dependency":
            dep = cast(str, prereq.experiment_id)
            verdict = verdicts.get(dep)
            if verdict is None or not verdict.passed:
                out.append(f"dependency {dep} not passed: {_why_not(verdict)}")
        else:
            passed, reason = gate_status(plan, plan.gate(cast(str, prereq.gate_id)), verdicts)
            if not passed:
                out.append(reason)
    return out


_SUB_WORDS = {
    "failed": "which failed",
    "error": "which errored",
    "infra_error": "which had an infrastructure error",
    "blocked": "which is blocked",
}


def sub_blockers(plan: Plan, sub: SubExperiment, entries_by_sub: Mapping[str, Any]) -> list[str]:
    """Why a sub-experiment is blocked by its sub-level dependencies (their stored status).

    A sub-experiment its criteria compare with (``implicit_dependencies``) blocks only when it
    has no result to compare with: it errored, is blocked or never ran; not when it missed its
    own criteria (SPEC section 3a)."""
    out: list[str] = []
    for dep in sub.dependencies:
        entry = _mapping(entries_by_sub.get(dep))
        status = entry.get("status") if entry is not None else None
        if status != "passed":
            out.append(f"depends on {dep}, {_SUB_WORDS.get(str(status), 'which has not run')}")
    for dep in sub.implicit_dependencies:
        if dep in sub.dependencies:
            continue
        entry = _mapping(entries_by_sub.get(dep))
        status = entry.get("status") if entry is not None else None
        if status not in _RAN:
            out.append(f"compares with {dep}, {_SUB_WORDS.get(str(status), 'which has not run')}")
    return out
