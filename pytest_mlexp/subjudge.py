"""A sub-experiment judged from the current plan and its stored result: pure, like the verdict.

results.yaml stores what was measured; everything said about it -- the sub-experiment's status
where criteria decide it, each criterion's level, rule and sentence, whether its wiring is
complete, the selected point of a sweep -- is computed here from the *current* plan, wherever
it is shown (the item at run time, the verdict, FINDINGS.md, the summary, results.yaml when it
is next written).  Editing a criterion therefore re-judges every output without re-running.

What decides a sub-experiment's status (``judge_stored``):

- ``error`` / ``infra_error`` stored for a handler or the infrastructure: kept (not a judgement);
- a stored result whose values lack a metric the plan needs of it -- its criteria, its sweep's
  ``select``, an experiment criterion's ``from``, another sub-experiment's comparison with it --
  is a wiring ``error`` (SPEC section 5a), with a did-you-mean from the names it did report and
  the plan's line.  A reported NaN or infinity *is* reported (it fails its criterion in a real
  run, and passes the ``--stub`` wiring check).  A metric that ``achieved`` supplies is not
  needed of the handler;
- otherwise ``passed`` or ``failed`` by its criteria on the stored values (a criterion whose
  metric no measured value supplies is judged on the value ``achieved`` records, SPEC 10);
- no result, a ``blocked`` placeholder or a stale result: it never ran (its criteria are judged
  on ``achieved`` values where the plan records them, for the ``recorded`` verdict).

A sweep's status is ``error`` when a point errored (its wiring judged as above), else its
selected point judged as a single result; see ``select_point`` for the selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from .criteria import Lookup, Measurements, judge, judge_measured, judged_value, point_value
from .criteria.base import pct
from .idcache import IdentityCache
from .model import Achieved, Criterion, Judgement, Loc, Plan, SubExperiment, SubState
from .records import ResultEntry, as_mapping, new_entry, outdated_reason, stale_reason
from .structs import replace, struct
from .textutil import closest_metric

__all__ = [
    "Need",
    "judge_recorded",
    "judge_stored",
    "judge_sub",
    "lookup_for",
    "measurements",
    "needed_metrics",
    "outdated",
    "point_status",
    "select_point",
    "sub_values",
    "summarize_sweep",
    "unmeasured",
    "wiring_error",
]

_ERRORED = ("error", "infra_error")
_RAN = ("passed", "failed")


def _raw_values(entry: Mapping[str, Any], metric: str) -> list[Any]:
    per_seed = as_mapping(entry.get("per_seed"))
    if per_seed:
        vals = [s.get(metric) if isinstance(s, Mapping) else None for s in per_seed.values()]
        if any(v is not None for v in vals):
            return vals
    metrics = as_mapping(entry.get("metrics")) or {}
    return [metrics.get(metric)]


def _is_wiring(entry: Mapping[str, Any]) -> bool:
    err = as_mapping(entry.get("error"))
    return err is not None and err.get("kind") == "wiring"


def _judged_kind(entry: Mapping[str, Any]) -> bool:
    """Whether the stored status is a judgement (re-made from the plan): passed, failed, or a
    wiring error.  A handler's error and an infrastructure error are facts, not judgements."""
    status = entry.get("status")
    return status in _RAN or (status == "error" and _is_wiring(entry))


# --- what the plan needs a handler to report (SPEC section 5a) -----------------------------------


@struct(frozen=True)
class Need:
    """A metric the plan needs a sub-experiment's handler to report, and who needs it."""

    metric: str
    why: str  # "the criterion 'acc'", "select", "criterion 'acc' of experiment e (from: e_1)", ...
    loc: Loc | None


_NEEDS: IdentityCache[Plan, dict[str, tuple[Need, ...]]] = IdentityCache()


def _supplied(sub: SubExperiment, c: Criterion) -> bool:
    return c.achieved is not None or c.metric in sub.achieved


def needed_metrics(plan: Plan, sub: SubExperiment) -> tuple[Need, ...]:
    """What ``sub``'s handler must report (its wiring check), in plan order.  Computed once per
    plan object (a plan is frozen), kept while it lives."""
    return _NEEDS.get(plan, _all_needs).get(sub.id, ())


