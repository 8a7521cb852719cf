"""The pytest hooks that act on the session: ordering, dispatch, results, the summary.

``plugin.py`` registers these objects in ``pytest_configure``; each hands the work to the module
that owns it (``selection``, ``dispatch``, ``results`` through the session's plan contexts,
``reporting``).  Every pytest run imports this module, so it imports nothing beyond pytest and
the standard library at import time: the rest loads when a plan is collected or run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from .session import CACHE_LF, OP_KEY

if TYPE_CHECKING:
    from .records import ResultOp
    from .session import MlexpSession

__all__ = ["EarlyOrder", "OpCarrier", "SessionHooks"]

SCRUBBER = "mlexp-report-scrubber"


class EarlyOrder:
    """A plain ``tryfirst`` ``pytest_collection_modifyitems``: it runs after random-order
    plugins (they shuffle in a wrapper, before its yield) and before the plain implementations,
    among them stepwise, whose ``--sw`` cuts the item list by position.  The session's wrapper
    orders again at the very end (after ``--ff``)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Dependency order before plugins that cut the list by position (``--sw``) see it.
        if self.state.selected:
            from .selection import order_items

            order_items(self.state, items)


class OpCarrier:
    """On an xdist worker: moves an item's op onto its report, as plain data, which xdist sends
    to the controller (registered only on workers; see ``plugin.py``)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, Any]:
        report = yield
        op: ResultOp | None = getattr(item, "_mlexp_op", None)
        if op is not None and (call.when == "call" or (call.when == "setup" and report.skipped)):
            setattr(report, OP_KEY, op.to_dict())
            delattr(item, "_mlexp_op")
        return report


class KeepInterrupted:
    """A Ctrl-C or SIGTERM that cancelled the work in flight ends the session as interrupted
    (exit code 2) under ``-x`` / ``--maxfail`` too: the cancelled item is a failure, and pytest,
    which checks ``shouldfail`` before ``shouldstop`` (and cannot unset it), would end the
    session as failed (1)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        try:
            return (yield)
        except session.Failed:
            dispatcher = self.state.dispatcher
            if dispatcher is not None and dispatcher.interrupted and session.shouldstop:
                raise session.Interrupted(session.shouldstop) from None
            raise


