"""Session state: the options, the loaded plans with their results, and small services.

One ``MlexpSession`` per run, registered with pytest's plugin manager as ``mlexp-session`` (the
hooks that act on it live in ``hooks.py``).  Everything that writes files runs in the process
that owns them: this one, or the xdist controller, which receives each item's result as a
:class:`~pytest_mlexp.records.ResultOp` on its test report.

Every pytest run imports this module (``plugin.py`` builds the session in ``pytest_configure``),
so it imports nothing beyond pytest and the standard library at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .fingerprint import Fingerprinter
    from .gitstate import GitState
    from .handlers import HandlerIndex, HandlerRef
    from .model import Plan, SubExperiment, SweepPoint
    from .records import ResultOp
    from .results import ResultsView
    from .reuse import ReusePlan
    from .secrets import Scrubber
    from .trackers import SessionTracking

OP_KEY = "mlexp_op"  # attribute on TestReport: a ResultOp as plain data (travels from xdist workers)
CACHE_RAN = "mlexp/ran_experiments"
CACHE_LF = "mlexp/lastfailed"
# Sub-experiments behind a measured miss, with the digest of the handler source their result ran:
# --lf re-runs them once that source changes (reporting.configure_lastfailed, SPEC section 10).
CACHE_LF_WATCH = "mlexp/lastfailed_watch"


def _no_handler(sub: SubExperiment) -> HandlerRef | None:
    return None  # a closed context's fingerprints look nothing up (PlanContext.close)


class PlanContext:
    """One plan file: its model, its results view, its handlers, and per-session caches."""

    def __init__(self, state: MlexpSession, path: Path) -> None:
        from .handlers import HandlerIndex
        from .model import PlanError
        from .plancache import load_plan_cached
        from .results import ResultsView
        from .reuse import PlanFingerprints, PlanReconciler, ReusePlan, node_key, plan_reuse
        from .store import ResultsStore, params_digest
        from .structs import replace

        self.root = state.rootpath
        self.stub = state.stub
        self.reuse = state.reuse
        try:
            shown = path.relative_to(self.root).as_posix()
        except ValueError:
            shown = str(path)
        # Messages name the file as the user sees it; files are resolved from the absolute path.
        # The parsed model is cached beside the plan, like byte-code (plancache.py).
        resolved = path.resolve()
        try:
            parsed = load_plan_cached(path.read_bytes(), shown, resolved)
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(
                None, f"{shown}: cannot read the plan: {exc}", "check the path and encoding"
            ) from None
        self.plan: Plan = replace(parsed, path=resolved)
        for warning in self.plan.warnings:  # shown after collection, once
            if warning not in state.plan_warnings:
                state.plan_warnings.append(warning)
        # Per-session constants every task carries (computed once, not per seed).
        self.root_text = str(self.root)
        self.plan_root_text = str(self.plan.root)
        try:  # the plan file as provenance names it (its git_dirty covers the plan)
            self.plan_file = self.plan.path.relative_to(self.root).as_posix()
        except ValueError:
            self.plan_file = str(self.plan.path)
        # Per-session caches of tasks.py (task and provenance building), per handler file
        # and per sub-experiment: they do not change while the session runs.
        self.module_paths: dict[Path, str] = {}
        # (handler digest, files read) -> the provenance fields they settle (tasks.provenance)
        self.provenance_base: dict[tuple[str | None, tuple[str, ...]], dict[str, Any]] = {}
        plan = self.plan
        stub = state.stub

        def digest_for(key: str) -> str | None:
            sub_id, _, point = key.partition("[")
            if not plan.has_sub(sub_id):
                return None
            sub = plan.sub(sub_id)
            pt = None
            if point:
                pt = next((p for p in sub.points() if p.key == point.rstrip("]")), None)
                if pt is None:
                    return None
            elif sub.sweep:
                return None
            return params_digest(sub.resolved_params(stub, pt))

        self.handlers: HandlerIndex = HandlerIndex(self.root, state.handlers_dir)
        self._refs: dict[str, Any] = {}
        # Fingerprints (SPEC section 11): what each result is computed from.  The store asks the
        # reconciler what is stale, what comes back, what is outdated.
        self.fingerprints = PlanFingerprints(
            plan, lambda: state.fingerprinter, stub=stub, ref_of=self._ref_or_none
        )
        reconciler = PlanReconciler(self.fingerprints, doc_of=lambda exp_id: store.doc(exp_id))
        store = ResultsStore(
            plan,
            stub=stub,
            warn=state.warn,
            digest_for=digest_for,
            reconciler=reconciler,
            readonly=state.is_worker,
        )
        self.results: ResultsView = ResultsView(plan, store, stub=stub)
        self._decisions: dict[str, ReusePlan] = {}
        # Kept here: an import statement in decision() ran once per item.
        self._new_decision, self._plan_reuse, self._node_key = ReusePlan, plan_reuse, node_key
        self._git: GitState | None = None
        self._read_by_dependents: set[str] | None = None

    def close(self) -> None:
        """The session is over: break the reference cycles among this context's parts (the
        store and the view that judges for it, the store and its reconciler, whose lookup
        closes over the store, the fingerprints and this context's handler lookup), so that
        letting go of the context frees them at once, by reference counting.  Left to the
        garbage collector (~8,000 objects for 1,000 items), they cost its full collections,
        pytest's own at unconfigure among them (see ``MlexpSession.release``)."""
        store = self.results.store
        store.judge = None
        store.reconciler = None
        self.fingerprints.ref_of = _no_handler

    def handler(self, sub: SubExperiment) -> HandlerRef:
        """The sub-experiment's handler (looked up once); raises LookupError when there is none."""
        cached = self._refs.get(sub.id)
        if cached is None:
            try:
                cached = self.handlers.find(sub.experiment_id, sub.id, sub.handler, registry=sub.registry)
            except LookupError as exc:
                cached = exc
            self._refs[sub.id] = cached
        if isinstance(cached, LookupError):
            raise cached
        return cached

    def git(self) -> GitState:
        """The project's git commit and changed files, asked once per session (provenance)."""
        if self._git is None:
            from .gitstate import git_state

            self._git = git_state(self.root_text)
        return self._git

    def _ref_or_none(self, sub: SubExperiment) -> HandlerRef | None:
        try:
            return self.handler(sub)
        except LookupError:
            return None

    def decision(
        self, sub: SubExperiment, point: SweepPoint | None, params: dict[str, Any] | None = None
    ) -> ReusePlan:
        """The item's fingerprint, and which of its seeds stored results hold under
        ``--mlexp-reuse`` (decided once per item: when its work is submitted, or when it runs,
        after what it waits for has reported).  ``params``: its resolved params, when the
        caller has them."""
        key = self._node_key(sub, point)
        got = self._decisions.get(key)
        if got is not None:
            return got
        results = self.results
        fp = self.fingerprints.node(sub, point, results.entry, key, params)
        if self.reuse and not self.stub:
            if self._read_by_dependents is None:
                self._read_by_dependents = {
                    d for e in self.plan.experiments for s in e.sub_experiments for d in s.dependencies
                }
            point_key = point.key if point else None
            stale = results.store.doc(sub.experiment_id).get("stale") or {}
            got = self._plan_reuse(
                fp,
                self.fingerprints.seeds(sub),
                current=results.entry(sub.id, point_key),
                stale=stale.get(key),
                plan_root=self.plan.root,
                read_by_dependents=sub.id in self._read_by_dependents,
                rejudged=self._rejudge(sub, point is not None),
            )
        else:
            got = self._new_decision(fp)
        self._decisions[key] = got
        return got

    def settled(self, sub: SubExperiment, point: SweepPoint | None) -> None:
        """The item ran and its result is handed on: nothing asks for its decision again (it
        runs once a session), so it is not kept (two objects per item the collector would go
        over to the session's end)."""
        self._decisions.pop(self._node_key(sub, point), None)

    def _rejudge(self, sub: SubExperiment, point: bool) -> Callable[[Mapping[str, Any]], str]:
        """A stored result's status judged by today's plan (``subjudge.py``): what reuse asks."""
        from .subjudge import judge_stored, lookup_for, point_status

        plan, results, stub = self.plan, self.results, self.stub

        def status(entry: Mapping[str, Any]) -> str:
            if point:
                return point_status(plan, sub, entry)[0]
            lookup = lookup_for(plan, results.entry) if sub.implicit_dependencies else None
            return judge_stored(plan, sub, dict(entry), stub=stub, lookup=lookup).status

        return status

    def fixture_names(self, sub: SubExperiment) -> list[str]:
        """The fixtures its handler asks for, other than ``runner`` (none when it has no handler)."""
        try:
            ref = self.handler(sub)
        except LookupError:
            return []
        return [p for p in ref.fixture_names if p != "runner"]


