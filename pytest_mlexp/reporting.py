"""Session-end work and the terminal: findings files, --lf bookkeeping, the experiment summary."""

from __future__ import annotations

import functools
import itertools
import math
import operator
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .session import CACHE_LF, CACHE_LF_WATCH, CACHE_RAN
from .textutil import fmt_number, listed

if TYPE_CHECKING:
    from .records import ResultOp
    from .session import MlexpSession, PlanContext

__all__ = [
    "check_results_folders",
    "configure_lastfailed",
    "estimate_line",
    "finish_session",
    "record_row",
    "sub_row",
    "terminal_summary",
]

_EXPERIMENT = operator.itemgetter("experiment")
_STATUS = operator.itemgetter("status")
# The statuses whose items --lf runs again (unless their experiment's verdict opens gates).
_RERUN = frozenset(("failed", "error", "infra_error", "blocked"))


def record_row(state: MlexpSession, ctx: PlanContext, report: pytest.TestReport, op: ResultOp) -> None:
    """Remember what an item did, for the summary, --lf and the stub assessment."""
    kind = op.kind
    if kind in ("experiment", "experiment_blocked"):
        state.records[report.nodeid] = {
            "kind": "assessment",
            "experiment": op.experiment,
            "name": "assessment",
            "status": "blocked"
            if kind == "experiment_blocked"
            else ("passed" if report.passed else "failed"),
            "nodeid": report.nodeid,
            "plan": sys.intern(op.plan),
        }
        return
    sub_row(state, report.nodeid, op)


def sub_row(state: MlexpSession, nodeid: str, op: ResultOp) -> None:
    """The summary row of a sub-experiment item's op (its report's, or one kept at session end
    without a report: ``orchestrate.keep_finished_ahead``)."""
    kind = op.kind
    sub_id = str(op.sub)
    name = sub_id + (f"[{op.point}]" if op.point else "")
    # Built in one go (a dict that grows past its first size is reallocated), with the plan
    # path shared between rows: a 10,000-item run keeps 10,000 of these to the end.
    if kind == "blocked":
        state.records[nodeid] = {
            "status": "blocked",
            "reason": op.reason or "",
            "metrics": {},
            "criteria": {},
            "kind": "sub",
            "experiment": op.experiment,
            "name": name,
            "nodeid": nodeid,
            "plan": sys.intern(op.plan),
        }
        return
    entry = op.entry or {}
    tracking = entry.get("tracking")
    state.records[nodeid] = {
        "status": entry.get("status"),
        "metrics": entry.get("metrics") or {},
        "criteria": entry.get("criteria") or {},
        "duration_s": entry.get("duration_s"),
        "error": (entry.get("error") or {}).get("kind"),
        "link": run_link(tracking) if tracking else None,
        "reused": entry.get("reused"),
        "kind": "sub",
        "experiment": op.experiment,
        "name": name,
        "nodeid": nodeid,
        "plan": sys.intern(op.plan),
    }
    if kind == "kept":  # cancelled over a stored result, which stays
        state.records[nodeid]["kept"] = True


def check_results_folders(state: MlexpSession, items: list[pytest.Item]) -> None:
    """A usage error naming every results folder the run would write but cannot (a read-only
    mount, a file in the folder's place, a full disk), before the first item runs.

    ``items``: the session's items (their plans and experiments); empty on the xdist
    controller, which collects nothing: then the configured plan's folder and its experiments."""
    from .atomic import writable_problems

    folders: dict[Path, None] = {}
    if items:
        from .items import AssessmentItem, SubItem

        # The (plan file, experiment) pairs first: a Path join per item cost 5 ms in 1,000.
        pairs = {
            (item.path, item.experiment_id): None
            for item in items
            if isinstance(item, (SubItem, AssessmentItem))
        }
        for plan_path, experiment_id in pairs:
            root = state.context_for(plan_path).plan.root
            if not state.stub:
                folders[root] = None  # FINDINGS.md
            folders[root / "experiments" / experiment_id] = None
    else:
        root = state.plan_path.parent
        if not root.is_dir():
            return
        experiments = root / "experiments"
        folders[root] = None
        folders[experiments] = None
        if experiments.is_dir():
            folders.update(dict.fromkeys(p for p in experiments.iterdir() if p.is_dir()))
    problems = []
    for folder, why in writable_problems(folders).items():
        try:
            shown = folder.relative_to(state.rootpath).as_posix()
        except ValueError:
            shown = str(folder)
        problems.append(
            f"mlexp: the results folder {shown} cannot be written ({why}); nothing was run. "
            "Make it writable (a read-only mount? a full disk? a file in its place?) and run again"
        )
    if problems:
        raise pytest.UsageError("\n".join(problems))


