"""What a session knows of one plan's results: the store, this process's overlay, sweep
summaries and verdicts.  No pytest in here.

Everything that reads results during a run asks this view: the blocker check before an item,
``runner.upstream``, a criterion that compares against another sub-experiment's stored values
(:meth:`ResultsView.entry`, read through ``verdict.lookup_for``), the assessment's verdict, the
findings at the end.  Whatever
changes results comes in as a :class:`~pytest_mlexp.records.ResultOp` through :meth:`apply`:

* in the process that owns the files (the only one, or the xdist controller) it goes to the
  store, which journals it and rewrites results.yaml;
* on an xdist worker the store is read-only: the op is laid over it in memory (the overlay), so
  the worker's later items see its earlier results exactly as they would without xdist.

Sweeps are summarised (selected point, status, metrics) when someone reads them, once per read
after new points, never once per point (that would make a sweep quadratic).  Verdicts are cached
per experiment and recomputed after a result of theirs (or of a sub-experiment their criteria
compare against) arrives.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import curves
from .blocking import blockers, sub_blockers
from .graph import graph_of
from .records import ResultEntry, ResultOp, entry_from_dict, now_iso
from .subjudge import judge_stored, lookup_for, point_status, select_point, summarize_sweep
from .verdict import experiment_verdict

if TYPE_CHECKING:
    from .model import Plan, SubExperiment, SubState, Verdict
    from .store import ResultsStore

__all__ = ["ResultsView"]

_RAN = ("passed", "failed")


class ResultsView:
    """One plan's results as this process sees them (see the module docstring)."""

    def __init__(self, plan: Plan, store: ResultsStore, *, stub: bool) -> None:
        self.plan = plan
        self.store = store
        self.stub = stub
        self._verdicts: dict[str, Verdict] = {}
        self._states: dict[str, SubState] = {}  # sub id -> judged now (blocker checks, upstream)
        self._has_prereqs: dict[str, bool] = {}
        # On an xdist worker nothing is written: results of this worker's items overlay the store.
        self._overlay: dict[tuple[str, str], ResultEntry] = {}
        self._dirty_sweeps: set[tuple[str, str]] = set()
        self._curve_folders: dict[str, bool] = {}  # experiment -> whether curves/ exists
        # experiment -> experiments whose sub-experiments wait for one of its sub-experiments
        # (their verdicts may read its values: a criterion that compares against it)
        self._readers: dict[str, set[str]] | None = None
        store.judge = self.judge_doc

    # --- reading ------------------------------------------------------------------------------

    def doc(self, experiment_id: str) -> Mapping[str, Any]:
        """The experiment's merged results document (do not change it)."""
        self._summarize_pending(experiment_id)
        doc = self.store.doc(experiment_id)
        if not self._overlay:
            return doc
        merged = dict(doc)
        subs = dict(merged.get("sub_experiments") or {})
        for (exp_id, sub_id), entry in self._overlay.items():
            if exp_id == experiment_id:
                subs[sub_id] = entry
        merged["sub_experiments"] = subs
        return merged

    def entry(self, sub_id: str, point: str | None = None) -> ResultEntry | None:
        """The stored entry of a sub-experiment (a sweep: with its summary), or of one point."""
        if not self.plan.has_sub(sub_id):
            return None
        key = (self.plan.sub(sub_id).experiment_id, sub_id)
        if key in self._dirty_sweeps:
            self._summarize(key)
        entry = self._raw_entry(*key)
        if point is not None and entry is not None:
            points = entry.get("points")
            return entry_from_dict(points.get(point)) if isinstance(points, dict) else None
        return entry

    def _raw_entry(self, experiment_id: str, sub_id: str) -> ResultEntry | None:
        got = self._overlay.get((experiment_id, sub_id))
        if got is not None:
            return got
        return entry_from_dict((self.store.doc(experiment_id).get("sub_experiments") or {}).get(sub_id))

    def has_result(self, sub_id: str, point: str | None = None) -> bool:
        """Whether a result (anything but nothing or ``blocked``) is stored for it."""
        entry = self.entry(sub_id, point)
        return entry is not None and entry.get("status") not in (None, "blocked")

    def seed_values(self, sub_id: str, metric: str) -> dict[int, Any] | None:
        """The stored per-seed values of ``metric`` of sub-experiment ``sub_id``: ``{seed:
        value}`` (None for a seed that did not report it), from its selected point when it is a
        sweep.  None when it has no result to read (never ran, blocked, errored, or a sweep
        with no point to select).  A run of one seed without ``per_seed`` is keyed by the
        sub-experiment's first seed."""
        if not self.plan.has_sub(sub_id):
            return None
        sub = self.plan.sub(sub_id)
        entry = self.entry(sub_id)
        if entry is None:
            return None
        points = entry.get("points")
        if isinstance(points, dict) and points:
            selected = select_point(sub, points)
            entry = entry_from_dict(points.get(selected)) if selected is not None else None
            if entry is None:
                return None
        if entry.get("status") not in _RAN:
            return None
        per_seed = entry.get("per_seed")
        if isinstance(per_seed, Mapping) and per_seed:
            return {
                int(seed): (values.get(metric) if isinstance(values, Mapping) else None)
                for seed, values in per_seed.items()
            }
        metrics = entry.get("metrics")
        return {
            sub.seeds[0] if sub.seeds else 0: metrics.get(metric) if isinstance(metrics, Mapping) else None
        }

    def sub_state(self, sub_id: str) -> SubState:
        """A sub-experiment judged now, from the current plan and its stored result (cached until
        a result of its experiment arrives)."""
        state = self._states.get(sub_id)
        if state is None:
            sub = self.plan.sub(sub_id)
            stale = (self.store.doc(sub.experiment_id).get("stale") or {}).get(sub_id)
            lookup = lookup_for(self.plan, self.entry) if sub.implicit_dependencies else None
            state = judge_stored(
                self.plan, sub, self.entry(sub_id), stub=self.stub, lookup=lookup, stale=stale
            )
            self._states[sub_id] = state
        return state

    def upstream(self, sub: SubExperiment) -> dict[str, Any]:
        """``runner.upstream``: what the sub-experiments ``sub`` depends on stored, judged now:
        ``status``, ``metrics`` (a sweep: its selected point's), ``per_seed`` and ``stats``
        (with seeds: a paired comparison inside a handler needs them), ``finding``, absolute
        ``artifacts`` paths."""
        out: dict[str, Any] = {}
        for dep in sub.dependencies:
            if not self.plan.has_sub(dep):
                continue
            entry = self.entry(dep) or {}
            state = self.sub_state(dep)
            values = state.values_entry or entry
            artifacts = values.get("artifacts") or entry.get("artifacts") or []
            out[dep] = {
                "status": state.status,
                "metrics": dict(values.get("metrics") or {}),
                "per_seed": {k: dict(v) for k, v in (values.get("per_seed") or {}).items()},
                "stats": {k: dict(v) for k, v in (values.get("stats") or {}).items()},
                "finding": values.get("finding"),
                "artifacts": [str(self.plan.root / a) for a in artifacts],
            }
            if state.selected is not None:
                out[dep]["selected"] = state.selected
        return out

    def imported(self, experiment_id: str) -> list[str]:
        """Sub-experiments whose current result was imported from another runner (SPEC
        section 10: ``imported:`` on the entry), in plan order."""
        subs = self.doc(experiment_id).get("sub_experiments") or {}
        out = []
        for s in self.plan.experiment(experiment_id).sub_experiments:
            entry = subs.get(s.id)
            # (A dict, and no ``imported:`` in it: most entries, answered without the ABC checks;
            # asked for every sub-experiment of the session's summary.)
            if not (entry.__class__ is dict or isinstance(entry, Mapping)):
                continue
            imported = entry.get("imported")
            if imported is not None and isinstance(imported, Mapping):
                out.append(s.id)
        return out

    def verdict(self, experiment_id: str) -> Verdict:
        cached = self._verdicts.get(experiment_id)
        if cached is None:
            exp = self.plan.experiment(experiment_id)
            cached = experiment_verdict(
                self.plan, exp, self.doc(experiment_id), stub=self.stub, entries=self.entry
            )
            self._verdicts[experiment_id] = cached
        return cached

    def verdicts(self) -> Mapping[str, Verdict]:
        """Every experiment's verdict, each computed when first looked at."""
        return _LazyVerdicts(self)

    def experiment_header(self, experiment_id: str) -> dict[str, Any]:
        """The header fields results.yaml keeps for the experiment's verdict."""
        verdict = self.verdict(experiment_id)
        return {
            "name": self.plan.experiment(experiment_id).name,
            "status": verdict.status,
            "verdict": verdict.verdict,
            "opens_gates": verdict.opens_gates,
            "success_criteria_met": verdict.success_criteria_met,
            "confidence": verdict.confidence,
            "recommendation": verdict.recommendation,
            # every header key is always written, so a later verdict leaves none of an earlier one
            "recommendation_reasons": list(verdict.reasons),
            "pivot": verdict.pivot,
            "updated_at": now_iso(),
            "criteria": {j.metric: j.to_dict() for j in verdict.criteria},
            "pivots": {
                pv.pivot.key: {"met": pv.met, "criteria": {j.metric: j.to_dict() for j in pv.criteria}}
                for pv in verdict.pivots
            },
        }

    def judge_doc(self, experiment_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with every stored sub-experiment's judgement made again from the current plan
        (status where criteria decide it, criteria, wiring errors, a sweep's summary and its
        points' wiring): what results.yaml holds when it is next written.  Measurements are
        never changed.  The store calls it on every write (``ResultsStore.judge``)."""
        if not self.plan.has_experiment(experiment_id):
            return doc
        subs = doc.get("sub_experiments")
        if not isinstance(subs, dict):
            return doc
        plan = self.plan
        own = subs

        def entry_of(sub_id: str) -> Any:
            return own.get(sub_id) if sub_id in own else self.entry(sub_id)

        lookup = lookup_for(plan, entry_of)
        # The verdict (computed just before the session-end write) judged these very entries:
        # a state it made of the same entry object is this judgement, so it is not made twice.
        # Only for a sub-experiment whose judgement reads no other entry (no implicit
        # dependencies): those others may have changed since (a reconcile marks them outdated).
        cached = self._verdicts.get(experiment_id)
        judged = {s.sub.id: s for s in cached.subs} if cached is not None else {}
        out = dict(subs)
        for sub in plan.experiment(experiment_id).sub_experiments:
            entry = subs.get(sub.id)
            if not isinstance(entry, dict):
                continue
            points = entry.get("points")
            if isinstance(points, dict) and points:
                out[sub.id] = _rejudged_sweep(plan, sub, entry, points, self.stub, lookup)
                continue
            state = judged.get(sub.id)
            if state is None or state.values_entry is not entry or sub.implicit_dependencies:
                state = judge_stored(plan, sub, entry, stub=self.stub, lookup=lookup)
            status = state.status
            if status not in ("passed", "failed", "error") or not state.measured:
                continue
            if status == "error" and not state.wiring:
                continue  # a handler's error: a fact, not a judgement
            judgements = state.judgements
            # (Without criteria, judged as stored means an empty mapping stored: _same's answer
            # without its calls, for most entries of most plans.)
            criteria = {j.metric: j.to_dict() for j in judgements} if judgements else {}
            stored = entry.get("criteria")
            wiring = state.wiring
            if (
                entry.get("status") == status
                and (_same(stored, criteria) if judgements else stored.__class__ is dict and not stored)
                and not wiring
                and ("error" not in entry or not _is_wiring_entry(entry))
            ):
                continue  # judged as stored: the entry itself is written (no copy)
            new = dict(entry)
            new["status"] = status
            new["criteria"] = criteria
            if wiring:
                new["error"] = _wiring_block(state.detail)
            elif _is_wiring_entry(entry):
                new.pop("error", None)
            out[sub.id] = new
        return {**doc, "sub_experiments": out}

    def blocked_reason(self, experiment_id: str, sub: SubExperiment | None = None) -> str | None:
        """Why the experiment (or its sub-experiment ``sub``) may not run now, or None: an
        unpassed dependency or gate, a sub-level dependency that did not pass, or a
        sub-experiment its criteria compare with that has no result (``blocking.sub_blockers``)."""
        reasons: list[str] = []
        # Asked before every item: most have neither (no verdicts computed for them).
        has = self._has_prereqs.get(experiment_id)
        if has is None:
            has = self._has_prereqs[experiment_id] = bool(self.plan.prerequisites(experiment_id))
        if has:
            reasons = blockers(self.plan, experiment_id, self.verdicts())
        if not reasons and sub is not None and (sub.dependencies or sub.implicit_dependencies):
            named = (*sub.dependencies, *sub.implicit_dependencies)
            states = {d: self.sub_state(d) for d in named if self.plan.has_sub(d)}
            reasons = sub_blockers(self.plan, sub, states)
        return "; ".join(reasons) if reasons else None

    # --- changing -----------------------------------------------------------------------------

    def apply(self, op: ResultOp) -> None:
        """Apply one item's op: to the store (the owner of the files) or to the overlay (a
        worker: ``store.readonly``)."""
        kind = op.kind
        if kind == "experiment_blocked" or kind == "kept":
            return
        write = not self.store.readonly
        if kind == "experiment":
            if write and op.fields is not None:
                self.store.set_experiment(op.experiment, dict(op.fields))
            return
        sub_id = op.sub
        if sub_id is None or not self.plan.has_sub(sub_id):
            return
        exp_id = self.plan.sub(sub_id).experiment_id
        self._forget_verdicts(exp_id)
        point = op.point
        if kind == "blocked":
            if write:
                self.store.record_blocked(exp_id, sub_id, op.reason or "", point=point)
            return
        entry = op.entry if op.entry is not None else {}
        if not write:
            self._apply_overlay(exp_id, sub_id, point, dict(entry))  # type: ignore[arg-type]
            return
        self.store.record(exp_id, sub_id, entry, point=point)
        if not self.stub:  # the item's learning curves: a file of their own (curves.py)
            self._record_curves(exp_id, sub_id, point, op.curves)
        if point is not None:
            # Summarising scans every point: once per sweep at the end keeps a sweep linear.
            # Verdicts do not need it (they re-select the point from the stored points).
            self._dirty_sweeps.add((exp_id, sub_id))

    def reload(self, experiment_ids: list[str]) -> None:
        """Read these experiments' stored results from disk again (another session may have
        written them); verdicts are computed afresh.  Experiments this session changed keep
        their view (see ``ResultsStore.reload``)."""
        for experiment_id in experiment_ids:
            self.store.reload(experiment_id)
        self._verdicts.clear()
        self._states.clear()

    def _record_curves(
        self, exp_id: str, sub_id: str, point: str | None, data: Mapping[str, Any] | None
    ) -> None:
        """Write the item's curve file, or remove one an earlier run left (a run that logged
        nothing has no curves).  Most items of most plans log nothing: whether the experiment
        has a curves folder at all is asked once, not once per item."""
        has_folder = self._curve_folders.get(exp_id)
        if data:
            curves.write(curves.curve_path(self.plan.root, exp_id, sub_id, point), sub_id, point, data)
            self._curve_folders[exp_id] = True
            return
        if has_folder is None:
            folder = curves.curve_path(self.plan.root, exp_id, sub_id, point).parent
            has_folder = self._curve_folders[exp_id] = folder.is_dir()
        if has_folder:
            curves.remove(curves.curve_path(self.plan.root, exp_id, sub_id, point))

    def _forget_verdicts(self, experiment_id: str) -> None:
        self._verdicts.pop(experiment_id, None)
        if self._states:
            # judged sub-experiments of this experiment, and of those that compare with it
            self._states.clear()
        if self._readers is None:
            graph = graph_of(self.plan)
            plan = self.plan
            readers: dict[str, set[str]] = {}
            for exp in plan.experiments:
                for sub in exp.sub_experiments:
                    for dep in graph.sub_prerequisites(sub.id):
                        source = plan.sub(dep).experiment_id
                        if source != exp.id:
                            readers.setdefault(source, set()).add(exp.id)
            self._readers = readers
        for other in self._readers.get(experiment_id, ()):
            self._verdicts.pop(other, None)

    def _apply_overlay(self, exp_id: str, sub_id: str, point: str | None, entry: ResultEntry) -> None:
        key = (exp_id, sub_id)
        if point is None:
            self._overlay[key] = entry
            return
        current = self._overlay.get(key)
        if current is None:  # first point on this worker: start from what is stored (copied once)
            stored: ResultEntry = self._raw_entry(exp_id, sub_id) or {}
            current = self._overlay[key] = {**stored, "points": dict(stored.get("points") or {})}
        current.setdefault("points", {})[point] = entry
        self._dirty_sweeps.add(key)

    def _summarize_pending(self, experiment_id: str) -> None:
        for key in [k for k in self._dirty_sweeps if k[0] == experiment_id]:
            self._summarize(key)

    def _summarize(self, key: tuple[str, str]) -> None:
        """Summarise a sweep (selected point, status, metrics) when someone reads it."""
        self._dirty_sweeps.discard(key)
        exp_id, sub_id = key
        entry = self._raw_entry(exp_id, sub_id) or {}
        sub = self.plan.sub(sub_id)
        lookup = lookup_for(self.plan, self.entry) if sub.implicit_dependencies else None
        summary = summarize_sweep(
            sub, entry.get("points") or {}, stub=self.stub, lookup=lookup, plan=self.plan
        )
        if key in self._overlay:
            self._overlay[key].update(summary)
        else:
            self.store.set_summary(exp_id, sub_id, summary)

    def summarize_sweeps(self) -> None:
        """Summarise every sweep with new points (session end, before the files are written)."""
        for key in sorted(self._dirty_sweeps):
            self._summarize(key)


class _LazyVerdicts(Mapping[str, "Verdict"]):
    """Verdicts computed only for the experiments a blocker check actually looks at."""

    def __init__(self, view: ResultsView) -> None:
        self._view = view

    def __getitem__(self, key: str) -> Verdict:
        if not self._view.plan.has_experiment(key):
            raise KeyError(key)
        return self._view.verdict(key)

    def __iter__(self) -> Iterator[str]:
        return iter(e.id for e in self._view.plan.experiments)

    def __len__(self) -> int:
        return len(self._view.plan.experiments)


def _same(stored: Any, made: Any) -> bool:
    """Equal, with the same key order at every level (the order is what results.yaml shows)."""
    if stored.__class__ is dict and made.__class__ is dict:
        return list(stored) == list(made) and all(_same(stored[k], v) for k, v in made.items())
    if stored.__class__ is list and made.__class__ is list:
        return len(stored) == len(made) and all(_same(a, b) for a, b in zip(stored, made, strict=True))
    return stored.__class__ is made.__class__ and stored == made


def _wiring_block(message: str) -> dict[str, Any]:
    return {"kind": "wiring", "type": "MissingMetric", "message": message, "traceback": ""}


def _is_wiring_entry(entry: Any) -> bool:
    err = entry.get("error") if isinstance(entry, dict) else None
    return isinstance(err, dict) and err.get("kind") == "wiring"


def _rejudged_sweep(
    plan: Plan, sub: SubExperiment, entry: dict[str, Any], points: dict[str, Any], stub: bool, lookup: Any
) -> dict[str, Any]:
    """A sweep's entry with each point's wiring and the summary judged again."""
    new_points: dict[str, Any] = {}
    for key, point in points.items():
        if not isinstance(point, dict) or point.get("status") not in ("passed", "failed", "error"):
            new_points[key] = point
            continue
        status, why = point_status(plan, sub, point)
        if status == point.get("status") and (bool(why) == _is_wiring_entry(point)):
            new_points[key] = point
            continue
        fixed = dict(point)
        if why:
            fixed["status"] = "error"
            fixed["error"] = _wiring_block(why)
        elif _is_wiring_entry(point):
            fixed["status"] = status
            fixed.pop("error", None)
        new_points[key] = fixed
    summary = summarize_sweep(sub, new_points, stub=stub, lookup=lookup, plan=plan)
    out = dict(entry)
    for key, value in summary.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    out["points"] = new_points
    return out
