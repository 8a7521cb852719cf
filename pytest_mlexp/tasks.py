"""An item's seeds as :class:`~pytest_mlexp.execution.Task` records, and their provenance.

Used when an item runs (``orchestrate.py``) and when its work is submitted ahead
(``dispatch.py``): both build the same tasks from the same plan, params and handler.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .execution import Task
from .session import join_simple, session_of
from .store import params_digest

if TYPE_CHECKING:
    import pytest

    from .handlers import HandlerRef
    from .model import SubExperiment, SweepPoint
    from .session import MlexpSession, PlanContext

__all__ = [
    "artifacts_dir",
    "build_task",
    "git_path_dirty",
    "git_state",
    "item_tasks",
    "provenance",
    "seed_tasks",
]

_PYTHON_VERSION = ".".join(str(v) for v in sys.version_info[:3])


@functools.lru_cache(maxsize=8)
def git_state(root: str) -> tuple[str | None, bool | None]:
    """The commit, and whether tracked files are modified anywhere (provenance; once a session)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return head.stdout.strip() or None, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def git_path_dirty(root: str, path: str) -> bool:
    """Whether one file is modified or untracked (SPEC section 10: a plan or handler that git
    does not know makes the result as unreproducible as a modified one).  Ignored files are
    not the project's: clean."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", path],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return status.returncode == 0 and bool(status.stdout.strip())


def _dirty(ctx: PlanContext, dirty: bool | None, paths: Sequence[str]) -> bool | None:
    if dirty is not False:  # modified tracked files, or not a git checkout at all (None)
        return dirty
    for path in paths:
        known = ctx.git_paths.get(path)
        if known is None:
            known = ctx.git_paths[path] = git_path_dirty(ctx.root_text, path)
        if known:
            return True
    return False


def artifacts_dir(plan_root: str, sub_id: str, point: str | None, seed: int | None, stub: bool) -> str:
    """``<plan folder>/artifacts[-stub]/<sub_id>[/<point>][/seed<k>]`` (SPEC section 4)."""
    parts = ["artifacts-stub" if stub else "artifacts", sub_id]
    if point:
        parts.append(point)
    if seed is not None:
        parts.append(f"seed{seed}")
    return join_simple(plan_root, *parts)


def provenance(ctx: PlanContext, sub: SubExperiment, params: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance:`` of a result: git state, handler source digest, params digest, Python."""
    base = ctx.provenance_base.get(sub.id)
    if base is None:  # all but the params digest is the same for every item of a sub, all session
        if ctx.git_head is None:
            ctx.git_head = git_state(ctx.root_text)
        commit, dirty = ctx.git_head
        paths = [str(ctx.plan.path)]
        try:
            ref = ctx.handler(sub)
            handler_sha = ref.source_sha256
            paths.append(str(ref.module_path))
        except LookupError:
            handler_sha = None
        dirty = _dirty(ctx, dirty, paths)
        base = ctx.provenance_base[sub.id] = {
            "git_commit": commit,
            "git_dirty": dirty,
            "handler_sha256": handler_sha,
        }
    out = dict(base)
    out["params_sha256"] = params_digest(params)
    out["python"] = _PYTHON_VERSION
    return out


def _timeout(sub: SubExperiment) -> float | None:
    value: Any = sub.resources.get("timeout")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def build_task(
    state: MlexpSession,
    ctx: PlanContext,
    sub: SubExperiment,
    point: SweepPoint | None,
    seed: int,
    params: Mapping[str, Any],
    ref: HandlerRef,
    *,
    progress: bool = True,
) -> Task:
    """One seed's task, as plain data for whichever executor runs it.  ``progress``: give it a
    file to append what the handler logs to, for the live line (a seed run in another process)."""
    module_path = ctx.module_paths.get(ref.module_path)
    if module_path is None:  # the handler's file, relative to the project root
        try:
            module_path = ref.module_path.relative_to(ctx.root).as_posix()
        except ValueError:
            module_path = str(ref.module_path)
        ctx.module_paths[ref.module_path] = module_path
    stub = state.stub
    point_key = point.key if point else None
    variant = point.values if point else {}
    workdir = state.workdir_text(sub.id, point_key, seed)
    multi = len(sub.seeds) > 1 and not stub
    return Task(
        experiment_id=sub.experiment_id,
        sub_id=sub.id,
        point=point_key,
        seed=seed,
        params=dict(params),
        stub=stub,
        root=ctx.root_text,
        plan_root=ctx.plan_root_text,
        module_path=module_path,
        module_name=ref.module_name,
        function=ref.function,
        artifacts_dir=artifacts_dir(ctx.plan_root_text, sub.id, point_key, seed if multi else None, stub),
        workdir=workdir,
        upstream=ctx.results.upstream(sub) if sub.dependencies else {},
        variant=dict(variant),
        timeout=_timeout(sub),
        # 12 random hex digits, as uuid4().hex[:12] gave (its first 6 bytes are all random).
        progress_file=(
            os.path.join(workdir, f".mlexp-progress-{os.urandom(6).hex()}.jsonl") if progress else None
        ),
        # tracker settings as plain data; the run opens where the handler runs (trackers/)
        tracking=state.tracking.settings_for(ctx.plan, ctx.root_text, sub, point_key, variant, seed, params),
        registry_key=ref.registry_key,
    )


def seed_tasks(
    state: MlexpSession,
    ctx: PlanContext,
    sub: SubExperiment,
    point: SweepPoint | None,
    params: Mapping[str, Any],
    ref: HandlerRef,
    *,
    progress: bool = True,
) -> list[Task]:
    """The tasks of one item, one per seed (the first seed only under --stub)."""
    seeds = sub.seeds[:1] if state.stub else sub.seeds
    return [build_task(state, ctx, sub, point, seed, params, ref, progress=progress) for seed in seeds]


def item_tasks(item: pytest.Item, ref: HandlerRef, *, progress: bool = True) -> list[Task]:
    """An experiment item's tasks (what the dispatcher submits ahead of the item)."""
    state = session_of(item.config)
    sub: SubExperiment = item.sub  # type: ignore[attr-defined]
    point: SweepPoint | None = item.point  # type: ignore[attr-defined]
    params = sub.resolved_params(state.stub, point)
    return seed_tasks(state, state.context_for(item.path), sub, point, params, ref, progress=progress)
