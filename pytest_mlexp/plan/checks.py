"""Checks across the whole plan: every id a plan refers to exists, and nothing waits for itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from ..graph import PrerequisiteGraph
from ..model import Experiment, Gate, PlanError
from ..structs import struct
from .context import Ctx
from .keys import closest_id
from .limits import shown


@struct
class SubRef:
    """Where a sub-experiment was declared, and its dependency lines for later checks."""

    experiment_id: str
    line: int
    deps: list[tuple[str, int]]
    compares: list[tuple[str, int]] = field(default_factory=list)  # criteria naming another sub


@struct
class ExpRef:
    line: int
    deps: list[tuple[str, int]]
    from_lines: dict[str, int]
    replaces: list[tuple[str, int]] = field(default_factory=list)


def replaces_warnings(ctx: Ctx, experiments: list[Experiment], exp_refs: dict[str, ExpRef]) -> list[str]:
    """``replaces`` naming an id the plan does not have: a warning, not an error (SPEC section
    10): teams keep the history of what an experiment replaced, often long gone from the plan."""
    ids = [e.id for e in experiments]
    out: list[str] = []
    for exp in experiments:
        for old, line in exp_refs[exp.id].replaces:
            if old in ids:
                continue
            guess = closest_id(old, ids)
            hint = f" (did you mean {guess}?)" if guess else ""
            out.append(
                f"{ctx.loc(line)}: experiment {exp.id!r} replaces {old!r}, which is not in the plan{hint}; "
                "nothing is left out for it"
            )
    return out


def unknown_ref(ctx: Ctx, line: int, name: str, what: str, candidates: Iterable[str]) -> PlanError:
    guess = closest_id(name, candidates)
    fix = f"did you mean {guess}?" if guess else "check the spelling, or add it to the plan"
    return ctx.err(line, f"unknown {what}", fix)


def check_references(
    ctx: Ctx, experiments: list[Experiment], exp_refs: dict[str, ExpRef], subs: dict[str, SubRef]
) -> None:
    exp_ids = [e.id for e in experiments]
    exp_set = set(exp_ids)
    for exp in experiments:
        ref = exp_refs[exp.id]
        for dep, line in ref.deps:
            if dep not in exp_set:
                if dep in subs:
                    raise ctx.err(
                        line,
                        f"dependency {dep!r} of experiment {exp.id!r} is a sub-experiment, not an experiment",
                        f"depend on its experiment {subs[dep].experiment_id!r}, "
                        "or list it under the dependencies of a sub-experiment",
                    )
                raise unknown_ref(ctx, line, dep, f"dependency {dep!r} of experiment {exp.id!r}", exp_ids)
        for sub in exp.sub_experiments:
            for dep, line in subs[sub.id].deps:
                if dep not in subs:
                    if dep in exp_set:
                        raise ctx.err(
                            line,
                            f"dependency {dep!r} of sub-experiment {sub.id!r} is an experiment",
                            "sub-experiments depend on sub-experiments; "
                            "put experiment dependencies on the experiment",
                        )
                    raise unknown_ref(
                        ctx, line, dep, f"dependency {dep!r} of sub-experiment {sub.id!r}", subs
                    )
        for crit in exp.success_criteria:
            if crit.from_ is not None and crit.from_ not in subs:
                line = ref.from_lines.get(crit.metric, ref.line)
                raise unknown_ref(
                    ctx,
                    line,
                    crit.from_,
                    f"sub-experiment {shown(crit.from_)} in from of {shown(crit.metric)}",
                    subs,
                )
        for pivot in exp.pivots:
            for crit in pivot.success_criteria:
                if crit.from_ is not None and crit.from_ not in subs:
                    line = crit.loc.line if crit.loc is not None else ref.line
                    what = (
                        f"sub-experiment {shown(crit.from_)} in from of {shown(crit.metric)} "
                        f"(pivot {shown(pivot.key)})"
                    )
                    raise unknown_ref(ctx, line, crit.from_, what, subs)


def criterion_references(
    ctx: Ctx, experiments: list[Experiment], subs: dict[str, SubRef]
) -> list[Experiment]:
    """Criteria that compare with another sub-experiment (SPEC section 3a): checked against the
    plan's ids, and made implicit dependencies (``SubExperiment.implicit_dependencies``)."""
    from ..criteria import CriterionError, resolve_references

    try:
        resolved, gained = resolve_references(experiments, subs)
    except CriterionError as exc:
        raise ctx.err(exc.loc.line if exc.loc is not None else 1, exc.message, exc.fix) from None
    for sub_id, refs in gained.items():
        subs[sub_id].compares = refs
    return resolved


def check_cycles(
    ctx: Ctx,
    experiments: list[Experiment],
    exp_refs: dict[str, ExpRef],
    subs: dict[str, SubRef],
    gates: list[Gate],
) -> None:
    """No cycle in the prerequisite graph that also orders and dispatches the run (graph.py)."""
    lines = {("experiment", e.id, dep): line for e in experiments for dep, line in exp_refs[e.id].deps}
    lines.update(
        {("sub", sid, dep): line for sid, ref in subs.items() for dep, line in (*ref.compares, *ref.deps)}
    )
    cycle = PrerequisiteGraph(experiments, gates, lines).cycle()
    if cycle is not None:
        raise ctx.err(cycle.line, cycle.message, cycle.fix)
