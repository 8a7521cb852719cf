"""The xdist controller passing a SIGTERM on to its workers (``XdistHooks.interrupt_workers``)."""

from __future__ import annotations

import signal
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_mlexp.xdist_support import XdistHooks, _ignores_sigint

CHILD = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def _child(mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_a_worker_ignoring_sigint_gets_sigterm_and_a_second_sigterm_is_not_passed_on() -> None:
    # Two SIGTERMs printed the closing line twice (and signalled the workers twice); a worker
    # that ignores SIGINT (a shell script's background job) was "interrupted" by a SIGINT it
    # ignored.
    plain, deaf = _child("default"), _child("ignore")
    try:
        assert not _ignores_sigint(plain.pid) and _ignores_sigint(deaf.pid)
        state: Any = SimpleNamespace(notes_end=[])
        hooks = XdistHooks(state)
        hooks.worker_pids = {"gw0": plain.pid, "gw1": deaf.pid}
        hooks.interrupt_workers()
        hooks.interrupt_workers()
        assert plain.wait(timeout=30) == -signal.SIGINT
        assert deaf.wait(timeout=30) == -signal.SIGTERM
        assert len(state.notes_end) == 1 and "2 xdist worker(s) interrupted" in state.notes_end[0]
    finally:
        for proc in (plain, deaf):
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
