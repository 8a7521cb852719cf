"""What waits for what in a plan: the one prerequisite graph.

Four places ask "what does X wait for": the plan's cycle check (``plan.py``), the run order
(``selection.py``, ``items.py``), the xdist scheduler's components (``xdist_scheduler.py``) and
dispatch ahead (``dispatch.py``).  They all read this graph, so a new kind of link (say, a
criterion that compares against another sub-experiment's metric: ``implicit_dependencies``)
is learnt by all four at once.

The links, each with the plan line that made it (for messages):

* experiment ``dependencies``: the experiment waits for (and is blocked by) the other one, or
  by its replacement when another experiment ``replaces`` it;
* gates: an experiment a gate unlocks (by id or by phase) waits for every member of the gate,
  itself included, so a gate that unlocks one of its own members is a cycle;
* sub-experiment ``dependencies`` and ``implicit_dependencies``: the sub-experiment waits for
  the other one, and so its experiment waits for the other's experiment (order only).

Pure: model objects in, ids out; no pytest, no I/O.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from .idcache import IdentityCache
from .model import decider, replacements
from .structs import struct

if TYPE_CHECKING:
    from .model import Experiment, Gate, Plan

__all__ = ["Cycle", "Link", "PrerequisiteGraph", "graph_of"]

LinkKind = Literal["dependency", "gate", "sub"]


@struct(frozen=True)
class Link:
    """``waiter`` waits for ``target`` because of the plan at ``line`` (``why`` says how)."""

    waiter: str
    target: str
    kind: LinkKind  # what made the link: an experiment dependency, a gate, a sub-level link
    line: int
    why: str
    gate: str | None = None  # the gate that made a ``gate`` link


@struct(frozen=True)
class Cycle:
    """A dependency cycle: ``path`` is ``(a, b, ..., a)``, ``links`` the link of each step."""

    kind: Literal["experiments", "sub-experiments"]
    path: tuple[str, ...]
    links: tuple[Link, ...]

    @property
    def line(self) -> int:
        """The plan line to report: where the first link of the cycle was written."""
        return self.links[0].line

    @property
    def message(self) -> str:
        first = self.links[0]
        if len(self.links) == 1 and first.kind == "gate":
            return (
                f"gate {first.gate} unlocks {first.waiter}, one of the experiments it waits for: "
                f"{first.waiter} could never run"
            )
        return f"dependency cycle among {self.kind}: {' -> '.join(self.path)}"

    @property
    def fix(self) -> str:
        first = self.links[0]
        if len(self.links) == 1 and first.kind == "gate":
            return f"unlock a later phase (or other experiments), or take {first.waiter} out of the gate"
        return "remove one of these links: " + "; ".join(link.why for link in self.links)


# (kind, owner id, named id) -> the line that names it; plan.py knows each entry's own line.
Lines = Mapping[tuple[str, str, str], int]


class PrerequisiteGraph:
    """Links between the experiments and sub-experiments of one plan (see the module docstring).

    ``lines`` gives the plan line of a link, keyed ``("experiment", owner, dependency)``,
    ``("sub", owner, dependency)``; a link without one gets the line of its owner (or gate).
    """

    def __init__(self, experiments: Sequence[Experiment], gates: Sequence[Gate], lines: Lines | None = None):
        lines = lines or {}
        self.experiment_ids: tuple[str, ...] = tuple(e.id for e in experiments)
        self._exp_index = {e: i for i, e in enumerate(self.experiment_ids)}
        self._subs_of: dict[str, tuple[str, ...]] = {
            e.id: tuple(s.id for s in e.sub_experiments) for e in experiments
        }
        exp_of = {s.id: e.id for e in experiments for s in e.sub_experiments}
        self._exp_of = exp_of
        # waiter -> {target: first link}; dicts keep the plan order of first mention
        self.experiment_links: dict[str, dict[str, Link]] = {e: {} for e in self.experiment_ids}
        self.sub_links: dict[str, dict[str, Link]] = {s: {} for s in exp_of}

        def add(table: dict[str, dict[str, Link]], link: Link) -> None:
            # The first link between two nodes is kept, except that a link that blocks (a
            # dependency, a gate) replaces one that only orders (a sub-level link).
            links = table.setdefault(link.waiter, {})
            known = links.get(link.target)
            if known is None or (known.kind == "sub" and link.kind != "sub"):
                links[link.target] = link

        by_phase: dict[int, list[str]] = {}
        replaced_by = replacements(experiments)
        for exp in experiments:
            if exp.phase is not None:
                by_phase.setdefault(exp.phase, []).append(exp.id)
            for dep in exp.dependencies:
                line = lines.get(("experiment", exp.id, dep), exp.loc.line)
                # A dependency on a replaced experiment waits for its replacement (SPEC section
                # 10), unless that is the experiment itself (it depends on what it replaces).
                target = decider(dep, replaced_by)
                if target == exp.id:
                    target = dep
                why = f"{exp.id} depends on {dep} (line {line})"
                if target != dep:
                    why += f", which {target} replaces"
                add(self.experiment_links, Link(exp.id, target, "dependency", line, why))
            for sub in exp.sub_experiments:
                for names, verb in (
                    (sub.dependencies, "depends on"),
                    (sub.implicit_dependencies, "compares with"),
                ):
                    for dep in names:
                        if dep not in exp_of:
                            continue  # an unknown id: plan.py reports it (with a did-you-mean) first
                        line = lines.get(("sub", sub.id, dep), sub.loc.line)
                        why = f"{sub.id} {verb} {dep} (line {line})"
                        add(self.sub_links, Link(sub.id, dep, "sub", line, why))
                        other = exp_of[dep]
                        if other != exp.id:
                            add(
                                self.experiment_links,
                                Link(exp.id, other, "sub", line, f"{exp.id} waits for {other}: {why}"),
                            )
        for gate in gates:
            u = gate.unlocks
            targets: Iterable[str] = ()
            if u.kind == "ids":
                targets = u.ids
            elif u.kind == "phase" and u.phase is not None:
                targets = by_phase.get(u.phase, ())
            for target in targets:
                for member in gate.experiments:
                    why = f"gate {gate.id} (line {gate.loc.line}) unlocks {target} and waits for {member}"
                    add(self.experiment_links, Link(target, member, "gate", gate.loc.line, why, gate.id))
        self._order: tuple[str, ...] | None = None
        self._sub_orders: dict[str, tuple[str, ...]] = {}
        self._ranks: tuple[dict[str, int], dict[str, int]] | None = None

    # --- what waits for what ----------------------------------------------------------------

    def blocking_experiments(self, experiment_id: str) -> tuple[str, ...]:
        """Other experiments whose verdicts can hold ``experiment_id`` back: its dependencies and
        the members of the gates that unlock it (not experiments its sub-experiments wait for:
        those hold back only those sub-experiments)."""
        links = self.experiment_links.get(experiment_id, {})
        return tuple(t for t, link in links.items() if link.kind != "sub" and t != experiment_id)

    def sub_prerequisites(self, sub_id: str) -> tuple[str, ...]:
        """Sub-experiments ``sub_id`` waits for: its ``dependencies`` and ``implicit_dependencies``."""
        return tuple(self.sub_links.get(sub_id, {}))

    def experiment_prerequisites(self, experiment_id: str) -> tuple[str, ...]:
        """Every other experiment ``experiment_id`` comes after (dependencies, gates, and the
        experiments its sub-experiments wait for)."""
        return tuple(t for t in self.experiment_links.get(experiment_id, {}) if t != experiment_id)

    # --- order --------------------------------------------------------------------------------

    def experiment_order(self) -> tuple[str, ...]:
        """Experiment ids in a topological order, stable in plan order (computed once)."""
        if self._order is None:
            self._order = _stable_topological(
                self.experiment_ids, {e: self.experiment_prerequisites(e) for e in self.experiment_ids}
            )
        return self._order

    def sub_order(self, experiment_id: str) -> tuple[str, ...]:
        """An experiment's sub-experiment ids: those they wait for first, else plan order."""
        got = self._sub_orders.get(experiment_id)
        if got is None:
            own = self._subs_of.get(experiment_id, ())
            mine = set(own)
            needs = {s: tuple(d for d in self.sub_prerequisites(s) if d in mine) for s in own}
            got = self._sub_orders[experiment_id] = _stable_topological(own, needs)
        return got

    def ranks(self) -> tuple[dict[str, int], dict[str, int]]:
        """(experiment id -> position in experiment_order, sub id -> position in its sub_order)."""
        if self._ranks is None:
            exp_rank: dict[str, int] = {}
            sub_rank: dict[str, int] = {}
            for i, exp_id in enumerate(self.experiment_order()):
                exp_rank[exp_id] = i
                for j, sub_id in enumerate(self.sub_order(exp_id)):
                    sub_rank[sub_id] = j
            self._ranks = (exp_rank, sub_rank)
        return self._ranks

    def components(self) -> dict[str, str]:
        """Experiment id -> a representative of its component: experiments linked in any way
        (either direction) share one, so one xdist worker can run them in order."""
        parent = {e: e for e in self.experiment_ids}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for waiter, links in self.experiment_links.items():
            for target in links:
                if waiter in parent and target in parent:
                    parent[find(waiter)] = find(target)
        return {e: find(e) for e in parent}

    # --- cycles -------------------------------------------------------------------------------

    def cycle(self) -> Cycle | None:
        """The first cycle met in plan order: among sub-experiments first, then experiments."""
        sub_ids = [s for e in self.experiment_ids for s in self._subs_of[e]]
        found = _find_cycle(sub_ids, self.sub_links)
        if found is not None:
            return Cycle("sub-experiments", *found)
        found = _find_cycle(self.experiment_ids, self.experiment_links)
        if found is not None:
            return Cycle("experiments", *found)
        return None