def finish_session(state: MlexpSession, session: pytest.Session) -> None:
    dispatcher = state.dispatcher
    if dispatcher is not None:
        finished = dispatcher.finished_ahead()
        if finished:
            _keep_finished_ahead(state, finished)
        if dispatcher.withdrawn:
            _note_withdrawn(state, list(dispatcher.withdrawn.values()))
        running = dispatcher.running_ahead()
        if running:
            state.notes_end.append(
                f"mlexp: {len(running)} item(s) running ahead in a worker were stopped with the session, "
                f"before pytest reached them; nothing of them is recorded (--lf runs them): "
                f"{listed([it.name for it in running])}"
            )
    ran = bool(state.records)
    if ran:
        _write_all(state)
        _fail_if_all_blocked(state, session)
    _update_lastfailed(state, ran, _never_finished(state, session) if ran else ())
    if state.dispatcher is not None:
        state.dispatcher.close()


def _write_all(state: MlexpSession) -> None:
    """Every plan's results files and findings.  Cyclic GC is paused meanwhile (as
    ``store.load_yaml`` does): the writing makes many short-lived containers (the documents in
    SPEC order, each sub-experiment's lines), none in a cycle, and each collection they set off
    would walk the whole session's heap (a 1,000-item session's items, reports and results)."""
    from .gcpause import paused

    with paused():
        for ctx in state.contexts.values():
            try:
                _write_outputs(state, ctx)
            except OSError as exc:  # a full disk, a read-only folder: one line, exit 1
                state.results_not_written(exc)
            finally:
                ctx.results.store.release()


def _keep_finished_ahead(state: MlexpSession, finished: Sequence[tuple[pytest.Item, Any]]) -> None:
    from .orchestrate import keep_finished_ahead

    kept = keep_finished_ahead(state, finished)
    for item, op in kept:
        sub_row(state, item.nodeid, op)
    if kept:
        state.notes_end.append(
            f"mlexp: {len(kept)} item(s) finished in a worker before the session stopped, "
            f"without a pytest report; their results are kept: {listed([it.name for it, _ in kept])}"
        )


def _note_withdrawn(state: MlexpSession, withdrawn: Sequence[pytest.Item]) -> None:
    """The closing line naming the items whose work -x withdrew and pytest never reached."""
    limit = state.config.option.maxfail
    flag = "-x" if limit == 1 else f"--maxfail={limit}"
    state.notes_end.append(
        f"mlexp: {len(withdrawn)} item(s) submitted ahead were withdrawn before they started, "
        f"as {flag} stops the session at an earlier failure: {listed([it.name for it in withdrawn])}"
    )


