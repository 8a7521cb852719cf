"""A plan file -> the frozen model (``model.py``), with every user mistake as a ``PlanError``.

Both dialects of SPEC section 2 go through one path: the tiered dialect is the detailed one with
``sub_experiments`` written as a list of ids and nothing to inherit but ``defaults``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..model import Achieved, Criterion, Experiment, Loc, Plan, PlanError, Project, SubExperiment
from ..structs import replace
from ..yamlload import YamlError, load_yaml
from .checks import ExpRef, SubRef, check_cycles, check_references, criterion_references, replaces_warnings
from .context import UNSET, Ctx, as_text, check_id, id_list, parse_accepted, parse_phase, type_name
from .decisions import achieved_of, achieved_value, parse_pivots, plan_status, sub_entries
from .gates import parse_gates
from .keys import NOT_INHERITED_KEYS
from .layers import Layer, deps_patterns, merge_layers, parse_layer
from .limits import MAX_ID_LENGTH, shown


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and parse a plan file; every mistake in it is a ``PlanError`` naming file and line."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PlanError(
            Loc(file, 1), f"cannot read the plan: {exc.strerror or exc}", "check the path"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PlanError(Loc(file, line), "the plan is not UTF-8 text", "save the file as UTF-8") from None
    return parse_plan_text(text, file)


def parse_plan_text(text: str, path: str) -> Plan:
    """Parse plan text; ``path`` is used in messages and as ``Plan.path`` (made absolute)."""
    try:
        doc = load_yaml(text)
    except YamlError as exc:
        raise PlanError(Loc(path, exc.line), exc.message, exc.fix) from None
    # yamlload bounds nesting to MAX_DEPTH levels and refuses self-referring aliases, so nothing
    # below recurses deeply enough to need a RecursionError guard
    return _build(Ctx(path, doc))


def _build(ctx: Ctx) -> Plan:
    top = ctx.doc.data
    if top is None:
        raise ctx.err(1, "the plan is empty", "add project:, experiments: and gates: sections")
    if not isinstance(top, dict):
        raise ctx.err(
            ctx.doc.line(top),
            f"a plan must be a mapping, not {type_name(top)}",
            "start the file with experiments:",
        )
    known, meta = ctx.split(top, "plan", "the plan")
    project = _parse_project(ctx, top, known.get("project"))
    modal = _parse_modal(ctx, top, known.get("modal"))
    defaults = _parse_defaults(ctx, top, known.get("defaults"))

    raw_exps = known.get("experiments")
    if raw_exps is None:
        raw_exps = {}
    if not isinstance(raw_exps, dict):
        raise ctx.err(
            ctx.kline(top, "experiments"),
            f"experiments must be a mapping of id -> experiment, not {type_name(raw_exps)}",
            "write experiments:\n    my-experiment:\n      sub_experiments: [...]",
        )

    subs: dict[str, SubRef] = {}
    exp_refs: dict[str, ExpRef] = {}
    experiments: list[Experiment] = []
    for exp_id, spec in raw_exps.items():
        line = ctx.kline(raw_exps, exp_id)
        check_id(ctx, exp_id, line, "experiment")
        exp, ref = _parse_experiment(ctx, exp_id, spec, line, defaults, subs)
        experiments.append(exp)
        exp_refs[exp_id] = ref

    gates = parse_gates(ctx, top, known.get("gates"), experiments)
    check_references(ctx, experiments, exp_refs, subs)
    experiments = criterion_references(ctx, experiments, subs)
    check_cycles(ctx, experiments, exp_refs, subs, gates)

    return Plan(
        path=Path(os.path.abspath(ctx.file)),
        project=project,
        experiments=tuple(experiments),
        gates=tuple(gates),
        modal=modal,
        meta=meta,
        warnings=tuple(replaces_warnings(ctx, experiments, exp_refs)),
    )


def _parse_project(ctx: Ctx, top: dict[Any, Any], raw: Any) -> Project:
    if raw is None:
        return Project(name="", hypothesis="", wandb_project=None, meta={})
    line = ctx.kline(top, "project")
    if isinstance(raw, str):
        return Project(name=raw, hypothesis="", wandb_project=None, meta={})
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"project must be a mapping, not {type_name(raw)}",
            "write project: {name: ..., hypothesis: ...}",
        )
    known, meta = ctx.split(raw, "project", "project")
    wandb = known.get("wandb_project")
    if wandb is not None and not isinstance(wandb, str):
        raise ctx.err(ctx.kline(raw, "wandb_project"), "project.wandb_project must be a string", "quote it")
    return Project(
        name=as_text(ctx, known.get("name"), ctx.kline(raw, "name"), "project.name"),
        hypothesis=as_text(ctx, known.get("hypothesis"), ctx.kline(raw, "hypothesis"), "project.hypothesis"),
        wandb_project=wandb,
        meta=meta,
    )


def _parse_modal(ctx: Ctx, top: dict[Any, Any], raw: Any) -> dict[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "modal"),
            f"modal must be a mapping, not {type_name(raw)}",
            'write modal: {python: "3.11"}',
        )
    known, _ = ctx.split(raw, "modal", "modal")
    for key, value in known.items():
        kline = ctx.kline(raw, key)
        if value is None:
            continue
        if key == "python" and not isinstance(value, str):
            raise ctx.err(
                kline,
                f"modal.python must be a quoted version string, not {type_name(value)} "
                "(unquoted, 3.10 reads as 3.1)",
                f'write python: "{value}"',
            )
        if key in ("pip", "apt", "secrets"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ctx.err(kline, f"modal.{key} must be a list of strings", f"write {key}: [name, ...]")
        if key in ("env", "volumes") and not isinstance(value, dict):
            raise ctx.err(
                kline,
                f"modal.{key} must be a mapping, not {type_name(value)}",
                f"write {key}: {{name: value}}",
            )
    return dict(raw)


def _parse_defaults(ctx: Ctx, top: dict[Any, Any], raw: Any) -> Layer:
    if raw is None:
        return Layer()
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "defaults"),
            f"defaults must be a mapping, not {type_name(raw)}",
            "write defaults: {params: {...}}",
        )
    known, _ = ctx.split(raw, "defaults", "defaults")
    for key in NOT_INHERITED_KEYS:
        if key in known:
            raise ctx.err(
                ctx.kline(raw, key),
                f"{key} cannot go under defaults: it is not inherited",
                f"move {key} to each experiment or sub-experiment it applies to",
            )
    return parse_layer(ctx, raw, known, "defaults")


def _parse_experiment(
    ctx: Ctx, exp_id: str, spec: Any, line: int, defaults: Layer, subs: dict[str, SubRef]
) -> tuple[Experiment, ExpRef]:
    where = f"experiment {exp_id!r}"
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ctx.err(
            line, f"{where} must be a mapping, not {type_name(spec)}", "write its keys indented below the id"
        )
    known, meta = ctx.split(spec, "experiment", where, also_meta=("accepted", "achieved"))
    accepted = None
    if "accepted" in known and known["accepted"] is not None:
        accepted = parse_accepted(ctx, known["accepted"], ctx.kline(spec, "accepted"))
    base = merge_layers(defaults, parse_layer(ctx, spec, known, where))

    raw_name = known.get("name")
    name = exp_id if raw_name is None else as_text(ctx, raw_name, ctx.kline(spec, "name"), "name")
    phase = parse_phase(ctx, known.get("phase"), ctx.kline(spec, "phase"))
    retired = known.get("retired", False)
    if retired is None:
        retired = False
    if not isinstance(retired, bool):
        raise ctx.err(
            ctx.kline(spec, "retired"), f"retired of {where} must be true or false", "write retired: true"
        )
    replaces_lines = id_list(ctx, spec, "replaces", "experiment")
    replaces = tuple(i for i, _ in replaces_lines)
    deps = id_list(ctx, spec, "dependencies", "experiment")

    entries = sub_entries(ctx, spec, known.get("sub_experiments"), where)
    # SPEC section 10: pivot blocks (annotations until now) hold sub-experiments of their own
    pivots, pivot_subs = parse_pivots(ctx, exp_id, meta, base, _pivot_criteria)

    sub_objs: list[SubExperiment] = []

    def add(sid: Any, sspec: Any, sline: int, layer: Layer, pivot: str | None) -> None:
        check_id(ctx, sid, sline, "sub-experiment")
        first = subs.get(sid)
        if first is not None:
            raise ctx.err(
                sline,
                f"duplicate sub-experiment id {sid!r} "
                f"(first at line {first.line}, in experiment {first.experiment_id!r})",
                "sub-experiment ids are unique across the plan: rename one",
            )
        sub, sub_deps = _parse_sub(ctx, exp_id, sid, sspec, sline, layer, pivot)
        subs[sid] = SubRef(exp_id, sline, sub_deps)
        sub_objs.append(sub)

    for sid, sspec, sline in entries:
        in_pivot = pivot_subs.pop(sid, None) if isinstance(sid, str) else None
        if in_pivot is None:
            add(sid, sspec, sline, base, None)
            continue
        # Named by the main list and by a pivot block: one sub-experiment, of the pivot, in the
        # main list's place; its settings written in one of the two places.
        pkey, pspec, pline, player = in_pivot
        if sspec and pspec:
            raise ctx.err(
                pline,
                f"sub-experiment {sid!r} has settings both in the sub_experiments of {where} "
                f"(line {sline}) and in its pivot block {pkey!r}",
                "keep its settings in one place",
            )
        add(sid, pspec or sspec, pline if pspec else sline, player, pkey)
    for sid, (pkey, pspec, pline, player) in pivot_subs.items():
        add(sid, pspec, pline, player, pkey)

    criteria, from_lines = _parse_criteria(ctx, spec, where, experiment_level=True)
    exp = Experiment(
        id=exp_id,
        name=name,
        phase=phase,
        sub_experiments=tuple(sub_objs),
        success_criteria=criteria,
        dependencies=tuple(i for i, _ in deps),
        replaces=replaces,
        retired=retired,
        meta=meta,
        loc=ctx.loc(line),
        accepted=accepted,
        achieved=achieved_of(ctx, spec, known.get("achieved"), "experiment"),
        pivots=tuple(pivots),
        plan_status=plan_status(meta.get("status"), ctx.loc(ctx.kline(spec, "status"))),
        marks=base.marks,
    )
    return exp, ExpRef(line, deps, from_lines, replaces_lines)


def _pivot_criteria(ctx: Ctx, block: dict[Any, Any], where: str) -> tuple[Criterion, ...]:
    return _parse_criteria(ctx, block, where, experiment_level=True)[0]


def _parse_sub(
    ctx: Ctx, exp_id: str, sid: str, spec: Any, line: int, base: Layer, pivot: str | None = None
) -> tuple[SubExperiment, list[tuple[str, int]]]:
    where = f"sub-experiment {sid!r}"
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ctx.err(
            line, f"{where} must be a mapping, not {type_name(spec)}", "write its keys indented below the id"
        )
    accepted = None
    achieved: dict[str, Achieved] = {}
    if spec:
        known, meta = ctx.split(spec, "sub_experiment", where, also_meta=("name", "accepted", "achieved"))
        if "accepted" in known and known["accepted"] is not None:
            accepted = parse_accepted(ctx, known["accepted"], ctx.kline(spec, "accepted"))
        achieved = achieved_of(ctx, spec, known.get("achieved"), f"sub-experiment {sid}")
        layer = merge_layers(base, parse_layer(ctx, spec, known, where))
        deps = id_list(ctx, spec, "dependencies", "sub-experiment")
        criteria, _ = _parse_criteria(ctx, spec, where, experiment_level=False)
    else:
        meta, layer, deps, criteria = {}, base, [], ()

    sweep = None if layer.sweep is UNSET else layer.sweep
    seeds = None if layer.seeds is UNSET else layer.seeds
    sub = SubExperiment(
        id=sid,
        experiment_id=exp_id,
        handler=None if layer.handler is UNSET else layer.handler,
        registry=None if layer.registry is UNSET else layer.registry,
        params=dict(layer.params or {}),
        stub_params=dict(layer.stub_params or {}),
        sweep=sweep,
        select=None if layer.select is UNSET else layer.select,
        seeds=seeds if seeds is not None else (0,),
        seeds_given=seeds is not None,
        executor=layer.executor if isinstance(layer.executor, str) else "local",
        resources=dict(layer.resources or {}),
        marks=layer.marks,
        deps=deps_patterns(layer.deps),
        success_criteria=criteria,
        dependencies=tuple(i for i, _ in deps),
        meta=meta,
        loc=ctx.loc(line),
        accepted=accepted,
        achieved=achieved,
        pivot=pivot,
    )
    if sweep:
        _check_points(ctx, sub, layer.sweep_line or line)
    return sub, deps


def _check_points(ctx: Ctx, sub: SubExperiment, line: int) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for point in sub.points():
        if len(point.key) > MAX_ID_LENGTH:
            raise ctx.err(
                line,
                f"sweep of sub-experiment {sub.id!r} gives a point an id of {len(point.key):,} "
                f"characters ({shown(point.key)}): ids are at most {MAX_ID_LENGTH} "
                "(they name items and folders)",
                "use shorter param names or values (a point's id is name_value-name_value...)",
            )
        if point.key in seen:
            raise ctx.err(
                line,
                f"sweep of sub-experiment {sub.id!r} gives two points the same id [{point.key}] "
                f"({shown(seen[point.key])} and {shown(dict(point.values))})",
                "make the swept values distinct once characters other than letters, digits, '_' and '.' "
                "become '_'",
            )
        seen[point.key] = dict(point.values)


# --- criteria ---------------------------------------------------------------------------------


def _parse_criteria(
    ctx: Ctx, owner: dict[Any, Any], where: str, *, experiment_level: bool
) -> tuple[tuple[Criterion, ...], dict[str, int]]:
    """The criteria under ``success_criteria`` and, for ``from:``, the line each was written on."""
    raw = owner.get("success_criteria")
    if raw is None:
        return (), {}
    line = ctx.kline(owner, "success_criteria")
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"success_criteria of {where} must be a mapping of metric -> criterion, not {type_name(raw)}",
            'write success_criteria: {accuracy: ">= 0.9"}',
        )
    from ..criteria import CriterionError, parse_criterion

    out: list[Criterion] = []
    from_lines: dict[str, int] = {}
    for metric, spec in raw.items():
        mline = ctx.kline(raw, metric)
        if not isinstance(metric, str) or not metric:
            raise ctx.err(
                mline, f"metric name {shown(metric)} in {where} must be a string", "quote the metric name"
            )
        try:
            crit = parse_criterion(metric, spec, loc=ctx.loc(mline), experiment_level=experiment_level)
        except CriterionError as exc:
            message = getattr(exc, "message", None) or str(exc)
            fix = getattr(exc, "fix", "") or ""
            raise ctx.err(mline, f"{message} (in {where})", fix) from None
        if isinstance(spec, dict) and "achieved" in spec:
            # SPEC section 10: a value recorded by hand (non-numbers are metadata)
            aline = ctx.doc.value_line(spec, "achieved", mline)
            got = achieved_value(spec["achieved"], ctx.loc(aline), "criterion")
            if got is not None:
                crit = replace(crit, achieved=got)
        out.append(crit)
        if isinstance(spec, dict) and "from" in spec:
            from_lines[metric] = ctx.doc.value_line(spec, "from", mline)
        else:
            from_lines[metric] = mline
    return tuple(out), from_lines
