"""The next steps of an experiment's FINDINGS.md: what to do about each unmet, borderline or
inconclusive criterion, and the provenance table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import (
    Experiment,
    SubState,
    Verdict,
)
from ..records import UNFINISHED_IMPORT
from ..textutil import fmt_number as fmt_value  # the one number formatter
from .common import _is_map, _states


def _next_steps(
    exp: Experiment,
    entries: Mapping[str, Any],
    verdict: Verdict,
    blockers: Sequence[Any],
    states: Sequence[SubState] | None = None,
) -> list[str]:
    if states is None:
        states = _states(exp, entries, {}, verdict)
    steps: list[str] = []
    for b in blockers:
        kind, ident = getattr(b, "kind", None), getattr(b, "id", None)
        if kind == "dependency":
            steps.append(
                f"Unblock it: make `{ident}` pass, or, if the team decided to go on without it, record "
                f"that decision on the experiment `{ident}` in the plan: "
                '`accepted: {reason: "...", by: "<name>", date: "YYYY-MM-DD"}` (a dependency opens on its '
                f"verdict; a gate's `accepted` would not help). Then run `pytest --experiment {exp.id}`."
            )
        elif kind == "gate":
            steps.append(
                f"Unblock it: make the experiments of gate `{ident}` pass, or record the decision on the "
                f"gate `{ident}` in the plan: "
                '`accepted: {reason: "...", by: "<name>", date: "YYYY-MM-DD"}`. '
                f"Then run `pytest --experiment {exp.id}`."
            )
    if blockers and not any(getattr(b, "kind", None) for b in blockers):
        steps.append(
            "Unblock it: make the prerequisites above pass (or record `accepted: {reason, by, date}` "
            "where the plan names them), then run `pytest --experiment " + exp.id + "`."
        )
    errored, failed, never, stale_ids = _by_status(states)
    if errored:
        cmd = (
            f"pytest --experiment {errored[0]}" if len(errored) == 1 else f"pytest --experiment {exp.id} --lf"
        )
        steps.append(f"Fix and re-run what errored ({', '.join(errored)}): `{cmd}`.")
    if failed and not verdict.passed:
        steps.append(
            f"Re-run the sub-experiments that missed their criteria ({', '.join(failed)}) "
            f"after a change: `pytest --experiment {exp.id} --lf`."
        )
    if stale_ids and not blockers:
        steps.append(
            f"Re-run what the plan changed under ({', '.join(stale_ids)}): `pytest --experiment {exp.id}`."
        )
    if never and not blockers:
        steps.append(f"Run what never ran ({', '.join(never)}): `pytest --experiment {exp.id}`.")
    recorded = [j.metric for j in verdict.criteria if j.recorded is not None]
    if recorded:
        steps.append(
            f"{', '.join(f'`{m}`' for m in recorded)} "
            f"{'is' if len(recorded) == 1 else 'are'} recorded in the plan, not measured: a run that "
            "reports them replaces the recorded values."
        )
    for j in verdict.criteria:
        if j.level == "inconclusive":
            where = f" on `{j.source}`" if j.source else ""
            if j.seeds_needed:
                steps.append(
                    f"`{j.metric}` is inconclusive: about {j.seeds_needed} seeds would settle it "
                    f"(set `seeds: {j.seeds_needed}`{where})."
                )
            else:
                steps.append(f"`{j.metric}` is inconclusive: run more seeds{where} (at least 2).")
    unmet = [j for j in verdict.criteria if not j.passed and j.level in ("miss", "failure", "fail")]
    if verdict.recommendation == "pivot" and unmet:
        need = "; ".join(f"`{j.metric}` {j.rule} (now {fmt_value(j.value)})" for j in unmet)
        steps.append(
            f"A pivot (a pivot block under `{exp.id}` with its own sub-experiments and criteria, or an "
            f"experiment with `replaces: [{exp.id}]`) must beat: {need}; the criteria already met must "
            "hold too."
        )
    for state in states:  # sub-level criteria deserve the same advice
        for j in state.judgements:
            if j.level == "inconclusive":
                n = j.seeds_needed
                more = f"about {n} seeds would settle it (set `seeds: {n}`)" if n else "run more seeds"
                steps.append(f"`{state.sub.id}`: `{j.metric}` is inconclusive: {more}.")
            elif j.borderline and j.passed:
                steps.append(
                    f"`{state.sub.id}`: `{j.metric}` passed within the borderline margin: check it by eye, "
                    "run more seeds, or record the decision with `accepted: {reason, by, date}`."
                )
    # Nothing reported (a blocked experiment, one never run) is nothing to accept "as it stands".
    doubtful = [
        j
        for j in verdict.criteria
        if (not j.passed or j.borderline) and j.level not in ("accepted", "unmeasured")
    ]
    if doubtful and verdict.verdict not in ("accepted", "passed_with_pivot"):
        names = ", ".join(f"`{j.metric}`" for j in doubtful)
        steps.append(
            f"If the team decides to accept {names} as it stands, record it under that criterion in "
            'the plan: `accepted: {reason: "...", by: "<name>", date: "YYYY-MM-DD"}`; '
            "it then counts as passed and stays listed for review. To accept the experiment as a "
            "whole (its dependents then run), put `accepted:` on the experiment."
        )
    if verdict.plan_disagrees:
        steps.append(f"The plan's status disagrees with the verdict: {verdict.plan_disagrees}.")
    if verdict.verdict == "passed_with_pivot" and verdict.pivot is not None:
        steps.append(
            f"The pivot `{verdict.pivot}` met its criteria, so what this experiment unlocks may go on; "
            "the original criteria stay unmet and listed for review."
        )
    elif verdict.verdict == "accepted":
        steps.append(
            "The experiment is accepted in the plan, so what it unlocks may go on; the measured "
            "results above stay as they are and listed for review."
        )
    elif verdict.verdict == "recorded":
        steps.append(
            "Every criterion is met by values recorded in the plan, so what it unlocks may go on; "
            f"to measure them, run `pytest --experiment {exp.id}`."
        )
    if verdict.passed and verdict.recommendation == "proceed" and not steps:
        steps.append("Every criterion is met: proceed to what this experiment unlocks.")
    elif verdict.recommendation == "investigate" and not steps:
        steps.append("Investigate what is listed under REQUIRES HUMAN REVIEW before deciding.")
    return steps


def _by_status(states: Sequence[SubState]) -> tuple[list[str], list[str], list[str], list[str]]:
    """The ids of the sub-experiments that errored, failed (not accepted), never ran and went
    stale, in plan order: one pass over the states (a large experiment has thousands)."""
    errored: list[str] = []
    failed: list[str] = []
    never: list[str] = []
    stale_ids: list[str] = []
    for s in states:
        status, stale = s.status, s.stale
        if status in ("error", "infra_error"):
            errored.append(s.sub.id)
        elif status == "failed" and not s.counts_as_passed:
            failed.append(s.sub.id)
        # An entry the previous runner left unfinished (``in_progress``, ``skipped``) is kept
        # under ``stale:`` but never ran: the plan did not change under it.
        unfinished = stale is not None and stale.startswith(UNFINISHED_IMPORT)
        if status == "not_run" and (stale is None or unfinished):
            never.append(s.sub.id)
        if stale is not None and not unfinished:
            stale_ids.append(s.sub.id)
    return errored, failed, never, stale_ids


def _provenance_rows(exp: Experiment, entries: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for sub in exp.sub_experiments:
        entry: Any = entries.get(sub.id)
        # (_is_map's answer for a dict, without the call: once per sub-experiment)
        if not (entry.__class__ is dict or _is_map(entry)):
            continue
        prov: Any = entry.get("provenance")
        if not (prov.__class__ is dict or _is_map(prov)):
            # A sweep's summary has none of its own: show the selected point's.
            points = entry.get("points")
            selected = entry.get("selected")
            if _is_map(points) and _is_map(points.get(selected)):
                prov = points[selected].get("provenance")
            if not _is_map(prov):
                continue
        packages = prov.get("packages")
        pkgs = (
            ", ".join(f"{k} {v}" for k, v in packages.items())
            if packages is not None and _is_map(packages)
            else "—"
        )
        commit = str(prov.get("git_commit") or "—")[:12]
        dirty = prov.get("git_dirty")
        handler = str(prov.get("handler_sha256") or "—")[:12]
        rows.append(
            [f"`{sub.id}`", commit, fmt_value(dirty), str(prov.get("python", "—")), pkgs or "—", handler]
        )
    return rows