def _write_outputs(state: MlexpSession, ctx: PlanContext) -> None:
    from .atomic import locked, write_files
    from .blocking import blocker_details, gate_detail
    from .findings import findings_file_bytes, render_experiment, render_project, update_findings_file

    plan = ctx.plan
    # Rows name their plan as str(item.path), the absolute path the context was opened from:
    # compare text first, and build a Path only for a row that names the plan differently.
    mine = str(plan.path)
    touched = {
        row["experiment"]
        for row in state.records.values()
        if row.get("plan", mine) == mine or Path(row["plan"]) == plan.path
    }
    results = ctx.results
    stored = set(results.store.touched())  # (once, not once per experiment)
    touched |= {e.id for e in plan.experiments if e.id in stored}
    if not touched:
        return
    try:
        results.summarize_sweeps()
        verdicts = {e.id: results.verdict(e.id) for e in plan.experiments}
        for exp_id in touched:
            results.store.set_experiment(exp_id, results.experiment_header(exp_id))
    except OSError as exc:
        # The journal cannot take the summaries (a full disk): they are in the view still, and
        # flushing may yet write results.yaml; either way the session says so and exits 1.
        state.results_not_written(exc)
        verdicts = {e.id: results.verdict(e.id) for e in plan.experiments}
    try:
        results.store.flush()
    finally:
        results.store.release()
    if state.stub:
        return  # stub runs never touch results.yaml or FINDINGS.md
    scrub = state.scrub
    docs = {e.id: results.doc(e.id) for e in plan.experiments}
    draw = _plotter(state)
    root = plan.root

    def exists(relative: str) -> bool:  # links only to files that are there (SPEC section 10)
        return "://" in relative or (root / relative).is_file()

    blocks: list[tuple[Path, str, str]] = []
    for exp in plan.experiments:
        if exp.id not in touched:
            continue
        charts = draw(plan, exp, docs[exp.id], verdicts[exp.id]) if draw is not None else {}
        block = render_experiment(
            exp,
            docs[exp.id],
            verdicts[exp.id],
            blockers=blocker_details(plan, exp.id, verdicts),
            scrub=scrub,
            plan=plan,
            plots=charts,
            exists=exists,
        )
        blocks.append((plan.root / "experiments" / exp.id / "FINDINGS.md", block, f"{exp.name} — findings"))
    overview = plan.root / "FINDINGS.md"
    # Another session may have written other experiments since this one read them: under a lock
    # (two sessions never render the overview at once), every experiment this session did not
    # write is read again, so the overview written last shows every session's results.
    with locked(plan.root, warn=state.warn):  # the plan's folder itself: no lock file
        # The experiments' files first, written together (their fsyncs waited for at once): the
        # overview links only to those that are there.
        files = [
            (path, data)
            for path, text, title in blocks
            if (data := findings_file_bytes(path, text, title=title)) is not None
        ]
        failed = next((error for error in write_files(files) if error is not None), None)
        if failed is not None:
            raise failed  # the others are written; the session says so and exits 1
        written = set(results.store.touched())
        others = [e.id for e in plan.experiments if e.id not in written]
        if others:
            results.reload(others)
            verdicts = {e.id: results.verdict(e.id) for e in plan.experiments}
            docs = {e.id: results.doc(e.id) for e in plan.experiments}
        gates = [(g, *gate_detail(g, verdicts)) for g in plan.gates]  # the row names the gate
        project = render_project(plan, docs, verdicts, gates, scrub=scrub, exists=exists)
        update_findings_file(overview, project, title=f"{plan.project.name} — research findings")


def _plotter(state: MlexpSession) -> Any:
    """``plots.experiment_plots`` wrapped so that a chart never costs the findings, or None when
    charts are off (ini ``mlexp_plots = false``) or matplotlib is missing (one note says so)."""
    if not state.config.getini("mlexp_plots"):
        return None
    from . import plots

    if not plots.available():
        note = (
            "mlexp: no charts: matplotlib is not installed (pip install matplotlib, "
            "or set the ini option mlexp_plots = false)"
        )
        if note not in state.notes_end:  # once, however many plans were written
            state.notes_end.append(note)
        return None

    def draw(plan: Any, exp: Any, doc: Any, verdict: Any) -> dict[str, str]:
        try:
            return plots.experiment_plots(plan, exp, doc, verdict)
        except Exception as exc:  # a drawing problem must never cost the researcher their findings
            state.warn(f"charts of {exp.id} were not drawn: {type(exc).__name__}: {exc}")
            return {}

    return draw


def _fail_if_all_blocked(state: MlexpSession, session: pytest.Session) -> None:
    records = state.records.values()
    # (Most sessions: the first sub-experiment row that is not blocked answers.)
    if any(r["kind"] == "sub" and r["status"] != "blocked" for r in records):
        return
    subs = [r for r in records if r["kind"] == "sub"]
    if subs:
        reasons = "; ".join(sorted({r.get("reason", "") for r in subs}))
        # Sub-experiments of the same plans that a mark or a conftest skipped were selected and
        # not blocked: nothing ran, as the researcher asked (a skipped experiment blocks those
        # that wait for it), and the session is not failed for it.
        plans = {nodeid.split("::", 1)[0] for nodeid in state.records}
        skipped = [
            nodeid
            for nodeid in state.skipped
            if nodeid.split("::", 1)[0] in plans and not nodeid.endswith("::assessment")
        ]
        if skipped:
            state.notes_end.append(
                f"mlexp: nothing ran: {len(skipped)} sub-experiment item(s) were skipped (a mark or a "
                f"conftest) and the other {len(subs)} blocked: {reasons}"
            )
            return
        state.notes_end.append("mlexp: every selected sub-experiment was blocked, so nothing ran: " + reasons)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _never_finished(state: MlexpSession, session: pytest.Session) -> list[str]:
    """Experiment items of this session that never reported (Ctrl-C, SIGTERM, ``-x``): what
    ``--lf`` must still run, besides what failed (never every item of the session again)."""
    from .items import AssessmentItem, SubItem

    records = state.records
    items = session.items
    if len(records) == len(items):
        # Each row is keyed by the node id of an experiment item of this session that reported
        # (or finished ahead).  As many rows as items: every item is an experiment item, with
        # its own node id, and reported; nothing is left to find (an item's node id costs a
        # call each).
        return []
    return [
        nodeid
        for it in items
        if isinstance(it, (SubItem, AssessmentItem)) and (nodeid := it.nodeid) not in records
    ]


