"""What ``--lf`` re-runs for an experiment whose assessment failed (SPEC section 10).

An assessment that fails on its experiment-level criteria has no sub-experiment of its own to
re-run: its sub-experiment items "passed" (they have no criteria, or met theirs).  Re-running
the assessment alone re-judges the stored values, which is right for a criterion that was
measured and simply missed (re-running unchanged code until it passes is not science), and
wrong for one that was never measured (the handler returned NaN, or nothing, or errored): a
fixed handler would never run again.  So, for each criterion of a failed verdict that is

* unmeasured (level ``unmeasured``: nothing reported it; or ``missing``: NaN, not a number), or
* supplied by a sub-experiment that errored, or
* supplied by a sub-experiment whose code changed since it ran (``changed``: the reuse
  machinery's fingerprints, SPEC section 11),

its suppliers join the last-failed set: the sub-experiment its ``from`` names, else the ones
that reported the metric, else every sub-experiment of the experiment.

Pure: the plan, the verdict and the stored entries in, sub-experiment ids out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .model import Criterion, Experiment, Judgement, Verdict
from .verdict import sub_values

__all__ = ["Changed", "EntryOf", "criterion_suppliers", "rerun_suppliers"]

#: A sub-experiment's stored entry by id (None: nothing stored).
EntryOf = Callable[[str], "Mapping[str, Any] | None"]
#: Whether a sub-experiment's code (its fingerprint) changed since its stored result ran.
Changed = Callable[[str], bool]

_ERRORED = ("error", "infra_error")
# Levels of a criterion that has no usable value: nothing reported it, or what was reported is
# NaN, infinite or not a number.
_UNMEASURED = ("missing", "unmeasured")


def criterion_suppliers(exp: Experiment, criterion: Criterion, entry_of: EntryOf) -> list[str]:
    """The sub-experiments that supply an experiment-level criterion's value: its ``from``, else
    those that reported the metric (a NaN counts: it was reported), else all of them."""
    if criterion.from_ is not None:
        return [criterion.from_]
    reported = [
        s.id
        for s in exp.sub_experiments
        if any(v is not None for v in sub_values(s, entry_of(s.id), criterion.metric))
    ]
    return reported or [s.id for s in exp.sub_experiments]


def _errored(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and entry.get("status") in _ERRORED


def rerun_suppliers(
    exp: Experiment, verdict: Verdict, entry_of: EntryOf, *, changed: Changed | None = None
) -> list[str]:
    """Sub-experiment ids ``--lf`` must re-run for a failed assessment (see the module), in
    plan order; empty when the verdict passed or every unmet criterion was measured and missed."""
    if verdict.passed:
        return []
    judged: dict[str, Judgement] = {j.metric: j for j in verdict.criteria}
    wanted: set[str] = set()
    for criterion in exp.success_criteria:
        j = judged.get(criterion.metric)
        if j is None or j.passed:
            continue
        suppliers = criterion_suppliers(exp, criterion, entry_of)
        if j.level in _UNMEASURED or any(_errored(entry_of(s)) for s in suppliers):
            wanted.update(suppliers)
        elif changed is not None:
            wanted.update(s for s in suppliers if changed(s))
    return [s.id for s in exp.sub_experiments if s.id in wanted]
