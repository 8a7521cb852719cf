"""Which results ``--lf`` re-runs besides what failed (SPEC sections 10 and 11).  Pure; no pytest.

* New sweep points and stale results: a result the plan asks for that no current result answers
  (its params, seeds or point changed, or the point is new) joins the last-failed set.
* An assessment that fails while a criterion's supplier is outdated (its code or ``deps:``
  changed since it ran): the suppliers join the set.  The suppliers of a criterion are its
  ``from``, else the sub-experiments that reported its metric, else every sub-experiment of
  the experiment (:func:`suppliers`).  A criterion that was measured by current code and simply
  missed is re-judged, not re-run.

Results are named by node key: a sub-experiment id, or ``"<sub_id>[<point>]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .records import outdated_reason

if TYPE_CHECKING:
    from .model import Criterion, Experiment, Plan, Verdict

__all__ = ["never_answered", "outdated_suppliers", "suppliers"]


def _reported(entry: Any, metric: str) -> bool:
    if not isinstance(entry, Mapping):
        return False
    points = entry.get("points")
    if isinstance(points, Mapping) and points:
        return any(_reported(p, metric) for p in points.values())
    metrics = entry.get("metrics")
    return isinstance(metrics, Mapping) and metrics.get(metric) is not None


def suppliers(exp: Experiment, criterion: Criterion, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The sub-experiments whose results an experiment-level criterion reads."""
    if criterion.from_ is not None:
        return (criterion.from_,)
    subs = doc.get("sub_experiments") or {}
    found = tuple(s.id for s in exp.sub_experiments if _reported(subs.get(s.id), criterion.metric))
    return found or tuple(s.id for s in exp.sub_experiments)


def _outdated_nodes(sub_id: str, entry: Any) -> list[str]:
    if not isinstance(entry, Mapping):
        return []
    points = entry.get("points")
    if isinstance(points, Mapping) and points:
        return [f"{sub_id}[{k}]" for k, p in points.items() if outdated_reason(p) is not None]
    return [sub_id] if outdated_reason(entry) is not None else []


def outdated_suppliers(plan: Plan, exp: Experiment, verdict: Verdict, doc: Mapping[str, Any]) -> list[str]:
    """Outdated results that supply a criterion the verdict does not meet (an assessment that
    failed because a supplier's fingerprint changed since it ran)."""
    if verdict.passed:
        return []
    subs = doc.get("sub_experiments") or {}
    out: list[str] = []
    for criterion in exp.success_criteria:
        judged = next((j for j in verdict.criteria if j.metric == criterion.metric), None)
        if judged is not None and judged.passed:
            continue
        for sub_id in suppliers(exp, criterion, doc):
            if plan.has_sub(sub_id) and plan.sub(sub_id).experiment_id == exp.id:
                out += _outdated_nodes(sub_id, subs.get(sub_id))
    return list(dict.fromkeys(out))


def never_answered(exp: Experiment, doc: Mapping[str, Any]) -> list[str]:
    """Results the plan asks for that only a stale result answers, and new points of sweeps
    that ran before."""
    subs = doc.get("sub_experiments") or {}
    stale = doc.get("stale") or {}
    out: list[str] = []
    for sub in exp.sub_experiments:
        entry = subs.get(sub.id)
        if not sub.sweep:
            if sub.id in stale and not (
                isinstance(entry, Mapping) and entry.get("status") not in (None, "blocked")
            ):
                out.append(sub.id)
            continue
        points = entry.get("points") if isinstance(entry, Mapping) else None
        have = (
            {k for k, p in points.items() if isinstance(p, Mapping)} if isinstance(points, Mapping) else set()
        )
        ran_before = bool(have) or any(k.startswith(f"{sub.id}[") for k in stale)
        if not ran_before:
            continue  # a sweep that never ran is not "failed": it runs when selected
        out += [f"{sub.id}[{p.key}]" for p in sub.points() if p.key not in have]
    return out