def _all_needs(plan: Plan) -> dict[str, tuple[Need, ...]]:
    found: dict[str, list[Need]] = {}

    def add(sub_id: str, need: Need) -> None:
        needs = found.setdefault(sub_id, [])
        if all(n.metric != need.metric for n in needs):
            needs.append(need)

    for exp in plan.experiments:
        for sub in exp.sub_experiments:
            for c in sub.success_criteria:
                if _supplied(sub, c) and c.form.aggregates_metric:
                    continue
                for metric in c.form.own_metrics(c.metric):
                    add(sub.id, Need(metric, f"the criterion {c.metric!r}", c.loc))
            if sub.select is not None:
                add(sub.id, Need(sub.select.metric, "select", sub.select.loc))
        for owner, crits in (
            (f"experiment {exp.id}", exp.success_criteria),
            *((f"pivot {p.key}", p.success_criteria) for p in exp.pivots),
        ):
            for c in crits:
                if c.from_ is None or not plan.has_sub(c.from_):
                    continue
                source = plan.sub(c.from_)
                if c.achieved is not None or c.metric in source.achieved:
                    continue
                for metric in c.form.own_metrics(c.metric):
                    add(c.from_, Need(metric, f"criterion {c.metric!r} of {owner} (from: {c.from_})", c.loc))
        for sub in exp.sub_experiments:
            for c in (*sub.success_criteria, *exp.success_criteria):
                ref = c.form.references()
                if ref is not None and plan.has_sub(ref[0]):
                    judged_by = sub.id if c in sub.success_criteria else c.from_
                    why = f"the criterion {c.metric!r} of {judged_by} (compares with {ref[0]}:{ref[1]})"
                    add(ref[0], Need(ref[1], why, c.loc))
    return {k: tuple(v) for k, v in found.items()}


def _reported(values: Sequence[Any]) -> tuple[int, int]:
    """(seeds that reported a value, seeds in all): None is not reported; NaN is."""
    return sum(v is not None for v in values), len(values)


def wiring_error(plan: Plan, sub: SubExperiment, entry: Mapping[str, Any]) -> str | None:
    """Why a stored result of ``sub`` (or of one sweep point) fails the wiring check, or None."""
    needs = needed_metrics(plan, sub)
    if not needs:
        return None
    measured = Measurements.of_entry(entry)
    problems: list[str] = []
    for need in needs:
        got, total = _reported(measured.values(need.metric))
        if got == total:
            continue
        where = f" at {need.loc}" if need.loc is not None else ""
        seeds = f" in {total - got} of {total} seeds" if got else ""
        text = f"did not report {need.metric!r}{seeds}, needed by {need.why}{where}"
        guess = closest_metric(need.metric, measured.names()) if not got else None
        if guess is not None:
            text += f"; did you mean {guess!r}?"
        problems.append(text)
    if not problems:
        return None
    names = ", ".join(measured.names()) or "no metrics"
    return f"the handler {'; it '.join(problems)} (it reported: {names})"


def point_status(plan: Plan | None, sub: SubExperiment, point: Mapping[str, Any]) -> tuple[str, str]:
    """A sweep point's status judged now: (status, why), ``why`` set for a wiring error."""
    status = str(point.get("status") or "")
    if plan is not None and _judged_kind(point):
        why = wiring_error(plan, sub, point)
        if why is not None:
            return "error", why
        return "passed", ""
    return status, ""


# --- values and measurements -------------------------------------------------------------------


def _value_entry(
    sub: SubExperiment, entry: Mapping[str, Any], lookup: Lookup | None = None
) -> Mapping[str, Any] | None:
    """The entry that holds a sub-experiment's values: for a sweep, its selected point."""
    points = as_mapping(entry.get("points"))
    if not points:
        return entry
    selected = select_point(sub, points, lookup)
    return as_mapping(points.get(selected)) if selected is not None else None


def sub_values(sub: SubExperiment, entry: Mapping[str, Any] | None, metric: str) -> list[Any]:
    """The per-seed values of ``metric`` (``per_seed`` when stored, else ``[metrics[metric]]``).

    A sweep entry (with ``points``) gives its selected point's values.  Missing: ``[None]``.
    """
    if entry is None:
        return [None]
    values_entry = _value_entry(sub, entry)
    return [None] if values_entry is None else _raw_values(values_entry, metric)


