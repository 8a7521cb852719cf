"""Verdicts: pure functions of the plan and stored results (gates and blocking: ``blocking.py``).

Results are plain dicts in the SPEC section 8 ``results.yaml`` shape.  Every sub-experiment is
judged afresh from the current plan (``subjudge.py``), so editing a criterion re-judges old
results without re-running anything.

An experiment's verdict is one of, in this precedence (SPEC "Verdicts, once and for all"):

==================== ==========================================================================
``passed``            every sub-experiment passed (or is ``accepted``) and every criterion is met
                      by measured values
``passed_with_pivot`` the original criteria are not all met, but every criterion of one pivot
                      block is (measured or recorded), or the pivot is ``accepted``
``accepted``          ``accepted:`` on the experiment
``recorded``          every criterion met, at least one only by a value ``achieved`` records
                      where nothing was measured; a sub-experiment with no measured result does
                      not count as "never ran" for it
``failed``            anything else that ran (or was recorded)
``not_run``           nothing measured, nothing recorded
==================== ==========================================================================

The first four open gates and dependencies and pass the assessment (``Verdict.passed``);
``blocked`` is a running state shown beside the verdict, never one.

Decisions the SPEC leaves open (also in the README):

- The original criteria read only the main list's sub-experiments that belong to no pivot (an
  explicit ``from`` is followed wherever it points); a pivot's criteria only its own.  A pivot
  without criteria counts as met only when it is ``accepted``.  The ``passed`` verdict asks the
  main list's sub-experiments to pass; a pivot's sub-experiments do not hold the original back.
- A criterion-level ``accepted`` counts as met by a measured value (§3: "counts as passed"),
  and is listed for review; it does not make the verdict ``accepted``.
- Confidence counts the deciding criteria (the original's, or the passing pivot's) that were
  *measured* (not ``missing``/``unmeasured``, not recorded; ``accepted`` counts).  An experiment
  without experiment-level criteria counts its sub-experiments that ran to a result instead.
  An inconclusive criterion anywhere in the experiment lowers it one step; a ``recorded``
  verdict is always ``low``.
- Recommendation: ``passed_with_pivot`` and ``recorded`` -> ``proceed``; ``not_run`` -> none;
  otherwise SPEC section 5 on the original part (``investigate`` on any error, inconclusive,
  borderline, unmeasured criterion or low confidence, else ``pivot`` on any unmet criterion or
  failed sub-experiment, else ``proceed``), with the reasons for ``investigate`` spelled out.
- An experiment with no sub-experiments is ``not_run`` unless ``achieved`` or ``accepted``
  says otherwise (a placeholder must not open a gate by itself).
- The plan's ``status`` is compared by meaning, not by spelling (``status_disagreement``):
  ``passed``, ``validated``, ``accepted``, ``recorded``, ``passed_with_pivot``, ``success``...
  say it opens; ``failed``, ``rejected``, ``abandoned`` say it does not; ``not_started``,
  ``planned``, ``todo`` say nothing ran; ``completed`` says something ran.  Other words
  (``pivoted``, ``in_progress``, ``deferred``) are shown but never compared.
- Under ``stub`` (a wiring run): thresholds are not enforced; the verdict passes unless a
  sub-experiment failed its wiring check (stored ``failed``, ``error`` or ``infra_error``, or a
  metric its plan needs is not reported), or an experiment-level criterion's metric is not
  reported once its source has run.  Confidence is always ``low``, the recommendation is
  ``investigate`` when it does not pass and ``proceed`` otherwise, and nothing is listed for
  review.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from .criteria import Lookup, Measurements, judge_measured
from .model import (
    OPENING,
    Accepted,
    Achieved,
    Criterion,
    Experiment,
    Judgement,
    Pivot,
    PivotVerdict,
    Plan,
    PlanStatus,
    SubExperiment,
    SubState,
    Verdict,
    VerdictName,
)
from .records import OUTDATED, as_mapping, outdated_reason
from .resultsdoc import seeds_added_after_inconclusive
from .structs import replace, struct
from .subjudge import (
    judge_recorded,
    judge_stored,
    judge_sub,
    lookup_for,
    measurements,
    outdated,
    select_point,
    sub_values,
    summarize_sweep,
    unmeasured,
)
from .textutil import closest_metric

__all__ = [
    "EntryOf",
    "experiment_verdict",
    "imported_review_line",
    "judge_sub",
    "lookup_for",
    "measurements",
    "select_point",
    "status_disagreement",
    "sub_values",
    "summarize_sweep",
]

#: The stored results entry of any sub-experiment of the plan, by id (None: none stored).  What
#: criteria that compare with another sub-experiment (SPEC section 3a) need from the results.
EntryOf = Callable[[str], "Mapping[str, Any] | None"]

_ERRORED = ("error", "infra_error")
_RAN = ("passed", "failed")
_UNMET = ("miss", "failure", "fail")
_UNMEASURED = ("missing", "unmeasured")
# What the review reads of a stored entry besides its judgement: outdated, imported, seeds (added
# after an inconclusive look?).  An entry with none of them has nothing to say there.
_NOTED = frozenset((OUTDATED, "imported", "per_seed"))


def _who(acc: Accepted) -> str:
    return "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))


# --- experiment-level criteria -------------------------------------------------------------------


def _supplied(values: Sequence[Any]) -> bool:
    return any(v is not None for v in values)


def _names(states: Sequence[SubState]) -> list[str]:
    out: list[str] = []
    for s in states:
        if s.measured and s.values_entry is not None:
            out += [n for n in Measurements.of_entry(s.values_entry).names() if n not in out]
    return out


def _did_you_mean(metric: str, names: Sequence[str]) -> str:
    guess = closest_metric(metric, names)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    if guess is not None:
        return f"; did you mean {guess!r}? (reported: {shown})"
    return f" (reported: {shown})" if names else ""


def _achieved_for(
    c: Criterion, source: SubState | None, states: Sequence[SubState], outer: Sequence[Mapping[str, Achieved]]
) -> Achieved | None:
    """The value ``achieved`` records for an experiment-level (or pivot) criterion, innermost
    first: the criterion, its source sub-experiment (``from``, else the last in plan order that
    records it), the pivot, the experiment."""
    if c.achieved is not None:
        return c.achieved
    if source is not None:
        found = source.sub.achieved.get(c.metric)
        if found is not None:
            return found
    elif c.from_ is None:
        for state in reversed(states):
            found = state.sub.achieved.get(c.metric)
            if found is not None:
                return found
    for level in outer:
        found = level.get(c.metric)
        if found is not None:
            return found
    return None


def _judge_criterion(
    c: Criterion,
    states: Sequence[SubState],
    doc_subs: Mapping[str, Any],
    lookup: Lookup,
    outer: Sequence[Mapping[str, Achieved]],
    stub: bool,
) -> tuple[Judgement, bool]:
    """(judgement with ``source``, whether its source has run)."""
    source: SubState | None = None
    if c.from_ is not None:
        source = next((s for s in states if s.sub.id == c.from_), None)
        if source is not None:
            ran = source.status not in ("not_run", "blocked")
            values_entry = source.values_entry
        else:  # a sub of another experiment: read what this document holds of it
            entry = as_mapping(doc_subs.get(c.from_))
            ran = entry is not None and entry.get("status") not in ("blocked", "skipped", None)
            if entry is not None:
                points = as_mapping(entry.get("points"))
                if points and entry.get("selected") in points:
                    entry = as_mapping(points[entry["selected"]])
            values_entry = entry
        measured = Measurements.of_entry(values_entry) if values_entry is not None and ran else None
        recorded_first = outdated(values_entry) and _achieved_for(c, source, states, outer) is not None
        if measured is not None and _supplied(measured.values(c.metric)) and not recorded_first:
            j = judge_measured(c, measured, lookup=lookup, stub=stub)
            if j.value is None and j.reason and j.reason.startswith("metric "):  # the source's own
                j = replace(j, reason=f"{j.reason} by {c.from_}")
            return replace(j, source=c.from_), ran
        if not c.form.aggregates_metric and measured is not None:  # a comparison: its own words
            return replace(judge_measured(c, measured, lookup=lookup, stub=stub), source=c.from_), ran
        achieved = _achieved_for(c, source, states, outer) if c.form.aggregates_metric else None
        if achieved is not None:
            return replace(judge_recorded(c, achieved, stub=stub), source=c.from_), ran
        if not ran:
            return replace(unmeasured(c, f"{c.from_} has not run"), source=c.from_), ran
        names = Measurements.of_entry(values_entry).names() if values_entry is not None else []
        reason = f"not reported by {c.from_}{_did_you_mean(c.metric, names)}"
        return replace(unmeasured(c, reason), source=c.from_), ran
    for state in reversed(states):  # the last sub-experiment in plan order that reported it
        if (
            state.measured
            and state.values_entry is not None
            and not (outdated(state.values_entry) and _achieved_for(c, None, states, outer) is not None)
        ):
            measured = Measurements.of_entry(state.values_entry)
            if _supplied(measured.values(c.metric)):
                j = judge_measured(c, measured, lookup=lookup, stub=stub)
                return replace(j, source=state.sub.id), True
    everything_ran = all(s.status not in ("not_run", "blocked") for s in states)
    achieved = _achieved_for(c, None, states, outer) if c.form.aggregates_metric else None
    if achieved is not None:
        return judge_recorded(c, achieved, stub=stub), everything_ran
    waiting = [s.sub.id for s in states if s.status in ("not_run", "blocked")]
    if not states:
        reason = "no sub-experiment measures it, and the plan records no value (achieved)"
    elif len(waiting) == len(states):
        reason = "not reported by any sub-experiment (none has run yet)"
    else:
        reason = "not reported by any sub-experiment"
        if waiting:
            reason += f" yet ({', '.join(waiting)} has not run)"
        reason += _did_you_mean(c.metric, _names(states))
    return unmeasured(c, reason), everything_ran


# --- one part: the original criteria with the main list, or one pivot ----------------------------


@struct(frozen=True)
class _Part:
    criteria: tuple[Judgement, ...]
    judged: tuple[tuple[Judgement, bool], ...]  # (judgement, its source ran)
    states: tuple[SubState, ...]
    problems: tuple[str, ...]
    met_measured: bool  # every sub passed or accepted; every criterion met, none only recorded
    met_recorded: bool  # every criterion met, at least one only through achieved
    uses_achieved: bool


def _sub_problem(state: SubState) -> str | None:
    sid = state.sub.id
    detail = f": {state.detail}" if state.detail else ""
    if state.counts_as_passed:
        return None
    if state.status == "failed":
        failing = [j.message for j in state.judgements if not j.passed]
        return f"{sid} failed: {'; '.join(failing)}" if failing else f"{sid} failed"
    if state.status == "error":
        what = "has a wiring error" if state.wiring else "errored"
        return f"{sid} {what}{detail}"
    if state.status == "infra_error":
        return f"{sid} had an infrastructure error{detail}"
    if state.status == "blocked":
        return f"{sid} is blocked{detail}"
    if state.stale is not None:
        return f"{sid} never ran under the current plan (its stored result is stale: {state.stale})"
    unmet = [j.message for j in state.judgements if not j.passed]
    if unmet:
        return f"{sid} never ran, and the plan's recorded values do not meet its criteria: {'; '.join(unmet)}"
    return f"{sid} never ran"


def _part(
    criteria: Sequence[Criterion],
    states: Sequence[SubState],
    doc_subs: Mapping[str, Any],
    lookup: Lookup,
    outer: Sequence[Mapping[str, Achieved]],
    stub: bool,
) -> _Part:
    judged = tuple(_judge_criterion(c, states, doc_subs, lookup, outer, stub) for c in criteria)
    crits = tuple(j for j, _ in judged)
    problems: list[str] = []
    for state in states:
        if state.status == "passed":  # counts as passed: no problem to ask _sub_problem for
            continue
        line = _sub_problem(state)
        if line is not None:
            problems.append(line)
    # (_sub_problem says nothing exactly of a sub-experiment that counts as passed.)
    subs_measured = not problems
    for j in crits:
        if j.passed:
            continue
        if j.level in _UNMEASURED and j.value is None:
            problems.append(f"criterion {j.metric} unmeasured: {j.reason}")
        else:
            src = f" (from {j.source})" if j.source else ""
            problems.append(f"criterion {j.metric} not met: {j.message}{src}")
    sub_recorded = any(j.recorded is not None for s in states for j in s.judgements)
    uses_achieved = sub_recorded or any(j.recorded is not None for j in crits)
    all_met = all(j.passed for j in crits)
    subs_recorded = subs_measured or all(s.counts_as_passed or s.recorded_only for s in states)
    return _Part(
        criteria=crits,
        judged=judged,
        states=tuple(states),
        problems=tuple(problems),
        met_measured=subs_measured and all_met and not uses_achieved,
        met_recorded=subs_recorded and all_met and uses_achieved,
        uses_achieved=uses_achieved,
    )


# --- the experiment ------------------------------------------------------------------------------


def _lower(level: Literal["high", "medium", "low"]) -> Literal["high", "medium", "low"]:
    return "medium" if level == "high" else "low"


def _review_kind(j: Judgement) -> str | None:
    if j.level == "accepted" and j.accepted is not None:
        return "accepted"
    if j.level == "inconclusive":
        return "inconclusive"
    if j.recorded is not None:
        return "recorded"
    if j.borderline:
        return "borderline"
    return None


def _review_line(where: str, j: Judgement) -> str | None:
    kind = _review_kind(j)
    if kind == "accepted" and j.accepted is not None:
        return f"{where} {j.metric} accepted{_who(j.accepted)}: {j.accepted.reason}"
    if kind == "inconclusive":
        return f"{where} {j.metric} inconclusive: {j.message}"
    if kind == "recorded" and j.recorded is not None:
        return f"{where} {j.metric}: {j.message}"
    if kind == "borderline":
        return f"{where} {j.metric} borderline: {j.message}"
    return None


def _status(
    states: Sequence[SubState],
) -> Literal["completed", "failed", "partial", "blocked", "not_started"]:
    if not states:
        return "not_started"
    statuses = {s.status for s in states}  # (which there are, not how many)
    if not statuses.isdisjoint(_ERRORED):
        return "failed"
    if statuses == {"blocked"}:
        return "blocked"
    if statuses.issubset(_RAN):
        return "completed"
    if statuses.isdisjoint(_RAN):
        return "blocked" if "blocked" in statuses else "not_started"
    return "partial"


def _last_run(doc_subs: Mapping[str, Any]) -> str | None:
    latest = ""
    for value in doc_subs.values():
        entry = as_mapping(value)
        if entry is None:
            continue
        stamp = entry.get("finished_at")
        if stamp and (text := str(stamp)) > latest:
            latest = text
        if "points" not in entry:  # not a sweep, as most are
            continue
        points = as_mapping(entry["points"])
        if points:
            for point in points.values():
                stamp = point.get("finished_at") if isinstance(point, Mapping) else None
                if stamp and (text := str(stamp)) > latest:
                    latest = text
    return latest or None


def _confidence(part: _Part) -> Literal["high", "medium", "low"]:
    if part.criteria:
        measured = sum(1 for j in part.criteria if j.level not in _UNMEASURED and j.recorded is None)
        total = len(part.criteria)
    else:
        measured = sum(1 for s in part.states if s.status in _RAN)
        total = len(part.states)
    if total and measured == total:
        return "high"
    if total and 2 * measured >= total:
        return "medium"
    return "low"


def _confidence_words(part: _Part) -> str:
    if part.criteria:
        measured = sum(1 for j in part.criteria if j.level not in _UNMEASURED and j.recorded is None)
        return f"{measured} of {len(part.criteria)} criteria measured"
    ran = sum(1 for s in part.states if s.status in _RAN)
    return f"{ran} of {len(part.states)} sub-experiments ran to a result"


def _measured_recommendation(
    part: _Part, states: Sequence[SubState], confidence: str
) -> tuple[Literal["proceed", "investigate", "pivot"], tuple[str, ...]]:
    """SPEC section 5 on what was measured, and the reasons when it is ``investigate``."""
    reasons: list[str] = []
    for s in states:
        if s.status in _ERRORED:
            reasons.append(cast(str, _sub_problem(s)))
    # an experiment-level flag stands for the same flag on the sub-experiment that supplied it
    covered = {(j.source, j.metric, _review_kind(j)) for j in part.criteria}
    for s in part.states:
        for j in s.judgements:
            if (s.sub.id, j.metric, _review_kind(j)) in covered:
                continue
            if j.level == "inconclusive":
                reasons.append(f"{s.sub.id}: {j.metric} inconclusive ({j.message})")
            elif j.borderline:
                reasons.append(f"{s.sub.id}: {j.metric} borderline ({j.message})")
    for j in part.criteria:
        if j.level == "inconclusive":
            reasons.append(f"criterion {j.metric} inconclusive ({j.message})")
        elif j.borderline:
            reasons.append(f"criterion {j.metric} borderline ({j.message})")
        elif j.level in _UNMEASURED and j.value is None and not j.passed:
            reasons.append(f"criterion {j.metric} unmeasured: {j.reason}")
    if confidence == "low":
        reasons.append(f"confidence low: {_confidence_words(part)}")
    if reasons:
        return "investigate", tuple(dict.fromkeys(reasons))
    unmet = any(j.level in _UNMET for j in part.criteria) or any(
        s.status == "failed" and not s.counts_as_passed for s in part.states
    )
    return ("pivot" if unmet else "proceed"), ()


def _review(exp: Experiment, original: _Part, pivots: Sequence[tuple[Pivot, _Part]]) -> list[str]:
    """What requires human review, each once: an experiment-level line stands for the same
    flag on the sub-experiment that supplied its value."""
    review: list[str] = []
    covered = {
        (j.source, j.metric, _review_kind(j))
        for part in (original, *(p for _, p in pivots))
        for j in part.criteria
    }
    for state in (*original.states, *(s for _, p in pivots for s in p.states)):
        for j in state.judgements:
            if (state.sub.id, j.metric, _review_kind(j)) in covered:
                continue
            line = _review_line(f"{state.sub.id}:", j)
            if line:
                review.append(line)
        acc = state.sub.accepted
        if acc is not None and state.status != "passed":
            review.append(
                f"{state.sub.id} accepted{_who(acc)}: {acc.reason} (counts as passed; it is {state.status})"
            )
    for j in original.criteria:
        line = _review_line("criterion", j)
        if line:
            review.append(line)
    for pivot, part in pivots:
        for j in part.criteria:
            line = _review_line(f"pivot {pivot.key}: criterion", j)
            if line:
                review.append(line)
    return review


def experiment_verdict(
    plan: Plan, exp: Experiment, doc: Mapping[str, Any], *, stub: bool = False, entries: EntryOf | None = None
) -> Verdict:
    """An experiment's verdict from the plan and its merged results document (see the module
    docstring).

    ``entries``: stored entries of sub-experiments outside this document, for criteria that
    compare with them (SPEC section 3a); without it only this document is read."""
    doc_subs = as_mapping(doc.get("sub_experiments")) or {}
    stale = as_mapping(doc.get("stale")) or {}

    def entry_of(sub_id: str) -> Mapping[str, Any] | None:
        if sub_id in doc_subs or entries is None:
            return as_mapping(doc_subs.get(sub_id))
        return entries(sub_id)

    lookup = lookup_for(plan, entry_of)
    states = tuple(
        judge_stored(plan, sub, doc_subs.get(sub.id), stub=stub, lookup=lookup, stale=stale.get(sub.id))
        for sub in exp.sub_experiments
    )
    by_id = {s.sub.id: s for s in states}
    main = [s for s in states if s.sub.pivot is None]
    original = _part(exp.success_criteria, main, doc_subs, lookup, (exp.achieved,), stub)
    pivots = [
        (
            p,
            _part(
                p.success_criteria,
                [by_id[i] for i in p.sub_ids if i in by_id],
                doc_subs,
                lookup,
                (p.achieved, exp.achieved),
                stub,
            ),
        )
        for p in exp.pivots
    ]
    status = _status(states)
    last_run = _last_run(doc_subs)
    if stub:
        return _stub_verdict(exp, states, original, status, last_run)

    pivot_verdicts = tuple(
        PivotVerdict(
            p,
            part.criteria,
            p.accepted is not None or (bool(part.criteria) and all(j.passed for j in part.criteria)),
            part.problems,
        )
        for p, part in pivots
    )
    ran = any(s.status in (*_RAN, *_ERRORED) for s in states)
    passing_pivot = next((pv for pv in pivot_verdicts if pv.met), None)
    name: VerdictName
    if original.met_measured and exp.sub_experiments:
        name = "passed"
    elif passing_pivot is not None and not original.met_recorded:
        name = "passed_with_pivot"
    elif exp.accepted is not None:
        name = "accepted"
    elif original.met_recorded:
        name = "recorded"
    elif ran or original.uses_achieved or any(part.uses_achieved for _, part in pivots):
        name = "failed"
    else:
        name = "not_run"
    opens = name in OPENING

    deciding = original
    if name == "passed_with_pivot" and passing_pivot is not None:
        deciding = next(part for p, part in pivots if p is passing_pivot.pivot)
    confidence = "low" if name in ("recorded", "not_run") else _confidence(deciding)
    if any(j.level == "inconclusive" for part in (original, deciding) for j in part.criteria) or any(
        j.level == "inconclusive" for s in states for j in s.judgements
    ):
        confidence = _lower(confidence)

    recommendation: Literal["proceed", "investigate", "pivot"] | None
    reasons: tuple[str, ...] = ()
    if name == "not_run":
        recommendation = None
    elif name in ("passed_with_pivot", "recorded"):
        recommendation = "proceed"
    else:
        recommendation, reasons = _measured_recommendation(original, states, confidence)
        if name == "failed" and recommendation == "proceed":
            # nothing measured says pivot, yet it does not pass (a sub-experiment never ran, a
            # pivot is not met): the table allows only pivot or investigate for a failure
            recommendation, reasons = "investigate", tuple(original.problems) or ("it does not pass",)

    problems = list(original.problems)
    if not exp.sub_experiments and not opens:
        problems.insert(0, f"{exp.id} has no sub-experiments: nothing has run")
    if not opens:
        for pv in pivot_verdicts:
            first = (
                pv.problems[0] if pv.problems else "no criteria to meet (add success_criteria, or accepted)"
            )
            problems.append(f"pivot {pv.pivot.key} not met: {first}")

    review = _review(exp, original, pivots)
    # (Most entries hold none of _NOTED: one look at each, not three calls for nothing.)
    noted = [
        sub
        for sub in exp.sub_experiments
        if (entry := doc_subs.get(sub.id)).__class__ is not dict or not entry.keys().isdisjoint(_NOTED)
    ]
    for sub in noted:  # SPEC section 11: still counts, listed for review
        why = outdated_reason(doc_subs.get(sub.id))
        if why is not None:
            review.append(f"{sub.id}: outdated ({why}); re-run it to refresh the result")
    message = ""
    if name == "passed_with_pivot" and passing_pivot is not None:
        p = passing_pivot.pivot
        label = f"{p.key} ({p.name})" if p.name != p.key else p.key
        if p.accepted is not None:
            how = f"accepted{_who(p.accepted)}: {p.accepted.reason}"
        else:
            how = f"{len(passing_pivot.criteria)}/{len(passing_pivot.criteria)} of its criteria met"
        short = original.problems[0] if original.problems else "the original criteria are not all met"
        message = f"passed with pivot {label}: {how}"
        review.insert(0, f"{message}; the original did not pass: {short}")
    elif name == "accepted" and exp.accepted is not None:
        acc = exp.accepted
        message = f"accepted{_who(acc)}: {acc.reason}"
        review.insert(0, f"experiment {message}" + (f" (as measured: {problems[0]})" if problems else ""))
    elif name == "recorded":
        count = sum(1 for j in original.criteria if j.recorded is not None)
        count += sum(1 for s in main for j in s.judgements if j.recorded is not None)
        what = "1 criterion is" if count == 1 else f"{count} criteria are"
        message = f"recorded, not measured: {what} met only by values recorded in the plan (achieved)"
        review.insert(0, message)
    if exp.accepted is not None and name != "accepted":
        review.append(
            f"experiment accepted{_who(exp.accepted)}: {exp.accepted.reason} (the verdict is {name})"
        )
    disagreement = status_disagreement(exp.plan_status, name, opens)
    if disagreement is not None:
        review.append(disagreement)
    line = imported_review_line(noted, doc_subs)
    if line:
        review.append(line)
    for sub in noted:
        stopping = seeds_added_after_inconclusive(doc_subs.get(sub.id), stale.get(sub.id))
        if stopping is not None:
            metrics, then, now = stopping
            review.append(
                f"{sub.id}: seeds added after an inconclusive result (optional stopping): "
                f"{', '.join(metrics)} inconclusive on {then} seed(s), then run on {now}"
            )

    return Verdict(
        experiment_id=exp.id,
        status=status,
        criteria=original.criteria,
        success_criteria_met=all(j.passed for j in deciding.criteria),
        confidence=confidence,
        recommendation=recommendation,
        passed=opens,
        problems=tuple(problems),
        review=tuple(dict.fromkeys(review)),
        verdict=name,
        reasons=reasons,
        subs=states,
        pivots=pivot_verdicts,
        pivot=passing_pivot.pivot.key if name == "passed_with_pivot" and passing_pivot is not None else None,
        message=message,
        plan_status=exp.plan_status,
        plan_disagrees=disagreement,
        last_run=last_run,
    )


def _stub_verdict(
    exp: Experiment,
    states: Sequence[SubState],
    original: _Part,
    status: Literal["completed", "failed", "partial", "blocked", "not_started"],
    last_run: str | None,
) -> Verdict:
    problems: list[str] = []
    if not exp.sub_experiments:
        problems.append(f"{exp.id} has no sub-experiments: nothing has run")
    for state in states:
        if state.status in ("failed", *_ERRORED):
            problems.append(cast(str, _sub_problem(state)))
    for j, source_ran in original.judged:
        if j.level in _UNMEASURED and not j.passed and source_ran and j.recorded is None:
            problems.append(f"criterion {j.metric} unmeasured: {j.reason}")
    passed = not problems
    ran = any(s.status in (*_RAN, *_ERRORED) for s in states)
    name: VerdictName = ("passed" if passed else "failed") if ran else "not_run"
    return Verdict(
        experiment_id=exp.id,
        status=status,
        criteria=original.criteria,
        success_criteria_met=all(j.passed for j in original.criteria),
        confidence="low",
        recommendation="proceed" if passed else "investigate",
        passed=passed,
        problems=tuple(problems),
        review=(),
        verdict=name,
        reasons=tuple(problems) if not passed else (),
        subs=tuple(states),
        last_run=last_run,
    )


# --- the plan's own status (SPEC section 10) --------------------------------------------------

_SAYS_OPENS = frozenset(
    {
        "passed",
        "pass",
        "passed_with_pivot",
        "accepted",
        "recorded",
        "validated",
        "success",
        "succeeded",
        "successful",
        "proceed",
        "met",
    }
)
_SAYS_FAILS = frozenset({"failed", "fail", "failure", "rejected", "abandoned", "invalidated", "not_met"})
_SAYS_NOT_RUN = frozenset({"not_started", "not_run", "planned", "todo", "pending", "proposed", "queued"})
_SAYS_RAN = frozenset({"completed", "complete", "done", "finished"})


def _word(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").split())


def status_disagreement(status: PlanStatus | None, verdict: str, opens: bool) -> str | None:
    """The review line when the plan's ``status`` says otherwise than the computed verdict."""
    if status is None:
        return None
    word = _word(status.text)
    if word in _SAYS_OPENS:
        agrees = opens
    elif word in _SAYS_FAILS:
        agrees = not opens and verdict != "not_run"
    elif word in _SAYS_NOT_RUN:
        agrees = verdict == "not_run"
    elif word in _SAYS_RAN:
        agrees = verdict != "not_run"
    else:
        return None
    if agrees:
        return None
    return (
        f"the plan says `status: {status.text}` but the verdict is {verdict}: "
        f"update the status at {status.loc}"
        + ("" if opens else ", or record the team's decision with `accepted: {reason, by, date}`")
    )


def imported_review_line(subs: Sequence[SubExperiment], doc_subs: Mapping[str, Any]) -> str | None:
    """One review line while any current entry of these sub-experiments (an experiment's, in
    plan order) was imported from another runner (SPEC section 10): those results were not
    measured under pytest-mlexp."""
    imported = [
        (s.id, entry["imported"])
        for s in subs
        for entry in (as_mapping(doc_subs.get(s.id)),)
        if entry is not None and as_mapping(entry.get("imported")) is not None
    ]
    if not imported:
        return None
    first = imported[0][1]
    by = first.get("executed_by")
    when = first.get("started_at")
    source = ", ".join(str(x) for x in (by, when) if x)
    ids = ", ".join(sid for sid, _ in imported)
    return (
        f"{len(imported)} result(s) imported from the previous runner{f' ({source})' if source else ''}, "
        f"not measured under pytest-mlexp: {ids}; re-run them to measure them here"
    )
