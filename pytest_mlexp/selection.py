"""Which experiment items run, and in what order (SPEC section 5).

``resolve`` is pure; the rest is collection glue called from ``hooks.py``.  The order is the
plan's prerequisite graph (``graph.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .model import Plan
    from .session import MlexpSession, PlanContext


class SelectionError(Exception):
    pass


class Selection:
    """What ``--experiment`` selected in one plan.

    A plain class, not a dataclass: building a dataclass costs about a millisecond at import,
    and this module is imported by every run that collects a plan.
    """

    __slots__ = ("experiments", "subs", "unmatched")

    def __init__(
        self,
        experiments: set[str] | None = None,
        subs: set[str] | None = None,
        unmatched: list[str] | None = None,
    ) -> None:
        self.experiments: set[str] = set() if experiments is None else experiments  # every item of these
        self.subs: set[str] = set() if subs is None else subs  # just these (+ their assessment)
        self.unmatched: list[str] = [] if unmatched is None else unmatched

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selection):
            return NotImplemented
        return (self.experiments, self.subs, self.unmatched) == (
            other.experiments,
            other.subs,
            other.unmatched,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"Selection(experiments={self.experiments!r}, subs={self.subs!r}, unmatched={self.unmatched!r})"
        )


def inactive_experiments(plan: Plan) -> set[str]:
    """Retired experiments (SPEC section 10): left out of every implicit selection."""
    return set(retired_experiments(plan))


def retired_experiments(plan: Plan) -> dict[str, str]:
    """Experiment id -> why it is left out of ``all``, a named plan file and
    ``mlexp_select_by_default`` (``replaced by p2-hybrid-encoder``, ``status: deferred``)."""
    out: dict[str, str] = {}
    for exp in plan.experiments:
        why = plan.retirement(exp.id)
        if why is not None:
            out[exp.id] = why
    return out


def short_id(experiment_id: str) -> str:
    """An experiment's short id: its id up to the first ``-`` (``p2-hybrid-encoder`` -> ``p2``)."""
    return experiment_id.split("-", 1)[0]


def in_group(value: str, sub_id: str) -> bool:
    """Whether ``sub_id`` belongs to the group ``value`` names: the value followed by letters
    only (``e3_8`` -> ``e3_8a``), or by ``_``, ``.`` or ``-`` and anything (``e3_8_x``); never
    by a digit (``e3_80``)."""
    if not sub_id.startswith(value) or len(sub_id) == len(value):
        return False
    rest = sub_id[len(value) :]
    return rest[0] in "_.-" or (rest.isascii() and rest.isalpha())


def resolve(plan: Plan, values: Sequence[str]) -> Selection:
    """Resolve ``--experiment`` values against one plan; values it doesn't know go to ``unmatched``.

    A value is, in this order: ``all`` (every experiment that is not retired), an experiment id,
    a sub-experiment id, an experiment's short id (``p2`` for ``p2-hybrid-encoder``, when one
    experiment has it), a prefix ``X`` such that every sub-experiment id of exactly one
    experiment starts with ``X_``, or a group of sub-experiments within one experiment
    (:func:`in_group`; they run with their experiment's assessment).
    """
    sel = Selection()
    for value in values:
        if value == "all":
            inactive = inactive_experiments(plan)
            sel.experiments.update(e.id for e in plan.experiments if e.id not in inactive)
        elif plan.has_experiment(value):
            sel.experiments.add(value)
        elif plan.has_sub(value):
            sel.subs.add(value)
        else:
            _resolve_pattern(plan, value, sel)
    return sel


def _resolve_pattern(plan: Plan, value: str, sel: Selection) -> None:
    def several(what: str, ids: Iterable[str]) -> SelectionError:
        return SelectionError(
            f"--experiment {value} matches {what} of several experiments: {', '.join(ids)}; name one of them"
        )

    shorts = [e.id for e in plan.experiments if "-" in e.id and short_id(e.id) == value]
    if len(shorts) == 1:
        sel.experiments.add(shorts[0])
        return
    if len(shorts) > 1:
        raise several("the short id", shorts)
    matches = [
        e.id
        for e in plan.experiments
        if e.sub_experiments and all(s.id.startswith(value + "_") for s in e.sub_experiments)
    ]
    if len(matches) == 1:
        sel.experiments.add(matches[0])
        return
    if len(matches) > 1:
        raise several("the sub-experiments", matches)
    group = {e.id: [s.id for s in e.sub_experiments if in_group(value, s.id)] for e in plan.experiments}
    owners = [e for e, ids in group.items() if ids]
    if len(owners) == 1:
        sel.subs.update(group[owners[0]])
    elif len(owners) > 1:
        raise several("a group of sub-experiments", owners)
    else:
        sel.unmatched.append(value)


def candidates(plans: Iterable[Plan]) -> str:
    ids = [e.id for p in plans for e in p.experiments]
    return ", ".join(ids) if ids else "(no experiments found)"


