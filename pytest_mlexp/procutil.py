"""Small process-control helpers for worker processes: parent-death signals, child reaping,
finding and killing what a handler started.  Standard library only (ctypes for ``prctl`` on
Linux); every function degrades to doing less, never to raising, where the OS lacks a feature.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

__all__ = [
    "alive",
    "children",
    "descendants",
    "exit_text",
    "kill_group",
    "kill_trees",
    "reap",
    "set_child_subreaper",
    "set_parent_death_signal",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send ``signum`` to this process when its parent (thread) exits (Linux)."""
    return _prctl(_PR_SET_PDEATHSIG, signum)


def set_child_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (not init), so it can find, kill
    and reap what its children left behind (Linux)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


_has_proc_children: bool | None = None


def _proc_children(pid: int) -> list[int] | None:
    """Children from ``/proc/<pid>/task/*/children`` (Linux); None where that is unavailable."""
    global _has_proc_children
    if _has_proc_children is None:
        _has_proc_children = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
    if not _has_proc_children:
        return None
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # it ended
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue  # the thread ended while we looked
    return out


def _ps_table() -> dict[int, list[int]]:
    """parent pid -> child pids, from ``ps`` (macOS and other systems without /proc)."""
    table: dict[int, list[int]] = {}
    try:
        out = subprocess.run(
            ["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return table
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            table.setdefault(int(parts[1]), []).append(int(parts[0]))
    return table


def children(pid: int | None = None) -> list[int]:
    """The live child processes of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    found = _proc_children(pid)
    if found is None:
        found = _ps_table().get(pid, [])
    return found


def descendants(roots: Iterable[int]) -> list[int]:
    """``roots`` and every process below them, parents before children."""
    out: list[int] = []
    seen: set[int] = set()
    stack = list(roots)
    table: dict[int, list[int]] | None = None
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        kids = _proc_children(pid)
        if kids is None:
            if table is None:
                table = _ps_table()
            kids = table.get(pid, [])
        stack.extend(kids)
    return out


def kill_trees(roots: Iterable[int]) -> list[int]:
    """SIGKILL ``roots`` and all their descendants (found first, so that none escapes by being
    re-parented mid-way); returns the pids signalled."""
    pids = descendants(roots)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group (a worker and the children it started)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    else:  # no process groups (Windows): the process alone
        with contextlib.suppress(OSError):
            os.kill(pgid, signal.SIGKILL)


def reap(pids: Iterable[int] = (), timeout: float = 5.0) -> dict[int, int]:
    """Wait for ``pids`` (children of this process) to end, then collect any other child that
    already ended (orphans re-parented here); ``{pid: exit code}`` (negative: the signal).
    Bounded by ``timeout``: a process that does not end in time is left (and not returned)."""
    codes: dict[int, int] = {}
    pending = set(pids)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while pending:
        for pid in list(pending):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pending.discard(pid)  # not our child, or already collected
                continue
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    while True:
        try:
            done, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not done:
            break
        codes[done] = os.waitstatus_to_exitcode(status)
    return codes


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, ended but not yet collected, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    # the state follows the command name, which is in parentheses and may hold spaces
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def exit_text(code: int | None) -> str:
    if code is None:
        return "ended"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
