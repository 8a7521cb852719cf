"""Property-based fuzzing of the plan loader (SPEC section 14): hostile plans, mutated from valid
ones, end in a ``PlanError`` or a plan, never in any other exception, with a short message.

A plan that loads is then pushed through what the plugin does with it before any handler runs
(sweep points, params digests, the results writer and its loader, prerequisites, ordering), so
that "loads, then fails at run time" (a RecursionError, a lost result) is caught here too.

Derandomized (the same cases on every run and every machine), ``deadline=None`` (a slow case
is not a failure), and one generous hang guard around each test instead of any time assertion.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from pytest_mlexp.graph import graph_of
from pytest_mlexp.model import Plan, PlanError
from pytest_mlexp.plan import load_plan, parse_plan_text
from pytest_mlexp.store import dump_yaml, load_yaml, params_digest
from tests.plan_mutations import base_plans, emit, plan_bytes, plan_texts

BASES = base_plans()
FILE = "research/research_plan.yaml"
MAX_MESSAGE = 800  # file:line, the message and the fix: one short line each


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextmanager
def hang_guard(seconds: int = 600) -> Iterator[None]:
    """If the test is still running after ``seconds``, dump every thread's stack and end the
    process: a hang shows up as a crash with its stack, never as a CI job that runs for hours."""
    import faulthandler

    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def use(plan: Plan) -> None:
    """What the plugin does with a loaded plan before (and while) running it, short of handlers."""
    graph = graph_of(plan)  # run order, xdist components, dispatch ahead
    graph.ranks()
    graph.components()
    for exp in plan.experiments:
        plan.prerequisites(exp.id)
        graph.blocking_experiments(exp.id)
        for sub_id in graph.sub_order(exp.id):
            sub = plan.sub(sub_id)
            graph.sub_prerequisites(sub_id)
            points = sub.points()
            for point in (None, *points[:20]):
                for stub in (False, True):
                    params = sub.resolved_params(stub, point)
                    params_digest(params)
            # results.yaml holds the params: the writer's text reads back as the same data
            # (compared as text again, since nan != nan)
            text = dump_yaml({"params": dict(sub.params), "seeds": list(sub.seeds[:5])})
            assert dump_yaml(load_yaml(text)) == text


def outcome(load: Any, *args: Any) -> Plan | PlanError:
    try:
        plan = load(*args)
    except PlanError as exc:
        rendered = exc.render()
        assert len(rendered) < MAX_MESSAGE, rendered[:2000]
        assert exc.loc is not None and exc.loc.line >= 1, rendered
        assert exc.fix, rendered
        return exc
    assert isinstance(plan, Plan)
    use(plan)
    return plan


@fuzz(1500)
@given(text=plan_texts(BASES))
def _fuzz_text(text: str) -> None:
    outcome(parse_plan_text, text, FILE)


@fuzz(300)
@given(data=plan_bytes(BASES))
def _fuzz_file(data: bytes) -> None:
    # the file as the scaffolder reads it (bytes, BOM stripped) and as a session does (UTF-8 text)
    fd, name = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        outcome(load_plan, name)
        try:
            text = Path(name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return  # the session reports this itself, as a PlanError without a line
        outcome(parse_plan_text, text, FILE)
    finally:
        os.unlink(name)


class TestLoaderFuzz:
    def test_every_base_plan_loads(self) -> None:
        # the fuzzers start from valid plans: a broken base would only ever test one error
        for base in BASES:
            assert isinstance(outcome(parse_plan_text, emit(base), FILE), Plan), emit(base)

    def test_mutated_plans_load_or_fail_with_a_short_plan_error(self) -> None:
        with hang_guard():
            _fuzz_text()

    def test_mutated_plan_files_load_or_fail_with_a_short_plan_error(self) -> None:
        with hang_guard():
            _fuzz_file()