def _stable_topological(ids: Sequence[str], needs: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """``ids`` in an order where each comes after what it needs, else in the given order (the
    first ready id each time).  What a cycle leaves over goes last, in the given order."""
    index = {x: i for i, x in enumerate(ids)}
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for x in ids:
        wanted = {d for d in needs.get(x, ()) if d in index and d != x}
        waiting[x] = len(wanted)
        for d in wanted:
            dependents.setdefault(d, []).append(x)
    ready = [index[x] for x in ids if waiting[x] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        x = ids[heapq.heappop(ready)]
        out.append(x)
        for y in dependents.get(x, ()):
            waiting[y] -= 1
            if waiting[y] == 0:
                heapq.heappush(ready, index[y])
    if len(out) < len(ids):  # a cycle: the plan loader rejects these; this guards direct construction
        placed = set(out)
        out.extend(x for x in ids if x not in placed)
    return tuple(out)


def _successors(node: str, edges: Mapping[str, Mapping[str, Link]]) -> list[str]:
    """What ``node`` links to, reversed so that pop() visits them in plan order; a link to
    itself is visited last, so a longer cycle through it is named with all its links."""
    targets = [t for t in edges.get(node, {}) if t != node]
    if node in edges.get(node, {}):
        targets.append(node)
    targets.reverse()
    return targets


def _find_cycle(
    nodes: Iterable[str], edges: Mapping[str, Mapping[str, Link]]
) -> tuple[tuple[str, ...], tuple[Link, ...]] | None:
    """The first cycle met by a depth-first walk in plan order; linear time."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[str, list[str]]] = [(root, _successors(root, edges))]
        path = [root]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            if todo:
                nxt = todo.pop()
                st = state.get(nxt)
                if st == 1:
                    cycle = (*path[path.index(nxt) :], nxt)
                    links = tuple(edges[a][b] for a, b in itertools.pairwise(cycle))
                    return cycle, links
                if st is None:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, _successors(nxt, edges)))
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


_GRAPHS: IdentityCache[Plan, PrerequisiteGraph] = IdentityCache()


def graph_of(plan: Plan) -> PrerequisiteGraph:
    """The plan's graph, built once per plan object (a plan is frozen), kept while it lives."""
    return _GRAPHS.get(plan, _build_graph)


def _build_graph(plan: Plan) -> PrerequisiteGraph:
    return PrerequisiteGraph(plan.experiments, plan.gates)  # never the plan itself (idcache)
