"""Session state: the loaded plans, their results, selection, and the hooks that need state.

One ``MlexpSession`` is registered with pytest's plugin manager per run (``mlexp-session``).
Everything that writes files runs in the process that owns them: this one, or the xdist
controller, which receives each item's result as plain data on its test report.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .reporting import record_row

if TYPE_CHECKING:
    from .executors import Dispatcher
    from .handlers import HandlerIndex, HandlerRef
    from .model import SubExperiment, Verdict
    from .store import ResultsStore
    from .trackers import SessionTracking

OP_KEY = "mlexp_op"  # attribute on TestReport; plain data, so it travels from xdist workers


class PlanContext:
    """One plan file with its results store, handler index and cached verdicts."""

    def __init__(self, state: MlexpSession, path: Path) -> None:
        from .handlers import HandlerIndex
        from .model import PlanError
        from .plan import parse_plan_text
        from .store import ResultsStore, params_digest

        self.state = state
        self.root = state.rootpath
        try:
            shown = path.relative_to(self.root).as_posix()
        except ValueError:
            shown = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(
                None, f"{shown}: cannot read the plan: {exc}", "check the path and encoding"
            ) from None
        # Messages name the file as the user sees it; files are resolved from the absolute path.
        self.plan = _with_abs_path(parse_plan_text(text, shown), path)
        # Per-session constants every task carries (computed once, not per seed).
        self.root_text = str(self.root)
        self.plan_root_text = str(self.plan.root)
        # Per-session caches of orchestrate.py (task and provenance building), per handler file
        # and per sub-experiment: they do not change while the session runs.
        self.module_paths: dict[Path, str] = {}
        self.provenance_base: dict[str, dict[str, Any]] = {}

        def digest_for(key: str) -> str | None:
            sub_id, _, point = key.partition("[")
            if not self.plan.has_sub(sub_id):
                return None
            sub = self.plan.sub(sub_id)
            pt = None
            if point:
                pt = next((p for p in sub.points() if p.key == point.rstrip("]")), None)
                if pt is None:
                    return None
            elif sub.sweep:
                return None
            return params_digest(sub.resolved_params(state.stub, pt))

        self.store: ResultsStore = ResultsStore(
            self.plan, stub=state.stub, warn=state.warn, digest_for=digest_for, readonly=state.is_worker
        )
        self.handlers: HandlerIndex = HandlerIndex(self.root, state.handlers_dir)
        self._refs: dict[str, Any] = {}
        self._ranks: tuple[dict[str, int], dict[str, int]] | None = None
        self._has_prereqs: dict[str, bool] = {}
        self._verdicts: dict[str, Verdict] = {}
        # On an xdist worker nothing is written: results of this worker's items overlay the store.
        self._overlay: dict[tuple[str, str], dict[str, Any]] = {}
        self._dirty_sweeps: set[tuple[str, str]] = set()

    # --- handlers -----------------------------------------------------------------------------
    def handler(self, sub: SubExperiment) -> HandlerRef:
        cached = self._refs.get(sub.id)
        if cached is None:
            try:
                cached = self.handlers.find(sub.experiment_id, sub.id, sub.handler)
            except LookupError as exc:
                cached = exc
            self._refs[sub.id] = cached
        if isinstance(cached, LookupError):
            raise cached
        return cached

    def fixture_names(self, sub: SubExperiment) -> list[str]:
        try:
            ref = self.handler(sub)
        except LookupError:
            return []
        return [p for p in ref.fixture_names if p != "runner"]

    def has_prerequisites(self, experiment_id: str) -> bool:
        """Whether any dependency or gate can block the experiment (asked once per item)."""
        known = self._has_prereqs.get(experiment_id)
        if known is None:
            known = self._has_prereqs[experiment_id] = bool(self.plan.prerequisites(experiment_id))
        return known

    def ranks(self) -> tuple[dict[str, int], dict[str, int]]:
        """Positions of experiments and subs in dependency order (computed once)."""
        if self._ranks is None:
            exp_rank: dict[str, int] = {}
            sub_rank: dict[str, int] = {}
            for i, exp in enumerate(self.plan.experiment_order()):
                exp_rank[exp.id] = i
                for j, sub in enumerate(self.plan.sub_order(exp)):
                    sub_rank[sub.id] = j
            self._ranks = (exp_rank, sub_rank)
        return self._ranks

    # --- results ------------------------------------------------------------------------------
    def doc(self, experiment_id: str) -> Mapping[str, Any]:
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

    def sub_entry(self, experiment_id: str, sub_id: str) -> dict[str, Any] | None:
        if (experiment_id, sub_id) in self._dirty_sweeps:
            self._summarize((experiment_id, sub_id))
        return self._raw_sub_entry(experiment_id, sub_id)

    def _raw_sub_entry(self, experiment_id: str, sub_id: str) -> dict[str, Any] | None:
        got = self._overlay.get((experiment_id, sub_id))
        if got is not None:
            return got
        entry = (self.store.doc(experiment_id).get("sub_experiments") or {}).get(sub_id)
        return entry if isinstance(entry, dict) else None

    def verdict(self, experiment_id: str) -> Verdict:
        cached = self._verdicts.get(experiment_id)
        if cached is None:
            from .verdict import experiment_verdict

            exp = self.plan.experiment(experiment_id)
            cached = experiment_verdict(self.plan, exp, self.doc(experiment_id), stub=self.state.stub)
            self._verdicts[experiment_id] = cached
        return cached

    def experiment_header(self, experiment_id: str, verdict: Verdict) -> dict[str, Any]:
        from .execution import now_iso

        exp = self.plan.experiment(experiment_id)
        return {
            "name": exp.name,
            "status": verdict.status,
            "success_criteria_met": verdict.success_criteria_met,
            "confidence": verdict.confidence,
            "recommendation": verdict.recommendation,
            "updated_at": now_iso(),
            "criteria": {j.metric: j.to_dict() for j in verdict.criteria},
        }

    def apply(self, op: Mapping[str, Any], *, write: bool) -> None:
        """Apply one item's op: to the store (the writer) or to the in-memory overlay (a worker)."""
        kind = op["op"]
        if kind == "experiment_blocked":
            return
        if kind == "experiment":
            if write:
                self.store.set_experiment(op["experiment"], dict(op["fields"]))
            return
        sub = self.plan.sub(op["sub"])
        exp_id = sub.experiment_id
        self._verdicts.pop(exp_id, None)
        point = op.get("point")
        if kind == "blocked":
            if write:
                self.store.record_blocked(exp_id, sub.id, op["reason"], point=point)
            return
        entry = dict(op["entry"])
        if not write:
            self._apply_overlay(exp_id, sub, point, entry)
            return
        self.store.record(exp_id, sub.id, entry, point=point)
        if point is not None:
            # Summarising scans every point: once per sweep at the end keeps a sweep linear.
            # Verdicts do not need it (they re-select the point from the stored points).
            self._dirty_sweeps.add((exp_id, sub.id))

    def _apply_overlay(
        self, exp_id: str, sub: SubExperiment, point: str | None, entry: dict[str, Any]
    ) -> None:
        key = (exp_id, sub.id)
        if point is None:
            self._overlay[key] = entry
            return
        current = self._overlay.get(key)
        if current is None:  # first point on this worker: start from what is stored (copied once)
            stored = self._raw_sub_entry(exp_id, sub.id) or {}
            current = dict(stored)
            current["points"] = dict(stored.get("points") or {})
            self._overlay[key] = current
        current["points"][point] = entry
        self._dirty_sweeps.add(key)

    def _summarize_pending(self, experiment_id: str) -> None:
        for key in [k for k in self._dirty_sweeps if k[0] == experiment_id]:
            self._summarize(key)

    def _summarize(self, key: tuple[str, str]) -> None:
        """Summarise a sweep (selected point, status, metrics) when someone reads it: once per
        read after new points, not once per point, which would make a sweep quadratic."""
        from .verdict import summarize_sweep

        self._dirty_sweeps.discard(key)
        exp_id, sub_id = key
        entry = self._raw_sub_entry(exp_id, sub_id) or {}
        summary = summarize_sweep(self.plan.sub(sub_id), entry.get("points") or {}, stub=self.state.stub)
        if key in self._overlay:
            self._overlay[key].update(summary)
        else:
            self.store.set_summary(exp_id, sub_id, summary)

    def summarize_sweeps(self) -> None:
        for key in sorted(self._dirty_sweeps):
            self._summarize(key)


