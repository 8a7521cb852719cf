"""One experiment's FINDINGS.md block (SPEC section 8), with what an adopted plan says in its own
words (SPEC section 10).
"""

from __future__ import annotations

import math
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import (
    Accepted,
    Experiment,
    Judgement,
    Plan,
    SubExperiment,
    SubState,
    Verdict,
)
from ..records import OUTDATED, stale_reason, tracker_label, tracking_of
from ..resultsdoc import earlier_attempts, seeds_added_after_inconclusive
from ..subjudge import point_status
from ..textutil import fmt_number as fmt_value  # the one number formatter
from ..verdictwords import blocked_line, recommendation_text, verdict_word
from .common import (
    _NOTICE,
    IMAGE_SUFFIXES,
    MAX_POINT_METRICS,
    MAX_POINT_ROWS,
    ExistsFn,
    ScrubFn,
    SentenceFn,
    _always,
    _blocker_text,
    _criterion_for,
    _first_line,
    _identity,
    _is_map,
    _link_target,
    _result,
    _say,
    _sentence_fn,
    _states,
    _stats_from,
    _table,
    _tiers,
    _value_text,
    code,
    relative_artifact,
)
from .nextsteps import PROVENANCE_HEADER, _next_steps, _provenance_lines

# --- what an adopted plan says in its own words (SPEC section 10) ------------------------------

# Annotation keys shown under "From the plan", in this order, with their label.
PLAN_WORDS = (
    ("description", "Description"),
    ("outcome", "Outcome"),
    ("achieved", "Achieved"),
    ("future_study", "Future study"),
)