def unmatched_error(unmatched: Sequence[str], plans: Iterable[Plan]) -> pytest.UsageError:
    """The usage error for ``--experiment`` values that match nothing: a did-you-mean (over
    ids and short ids) before the candidates."""
    from .textutil import closest

    plans = list(plans)
    ids = [e.id for plan in plans for e in plan.experiments]
    ids += [short_id(e.id) for plan in plans for e in plan.experiments if "-" in e.id]
    ids += [s.id for plan in plans for e in plan.experiments for s in e.sub_experiments]
    guesses = [g for g in (closest(v, ids, short=4) for v in unmatched) if g is not None]
    hint = f" (did you mean {' or '.join(dict.fromkeys(guesses))}?)" if guesses else ""
    return pytest.UsageError(
        f"--experiment {', '.join(unmatched)} matches no experiment or sub-experiment{hint}; "
        f"candidates: {candidates(plans)}"
    )


def check_experiment_args(state: MlexpSession, config: pytest.Config) -> None:
    """Before collection, on the process that will not collect (an xdist controller):
    ``--experiment`` values that match nothing in the configured plan are a usage error now,
    before any worker starts.  Elsewhere the check after collection decides, over every plan
    collected, and raises before anything is reported as collected (``_defer``)."""
    from .model import PlanError

    path = state.plan_path
    if not path.is_file():
        return
    invocation = Path(config.invocation_params.dir)
    for arg in config.args:
        named = Path(arg.split("::")[0])
        named = named if named.is_absolute() else invocation / named
        if named.suffix in (".yaml", ".yml") and named.resolve() != path:
            return  # another plan may hold them
    try:
        plan = state.context_for(path).plan
    except PlanError:
        return  # collection reports it, naming file and line
    try:
        sel = resolve(plan, state.experiment_args)
    except SelectionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if sel.unmatched:
        raise unmatched_error(sel.unmatched, [plan])


def inject_plan(state: MlexpSession, session: pytest.Session, items: list[pytest.Item]) -> None:
    """Collect the configured plan even when it lies outside testpaths or the given paths."""
    from .items import PlanFile

    path = state.plan_path
    if not path.is_file() or path in state.collected:
        return
    if state.named_plans and path not in state.named_plans:
        return  # plan files were named on the command line: only those are collected
    node = PlanFile.from_parent(session, path=path)
    items.extend(session.genitems(node))


class _Paths:
    """Per-file lookups for a pass over many items: every item of a plan shares its file, so
    resolving the path (a few ``lstat`` calls) and finding its context happen once per file,
    not once per item (a 10,000-item plan made that most of the cost of ordering)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state
        self._resolved: dict[Any, Path] = {}
        self._contexts: dict[Any, PlanContext] = {}
        self._ranks: dict[Any, tuple[dict[str, int], dict[str, int]]] = {}

    def resolved(self, item: pytest.Item) -> Path:
        got = self._resolved.get(item.path)
        if got is None:
            got = self._resolved[item.path] = Path(item.path).resolve()
        return got

    def context(self, item: pytest.Item) -> PlanContext:
        got = self._contexts.get(item.path)
        if got is None:
            got = self._contexts[item.path] = self.state.context_for(item.path)
        return got

    def ranks(self, item: pytest.Item) -> tuple[dict[str, int], dict[str, int]]:
        """Positions of experiments and sub-experiments in the plan's run order (graph.py)."""
        got = self._ranks.get(item.path)
        if got is None:
            from .graph import graph_of

            got = self._ranks[item.path] = graph_of(self.context(item).plan).ranks()
        return got


