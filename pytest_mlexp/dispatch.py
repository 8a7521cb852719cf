"""The dispatcher: hands items' seeds to executors, and starts work ahead (SPEC section 6).

Items always report in plan order; the dispatcher only decides *when work starts*.  At the
start of the run loop it submits, for the concurrent executors (process, modal, a plugin's),
every selected item whose prerequisites are settled and whose handler needs only ``runner``;
an item whose prerequisites run in this session is submitted as soon as the last of them has
reported.  When pytest reaches an item, the item waits for its handles (or submits now).

"Prerequisites" are the plan's prerequisite graph (``graph.py``): the experiments whose
verdicts can block the item's experiment, and the sub-experiments its own waits for.

Under ``-x`` / ``--maxfail=N`` a seed that fails ahead (in a worker, while pytest still waits on
an earlier item) means pytest will stop at that item, or earlier: work submitted ahead for the
items after it that has not started yet is withdrawn then, not when pytest gets there.  The
prediction may be wrong (a plugin turned the failure into a pass): when pytest goes past the
predicted stop, what was withdrawn or held back is submitted ahead again, and no later
failure withdraws anything.

Items that may be skipped (a ``skip`` or ``skipif`` mark, ``xfail(run=False)``) are never
submitted ahead: pytest decides when it reaches them, and a skipped item's handler must not run.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .executors import UnknownExecutor, builtin_executor
from .executors.base import Executor, ExecutorContext, FutureHandle, Handle, Job, PoolExecutor, infra_outcome
from .executors.local import LocalExecutor, run_local
from .graph import graph_of
from .live import shown
from .records import SeedOutcome, as_outcome
from .scratch import sweep_stale
from .skipmarks import skipped_by_marks
from .tasks import item_tasks

if TYPE_CHECKING:
    import pytest

    from .execution import Task
    from .model import Plan
    from .session import MlexpSession

__all__ = ["Dispatcher", "dispatcher_of"]


def _logged_here(ex: Executor, task: Task) -> bool:
    """Whether the seed's tracked run is logged by this process, from its outcome: its tracker
    writes to a local file (an MLflow sqlite or file store) that the executor's machines cannot
    reach."""
    return bool(task.tracking.get("local_store")) and not ex.shares_filesystem


def _route_tracking(ex: Executor, tasks: Sequence[Task]) -> list[Task]:
    """Tell the workers of seeds logged here (``_logged_here``) not to open a run themselves."""
    out = list(tasks)
    for task in out:
        if _logged_here(ex, task):
            task.tracking = {**task.tracking, "log_from": "owner"}
    return out


def _time_of_its_own(handles: Sequence[Handle], deadline: tuple[float, str, float]) -> float | None:
    """When an item's time runs out: its limit counted from its first seed's start, whenever
    that was (before pytest reached the item, for work submitted ahead: under ``local`` that
    time would have been the item's own), never counting the time its seeds waited for a
    worker; while none has started, a moment from now (look again).  Where a start is only
    the submission to a back end (``started_exactly`` false: a cluster's queue may hold the
    job), not before the item's set-up.  None for a handle that does not say when it started
    (a third party's): the limit from the item's set-up."""
    starts: list[float] = []
    exact = True
    for handle in handles:
        if not isinstance(handle, FutureHandle):
            return None
        if handle.started_at is not None:
            starts.append(handle.started_at)
            exact = exact and handle.started_exactly
    if not starts:
        return time.monotonic() + 0.25
    own = min(starts) + deadline[2]
    return own if exact else max(deadline[0], own)


def _ran_for(handle: Handle, since: float) -> float:
    """How long a seed ran (0 when it never started, or its handle does not say); from
    ``since`` (the item's set-up) at the earliest where its start is only its submission."""
    start = getattr(handle, "started_at", None)
    if start is None:
        return 0.0
    if not getattr(handle, "started_exactly", False):
        start = max(float(start), since)
    end: float = getattr(handle, "finished_at", None) or time.monotonic()
    return round(max(0.0, end - float(start)), 4)


def _ran_past_text(handle: Handle, limit: float) -> str:
    took = _ran_for(handle, 0.0)  # exact starts only (_ran_past)
    return (
        f"the item's timeout mark ran out ({limit:g} s, pytest-timeout) while its seed ran ahead, "
        f"before pytest reached the item (it took {took:.1f} s): its result is not kept, as the "
        "seed would have been stopped at the limit under local"
    )


def _ran_past(handle: Handle, end: float) -> bool:
    """Whether a seed finished (ahead, unwatched) after its item's time had run out: under
    ``local`` it would have been stopped then."""
    if not getattr(handle, "started_exactly", False):
        return False  # a remote job's start is its submission: when it really ran is unknown
    finished = getattr(handle, "finished_at", None)
    return finished is not None and finished > end and not getattr(handle, "cancelled", False)


def _drop_progress_files(handles: Sequence[Handle]) -> None:
    """Remove the live line's progress files of finished seeds: the line follows one seed at a
    time, and removes only the files of those it followed."""
    for handle in handles:
        task = getattr(getattr(handle, "job", None), "task", None)
        path = getattr(task, "progress_file", None)
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def warm_up(state: MlexpSession, plan: Plan) -> None:
    """Start the process executor's fork server while collection goes on, when a sub-experiment
    of ``plan`` that ``--experiment`` may select runs under it: the server's interpreter start
    and imports (~0.1 s) are then done by the time the run loop hands out the first seed,
    instead of being in its way (see :func:`may_run_under`).  Nothing under ``--co``; a
    plugin's executor named ``process`` is left alone."""
    if state.config.option.collectonly or not may_run_under(state, plan, "process"):
        return
    from .executors.process import ProcessExecutor

    try:
        ex = dispatcher_of(state).executor("process")
    except Exception:  # an executor that cannot be made: the items report it when they run
        return
    if isinstance(ex, ProcessExecutor):
        ex.pool.start()


def may_run_under(state: MlexpSession, plan: Plan, executor: str) -> bool:
    """Whether a sub-experiment of ``plan`` that ``--experiment`` may select runs under
    ``executor``.  ``--experiment`` values that are all experiment or sub-experiment ids narrow
    it down; any other form (``all``, a short id, a prefix) counts every sub-experiment."""
    subs = [sub for exp in plan.experiments for sub in exp.sub_experiments]
    named = set(state.experiment_args)
    if named and all(plan.has_experiment(v) or plan.has_sub(v) for v in named):
        subs = [s for s in subs if s.experiment_id in named or s.id in named]
    return any(state.executor_for(sub) == executor for sub in subs)


def dispatcher_of(state: MlexpSession) -> Dispatcher:
    """The session's dispatcher, made on first use (closed at session end by reporting.py)."""
    found = state.dispatcher
    if found is None:
        found = state.dispatcher = Dispatcher(state)
    return found


class Dispatcher:
    """Owns the session's executor instances and the work submitted ahead."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state
        self.config = state.config
        self._executors: dict[str, Executor] = {}
        self._ahead: dict[str, list[Handle]] = {}  # nodeid -> handles submitted ahead
        # nodeid -> the item and tasks submitted ahead, until pytest reports anything of the item
        # (hooks.py drops it then): what finished_ahead may keep at session end
        self.unreported: dict[str, tuple[pytest.Item, list[Task]]] = {}
        self._position: dict[str, int] = {}  # nodeid -> index in the session's items
        self._waiting: list[tuple[int, int, pytest.Item]] = []  # (ready at position, position, item)
        self._stopped = False
        self.interrupted: str | None = None  # why Ctrl-C or SIGTERM cancelled the work in flight
        # -x / --maxfail: positions of items with a seed that failed ahead; the position pytest
        # will stop at, at the latest; the items withdrawn for it and not reached (yet).  The
        # lock guards these and _ahead, which an executor's thread reads when a seed fails.
        self._maxfail: int = getattr(self.config.option, "maxfail", 0) or 0
        self._lock = threading.Lock()
        self._failing: set[int] = set()
        self._stop_at: int | None = None
        self.withdrawn: dict[str, pytest.Item] = {}
        self._held: list[tuple[int, pytest.Item]] = []  # ready, but past the predicted stop
        # The environment and folder work submitted ahead runs in (set by start())
        self._start_state: tuple[dict[str, str] | None, str | None] = (None, None)
        # sub-experiment item's position -> its experiment's assessment's (--maxfail=N, N > 1:
        # a failed sub-experiment fails its assessment too, a second failure)
        self._assessment_of: dict[int, int] = {}
        self._session: pytest.Session | None = None
        # Task and log files a killed session left (they may hold raw params) go now.
        sweep_stale()
        # What an executor may know of the session (executors never see the session itself).
        self.context = ExecutorContext(
            root=state.rootpath, handlers_dir=state.handlers_dir, plans=state.plans
        )

    @property
    def started(self) -> bool:
        """Whether the run loop started (``start``): made during collection (``warm_up``), a
        dispatcher may have nothing to report."""
        return self._session is not None

    # --- registry -------------------------------------------------------------------------------
    def executor(self, name: str) -> Executor:
        """The session's executor called ``name``: a plugin's hook first (so a conftest.py can
        replace a built-in, e.g. modal with a fake backend), then the built-ins."""
        ex = self._executors.get(name)
        if ex is None:
            found = self.config.hook.pytest_mlexp_executor(name=name, config=self.config)
            if found is None:
                found = builtin_executor(name, self.config)
            if found is None:
                raise UnknownExecutor(name)
            if not isinstance(found, Executor):
                raise TypeError(
                    f"pytest_mlexp_executor returned {type(found).__name__} for {name!r}; "
                    "it must return a pytest_mlexp.Executor"
                )
            found.bind(self.context)
            ex = self._executors[name] = found
        return ex

    def check_name(self, name: str) -> None:
        """A usage error for an executor name that nothing provides (``--mlexp-executor``)."""
        import pytest

        try:
            self.executor(name)
        except UnknownExecutor as exc:
            raise pytest.UsageError(f"--mlexp-executor: {exc}") from None

    # --- dispatch ahead ---------------------------------------------------------------------------
    def start(
        self,
        session: pytest.Session,
        subs: Sequence[tuple[int, pytest.Item]],
        assessments: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Submit ahead what can start now; remember what waits for a prerequisite in this run.
        ``subs``: the session's sub-experiment items with their positions; ``assessments``:
        (plan path, experiment id) -> the position of its assessment item."""
        self._session = session
        self._position = {it.nodeid: i for i, it in subs}
        ahead = [(i, item) for i, item in subs if self._executor_ahead(item) is not None]
        if not ahead:
            return  # every item runs its own seeds when pytest reaches it (the local executor)
        # Work submitted ahead runs in the state of the session's start: later it would be
        # submitted while another item's fixtures are set up (its folder, its variables).
        try:
            self._start_state = (dict(os.environ), os.getcwd())
        except OSError:
            self._start_state = (dict(os.environ), None)
        if self._maxfail > 1 and assessments:
            for i, it in ahead:
                found = assessments.get((str(it.path), it.experiment_id))  # type: ignore[attr-defined]
                exp = self.state.context_for(it.path).plan.experiment(it.experiment_id)  # type: ignore[attr-defined]
                if found is not None and exp.accepted is None:  # accepted: its assessment passes
                    self._assessment_of[i] = found
        by_exp: dict[tuple[str, str], list[int]] = {}
        by_sub: dict[tuple[str, str], list[int]] = {}
        for i, it in subs:
            plan = str(it.path)
            by_exp.setdefault((plan, it.experiment_id), []).append(i)  # type: ignore[attr-defined]
            by_sub.setdefault((plan, it.sub.id), []).append(i)  # type: ignore[attr-defined]
        for i, item in ahead:
            ready = 1 + max(self._prerequisite_positions(item, by_exp, by_sub), default=-1)
            heapq.heappush(self._waiting, (ready, i, item))
        self.advance(0)

    def _prerequisite_positions(
        self,
        item: pytest.Item,
        by_exp: Mapping[tuple[str, str], list[int]],
        by_sub: Mapping[tuple[str, str], list[int]],
    ) -> list[int]:
        """Positions of this session's items whose results can unblock (or block) ``item``."""
        graph = graph_of(self.state.context_for(item.path).plan)
        key = str(item.path)
        exp_id: str = item.experiment_id  # type: ignore[attr-defined]
        sub_id: str = item.sub.id  # type: ignore[attr-defined]
        out = [p for e in graph.blocking_experiments(exp_id) for p in by_exp.get((key, e), ())]
        out += [p for d in graph.sub_prerequisites(sub_id) for p in by_sub.get((key, d), ())]
        return out

    def _executor_ahead(self, item: pytest.Item) -> Executor | None:
        """The item's executor when its work may start before pytest reaches it."""
        try:
            ex = self.executor(self.state.executor_for(item.sub))  # type: ignore[attr-defined]
            if not ex.concurrent:
                return None  # local: nothing starts before pytest reaches it (no handler asked)
            ref = self.state.context_for(item.path).handler(item.sub)  # type: ignore[attr-defined]
        except LookupError:  # unknown executor, missing handler: the item reports it
            return None
        import pytest  # loaded: this runs in a pytest session

        # A fixture that reaches the item (one its handler asks for, an autouse one, a plan
        # usefixtures mark) is set up before its seeds run, as around any test: such an item
        # submits its work when pytest reaches it (a database a session fixture starts, a
        # variable it sets, are there by then).
        if (
            isinstance(item, pytest.Function)  # items.FixtureSubItem: a fixture reaches it
            or any(n != "runner" for n in ref.fixture_names)
            or skipped_by_marks(item)
        ):
            return None
        return ex

    def advance(self, position: int) -> None:
        """Items before ``position`` have reported: submit what waited on them and is unblocked."""
        session = self._session
        while self._waiting and self._waiting[0][0] <= position:
            _, pos, item = heapq.heappop(self._waiting)
            if self._stopped or (session is not None and session.shouldstop):
                self._waiting.clear()
                return
            if pos < position or item.nodeid in self._ahead:
                continue  # already running or reported: it submits (or submitted) its own work
            if self.state.blocked_reason(item) is not None:
                continue  # its setup skips it
            self._submit_ahead(item, pos)

    def _submit_ahead(self, item: pytest.Item, position: int) -> None:
        ex = self._executor_ahead(item)
        if ex is None:
            return
        sub = item.sub  # type: ignore[attr-defined]
        ref = self.state.context_for(item.path).handler(sub)
        tasks = _route_tracking(ex, item_tasks(item, ref, progress=shown(item.config)))
        nodeid = item.nodeid
        environ, cwd = self._start_state
        if environ is not None:  # what pytest sets while the item's call runs, as under local
            environ = {**environ, "PYTEST_CURRENT_TEST": f"{nodeid} (call)"}
        jobs = [Job(task, sub.resources, priority=position, environ=environ, cwd=cwd) for task in tasks]
        # Submitted under the lock: a failure ahead that ends meanwhile waits for the item to
        # be in _ahead before it decides what to withdraw, and the worker thread it ended in
        # cannot take this item's seeds first (it is the thread that waits).
        with self._lock:
            if self._stop_at is not None and position > self._stop_at:
                self._held.append((position, item))  # past where -x will stop: see _mispredicted
                return
            handles = ex.submit_all(jobs)  # one unit: the slurm executor's job array
            self._ahead[nodeid] = handles
            self.unreported[nodeid] = (item, tasks)
        # A failure of an xfail-marked item does not count towards --maxfail.
        if self._maxfail and item.get_closest_marker("xfail") is None:
            watch = functools.partial(self._seed_done, position)
            for handle in handles:
                if isinstance(handle, FutureHandle):  # a third party's own handle: not watched
                    handle.add_done_callback(watch)

    def _seed_done(self, position: int, handle: FutureHandle) -> None:
        """In an executor's thread, as a seed submitted ahead ends: a failed one counts."""
        outcome = as_outcome(handle.result(), handle.job.task.seed, "executor")
        if not outcome.ok and (outcome.error or {}).get("kind") != "cancelled":
            self._failed(position)

    def _failed(self, position: int) -> None:
        """The item at ``position`` will fail.  Once ``--maxfail`` items will, pytest stops at
        the last of them or before, so the work of later items that has not started is
        withdrawn: cancelled, and forgotten (an item that pytest reaches after all submits its
        own).  Runs in an executor's thread, or in the main thread (an item's time ran out)."""
        with self._lock:
            if not self._maxfail:
                return  # -x not given, or a prediction already went wrong (_mispredicted)
            self._failing.add(position)
            if position in self._assessment_of:
                self._failing.add(self._assessment_of[position])
            if len(self._failing) < self._maxfail:
                return
            stop = sorted(self._failing)[self._maxfail - 1]
            if self._stop_at is not None and stop >= self._stop_at:
                return
            self._stop_at = stop
            for nodeid in [n for n in self._ahead if self._position.get(n, -1) > stop]:
                self._withdraw(nodeid)

    def _withdraw(self, nodeid: str) -> None:
        """Take an item's work off its pool's queue, all of its seeds or none: one that started
        goes on (kept if it finishes, cancelled if it still runs when the session stops).
        Called with the lock held."""
        got = self.unreported.get(nodeid)
        if got is None:
            return
        ex = self._executors.get(self.state.executor_for(got[0].sub))  # type: ignore[attr-defined]
        if isinstance(ex, PoolExecutor) and ex.withdraw(self._ahead[nodeid]):
            del self._ahead[nodeid]
            del self.unreported[nodeid]
            self.withdrawn[nodeid] = got[0]

    def _mispredicted(self, position: int) -> None:
        """pytest went past the position it was to stop at (a failure ahead did not fail its
        item): submit ahead again what was withdrawn or held back and is still to come, and
        withdraw nothing more this session."""
        with self._lock:
            self._maxfail = 0
            self._stop_at = None
            again = [(self._position[n], it) for n, it in self.withdrawn.items()]
            again = [(p, it) for p, it in again if p > position]
            for _, it in again:
                self.withdrawn.pop(it.nodeid, None)
            again += [(p, it) for p, it in self._held if p > position]
            self._held.clear()
        for pos, it in sorted(again, key=lambda pair: pair[0]):
            if it.nodeid not in self._ahead and self.state.blocked_reason(it) is None:
                self._submit_ahead(it, pos)

    # --- running an item ------------------------------------------------------------------------
    def run(
        self, item: pytest.Item, executor: str, tasks: Sequence[Task], fixtures: Mapping[str, Any]
    ) -> list[SeedOutcome]:
        """The outcomes of the item's seeds, in seed order (waits for work submitted ahead)."""
        nodeid = item.nodeid  # a property that builds the text: asked once
        position = self._position.get(nodeid)
        if position is not None and self._stop_at is not None and position > self._stop_at:
            self._mispredicted(position)
        if position is not None and self._waiting and not item.session.shouldstop:
            self.advance(position)
        try:
            ex = self.executor(executor)
        except UnknownExecutor as exc:
            return [SeedOutcome.failure(t.seed, "executor", exc, traceback="") for t in tasks[:1]]
        handles = None
        if self._ahead or self.withdrawn:
            with self._lock:
                handles = self._ahead.pop(nodeid, None)
                self.withdrawn.pop(nodeid, None)  # reached after all: its seeds run now
        self.unreported.pop(nodeid, None)
        deadline = self.state.deadlines.get(nodeid)  # a timeout mark (neighbours.py)
        if handles is None and ex.__class__ is LocalExecutor:
            # The built-in local executor runs each seed inside submit() anyway: the same calls,
            # without a Job and a handle per seed.
            if deadline is None:
                return [run_local(task, fixtures) for task in tasks]
            return self._local_until(tasks, fixtures, deadline)
        if handles is None:
            tasks = _route_tracking(ex, tasks)
            resources: Mapping[str, Any] = getattr(getattr(item, "sub", None), "resources", {}) or {}
            blob = None
            if fixtures and not ex.supports_fixtures:
                from .remote import FixtureError, pack_fixtures

                try:
                    blob = pack_fixtures(fixtures, executor)
                except FixtureError as exc:
                    return [SeedOutcome.failure(t.seed, "fixture", exc, traceback="") for t in tasks[:1]]
            jobs = [
                Job(task, resources, fixtures=fixtures, fixtures_blob=blob, priority=position or 0)
                for task in tasks
            ]
            handles = ex.submit_all(jobs)
        outcomes = self._wait(
            item, handles, tasks, follow=executor != "local", deadline=deadline, position=position
        )
        _drop_progress_files(handles)
        if any(_logged_here(ex, t) for t in tasks):
            from .trackers import replay_outcome

            outcomes = [
                replay_outcome(t, o) if _logged_here(ex, t) else o
                for t, o in zip(tasks, outcomes, strict=False)
            ]
        return outcomes

    @staticmethod
    def _local_until(
        tasks: Sequence[Task], fixtures: Mapping[str, Any], deadline: tuple[float, str, float]
    ) -> list[SeedOutcome]:
        """Seeds in this process until the item's deadline: the seed running when it passes is
        stopped (infra_error, timeout) and no further seed runs."""
        out = []
        for task in tasks:
            outcome = run_local(task, fixtures, deadline=deadline[0], deadline_text=deadline[1])
            out.append(outcome)
            if time.monotonic() >= deadline[0] and not outcome.ok:
                break
        return out

    def _results(
        self,
        handles: Sequence[Handle],
        tasks: Sequence[Task],
        deadline: tuple[float, str, float] | None,
        position: int | None,
    ) -> list[Any]:
        """Every handle's outcome; past the item's deadline, what has not finished is cancelled
        (workers killed) and recorded as an infra_error (timeout)."""
        out: list[Any] = []
        if deadline is None:
            out += [h.result() for h in handles]
            self._settled(handles)
            return out
        own = _time_of_its_own(handles, deadline)
        end = deadline[0] if own is None else own
        for index, handle in enumerate(handles):
            try:
                while True:
                    try:
                        got = handle.result(timeout=max(0.0, end - time.monotonic()))
                        break
                    except TimeoutError:
                        later = _time_of_its_own(handles, deadline)
                        if later is None or later <= time.monotonic():
                            end = end if later is None else later
                            raise
                        end = later
                # A seed that ran ahead, unwatched, for longer than the item's limit (it has
                # started, so its item's end is known now, not a look-again moment).
                own = _time_of_its_own(handles, deadline)
                if own is not None and _ran_past(handle, own):
                    end = own
                    raise TimeoutError
                out.append(got)
            except TimeoutError:
                if position is not None:
                    self._failed(position)  # before the cancel frees a worker for later items
                for other in handles[index:]:
                    other.cancel()
                for other, task in zip(handles[index:], tasks[index:], strict=False):
                    got = as_outcome(other.result(), task.seed, "executor")
                    set_up = deadline[0] - deadline[2]
                    if _ran_past(other, end):
                        text = _ran_past_text(other, deadline[2])
                        got = infra_outcome(task, "timeout", text, duration_s=_ran_for(other, set_up))
                    elif not got.ok and (got.error or {}).get("kind") == "cancelled":
                        got = infra_outcome(task, "timeout", deadline[1], duration_s=_ran_for(other, set_up))
                    out.append(got)
                break
        self._settled(handles)
        return out

    @staticmethod
    def _settled(handles: Sequence[Handle]) -> None:
        """Wait until every handle's callbacks have run.  A seed that fails ahead withdraws the
        work of later items in one (``_seed_done``), in an executor's thread that may not get
        the CPU for a while: the item must not report first (under ``-x`` the session would end
        before the withdrawal, and its summary line would be missing)."""
        for handle in handles:
            if isinstance(handle, FutureHandle):
                handle.wait_done()

    @staticmethod
    def _follow(handles: Sequence[Handle], until: float | None = None) -> None:
        """While seeds run in worker processes, replay what they log into the live line."""
        from .execution import observers
        from .progress import Follower

        watch = observers.get()
        if watch is None:
            return  # no live line (not a terminal, or -s): just wait
        followers: dict[int, Follower] = {}
        try:
            while not all(h.done() for h in handles) and (until is None or time.monotonic() < until):
                h = next(h for h in handles if not h.done())  # one seed at a time on the line
                job = getattr(h, "job", None)
                if job is not None and job.task.progress_file:
                    if id(h) not in followers:
                        metric_sinks, progress_sinks = watch(job.task)
                        followers[id(h)] = Follower(
                            Path(job.task.progress_file), metric_sinks, progress_sinks
                        )
                    followers[id(h)].poll()
                time.sleep(0.1)
        finally:
            for follower in followers.values():
                follower.close()

    def _wait(
        self,
        item: pytest.Item,
        handles: Sequence[Handle],
        tasks: Sequence[Task],
        *,
        follow: bool = False,
        deadline: tuple[float, str, float] | None = None,
        position: int | None = None,
    ) -> list[SeedOutcome]:
        try:
            if follow:
                self._follow(handles, None if deadline is None else deadline[0])
            counted = None  # the item's timeout mark, run out, is a failure for --maxfail
            if deadline is not None and self._maxfail and item.get_closest_marker("xfail") is None:
                counted = position
            raw = self._results(handles, tasks, deadline, counted)
        except KeyboardInterrupt as exc:
            # Ctrl-C, or SIGTERM (the plugin turns it into KeyboardInterrupt): cancel everything
            # in flight and end the session as interrupted after this item, which reports its
            # seeds as infra_error "cancelled" (those that finished keep their results).
            reason = str(exc) or "Ctrl-C"
            self.cancel_all()
            item.session.shouldstop = f"interrupted ({reason}): work in flight was cancelled"
            self.interrupted = reason  # hooks.KeepInterrupted: exit code 2 also under -x
            raw = [h.result() for h in handles]
        # A third party's handle may return the outcome as a mapping (its to_dict() shape).
        return [as_outcome(out, task.seed, "executor") for out, task in zip(raw, tasks, strict=False)]

    def finished_ahead(self) -> list[tuple[pytest.Item, list[SeedOutcome]]]:
        """Items submitted ahead that pytest never reached (``-x``, Ctrl-C: no report of them at
        all, not even a setup's) but whose every seed finished, none of them cancelled, with
        their outcomes: work that is done, and not to be lost."""
        out = []
        with self._lock:
            ahead = list(self._ahead.items())
        for nodeid, handles in ahead:
            got = self.unreported.get(nodeid)
            if got is None or not handles or not all(h.done() for h in handles):
                continue
            item, tasks = got
            outcomes = [
                as_outcome(h.result(), task.seed, "executor") for h, task in zip(handles, tasks, strict=False)
            ]
            if any((o.error or {}).get("kind") == "cancelled" for o in outcomes):
                continue  # stopped midway: what ran is not a result
            out.append((item, outcomes))
        return out

    def running_ahead(self) -> list[pytest.Item]:
        """Items submitted ahead that pytest never reached whose seeds are running still: the
        session's end (``-x``, Ctrl-C) stops them, and nothing of them is recorded."""
        out = []
        with self._lock:
            ahead = list(self._ahead.items())
        for nodeid, handles in ahead:
            got = self.unreported.get(nodeid)
            running = not all(h.done() for h in handles) and any(
                getattr(h, "started", False) for h in handles
            )
            if got is not None and running:
                out.append(got[0])
        return out

    def cancel_all(self) -> None:
        """Stop new submissions and cancel everything queued or running."""
        self._stopped = True
        self._waiting.clear()
        with self._lock:
            ahead = list(self._ahead.values())
        for handles in ahead:
            for h in handles:
                h.cancel()
        for ex in self._executors.values():
            ex.close()

    def close(self) -> None:
        """Session end: whatever is still queued or running is cancelled (processes killed,
        Modal calls cancelled, the Modal app stopped)."""
        self.cancel_all()
        with self._lock:
            for handles in self._ahead.values():
                _drop_progress_files(handles)  # of items pytest never reached (-x, Ctrl-C)
            self._ahead.clear()
            self.unreported.clear()