def _update_lastfailed(state: MlexpSession, ran: bool, unfinished: Sequence[str] = ()) -> None:
    """Keep separate last-failed sets for real and stub runs, and let --lf re-run blocked items.

    pytest's cache plugin forgets skipped items; ours add them back (they are what a gate held
    back), and swap in the set of the mode the next session runs in (``configure_lastfailed``).
    Items an interrupted session never finished join the set, so ``--lf`` runs them and not
    every item of that session again.
    """
    cache = getattr(state.config, "cache", None)
    if cache is None:
        return
    mode = "stub" if state.stub else "real"
    sets: dict[str, list[str]] = cache.get(CACHE_LF, {"real": [], "stub": []})
    current = set(sets.get(mode, []))
    records = state.records
    # What this session ran is decided afresh: out of the set, then back in if it did not pass
    # (rows that passed, most of them, are looked at once, for their status).
    unpassed = [(nodeid, row) for nodeid, row in records.items() if row["status"] in _RERUN]
    current.difference_update(records)
    opening = _opening_experiments(state, [row for _, row in unpassed])
    # An experiment whose verdict opens gates (passed, with a pivot, accepted, recorded)
    # never puts its items into the last-failed set: re-running it would change nothing.
    current.update(nodeid for nodeid, row in unpassed if (row.get("plan"), row["experiment"]) not in opening)
    if not state.stub:
        rerun, watch = _suppliers_to_rerun(state, unpassed)
        current.update(rerun)
        stored = cache.get(CACHE_LF_WATCH, {})
        watched: dict[str, list[str]] = stored if isinstance(stored, dict) else {}
        if watched or watch:  # nothing watched before or now (most sessions): no cache file written
            for nodeid in state.records:  # what this session judged or ran is decided afresh
                watched.pop(nodeid, None)
            watched.update(watch)
            cache.set(CACHE_LF_WATCH, {k: v for k, v in watched.items() if k not in current})
    current.update(unfinished)
    sets[mode] = sorted(current)
    cache.set(CACHE_LF, sets)
    real, stub = set(sets.get("real", [])), set(sets.get("stub", []))
    lastfailed = {
        k: v
        for k, v in cache.get("cache/lastfailed", {}).items()
        if k not in real and k not in stub and k not in records
    }
    # The on-disk set is the real run's: a plain ``pytest --lf`` re-runs real failures.
    lastfailed.update(dict.fromkeys(sets.get("real", []), True))
    cache.set("cache/lastfailed", lastfailed)
    if ran:
        cache.set(CACHE_RAN, True)


def _opening_experiments(
    state: MlexpSession, rows: Iterable[Mapping[str, Any]]
) -> set[tuple[str | None, str]]:
    """(plan as the rows name it, experiment) of each experiment of ``rows`` whose verdict
    opens gates."""
    out: set[tuple[str | None, str]] = set()
    for row in rows:
        key = (row.get("plan"), row["experiment"])
        if key in out or row.get("plan") is None:
            continue
        ctx = state.context_for(row["plan"])
        if ctx.plan.has_experiment(row["experiment"]) and ctx.results.verdict(row["experiment"]).passed:
            out.add(key)
    return out


def _suppliers_to_rerun(
    state: MlexpSession, unpassed: Iterable[tuple[str, Mapping[str, Any]]]
) -> tuple[set[str], dict[str, list[str]]]:
    """Node ids of the sub-experiments behind failed assessments that --lf must re-run: those
    that supply an unmeasured criterion, one whose supplier errored, or one whose handler source
    changed since its result ran (``reruns.py``).  A criterion measured and missed is only
    re-judged: its assessment alone is in the set.  Second: the suppliers of such misses, by node
    id, with ``[handler file, digest its result ran]``: a later --lf re-runs them once the file
    changes (``configure_lastfailed``).  ``unpassed``: the session's rows that did not pass,
    by node id."""
    out: set[str] = set()
    watch: dict[str, list[str]] = {}
    for nodeid, row in unpassed:  # (a failed assessment is among them)
        if row["kind"] != "assessment" or row["status"] != "failed" or "plan" not in row:
            continue
        from .reruns import rerun_suppliers  # only with a failed assessment

        ctx = state.context_for(row["plan"])
        plan = ctx.plan
        if not plan.has_experiment(row["experiment"]):
            continue
        exp = plan.experiment(row["experiment"])
        results = ctx.results
        base = nodeid.rsplit("::", 2)[0]  # <plan>::<experiment>::assessment -> <plan>
        verdict = results.verdict(exp.id)
        changed = functools.partial(_handler_changed, ctx)
        wanted = rerun_suppliers(exp, verdict, results.entry, changed=changed)
        missed = rerun_suppliers(exp, verdict, results.entry, changed=lambda _: True)
        for sub_id in missed:
            sub = plan.sub(sub_id)
            points = sub.points()
            names = [f"{sub_id}[{p.key}]" for p in points] if points else [sub_id]
            ids = [f"{base}::{sub.experiment_id}::{name}" for name in names]
            if sub_id in wanted:
                out.update(ids)
                continue
            source = _handler_source(ctx, sub_id)
            if source is not None:
                watch.update(dict.fromkeys(ids, source))
    return out, watch


