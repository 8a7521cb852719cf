"""pytest-xdist scheduling for experiment items (imported only when xdist makes a scheduler:
``xdist.scheduler`` costs ~5 ms to import, which every plain pytest run would otherwise pay)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from .graph import graph_of

if TYPE_CHECKING:
    from .model import Plan
    from .session import MlexpSession


def components(plan: Plan) -> dict[str, str]:
    """Experiment id -> the id of its dependency component: experiments linked in any way by
    the plan's prerequisite graph (``graph.py``) run on one worker, in order."""
    return graph_of(plan).components()


class MlexpScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """LoadScope scheduling whose scope for experiment items is their dependency component."""

    def __init__(self, config: pytest.Config, log: Any, state: MlexpSession) -> None:
        super().__init__(config, log)
        self._state = state
        self._components: dict[str, dict[str, str] | None] = {}

    def _component_map(self, plan_file: str) -> dict[str, str] | None:
        if plan_file not in self._components:
            path = Path(self._state.rootpath) / plan_file
            found: dict[str, str] | None = None
            if path.suffix == ".yaml" and path.is_file():
                try:
                    found = components(self._state.context_for(path).plan)
                except Exception:  # a broken plan is reported by collection, not here
                    found = None
            self._components[plan_file] = found
        return self._components[plan_file]

    def _split_scope(self, nodeid: str) -> str:
        parts = nodeid.split("::")
        if len(parts) >= 3 and parts[0].endswith(".yaml"):
            comps = self._component_map(parts[0])
            if comps is not None and parts[1] in comps:
                return f"{parts[0]}::component:{comps[parts[1]]}"
        return str(super()._split_scope(nodeid))

    def schedule(self) -> None:
        first = self.collection is None
        super().schedule()
        if first and self.collection:
            # What the workers collected (after -k, -m, the plans named): before work goes out.
            note = oversubscribed(self._state, self.config, len(self.nodes), self.collection)
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if note is not None and reporter is not None:
                reporter.write_line(note)

    def remove_node(self, node: Any) -> str | None:
        """As xdist's, but the item that was running when the worker died is marked done, so
        requeueing its unit does not run that sub-experiment a second time."""
        workload = self.assigned_work.pop(node)
        if not self._pending_of(workload):
            return None
        crashitem: str | None = None
        for work_unit in workload.values():
            for nodeid, completed in work_unit.items():
                if not completed:
                    crashitem = nodeid
                    break
            if crashitem is not None:
                break
        if crashitem is None:
            raise RuntimeError("Unable to identify crashitem on a workload with pending items")
        for scope, work_unit in workload.items():
            if crashitem in work_unit:
                work_unit[crashitem] = True
            if not all(work_unit.values()):
                self.workqueue[scope] = work_unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem


def oversubscribed(
    state: MlexpSession, config: pytest.Config, workers: int, nodeids: Sequence[str]
) -> str | None:
    """The warning for more xdist workers than the ``process`` executor's slots
    (``--mlexp-concurrency``, else the visible GPUs) when a collected item (``nodeids``: what
    the workers collected, after ``-k``/``-m``) runs under ``process``: each worker keeps one
    slot (and one GPU) at least, so ``workers`` seeds run at once and GPUs are shared.  None
    when that cannot happen."""
    if workers < 2:
        return None
    flag: int | None = config.getoption("mlexp_concurrency", None)
    from .executors.process import visible_gpus

    gpus = visible_gpus()
    limit = flag or len(gpus)
    if not limit or workers <= limit or not _runs_under_process(state, nodeids):
        return None
    what = f"--mlexp-concurrency {flag}" if flag else f"{len(gpus)} GPU(s) visible"
    shared = ", sharing GPUs (out of GPU memory is likely)" if gpus and workers > len(gpus) else ""
    return (
        f"mlexp: warning: -n {workers} with {what}: each xdist worker runs one seed at a time at "
        f"least, so up to {workers} run at once{shared}; use -n {limit} or fewer, or no -n (the "
        "process executor runs seeds side by side itself)"
    )


def _runs_under_process(state: MlexpSession, nodeids: Sequence[str]) -> bool:
    """Whether one of the sub-experiment items ``nodeids`` names runs under ``process``."""
    plans: dict[str, Any] = {}
    for nodeid in nodeids:
        parts = nodeid.split("::")
        if len(parts) < 3 or not parts[0].endswith(".yaml") or parts[2] == "assessment":
            continue
        if parts[0] not in plans:
            try:
                plans[parts[0]] = state.context_for(Path(state.rootpath) / parts[0]).plan
            except Exception:  # a plan that does not load: the workers report it
                plans[parts[0]] = None
        plan = plans[parts[0]]
        sub_id = parts[2].partition("[")[0]
        if plan is not None and plan.has_sub(sub_id) and state.executor_for(plan.sub(sub_id)) == "process":
            return True
    return False