def measurements(sub: SubExperiment, entry: Any, plan: Plan | None = None) -> Measurements | None:
    """What a stored entry measured, as criteria read it (a sweep: its selected point); None when
    there is nothing to read (never ran, blocked, errored -- with ``plan``, its wiring judged
    now: a result that lacks what the plan needs of it is an error, not a result)."""
    entry = as_mapping(entry)
    if entry is None:
        return None
    if as_mapping(entry.get("points")):
        values = _value_entry(sub, entry)
        return Measurements.of_entry(values) if values is not None else None
    if not _judged_kind(entry):
        return None
    if plan is not None and wiring_error(plan, sub, entry) is not None:
        return None
    return Measurements.of_entry(entry)


def lookup_for(plan: Plan, entry_of: Any) -> Lookup:
    """Other sub-experiments' measurements, from their stored entries (``entry_of(sub_id)``)."""

    def lookup(sub_id: str) -> Measurements | None:
        return measurements(plan.sub(sub_id), entry_of(sub_id), plan) if plan.has_sub(sub_id) else None

    return lookup


# --- judging criteria ----------------------------------------------------------------------------


def judge_recorded(c: Criterion, achieved: Achieved, *, stub: bool = False) -> Judgement:
    """``c`` judged on a value recorded in the plan: one value, no seeds, so ``confidence`` is
    not applied (the message says so, and it is listed for review like every recorded value)."""
    plain = replace(c, confidence=None, aggregate="mean")
    j = judge(plain, [achieved.value], stub=stub)
    head, sep, rest = j.message.partition(" needs ")
    message = f"{head} ({achieved}){sep}{rest}" if sep else f"{j.message} ({achieved})"
    if c.confidence is not None:
        message += f"; its {pct(c.confidence)} confidence is not applied to a recorded value"
    return replace(j, message=message, stats=None, recorded=achieved)


def unmeasured(c: Criterion, reason: str) -> Judgement:
    """A criterion nothing measured and nothing recorded (``accepted`` still counts)."""
    rule = c.form.rule_text()
    if c.accepted is not None:
        return judge(c, [None])  # accepted: counts as passed, says it was not measured
    return Judgement(
        c.metric,
        None,
        "unmeasured",
        False,
        False,
        rule,
        f"{c.metric}: {reason}",
        reason=reason,
        note=c.note,
    )


def _achieved_for(sub: SubExperiment, c: Criterion) -> Achieved | None:
    return c.achieved if c.achieved is not None else sub.achieved.get(c.metric)


def outdated(entry: Mapping[str, Any] | None) -> bool:
    """A result whose code changed since it ran (SPEC section 11, ``outdated: <why>``): it still
    counts for verdicts and gates, but a value ``achieved`` records wins over it (SPEC 10)."""
    return outdated_reason(entry) is not None


def _judge_criteria(
    sub: SubExperiment,
    measured: Measurements | None,
    *,
    stub: bool,
    lookup: Lookup | None,
    is_outdated: bool = False,
) -> tuple[Judgement, ...]:
    out = []
    for c in sub.success_criteria:
        achieved = _achieved_for(sub, c) if c.form.aggregates_metric else None
        if achieved is not None and (
            is_outdated or measured is None or not any(v is not None for v in measured.values(c.metric))
        ):
            out.append(judge_recorded(c, achieved, stub=stub))  # measured values always win
        else:
            out.append(judge_measured(c, measured, lookup=lookup, stub=stub))
    return tuple(out)


def judge_sub(
    sub: SubExperiment, entry: Mapping[str, Any], *, stub: bool = False, lookup: Lookup | None = None
) -> tuple[Judgement, ...]:
    """The sub-experiment's own criteria judged on its stored values (a sweep: the selected point).

    ``lookup``: other sub-experiments' measurements, for criteria that compare with them."""
    values_entry = _value_entry(sub, entry, lookup)
    measured = Measurements.of_entry(values_entry) if values_entry is not None else None
    return _judge_criteria(sub, measured, stub=stub, lookup=lookup)


def _never_measured(sub: SubExperiment, why: str, stub: bool) -> tuple[Judgement, ...]:
    """Criteria of a sub-experiment that has no measured result: judged on ``achieved`` values
    when the plan records any (SPEC section 10), else none at all (it never ran)."""
    if not any(_achieved_for(sub, c) is not None for c in sub.success_criteria):
        return ()
    out = []
    for c in sub.success_criteria:
        achieved = _achieved_for(sub, c) if c.form.aggregates_metric else None
        if achieved is not None:
            out.append(judge_recorded(c, achieved, stub=stub))
        else:
            out.append(unmeasured(c, f"not measured ({why}) and not recorded in the plan"))
    return tuple(out)


# --- one stored result --------------------------------------------------------------------------


