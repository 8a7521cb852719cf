"""Handler stubs written into files: ``pytest --mlexp-scaffold`` and :func:`scaffold`.

A stub is what ``handlers.scaffold_stub`` gives (the same text a missing handler's message
shows); this module decides which file each goes into and appends it there, never replacing
anything that exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .handler_modules import is_valid_name
from .handlers import (
    HandlerAmbiguous,
    HandlerIndex,
    HandlerNotFound,
    HandlerUnsupported,
    convention_file,
    defined_functions,
    handler_name_for,
    scaffold_stub,
    stub_source,
)

if TYPE_CHECKING:
    import pytest

    from .model import SubExperiment

__all__ = ["run_scaffold", "scaffold", "scaffold_stub"]


def _explicit_target(root: Path, handler: str) -> tuple[Path, str] | None:
    module, _, fn = handler.strip().partition(":")
    parts = module.strip().split(".")
    fn = fn.strip()
    if not is_valid_name(fn) or not all(is_valid_name(p) for p in parts):
        return None
    return root.joinpath(*parts[:-1], parts[-1] + ".py"), fn


def scaffold(
    root: Path | str,
    handlers_dir: str | os.PathLike[str],
    entries: Iterable[tuple[SubExperiment, Sequence[str]]],
) -> list[Path]:
    """Write a stub for every sub-experiment in ``entries`` that has no handler; return the files.

    By convention a stub goes into ``<handlers_dir>/<experiment id mapped>.py``, or into
    ``handlers.py`` inside the experiment's folder when it has one; a sub-experiment that names
    ``handler: "pkg.mod:fn"`` gets it in ``<root>/pkg/mod.py``.  Existing files are appended to,
    never rewritten: a function that already exists is never replaced, and ambiguous or
    unsupported handlers (which exist) are left for the user to sort out.
    """
    index = HandlerIndex(root, handlers_dir)
    planned: dict[Path, list[tuple[str, str, str]]] = {}  # file -> [(function, stub, experiment id)]
    for sub, metric_names in entries:
        if sub.registry and not sub.handler:
            continue  # a handler registry (``handlers:``) decides; it is the team's own code
        try:
            index.find_for(sub, metric_names)
            continue
        except (HandlerAmbiguous, HandlerUnsupported):
            continue
        except HandlerNotFound:
            pass
        if sub.handler:
            target = _explicit_target(index.root, sub.handler)
            if target is None:
                continue  # a malformed handler: string: the item reports how to fix it
            path, fn = target
        else:
            fn = handler_name_for(sub.id)
            if not is_valid_name(fn):
                continue  # cannot be found by convention; the item says to name it explicitly
            path = convention_file(index.handlers_root, sub.experiment_id)
        planned.setdefault(path, []).append((fn, stub_source(fn, sub, metric_names), sub.experiment_id))

    written: list[Path] = []
    for path, stubs in planned.items():
        existing = path.read_text(encoding="utf-8") if path.is_file() else None
        # a file that does not parse still must not get a second copy of a function
        present = defined_functions(path) if existing is not None else set()
        new = [(fn, stub) for fn, stub, _ in stubs if fn not in present]
        new = list({fn: (fn, stub) for fn, stub in new}.values())  # one stub per function
        if not new:
            continue
        if existing is None:
            exp_ids = sorted({e for _, _, e in stubs})
            text = (
                f'"""Handlers for experiment {", ".join(exp_ids)}.\n\n'
                f"Written by pytest --mlexp-scaffold: fill in each function; see the plan for params\n"
                f'and success criteria."""\n'
            )
        else:
            text = existing
        for _, stub in new:
            text = text.rstrip("\n") + "\n\n\n" + stub if text.strip() else stub
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.mlexp-tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # all or nothing: never a half-written handler module
        written.append(path)
    return written


def run_scaffold(config: pytest.Config) -> int:
    """``pytest --mlexp-scaffold``: stubs for every sub-experiment of the plan without a handler."""
    import pytest

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
                index.find(exp.id, sub.id, sub.handler, registry=sub.registry)
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