def _with_abs_path(plan: Any, path: Path) -> Any:
    """Plans report locations as the user typed them but resolve files from an absolute path."""
    import dataclasses

    return dataclasses.replace(plan, path=path.resolve())


def join_simple(base: str, *names: str) -> str:
    """``str(Path(base, *names))`` for a ``base`` that is already a Path's text, without building
    Paths when every name is one plain component (the common case: ids, ``seed0``).  Windows
    always takes the Path way (drive letters make "plain" harder to tell)."""
    if os.name == "nt":
        return str(Path(base, *names))
    for name in names:
        if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
            return str(Path(base, *names))
    return os.path.join(base, *names)


@functools.lru_cache(maxsize=8)
def git_state(root: str) -> tuple[str | None, bool | None]:
    """The commit and dirtiness of the project, asked once per session (provenance)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return head.stdout.strip() or None, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


class _LazyVerdicts(Mapping[str, "Verdict"]):
    """Verdicts computed only for the experiments a blocker check actually looks at."""

    def __init__(self, ctx: PlanContext) -> None:
        self._ctx = ctx

    def __getitem__(self, key: str) -> Verdict:
        if not self._ctx.plan.has_experiment(key):
            raise KeyError(key)
        return self._ctx.verdict(key)

    def __iter__(self) -> Iterator[str]:
        return iter(e.id for e in self._ctx.plan.experiments)

    def __len__(self) -> int:
        return len(self._ctx.plan.experiments)


class EarlyOrder:
    """A plain ``tryfirst`` ``pytest_collection_modifyitems``: it runs after random-order
    plugins (they shuffle in a wrapper, before its yield) and before the plain implementations,
    among them stepwise, whose ``--sw`` cuts the item list by position.  The session's wrapper
    orders again at the very end (after ``--ff``)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.state.early_order(items)


