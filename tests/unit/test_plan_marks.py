"""Plan marks with arguments (``"timeout(3600)"``), for pytest-timeout's mark (SPEC section 13)."""

from __future__ import annotations

import pytest

from pytest_mlexp.model import PlanError, parse_mark
from pytest_mlexp.plan import parse_plan_text

PLAN = """
project: {{name: M, hypothesis: h}}
experiments:
  e1:
    sub_experiments:
      s1:
        marks: {marks}
"""


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("slow", ("slow", (), {})),
        ("timeout(60)", ("timeout", (60,), {})),
        ("timeout(2.5, method='thread')", ("timeout", (2.5,), {"method": "thread"})),
        ("flaky(reruns=0)", ("flaky", (), {"reruns": 0})),
    ],
)
def test_parse_mark(text: str, parsed: tuple[object, ...]) -> None:
    assert parse_mark(text) == parsed


@pytest.mark.parametrize("text", ["timeout(", "timeout(abc)", "a.b(1)", "timeout(**x)", "1"])
def test_parse_mark_refuses_what_is_not_a_literal_call(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mark(text)


def test_the_plan_accepts_a_timeout_mark() -> None:
    plan = parse_plan_text(PLAN.format(marks='[slow, "timeout(3600)"]'), "research_plan.yaml")
    assert plan.sub("s1").marks == ("slow", "timeout(3600)")


def test_the_plan_refuses_a_mark_whose_arguments_are_not_literals() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text(PLAN.format(marks='["timeout(some_var)"]'), "research_plan.yaml")
    assert "timeout(3600)" in info.value.render()