def _handler_source(ctx: PlanContext, sub_id: str) -> list[str] | None:
    """``[handler file, digest of the source its stored result ran]``, or None when unknown
    (an imported result, no handler found): read, never imported."""
    entry = ctx.results.entry(sub_id)
    prov = entry.get("provenance") if entry is not None else None
    stored = prov.get("handler_sha256") if isinstance(prov, dict) else None
    if not isinstance(stored, str) or not stored or not ctx.plan.has_sub(sub_id):
        return None
    try:
        path = ctx.handler(ctx.plan.sub(sub_id)).module_path
    except LookupError:
        return None
    return [str(path), stored]


def _source_digest(path: str) -> str | None:
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _handler_changed(ctx: PlanContext, sub_id: str) -> bool:
    """Whether a sub-experiment's handler source differs from the one its stored result ran
    (``provenance.handler_sha256``): code changed since, so re-running it is no p-hacking.
    Unknown either way counts as unchanged."""
    source = _handler_source(ctx, sub_id)
    if source is None:
        return False
    now = _source_digest(source[0])
    return now is not None and now != source[1]


def configure_lastfailed(config: pytest.Config) -> None:
    """Before collection, show the cache plugin the last-failed set of this session's mode."""
    cache = getattr(config, "cache", None)
    lf = config.pluginmanager.get_plugin("lfplugin")
    if cache is None or lf is None or not hasattr(lf, "lastfailed"):
        return
    sets = cache.get(CACHE_LF, None) or {}
    extra = _lf_extra(config, sets) if config.getoption("lf", False) else []
    if not sets and not extra:
        return
    mode = "stub" if config.getoption("mlexp_stub") else "real"
    every = set(sets.get("real", [])) | set(sets.get("stub", []))
    keys = list(lf.lastfailed)
    make = type(keys[0]) if keys else None
    if make is None or not hasattr(make, "parse"):
        try:  # pytest >= 9.1 keys the dict by NodeId
            from _pytest.nodeid import NodeId

            make = NodeId
        except ImportError:
            make = None
    for key in keys:
        if str(key) in every:
            del lf.lastfailed[key]
    rerun = list(sets.get(mode, []))
    if mode == "real":
        # Suppliers of a measured miss whose handler source changed since: no longer a re-run
        # of unchanged code (``_suppliers_to_rerun``).
        watch = cache.get(CACHE_LF_WATCH, {})
        if isinstance(watch, dict):
            rerun += [
                nodeid
                for nodeid, source in watch.items()
                if isinstance(source, list)
                and len(source) == 2
                and _source_digest(str(source[0])) not in (None, source[1])
            ]
    for nodeid in [*rerun, *extra]:
        lf.lastfailed[_lf_key(make, nodeid)] = True
    if config.getoption("lf", False) and hasattr(lf, "get_last_failed_paths"):
        lf._last_failed_paths = lf.get_last_failed_paths()


def _width(tr: Any) -> int:
    """Where summary lines wrap: the terminal's width, but never under 100 columns (narrower
    terminals fold long lines themselves; a summary folded at 60 is hard to read)."""
    width = getattr(getattr(tr, "_tw", None), "fullwidth", 0)
    return max(width, 100) if isinstance(width, int) else 100


def _wrapped(head: str, text: str, width: int, indent: str = "      ") -> str:
    """``head`` then ``text``, wrapped onto indented lines: long reasons are kept whole, never
    cut (the first release cut summary lines at 200 characters)."""
    if len(head) + len(text) <= width:
        return head + text
    import textwrap

    lines = textwrap.wrap(
        text, width=width, initial_indent=head, subsequent_indent=indent, break_on_hyphens=False
    )
    return "\n".join(lines) or head