class OpCarrier:
    """On an xdist worker: moves an item's op onto its report, which xdist sends to the
    controller (registered only on workers; see ``plugin.py``)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, Any]:
        report = yield
        op = getattr(item, "_mlexp_op", None)
        if op is not None and (call.when == "call" or (call.when == "setup" and report.skipped)):
            setattr(report, OP_KEY, op)
            delattr(item, "_mlexp_op")
        return report


class MlexpSession:
    """Per-run state and the hooks that need it (registered as ``mlexp-session``)."""

    def __init__(self, config: pytest.Config) -> None:
        from .selection import initially_selected

        self.config = config
        self.rootpath = Path(config.rootpath)
        self.stub: bool = bool(config.getoption("mlexp_stub"))
        self.experiment_args: list[str] = [
            v.strip()
            for arg in config.getoption("mlexp_experiment") or []
            for v in arg.split(",")
            if v.strip()
        ]
        self.executor_override: str | None = config.getoption("mlexp_executor")
        self.concurrency: int | None = config.getoption("mlexp_concurrency")
        self.wandb_mode: str = config.getoption("mlexp_wandb") or "auto"
        self.handlers_dir: str = str(config.getini("mlexp_handlers") or "experiments")
        self.plan_setting: str = str(config.getini("mlexp_plan") or "research/research_plan.yaml")
        self.is_worker = hasattr(config, "workerinput")
        self.contexts: dict[Path, PlanContext] = {}
        self._by_given: dict[Path | str, PlanContext] = {}  # context_for's memo, by the path as given
        self.collected: set[Path] = set()
        self.plan_warnings: list[str] = []
        self.notes: list[str] = []  # one-line messages shown after collection
        self.notes_end: list[str] = []  # shown at the end of the experiment summary
        self.records: dict[str, dict[str, Any]] = {}  # nodeid -> summary row, in run order
        self._ops: dict[str, dict[str, Any]] = {}  # nodeid -> result op awaiting its report
        self.selected = initially_selected(config, self)
        self._marks: set[str] = set()
        self._dispatcher: Dispatcher | None = None
        self._scrubber: Any = None
        self._warned: list[str] = []
        self._tracking: SessionTracking | None = None
        self._workdir_base: Path | None = None
        self._workdir_text: str | None = None

    # --- small services ---------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return (self.rootpath / self.plan_setting).resolve()

    def warn(self, message: str) -> None:
        self._warned.append(message)

    @property
    def tracking(self) -> SessionTracking:
        """W&B (or a hook's tracker): mode and project decided once, here (trackers/)."""
        if self._tracking is None:
            from .trackers import SessionTracking

            self._tracking = SessionTracking(self.config, flag=self.wandb_mode, stub=self.stub)
        return self._tracking

    @property
    def scrubber(self) -> Any:
        """Hides credential env values and the plan's secret params (SPEC section 7)."""
        if self._scrubber is None:
            from .secrets import Scrubber, secret_param_values, secret_values

            values = secret_values()
            for ctx in self.contexts.values():
                for exp in ctx.plan.experiments:
                    for sub in exp.sub_experiments:
                        values += secret_param_values(sub.params) + secret_param_values(sub.stub_params)
            self._scrubber = Scrubber(values)
        return self._scrubber

    def scrub(self, text: str) -> str:
        return str(self.scrubber.scrub(text))

    def scrub_obj(self, obj: Any) -> Any:
        return self.scrubber.scrub_obj(obj)

    def register_mark(self, name: str) -> None:
        if name not in self._marks:
            self._marks.add(name)
            self.config.addinivalue_line("markers", f"{name}: applied by the research plan")

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            from .executors import Dispatcher

            self._dispatcher = Dispatcher(self)
        return self._dispatcher

    def executor_for(self, sub: SubExperiment) -> str:
        if self.executor_override:
            return self.executor_override
        return "local" if self.stub else sub.executor

    def workdir_for(self, sub_id: str, point: str | None, seed: int) -> Path:
        base = self._workdir_base
        if base is None:
            cache = getattr(self.config, "cache", None)  # absent under -p no:cacheprovider
            if cache is not None:
                base = Path(cache.mkdir("mlexp-work"))
            else:
                import tempfile

                base = Path(tempfile.gettempdir()) / "mlexp-work"
            self._workdir_base = base
        name = sub_id + (f"[{point}]" if point else "") + f"-seed{seed}"
        return base / name

    def workdir_text(self, sub_id: str, point: str | None, seed: int) -> str:
        """``str(workdir_for(...))``, without building Paths for plain names."""
        base = self._workdir_text
        if base is None:
            self.workdir_for(sub_id, point, seed)  # settles the base folder
            base = self._workdir_text = str(self._workdir_base)
        return join_simple(base, sub_id + (f"[{point}]" if point else "") + f"-seed{seed}")

    # --- plans ----------------------------------------------------------------------------
    def context_for(self, path: Path | str) -> PlanContext:
        # Called several times per item with the same path object: resolving it (lstat calls)
        # each time was a tenth of a trivial item's cost.
        ctx = self._by_given.get(path)
        if ctx is not None:
            return ctx
        key = Path(path).resolve()
        ctx = self.contexts.get(key)
        if ctx is None:
            ctx = PlanContext(self, key)
            self.contexts[key] = ctx
            self._scrubber = None  # the new plan's secret params join the scrubber
        if os.path.isabs(path):  # a relative one depends on the working directory
            self._by_given[path] = ctx
        return ctx

    def mark_collected(self, path: Path) -> None:
        self.collected.add(Path(path).resolve())

    def is_plan_file(self, path: Path) -> bool:
        return path.name == "research_plan.yaml" or path.resolve() == self.plan_path

    # --- blocking ---------------------------------------------------------------------------
    def blocked_reason(self, item: pytest.Item) -> str | None:
        if self.stub:
            return None  # --stub reports gates without enforcing them
        ctx = self.context_for(item.path)
        exp_id: str = item.experiment_id  # type: ignore[attr-defined]
        sub: SubExperiment | None = getattr(item, "sub", None)  # a SubItem's (not an assessment's)
        reasons: list[str] = []
        # Most items have neither: no import, no verdicts (this runs before every item).
        if ctx.has_prerequisites(exp_id):
            from .verdict import blockers

            reasons = blockers(ctx.plan, exp_id, _LazyVerdicts(ctx))
        if not reasons and sub is not None and sub.dependencies:
            from .verdict import sub_blockers

            entries = {
                d: ctx.sub_entry(ctx.plan.sub(d).experiment_id, d) or {}
                for d in sub.dependencies
                if ctx.plan.has_sub(d)
            }
            reasons = sub_blockers(ctx.plan, sub, entries)
        return "; ".join(reasons) if reasons else None

    def on_blocked(self, item: pytest.Item, reason: str) -> None:
        from .items import SubItem

        if isinstance(item, SubItem):
            op = {"op": "blocked", "sub": item.sub.id, "point": item.point.key if item.point else None}
        else:
            op = {"op": "experiment_blocked", "experiment": item.experiment_id}  # type: ignore[attr-defined]
        op["reason"] = reason
        self.attach_op(item, op)

    def attach_op(self, item: pytest.Item, op: dict[str, Any]) -> None:
        op["plan"] = str(item.path)
        if self.is_worker:
            # The op must ride on the report to the controller: OpCarrier puts it there.
            setattr(item, "_mlexp_op", op)  # noqa: B010
            self.context_for(item.path).apply(op, write=False)
        else:
            # Picked up by pytest_runtest_logreport, by node id: no makereport wrapper around
            # every report of every item (three per item) just to carry it.
            self._ops[item.nodeid] = op

    def wiring_failures(self, experiment_id: str) -> list[str]:
        return [
            row["name"]
            for row in self.records.values()
            if row["experiment"] == experiment_id and row["kind"] == "sub" and row["status"] == "error"
        ]

    # --- hooks -------------------------------------------------------------------------------
    def early_order(self, items: list[pytest.Item]) -> None:
        """Dependency order before plugins that cut the list by position (``--sw``) see it."""
        if self.selected:
            from .selection import order_items

            order_items(self, items)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        from .selection import inject_plan, select_and_order

        if self.selected:
            inject_plan(self, session, items)
        # Wrapping the cache plugin's --lf/--ff wrapper: we run after it reordered/filtered.
        res = yield
        select_and_order(self, config, items)
        return res

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # --mlexp-executor names something only once every conftest.py is loaded (executors
        # come from hooks): a usage error now, before anything runs.  (executors/__init__.py)
        if self.executor_override and not self.is_worker:
            self.dispatcher.check_name(self.executor_override)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # Dispatch ahead (SPEC section 6): start process/modal work for every item whose
        # prerequisites are settled; items still report in order.  Not on xdist workers: each
        # runs only the items it is sent, so it submits an item's work when the item comes up.
        config = session.config
        if session.testsfailed and not config.option.continue_on_collection_errors:
            return
        if self.selected and not self.is_worker and not config.option.collectonly and session.items:
            self.dispatcher.start(session)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The report of the phase that produced the op: the call, or a setup that skipped (a
        # blocked item).  From an xdist worker (or a crashed one) it arrives on the report.
        op = getattr(report, OP_KEY, None)
        if op is None and self._ops and (report.when == "call" or report.skipped):
            op = self._ops.pop(report.nodeid, None)
        if op is None:  # the other reports, and every non-plan test
            return
        ctx = self.context_for(op["plan"])
        if not self.is_worker:
            ctx.apply(op, write=True)
            # tracker warnings from wherever the seed ran, printed once in the summary
            for line in op.get("warnings") or ():
                if line not in self._warned:
                    self.warn(line)
        record_row(self, ctx, report, op)
        if not self.is_worker and OP_KEY in report.__dict__:
            # Applied and summarised: the terminal reporter keeps every report to the end, and
            # with it a second copy of every result entry (a worker's report must keep it: xdist
            # sends it to the controller after this hook).
            delattr(report, OP_KEY)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from .reporting import finish_session

        if not self.is_worker:
            finish_session(self, session)
        # After the results are written (teardown may wait on uploads): every process that ran
        # seeds ends its tracker here; W&B's offline files are complete only after teardown.
        if "pytest_mlexp.trackers" in sys.modules:
            from .trackers import teardown_all

            for line in teardown_all():
                self.warn(line)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from .reporting import terminal_summary

        terminal_summary(self, terminalreporter)

    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str]:
        # Deciding the tracking mode here shows its one-line notice before anything runs.
        tracking = self.tracking.notes if self.selected and not self.is_worker else []
        return [f"mlexp: warning: {w}" for w in self.plan_warnings] + self.notes + tracking
