"""What an experiment item does when it runs: tasks out, outcomes in, one result entry.

The entry is not written here: it travels on the test report (an ``op``) to the process that
owns the results files (the xdist controller, or this process), see ``session.py``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .execution import ERROR, INFRA, OK, Task
from .items import AssessmentItem, MlexpFailure, SubItem, session_of
from .live import watching
from .model import SubExperiment
from .secrets import redact_params
from .session import git_state, join_simple
from .store import params_digest
from .verdict import judge_sub

if TYPE_CHECKING:
    from .handlers import HandlerRef
    from .model import SweepPoint
    from .session import PlanContext


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate_seeds(
    outcomes: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Per-seed metrics of the seeds that produced a result, and their mean (numbers only;
    other values are information and are taken from the first seed that reported them)."""
    per_seed: dict[int, dict[str, Any]] = {}
    for out in outcomes:
        if out.get("status") == OK:
            per_seed[int(out["seed"])] = dict(out["result"]["metrics"])
    if len(per_seed) == 1:  # one seed (the common case): its values, numbers as floats
        (only,) = per_seed.values()
        return {k: float(v) if _is_number(v) else v for k, v in only.items()}, per_seed
    names: list[str] = []
    for metrics in per_seed.values():
        names.extend(n for n in metrics if n not in names)
    agg: dict[str, Any] = {}
    for name in names:
        values = [m[name] for m in per_seed.values() if name in m]
        numeric = [float(v) for v in values if _is_number(v)]
        if numeric and len(numeric) == len(values):
            agg[name] = numeric[0] if len(numeric) == 1 else math.fsum(numeric) / len(numeric)
        else:
            agg[name] = values[0]
    return agg, per_seed


