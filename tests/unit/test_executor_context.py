"""Executors get a narrow ExecutorContext from the session, never the session itself."""

from __future__ import annotations

import dataclasses
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.executors.base import Executor, ExecutorContext, Handle, Job
from pytest_mlexp.plan import parse_plan_text

PLAN = """\
project: {name: "Digits Study"}
modal: {python: "3.11", pip: [numpy]}
experiments:
  e1:
    sub_experiments:
      s1: {}
"""


class _Config:
    """Just what an executor may use of pytest's config: options, ini values, hooks."""

    def __init__(self, root: Path) -> None:
        self.rootpath = root
        self.hook = types.SimpleNamespace(pytest_mlexp_modal_image=lambda config: None)

    def getini(self, name: str) -> str:
        return {"mlexp_handlers": "experiments", "mlexp_max_artifact_mb": "100"}.get(name, "")


def test_an_executor_is_bound_before_use_and_keeps_the_context() -> None:
    class Recording(Executor):
        def submit(self, job: Job) -> Handle:
            raise NotImplementedError

    ex = Recording()
    assert ex.context is None
    context = ExecutorContext(root=Path("/project"), handlers_dir="experiments")
    ex.bind(context)
    assert ex.context is context and context.plans() == ()


def test_the_modal_app_is_built_from_the_bound_context_without_a_session(tmp_path: Path) -> None:
    modal = pytest.importorskip("modal")
    from pytest_mlexp.executors.modal import ModalExecutor, RealModalBackend

    (tmp_path / "experiments").mkdir()
    plan = parse_plan_text(textwrap.dedent(PLAN), "research/research_plan.yaml")
    plan = dataclasses.replace(plan, path=tmp_path / "research" / "research_plan.yaml")
    config: Any = _Config(tmp_path)
    executor = ModalExecutor(config)
    executor.bind(ExecutorContext(root=tmp_path, handlers_dir="experiments", plans=lambda: (plan,)))
    backend = executor.backend
    assert isinstance(backend, RealModalBackend)
    app = backend.build()
    assert isinstance(app, modal.App) and app.name == "mlexp-digits-study" and backend.app is app
    functions = backend._functions  # ours: plan folder -> its modal.Function
    assert list(functions) == [str(plan.root)] and isinstance(functions[str(plan.root)], modal.Function)
    executor.close()