def join_simple(base: str, *names: str) -> str:
    """``str(Path(base, *names))`` for a ``base`` that is already a Path's text, without building
    Paths when every name is one plain component (the common case: ids, ``seed0``).  Windows
    always takes the Path way (drive letters make "plain" harder to tell)."""
    # Every name plain: none empty, ``.`` or ``..``, none with a ``/`` (asked of the tuple and
    # of the names joined, without a Python loop over the names: twice per seed).
    if os.name == "nt" or "" in names or "." in names or ".." in names or "/" in "".join(names):
        return str(Path(base, *names))
    # os.path.join's result for plain names, without its per-name checks.
    return base + "/" + "/".join(names) if base and base[-1] != "/" else base + "/".join(names)


_SESSION_KEY = pytest.StashKey["MlexpSession"]()


def session_of(config: pytest.Config) -> MlexpSession:
    """The run's session (made in ``plugin.pytest_configure``).  A few calls per item: the
    stash is one dict lookup."""
    return config.stash[_SESSION_KEY]


def initially_selected(config: pytest.Config, state: MlexpSession) -> bool:
    """Whether this session runs experiment items at all (experiments are opt-in)."""
    if state.experiment_args:
        return True
    if config.getini("mlexp_select_by_default"):
        return True
    if config.getoption("lf", False) or config.getoption("failedfirst", False):
        cache = getattr(config, "cache", None)
        if cache is not None and cache.get(CACHE_RAN, False):
            return True
    return bool(state.named_plans)


