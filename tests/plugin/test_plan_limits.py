"""Broken plans end to end (SPEC section 14, "Plans"): a collection error at file:line when
experiments are selected, one short warning when they are not, never a failed unit-test run,
an INTERNALERROR or a plugin traceback."""

from __future__ import annotations

import pytest

from tests.conftest import Project

HEAD = "experiments:\n  e1:\n    sub_experiments:\n      s1:\n"  # s1's keys go on line 5


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


# name -> (plan text, line of the error, words of the message); what main did instead in comments
BROKEN = {
    # a 312 MB message, 1.9 GB and 26 s selected; 8 s and 1.3 GB in a plain unit-test run
    "alias bomb in marks": (laughs(8) + HEAD + "        marks: *a8\n", 7, "larger than 10 MB"),
    # the params digest hung for minutes
    "alias bomb in params": (laughs(8) + HEAD + "        params: {p: *a8}\n", 7, "larger than 10 MB"),
    # INTERNALERROR ValueError, in plain unit-test runs too
    "5,000-digit integer": (HEAD + "        params: {n: " + "9" * 5000 + "}\n", 5, "5,000 digits"),
    # MemoryError
    "a trillion seeds": (HEAD + "        seeds: 1000000000000\n", 5, "at most 10,000"),
    # RecursionError when the sub-experiment ran
    "self-referring params": (
        HEAD + "        params: &p {a: *p}\n",
        5,
        "refers to a mapping or list that contains it",
    ),
    "900-deep params": (
        HEAD + "        params: " + "{a: " * 900 + "1" + "}" * 900 + "\n",
        5,
        "deeper than 100",
    ),
    # passed the id rules, then "File name too long" after the handler ran: the result was lost
    "256-character id": (
        "experiments:\n  e1:\n    sub_experiments: [" + "s" * 256 + "]\n",
        3,
        "256 characters",
    ),
    # silently dropped the experiment
    "non-breaking-space indent": (
        "experiments:\n  e1:\n    sub_experiments: [s1]\n\u00a0 e2:\n    sub_experiments: [s2]\n",
        4,
        "U+00A0",
    ),
    # OverflowError from the local executor's timer, inside the plugin, and no result recorded
    "infinite timeout": (HEAD + "        resources: {timeout: .inf}\n", 5, "resources.timeout"),
}

HANDLERS = """
def s1(runner):
    return {"metrics": {"accuracy": 0.9}}

def s2(runner):
    return {"metrics": {"accuracy": 0.9}}
"""


class TestBrokenPlans:
    @pytest.mark.parametrize("case", list(BROKEN))
    def test_one_short_warning_when_experiments_are_not_selected(self, project: Project, case: str) -> None:
        text, line, words = BROKEN[case]
        project.plan(text)
        project.handlers("e1", HANDLERS)
        project.pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
        result = project.run("research", "test_unit.py")
        assert result.ret == 0
        result.assert_outcomes(passed=1)
        out = result.stdout.str() + result.stderr.str()
        warnings = [ln for ln in out.splitlines() if ln.startswith("mlexp: warning:")]
        assert len(warnings) == 1, out[:2000]
        assert warnings[0].startswith(f"mlexp: warning: research/research_plan.yaml:{line}: "), warnings
        assert words in warnings[0]
        assert len(warnings[0]) < 300
        assert len(out) < 5000  # the whole session's output, bomb or not
        assert "Traceback" not in out and "INTERNALERROR" not in out

    @pytest.mark.parametrize("case", list(BROKEN))
    def test_a_collection_error_at_the_line_when_selected(self, project: Project, case: str) -> None:
        text, line, words = BROKEN[case]
        project.plan(text)
        project.handlers("e1", HANDLERS)
        result = project.run("--experiment", "all")
        assert result.ret == 2  # interrupted by a collection error: nothing ran
        out = result.stdout.str() + result.stderr.str()
        result.stdout.fnmatch_lines([f"research/research_plan.yaml:{line}: *{words}*", "  fix: *"])
        assert "Traceback" not in out and "INTERNALERROR" not in out
        assert len(out) < 5000
        assert not (project.path / "research" / "experiments").exists()
