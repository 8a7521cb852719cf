"""A Modal backend without Modal: calls run :func:`pytest_mlexp.remote.modal_entry` in threads.

It obeys :class:`~pytest_mlexp.executors.modal.ModalBackend`, so the modal executor's
scheduling, retries, timeouts, cancellation and artifact round trip can be tested (by this
project, or by a user wiring a plan) with no server and no credentials::

    # conftest.py
    from pytest_mlexp.executors.modal import ModalExecutor
    from pytest_mlexp.executors.modal_fake import FakeModalBackend

    def pytest_mlexp_executor(name, config):
        if name == "modal":
            return ModalExecutor(config, backend=FakeModalBackend())

``faults`` makes calls fail like Modal does: ``{"e1_a": ["preempt", "ok"]}`` preempts the first
attempt of ``e1_a`` and lets the second run; ``"timeout"`` and ``"lost"`` work the same way.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Job
from .modal import NotYet, RemoteLost, RemotePreempted, RemoteTimeout

_FAULTS = {"timeout": RemoteTimeout, "preempt": RemotePreempted, "lost": RemoteLost}


class FakeCall:
    def __init__(self, job: Job, fault: str | None) -> None:
        self.job = job
        self.fault = fault
        self.done = threading.Event()
        self.cancelled = False
        self.outcome: dict[str, Any] | None = None
        self.error: BaseException | None = None


class FakeModalBackend:
    """Runs each call in a thread of this process, in a scratch "container" folder."""

    remote_root: str | None = None  # the handlers are where they are

    def __init__(
        self,
        *,
        faults: Mapping[str, Sequence[str]] | None = None,
        problem: tuple[str, str] | None = None,
    ) -> None:
        self.scratch = tempfile.mkdtemp(prefix="mlexp-fake-modal-")
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.problem = problem
        self.started = 0
        self.stopped = 0
        self.spawned: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (task data, resources)
        self._lock = threading.Lock()

    def check(self) -> tuple[str, str] | None:
        return self.problem

    def start(self) -> None:
        self.started += 1

    def spawn(self, job: Job, task_data: dict[str, Any], settings: dict[str, Any]) -> FakeCall:
        with self._lock:
            self.spawned.append((task_data, dict(job.resources)))
            queue = self.faults.get(job.task.sub_id) or []
            fault = queue.pop(0) if queue else None
        call = FakeCall(job, fault if fault != "ok" else None)
        if call.fault is not None:
            call.error = _FAULTS[call.fault](f"fake {call.fault}")
            call.done.set()
            return call
        volume = Path(self.scratch, "volume")
        settings = {**settings, "volume_mount": str(volume), "volume_name": None}  # no commit: no Modal

        def _run() -> None:
            from ..remote import modal_entry

            try:
                call.outcome = modal_entry(task_data, job.fixtures_blob, settings)
            except BaseException as exc:  # as Modal re-raises a remote exception
                call.error = exc
            finally:
                call.done.set()

        threading.Thread(target=_run, name=f"fake-modal-{job.task.label}", daemon=True).start()
        return call

    def get(self, call: FakeCall, timeout: float) -> dict[str, Any]:
        if not call.done.wait(timeout):
            raise NotYet()
        if call.error is not None:
            raise call.error
        assert call.outcome is not None
        return call.outcome

    def cancel(self, call: FakeCall) -> None:
        call.cancelled = True  # a thread cannot be killed; its result is ignored

    def stop(self) -> None:
        self.stopped += 1
