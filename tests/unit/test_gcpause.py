"""The cyclic garbage collector paused around the plugin's own bulk work (gcpause.py): off in
the block, back as it was after it, and the plan's items built without a collection."""

from __future__ import annotations

import gc
import textwrap
from collections.abc import Iterator

import pytest

from pytest_mlexp.gcpause import paused
from tests.conftest import Project


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_turns_the_collector_off_and_back_on_even_after_an_error(collector_on: None) -> None:
    with paused():
        assert not gc.isenabled()
        with paused():  # nested: the inner block does not turn it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(KeyError), paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_user_stays_off(collector_on: None) -> None:
    gc.disable()
    with paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def _plan(project: Project, subs: str, args: str) -> None:
    """A one-experiment plan whose ``sub_experiments:`` is ``subs`` (the text after the colon),
    every handler call answering ``{'m': 1.0}``."""
    head = textwrap.dedent(
        """\
        project: {name: gc, hypothesis: h}
        defaults: {handler: "experiments.h:run"}
        experiments:
          e1:
            sub_experiments:"""
    )
    project.plan(head + subs + "\n")
    project.handlers("h", f"def run({args}):\n    return {{'metrics': {{'m': 1.0}}}}\n")


# Records every collection that starts while the plugin reads the plan (session.py's
# context_for) or builds an item (items.py's SubItem.build).
CONFTEST = """
import gc, sys

SEEN = []


def _watch(phase, info):
    if phase != "start":
        return
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        name = code.co_filename.replace("\\\\", "/").rsplit("/", 1)[-1], code.co_name
        if name in (("items.py", "build"), ("session.py", "context_for")):
            SEEN.append((info["generation"], code.co_name))
            return
        frame = frame.f_back


def pytest_configure(config):
    gc.callbacks.append(_watch)


def pytest_collection_finish(session):
    print(f"collections during the plan's collection: {len(SEEN)} {SEEN[:8]}")


def pytest_unconfigure(config):
    gc.callbacks.remove(_watch)
"""


def test_a_plans_items_are_built_without_setting_off_a_collection(
    project: Project, collector_on: None
) -> None:
    # 3,000 items are ~40,000 containers, all kept: with the collector on they set off dozens
    # of collections, each of which walks the young objects (and every tenth more).
    values = ", ".join(str(i) for i in range(3000))
    _plan(project, f"\n      s:\n        sweep: {{x: [{values}]}}", "runner, x")
    project.pytester.makeconftest(CONFTEST)
    result = project.run("--experiment", "e1", "--co", "-q", "-s")
    result.stdout.fnmatch_lines(["*3001 tests collected*"])
    assert "collections during the plan's collection: 0 []" in result.stdout.str()


# Counts the per-item objects the run loop made that are still alive once it is over.  The
# objects alive before it are held (so that no new one can take an old one's address) and left
# out: an in-process pytester run shares the test process with every earlier session's.
COUNT_CONFTEST = """
import gc

import pytest

NAMES = ("ReusePlan", "NodeFingerprint")


def _alive():
    gc.collect()
    return [o for o in gc.get_objects() if type(o).__name__ in NAMES]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    before = _alive()
    try:
        return (yield)
    finally:
        old = {id(o) for o in before}
        kept = [type(o).__name__ for o in _alive() if id(o) not in old]
        print(f"made by the run loop and still alive: {len(kept)}")
"""


def test_an_items_reuse_decision_is_not_kept_once_it_ran(project: Project) -> None:
    # Each item's decision (its fingerprint, what it may reuse) is asked for when it runs and
    # never again: kept to the session's end, it was two objects per item that every
    # collection of the old generation went over (PlanContext.settled).
    _plan(project, " [" + ", ".join(f"s{i}" for i in range(40)) + "]", "runner")
    project.pytester.makeconftest(COUNT_CONFTEST)
    result = project.run("--experiment", "e1", "-s")
    result.stdout.fnmatch_lines(["*41 passed*"])
    assert "made by the run loop and still alive: 0" in result.stdout.str()
