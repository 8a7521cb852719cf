"""What an experiment item does when it runs: tasks out, outcomes in, one result entry.

The entry is not written here: it travels as a :class:`~pytest_mlexp.records.ResultOp` to the
process that owns the results files (the xdist controller, or this process), see ``session.py``
and ``hooks.py``.  Items (``items.py``) call :func:`run_sub_item` and :func:`run_assessment`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from .curves import from_outcomes as curves_from
from .dispatch import dispatcher_of
from .live import shown, watching
from .records import ERROR, INFRA, ResultEntry, ResultOp, SeedOutcome, new_entry, tracking_of
from .secrets import redact_params
from .session import session_of
from .subjudge import judge_result, lookup_for, point_status
from .tasks import provenance, seed_tasks

if TYPE_CHECKING:
    import pytest

    from .model import SubExperiment
    from .reuse import ReusePlan
    from .session import MlexpSession, PlanContext


class MlexpFailure(Exception):
    """An item failed for a reason we can say in a few lines (criteria, wiring, verdict)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# A field of every outcome, read by map(): no generator (a frame) per use, several per item.
_DURATION = attrgetter("duration_s")
_STARTED = attrgetter("started_at")
_FINISHED = attrgetter("finished_at")
_HISTORY = attrgetter("history")
_WARNINGS = attrgetter("warnings")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate_seeds(
    outcomes: Sequence[SeedOutcome],
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Per-seed metrics of the seeds that produced a result, and their mean (numbers only;
    other values are information and are taken from the first seed that reported them)."""
    per_seed: dict[int, dict[str, Any]] = {}
    for out in outcomes:
        if out.result is not None and out.ok:
            per_seed[out.seed] = dict(out.result["metrics"])
    if len(per_seed) == 1:  # one seed (the common case): its values, numbers as floats
        (only,) = per_seed.values()
        agg = dict(only)
        for k, v in agg.items():  # (a float already is its own float(): no call for it)
            if v.__class__ is not float and _is_number(v):
                agg[k] = float(v)
        return agg, per_seed
    names: list[str] = []
    for metrics in per_seed.values():
        names.extend(n for n in metrics if n not in names)
    agg = {}
    for name in names:
        values = [m[name] for m in per_seed.values() if name in m]
        numeric = [float(v) for v in values if _is_number(v)]
        if numeric and len(numeric) == len(values):
            agg[name] = numeric[0] if len(numeric) == 1 else math.fsum(numeric) / len(numeric)
        else:
            agg[name] = values[0]
    return agg, per_seed


def seed_stats(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    from .stats import describe

    out: dict[str, Any] = {}
    names: list[str] = []
    for metrics in per_seed.values():
        names.extend(n for n in metrics if n not in names)
    for name in names:
        values: list[Any] = [m.get(name) for m in per_seed.values()]
        if values and all(_is_number(v) and math.isfinite(v) for v in values):
            out[name] = describe([float(v) for v in values]).to_dict()
    return out


def _finding(outcomes: Sequence[SeedOutcome]) -> str | None:
    """The finding of an item: the handler's text; with several seeds that said different
    things, the first one's, labelled with its seed (the metrics beside it are the aggregate)."""
    # One loop, no comprehensions: asked once per item, most of which said nothing.
    ok = 0
    said: list[tuple[int, str]] = []
    for o in outcomes:
        res = o.result
        if o.ok and res is not None:
            ok += 1
            if res.get("finding"):
                said.append((o.seed, str(res["finding"])))
    if not said:
        return None
    if ok == 1 or (len(said) == ok and len({text for _, text in said}) == 1):
        return said[0][1]
    seed, text = said[0]
    if re.search(rf"\bseed\s*{seed}\b", text, re.IGNORECASE):  # the handler named it already
        return f"{text} (1 of {ok} seeds)"
    return f"seed {seed} (of {ok} seeds): {text}"


def _seed_failure(out: SeedOutcome) -> str:
    """One line for a failed seed: ``infra_error (lost_worker) LostWorker: the worker ...``."""
    err = out.error or {}
    lines = str(err.get("message", "")).strip().splitlines()
    first = lines[0] if lines else ""
    text = f"{out.status} ({err.get('kind', 'handler')}) {err.get('type', 'Error')}: {first}"
    return text if len(text) <= 300 else text[:297] + "..."


def wiring_block(message: str) -> dict[str, Any]:
    """The ``error:`` of a wiring error (SPEC section 5a)."""
    return {"kind": "wiring", "type": "MissingMetric", "message": message, "traceback": ""}


def build_entry(
    ctx: PlanContext,
    sub: SubExperiment,
    *,
    point_key: str | None,
    params: Mapping[str, Any],
    outcomes: Sequence[SeedOutcome],
    executor: str,
    stub: bool,
    provenance: dict[str, Any],
    messages: list[str] | None = None,
) -> ResultEntry:
    """One results.yaml entry (SPEC section 8) from the outcomes of the item's seeds.

    ``provenance`` becomes the entry's own (a dict made for it, changed here).  The messages
    of unmet criteria are appended to ``messages`` (for the failure report)."""
    if messages is None:
        messages = []
    metrics, per_seed = aggregate_seeds(outcomes)
    # One pass over the seeds for everything taken from them (the first seed that has it, or
    # every seed's, each once, in seed order): a pass per field was a tenth of building it.
    failed: list[SeedOutcome] = []
    artifacts: list[str] = []
    issues: dict[str, None] = {}
    blockers: dict[str, None] = {}
    tracking: list[dict[str, Any]] = []
    extra = device = packages = None
    for out in outcomes:
        if not out.ok:
            failed.append(out)
        res = out.result
        if res is not None:
            for path in res["artifacts"]:
                if path not in artifacts:
                    artifacts.append(path)
            if extra is None and res.get("extra"):
                extra = res["extra"]
        if out.issues:
            issues.update(dict.fromkeys(out.issues))
        if out.blockers:
            blockers.update(dict.fromkeys(out.blockers))
        if out.tracking:
            tracking.append(dict(out.tracking))
        device = device or out.device
        packages = packages or out.packages
    entry = new_entry("passed")
    entry["finding"] = _finding(outcomes)
    entry["metrics"] = metrics
    if sub.seeds_given and not stub:
        entry["per_seed"] = per_seed
        entry["stats"] = seed_stats(per_seed)
    if point_key is None and not failed:
        # Its place in SPEC order, filled in once judged (below): then the entry is written as
        # it is, not copied into that order at every write (``resultsdoc.ordered_entry``).
        entry["criteria"] = {}
    entry["params"] = redact_params(params)
    entry["artifacts"] = artifacts
    entry["executor"] = executor
    entry["duration_s"] = round(sum(map(_DURATION, outcomes)), 3)
    # What the handler noted (runner.add_issue / add_blocker) and returned besides its metrics,
    # over every seed, each once (SPEC section 10); kept when a seed then failed, too.
    if issues:
        entry["issues"] = list(issues)
    if blockers:
        entry["blockers"] = list(blockers)
    if extra:
        entry["extra"] = dict(extra)
    if tracking:
        # Several seeds: the first run's link up front (what FINDINGS and JUnit show), all below.
        entry["tracking"] = tracking[0] if len(tracking) == 1 else {**tracking[0], "runs": tracking}
    # The caller's own dict (built for this entry by tasks.provenance): no copy.
    prov = entry["provenance"] = provenance
    if device:  # only known when the handler asked runner.device
        prov["device"] = device
    if packages:
        prov["packages"] = dict(packages)
    entry["started_at"] = min(map(_STARTED, outcomes)) if outcomes else None
    entry["finished_at"] = max(map(_FINISHED, outcomes)) if outcomes else None
    if failed:
        status = entry["status"] = INFRA if any(o.status == INFRA for o in failed) else ERROR
        # The error shown is a seed's whose failure is the item's status (its kind says the
        # same thing as the status); every other failed seed is named under other_seeds, so
        # a lost worker beside a handler's exception is not lost from view.
        shown = next((o for o in failed if o.status == status), failed[0])
        error = dict(shown.error or {})
        error["seed"] = shown.seed
        others = [f"seed {o.seed}: {_seed_failure(o)}" for o in failed if o is not shown]
        if others:
            error["other_seeds"] = others
        entry["error"] = error  # type: ignore[typeddict-item]
        return entry
    # Judged from the current plan the way every later report judges it (subjudge.py): the
    # wiring (SPEC 5a: a metric the plan needs and the handler did not report is an error,
    # under --stub and in a real run alike), then the criteria.
    if point_key is None:
        lookup = lookup_for(ctx.plan, ctx.results.entry) if sub.implicit_dependencies else None
        judgements, why = judge_result(ctx.plan, sub, entry, stub=stub, lookup=lookup)
        # (No criteria, as for many sub-experiments: no comprehensions run to find none.)
        entry["criteria"] = {j.metric: j.to_dict() for j in judgements} if judgements else {}
        if why is not None:
            entry["status"] = ERROR
            entry["error"] = wiring_block(why)  # type: ignore[typeddict-item]
        elif judgements and not all(j.passed for j in judgements):
            entry["status"] = "failed"
            messages.extend(j.message for j in judgements if not j.passed)
    else:
        _, why = point_status(ctx.plan, sub, entry)
        if why:
            entry["status"] = ERROR
            entry["error"] = wiring_block(why)  # type: ignore[typeddict-item]
    return entry


def failure_message(item: pytest.Item, entry: ResultEntry, messages: Sequence[str] = ()) -> str:
    from .hints import hint_for

    sub: SubExperiment = item.sub  # type: ignore[attr-defined]
    status = entry["status"]
    if status in (ERROR, INFRA):
        err = entry.get("error") or {}
        lines = []
        if err.get("traceback"):
            lines.append(str(err["traceback"]).rstrip())
        head = f"{item.name}: {status} ({err.get('kind', 'handler')})"
        if err.get("seed") is not None and len(sub.seeds) > 1:
            head += f" in seed {err['seed']}"
        lines.append(f"{head}: {err.get('type', 'Error')}: {err.get('message', '')}")
        others = err.get("other_seeds")
        if isinstance(others, list):
            lines.extend(f"  also {text}" for text in others)
        hint = hint_for(str(err.get("type", "")), str(err.get("message", "")))
        if hint:
            lines.append(f"hint: {hint}")
        return "\n".join(lines)
    return "\n".join(messages) or f"{item.name}: {status}"


def run_sub_item(item: pytest.Item, state: MlexpSession) -> None:
    """Run a sub-experiment item's seeds, judge them, hand the entry on; fail if not passed.
    ``state``: the run's session (``SubItem`` holds it)."""
    ctx = state.context_for(item.path)
    sub: SubExperiment = item.sub  # type: ignore[attr-defined]
    point = item.point  # type: ignore[attr-defined]
    stub = state.stub
    params = sub.resolved_params(stub, point)
    executor_name = state.executor_for(sub)
    try:
        ref = ctx.handler(sub)
    except LookupError as exc:  # HandlerNotFound / HandlerAmbiguous
        seed = sub.seeds[0] if sub.seeds else 0
        prov = provenance(ctx, sub, params)
        outcomes = [SeedOutcome.failure(seed, "handler", exc, traceback="")]
        decision = None
    else:
        # The fingerprint, and under --mlexp-reuse the seeds stored results already hold.
        decision = ctx.decision(sub, point, params)
        prov = provenance(ctx, sub, params, decision.fingerprint, ref=ref)
        funcargs = item.funcargs  # type: ignore[attr-defined]
        # (Empty for an item no fixture reaches: a plain pytest.Item, see items.py.)
        fixtures = (
            {n: funcargs[n] for n in ref.fixture_names if n != "runner" and n in funcargs} if funcargs else {}
        )
        live = shown(item.config)  # the live progress line
        # The same tasks the dispatcher builds when it submits this item ahead.
        # (The local executor runs seeds in this process: the live line watches them directly.)
        tasks = seed_tasks(
            state, ctx, sub, point, params, ref, progress=executor_name != "local" and live, decision=decision
        )  # fmt: skip
        run = dispatcher_of(state).run
        if live:
            with watching(item.config):  # for seeds run in this process
                outcomes = run(item, executor_name, tasks, fixtures)
        else:  # (no context entered and left for nothing: once per item)
            outcomes = run(item, executor_name, tasks, fixtures)
        outcomes = _observed(state, outcomes, decision)
    messages: list[str] = []
    entry, op = _entry_and_op(state, ctx, item, params, outcomes, decision, prov, executor_name, messages)
    if op is not None:
        state.attach_op(item, op)
    if decision is not None:
        ctx.settled(sub, point)
    _add_properties(item, entry)
    status = entry["status"]
    if status == "passed":
        return
    if status == ERROR and item.config.option.usepdb:
        original = next((o.exc for o in outcomes if o.exc is not None), None)
        if original is not None:
            raise original  # --pdb: post-mortem in the handler's own frame
    raise MlexpFailure(state.scrub(failure_message(item, entry, messages)))


def _observed(
    state: MlexpSession, outcomes: list[SeedOutcome], decision: ReusePlan | None
) -> list[SeedOutcome]:
    """The item's outcomes as its entry takes them: a tracker that switched off is told, and
    the seeds reused from stored results (``--mlexp-reuse``) join those that ran."""
    if any(map(_WARNINGS, outcomes)):
        state.tracking.observe(outcomes)  # a tracker that switched off stays off
    if decision is not None and decision.sources:
        from .reuse import reused_outcomes

        outcomes = sorted([*outcomes, *reused_outcomes(decision)], key=lambda o: o.seed)
    return outcomes


def _entry_and_op(
    state: MlexpSession,
    ctx: PlanContext,
    item: pytest.Item,
    params: Mapping[str, Any],
    outcomes: Sequence[SeedOutcome],
    decision: ReusePlan | None,
    prov: dict[str, Any],
    executor_name: str,
    messages: list[str],
) -> tuple[ResultEntry, ResultOp | None]:
    """The item's results entry from its seeds' outcomes (``params``: its resolved params), and
    the op that records it (None for a cancelled item whose stored result stays)."""
    sub: SubExperiment = item.sub  # type: ignore[attr-defined]
    point = item.point  # type: ignore[attr-defined]
    point_key = point.key if point else None
    stub = state.stub
    entry = build_entry(
        ctx,
        sub,
        point_key=point_key,
        params=params,
        outcomes=outcomes,
        executor=executor_name,
        stub=stub,
        provenance=prov,
        messages=messages,
    )
    if decision is not None and decision.sources:
        _mark_reused(entry, decision, executor_name)
    entry = state.scrub_obj(entry)  # tracebacks and findings may quote a secret
    # A cancelled item (Ctrl-C/SIGTERM while it ran on process/modal) never overwrites a stored
    # result (SPEC section 8): with one stored, nothing is recorded and the item fails; its
    # summary row says it was cancelled and the stored result kept.
    if _cancelled(entry) and ctx.results.has_result(sub.id, point_key):
        return entry, ResultOp.kept(str(item.path), sub.experiment_id, sub.id, point_key, entry)
    # Tracker (and executor) warnings travel on the op, so the xdist controller prints them.
    warnings = [str(w) for o in outcomes for w in o.warnings]
    # Learning curves ride along, cut down here (a report must stay small); stub runs keep none.
    curves = None if stub or not any(map(_HISTORY, outcomes)) else curves_from(outcomes)
    return entry, ResultOp.record(
        str(item.path), sub.experiment_id, sub.id, point_key, entry, warnings, curves
    )


def keep_finished_ahead(
    state: MlexpSession, finished: Sequence[tuple[pytest.Item, list[SeedOutcome]]]
) -> list[tuple[pytest.Item, ResultOp]]:
    """Session end: items whose seeds all finished ahead of pytest (dispatched to workers
    before pytest reached them) but that pytest never reported (``-x``, ``--maxfail``,
    Ctrl-C stopped it first) are recorded all the same: finished work is never lost.  Returns
    those recorded, with their ops (the caller counts them as run: the summary, ``--lf``)."""
    kept: list[tuple[pytest.Item, ResultOp]] = []
    for item, outcomes in finished:
        ctx = state.context_for(item.path)
        sub: SubExperiment = item.sub  # type: ignore[attr-defined]
        point = item.point  # type: ignore[attr-defined]
        params = sub.resolved_params(state.stub, point)
        decision = ctx.decision(sub, point)
        prov = provenance(ctx, sub, params, decision.fingerprint)
        outcomes = _observed(state, outcomes, decision)
        executor_name = state.executor_for(sub)
        _, op = _entry_and_op(state, ctx, item, params, outcomes, decision, prov, executor_name, [])
        if op is None:
            continue
        try:
            ctx.results.apply(op)
        except OSError as exc:  # a full disk, a read-only folder (store.ResultsWriteError)
            state.results_not_written(exc)
            continue
        for line in op.warnings:
            state.warn(line)
        kept.append((item, op))
    return kept


def _mark_reused(entry: ResultEntry, decision: ReusePlan, executor: str) -> None:
    """Say where reused seeds came from; a result reused whole keeps its own provenance."""
    seeds = sorted(decision.sources)
    mark: dict[str, Any] = {"from": decision.date}
    prov = entry.get("provenance") or {}
    if len(seeds) < len(prov.get("seeds") or seeds):
        mark["seeds"] = seeds
    if decision.imported:
        mark["imported"] = True
    entry["reused"] = mark
    source = decision.single_source()
    if source is None or "seeds" in mark:
        return
    old = source.get("provenance")
    if isinstance(old, Mapping):
        for key in ("git_commit", "git_dirty", "handler_sha256", "python", "packages", "device"):
            if key in old:
                prov[key] = old[key]
    elif source.get("git_commit"):  # a history item
        prov["git_commit"] = source["git_commit"]
    entry["executor"] = str(source.get("executor") or executor)


def _cancelled(entry: ResultEntry) -> bool:
    return entry.get("status") == INFRA and (entry.get("error") or {}).get("kind") == "cancelled"


def _add_properties(item: pytest.Item, entry: ResultEntry) -> None:
    """JUnit properties: metrics, criteria verdicts, finding, status, the tracked run (also under xdist)."""
    props = item.user_properties
    props.append(("mlexp.status", entry.get("status")))
    if entry.get("finding"):
        props.append(("mlexp.finding", entry["finding"]))
    for name, value in (entry.get("metrics") or {}).items():
        props.append((f"metric.{name}", value))
    # (Blocks a trivial item lacks are looked at once, not made empty and looped over.)
    stats = entry.get("stats")
    if stats:
        for name, st in stats.items():
            ci = st.get("ci95")
            text = f"mean={st['mean']:.6g} std={st['std']:.6g} n={st['n']}"
            if ci:
                text += f" ci95=[{ci[0]:.6g}, {ci[1]:.6g}]"
            props.append((f"stats.{name}", text))
    criteria = entry.get("criteria")
    if criteria:
        for name, c in criteria.items():
            props.append(
                (f"criterion.{name}", f"{c.get('level')} ({'passed' if c.get('passed') else 'not passed'})")
            )
    # (Neither block: no call to find none, once per item.)
    tracking = tracking_of(entry) if "tracking" in entry or "wandb" in entry else None
    if tracking is not None:
        tracker = tracking.get("tracker")
        props.append(("tracking.tracker", tracker))
        for key in ("url", "run_path", "sync", "ui"):
            if tracking.get(key):
                props.append((f"tracking.{key}", tracking[key]))
        if tracker == "wandb" and tracking.get("url"):
            props.append(("wandb.url", tracking["url"]))  # the first release's name, which CI scripts read
    reused = entry.get("reused")
    # SPEC section 11: the seeds' results were reused, not run (None first: no ABC check for it)
    if reused is not None and isinstance(reused, Mapping):
        props.append(("reused", _reused_text(reused)))
    for path in entry.get("artifacts") or ():  # relative to the plan's folder (pytest-html shows figures)
        props.append(("mlexp.artifact", path))


def _reused_text(reused: Mapping[str, Any]) -> str:
    """``2026-01-31`` / ``2026-01-31 (imported)`` / ``2026-01-31 (seeds 0, 1, 2)``."""
    text = str(reused.get("from") or "")[:10] or "an earlier run"
    if reused.get("imported"):
        text += " (imported)"
    if reused.get("seeds"):
        text += " (seeds " + ", ".join(str(s) for s in reused["seeds"]) + ")"
    return text


def run_assessment(item: pytest.Item) -> None:
    """Assert an experiment's verdict (SPEC "Verdicts, once and for all"); its header goes to
    results.yaml, and its sub-experiments' stored results are re-judged there too."""
    from .verdictwords import verdict_line

    state = session_of(item.config)
    ctx = state.context_for(item.path)
    exp = ctx.plan.experiment(item.experiment_id)  # type: ignore[attr-defined]
    verdict = ctx.results.verdict(exp.id)
    header = ctx.results.experiment_header(exp.id)
    state.attach_op(item, ResultOp.header(str(item.path), exp.id, header))
    props = item.user_properties
    props.append(("mlexp.status", verdict.status))
    props.append(("verdict.verdict", verdict.verdict))
    props.append(("verdict.opens_gates", verdict.opens_gates))
    props.append(("verdict.success_criteria_met", verdict.success_criteria_met))
    props.append(("verdict.confidence", verdict.confidence))
    props.append(("verdict.recommendation", verdict.recommendation or "—"))
    if verdict.pivot is not None:
        props.append(("verdict.pivot", verdict.pivot))
    if verdict.message:
        props.append(("verdict.message", state.scrub(verdict.message)))
    for reason in verdict.reasons:
        props.append(("verdict.reason", state.scrub(reason)))
    for j in verdict.criteria:
        props.append((f"criterion.{j.metric}", f"{j.level} ({'passed' if j.passed else 'not passed'})"))
        if j.value is not None:
            props.append((f"metric.{j.metric}", j.value))
    for pv in verdict.pivots:
        for j in pv.criteria:
            props.append(
                (
                    f"criterion.{pv.pivot.key}.{j.metric}",
                    f"{j.level} ({'passed' if j.passed else 'not passed'})",
                )
            )
    for sub_state in verdict.subs:
        if sub_state.selected is not None:  # the point that represents a sweep (known once all ran)
            props.append((f"selected.{sub_state.sub.id}", f"{sub_state.sub.id}[{sub_state.selected}]"))
    for problem in verdict.problems:
        props.append(("verdict.problem", state.scrub(problem)))
    imported = ctx.results.imported(exp.id)
    if imported:  # results measured by the runner before pytest-mlexp (SPEC section 10)
        props.append(("verdict.imported", ", ".join(imported)))
    if state.stub:
        broken = state.wiring_failures(exp.id)
        if broken:
            raise MlexpFailure(f"{exp.id}: wiring check failed in {', '.join(broken)}")
        return
    if not verdict.passed:
        lines = [f"{exp.id}: {verdict_line(verdict)}"]
        lines += [f"  {p}" for p in verdict.problems]
        raise MlexpFailure(state.scrub("\n".join(lines)))