def _plan_text(value: Any) -> str:
    """A plan annotation as one line: text folded, lists joined, mappings as ``key value``."""
    if _is_map(value):
        return ", ".join(f"{k} {_plan_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_plan_text(v) for v in value)
    if isinstance(value, (bool, int, float)) or value is None:
        return fmt_value(value)
    return " ".join(str(value).split())


def plan_words(node: Experiment | SubExperiment) -> list[str]:
    """What the plan says about an experiment or sub-experiment in its own words: description,
    outcome, achieved (as text), future study, and each pivot's rationale."""
    meta = node.meta
    out: list[str] = []
    if meta:
        out += [f"**{n}:** {_plan_text(meta[k])}" for k, n in PLAN_WORDS if meta.get(k) not in (None, "")]
    # (A sub-experiment has no pivots: asked without getattr's failed lookup, once per row.)
    for pivot in node.pivots if isinstance(node, Experiment) else ():
        if pivot.rationale:
            label = f"{pivot.name} (`{pivot.key}`)" if pivot.name != pivot.key else f"`{pivot.key}`"
            out.append(f"**Pivot {label} rationale:** {_plan_text(pivot.rationale)}")
    return out


def _imported_line(sub: SubExperiment, imported: Mapping[str, Any]) -> str:
    who = imported.get("executed_by")
    when = imported.get("started_at")
    source = " ".join(x for x in (f"by {who}" if who else "", f"run {when}" if when else "") if x)
    text = "Imported from the previous runner's results (`results.legacy.yaml`)"
    if imported.get("source_key"):
        text += f", where it was recorded as `{imported['source_key']}`"
    text += f" ({source})" if source else ""
    return text + "; judged by today's criteria, not measured under pytest-mlexp."


def _previous_runner(previous: Any) -> list[str]:
    """What the runner before pytest-mlexp concluded: shown as it said it, never judged."""
    if not _is_map(previous):
        return []
    out = ["_Shown as recorded in `results.legacy.yaml`; pytest-mlexp does not judge it._", ""]
    facts = [
        f"{label} {previous[key]}"
        for key, label in (("status", "status"), ("executed_by", "by"), ("completed_at", "completed"))
        if previous.get(key)
    ]
    if facts:
        out.append(f"- Run: {', '.join(str(f) for f in facts)}")
    assessment = previous.get("assessment")
    if _is_map(assessment):
        out.append("- Assessment: " + ", ".join(f"{k} {_plan_text(v)}" for k, v in assessment.items()))
    if previous.get("recommendation"):
        rec = f"- Recommendation: {_plan_text(previous['recommendation'])}"
        if previous.get("recommendation_notes"):
            rec += f" ({_plan_text(previous['recommendation_notes'])})"
        out.append(rec)
    for key, label in (("blockers", "Blockers"), ("issues", "Issues")):
        items = previous.get(key)
        if isinstance(items, list) and items:
            out.append(f"- {label}: " + "; ".join(_plan_text(i) for i in items))
    return out if len(out) > 2 else []


# --- one experiment ---------------------------------------------------------------------------


# What a verdict's problems are to the reader: for a verdict that opens its gates they are what it
# went on without (a recorded value is not "never ran", it is "recorded, not measured").
_PROBLEMS_HEADING = {
    "passed_with_pivot": "What the original criteria lack:",
    "recorded": "Not measured here:",
    "accepted": "What the team accepted as it stands:",
}


def render_experiment(
    exp: Experiment,
    doc: Mapping[str, Any],
    verdict: Verdict,
    *,
    blockers: Sequence[Any] = (),
    sentence: SentenceFn | None = None,
    scrub: ScrubFn = _identity,
    findings_dir: str | None = None,
    plan: Plan | None = None,
    plots: Mapping[str, str] | None = None,
    exists: ExistsFn = _always,
) -> str:
    """The generated block (without the markers) of ``experiments/<id>/FINDINGS.md``.

    Every judgement in it comes from ``verdict`` (computed from the current plan), never from
    what results.yaml stored beside the measurements.  ``blockers``: why the experiment is
    blocked now (``blocking.Blocker`` or plain lines).  ``findings_dir`` is the FINDINGS.md folder
    relative to the plan folder (artifact paths in results.yaml are relative to the plan
    folder); default ``experiments/<id>``.  ``plan``: to judge each sweep point's wiring now.
    ``plots``: the charts drawn for it (``plots.experiment_plots``: name -> path relative to the
    plan folder).
    ``exists`` tells whether an artifact (a plan-relative path) is there to link to.
    """
    charts = dict(plots or {})
    say = _sentence_fn(sentence)
    where = findings_dir if findings_dir is not None else f"experiments/{exp.id}"
    subs_doc = doc.get("sub_experiments")
    entries: Mapping[str, Any] = subs_doc if _is_map(subs_doc) else {}
    stale_doc = doc.get("stale")
    stale: Mapping[str, Any] = stale_doc if _is_map(stale_doc) else {}
    states = _states(exp, entries, stale, verdict)
    judged = list(verdict.criteria)
    met = sum(1 for j in judged if j.passed)
    block_lines = [_blocker_text(b) for b in blockers]
    out: list[str] = [_NOTICE, f"## Results: {exp.name} (`{exp.id}`)", ""]

    shown_verdict = blocked_line(verdict, []) if block_lines else verdict_word(verdict)
    status_line = (
        f"**Verdict:** {shown_verdict} · **Recommendation:** {recommendation_text(verdict)} · "
        f"**Status:** {verdict.status} · **Confidence:** {verdict.confidence} · "
        f"**Criteria met:** {met}/{len(judged)}"
    )
    out.append(status_line)
    if verdict.plan_status is not None:
        out += ["", f"The plan says: {verdict.plan_status.text} (line {verdict.plan_status.loc.line})."]
    if doc.get("updated_at"):
        out += ["", f"Last updated: {doc['updated_at']}"]
    if exp.retired:
        out += ["", "_This experiment is retired._"]
    out.append("")

    # The plan's own words (an adopted project wrote them before any result of ours).
    words = plan_words(exp)
    if words:
        out += ["### From the plan", ""]
        out += [f"- {line}" for line in words]
        out.append("")

    # Summary: what ran, whether it worked, and why not.
    out += ["### Summary", ""]
    counts: dict[str, int] = {}
    for state in states:
        status = state.status if state.stale is None else "stale"
        counts[status] = counts.get(status, 0) + 1
    ran = ", ".join(f"{n} {status.replace('not_run', 'not run')}" for status, n in counts.items())
    out.append(f"{len(exp.sub_experiments)} sub-experiment(s): {ran}.")
    if verdict.verdict == "passed":
        out.append("Every sub-experiment passed and every success criterion is met.")
    elif verdict.message:
        out.append(f"{verdict.message[0].upper()}{verdict.message[1:]}.")
    if verdict.recommendation == "investigate" and verdict.reasons:
        out += ["", "Why investigate:", ""]
        out += [f"- {r}" for r in verdict.reasons]
    if verdict.problems:
        heading = _PROBLEMS_HEADING.get(verdict.verdict, "Why it does not pass yet:")
        out += ["", heading, ""]
        out += [f"- {p}" for p in verdict.problems]
    if block_lines:
        out += ["", "**Blocked by:**", ""]
        out += [f"- {b}" for b in block_lines]
    out.append("")

    # Key metrics: the experiment-level criteria.
    if judged:
        out += ["### Key metrics", ""]
        rows = []
        for j in judged:
            c = _criterion_for(exp.success_criteria, j.metric)
            target, acceptable, failure = _tiers(c, j.rule)
            rows.append([f"`{j.metric}`", _value_text(j), target, acceptable, failure, _result(j)])
        header = ["Metric", "Value", "Target", "Acceptable", "Failure", "Result"]
        previous = [_vs_previous(entries, stale, j) for j in judged]
        if any(previous):  # SPEC section 11: only when history has an earlier run
            header.append("vs previous")
            for row, text in zip(rows, previous, strict=True):
                row.append(text or "—")
        out += _table(header, rows)
        out += ["", f"**{met}/{len(judged)} criteria met.**", ""]
        for j in judged:
            out.append(f"- {_say(j, _criterion_for(exp.success_criteria, j.metric), say)}")
        out.append("")
    out += _chart(charts, "criteria.png", "Criteria against their bands", where)

    if exp.pivots:
        out += _pivots_section(exp, verdict, say)

    if verdict.review:
        out += ["### ⚠️ REQUIRES HUMAN REVIEW", ""]
        out += [f"- {line}" for line in verdict.review]
        out.append("")

    steps = _next_steps(exp, entries, verdict, blockers, states)
    if steps:
        out += ["### Next steps", ""]
        out += [f"- {s}" for s in steps]
        out.append("")

    previous = _previous_runner(doc.get("previous_runner"))
    if previous:
        out += ["### What the previous runner said", ""]
        out += previous
        out.append("")

    out += ["### Sub-experiments", ""]
    for state in states:
        entry = entries.get(state.sub.id)
        section = _quiet_sub(state, entry, stale, say, where, charts)
        if section is None:
            out += _render_sub(state, entry, stale, say, where, plan, charts, exists)
        else:
            out.append(section)

    prov = _provenance_lines(exp, entries)
    if prov:
        out += ["### Provenance", ""]
        out += _table(PROVENANCE_HEADER, ())
        out += prov
        out.append("")
    return scrub("\n".join(out).rstrip("\n") + "\n")


def _chart(charts: Mapping[str, str], name: str, alt: str, where: str) -> list[str]:
    path = charts.get(name)
    if not path:
        return []
    return [f"![{alt}]({_link_target(relative_artifact(path, where))})", ""]


def _pivots_section(exp: Experiment, verdict: Verdict, say: SentenceFn) -> list[str]:
    """Original and pivot criteria side by side: how many pivots, which passed."""
    n = len(exp.pivots)
    passed = [pv.pivot.key for pv in verdict.pivots if pv.met]
    out = ["### Pivots", ""]
    sentence = f"This experiment has {n} pivot{'s' if n != 1 else ''}"
    if verdict.pivot is not None:
        sentence += f"; the verdict passes through `{verdict.pivot}`."
    elif passed:
        sentence += f"; met: {', '.join(f'`{k}`' for k in passed)}."
    else:
        sentence += "; none is met."
    out += [sentence, ""]
    metrics: list[str] = [j.metric for j in verdict.criteria]
    for pv in verdict.pivots:
        metrics += [j.metric for j in pv.criteria if j.metric not in metrics]
    columns = ["Criterion", "Original", *(f"{pv.pivot.name} (`{pv.pivot.key}`)" for pv in verdict.pivots)]

    def cell_of(judgements: Sequence[Judgement], metric: str) -> str:
        j = next((x for x in judgements if x.metric == metric), None)
        return "—" if j is None else f"{_value_text(j)}: {_result(j)}"

    rows = [
        [f"`{m}`", cell_of(verdict.criteria, m), *(cell_of(pv.criteria, m) for pv in verdict.pivots)]
        for m in metrics
    ]
    status_row = [
        "**met**",
        "✅" if all(j.passed for j in verdict.criteria) and verdict.criteria else "❌",
        *(("✅" + (" (accepted)" if pv.pivot.accepted else "")) if pv.met else "❌" for pv in verdict.pivots),
    ]
    out += _table(columns, [*rows, status_row])
    out.append("")
    for pv in verdict.pivots:
        subs = ", ".join(f"`{s}`" for s in pv.pivot.sub_ids) or "none"
        out.append(f"- `{pv.pivot.key}` ({pv.pivot.name}): sub-experiments {subs}.")
        for j in pv.criteria:
            c = _criterion_for(pv.pivot.success_criteria, j.metric)
            out.append(f"  - {_say(j, c, say)}")
        if pv.pivot.accepted is not None:
            acc = pv.pivot.accepted
            out.append(f"  - accepted{_who(acc)}: {acc.reason}")
    out.append("")
    return out


def _who(acc: Accepted) -> str:
    return "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))


def _vs_previous(entries: Mapping[str, Any], stale: Mapping[str, Any], j: Judgement) -> str:
    """``+0.0062 (was 0.9729)``: the judged value against the source's previous run (its
    history, or the run its params or seeds replaced)."""
    from ..compare import previous_value

    node = j.source
    entry = entries.get(node) if node else None
    if _is_map(entry) and _is_map(entry.get("points")):
        node = f"{node}[{entry.get('selected')}]"
        entry = entry["points"].get(entry.get("selected"))
    value = j.value
    if not _is_map(entry) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    before = previous_value(entry, j.metric, stale.get(node) if node else None)
    if before is None:
        return ""
    delta = float(value) - before
    sign = "+" if delta > 0 else ""
    return f"{sign}{fmt_value(delta)} (was {fmt_value(before)})"


def _run_notes(entry: Mapping[str, Any]) -> list[str]:
    """Reused, outdated, files gone (SPEC section 11)."""
    out: list[str] = []
    reused = entry.get("reused")
    if _is_map(reused):
        when = str(reused.get("from") or "")[:10] or "an earlier run"
        how = "reused (imported)" if reused.get("imported") else "reused"
        seeds = reused.get("seeds")
        which = f"seeds {', '.join(str(x) for x in seeds)} " if isinstance(seeds, list) and seeds else ""
        why = "" if reused.get("imported") else " (same fingerprint: code, params and data unchanged)"
        out += [f"**Reused:** {which}{how} from the run of {when}{why}.", ""]
    outdated = entry.get(OUTDATED)  # as outdated_reason reads it, on the dict in hand
    if outdated:
        out += [f"**Outdated:** {outdated}; the result still counts: re-run it to refresh it.", ""]
    missing = entry.get("artifacts_missing")
    if isinstance(missing, list) and missing:
        out += [f"**Artifacts missing:** {', '.join(code(m) for m in missing[:5])}", ""]
    return out


# The keys of an entry that make it not a quiet one (see _quiet_sub): the ones the sections
# below read besides the fast path's own (status, finding, metrics, artifacts, the facts line's)
# and those they read only for a status the fast path leaves alone (error, blocked_reason).  A
# unit test reads the sections' code for every key they ask an entry for and fails on one
# missing here.  (Asked as "none of these is in the entry": a missing key is found without
# comparing text, where "every key is one of these" compares each key's text, at twice the cost.)
_LOUD_KEYS = frozenset(
    {
        "imported",
        "reused",
        OUTDATED,
        "artifacts_missing",
        "points",
        "history",
        "issues",
        "blockers",
        "stats",
        "tracking",
        "wandb",
    }
)
# A run's duration as the facts line shows it, by the float stored (rounded to the millisecond:
# many runs share one, and formatting a float is a good part of a quiet section's cost), zero
# aside; cleared when full.
_SECONDS_TEXT: dict[float, str] = {}
_METRICS_START = (
    "\n| Metric | Value | Seeds |\n|---|---|---|\n"  # (the empty line before it, then its header)
)
# A metrics row's first cells by metric name, for names whose cell needs no escape: most
# sub-experiments of a plan report the same few metrics.
_METRIC_ROW_HEADS: dict[str, str] = {}


def _quiet_sub(
    state: SubState,
    entry: Any,
    stale: Mapping[str, Any],
    say: SentenceFn,
    where: str,
    charts: Mapping[str, str],
) -> str | None:
    """The section ``_render_sub`` gives a quiet sub-experiment, as one piece of text (its lines
    joined by newlines), or None when it is not one: a stored entry that passed or failed, with
    nothing to say beyond its facts line, its metrics table, its own criteria and its curves
    chart.

    Why: this runs once per sub-experiment (a 1,000-item plan renders a thousand sections at the
    session's end) and nearly all are quiet; the general path asks each of its two dozen
    questions through a helper and builds each line apart.  The text is the general path's,
    byte for byte (a unit test compares the two on varied entries): anything this is unsure of
    returns None."""
    sub = state.sub
    status = state.status
    if (
        entry.__class__ is not dict
        or not entry
        or (status != "passed" and status != "failed")  # (no error, block or not-run lines)
        or state.wiring
        or sub.meta  # (a name, the plan's words)
        or sub.pivot
        or (sub.accepted is not None and status != "passed")
        or not _LOUD_KEYS.isdisjoint(entry)
        or entry.get("finding")
        or entry.get("artifacts")
        or (stale and stale.get(sub.id) is not None)  # (an earlier attempt to count)
    ):
        return None
    # The lines as _render_sub gives them, joined: the heading, then each block after the empty
    # line that ends the one before it.
    metrics = entry.get("metrics")
    table = ""
    if metrics.__class__ is dict:
        if metrics:
            table = _METRICS_START
            for name, value in metrics.items():
                head = _METRIC_ROW_HEADS.get(name)
                if head is None:
                    if name.__class__ is not str or "|" in name or "\n" in name or "\r" in name:
                        return None  # a cell to escape (or a key str() shows): _table's way
                    head = f"| `{name}` | "
                    if len(_METRIC_ROW_HEADS) < 1024:
                        _METRIC_ROW_HEADS[name] = head
                shown = fmt_value(value)
                # (A float's text is digits, a sign, a point, an exponent, NaN or inf.)
                if value.__class__ is not float and ("|" in shown or "\n" in shown or "\r" in shown):
                    return None
                table = f"{table}{head}{shown} | — |\n"
    elif metrics is not None:
        return None  # another kind of mapping, or something else: the general path decides
    executor = entry.get("executor")
    duration = entry.get("duration_s")
    finished = entry.get("finished_at")
    if executor and finished and duration.__class__ is float:  # what a run records
        if not duration:  # (0.0 and -0.0 would be one key, with two texts)
            seconds = "0.0" if math.copysign(1.0, duration) > 0 else "-0.0"
        else:
            cached = _SECONDS_TEXT.get(duration)
            if cached is None:
                if len(_SECONDS_TEXT) >= 4096:
                    _SECONDS_TEXT.clear()
                cached = _SECONDS_TEXT[duration] = f"{duration:.1f}"
            seconds = cached
        text = (
            f"#### `{sub.id}`: {status}\n\n"
            f"Ran: executor `{executor}`, {seconds} s, finished {finished}.\n{table}"
        )
    else:
        facts = []
        if executor:
            facts.append(f"executor `{executor}`")
        if duration.__class__ is float or (
            isinstance(duration, (int, float)) and not isinstance(duration, bool)
        ):
            facts.append(f"{duration:.1f} s")
        if finished:
            facts.append(f"finished {finished}")
        ran = f"\nRan: {', '.join(facts)}.\n" if facts else ""
        text = f"#### `{sub.id}`: {status}\n{ran}{table}"
    extra: list[str] = []
    if state.judgements:
        extra += _judgement_lines(state, say)
    if charts:
        extra += _chart(charts, f"{sub.id}-curves.png", f"{sub.id}: learning curves", where)
    return "\n".join((text, *extra)) if extra else text


def _render_sub(
    state: SubState,
    entry: Any,
    stale: Mapping[str, Any],
    say: SentenceFn,
    where: str,
    plan: Plan | None = None,
    charts: Mapping[str, str] | None = None,
    exists: ExistsFn = _always,
) -> list[str]:
    sub = state.sub
    charts = charts or {}
    out: list[str] = []
    # The helpers below are called only where they have something to say: this runs once per
    # sub-experiment (10,000 of them in a large plan), and most say nothing in their own words,
    # carry no run notes, judgements or charts.
    words = plan_words(sub) if sub.meta else []
    shown = sub.name
    name = f" ({shown})" if shown != sub.id else ""
    pivot = f" — pivot `{sub.pivot}`" if sub.pivot else ""
    if not (entry.__class__ is dict or _is_map(entry)) or not entry:  # (a dict: no call)
        old = stale.get(sub.id)
        if state.stale is not None and _is_map(old):
            out += [f"#### `{sub.id}`: stale{name}{pivot}", ""]
            out += [
                f"Its stored result no longer stands for the plan ({state.stale}): it counts as never run.",
                "",
            ]
            out += _entry_body(sub, old, where, "Stale result")
            out += [f"Re-run it: `pytest --experiment {sub.id}`.", ""]
        else:
            out += [f"#### `{sub.id}`: not run{name}{pivot}", ""]
            if words:
                out += ["From the plan: " + "; ".join(words), ""]
            out += ["No result recorded yet.", ""]
        out += _judgement_lines(state, say)
        return out
    imported: Any = entry.get("imported")
    is_imported = imported is not None and _is_map(imported)
    mark = " — imported" if is_imported else ""
    out += [f"#### `{sub.id}`: {_state_word(state)}{name}{pivot}{mark}", ""]
    if is_imported:
        out += [_imported_line(sub, imported), ""]
    if words:
        out += ["From the plan: " + "; ".join(words), ""]
    if sub.accepted is not None and state.status != "passed":
        out += [f"**Accepted{_who(sub.accepted)}:** {sub.accepted.reason} (counts as passed).", ""]
    if entry.get("finding"):
        out += [f"**Finding:** {entry['finding']}", ""]
    if state.status == "blocked" and (entry.get("blocked_reason") or state.detail):
        out += [f"**Blocked:** {entry.get('blocked_reason') or state.detail}", ""]
    if "reused" in entry or OUTDATED in entry or "artifacts_missing" in entry:
        out += _run_notes(entry)
    if state.wiring:
        out += [f"**Wiring error:** {state.detail}", ""]
    else:
        error = entry.get("error")
        if state.status in ("error", "infra_error") and _is_map(error):
            kind = f" ({error['kind']})" if error.get("kind") else ""
            message = _first_line(error.get("message"))
            summary = f"{error.get('type', 'Error')}: {message}"
            out += [f"**Error{kind}:** {code(summary)}", ""]
            others = error.get("other_seeds")
            if isinstance(others, list) and others:  # other seeds that failed another way
                out += [f"- also {code(_first_line(text))}" for text in others] + [""]
    points = entry.get("points")
    if points is not None and _is_map(points) and points:
        out += _judgement_lines(state, say)
        out += _points_table(sub, points, state.selected, stale, plan)
        out += _chart(charts, f"{sub.id}-sweep.png", f"{sub.id}: the sweep", where)
        out += _chart(charts, f"{sub.id}-curves.png", f"{sub.id}: learning curves", where)
        out += _entry_body(
            sub, {k: v for k, v in entry.items() if k not in ("metrics", "stats")}, where, None, exists
        )
        return out
    out += _entry_body(sub, entry, where, None, exists, stale.get(sub.id))
    if state.judgements:
        out += _judgement_lines(state, say)
    if charts:
        out += _chart(charts, f"{sub.id}-curves.png", f"{sub.id}: learning curves", where)
    return out


def _state_word(state: SubState) -> str:
    if state.wiring:
        return "error (wiring)"
    return state.status.replace("not_run", "not run")


def _judgement_lines(state: SubState, say: SentenceFn) -> list[str]:
    if not state.judgements:
        return []
    out = []
    for j in state.judgements:
        c = _criterion_for(state.sub.success_criteria, j.metric)
        out.append(f"- {_result(j)}: {_say(j, c, say)}")
    out.append("")
    return out


def _attempt_lines(entry: Mapping[str, Any], stale: Any = None) -> list[str]:
    """How often this sub-experiment ran (and how often with its handler's code unchanged), and
    a flag when seeds were added after an inconclusive result: an interval computed after
    peeking at an earlier one is optimistic (optional stopping)."""
    if stale is None and not entry.get("history"):
        return []  # no earlier attempt: most entries
    history = earlier = earlier_attempts(entry, stale)
    if not history:
        return []
    text = f"Attempts: {len(history) + 1} (this one and {len(history)} earlier, in results.yaml"
    prov = entry.get("provenance")
    sha = prov.get("handler_sha256") if _is_map(prov) else None
    if isinstance(sha, str):
        same = 1 + sum(1 for h in earlier if h.get("handler_sha256") == sha)
        if same != len(history) + 1:
            text += f"; {same} with the handler's code unchanged"
    out = [text + ")", ""]
    stopping = seeds_added_after_inconclusive(entry, stale)
    if stopping is not None:
        metrics, then, now = stopping
        names = ", ".join(f"`{m}`" for m in metrics)
        out += [
            f"⚠️ Seeds added after an inconclusive result (optional stopping): {names} "
            f"{'was' if len(metrics) == 1 else 'were'} inconclusive on {then} seed(s), "
            f"this attempt has {now}. An interval computed after looking at an earlier one "
            "is optimistic: fix the number of seeds before running, or report every attempt.",
            "",
        ]
    return out


def _entry_body(
    sub: SubExperiment,
    entry: Mapping[str, Any],
    where: str,
    label: str | None,
    exists: ExistsFn = _always,
    stale: Any = None,
) -> list[str]:
    """What ran and what it measured: facts, metrics with seed statistics, artifacts, links."""
    out: list[str] = []
    facts = []
    executor = entry.get("executor")
    if executor:
        facts.append(f"executor `{executor}`")
    duration = entry.get("duration_s")
    if duration.__class__ is float or (isinstance(duration, (int, float)) and not isinstance(duration, bool)):
        facts.append(f"{duration:.1f} s")
    finished = entry.get("finished_at")
    if finished:
        facts.append(f"finished {finished}")
    if facts:
        out += [f"{label or 'Ran'}: " + ", ".join(facts) + ".", ""]
    # (Each helper and loop below only where the entry has something for it: most have no
    # earlier attempt, no notes, no tracked run.)
    if stale is not None or entry.get("history"):
        out += _attempt_lines(entry, stale)
    if "issues" in entry or "blockers" in entry:
        out += _notes(entry)

    metrics = entry.get("metrics")
    found = entry.get("stats")
    stats: Mapping[str, Any] = found if found and _is_map(found) else {}
    if (metrics.__class__ is dict or _is_map(metrics)) and metrics:
        rows = []
        for name, value in metrics.items():
            s = _stats_from(stats.get(name)) if stats else None
            spread = "—"
            if s is not None:
                spread = f"std {fmt_value(s.std)}, n={s.n}"
                if s.ci95 is not None:
                    spread += f", 95% CI [{fmt_value(s.ci95[0])}, {fmt_value(s.ci95[1])}]"
            rows.append([f"`{name}`", fmt_value(value), spread])
        out += _table(_METRICS_HEADER, rows)
        out.append("")

    artifacts = entry.get("artifacts")
    if isinstance(artifacts, list) and artifacts and label is None:
        out += ["Artifacts:", ""]
        for art in artifacts:
            path = str(art.get("path", "")) if _is_map(art) else str(art)
            if not path:
                continue
            name = posixpath.basename(path.replace("\\", "/")) or path
            target = _link_target(relative_artifact(path, where))
            if not exists(path):  # a link to nothing helps nobody: say it is gone
                out += [f"- {name} (missing: `{path}`)", ""]
                continue
            if path.lower().endswith(IMAGE_SUFFIXES):
                out.append(f"![{name}]({target})")
            else:
                out.append(f"- [{name}]({target})")
            out.append("")
    if label is None and ("tracking" in entry or "wandb" in entry):  # what tracking_of reads
        tracking = tracking_of(entry)
        if tracking is not None:
            line = tracking_line(tracking)
            if line:
                out += [line, ""]
    return out


_METRICS_HEADER = ("Metric", "Value", "Seeds")


def _notes(entry: Mapping[str, Any]) -> list[str]:
    """An entry's issues and blockers, each a list of one-line notes."""
    out: list[str] = []
    for key, title in (("issues", "Issues"), ("blockers", "Blockers")):
        notes = entry.get(key)
        if isinstance(notes, list) and notes:
            out += [f"**{title}:**", ""]
            out += [f"- {_first_line(n)}" for n in notes]
            out.append("")
    return out


def _run_link(run: Mapping[str, Any], text: str) -> str:
    url = run.get("url") or run.get("ui_url")
    return f"[{text}]({url})" if url else code(text)


def tracking_line(block: Mapping[str, Any]) -> str:
    """Where the tracked run(s) of an entry are, labelled with the tracker's name: a link, the
    offline folder and its upload command, or how to open a local MLflow store."""
    label = tracker_label(block.get("tracker"))
    runs = [r for r in block.get("runs") or () if _is_map(r)] or [block]
    if len(runs) > 1 and any(r.get("url") or r.get("ui_url") for r in runs):
        links = " · ".join(
            _run_link(r, f"seed {r['seed']}" if r.get("seed") is not None else str(r.get("run_path") or i))
            for i, r in enumerate(runs)
        )
        text = f"{label} runs: {links}"
    elif block.get("url"):
        text = f"{label} run: [{block.get('run_path') or block['url']}]({block['url']})"
    elif block.get("offline_dir"):
        folders = [str(r["offline_dir"]) for r in runs if r.get("offline_dir")]
        if len(folders) == 1:
            sync = block.get("sync") or f"wandb sync {folders[0]}"
        else:
            sync = "wandb sync " + " ".join(shlex.quote(f) for f in folders)
        shown = ", ".join(f"`{f}`" for f in folders)
        return f"{label} (offline): {shown}; upload with `{sync}`"
    elif block.get("run_path"):
        text = f"{label} run: `{block['run_path']}`"
    else:
        return ""
    if block.get("ui"):  # a local store has no server: say how to start one
        text += f" (a local store: run `{block['ui']}` in the project folder to open the link)"
    return text


def _points_table(
    sub: SubExperiment,
    points: Mapping[str, Any],
    selected: Any,
    stale: Mapping[str, Any] | None = None,
    plan: Plan | None = None,
) -> list[str]:
    """Every point of the sweep: the plan's points in order (stored ones judged, new ones "not
    run"), then stored points no longer in the plan and stale ones with their reason."""
    stale = stale or {}
    names: list[str] = []
    for point in points.values():
        reported = point.get("metrics") if _is_map(point) else None
        if _is_map(reported):
            names += [str(n) for n in reported if str(n) not in names]
    names = names[:MAX_POINT_METRICS]
    plan_keys = [p.key for p in sub.points()]
    keys = plan_keys + [k for k in points if k not in plan_keys]
    prefix = f"{sub.id}["
    stale_keys = [
        k[len(prefix) : -1] for k in stale if isinstance(k, str) and k.startswith(prefix) and k.endswith("]")
    ]
    stale_keys = [k for k in stale_keys if k not in points and k not in plan_keys]

    def stale_row(key: str, label: str) -> list[str]:
        raw = stale.get(f"{prefix}{key}]") if stale else None
        entry: Mapping[str, Any] = raw if _is_map(raw) else {}
        found = entry.get("metrics")
        metrics: Mapping[str, Any] = found if _is_map(found) else {}
        why = stale_reason(entry) or "its params changed"
        return [label, f"stale ({why})", *(fmt_value(metrics.get(n)) for n in names)]

    shown = keys[:MAX_POINT_ROWS]
    if isinstance(selected, str) and selected in points and selected not in shown:
        shown.append(selected)
    rows = []
    for key in shown:
        raw = points.get(key)
        entry: Mapping[str, Any] = raw if _is_map(raw) else {}
        found = entry.get("metrics")
        metrics: Mapping[str, Any] = found if _is_map(found) else {}
        mark = f"**{key}** (selected)" if key == selected else key
        if not entry and f"{prefix}{key}]" in stale:
            rows.append(stale_row(key, mark))
            continue
        if not entry:
            status = "not run"
        else:
            status, why = point_status(plan, sub, entry)
            if why or (
                plan is None and _is_map(entry.get("error")) and entry["error"].get("kind") == "wiring"
            ):
                status = "error (wiring)"
            status = status or "not run"
        if key not in plan_keys:
            status += " (not in the plan)"
        rows.append([mark, status, *(fmt_value(metrics.get(n)) for n in names)])
    for key in stale_keys[: max(0, MAX_POINT_ROWS - len(rows))]:
        rows.append(stale_row(key, f"{key} (not in the plan)"))
    total = len(keys)
    ran = sum(1 for k in keys if _is_map(points.get(k)))
    head = f"Sweep ({total} point(s)"
    if ran < total:
        head += f", {total - ran} not run yet"
    out = [head + "):", ""]
    out += _table(["Point", "Status", *(f"`{n}`" for n in names)], rows)
    if len(keys) > len(shown):
        out.append(f"\n… and {len(keys) - len(shown)} more point(s) in results.yaml.")
    out.append("")
    return out