class SessionHooks:
    """The hooks that need the session's state (registered as ``mlexp-session``)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state
        self._record_row: Callable[..., None] | None = None
        self._op_from_dict: Callable[[Any], ResultOp] | None = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        state = self.state
        if state.selected:
            from .selection import inject_plan

            inject_plan(state, session, items)
        # Wrapping the cache plugin's --lf/--ff wrapper: we run after it reordered/filtered.
        res = yield
        if state.selected or state.collected:
            from .selection import select_and_order

            select_and_order(state, config, items)
        return res

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        state = self.state
        state.session = session
        if state.selected and not state.is_worker and getattr(session.config.option, "numprocesses", None):
            # The xdist controller collects nothing: check the plan's folders it knows of.
            from .reporting import check_results_folders

            check_results_folders(state, [])
        self._prepare_mlflow(session)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        # An xdist controller collects nothing: an --experiment value that matches nothing is
        # a usage error there before any worker starts.
        state = self.state
        if (
            state.experiment_args
            and not state.is_worker
            and getattr(session.config.option, "numprocesses", None)
        ):
            from .selection import check_experiment_args

            check_experiment_args(state, session.config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        state = self.state
        if state.selection_error is not None:
            # Before the terminal reports anything as collected (its hook runs after this one).
            raise state.selection_error
        # --mlexp-executor names something only once every conftest.py is loaded (executors
        # come from hooks): a usage error now, before anything runs.
        if state.executor_override and not state.is_worker:
            from .dispatch import dispatcher_of

            dispatcher_of(state).check_name(state.executor_override)
        config = session.config
        if state.selected and not config.pluginmanager.has_plugin(SCRUBBER) and state.scrubber:
            # What pytest shows of an experiment item (captured output, logs, locals): scrubbed,
            # in a session that has secrets to hide (credential env values, the plans' secret
            # params, known now).  Without any, the wrapper around every report of every item
            # would only cost time.
            from .scrubreports import ReportScrubber

            config.pluginmanager.register(ReportScrubber(state), SCRUBBER)
        if (
            state.selected
            and not state.is_worker
            and not config.option.collectonly
            and not (session.testsfailed and not config.option.continue_on_collection_errors)
        ):
            # A folder results cannot be written to: a usage error now, not after the first item.
            from .reporting import check_results_folders

            check_results_folders(state, session.items)
        if state.selected and not state.is_worker and session.config.option.collectonly:
            # --co ends with what running the selection would cost (SPEC section 11)
            from .items import SubItem

            state.to_estimate = [it for it in session.items if isinstance(it, SubItem)]

    def _prepare_mlflow(self, session: pytest.Session) -> None:
        # MLflow's store is made at session start, once, before pytest-xdist starts its workers
        # (its sessionstart is trylast) and before any executor does: several processes
        # creating a fresh sqlite store at once fail in MLflow's schema migration.
        state = self.state
        if (
            state.tracker_name != "mlflow"
            or not state.selected
            or state.is_worker
            or session.config.option.collectonly
            or (state.stub and not state.tracker_explicit)
        ):
            return
        from .trackers import TrackerError, open_mlflow_store

        try:
            open_mlflow_store(str(state.rootpath))
        except TrackerError as exc:
            # Without xdist the session's tracking says so before items run; with it the
            # workers decide, and only this process's summary reaches the terminal.
            if getattr(session.config.option, "dist", "no") != "no":
                state.warn(str(exc))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # Dispatch ahead (SPEC section 6): start process/modal work for every item whose
        # prerequisites are settled; items still report in order.  Not on xdist workers: each
        # runs only the items it is sent, so it submits an item's work when the item comes up.
        state = self.state
        config = session.config
        if session.testsfailed and not config.option.continue_on_collection_errors:
            return
        if state.selected and not state.is_worker and not config.option.collectonly and session.items:
            from .dispatch import dispatcher_of
            from .items import AssessmentItem, SubItem

            subs = [(i, it) for i, it in enumerate(session.items) if isinstance(it, SubItem)]
            assessments = None  # --maxfail=N, N > 1: a failed item's assessment is a failure too
            if (config.option.maxfail or 0) > 1:
                assessments = {
                    (str(it.path), it.experiment_id): i
                    for i, it in enumerate(session.items)
                    if isinstance(it, AssessmentItem)
                }
            dispatcher_of(state).start(session, subs, assessments)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The report of the phase that produced the op: the call, or a setup that skipped (a
        # blocked item).  From an xdist worker (or a crashed one) it arrives on the report.
        state = self.state
        dispatcher = state.dispatcher
        if dispatcher is not None and (dispatcher.unreported or dispatcher.withdrawn):
            dispatcher.unreported.pop(report.nodeid, None)  # reached: pytest reports it
            dispatcher.withdrawn.pop(report.nodeid, None)
        raw = getattr(report, OP_KEY, None)
        op: ResultOp | None
        if raw is not None:
            op = self._from_dict(raw)
        elif state.ops and (report.when == "call" or report.skipped):
            op = state.ops.pop(report.nodeid, None)
        else:
            op = None
        if op is None:  # the other reports, and every non-plan test
            if report.outcome == "skipped":
                state.skipped.append(report.nodeid)
            return
        ctx = state.context_for(op.plan)
        if not state.is_worker:
            try:
                ctx.results.apply(op)
            except OSError as exc:  # a full disk, a read-only folder (store.ResultsWriteError)
                state.results_not_written(exc)
            # tracker warnings from wherever the seed ran, printed once in the summary
            for line in op.warnings:
                state.warn(line)
        record = self._record_row
        if record is None:
            from .reporting import record_row

            record = self._record_row = record_row
        record(state, ctx, report, op)
        if raw is not None and not state.is_worker:
            # Applied and summarised: the terminal reporter keeps every report to the end, and
            # with it a second copy of every result entry (a worker's report must keep it: xdist
            # sends it to the controller after this hook).
            delattr(report, OP_KEY)

    def _from_dict(self, raw: Any) -> ResultOp:
        convert = self._op_from_dict
        if convert is None:
            from .records import ResultOp

            convert = self._op_from_dict = ResultOp.from_dict
        return convert(raw)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        dispatcher = state.dispatcher
        ran = dispatcher is not None and dispatcher.started
        if not state.is_worker and (state.records or ran or _lf_sets(state)):
            from .reporting import finish_session

            finish_session(state, session)
        elif dispatcher is not None:
            # An xdist worker writes no results (its controller does), but its executors are
            # its own: idle warm workers tidy up and exit, and its scratch folder goes.  So
            # does the fork server that collection started (dispatch.warm_up) for a run loop
            # that never started (a collection error, every item deselected).
            dispatcher.close()
        state.save_caches()
        # After the results are written (teardown may wait on uploads): every process that ran
        # seeds ends its tracker here; W&B's offline files are complete only after teardown.
        if "pytest_mlexp.trackers" in sys.modules:
            from .trackers import teardown_all

            for line in teardown_all():
                state.warn(line)
        if state.write_error is not None:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # never 0 after a lost write

    @pytest.hookimpl(tryfirst=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # After everything is written and shown; first, so that pytest's own full garbage
        # collection at unconfigure has less to go over (see MlexpSession.release).
        self.state.release()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        state = self.state
        if state.to_estimate is not None:
            from .reporting import estimate_line

            terminalreporter.write_line(estimate_line(state, state.to_estimate))
        if not (state.records or state.warned or state.notes_end):
            return  # a run without experiments: nothing to say (and nothing more to import)
        from .reporting import terminal_summary

        terminal_summary(state, terminalreporter)

    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str]:
        # Deciding the tracking mode here shows its one-line notice before anything runs.
        state = self.state
        tracking = state.tracking.notes if state.selected and not state.is_worker else []
        return [f"mlexp: warning: {w}" for w in state.plan_warnings] + state.notes + tracking


def _lf_sets(state: MlexpSession) -> bool:
    """Whether an earlier session left experiment --lf sets that this one must keep in step."""
    cache = getattr(state.config, "cache", None)  # absent under -p no:cacheprovider
    return cache is not None and cache.get(CACHE_LF, None) is not None
