"""``mlexp estimate [--experiment ID ...]``: what running each experiment would cost, from the
stored durations (``estimate.py``; the same figures ``pytest --experiment X --co`` ends with)."""

from __future__ import annotations

import os
from typing import Any

from ..estimate import Estimate, ItemCost, PriceError, estimate, parse_prices, render_duration
from .project import CliError, Project
from .tables import render

__all__ = ["estimate_cmd"]


def estimate_cmd(
    project: Project, ids: list[str], fmt: str, *, executor: str | None, concurrency: int | None, stub: bool
) -> str:
    try:
        prices = parse_prices(project.gpu_prices()) if project.gpu_prices().strip() else None
    except PriceError as exc:
        raise CliError(f"ini option mlexp_gpu_prices: {exc}") from None
    defaults = {"modal": 32, "process": os.cpu_count() or 1}

    def slots(name: str) -> int:
        return concurrency or defaults.get(name, 1)

    per: list[tuple[str, Estimate]] = []
    everything: list[ItemCost] = []
    for exp in project.experiments(ids):
        items: list[ItemCost] = []
        for sub in exp.sub_experiments:
            run_on = executor or ("local" if stub else sub.executor)
            seeds = 1 if stub else len(sub.seeds)
            points = sub.points()
            for point in points or (None,):
                items.append(ItemCost(sub, point.key if point else None, seeds, run_on))
        per.append((exp.id, estimate(items, project.doc, prices=prices, concurrency=slots)))
        everything += items
    total = estimate(everything, project.doc, prices=prices, concurrency=slots)
    if fmt == "json":
        return render(
            "json",
            [],
            [],
            data={"experiments": {e: est.to_dict() for e, est in per}, "total": total.to_dict()},
        )
    if fmt in ("table", "md") and len(per) == 1:
        return f"{per[0][0]}: {per[0][1].line()}"
    header = ["experiment", "items", "seeds", "wall", "gpu_hours", "cost", "unknown"]
    rows: list[list[Any]] = []
    for exp_id, est in [*per, ("total", total)]:
        known = est.items - est.unknown - est.reused > 0
        if fmt == "csv":
            rows.append(
                [
                    exp_id,
                    est.items,
                    est.seeds,
                    round(est.wall_s, 1),
                    round(est.total_gpu_hours, 4),
                    est.cost,
                    est.unknown,
                ]
            )
        else:
            wall = f"~{render_duration(est.wall_s)}" if known else "unknown"
            cost = "" if est.cost is None else f"~${est.cost:,.2f}"
            gpu = f"{est.total_gpu_hours:.2f}" if known else ""
            rows.append([exp_id, est.items, est.seeds, wall, gpu, cost, est.unknown or ""])
    return render(fmt, header, rows)