def _lf_key(make: Any, nodeid: str) -> Any:
    """The last-failed key of an experiment item.  pytest >= 9.1 keys by ``NodeId``, and
    ``NodeId.parse`` reads ``sub[point]`` as a parametrised ``sub``; a sweep point item is a
    node *named* ``sub[point]`` (no parametrisation), so its key is built the way pytest builds
    the item's id, or ``--lf`` would never select a failed point."""
    if make is None:
        return nodeid
    path, sep, rest = nodeid.partition("::")
    if (
        sep
        and "[" in rest
        and getattr(make, "__dataclass_fields__", None)
        and "names" in make.__dataclass_fields__
    ):
        return make(path=path, names=tuple(rest.split("::")))
    return make.parse(nodeid)


def _lf_extra(config: pytest.Config, sets: Mapping[str, Any]) -> list[str]:
    """What ``--lf`` runs besides the last-failed set (``lastfailed.py``): results of the plan
    that only a stale result answers, new sweep points, and the outdated suppliers of an
    assessment that failed.  Judged now, from the plan and results as they are."""
    from .lastfailed import never_answered, outdated_suppliers
    from .model import PlanError
    from .session import session_of
    from .store import StoreError

    state = session_of(config)
    path = state.plan_path
    if not path.is_file():
        return []
    try:
        ctx = state.context_for(path)
        prefix = path.relative_to(state.rootpath).as_posix()
    except (PlanError, ValueError):
        return []
    mode = "stub" if state.stub else "real"
    failed = set(sets.get(mode, []))
    out: list[str] = []
    try:
        for exp in ctx.plan.experiments:
            doc = ctx.results.doc(exp.id)
            keys = never_answered(exp, doc)
            if f"{prefix}::{exp.id}::assessment" in failed:
                keys += outdated_suppliers(ctx.plan, exp, ctx.results.verdict(exp.id), doc)
            if keys:  # with the assessment, which judges them again
                out += [f"{prefix}::{exp.id}::{key}" for key in keys] + [f"{prefix}::{exp.id}::assessment"]
    except StoreError:
        return []  # reported when the plan is collected
    return out


def terminal_summary(state: MlexpSession, tr: Any) -> None:
    for line in state.warned:
        tr.write_line(f"mlexp: warning: {state.scrub(line)}", yellow=True)
    if not state.records:
        for line in state.notes_end:
            tr.write_line(line, red=True)
        return
    tr.write_sep("=", "experiment summary")
    width = _width(tr)
    by_exp: dict[str, list[dict[str, Any]]] = {}
    # Rows grouped by experiment, in the order each first reported; a run of one experiment's
    # rows at a time (they report in order), not a dict look-up per row.
    for exp_id, run in itertools.groupby(state.records.values(), _EXPERIMENT):
        rows = by_exp.get(exp_id)
        if rows is None:
            by_exp[exp_id] = list(run)
        else:
            rows.extend(run)
    contexts = {exp_id: _context_of(state, rows) for exp_id, rows in by_exp.items()}
    counts: Counter[str] = Counter()
    assessed_only = 0
    for exp_id, rows in by_exp.items():
        ctx = contexts[exp_id]
        subs = [row for row in rows if row["kind"] == "sub"]
        counts.update(map(_STATUS, subs))
        lines = [exp_id]
        selected: dict[str, str | None] = {}  # sweep -> its selected point's row name
        for row in subs:
            name = row["name"]
            detail = _row_detail(row)
            if "[" in name and _is_selected(ctx, name, selected):
                detail += "  [selected]"
            # (``ljust`` pads as ``:<32`` does, for less than a format spec costs.)
            line = f"  {name.ljust(32)} {row['status'].ljust(11)} {detail}"
            # (_wrapped's own answer for a line that fits, without the call: most rows fit.)
            if len(line) > width:
                line = _wrapped(line[: len(line) - len(detail)], detail, width)
            lines.append(line)
            if row.get("link"):
                lines.append(f"  {'':<32} {row['link']}")
        if not subs and ctx is not None:
            # Only the assessment ran: show what it judged (stored results, current plan).
            assessed_only += 1
            lines[0] += "  (assessment only: stored results judged by the current plan)"
            lines += _stored_rows(ctx, exp_id, width)
        # One write per experiment: a 10,000-point sweep is 10,000 lines.
        tr.ensure_newline()
        tr.write("\n".join(lines) + "\n")
    infra = counts.get("infra_error", 0)
    errors = counts.get("error", 0) + infra
    line = (
        f"Completed: {counts['passed']} | Failed: {counts['failed']} | "
        f"Errors: {errors} (infra {infra}) | Blocked: {counts['blocked']}"
    )
    if assessed_only and not any(row["kind"] == "sub" for row in state.records.values()):
        line += f" (no sub-experiment ran: {assessed_only} assessment(s) judged stored results)"
    tr.write_line(line, bold=True)
    for exp_id in by_exp:
        ctx = contexts[exp_id]
        if ctx is not None:
            tr.write_line(_wrapped(f"verdict {exp_id}: ", _verdict_text(state, ctx, exp_id), width, "    "))
    if state.stub:
        for ctx in state.contexts.values():
            _stub_gates(state, ctx, tr, set(by_exp))
    for line in state.notes_end:
        tr.write_line(line, red=True)