def seed_stats(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    from .stats import describe

    out: dict[str, Any] = {}
    names: list[str] = []
    for metrics in per_seed.values():
        names.extend(n for n in metrics if n not in names)
    for name in names:
        values: list[Any] = [m.get(name) for m in per_seed.values()]
        if values and all(_is_number(v) and math.isfinite(v) for v in values):
            out[name] = describe([float(v) for v in values]).to_dict()
    return out


def needed_metrics(ctx: PlanContext, sub: SubExperiment) -> list[str]:
    """Metrics the wiring check requires: the sub's criteria and experiment criteria ``from`` it."""
    names = [c.metric for c in sub.success_criteria]
    exp = ctx.plan.experiment(sub.experiment_id)
    names += [c.metric for c in exp.success_criteria if c.from_ == sub.id and c.metric not in names]
    return names


def build_entry(
    ctx: PlanContext,
    sub: SubExperiment,
    *,
    point_key: str | None,
    params: Mapping[str, Any],
    outcomes: Sequence[Mapping[str, Any]],
    executor: str,
    stub: bool,
    provenance: Mapping[str, Any],
    messages: list[str] | None = None,
) -> dict[str, Any]:
    """One results.yaml entry (SPEC section 8) from the outcomes of the item's seeds.

    The messages of unmet criteria are appended to ``messages`` (for the failure report)."""
    if messages is None:
        messages = []
    metrics, per_seed = aggregate_seeds(outcomes)
    first_ok = next((o for o in outcomes if o.get("status") == OK), None)
    failed_out = next((o for o in outcomes if o.get("status") != OK), None)
    artifacts: list[str] = []
    for out in outcomes:
        for path in (out.get("result") or {}).get("artifacts") or []:
            if path not in artifacts:
                artifacts.append(path)
    entry: dict[str, Any] = {"status": "passed"}
    entry["finding"] = (first_ok or {}).get("result", {}).get("finding") if first_ok else None
    entry["metrics"] = metrics
    if sub.seeds_given and not stub:
        entry["per_seed"] = per_seed
        entry["stats"] = seed_stats(per_seed)
    entry["params"] = redact_params(dict(params))
    entry["artifacts"] = artifacts
    entry["executor"] = executor
    entry["duration_s"] = round(sum(float(o.get("duration_s") or 0.0) for o in outcomes), 3)
    tracking = [o["wandb"] for o in outcomes if o.get("wandb")]
    if tracking:
        # Several seeds: the first run's link up front (what FINDINGS and JUnit show), all below.
        entry["wandb"] = tracking[0] if len(tracking) == 1 else {**tracking[0], "runs": tracking}
    entry["provenance"] = dict(provenance)
    device = next((o["device"] for o in outcomes if o.get("device")), None)
    if device:  # only known when the handler asked runner.device
        entry["provenance"]["device"] = device
    packages = next((o["packages"] for o in outcomes if o.get("packages")), None)
    if packages:
        entry["provenance"]["packages"] = dict(packages)
    entry["started_at"] = min((o.get("started_at") or "") for o in outcomes) if outcomes else None
    entry["finished_at"] = max((o.get("finished_at") or "") for o in outcomes) if outcomes else None
    if failed_out is not None:
        entry["status"] = INFRA if any(o.get("status") == INFRA for o in outcomes) else ERROR
        error = dict(failed_out.get("error") or {})
        error["seed"] = failed_out.get("seed")
        entry["error"] = error
        return entry
    if point_key is None:
        judged = judge_sub(sub, entry, stub=stub)
        entry["criteria"] = {j.metric: j.to_dict() for j in judged}
        messages.extend(j.message for j in judged if not j.passed)
        missing = [m for m in needed_metrics(ctx, sub) if m not in metrics] if stub else []
        if missing:
            entry["status"] = ERROR
            entry["error"] = {
                "kind": "wiring",
                "type": "MissingMetric",
                "message": f"handler did not report {', '.join(missing)} (needed by the plan's criteria)",
                "traceback": "",
            }
        elif not all(j.passed for j in judged):
            entry["status"] = "failed"
    return entry


def failure_message(item: SubItem, entry: Mapping[str, Any], messages: Sequence[str] = ()) -> str:
    from .hints import hint_for

    status = entry["status"]
    if status in (ERROR, INFRA):
        err = entry.get("error") or {}
        lines = []
        if err.get("traceback"):
            lines.append(str(err["traceback"]).rstrip())
        head = f"{item.name}: {status} ({err.get('kind', 'handler')})"
        if err.get("seed") is not None and len(item.sub.seeds) > 1:
            head += f" in seed {err['seed']}"
        lines.append(f"{head}: {err.get('type', 'Error')}: {err.get('message', '')}")
        hint = hint_for(str(err.get("type", "")), str(err.get("message", "")))
        if hint:
            lines.append(f"hint: {hint}")
        return "\n".join(lines)
    return "\n".join(messages) or f"{item.name}: {status}"


def run_sub_item(item: SubItem) -> None:
    state = session_of(item.config)
    ctx = state.context_for(item.path)
    sub, point = item.sub, item.point
    stub = state.stub
    params = sub.resolved_params(stub, point)
    executor_name = state.executor_for(sub)
    seeds = sub.seeds[:1] if stub else sub.seeds
    prov = provenance(ctx, sub, params)
    try:
        ref = ctx.handler(sub)
    except LookupError as exc:  # HandlerNotFound / HandlerAmbiguous
        outcomes: list[dict[str, Any]] = [
            {
                "seed": s,
                "status": ERROR,
                "error": {
                    "kind": "handler",
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": "",
                },
            }
            for s in seeds[:1]
        ]
    else:
        funcargs = item.funcargs
        fixtures = {n: funcargs[n] for n in ref.fixture_names if n != "runner" and n in funcargs}
        # The same tasks item_tasks builds when the dispatcher submits this item ahead.
        # (The local executor runs seeds in this process: the live line watches them directly.)
        local = executor_name == "local"
        tasks = [build_task(ctx, sub, point, seed, params, ref, progress=not local) for seed in seeds]
        with watching(item.config):  # the live progress line, for seeds run in this process
            outcomes = state.dispatcher.run(item, executor_name, tasks, fixtures)
    messages: list[str] = []
    entry = build_entry(
        ctx,
        sub,
        point_key=point.key if point else None,
        params=params,
        outcomes=outcomes,
        executor=executor_name,
        stub=stub,
        provenance=prov,
        messages=messages,
    )
    entry = state.scrub_obj(entry)  # tracebacks and findings may quote a secret
    # A cancelled item (Ctrl-C/SIGTERM while it ran on process/modal) never overwrites a stored
    # result (SPEC section 8): with one stored, nothing is recorded and the item just fails.
    if not (_cancelled(entry) and _has_stored_result(ctx, sub, point.key if point else None)):
        op: dict[str, Any] = {"op": "record", "sub": sub.id, "point": point.key if point else None}
        op["entry"] = entry
        # Tracker (and executor) warnings travel on the op, so the xdist controller prints them.
        warnings = [str(w) for o in outcomes for w in o.get("warnings") or ()]
        if warnings:
            op["warnings"] = list(dict.fromkeys(warnings))
        state.attach_op(item, op)
    _add_properties(item, entry)
    status = entry["status"]
    if status == "passed":
        return
    if status == ERROR and item.config.option.usepdb:
        original = next((o.get("_exc") for o in outcomes if o.get("_exc") is not None), None)
        if isinstance(original, BaseException):
            raise original  # --pdb: post-mortem in the handler's own frame
    raise MlexpFailure(state.scrub(failure_message(item, entry, messages)))


def item_tasks(item: SubItem, ref: HandlerRef) -> list[Task]:
    """The item's tasks, one per seed (the first seed only under --stub)."""
    state = session_of(item.config)
    ctx = state.context_for(item.path)
    params = item.sub.resolved_params(state.stub, item.point)
    seeds = item.sub.seeds[:1] if state.stub else item.sub.seeds
    return [build_task(ctx, item.sub, item.point, seed, params, ref) for seed in seeds]


def _cancelled(entry: Mapping[str, Any]) -> bool:
    return entry.get("status") == INFRA and (entry.get("error") or {}).get("kind") == "cancelled"


def _has_stored_result(ctx: PlanContext, sub: SubExperiment, point: str | None) -> bool:
    stored = ctx.sub_entry(sub.experiment_id, sub.id)
    if stored is not None and point is not None:
        stored = (stored.get("points") or {}).get(point)
    return isinstance(stored, Mapping) and stored.get("status") not in (None, "blocked")


def _add_properties(item: pytest.Item, entry: Mapping[str, Any]) -> None:
    """JUnit properties: metrics, criteria verdicts, finding, status, W&B URL (also under xdist)."""
    props = item.user_properties
    props.append(("mlexp.status", entry.get("status")))
    if entry.get("finding"):
        props.append(("mlexp.finding", entry["finding"]))
    for name, value in (entry.get("metrics") or {}).items():
        props.append((f"metric.{name}", value))
    for name, st in (entry.get("stats") or {}).items():
        ci = st.get("ci95")
        text = f"mean={st['mean']:.6g} std={st['std']:.6g} n={st['n']}"
        if ci:
            text += f" ci95=[{ci[0]:.6g}, {ci[1]:.6g}]"
        props.append((f"stats.{name}", text))
    for name, c in (entry.get("criteria") or {}).items():
        props.append(
            (f"criterion.{name}", f"{c.get('level')} ({'passed' if c.get('passed') else 'not passed'})")
        )
    wandb = entry.get("wandb") or {}
    if isinstance(wandb, Mapping) and wandb.get("url"):
        props.append(("wandb.url", wandb["url"]))
    for path in entry.get("artifacts") or ():  # relative to the plan's folder (pytest-html shows figures)
        props.append(("mlexp.artifact", path))


def run_assessment(item: AssessmentItem) -> None:
    state = session_of(item.config)
    ctx = state.context_for(item.path)
    exp = ctx.plan.experiment(item.experiment_id)
    verdict = ctx.verdict(exp.id)
    header = ctx.experiment_header(exp.id, verdict)
    state.attach_op(item, {"op": "experiment", "experiment": exp.id, "fields": header})
    props = item.user_properties
    props.append(("mlexp.status", verdict.status))
    props.append(("verdict.success_criteria_met", verdict.success_criteria_met))
    props.append(("verdict.confidence", verdict.confidence))
    props.append(("verdict.recommendation", verdict.recommendation))
    for j in verdict.criteria:
        props.append((f"criterion.{j.metric}", f"{j.level} ({'passed' if j.passed else 'not passed'})"))
        if j.value is not None:
            props.append((f"metric.{j.metric}", j.value))
    for problem in verdict.problems:
        props.append(("verdict.problem", state.scrub(problem)))
    if state.stub:
        broken = state.wiring_failures(exp.id)
        if broken:
            raise MlexpFailure(f"{exp.id}: wiring check failed in {', '.join(broken)}")
        return
    if not verdict.passed:
        lines = [f"{exp.id}: {verdict.recommendation} ({verdict.status}, confidence {verdict.confidence})"]
        lines += [f"  {p}" for p in verdict.problems]
        raise MlexpFailure(state.scrub("\n".join(lines)))


def upstream_for(ctx: PlanContext, sub: SubExperiment) -> dict[str, Any]:
    """``runner.upstream``: the stored results of the sub-experiments this one depends on."""
    out: dict[str, Any] = {}
    for dep in sub.dependencies:
        if not ctx.plan.has_sub(dep):
            continue
        dep_sub = ctx.plan.sub(dep)
        entry = ctx.sub_entry(dep_sub.experiment_id, dep) or {}
        out[dep] = {
            "status": entry.get("status"),
            "metrics": dict(entry.get("metrics") or {}),
            "finding": entry.get("finding"),
            "artifacts": [str(ctx.plan.root / a) for a in entry.get("artifacts") or []],
        }
    return out


_PYTHON_VERSION = ".".join(str(v) for v in sys.version_info[:3])


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
        commit, dirty = git_state(ctx.root_text)
        try:
            handler_sha = ctx.handler(sub).source_sha256
        except LookupError:
            handler_sha = None
        base = ctx.provenance_base[sub.id] = {
            "git_commit": commit,
            "git_dirty": dirty,
            "handler_sha256": handler_sha,
        }
    out = dict(base)
    out["params_sha256"] = params_digest(params)
    out["python"] = _PYTHON_VERSION
    return out


def build_task(
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
    state = ctx.state
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
        upstream=upstream_for(ctx, sub) if sub.dependencies else {},
        variant=dict(variant),
        timeout=_timeout(sub),
        # 12 random hex digits, as uuid4().hex[:12] gave (its first 6 bytes are all random).
        progress_file=(
            os.path.join(workdir, f".mlexp-progress-{os.urandom(6).hex()}.jsonl") if progress else None
        ),
        # tracker settings as plain data; the run opens where the handler runs (trackers/)
        tracking=state.tracking.settings_for(ctx, sub, point_key, variant, seed, params),
    )


def _timeout(sub: SubExperiment) -> float | None:
    value: Any = sub.resources.get("timeout")
    return float(value) if _is_number(value) else None
