"""The pytest nodes of a plan: file -> experiment -> sub-experiment items + one assessment.

Thin glue: what an item does when it runs lives in ``orchestrate.py`` (loaded when the first
item runs, so collecting a plan does not import the run machinery); the plan, criteria and
results logic live in pure modules.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator, Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from .gcpause import paused
from .records import ResultOp
from .session import session_of

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from .model import Experiment, SubExperiment, SweepPoint
    from .session import MlexpSession, PlanContext


def skip_blocked(reason: str) -> None:
    """Skip reported at the item's place in the plan, not at this line of the plugin."""
    try:
        raise pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without the keyword
        pytest.skip(reason)


def _orchestrate() -> ModuleType:
    # Not at import: collecting a plan (``--co``) need not load the run machinery (executors,
    # verdicts, the live line: ~25 ms).  Not an import statement per item either (a relative
    # import costs a module-spec lookup each time): the module in sys.modules.  Not
    # ``from . import orchestrate``: that returns the package attribute, which is stale once a
    # harness (pytester) has swapped sys.modules between in-process runs.  A one-way edge
    # (orchestrate never imports this module; tests/unit/test_import_graph.py checks it).
    return sys.modules.get(_ORCHESTRATE) or importlib.import_module(_ORCHESTRATE)


_ORCHESTRATE = f"{__package__}.orchestrate"


def _flat_keywords_class() -> type[Any] | None:
    try:
        from _pytest.mark.structures import NodeKeywords
    except ImportError:  # pragma: no cover - a pytest that moved it: items keep pytest's own
        return None
    if "_markers" not in getattr(NodeKeywords, "__slots__", ()):
        return None  # pragma: no cover - a pytest whose keywords are kept otherwise

    class FlatKeywords(NodeKeywords):  # type: ignore[misc]
        """An item's keywords, iterated in one pass over its parents.

        pytest's ``NodeKeywords`` iterates as one generator per parent, nested: every name
        passes up through each level, and each level checks it against its own names.  Every
        report of an item copies them (``dict.fromkeys(item.keywords, 1)``, three reports per
        item): 5.4 µs for an item six levels deep (session, two folders, plan, experiment),
        3.2 for a test function four levels deep.  The same names in the same order (each where
        it first appears, the item's own first), read level by level: 2.4 µs.  Merged into one
        copy of the item's own (a merge keeps a name already there where it is), with the
        ``MutableMapping`` ABC's isinstance asked only of a class that is not pytest's: a third
        less again."""

        __slots__ = ()

        def __iter__(self) -> Iterator[str]:
            names: dict[str, Any] = self._markers.copy()
            node = self.parent
            while node is not None:
                keywords = node.keywords
                if keywords.__class__ is not NodeKeywords and not isinstance(keywords, NodeKeywords):
                    names.update(dict.fromkeys(keywords))  # a plugin's own: it walks the rest
                    break
                names |= keywords._markers
                node = keywords.parent
            return iter(names)

    return FlatKeywords


_FLAT_KEYWORDS = _flat_keywords_class()


class _MarksInOneLoop:
    """An experiment item's marks, read in one loop over its parents.

    pytest's ``iter_markers_with_node`` is two nested generators over the parent chain, and
    pytest asks it six times for every item (skip, skipif, xfail three times, filterwarnings);
    an experiment item is six levels deep (session, two folders, plan, experiment): 2.6 µs a
    call, 1.6 in one loop.  The same (node, mark) pairs in the same order, the item's own first
    (read when asked, as pytest's are; only not lazily, which no caller can tell apart).
    ``iter_markers`` (how pytest asks: a generator over those pairs) walks the same loop."""

    __slots__ = ()

    def iter_markers_with_node(self, name: str | None = None) -> Iterator[tuple[Any, pytest.Mark]]:
        return iter(_marks_of(self, name, with_node=True))

    def iter_markers(self, name: str | None = None) -> Iterator[pytest.Mark]:
        # The marks of the pairs above, in their order: no generator over them, no tuple per mark.
        return iter(_marks_of(self, name, with_node=False))


