"""The demo study's conftest.py (research/, experiments/): what its handlers request, and where
its Modal items run.

* ``digits``: the digits data set, split once per session and shared by every handler that
  names it (``def p1_logreg(runner, digits)``); ``digits(runner.params)`` gives the split the
  params ask for (``experiments.common.Digits``).
* Modal items through the fake back end: with ``MLEXP_FAKE_MODAL=1`` (the default when ``CI`` is
  set; ``MLEXP_FAKE_MODAL=0`` turns it off), the ``modal`` executor runs each call in a thread
  of this process through the same code path as real Modal (``pytest_mlexp.executors.
  modal_fake``): ``pytest --experiment all --mlexp-executor modal`` then checks the demo's Modal
  wiring with no account and no network.

pytest loads this file in every run in this repository, the plugin's own test suite too, so it
imports nothing heavy (the data set and the executor modules load when used) and the suite's
tests never ask for ``digits`` (they run their own projects in temporary folders).
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def _fake_modal() -> bool:
    setting = os.environ.get("MLEXP_FAKE_MODAL", "").strip().lower()
    if setting:
        return setting not in ("0", "false", "no", "off")
    return bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def digits() -> Any:
    """The demo's data: ``digits(params)`` is the train/validation/test split ``params`` name."""
    from experiments.common import Digits

    return Digits()


def pytest_mlexp_executor(name: str, config: pytest.Config) -> Any:
    if name != "modal" or not _fake_modal():
        return None  # the real Modal executor (or another name's)
    from pytest_mlexp.executors.modal import ModalExecutor
    from pytest_mlexp.executors.modal_fake import FakeModalBackend

    return ModalExecutor(config, backend=FakeModalBackend())


def pytest_report_header(config: pytest.Config) -> str | None:
    if _fake_modal() and config.getoption("mlexp_experiment", None):
        return "demo: Modal items run through the fake back end (MLEXP_FAKE_MODAL; see conftest.py)"
    return None
