"""An item's seeds as tasks (``tasks.build_task``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pytest_mlexp.execution import Task
from pytest_mlexp.structs import field_names
from pytest_mlexp.tasks import build_task


def _parts(tmp_path: Path) -> tuple[Any, Any, Any, Any, Any]:
    """Stand-ins for what build_task reads, each value different from the others."""
    root = tmp_path / "project"
    tracking = SimpleNamespace(settings_for=lambda *args: {"tracker": "fake"})
    state = SimpleNamespace(
        stub=False,
        tracking=tracking,
        workdir_text=lambda sub_id, point, seed: f"/work/{sub_id}-{point}-{seed}",
    )
    results = SimpleNamespace(upstream=lambda sub: {"up": {"metrics": {"m": 1.0}}})
    ctx = SimpleNamespace(
        module_paths={},
        root=root,
        root_text=str(root),
        plan_root_text=str(root / "research"),
        results=results,
        plan=object(),
    )
    sub = SimpleNamespace(
        experiment_id="exp",
        id="sub",
        seeds=(3, 4),
        dependencies=("up",),
        resources={"timeout": 5},
    )
    point = SimpleNamespace(key="lr=0.1", values={"lr": 0.1})
    ref = SimpleNamespace(
        module_path=root / "handlers" / "h.py",
        module_name="mlexp_handlers.h",
        function="train",
        registry_key=None,
        source_sha256="abc123",
    )
    return state, ctx, sub, point, ref


def test_build_task_fills_each_field_with_its_own_value(tmp_path: Path) -> None:
    # build_task passes Task's fields by position (a class call with keywords costs a dict):
    # every value must land in the field it belongs to, whatever order Task declares them in.
    state, ctx, sub, point, ref = _parts(tmp_path)
    task = build_task(state, ctx, sub, point, 4, {"a": 1}, ref, progress=True, fingerprint="f" * 64)
    assert task.progress_file is not None
    assert task.progress_file.startswith("/work/sub-lr=0.1-4/.mlexp-progress-")
    expected = Task(
        experiment_id="exp",
        sub_id="sub",
        point="lr=0.1",
        seed=4,
        params={"a": 1},
        stub=False,
        root=ctx.root_text,
        plan_root=ctx.plan_root_text,
        module_path="handlers/h.py",
        module_name="mlexp_handlers.h",
        function="train",
        artifacts_dir=f"{ctx.plan_root_text}/artifacts/sub/{'f' * 12}/lr=0.1/seed4",
        workdir="/work/sub-lr=0.1-4",
        upstream={"up": {"metrics": {"m": 1.0}}},
        variant={"lr": 0.1},
        timeout=5.0,
        tracking={"tracker": "fake"},
        progress_file=task.progress_file,
        registry_key=None,
        source_sha256="abc123",
    )
    assert {name: getattr(task, name) for name in field_names(Task)} == {
        name: getattr(expected, name) for name in field_names(Task)
    }
    # (every field is named above: a new one must be added here, and to build_task)
    assert len(field_names(Task)) == 20


def test_build_task_registry_key_and_no_progress_file(tmp_path: Path) -> None:
    state, ctx, sub, _, ref = _parts(tmp_path)
    ref.registry_key = "sub"
    task = build_task(state, ctx, sub, None, 3, {}, ref, progress=False)
    assert (task.registry_key, task.source_sha256, task.progress_file) == ("sub", None, None)
    assert (task.point, task.variant, task.artifacts_dir) == (
        None,
        {},
        f"{ctx.plan_root_text}/artifacts/sub/seed3",
    )
