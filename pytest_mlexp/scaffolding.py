"""``pytest --mlexp-scaffold``: write handler stubs for sub-experiments that have none."""

from __future__ import annotations

from pathlib import Path

import pytest


def run_scaffold(config: pytest.Config) -> int:
    from .handlers import HandlerIndex, scaffold
    from .model import PlanError
    from .plan import load_plan

    root = Path(config.rootpath)
    plan_path = root / str(config.getini("mlexp_plan") or "research/research_plan.yaml")
    handlers_dir = str(config.getini("mlexp_handlers") or "experiments")

    # Runs before pytest configures its terminal reporter: plain prints.
    def line(text: str, **_: object) -> None:
        print(text)

    try:
        plan = load_plan(plan_path)
    except PlanError as exc:
        line(f"mlexp: {exc.render()}", red=True)
        return int(pytest.ExitCode.USAGE_ERROR)
    index = HandlerIndex(root, handlers_dir)
    missing = []
    for exp in plan.experiments:
        last = exp.sub_experiments[-1].id if exp.sub_experiments else None
        for sub in exp.sub_experiments:
            try:
                index.find(exp.id, sub.id, sub.handler)
            except LookupError:
                metrics = [c.metric for c in sub.success_criteria]
                metrics += [
                    c.metric
                    for c in exp.success_criteria
                    if (c.from_ == sub.id or (c.from_ is None and sub.id == last)) and c.metric not in metrics
                ]
                missing.append((sub, metrics))
    if not missing:
        line("mlexp: every sub-experiment has a handler; nothing to scaffold")
        return 0
    written = scaffold(root, handlers_dir, missing)
    for path in written:
        line(f"mlexp: wrote handler stubs to {path.relative_to(root) if path.is_relative_to(root) else path}")
    line(
        f"mlexp: {len(missing)} handler stubs written; fill them in, then run pytest --experiment <id> --stub"
    )
    return 0
