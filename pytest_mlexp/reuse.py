"""Stale, outdated, restored and reused results (SPEC section 11): pure logic on the plan, the
stored results and fingerprints (``fingerprint.py``).  No pytest.

* :class:`PlanFingerprints` -- the current fingerprint of every result the plan asks for.
* :class:`PlanReconciler` -- what the results store asks when it loads or writes a document:
  why an entry is stale (``params changed: lr 0.01 → 0.1``, ``seeds changed``), whether a
  stale entry is what the plan asks for again (then it comes back, with its original date),
  and which current entries are ``outdated`` (code or ``deps:`` changed) or have lost files.
* :func:`plan_reuse` and :func:`reused_outcomes` -- under ``--mlexp-reuse``, which seeds of an
  item a stored result already holds (newest match first, only results that re-judge as passed
  or failed), as outcomes the item folds in as if they had just run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fingerprint import (
    FINGERPRINT_VERSION,
    Fingerprinter,
    SubInputs,
    explain_change,
    node_fingerprint,
    upstream_token,
)
from .graph import graph_of
from .records import OUTDATED, SeedOutcome
from .resultsdoc import HISTORY_LIMIT, fingerprint_of, unstale
from .secrets import redact_params
from .store import params_digest
from .structs import struct

if TYPE_CHECKING:
    from .graph import PrerequisiteGraph
    from .model import Plan, SubExperiment, SweepPoint

__all__ = [
    "NodeFingerprint",
    "PlanFingerprints",
    "PlanReconciler",
    "ReusePlan",
    "params_change",
    "plan_reuse",
    "reused_outcomes",
    "seeds_of",
]

_RAN = ("passed", "failed")
EntryOf = Callable[[str], "Mapping[str, Any] | None"]


def _prov(entry: Mapping[str, Any], key: str) -> Any:
    """A provenance field of an entry, or the same field of a history item (kept at its top)."""
    prov = entry.get("provenance")
    if isinstance(prov, Mapping) and key in prov:
        return prov[key]
    return entry.get(key)


def seeds_of(entry: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The seeds a stored result holds (None when it does not say)."""
    seeds = _prov(entry, "seeds")
    if isinstance(seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return tuple(seeds)
    return None


def node_key(sub: SubExperiment, point: SweepPoint | None) -> str:
    """A result's key: ``sub_id``, or ``sub_id[point]`` for a sweep point (as ``stale:`` keys it)."""
    return sub.id if point is None else f"{sub.id}[{point.key}]"


@struct(frozen=True, slots=True)
class NodeFingerprint:
    """The current fingerprint of one result the plan asks for (a sub-experiment or a point)."""

    fingerprint: str
    inputs: Mapping[str, str]  # shared by the results of a sub-experiment: never changed
    seeds: tuple[int, ...]
    params_sha256: str
    files: tuple[str, ...]  # project files it reads (for git_dirty)
    handler_file: str | None

    def provenance(self) -> dict[str, Any]:
        """What results.yaml keeps of it under ``provenance``."""
        out: dict[str, Any] = {}
        self.add_provenance(out)
        return out

    def add_provenance(self, out: dict[str, Any]) -> None:
        """:meth:`provenance`'s keys set in ``out``, in that order (``tasks.provenance``)."""
        out["fingerprint"] = self.fingerprint
        out["fingerprint_version"] = FINGERPRINT_VERSION
        out["seeds"] = list(self.seeds)
        out["inputs"] = dict(self.inputs)


class PlanFingerprints:
    """Current fingerprints of a plan's results; the parts shared by a sub-experiment's results
    are computed once per session.  ``ref_of(sub)`` returns its handler (a ``HandlerRef``) or
    None when it has none."""

    def __init__(
        self,
        plan: Plan,
        fingerprinter: Fingerprinter | Callable[[], Fingerprinter],
        *,
        stub: bool,
        ref_of: Callable[[SubExperiment], Any],
    ) -> None:
        self.plan = plan
        # a callable: the session's fingerprinter is made only when a fingerprint is needed
        self._fingerprinter = fingerprinter
        self.stub = stub
        self.ref_of = ref_of
        self._subs: dict[str, SubInputs | None] = {}
        # The params digest of each result, by node key: only the text is kept (not in a tuple
        # beside the resolved params: a container per item the collector went over to the end).
        self._digests: dict[str, str] = {}
        self._points: dict[str, dict[str, SweepPoint]] = {}
        self._prereqs: dict[str, tuple[str, ...]] = {}
        self._shared: dict[tuple[Any, ...], SubInputs] = {}
        self._plan_dir: Path | None = None
        self._fixed: dict[str, str] = {}  # fingerprints of results without upstream, by node key
        self._graph: PrerequisiteGraph | None = None  # graph_of(plan), asked once per sub-experiment

    @property
    def fingerprinter(self) -> Fingerprinter:
        if not isinstance(self._fingerprinter, Fingerprinter):
            self._fingerprinter = self._fingerprinter()
        return self._fingerprinter

    def sub_inputs(self, sub: SubExperiment) -> SubInputs | None:
        if sub.id in self._subs:
            return self._subs[sub.id]
        ref = self.ref_of(sub)
        got: SubInputs | None = None
        if ref is not None:
            # Many sub-experiments share one handler (and deps): computed once for all of them.
            # (params and defaulted: what fixture_names is made of, without building it)
            key = (ref.module_path, ref.function, ref.params, ref.defaulted, sub.deps)
            got = self._shared.get(key)
            if got is None:
                if self._plan_dir is None:
                    self._plan_dir = self.plan.root
                got = self._shared[key] = self.fingerprinter.sub_inputs(
                    ref.qualname,
                    Path(ref.module_path),
                    [n for n in ref.fixture_names if n != "runner"],
                    self._plan_dir,
                    sub.deps,
                )
        self._subs[sub.id] = got
        return got

    def _point_map(self, sub: SubExperiment) -> dict[str, SweepPoint]:
        points = self._points.get(sub.id)
        if points is None:
            points = self._points[sub.id] = {p.key: p for p in sub.points()}
        return points

    def points(self, sub: SubExperiment) -> Sequence[SweepPoint]:
        """The sweep's points in plan order (expanded once)."""
        return tuple(self._point_map(sub).values())

    def point(self, sub: SubExperiment, key: str | None) -> SweepPoint | None:
        return None if key is None else self._point_map(sub).get(key)

    def params(self, sub: SubExperiment, point: SweepPoint | None) -> tuple[dict[str, Any], str]:
        """The resolved params of a result and their digest."""
        params = sub.resolved_params(self.stub, point)
        return params, self.params_sha(sub, point, params=params)

    def params_sha(
        self,
        sub: SubExperiment,
        point: SweepPoint | None,
        key: str | None = None,
        *,
        params: dict[str, Any] | None = None,
    ) -> str:
        """The digest of a result's resolved params (cached per result; ``key``: its
        :func:`node_key`, ``params``: its resolved params, when the caller has them)."""
        if key is None:
            key = node_key(sub, point)
        got = self._digests.get(key)
        if got is None:
            if params is None:
                params = sub.resolved_params(self.stub, point)
            got = self._digests[key] = params_digest(params)
        return got

    def seeds(self, sub: SubExperiment) -> tuple[int, ...]:
        return sub.seeds[:1] if self.stub else sub.seeds

    def _upstream(self, sub: SubExperiment, entry_of: EntryOf) -> dict[str, str]:
        deps = self._prereqs.get(sub.id)
        if deps is None:
            graph = self._graph
            if graph is None:
                graph = self._graph = graph_of(self.plan)
            deps = self._prereqs[sub.id] = graph.sub_prerequisites(sub.id)
        return {dep: upstream_token(entry_of(dep)) for dep in deps} if deps else {}

    def digest(self, sub: SubExperiment, point: SweepPoint | None, entry_of: EntryOf) -> str | None:
        """Only the fingerprint of :meth:`node` (what checking a stored result needs)."""
        if point is None:
            # A result without upstream whose fingerprint was worked out (when its item ran, or
            # when its results file was read): what _fingerprint answers again, without the four
            # calls on the way there (asked for every entry at every write of its file).
            got = self._fixed.get(sub.id)
            if got is not None:
                return got
        inputs = self.sub_inputs(sub)
        if inputs is None:
            return None
        return self._fingerprint(sub, point, inputs, self._upstream(sub, entry_of))

    def _fingerprint(
        self,
        sub: SubExperiment,
        point: SweepPoint | None,
        inputs: SubInputs,
        upstream: dict[str, str],
        key: str | None = None,
        digest: str | None = None,
    ) -> str:
        """``digest``: its params digest (:meth:`params_sha`), when the caller has it."""
        if key is None:
            key = node_key(sub, point)
        if upstream:
            if digest is None:
                digest = self.params_sha(sub, point, key)
            return node_fingerprint(inputs.digest, digest, point.key if point else None, upstream)
        # Without upstream a result's fingerprint is the same all session (its code and params
        # are read once): asked when the item runs and again when its results file is written.
        got = self._fixed.get(key)
        if got is None:
            if digest is None:
                digest = self.params_sha(sub, point, key)
            got = self._fixed[key] = node_fingerprint(inputs.digest, digest, point.key if point else None, {})
        return got

    def node(
        self,
        sub: SubExperiment,
        point: SweepPoint | None,
        entry_of: EntryOf,
        key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> NodeFingerprint | None:
        """The fingerprint the result of ``sub`` (at ``point``) has now; ``entry_of(sub_id)``
        gives the current entry of a sub-experiment it waits for.  None without a handler.
        ``key``: its :func:`node_key`, ``params``: its resolved params, when the caller has
        them (worked out once per item)."""
        inputs = self.sub_inputs(sub)
        if inputs is None:
            return None
        if key is None:
            key = node_key(sub, point)
        digest = self.params_sha(sub, point, key, params=params)
        upstream = self._upstream(sub, entry_of)
        fp = self._fingerprint(sub, point, inputs, upstream, key, digest)
        shown = inputs.inputs  # shared by the sub's results, never changed (provenance copies it)
        if upstream:
            shown = dict(shown)
            for dep, token in sorted(upstream.items()):
                shown[f"upstream:{dep}"] = token.removeprefix("content:")[:16]
        return NodeFingerprint(fp, shown, self.seeds(sub), digest, inputs.files, inputs.handler_file)


# --- why a result is stale ---------------------------------------------------------------------


def _flat(params: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(params, Mapping):
        for key, value in params.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping) and value:
                out.update(_flat(value, name + "."))
            else:
                out[name] = value
    return out


def _shown(value: Any) -> str:
    """A param's value as written in the plan (``3.0`` stays ``3.0``, a string is quoted)."""
    text = repr(value) if isinstance(value, (float, str)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def params_change(old: Any, new: Mapping[str, Any]) -> str:
    """``lr 0.01 → 0.1, epochs added (5)`` from stored (redacted) params to the current ones."""
    before, after = _flat(old), _flat(redact_params(dict(new)))
    parts: list[str] = []
    for key in dict.fromkeys([*after, *before]):
        if key not in before:
            parts.append(f"{key} added ({_shown(after[key])})")
        elif key not in after:
            parts.append(f"{key} removed (was {_shown(before[key])})")
        elif before[key] != after[key] or type(before[key]) is not type(after[key]):
            if before[key] == "***" or after[key] == "***":
                parts.append(f"{key} changed")
            else:
                parts.append(f"{key} {_shown(before[key])} → {_shown(after[key])}")
    if not parts:
        secret = any(v == "***" for v in after.values())
        return "params changed: a secret's value (not shown)" if secret else "params changed"
    if len(parts) > 4:
        parts = [*parts[:4], f"and {len(parts) - 4} more"]
    return "params changed: " + ", ".join(parts)


def _seeds_text(seeds: Sequence[int]) -> str:
    if len(seeds) > 3 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    return "[" + ", ".join(str(s) for s in seeds) + "]"


# --- the reconciler --------------------------------------------------------------------------


class PlanReconciler:
    """The store's :class:`~pytest_mlexp.store.Reconciler` for one plan (see the module
    docstring).  ``doc_of(experiment_id)`` gives another experiment's current document (for the
    fingerprints of what a result waits for); ``plan_root`` is where artifact paths start."""

    def __init__(
        self,
        fingerprints: PlanFingerprints,
        *,
        doc_of: Callable[[str], Mapping[str, Any]],
    ) -> None:
        self.fps = fingerprints
        self.plan = fingerprints.plan
        self.doc_of = doc_of
        self.restores = 0  # entries brought back, for tests

    # --- keys ---------------------------------------------------------------------------------

    def _node(self, key: str) -> tuple[SubExperiment, SweepPoint | None] | None:
        sub_id, _, rest = key.partition("[")
        if not self.plan.has_sub(sub_id):
            return None
        sub = self.plan.sub(sub_id)
        if not rest:
            return (sub, None) if not sub.sweep else None
        point = self.fps.point(sub, rest[:-1])
        return (sub, point) if point is not None else None

    def _entry_of(self, doc: Mapping[str, Any], experiment_id: str) -> EntryOf:
        def entry_of(sub_id: str) -> Mapping[str, Any] | None:
            if not self.plan.has_sub(sub_id):
                return None
            other = self.plan.sub(sub_id).experiment_id
            source = doc if other == experiment_id else self.doc_of(other)
            found = (source.get("sub_experiments") or {}).get(sub_id)
            return found if isinstance(found, Mapping) else None

        return entry_of

    # --- Reconciler ---------------------------------------------------------------------------

    def stale_reason(self, key: str, entry: Mapping[str, Any]) -> str | None:
        node = self._node(key)
        if node is None:
            return "not in plan"
        sub, point = node
        stored = _prov(entry, "params_sha256")
        if stored is not None and stored != self.fps.params_sha(sub, point):
            params, _ = self.fps.params(sub, point)  # (only when they changed)
            return params_change(entry.get("params"), params)
        seeds = seeds_of(entry)
        want = self.fps.seeds(sub)
        if seeds is not None and tuple(seeds) != tuple(want):
            return f"seeds changed: {_seeds_text(seeds)} → {_seeds_text(want)}"
        return None

    def _current(self, key: str, doc: Mapping[str, Any]) -> NodeFingerprint | None:
        node = self._node(key)
        if node is None:
            return None
        sub, point = node
        return self.fps.node(sub, point, self._entry_of(doc, sub.experiment_id))

    def restorable(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
        if candidate.get("status") in (None, "blocked"):
            return False
        fp = fingerprint_of(candidate)  # (its version is hashed into it: equal means same version)
        if fp is None:
            return False
        if self.stale_reason(key, candidate) is not None:
            return False
        node = self._node(key)
        if node is None:
            return False
        sub, point = node
        return self.fps.digest(sub, point, self._entry_of(doc, sub.experiment_id)) == fp

    def restored(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
        self.restores += 1
        if isinstance(candidate.get("provenance"), Mapping):
            return unstale(candidate)
        # A history item: rebuild the entry it was (its criteria judged again by today's plan).
        entry: dict[str, Any] = {}
        for name in ("status", "finding", "metrics", "per_seed", "params", "artifacts", "duration_s"):
            if name in candidate:
                entry[name] = candidate[name]
        entry.setdefault("params", {})  # history items leave empty params and artifacts out
        entry.setdefault("artifacts", [])
        if isinstance(candidate.get("tracking"), Mapping):
            entry["wandb"] = dict(candidate["tracking"])
        prov = {
            k: candidate[k] for k in ("git_commit", "params_sha256", "fingerprint", "seeds") if k in candidate
        }
        prov["fingerprint_version"] = FINGERPRINT_VERSION  # it matched today's fingerprint
        entry["provenance"] = prov
        entry["started_at"] = candidate.get("started_at") or candidate.get("finished_at")
        entry["finished_at"] = candidate.get("finished_at")
        node = self._node(key)
        if node is not None and entry.get("status") in _RAN:
            sub = node[0]
            entry.update(
                rejudge(self.plan, sub, entry, self._entry_of(doc, sub.experiment_id), stub=self.fps.stub)
            )
        return entry

    def reconcile(self, experiment_id: str, doc: dict[str, Any]) -> None:
        if not self.plan.has_experiment(experiment_id):
            return
        subs: dict[str, Any] = doc["sub_experiments"]
        stale: dict[str, Any] = doc["stale"]
        # Every sub-experiment here is this experiment's: one reader of its entries for all.
        entry_of = self._entry_of(doc, experiment_id)
        for sub_id in graph_of(self.plan).sub_order(experiment_id):
            sub = self.plan.sub(sub_id)
            if not sub.sweep:
                current = subs.get(sub_id)
                # (Most sub-experiments have nothing under stale: asked first, it spares them the
                # call asking whether theirs is a result.)
                if sub_id in stale and not _is_result(current):
                    self._restore_into(doc, sub_id, sub_id, None)
                    current = subs.get(sub_id)
                # (its node is known: not looked up again from its key, once per entry)
                self._annotate(doc, sub_id, current, node_of=(sub, None), entry_of=entry_of)
                continue
            restored = False
            for point in self.fps.points(sub):
                node = f"{sub_id}[{point.key}]"
                holder = subs.get(sub_id)
                points = holder.get("points") if isinstance(holder, dict) else None
                current = points.get(point.key) if isinstance(points, dict) else None
                if (
                    not _is_result(current)
                    and node in stale
                    and self._restore_into(doc, node, sub_id, point.key)
                ):
                    restored = True
            holder = subs.get(sub_id)
            if not isinstance(holder, dict) or not isinstance(holder.get("points"), dict):
                continue
            if restored or ("status" not in holder and holder["points"]):
                self._summarize(doc, sub, holder)
                holder = subs[sub_id]
            stored: dict[str, Any] = holder["points"]
            outdated = 0
            why = ""
            for point_key in list(stored):
                node = f"{sub_id}[{point_key}]"
                got = self._annotate(doc, node, stored.get(point_key), stored)
                if got:
                    outdated += 1
                    why = why or got
            label = f"{outdated} of {len(stored)} points outdated: {why}" if outdated else None
            if holder.get(OUTDATED) != label:
                holder = subs[sub_id] = {k: v for k, v in holder.items() if k != OUTDATED}
                if label:
                    holder[OUTDATED] = label

    def _restore_into(self, doc: dict[str, Any], node: str, sub_id: str, point: str | None) -> bool:
        """Bring back the newest stale result of ``node`` that the plan asks for again."""
        stale: dict[str, Any] = doc["stale"]
        holder = stale.get(node)
        if not isinstance(holder, dict):
            return False
        candidates: list[tuple[str, int, Mapping[str, Any]]] = [
            (str(holder.get("finished_at") or ""), -1, holder)
        ]
        history = holder.get("history")
        if isinstance(history, list):
            for i, item in enumerate(history):
                if isinstance(item, Mapping):
                    candidates.append((str(item.get("finished_at") or ""), i, item))
        candidates.sort(key=lambda c: c[0], reverse=True)
        for _, index, cand in candidates:
            if not self.restorable(node, cand, doc):
                continue
            entry = self.restored(node, cand, doc)
            if index == -1:
                del stale[node]
            else:  # the item leaves the stale entry's history; the stale entry stays
                rest = [h for j, h in enumerate(history or []) if j != index]
                stale[node] = {**holder, "history": rest[:HISTORY_LIMIT]}
                if not rest:
                    del stale[node]["history"]
            subs: dict[str, Any] = doc["sub_experiments"]
            if point is None:
                subs[sub_id] = entry
            else:
                from .resultsdoc import points_in

                points_in(subs, sub_id)[point] = entry
            return True
        return False

    def _summarize(self, doc: dict[str, Any], sub: SubExperiment, holder: dict[str, Any]) -> None:
        from .verdict import lookup_for, summarize_sweep

        entry_of = self._entry_of(doc, sub.experiment_id)
        lookup = lookup_for(self.plan, entry_of) if sub.implicit_dependencies else None
        points = holder.get("points") or {}
        summary = summarize_sweep(sub, points, stub=self.fps.stub, lookup=lookup)
        doc["sub_experiments"][sub.id] = {
            **{k: v for k, v in summary.items() if k != "points"},
            "points": points,
        }

    def _annotate(
        self,
        doc: dict[str, Any],
        node: str,
        entry: Any,
        container: dict[str, Any] | None = None,
        node_of: tuple[SubExperiment, SweepPoint | None] | None = None,
        entry_of: EntryOf | None = None,
    ) -> str | None:
        """Mark (or unmark) ``outdated`` and ``artifacts_missing`` on a current entry; returns why
        it is outdated.  ``node_of``: what ``_node(node)`` gives, when the caller knows it;
        ``entry_of``: ``_entry_of(doc, its experiment)``, when the caller made it already."""
        if not _is_result(entry) or "points" in entry:
            return None
        fp = fingerprint_of(entry)
        why: str | None = None
        found = (node_of or self._node(node)) if fp is not None else None
        now = None
        if found is not None:
            sub, point = found
            now = self.fps.digest(sub, point, entry_of or self._entry_of(doc, sub.experiment_id))
        if now is not None and now != fp:
            current = self._current(node, doc)
            if current is not None:
                if _prov(entry, "fingerprint_version") != FINGERPRINT_VERSION:
                    why = "fingerprinted by another pytest-mlexp version"
                else:
                    why = explain_change(_prov(entry, "inputs"), current.inputs, current.handler_file)
        artifacts = entry.get("artifacts")
        missing = (_missing_artifacts(self.plan.root, artifacts) or None) if artifacts else None
        before = entry.get("artifacts_missing") or None
        if entry.get(OUTDATED) == why and before == missing:
            return why  # marked as it is (most entries): nothing to change
        changes: dict[str, Any] = {}
        if entry.get(OUTDATED) != why:
            changes[OUTDATED] = why
        if before != missing:
            changes["artifacts_missing"] = missing
        new = {k: v for k, v in entry.items() if k not in changes or changes[k] is not None}
        new.update({k: v for k, v in changes.items() if v is not None})
        if container is not None:
            container[node.partition("[")[2][:-1]] = new
        else:
            doc["sub_experiments"][node] = new
        return why


def rejudge(
    plan: Plan, sub: SubExperiment, entry: Mapping[str, Any], entry_of: EntryOf, *, stub: bool
) -> dict[str, Any]:
    """Status, criteria and seed statistics of a stored result, judged by today's plan."""
    from .stats import describe
    from .verdict import judge_sub, lookup_for

    out: dict[str, Any] = {}
    per_seed = entry.get("per_seed")
    if isinstance(per_seed, Mapping) and per_seed and sub.seeds_given and not stub:
        stats: dict[str, Any] = {}
        names = list(dict.fromkeys(n for m in per_seed.values() if isinstance(m, Mapping) for n in m))
        for name in names:
            values = [m.get(name) if isinstance(m, Mapping) else None for m in per_seed.values()]
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                stats[name] = describe([float(v) for v in values]).to_dict()  # type: ignore[arg-type]
        out["stats"] = stats
    lookup = lookup_for(plan, entry_of) if sub.implicit_dependencies else None
    judged = judge_sub(sub, entry, stub=stub, lookup=lookup)
    out["criteria"] = {j.metric: j.to_dict() for j in judged}
    if sub.success_criteria:  # without criteria a stored status stands (as in the verdict)
        out["status"] = "passed" if all(j.passed for j in judged) else "failed"
    return out


def _is_result(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("status") not in (None, "blocked")


def _missing_artifacts(plan_root: Path, artifacts: Any) -> list[str]:
    if not isinstance(artifacts, list) or not artifacts:
        return []
    out = []
    for art in artifacts:
        path = str(art.get("path", "")) if isinstance(art, Mapping) else str(art)
        if not path or "://" in path:
            continue  # a volume or a URL: nothing to check here
        if not os.path.exists(plan_root / path):
            out.append(path)
    return out


# --- reuse -----------------------------------------------------------------------------------


@struct(frozen=True)
class _Source:
    """A stored result seeds are reused from: a current or stale entry, or a history item."""

    entry: Mapping[str, Any]
    finished_at: str
    seeds: tuple[int, ...]
    imported: bool = False


@struct
class ReusePlan:
    """Which seeds of an item stored results hold (``sources``: seed -> where from); the rest run."""

    fingerprint: NodeFingerprint | None
    sources: dict[int, _Source] = field(default_factory=dict)

    def to_run(self, seeds: Sequence[int]) -> list[int]:
        return [s for s in seeds if s not in self.sources]

    @property
    def imported(self) -> bool:
        return any(s.imported for s in self.sources.values())

    @property
    def date(self) -> str:
        """When the newest result reused finished (``2026-01-31T12:00:00Z``)."""
        return max((s.finished_at for s in self.sources.values()), default="")

    def single_source(self) -> Mapping[str, Any] | None:
        """The one stored result every seed comes from, if there is one."""
        entries = {id(s.entry): s.entry for s in self.sources.values()}
        return next(iter(entries.values())) if len(entries) == 1 else None


def _candidates(found: Sequence[Mapping[str, Any] | None]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for entry in found:
        if not isinstance(entry, Mapping):
            continue
        out.append(entry)
        history = entry.get("history")
        if isinstance(history, list):
            out.extend(h for h in history if isinstance(h, Mapping))
    return out


def _seed_artifacts(entry: Mapping[str, Any], seed: int, multi: bool) -> list[str]:
    arts = [
        str(a.get("path", "")) if isinstance(a, Mapping) else str(a) for a in entry.get("artifacts") or ()
    ]
    if not multi:
        return [a for a in arts if a]
    mark = f"/seed{seed}/"
    return [a for a in arts if mark in a.replace("\\", "/")]


def plan_reuse(
    fp: NodeFingerprint | None,
    seeds: Sequence[int],
    *,
    current: Mapping[str, Any] | None,
    stale: Mapping[str, Any] | None,
    plan_root: Path,
    read_by_dependents: bool,
    rejudged: Callable[[Mapping[str, Any]], str] | None = None,
) -> ReusePlan:
    """Which of ``seeds`` stored results hold: the newest result (current, stale or in a
    history) with the same fingerprint and that seed, and that re-judges as passed or failed
    (never an error, an infrastructure error or a blocked placeholder).  An imported result is
    reused whole while it is the current one.  A result whose files are gone is not reused when
    a dependent reads them (``read_by_dependents``).  ``rejudged(entry)``: its status judged by
    today's plan (a stored ``passed`` that now lacks a metric the plan needs is a wiring
    ``error``, never reused); without it, the stored status."""
    out = ReusePlan(fp)

    def ran(entry: Mapping[str, Any]) -> bool:
        if entry.get("status") not in _RAN:
            return False
        return rejudged is None or rejudged(entry) in _RAN

    if isinstance(current, Mapping) and current.get("imported") and ran(current):
        when = str(current.get("finished_at") or (current.get("imported") or {}).get("started_at") or "")
        source = _Source(current, when, tuple(seeds), imported=True)
        return ReusePlan(fp, {s: source for s in seeds})
    if fp is None:
        return out
    sources: list[_Source] = []
    for cand in _candidates([current, stale]):
        if fingerprint_of(cand) != fp.fingerprint:  # (the version is hashed into it)
            continue
        if not ran(cand):
            continue
        held = seeds_of(cand)
        if not held:
            continue
        sources.append(_Source(cand, str(cand.get("finished_at") or ""), held))
    sources.sort(key=lambda s: s.finished_at, reverse=True)
    for seed in seeds:
        for source in sources:
            if seed not in source.seeds:
                continue
            if read_by_dependents and _missing_artifacts(
                plan_root, _seed_artifacts(source.entry, seed, len(source.seeds) > 1)
            ):
                continue
            out.sources[seed] = source
            break
    return out


def _seed_metrics(entry: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    per_seed = entry.get("per_seed")
    if isinstance(per_seed, Mapping) and per_seed:
        values = per_seed.get(seed, per_seed.get(str(seed)))
        return dict(values) if isinstance(values, Mapping) else None
    metrics = entry.get("metrics")
    return dict(metrics) if isinstance(metrics, Mapping) else None


def _seed_tracking(entry: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    link = entry.get("tracking") or entry.get("wandb")
    if not isinstance(link, Mapping):
        return None
    runs = link.get("runs")
    if isinstance(runs, list) and index < len(runs) and isinstance(runs[index], Mapping):
        return dict(runs[index])
    return {k: v for k, v in link.items() if k != "runs"} if index == 0 else None


def reused_outcomes(plan: ReusePlan) -> list[SeedOutcome]:
    """The reused seeds as outcomes, as if they had just run (their original dates and times)."""
    out = []
    for seed, source in sorted(plan.sources.items()):
        entry = source.entry
        metrics = _seed_metrics(entry, seed)
        if metrics is None:
            continue
        multi = len(source.seeds) > 1
        index = source.seeds.index(seed) if seed in source.seeds else 0
        duration = entry.get("duration_s")
        per = (
            float(duration) / len(source.seeds)
            if isinstance(duration, (int, float)) and source.seeds
            else 0.0
        )
        out.append(
            SeedOutcome(
                seed=seed,
                status="ok",
                result={
                    "metrics": metrics,
                    "finding": entry.get("finding"),
                    "artifacts": _seed_artifacts(entry, seed, multi),
                },
                started_at=str(entry.get("started_at") or source.finished_at),
                finished_at=source.finished_at,
                duration_s=round(per, 4),
                tracking=_seed_tracking(entry, index),
            )
        )
    return out
