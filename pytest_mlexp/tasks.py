"""An item's seeds as :class:`~pytest_mlexp.execution.Task` records, and their provenance.

Used when an item runs (``orchestrate.py``) and when its work is submitted ahead
(``dispatch.py``): both build the same tasks from the same plan, params and handler.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .execution import Task
from .session import join_simple, session_of
from .store import params_digest

if TYPE_CHECKING:
    import pytest

    from .handlers import HandlerRef
    from .model import SubExperiment, SweepPoint
    from .reuse import NodeFingerprint, ReusePlan
    from .session import MlexpSession, PlanContext

__all__ = ["artifacts_dir", "build_task", "item_tasks", "provenance", "seed_tasks"]

_PYTHON_VERSION = ".".join(str(v) for v in sys.version_info[:3])


_FOLDER_MAX = 100


def _folder(name: str) -> str:
    """A folder name of at most 100 characters: a longer one keeps its start and a digest."""
    if len(name) <= _FOLDER_MAX:
        return name
    import hashlib

    return (
        f"{name[: _FOLDER_MAX - 9]}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    )


def artifacts_dir(
    plan_root: str,
    sub_id: str,
    point: str | None,
    seed: int | None,
    stub: bool,
    fingerprint: str | None = None,
) -> str:
    """``<plan folder>/artifacts/<sub_id>/<fingerprint[:12]>[/<point>][/seed<k>]`` (SPEC sections
    4 and 11): each fingerprint has its own folder, so a restored or reused result still links
    its own files.  Stub runs keep ``artifacts-stub/<sub_id>[/<point>][/seed<k>]`` (scratch)."""
    parts = ["artifacts-stub" if stub else "artifacts", _folder(sub_id)]
    if fingerprint and not stub:
        parts.append(fingerprint[:12])
    if point:
        parts.append(_folder(point))
    if seed is not None:
        parts.append(f"seed{seed}")
    return join_simple(plan_root, *parts)


def provenance(
    ctx: PlanContext,
    sub: SubExperiment,
    params: Mapping[str, Any],
    fp: NodeFingerprint | None = None,
    *,
    ref: HandlerRef | None = None,
) -> dict[str, Any]:
    """``provenance:`` of a result: git state, handler source digest, params digest, Python, and
    its fingerprint (SPEC section 11) with the seeds it holds and a digest per input.  ``ref``:
    its handler (``ctx.handler(sub)``), when the caller has it."""
    handler_sha: str | None
    if ref is not None:
        handler_sha = ref.source_sha256
    else:
        try:
            handler_sha = ctx.handler(sub).source_sha256
        except LookupError:
            handler_sha = None
    files = fp.files if fp is not None else ()
    # All but the params digest and the fingerprint is the same for every result computed from
    # the same handler and files, all session: asked once per such pair, not once per item.
    key = (handler_sha, files)
    base = ctx.provenance_base.get(key)
    if base is None:
        git = ctx.git()
        # git_dirty: the files this result is computed from (its fingerprint's) or the plan
        # differ from the commit, untracked files included (SPEC section 10).
        base = ctx.provenance_base[key] = {
            "git_commit": git.commit,
            "git_dirty": git.dirty(ctx.root_text, [*files, ctx.plan_file]),
            "handler_sha256": handler_sha,
        }
    if fp is None:
        return {**base, "params_sha256": params_digest(params), "python": _PYTHON_VERSION}
    prov = {**base, "params_sha256": fp.params_sha256, "python": _PYTHON_VERSION}
    fp.add_provenance(prov)  # (into this dict: not a dict of its own to copy from)
    return prov


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
    fingerprint: str | None = None,
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
    # tracker settings as plain data; the run opens where the handler runs (trackers/)
    tracking = state.tracking.settings_for(ctx.plan, ctx.root_text, sub, point_key, variant, seed, params)
    # 12 random hex digits, as uuid4().hex[:12] gave (its first 6 bytes are all random).
    progress_file = (
        os.path.join(workdir, f".mlexp-progress-{os.urandom(6).hex()}.jsonl") if progress else None
    )
    folder = artifacts_dir(ctx.plan_root_text, sub.id, point_key, seed if multi else None, stub, fingerprint)
    # By position, in Task's field order: a class call with 20 keywords packs them into a dict
    # and __init__ unpacks it again, a quarter of a task's cost (test_tasks checks the order).
    return Task(
        sub.experiment_id,  # experiment_id
        sub.id,  # sub_id
        point_key,  # point
        seed,  # seed
        dict(params),  # params
        stub,  # stub
        ctx.root_text,  # root
        ctx.plan_root_text,  # plan_root
        module_path,  # module_path
        ref.module_name,  # module_name
        ref.function,  # function
        folder,  # artifacts_dir
        workdir,  # workdir
        ctx.results.upstream(sub) if sub.dependencies else {},  # upstream
        dict(variant),  # variant
        _timeout(sub),  # timeout
        tracking,  # tracking
        progress_file,  # progress_file
        ref.registry_key,  # registry_key
        (ref.source_sha256 or None) if ref.registry_key is None else None,  # source_sha256
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
    decision: ReusePlan | None = None,
) -> list[Task]:
    """The tasks of one item, one per seed (the first seed only under --stub), but for the seeds
    a stored result holds under ``--mlexp-reuse`` (``PlanContext.decision``, or ``decision``
    when the caller has it)."""
    seeds = sub.seeds[:1] if state.stub else sub.seeds
    if decision is None:
        decision = ctx.decision(sub, point)
    fp = decision.fingerprint.fingerprint if decision.fingerprint is not None else None
    if decision.sources:
        seeds = tuple(decision.to_run(seeds))
    return [
        build_task(state, ctx, sub, point, seed, params, ref, progress=progress, fingerprint=fp)
        for seed in seeds
    ]


def item_tasks(item: pytest.Item, ref: HandlerRef, *, progress: bool = True) -> list[Task]:
    """An experiment item's tasks (what the dispatcher submits ahead of the item)."""
    state = session_of(item.config)
    sub: SubExperiment = item.sub  # type: ignore[attr-defined]
    point: SweepPoint | None = item.point  # type: ignore[attr-defined]
    params = sub.resolved_params(state.stub, point)
    return seed_tasks(state, state.context_for(item.path), sub, point, params, ref, progress=progress)
