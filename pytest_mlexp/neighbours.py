"""pytest plugins that re-run or time out tests, kept off experiment items (SPEC section 13).

* **pytest-rerunfailures** would run a failed experiment again (``--reruns 2``: three runs,
  three tracker runs, extra history entries; with a nondeterministic handler, "retry until it
  passes").  Experiment items run once, through pytest's own protocol; unit tests are re-run as
  asked.  One line says so when ``--reruns`` was given.
* **pytest-timeout**: its ini or command-line ``timeout`` is meant for unit tests, and its
  signal or thread method would fail an experiment with a traceback inside the plugin, or end
  the session without writing results.  It does not apply to experiment items (one line says
  so).  A ``timeout`` mark on the item (the plan's ``marks:``, ``"timeout(3600)"``, or one a
  conftest adds; the innermost wins) does:
  through pytest-timeout's own hook (``pytest_timeout_set_timer``) the item gets a deadline
  that its executor enforces, so an expiry is ``infra_error (timeout)``: the running seed is
  stopped (the worker killed), no further seed runs, and every other result is kept.

Registered only in sessions that run experiments, and only for the plugins that are loaded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol  # pytest's own module, loaded before any plugin

if TYPE_CHECKING:
    from .session import MlexpSession

__all__ = ["RerunGuard", "TimeoutGuard", "register"]


def _is_experiment(item: pytest.Item) -> bool:
    return getattr(item, "experiment_id", None) is not None  # SubItem, AssessmentItem


class RerunGuard:
    """Experiment items through pytest's own run protocol, before pytest-rerunfailures sees them."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        if not _is_experiment(item):
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        runtestprotocol(item, nextitem=nextitem)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True


class TimeoutGuard:
    """pytest-timeout's hooks for experiment items (see the module docstring)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state
        self._said = False

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        if not _is_experiment(item):
            return None  # a unit test: pytest-timeout's own timer
        seconds = getattr(settings, "timeout", None)
        # A timeout mark (the plan's, or one a conftest added) sets the item's limit; an
        # assessment carries its experiment's marks, and judging needs no timer.
        if item.get_closest_marker("timeout") is not None:
            if seconds and getattr(item, "sub", None) is not None:
                text = (
                    f"the item's timeout mark ran out ({seconds:g} s, pytest-timeout): "
                    "the running seed was stopped and no further seed was run"
                )
                limit = float(seconds)
                self.state.deadlines[item.nodeid] = (time.monotonic() + limit, text, limit)
        elif not self._said:
            self._said = True
            self.state.notes_end.append(
                f"mlexp: pytest-timeout's timeout ({seconds:g} s) applies to unit tests, not to experiment "
                'items; give an experiment a time limit with marks: ["timeout(3600)"] in the plan, or '
                "resources.timeout"
            )
        return True  # never pytest-timeout's signal or thread for an experiment item

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        if not _is_experiment(item):
            return None
        self.state.deadlines.pop(item.nodeid, None)
        return True


def register(config: pytest.Config, state: MlexpSession) -> None:
    """Register the guards for the plugins this session has loaded."""
    manager = config.pluginmanager
    if manager.hasplugin("rerunfailures"):
        manager.register(RerunGuard(), "mlexp-rerun-guard")
        reruns = config.getoption("reruns", None) or config.getoption("force_reruns", None)
        if not reruns:
            try:
                reruns = int(str(config.getini("reruns") or 0))
            except (ValueError, KeyError):
                reruns = 0
        if reruns:
            state.notes.append(
                f"mlexp: warning: --reruns {reruns} applies to unit tests only: experiment items are "
                "never re-run (a re-run is a new result and another tracker run)"
            )
    if manager.hasplugin("timeout"):
        manager.register(TimeoutGuard(state), "mlexp-timeout-guard")