def _context_of(state: MlexpSession, rows: list[dict[str, Any]]) -> PlanContext | None:
    exp_id = rows[0]["experiment"]
    for row in rows:
        if row.get("plan"):
            return state.context_for(row["plan"])
    for ctx in state.contexts.values():
        if ctx.plan.has_experiment(exp_id):
            return ctx
    return None


def _verdict_text(state: MlexpSession, ctx: PlanContext, exp_id: str) -> str:
    from .blocking import blockers
    from .verdictwords import blocked_line, verdict_line

    verdict = ctx.results.verdict(exp_id)
    imported = ctx.results.imported(exp_id)
    # Results the previous runner measured (SPEC section 10) are said to be imported.
    also = f" [{len(imported)} result(s) imported: {', '.join(imported)}]" if imported else ""
    if not state.stub:
        blocking = blockers(ctx.plan, exp_id, ctx.results.verdicts())
        if blocking:
            return state.scrub(blocked_line(verdict, blocking) + also)
    return state.scrub(verdict_line(verdict, stub=state.stub) + also)


def _is_selected(ctx: PlanContext | None, name: str, selected: dict[str, str | None]) -> bool:
    """Whether a row name (``sub[point]``) is the point that represents its sweep; ``selected``
    remembers each sweep's answer (its selected point's row name, or None)."""
    sub_id = name.partition("[")[0]
    if sub_id not in selected:
        found = None
        if ctx is not None and ctx.plan.has_sub(sub_id):
            point = ctx.results.sub_state(sub_id).selected
            if point is not None:
                found = f"{sub_id}[{point}]"
        selected[sub_id] = found
    return selected[sub_id] == name


def _stored_rows(ctx: PlanContext, exp_id: str, width: int) -> list[str]:
    from .verdictwords import day

    lines = []
    for sub_state in ctx.results.verdict(exp_id).subs:
        values = sub_state.values_entry or {}
        criteria = {j.metric: {"rule": j.rule, "level": j.level} for j in sub_state.judgements}
        row = {"status": sub_state.status, "metrics": values.get("metrics") or {}, "criteria": criteria}
        detail = _row_detail(row) if sub_state.status not in ("not_run", "blocked") else sub_state.detail
        if sub_state.selected is not None:
            detail += f"  [selected {sub_state.selected}]"
        finished = values.get("finished_at")
        if finished:
            detail += f"  stored {day(str(finished))}"
        name = sub_state.sub.id
        lines.append(_wrapped(f"  {name:<32} {sub_state.status:<11} ", detail, width))
    return lines


def _stub_gates(state: MlexpSession, ctx: PlanContext, tr: Any, ran: set[str]) -> None:
    """Under --stub each gate says whether the wiring of its experiments that ran is sound:
    ``wiring ok``, ``wiring broken: <why>`` or ``not in this run``."""
    for gate in ctx.plan.gates:
        members = [e for e in gate.experiments if e in ran]
        if not members:
            status = "not in this run"
        else:
            broken = [
                f"{e}: {', '.join(state.wiring_failures(e))}" for e in members if state.wiring_failures(e)
            ]
            if broken:
                status = "wiring broken: " + "; ".join(broken)
            else:
                status = "wiring ok"
                left = [e for e in gate.experiments if e not in ran]
                if left:
                    status += f" ({', '.join(left)} not in this run)"
        tr.write_line(f"gate {gate.id} ({gate.name}): not enforced under --stub; {status}")


