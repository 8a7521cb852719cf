"""Property-based fuzzing of hostile plans end to end, through pytest in-process (SPEC section 14).

Fewer cases than the loader's own fuzz test (tests/unit/test_plan_fuzz.py), because each one is
a whole pytest session: the plan is collected and, when selected, run with real handlers, so a
plan that loads but breaks later (at run time, in the store, in FINDINGS) is caught too.
Selected, a session ends with 0, 1 (an item failed), 2 (a collection error) or 5 (no experiments
left), never 3 (INTERNALERROR); not selected, the unit test passes with at most one short warning
line.  No traceback shows a frame of the plugin, and the output stays bounded.
"""

from __future__ import annotations

import re
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Project
from tests.plan_mutations import E2E_HANDLERS, E2E_PLAN, emit, plan_texts
from tests.unit.test_plan_fuzz import hang_guard

PLUGIN_FRAME = re.compile(r"pytest_mlexp[/\\][\w/\\]*\.py[\":]")
MAX_OUTPUT = 100_000  # characters of one session's output: a bomb once printed 312 MB


class TestSessionFuzz:
    def test_mutated_plans_never_crash_a_session(self, project: Project) -> None:
        for module, source in E2E_HANDLERS.items():
            project.handlers(module, source)
        project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
        research = project.path / "research"
        seen: dict[int, int] = {}

        @settings(
            max_examples=16,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(text=plan_texts([E2E_PLAN], data_max=3, text_max=1), selected=st.booleans())
        def case(text: str, selected: bool) -> None:
            # each case starts from a project with no results, artifacts or FINDINGS of earlier ones
            shutil.rmtree(research, ignore_errors=True)
            research.mkdir()
            (research / "research_plan.yaml").write_bytes(text.encode("utf-8"))
            if selected:
                result = project.run("-p", "no:cacheprovider", "--experiment", "all")
                assert result.ret in (0, 1, 2, 5), result.ret
            else:
                result = project.run("-p", "no:cacheprovider", "research", "test_unit.py")
                assert result.ret == 0, result.ret  # never a failed unit-test run
                result.assert_outcomes(passed=1)
            out = result.stdout.str() + result.stderr.str()
            assert len(out) < MAX_OUTPUT
            assert "INTERNALERROR" not in out, out[-4000:]
            # a handler's own traceback is shown (and the handlers above never fail on params), but
            # never a frame of the plugin
            assert not PLUGIN_FRAME.search(out), out[-4000:]
            if not selected:
                warnings = [line for line in out.splitlines() if line.startswith("mlexp: warning:")]
                assert len(warnings) <= 1 and all(len(line) < 400 for line in warnings), warnings
            seen[result.ret] = seen.get(result.ret, 0) + 1

        with hang_guard():
            case()
        # the cases reach both ends: plans that run and plans refused at collection
        assert seen.get(0, 0) and seen.get(2, 0), seen

    def test_the_unmutated_plan_runs_and_passes(self, project: Project) -> None:
        # the fuzz cases start from a plan that works: otherwise they would only test one error
        for module, source in E2E_HANDLERS.items():
            project.handlers(module, source)
        project.plan(emit(E2E_PLAN))
        result = project.run("-p", "no:cacheprovider", "--experiment", "all")
        result.assert_outcomes(passed=6)
        assert result.ret == 0
