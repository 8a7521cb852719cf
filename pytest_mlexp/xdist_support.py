"""pytest-xdist: keep dependent experiments on one worker, in order, and never run one twice.

xdist's ``--dist loadgroup`` does nothing with pytest 9.2 (xdist issue #1386), so we schedule
ourselves: every experiment item of a dependency component (experiments linked by
``dependencies``, gates or sub-experiment dependencies) is one unit of work sent to one
worker, which runs it in our topological order and so knows each prerequisite's outcome
before a dependent starts.  Unrelated components run on different workers.

Registered only when xdist is active (see ``plugin.py``); imported lazily.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .session import MlexpSession


class XdistHooks:
    """Hooks that exist only under xdist (registered when the xdist plugin is loaded)."""

    def __init__(self, state: MlexpSession) -> None:
        self.state = state
        self.worker_pids: dict[str, int] = {}  # gateway id -> pid of a local (popen) worker
        self._interrupted = False

    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        pid = _local_pid(gateway)
        if pid is not None:
            self.worker_pids[str(gateway.id)] = pid

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        # Its pid may be another process's soon: never signalled after the worker is gone.
        self.worker_pids.pop(str(getattr(getattr(node, "gateway", None), "id", "")), None)

    def interrupt_workers(self) -> None:
        """SIGTERM reached the controller alone (``docker stop``, ``kill <pid>``, a scheduler):
        the workers get the SIGINT a terminal's Ctrl-C would have given them, so they stop what
        they run now instead of draining the work xdist already sent them (finishing items
        whose reports nobody reads any more: minutes of work thrown away)."""
        if self._interrupted:
            return  # a second SIGTERM: the workers were told once
        self._interrupted = True
        reached = 0
        for pid in list(self.worker_pids.values()):
            # A worker that ignores SIGINT (started from a script's background job: the shell
            # makes those ignore it) gets SIGTERM, which the plugin turns into an interruption
            # in workers too.
            sig = signal.SIGTERM if _ignores_sigint(pid) else signal.SIGINT
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
                reached += 1
        if reached:
            self.state.notes_end.append(
                f"mlexp: SIGTERM: {reached} xdist worker(s) interrupted, as a terminal's Ctrl-C would have "
                "(the items they were running are not recorded; nothing more was started)"
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if not self.state.selected:
            return None
        from .xdist_scheduler import MlexpScheduling

        # The scheduler below is a --dist loadscope whose scope for experiment items is their
        # dependency component: a mode the user chose that differs is named, once.
        dist = getattr(config.option, "dist", "load")
        if dist not in ("load", "loadscope", "no"):
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"mlexp: --dist {dist} is replaced by pytest-mlexp's scheduler while experiments run: "
                    "the experiments of one dependency component go to one worker, in order; "
                    "other tests are spread by module (as with --dist loadscope)"
                )

        return MlexpScheduling(config, log, self.state)

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died while running an experiment item: record ``infra_error`` (lost worker)."""
        from .records import ResultOp, new_entry, now_iso
        from .session import OP_KEY

        parts = crashitem.split("::")
        if len(parts) < 3 or not parts[0].endswith(".yaml") or parts[2] == "assessment":
            return
        path = Path(self.state.rootpath) / parts[0]
        try:
            ctx = self.state.context_for(path)
        except Exception:
            return
        sub_id, _, point = parts[2].partition("[")
        if not ctx.plan.has_sub(sub_id):
            return
        message = f"the xdist worker died while running {crashitem}; not re-run (it may have done GPU work)"
        entry = new_entry(
            "infra_error",
            metrics={},
            error={"kind": "lost_worker", "type": "WorkerCrash", "message": message, "traceback": ""},
            finished_at=now_iso(),
        )
        experiment = ctx.plan.sub(sub_id).experiment_id
        op = ResultOp.record(str(path), experiment, sub_id, point.rstrip("]") or None, entry)
        setattr(report, OP_KEY, op.to_dict())
        report.longrepr = message


def _ignores_sigint(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT (Linux: its ``SigIgn`` mask); False where that
    cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except (OSError, ValueError, IndexError):
        pass
    return False


def _local_pid(gateway: Any) -> int | None:
    """The pid of a worker xdist started on this machine (a ``popen`` gateway); None for other
    gateways (an ssh or socket one: their local process is a connection, not the worker)."""
    if not getattr(getattr(gateway, "spec", None), "popen", False):
        return None
    pid = getattr(getattr(getattr(gateway, "_io", None), "popen", None), "pid", None)  # execnet's
    return pid if isinstance(pid, int) else None
