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
from .common import _is_map, _states, _table_lines


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


PROVENANCE_HEADER = ("Sub-experiment", "Git commit", "Dirty", "Python", "Packages", "Handler sha256")


def _provenance_rows(exp: Experiment, entries: Mapping[str, Any]) -> list[list[str]]:
    """The provenance table's rows: one per sub-experiment with provenance, in plan order."""
    rows = []
    for sub in exp.sub_experiments:
        row = _provenance_row(sub.id, entries.get(sub.id))
        if row is not None:
            rows.append(row)
    return rows


def _provenance_row(sub_id: str, entry: Any) -> list[str] | None:
    # (_is_map's answer for a dict, without the call: once per sub-experiment)
    if not (entry.__class__ is dict or _is_map(entry)):
        return None
    prov: Any = entry.get("provenance")
    if not (prov.__class__ is dict or _is_map(prov)):
        # A sweep's summary has none of its own: show the selected point's.
        points = entry.get("points")
        selected = entry.get("selected")
        if _is_map(points) and _is_map(points.get(selected)):
            prov = points[selected].get("provenance")
        if not _is_map(prov):
            return None
    packages = prov.get("packages")
    pkgs = (
        ", ".join(f"{k} {v}" for k, v in packages.items())
        if packages is not None and _is_map(packages)
        else "—"
    )
    commit = str(prov.get("git_commit") or "—")[:12]
    dirty = prov.get("git_dirty")
    handler = str(prov.get("handler_sha256") or "—")[:12]
    return [f"`{sub_id}`", commit, fmt_value(dirty), str(prov.get("python", "—")), pkgs or "—", handler]


def _provenance_lines(exp: Experiment, entries: Mapping[str, Any]) -> list[str]:
    """``_table_lines(_provenance_rows(exp, entries))``, with the common row written at once: a
    dict entry with its own provenance and no packages listed, its commit, python and handler
    text (or missing), its dirty flag a bool (or missing).

    Why: a row per sub-experiment, a thousand in a 1,000-item plan, at the session's end, and
    the sub-experiments of an experiment mostly share one commit, python and handler file: the
    row after the id is made (and checked for cells to escape) once per experiment for each
    such provenance, not once per row.  A unit test compares this with the general rows."""
    lines: list[str] = []
    tails: dict[tuple[Any, ...], str | bool | None] = {}
    subs = exp.sub_experiments
    ids = "".join([sub.id for sub in subs])  # (a plan's ids never need escaping: asked once)
    plain_ids = "|" not in ids and "\n" not in ids and "\r" not in ids
    for sub in subs:
        sub_id = sub.id
        entry = entries.get(sub_id)
        if plain_ids and entry.__class__ is dict:
            prov: Any = entry.get("provenance")
            dirty = prov.get("git_dirty") if prov.__class__ is dict else 0
            # (The flag asked here, not in _provenance_tail: 1 == True, and 1 shows as "1".)
            if (dirty is None or dirty is True or dirty is False) and prov.get("packages") is None:
                key = (prov.get("git_commit"), dirty, prov.get("python", "—"), prov.get("handler_sha256"))
                try:
                    tail = tails.get(key, False)
                except TypeError:  # a list or a mapping where text belongs: the general row shows it
                    tail = None
                if tail is False:
                    tail = tails[key] = _provenance_tail(*key)
                if tail is not None:
                    lines.append(f"| `{sub_id}` | {tail}")
                    continue
        row = _provenance_row(sub_id, entry)
        if row is not None:
            lines += _table_lines((row,))
    return lines


def _provenance_tail(commit: Any, dirty: Any, python: Any, handler: Any) -> str | None:
    """A provenance row after its id cell, as _provenance_row and _table_lines write it, or None
    when a field is not text (or missing) or a cell needs escaping.  ``dirty`` is None, True or
    False (the caller asks: equal keys must mean equal text)."""
    if not (
        (commit is None or commit.__class__ is str)
        and python.__class__ is str
        and (handler is None or handler.__class__ is str)
    ):
        return None
    line = " | ".join(
        (
            commit[:12] if commit else "—",
            fmt_value(dirty),
            python,
            "—",
            handler[:12] if handler else "—",
        )
    )
    if line.count("|") != 4 or "\n" in line or "\r" in line:
        return None
    return f"{line} |"
