"""Secrets out of what pytest itself shows of an experiment item (SPEC section 14, "Secrets").

pytest keeps an item's captured stdout, stderr and log records on its report, and shows them
under ``-rA``, under a failure and in JUnit with ``junit_logging``; ``--showlocals`` adds the
local variables of every frame of a traceback, the plugin's own included (``params``).  A
handler that prints its ``HF_TOKEN`` would put it in all of those.  This wrapper scrubs the
report of an experiment item (credential environment values, the plan's secret params and the
swept values of secret-named params) before anything reads it.  Registered only in sessions
that run experiments; unit-test items are never touched.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .session import MlexpSession

__all__ = ["ReportScrubber"]


class ReportScrubber:
    """The ``pytest_runtest_makereport`` wrapper (registered as ``mlexp-report-scrubber``)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, Any]:
        report = yield
        # Experiment items (SubItem, AssessmentItem) carry their experiment's id.
        if getattr(item, "experiment_id", None) is None:
            return report
        scrubber = self.state.scrubber
        if not scrubber:
            return report  # nothing secret in this session: nothing to do
        if report.sections:
            report.sections = [(title, scrubber.scrub(text)) for title, text in report.sections]
        longrepr = report.longrepr
        if longrepr is not None and not isinstance(longrepr, tuple):  # (a skip's location)
            # Rendered once to text (with --showlocals: every frame's locals); kept as the rich
            # object when there is nothing to hide.
            text = str(longrepr)
            clean = scrubber.scrub(text)
            if clean != text:
                report.longrepr = clean
        return report