def _error_detail(entry: Mapping[str, Any]) -> str:
    err = as_mapping(entry.get("error"))
    if err is None:
        return str(entry.get("error") or "")
    text = str(err.get("message") or "").strip().splitlines()
    first = text[0] if text else ""
    kind = err.get("type") or (err.get("kind") if err.get("kind") not in ("handler", "sweep") else None)
    return f"{kind}: {first}" if kind and first else str(kind or first)


def _stale_reason(stale: Any) -> str | None:
    entry = as_mapping(stale)
    if entry is None:
        return None
    # written by the store when it moves an entry aside (records.STALE_REASON); an entry moved
    # before reasons were recorded says nothing, and gets the general reason
    return stale_reason(entry) or "its params or the plan changed since it ran"


def judge_stored(
    plan: Plan | None,
    sub: SubExperiment,
    entry: Any,
    *,
    stub: bool = False,
    lookup: Lookup | None = None,
    stale: Any = None,
) -> SubState:
    """``sub`` judged from its stored ``entry`` (None: nothing stored) and the current plan (see
    the module docstring).  ``stale``: its entry under ``stale:``, shown when nothing current is
    stored.  Without ``plan`` there is no wiring check (tests of criteria alone)."""
    entry = as_mapping(entry)
    if entry is None or not entry:
        why = _stale_reason(stale)
        detail = f"its result is stale: {why}" if why else ""
        ran = "its result is stale" if why else f"{sub.id} has not run"
        return SubState(sub, "not_run", _never_measured(sub, ran, stub), None, detail, stale=why)
    stored = entry.get("status")
    points = as_mapping(entry.get("points"))
    if points:
        return _sweep_state(plan, sub, points, stub, lookup)
    if stored == "blocked":
        detail = entry.get("blocked_reason") or entry.get("reason") or _error_detail(entry)
        judged = _never_measured(sub, "blocked", stub)
        return SubState(sub, "blocked", judged, None, str(detail or ""))
    if stored in _ERRORED and not _is_wiring(entry):
        has_values = bool(as_mapping(entry.get("metrics")) or as_mapping(entry.get("per_seed")))
        return SubState(sub, cast(Any, stored), (), entry, _error_detail(entry), measured=has_values)
    # _judged_kind's question: an ``error`` that gets here is a wiring error (a handler's
    # returned above).
    if stored not in _RAN and stored != "error":  # skipped, cancelled, unknown: counts as never run
        return SubState(sub, "not_run", _never_measured(sub, f"{sub.id} has not run", stub), None, "")
    judgements, why = _judged(plan, sub, entry, stub, lookup)
    if why is not None:
        return SubState(sub, "error", judgements, entry, why, measured=True, wiring=True)
    passed = not judgements or all(j.passed for j in judgements)  # (none: no generator)
    return SubState(sub, "passed" if passed else "failed", judgements, entry, "", measured=True)


def _judged(
    plan: Plan | None, sub: SubExperiment, entry: Mapping[str, Any], stub: bool, lookup: Lookup | None
) -> tuple[tuple[Judgement, ...], str | None]:
    """A measured result's criteria judged, and why its wiring fails (None: it does not)."""
    judgements: tuple[Judgement, ...] = ()
    if sub.success_criteria:  # (none: nothing to measure, e.g. a baseline others compare with)
        measured = Measurements.of_entry(entry)
        judgements = _judge_criteria(sub, measured, stub=stub, lookup=lookup, is_outdated=outdated(entry))
    return judgements, wiring_error(plan, sub, entry) if plan is not None else None


def judge_result(
    plan: Plan | None,
    sub: SubExperiment,
    entry: Mapping[str, Any],
    *,
    stub: bool = False,
    lookup: Lookup | None = None,
) -> tuple[tuple[Judgement, ...], str | None]:
    """A freshly measured result (not a sweep point) judged, as the item reports it: its
    criteria's judgements and why its wiring fails (then it is an ``error``; else ``passed``
    when every judgement passed, ``failed`` otherwise), the judgement ``judge_stored`` makes
    of it once stored.  No :class:`SubState` (nothing keeps it): a third of judging one."""
    return _judged(plan, sub, entry, stub, lookup)


# --- sweeps -------------------------------------------------------------------------------------


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
        entry = as_mapping(points[key])
        if (
            entry is not None
            and entry.get("status") in ("passed", "failed", "error")
            and (entry.get("status") != "error" or _is_wiring(entry))
        ):
            out.append((key, entry))
    return out