def run_link(tracking: Mapping[str, Any]) -> str | None:
    """One line saying where an entry's tracked run is, labelled with the tracker's name."""
    from .records import tracker_label

    if not isinstance(tracking, Mapping):
        return None
    label = tracker_label(tracking.get("tracker"))
    runs = tracking.get("runs")
    more = f" (+{len(runs) - 1} more in results.yaml)" if isinstance(runs, list) and len(runs) > 1 else ""
    if tracking.get("url"):
        return f"{label} run: {tracking['url']}{more}"
    if tracking.get("sync"):
        return f"{label} (offline): {tracking['sync']}{more}"
    if tracking.get("run_path"):
        where = f" (local store: {tracking['ui']})" if tracking.get("ui") else ""
        return f"{label} run {tracking['run_path']}{where}{more}"
    return None


def _row_detail(row: Mapping[str, Any]) -> str:
    if row["status"] == "blocked":
        return str(row.get("reason", ""))
    parts = []
    reused = row.get("reused")
    if reused:  # SPEC section 11: "(reused <date>)", first, so a long line never hides it
        when = str(reused.get("from") or "")[:10]
        what = "reused (imported)" if reused.get("imported") else "reused"
        seeds = reused.get("seeds")
        parts.append(f"({what} {when})" if not seeds else f"({len(seeds)} seeds {what} {when})")
    metrics = row.get("metrics")
    if metrics:
        criteria = row.get("criteria")
        # (The first four metrics: a row's own mapping when it has no more, without a copy.)
        for name, value in metrics.items() if len(metrics) <= 4 else list(metrics.items())[:4]:
            c = criteria.get(name) if criteria else None  # (most rows: no criteria)
            if c:
                parts.append(f"{name}={fmt_number(value)} ({c.get('rule')}: {c.get('level')})")
            else:
                parts.append(f"{name}={fmt_number(value)}")
    error = row.get("error")
    if error:
        parts.append(f"[{error}]")
    if row.get("kept"):
        parts.append("(the stored result is kept)")
    # A reuse without seeds ran nothing: the stored duration is the original run's, not this
    # session's.
    if not reused or reused.get("seeds"):
        duration = row.get("duration_s")
        if duration is not None:
            # (Under 50 ms, as trivial and --stub items take, the text is known without
            # formatting a float, a fifth of a row's cost: every float in [0, 0.05) rounds to
            # 0.0, but -0.0 reads "-0.0".)
            short = duration.__class__ is float and (
                0.0 < duration < 0.05 or (duration == 0.0 and math.copysign(1.0, duration) > 0.0)
            )
            parts.append("0.0s" if short else f"{duration:.1f}s")
    return "  ".join(parts)


def estimate_line(state: MlexpSession, items: list[pytest.Item]) -> str:
    """``mlexp: estimate for ...``: what running ``items`` would cost (``estimate.py``)."""
    import os

    from .estimate import ItemCost, estimate, parse_prices
    from .skipmarks import skipped_by_marks

    costs: list[ItemCost] = []
    docs: dict[str, Any] = {}  # experiment id -> its results (the first plan's, should two share one)
    skipped = 0
    memo: dict[int, frozenset[str]] = {}
    for item in items:
        if skipped_by_marks(item, memo):  # a skip mark, a skipif that holds, xfail(run=False): costs nothing
            skipped += 1
            continue
        sub = item.sub  # type: ignore[attr-defined]
        point = item.point  # type: ignore[attr-defined]
        ctx = state.context_for(item.path)
        reused = False
        if state.reuse:
            decision = ctx.decision(sub, point)
            seeds = ctx.fingerprints.seeds(sub)
            reused = bool(seeds) and not decision.to_run(seeds)
        seeds_n = 1 if state.stub else len(sub.seeds)
        costs.append(ItemCost(sub, point.key if point else None, seeds_n, state.executor_for(sub), reused))
        if sub.experiment_id not in docs:
            docs[sub.experiment_id] = ctx.results.doc(sub.experiment_id)

    def doc_of_item(exp_id: str) -> Any:
        return docs.get(exp_id, {})

    defaults = {"modal": 32, "process": os.cpu_count() or 1}

    def concurrency(executor: str) -> int:
        return state.concurrency or defaults.get(executor, 1)

    raw = str(state.config.getini("mlexp_gpu_prices") or "")
    prices = parse_prices(raw) if raw.strip() else None
    line = estimate(costs, doc_of_item, prices=prices, concurrency=concurrency).line()
    return f"mlexp: {line}" + (f"; not counted: {skipped} item(s) a mark skips" if skipped else "")