def select_and_order(state: MlexpSession, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not state.selected and not state.collected:
        return  # no plan was collected, so there is nothing to deselect (and nothing to import)
    from .items import AssessmentItem, SubItem

    kinds = (SubItem, AssessmentItem)
    exp_items: list[pytest.Item] = [it for it in items if isinstance(it, kinds)]
    if not state.selected:
        if exp_items:
            _deselect(config, items, set(map(id, exp_items)))
            state.notes.append(
                f"mlexp: {len(exp_items)} experiment items deselected; run them with "
                "--experiment <id>|all (or name the plan file, or set mlexp_select_by_default = true)"
            )
        return
    paths = _Paths(state)
    keep: list[pytest.Item]
    if state.experiment_args:
        keep = _filter_by_args(state, exp_items, paths)
    else:
        inactive: dict[int, set[str]] = {}  # per plan (computed once, not once per item)

        def is_inactive(item: pytest.Item) -> bool:
            plan = paths.context(item).plan
            ids = inactive.get(id(plan))
            if ids is None:
                left_out = retired_experiments(plan)
                ids = inactive[id(plan)] = set(left_out)
                _note_left_out(state, left_out)
            return item.experiment_id in ids  # type: ignore[attr-defined]

        keep = [it for it in exp_items if not is_inactive(it)]
    keep_ids = set(map(id, keep))
    drop = {
        id(it) for it in items if id(it) not in keep_ids and (state.experiment_args or isinstance(it, kinds))
    }
    if drop:
        _deselect(config, items, drop)
    order_items(state, items, paths)


def _filter_by_args(
    state: MlexpSession, exp_items: list[pytest.Item], paths: _Paths | None = None
) -> list[pytest.Item]:
    from .items import AssessmentItem, SubItem
    from .model import PlanError

    paths = paths or _Paths(state)
    plans: dict[Path, Plan] = {}
    for it in exp_items:
        key = paths.resolved(it)
        if key not in plans:
            plans[key] = paths.context(it).plan
    if not plans and state.plan_path.is_file():
        try:
            plans[state.plan_path] = state.context_for(state.plan_path).plan
        except PlanError:
            return []  # already reported as a collection error naming file and line
    selections: dict[Path, Selection] = {}
    unmatched: list[str] | None = None
    try:
        for path, plan in plans.items():
            sel = resolve(plan, state.experiment_args)
            selections[path] = sel
            unmatched = sel.unmatched if unmatched is None else [v for v in unmatched if v in sel.unmatched]
    except SelectionError as exc:
        return _defer(state, pytest.UsageError(str(exc)))
    if unmatched is None:
        return _defer(
            state,
            pytest.UsageError(
                f"--experiment {','.join(state.experiment_args)}: no research plan was collected "
                f"(looked for {state.plan_path}; set the ini option mlexp_plan)"
            ),
        )
    if unmatched:
        return _defer(state, unmatched_error(unmatched, plans.values()))
    if "all" in state.experiment_args:
        for path, plan in plans.items():
            sel = selections[path]
            named = sel.experiments | {plan.sub(s).experiment_id for s in sel.subs}
            _note_left_out(state, {e: why for e, why in retired_experiments(plan).items() if e not in named})
    keep = []
    for it in exp_items:
        key = paths.resolved(it)
        sel = selections[key]
        exp_id = it.experiment_id  # type: ignore[attr-defined]
        if exp_id in sel.experiments or (isinstance(it, SubItem) and it.sub.id in sel.subs):
            keep.append(it)
        elif isinstance(it, AssessmentItem):
            plan = plans[key]
            if any(plan.sub(s).experiment_id == exp_id for s in sel.subs):
                keep.append(it)
    return keep


def _defer(state: MlexpSession, error: pytest.UsageError) -> list[pytest.Item]:
    """Select nothing and keep the usage error for ``pytest_collection_finish``, which raises it
    before pytest reports anything as collected (raised here, it would print after that)."""
    state.selection_error = error
    return []


def _note_left_out(state: MlexpSession, left_out: dict[str, str]) -> None:
    """One line per retired experiment an implicit selection leaves out, and why."""
    for exp_id, why in left_out.items():
        line = f"mlexp: left out {exp_id}: {why} (name it with --experiment {exp_id} to run it)"
        if line not in state.notes:
            state.notes.append(line)


def _deselect(config: pytest.Config, items: list[pytest.Item], drop: set[int]) -> None:
    removed = [it for it in items if id(it) in drop]
    items[:] = [it for it in items if id(it) not in drop]
    config.hook.pytest_deselected(items=removed)


def order_key(item: Any, paths: _Paths) -> tuple[int, int, int, int]:
    """Plan order made topological: experiments by dependencies and gates, subs by theirs."""
    exp_rank, sub_rank = paths.ranks(item)
    e = exp_rank.get(item.experiment_id, 0)
    sub = getattr(item, "sub", None)  # a SubItem (an assessment has none)
    if sub is not None:
        return (e, 0, sub_rank.get(sub.id, 0), item.point_index)
    return (e, 1, 0, 0)


def order_items(state: MlexpSession, items: list[pytest.Item], paths: _Paths | None = None) -> None:
    """Put experiment items in dependency order in the slots experiment items occupy,
    whatever ``--ff`` or a random-order plugin did; ordinary tests keep their places."""
    from .items import AssessmentItem, SubItem

    paths = paths or _Paths(state)
    slots = [i for i, it in enumerate(items) if isinstance(it, (SubItem, AssessmentItem))]
    if not slots:
        return
    current = [items[i] for i in slots]
    # The second call (after --ff and the like) usually finds them as the first left them: the
    # same items in the same order (items compare by identity) sort the same, so no sort.
    if current == state.ordered:
        return
    plans = sorted({str(paths.resolved(it)) for it in current})
    rank = {p: i for i, p in enumerate(plans)}
    ordered = sorted(current, key=lambda it: (rank[str(paths.resolved(it))], *order_key(it, paths)))
    for slot, it in zip(slots, ordered, strict=True):
        items[slot] = it
    state.ordered = ordered