def select_point(sub: SubExperiment, points: Mapping[str, Any], lookup: Lookup | None = None) -> str | None:
    """The key of the point that represents a sweep; None if none can.

    ``select`` ranks by its metric (the metric's own criterion aggregates it over seeds);
    without it, the first criterion some point reports ranks in its direction (the forms'
    ``point_value`` and ``score``: higher / ``>`` / ``>=`` pick the max, lower / ``<`` / ``<=``
    the min, ``in`` the point closest to the middle, ``==`` the closest to the value); with no
    criteria, the first point.  Ties go to the first point in plan order; points that errored or
    never ran are not candidates."""
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
    plan: Plan | None, sub: SubExperiment, points: Mapping[str, Any], stub: bool, lookup: Lookup | None
) -> tuple[str, str | None, tuple[Judgement, ...], str, bool]:
    """(status, selected, judgements on the selected point, error message, wiring)."""
    statuses: dict[str, str] = {}
    wiring: dict[str, str] = {}
    for key, raw in points.items():
        point = as_mapping(raw) or {}
        status, why = point_status(plan, sub, point)
        statuses[key] = status
        if why:
            wiring[key] = why
    errored = [k for k, s in statuses.items() if s in _ERRORED]
    if statuses and all(s == "blocked" for s in statuses.values()):
        return "blocked", None, (), "", False
    if statuses and all(s not in ("passed", "failed", *_ERRORED) for s in statuses.values()):
        return "not_run", None, (), "", False
    kind = "infra_error" if errored and all(statuses[k] == "infra_error" for k in errored) else "error"
    message = ""
    if errored:
        message = f"{len(errored)} of {len(points)} points errored: {', '.join(errored)}"
        first_wiring = next((wiring[k] for k in errored if k in wiring), None)
        if first_wiring is not None:
            message += f" ({first_wiring})"
    selected = select_point(sub, {k: v for k, v in points.items() if k not in wiring}, lookup)
    if selected is None:
        if not message:
            metric = sub.select.metric if sub.select else ", ".join(c.metric for c in sub.success_criteria)
            message = f"no point of the sweep reported {metric or 'a result'}"
        return kind, None, (), message, bool(wiring)
    values = Measurements.of_entry(cast(Mapping[str, Any], points[selected]))
    judgements = _judge_criteria(sub, values, stub=stub, lookup=lookup)
    if errored:
        return kind, selected, judgements, message, bool(wiring)
    return ("passed" if all(j.passed for j in judgements) else "failed"), selected, judgements, "", False


def _sweep_state(
    plan: Plan | None, sub: SubExperiment, points: Mapping[str, Any], stub: bool, lookup: Lookup | None
) -> SubState:
    status, selected, judgements, message, wiring = _sweep(plan, sub, points, stub, lookup)
    if status in ("blocked", "not_run"):
        return SubState(sub, cast(Any, status), _never_measured(sub, status, stub), None, message)
    values = as_mapping(points.get(selected)) if selected is not None else None
    return SubState(
        sub, cast(Any, status), judgements, values, message, selected=selected, measured=True, wiring=wiring
    )


def summarize_sweep(
    sub: SubExperiment,
    points: Mapping[str, ResultEntry],
    *,
    stub: bool = False,
    lookup: Lookup | None = None,
    plan: Plan | None = None,
) -> ResultEntry:
    """The summary fields of a sweep's sub-experiment entry (``points`` themselves are not copied).

    Keys: ``status``, ``selected``, ``metrics``, ``criteria`` and, where the selected point has
    them, ``per_seed``, ``stats``, ``finding``; ``error`` ({kind: sweep, message}) when not passed
    because of errors.  Every summary key is present (None where it has no value), so laying a
    new summary over an old one leaves nothing of the old behind.
    """
    status, selected, judgements, message, _ = _sweep(plan, sub, points, stub, lookup)
    out = new_entry("skipped" if status == "not_run" else status, selected=selected, metrics={})
    point = cast(Mapping[str, Any], points[selected]) if selected is not None else {}
    out["metrics"] = dict(as_mapping(point.get("metrics")) or {})
    fields = cast(dict[str, Any], out)
    for key in ("per_seed", "stats", "finding"):
        fields[key] = point.get(key)
    out["criteria"] = {j.metric: j.to_dict() for j in judgements}
    fields["error"] = {"kind": "sweep", "message": message} if message else None
    return out