# Compiled on first use (re's own cache): every pytest run imports this module, few look.
_EXPERIMENTS_KEY = rb"(?m)^[\"']?experiments[\"']?[ \t]*:"


def looks_like_plan(path: Path) -> bool:
    """A YAML file with a top-level ``experiments:`` key (read as bytes: no YAML parser at
    start-up; a plan written in flow style at the top is not recognised by name alone)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4 << 20)
    except OSError:
        return False
    return re.search(_EXPERIMENTS_KEY, head) is not None


def named_plan_files(config: pytest.Config, configured: Path) -> set[Path]:
    """The plan files named on the command line (SPEC section 2): ``research_plan.yaml`` files,
    the configured plan, and any YAML file with a top-level ``experiments:`` key, whatever its
    name; with or without a node id after ``::``."""
    invocation_dir = Path(config.invocation_params.dir)
    out: set[Path] = set()
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = path if path.is_absolute() else invocation_dir / path
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        resolved = path.resolve()
        if path.name == "research_plan.yaml" or resolved == configured or looks_like_plan(path):
            out.add(resolved)
    return out


class MlexpSession:
    """Per-run state and services (registered as ``mlexp-session``; its hooks: ``hooks.py``)."""

    def __init__(self, config: pytest.Config) -> None:
        config.stash[_SESSION_KEY] = self
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
        flag: str | None = config.getoption("mlexp_tracker")
        self.tracker_explicit = flag is not None  # given on the command line: it wins over the ini
        self.tracker_name: str = flag or str(config.getini("mlexp_tracker") or "wandb").strip()
        reuse_flag: str | None = config.getoption("mlexp_reuse", None)
        # --mlexp-reuse wins over the ini option; never under --stub (a wiring run measures nothing)
        self.reuse: bool = (
            reuse_flag == "yes" if reuse_flag is not None else bool(config.getini("mlexp_reuse"))
        ) and not self.stub
        self.handlers_dir: str = str(config.getini("mlexp_handlers") or "experiments")
        self.plan_setting: str = str(config.getini("mlexp_plan") or "research/research_plan.yaml")
        self.is_worker = hasattr(config, "workerinput")
        # Plan files named on the command line: then only they are collected (SPEC section 2).
        self.named_plans: set[Path] = named_plan_files(config, self.plan_path)
        self.contexts: dict[Path, PlanContext] = {}
        self._by_given: dict[Path | str, PlanContext] = {}  # context_for's memo, by the path as given
        self.collected: set[Path] = set()
        self.plan_warnings: list[str] = []
        self.notes: list[str] = []  # one-line messages shown after collection
        self.notes_end: list[str] = []  # shown at the end of the experiment summary
        self.records: dict[str, dict[str, Any]] = {}  # nodeid -> summary row, in run order
        self.ops: dict[str, ResultOp] = {}  # nodeid -> result op awaiting its report
        # Items pytest skipped without a result of ours (a skip mark, a conftest), by node id:
        # not "blocked", for the session's "everything was blocked" check (reporting.py).
        self.skipped: list[str] = []
        self.warned: list[str] = []
        # The first results write that failed (a full disk, a read-only folder): one error line,
        # the session stops after the item, and it exits 1 (reporting.py, hooks.py).
        self.write_error: str | None = None
        # nodeid -> (time.monotonic() deadline, what it was): an item's timeout mark (neighbours.py)
        self.deadlines: dict[str, tuple[float, str, float]] = {}  # node id -> (end, text, seconds)
        self.session: pytest.Session | None = None
        # An --experiment value that matched nothing: raised when collection finishes (hooks.py).
        self.selection_error: pytest.UsageError | None = None
        self.to_estimate: list[pytest.Item] | None = None  # --co: the items whose cost is estimated
        # The experiment items as selection.order_items last left them (it runs twice a session).
        self.ordered: list[pytest.Item] = []
        # Set by dispatch.dispatcher_of when experiments first run; closed at session end.
        self.dispatcher: Dispatcher | None = None
        self.selected = initially_selected(config, self)
        self._marks: set[str] = set()
        self._scrubber: Scrubber | None = None
        self._tracking: SessionTracking | None = None
        self._workdir_base: Path | None = None
        self._workdir_text: str | None = None
        self._fingerprinter: Fingerprinter | None = None

    def release(self) -> None:
        """The session is over (``pytest_unconfigure``): let go of the plans, their results and
        fingerprints, freed at once (each context breaks its reference cycles first,
        ``PlanContext.close``).  Kept alive, or left to the garbage collector, they cost the
        full collections that follow (pytest's own at unconfigure, the interpreter's at exit):
        a 1,000-item run 25 ms in all (README "Performance").  Anything asked afterwards (an
        in-process caller) reads the plan again."""
        for ctx in self.contexts.values():
            ctx.close()
        self.contexts.clear()
        self._by_given.clear()
        self.ops.clear()
        self.ordered = []  # the items: pytest lets go of them with its session
        self._scrubber = None
        self._fingerprinter = None

    # --- small services ---------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return (self.rootpath / self.plan_setting).resolve()

    def results_not_written(self, exc: BaseException) -> None:
        """A results file or journal could not be written: say it once, stop after this item.

        What was journaled before is kept (the next session replays it); nothing more is run,
        since its results could not be kept either."""
        if self.write_error is None:
            filename = getattr(exc, "filename", None)
            if getattr(exc, "path", None) is not None or not filename:  # store.ResultsWriteError
                text = str(exc)
            else:
                text = f"cannot write {filename} ({getattr(exc, 'strerror', None) or exc})"
            self.write_error = (
                f"mlexp: error: {text}; the session stopped here. Results journaled before are kept "
                "and read back by the next session: free space (or make the folder writable) and run again"
            )
            self.notes_end.append(self.write_error)
        session = self.session
        if session is not None and not session.shouldfail:
            session.shouldfail = "mlexp: results could not be written"

    def warn(self, message: str) -> None:
        """A warning for the end of the summary (each shown once)."""
        if message not in self.warned:
            self.warned.append(message)

    @property
    def tracking(self) -> SessionTracking:
        """The tracker (W&B, MLflow, a hook's, or none): decided once, here (trackers/)."""
        if self._tracking is None:
            from .trackers import SessionTracking

            self._tracking = SessionTracking(
                self.config,
                flag=self.wandb_mode,
                stub=self.stub,
                tracker=self.tracker_name,
                explicit=self.tracker_explicit,
                warn=self.warn,
            )
        return self._tracking

    @property
    def fingerprinter(self) -> Fingerprinter:
        """Reads the project's files for fingerprints, once per session; content hashes of
        ``deps:`` files are kept in pytest's cache folder by size and mtime."""
        if self._fingerprinter is None:
            from .fingerprint import Fingerprinter, HashCache

            cache = getattr(self.config, "cache", None)
            path = Path(cache.mkdir("mlexp")) / "deps-hashes.json" if cache is not None else None
            self._fingerprinter = Fingerprinter(self.rootpath, hashes=HashCache(path))
        return self._fingerprinter

    def save_caches(self) -> None:
        """Session end: keep the content hashes of ``deps:`` files for the next session."""
        if self._fingerprinter is not None:
            self._fingerprinter.hashes.save()

    @property
    def scrubber(self) -> Scrubber:
        """Hides credential env values and the plan's secret params (SPEC section 7)."""
        if self._scrubber is None:
            from .secrets import Scrubber, secret_param_values, secret_values

            values = secret_values()
            for ctx in self.contexts.values():
                for exp in ctx.plan.experiments:
                    for sub in exp.sub_experiments:
                        values += secret_param_values(sub.params) + secret_param_values(sub.stub_params)
                        if sub.sweep:  # the swept values of a secret-named param
                            values += secret_param_values({k: list(v) for k, v in sub.sweep.items()})
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

    def plans(self) -> tuple[Plan, ...]:
        """The plans loaded so far (collection loads every one before anything runs)."""
        return tuple(ctx.plan for ctx in self.contexts.values())

    def mark_collected(self, path: Path) -> None:
        self.collected.add(Path(path).resolve())

    def is_plan_file(self, path: Path) -> bool:
        """Whether pytest should collect ``path`` as a plan: any ``research_plan.yaml`` it walks,
        the configured plan, and a YAML file named on the command line that is a plan whatever
        its name.  When plan files are named, only those are collected."""
        if self.named_plans:
            return path.resolve() in self.named_plans
        return path.name == "research_plan.yaml" or path.resolve() == self.plan_path

    # --- items --------------------------------------------------------------------------------
    def blocked_reason(self, item: pytest.Item) -> str | None:
        """Why an experiment item may not run now (a gate, a dependency), or None."""
        if self.stub:
            return None  # --stub reports gates without enforcing them
        results = self.context_for(item.path).results
        return results.blocked_reason(item.experiment_id, getattr(item, "sub", None))  # type: ignore[attr-defined]

    def attach_op(self, item: pytest.Item, op: ResultOp) -> None:
        """Hand an item's result to whoever owns the results files."""
        if self.is_worker:
            # The op must ride on the report to the controller: OpCarrier (hooks.py) puts it
            # there; this worker's later items see it through the results view's overlay.
            setattr(item, "_mlexp_op", op)  # noqa: B010
            self.context_for(item.path).results.apply(op)
        else:
            # Picked up by pytest_runtest_logreport, by node id: no makereport wrapper around
            # every report of every item (three per item) just to carry it.
            self.ops[item.nodeid] = op

    def wiring_failures(self, experiment_id: str) -> list[str]:
        """Items of this run of the experiment that failed the stub's wiring check."""
        return [
            row["name"]
            for row in self.records.values()
            if row["experiment"] == experiment_id
            and row["kind"] == "sub"
            and row["status"] in ("failed", "error", "infra_error")
        ]