def _marks_of(node: Any, name: str | None, *, with_node: bool) -> list[Any]:
    """The marks named ``name`` (None: all) of ``node`` and its parents, the node's own first;
    each as a ``(node, mark)`` pair ``with_node``."""
    found: list[Any] = []
    while node is not None:
        marks = node.own_markers
        if marks:  # most levels have none: no list iterator made for them (36 per item)
            for mark in marks:
                if name is None or getattr(mark, "name", None) == name:
                    found.append((node, mark) if with_node else mark)
        node = node.parent
    return found


def _flatten_keywords(item: pytest.Item) -> None:
    # The same object, its class swapped (the subclass adds no slots): names added to it
    # before or after (add_marker, plugins) stay where pytest keeps them.
    if _FLAT_KEYWORDS is not None and item.keywords.__class__ is _FLAT_KEYWORDS.__base__:
        item.keywords.__class__ = _FLAT_KEYWORDS


def _with_used_fixtures(names: tuple[str, ...], marks: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` and the fixtures a plan ``usefixtures`` mark names (``"usefixtures('db')"``).

    pytest reads ``usefixtures`` marks when it works out an item's fixtures, which for these
    items happens before their plan marks are on them: the names join the closure here (set up
    as for any test; the handler still gets only the fixtures it asks for)."""
    used = list(names)
    for text in marks:
        if "usefixtures" in text:
            from .model import parse_mark

            name, args, _ = parse_mark(text)  # checked when the plan was read
            if name == "usefixtures":
                used.extend(a for a in args if isinstance(a, str) and a not in used)
    return tuple(used)


def _add_plan_marks(item: pytest.Item, marks: tuple[str, ...]) -> None:
    """The plan's ``marks`` (``slow``, ``"skip(reason='later')"``) on ``item``, each name
    registered (``--strict-markers`` accepts them).  ``marks`` run outermost first (defaults,
    experiment, sub-experiment); they are added innermost first, so that where a plugin takes
    the closest mark (pytest-timeout's ``timeout``, an ``xfail`` reason) the innermost wins, as
    every other setting of the plan does."""
    from .model import parse_mark

    state = session_of(item.config)
    for text in reversed(marks):
        name, args, kwargs = parse_mark(text)  # checked when the plan was read
        state.register_mark(name)
        item.add_marker(getattr(pytest.mark, name)(*args, **kwargs) if args or kwargs else name)


def skip_if_blocked(item: pytest.Item, state: MlexpSession) -> None:
    """Skip an experiment item whose gate, dependency or sub-dependency holds it back (the
    reason is recorded as the item's result).  ``state``: the run's session."""
    reason = state.blocked_reason(item)
    if reason is None:
        return
    plan = str(item.path)
    exp_id: str = item.experiment_id  # type: ignore[attr-defined]
    if isinstance(item, SubItem):
        point = item.point.key if item.point else None
        op = ResultOp.blocked(plan, exp_id, item.sub.id, point, reason)
    else:
        op = ResultOp.assessment_blocked(plan, exp_id, reason)
    state.attach_op(item, op)
    skip_blocked(reason)


def _is_failure(excinfo: ExceptionInfo[BaseException]) -> bool:
    """An ``orchestrate.MlexpFailure``: a failure we can say in a few lines, without a traceback."""
    module = sys.modules.get(_ORCHESTRATE)
    return module is not None and isinstance(excinfo.value, module.MlexpFailure)


class PlanFile(pytest.File):
    """A ``research_plan.yaml``."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        from .model import PlanError

        state = session_of(self.config)
        state.mark_collected(self.path)  # also when broken: never collect (and report) it twice
        try:
            with paused():  # the plan read (or its cache unpickled): thousands of objects, kept
                ctx = state.context_for(self.path)
        except PlanError as exc:
            if state.selected:
                raise self.CollectError(exc.render()) from None
            state.plan_warnings.append(exc.render())
            return
        if state.selected:
            from .store import StoreError

            try:  # a results file from a newer pytest-mlexp: refuse before anything runs
                for exp in ctx.plan.experiments:
                    ctx.results.store.doc(exp.id)
            except StoreError as exc:
                raise self.CollectError(str(exc)) from None
            from .dispatch import warm_up

            warm_up(state, ctx.plan)
        for exp in ctx.plan.experiments:
            yield ExperimentNode.from_parent(self, name=exp.id, experiment=exp)


class ExperimentNode(pytest.Collector):
    def __init__(self, *, experiment: Experiment, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        # The fixture closure of this node's items, per set of requested fixture names (see
        # SubItem.build): every item under one node with the same names has the same closure.
        self.fixtureinfos: dict[tuple[str, ...], Any] = {}

    def collect(self) -> list[pytest.Item]:
        from .graph import graph_of

        state = session_of(self.config)
        ctx = state.context_for(self.path)
        exp = self.experiment
        plan = ctx.plan
        items: list[pytest.Item] = []
        with paused():  # an item is a dozen containers, all kept: built without collections
            for sub_id in graph_of(plan).sub_order(exp.id):
                sub = plan.sub(sub_id)
                points = sub.points()
                if points:
                    for index, point in enumerate(points):
                        items.append(SubItem.build(self, state, ctx, sub, point, index))
                else:
                    items.append(SubItem.build(self, state, ctx, sub, None, 0))
            items.append(AssessmentItem.from_parent(self, name="assessment", experiment=exp))
        return items

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.experiment.loc.line - 1, self.experiment.id


def _placeholder(**kwargs: Any) -> None:  # pragma: no cover - never called: runtest is ours
    raise AssertionError("an experiment item's callobj is never called directly")


_CALLOBJS: dict[tuple[str, ...], Any] = {}


def _callobj(fixtures: tuple[str, ...]) -> Any:
    """The placeholder callobj for items that request ``fixtures``, one per set of names.

    Items share it, as the items of a parametrised test share its function: a function object
    (with its signature) per item cost time and ~150 bytes each in a 10,000-point sweep.
    """
    func: Any = _CALLOBJS.get(fixtures)
    if func is None:
        func = lambda **kw: _placeholder(**kw)  # noqa: E731
        func.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in fixtures]
        )
        _CALLOBJS[fixtures] = func
    return func


class SubItem(_MarksInOneLoop, pytest.Item):
    """One sub-experiment (or one point of its sweep); all its seeds run inside it.

    A plain :class:`pytest.Item` when no fixture reaches it (the handler asks for none but
    ``runner``, and no autouse fixture, the ``usefixtures`` ini option's included, applies
    where the plan is): pytest's fixture set-up and tear-down around an item cost as much as
    everything the item does itself for a trivial handler, and would do nothing.  Otherwise a
    :class:`FixtureSubItem`, a :class:`pytest.Function` whose fixtures pytest sets up as for
    any test."""

    # Slots, not instance-dict entries: a pytest node's ``__dict__`` is already at the size
    # where a few more keys reallocate it (~0.8 KB per item in a 10,000-point sweep).
    # ``_mlexp_op``: on an xdist worker, the result op ``session.attach_op`` hands to OpCarrier.
    __slots__ = ("_mlexp_op", "experiment_id", "mlexp_session", "point", "point_index", "sub")

    # The run's session, which its set-up and run ask for: ``session_of(config)`` there is
    # three Python calls (the stash's ``__getitem__``, ``typing.cast``), twice per item.  (Not
    # the plan context too: held by the items, it would outlive ``MlexpSession.release``.)
    mlexp_session: MlexpSession
    sub: SubExperiment
    point: SweepPoint | None
    point_index: int  # position in the sweep, for ordering without re-expanding the sweep
    experiment_id: str
    #: The fixtures pytest set up for it, by name (a FixtureSubItem's own, from pytest).
    funcargs: Mapping[str, Any] = MappingProxyType({})

    @classmethod
    def build(
        cls,
        parent: ExperimentNode,
        state: MlexpSession,
        ctx: PlanContext,
        sub: SubExperiment,
        point: SweepPoint | None,
        index: int,
    ) -> SubItem:
        # pytest reads the fixtures an item needs from its callobj's signature: give it exactly
        # the handler's parameters (read from source, so collection never imports the handler).
        names = tuple(ctx.fixture_names(sub))
        if sub.marks:
            names = _with_used_fixtures(names, sub.marks)
        name = f"{sub.id}[{point.key}]" if point is not None else sub.id
        # Computing the fixture closure was half the cost of building an item.  It depends on the
        # names asked for, the node's place (conftest visibility, autouse) and the item's own
        # marks at construction, which our items do not have yet (plan marks are added below):
        # so it is shared, as pytest shares one across the items of a parametrised test.
        # None: no fixture reaches these items (a plain item).
        try:
            info = parent.fixtureinfos[names]
        except KeyError:
            info = parent.fixtureinfos[names] = _fixture_info(parent, names)
        item: SubItem
        if info is None:
            item = super().from_parent(parent, name=name)
        else:
            # No originalname: pytest 9.2 builds the node id from it and would drop the "[point]".
            item = FixtureSubItem.from_parent(
                parent, name=name, callobj=_callobj(names), fixtureinfo=None if info is _ASK_PYTEST else info
            )
        _flatten_keywords(item)
        item.mlexp_session = state
        item.sub = sub
        item.point = point
        item.point_index = index
        item.experiment_id = sub.experiment_id
        if sub.marks:
            _add_plan_marks(item, sub.marks)
        return item

    @property
    def plan_path(self) -> Any:
        return self.path

    def runtest(self) -> None:
        _orchestrate().run_sub_item(self, self.mlexp_session)

    def setup(self) -> None:
        skip_if_blocked(self, self.mlexp_session)
        super().setup()

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if _is_failure(excinfo):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.sub.loc.line - 1, f"{self.sub.experiment_id}::{self.name}"


class FixtureSubItem(SubItem, pytest.Function):  # type: ignore[misc]
    """A sub-experiment item that fixtures reach: pytest sets them up (``item.funcargs``)
    before it runs and tears them down after, as for any test function."""

    __slots__ = ()


def _fixture_info(parent: ExperimentNode, names: tuple[str, ...]) -> Any:
    """The fixture closure of ``parent``'s items that ask for ``names`` (pytest's
    ``FuncFixtureInfo``), or None when it is empty: no fixture, autouse included, reaches them."""
    manager = getattr(parent.session, "_fixturemanager", None)
    getinfo = getattr(manager, "getfixtureinfo", None)
    if getinfo is None:  # a pytest without it: pytest works it out for each item
        return _ASK_PYTEST
    info = getinfo(node=parent, func=_callobj(names), cls=None)
    return info if info.names_closure else None


_ASK_PYTEST = object()


class AssessmentItem(_MarksInOneLoop, pytest.Item):
    """Asserts an experiment's verdict (SPEC section 5)."""

    def __init__(self, *, experiment: Experiment, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _flatten_keywords(self)
        self.experiment = experiment
        self.experiment_id = experiment.id
        if experiment.marks:
            _add_plan_marks(self, experiment.marks)

    def setup(self) -> None:
        skip_if_blocked(self, session_of(self.config))

    def runtest(self) -> None:
        _orchestrate().run_assessment(self)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if _is_failure(excinfo):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.experiment.loc.line - 1, f"{self.experiment.id}::assessment"
