"""The fork server: a small process that has imported only the worker's modules and forks a
new warm worker whenever the pytest process asks for one.

Starting a worker this way costs a ``fork()`` (milliseconds), not an interpreter start and the
plugin's imports, so starting eight workers takes about as long as starting one.  Run as
``python -m pytest_mlexp.forkserver LIFELINE_FD CONTROL_FD`` by ``executors/workers.py``:

* ``CONTROL_FD``: a Unix socket to the pytest process.  Requests (``wire.py``):
  ``{"op": "spawn", "env": {...}, "cwd": ...}`` with the new worker's socket attached (answered
  ``{"pid": n}``); ``{"op": "wait", "pid": n}`` (answered ``{"code": exit code or None}``).
  ``{"op": "close"}``: the session is over (idle workers get time to exit on their own).
  End of stream without it: pytest is gone.
* ``LIFELINE_FD``: the read end of a pipe whose write end only the pytest process holds: it
  reads end-of-file when pytest is gone, however it ended (SIGKILL included).

Either way the server kills every worker's process group (the worker and what its handler
started), collects them and exits.  Workers get ``SIGKILL`` from the kernel if the server
itself dies (Linux), and the server adopts what they leave behind (a child subreaper).
Standard library only, and never busy: it always answers at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from . import remote, wire
from .procutil import children, kill_group, kill_trees, reap, set_child_subreaper, set_parent_death_signal

#: how long the server waits for workers told to exit before it kills them (session end)
EXIT_GRACE_S = 10.0


class Server:
    def __init__(self, lifeline: int, control: socket.socket, wakeup: int = -1, wakeup_w: int = -1) -> None:
        self.lifeline = lifeline
        self.control = control
        self.wakeup = wakeup  # readable when SIGTERM arrived (signal.set_wakeup_fd)
        self.wakeup_w = wakeup_w
        self.workers: set[int] = set()  # forked, not yet collected
        self.codes: dict[int, int] = {}  # collected workers' exit codes, until asked for

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        grace = 0.0  # pytest gone, or the server killed: nobody waits for the workers' results
        try:
            while True:
                watched = [self.control.fileno(), self.lifeline, *([self.wakeup] if self.wakeup >= 0 else [])]
                ready, _, _ = select.select(watched, [], [], 5.0)
                if self.wakeup in ready:
                    return 0  # SIGTERM: pytest is gone (the parent-death signal), or a person
                if self.lifeline in ready and not os.read(self.lifeline, 1):
                    return 0  # pytest is gone
                if self.control.fileno() in ready:
                    message = wire.recv_with_fds(self.control)
                    if message is None:
                        return 0  # pytest is gone (its end closed without a word)
                    if message[0].get("op") == "close":
                        grace = EXIT_GRACE_S  # the session ended: idle workers are exiting
                        return 0
                    self.answer(*message)
                self.adopted()
        finally:
            self.shutdown(grace)

    def answer(self, header: Mapping[str, Any], fds: Sequence[int]) -> None:
        op = header.get("op")
        if op == "spawn" and len(fds) == 1:
            pid = self.spawn(header, fds[0])
            wire.send(self.control, {"pid": pid})
        elif op == "wait":
            wire.send(self.control, {"code": self.wait(int(header["pid"]), float(header.get("timeout", 5)))})
        else:
            for fd in fds:
                os.close(fd)
            wire.send(self.control, {"error": f"unknown request {op!r}"})

    # --- workers --------------------------------------------------------------------------------
    def spawn(self, header: Mapping[str, Any], fd: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the server's loop
            code = 1
            try:
                code = _worker(header, fd, self)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(fd)
        self.workers.add(pid)
        return pid

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of a worker that ended (negative: the signal); None if it still runs."""
        if pid in self.codes:
            return self.codes.pop(pid)
        if pid not in self.workers:
            return None
        got = reap([pid], timeout=timeout)
        self.workers.difference_update(got)
        code = got.pop(pid, None)
        self._keep(got)
        return code

    def _keep(self, codes: Mapping[int, int]) -> None:
        for other, code in codes.items():
            if other in self.workers:
                self.workers.discard(other)
                self.codes[other] = code

    def adopted(self) -> None:
        """Kill what ended workers left behind (re-parented to us, the subreaper): any child
        that is not a worker.  Collects whatever has ended."""
        strays = [pid for pid in children() if pid not in self.workers and pid not in self.codes]
        if strays:
            kill_trees(strays)
        self._keep(reap(timeout=0))

    def shutdown(self, grace: float) -> None:
        """Every worker ends: workers get ``grace`` seconds to exit on their own (at session
        end, idle ones see their socket close and finish their tracker's business), then all
        are killed with their process groups, and everything is collected."""
        deadline = time.monotonic() + grace
        while self.workers and time.monotonic() < deadline:
            self._keep(reap(timeout=0))
            if self.workers:
                time.sleep(0.01)
        for pid in list(self.workers):
            kill_group(pid)
        kill_trees(children())
        reap(list(self.workers), timeout=5.0)


def _worker(header: Mapping[str, Any], fd: int, server: Server) -> int:
    """In the forked child: become a worker (own session, pinned environment) and serve."""
    parent = os.getppid()
    signal.set_wakeup_fd(-1)
    with contextlib.suppress(OSError):
        server.control.close()
        os.close(server.lifeline)
    for own in (server.wakeup, server.wakeup_w):
        if own >= 0:
            with contextlib.suppress(OSError):
                os.close(own)
    os.setsid()  # its own process group: killing the group reaches what the handler starts
    set_parent_death_signal(signal.SIGKILL)  # the server gone (it never is, unless killed)
    if os.getppid() != parent:
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(header.get("env") or {}).items()})
    cwd = header.get("cwd")
    if cwd:
        os.chdir(str(cwd))
    return remote.serve(socket.socket(fileno=fd))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not all(a.isdigit() for a in args):
        print("usage: python -m pytest_mlexp.forkserver LIFELINE_FD CONTROL_FD", file=sys.stderr)
        return 2
    set_child_subreaper()
    # SIGTERM (the parent-death signal, or a person) wakes the loop through a pipe, which then
    # ends through the finally that kills the workers.  Not an exception from the handler: when
    # pytest dies, the lifeline and SIGTERM arrive together, and an exception raised while the
    # workers are being killed would cut that short (they would then die by their own
    # parent-death signal and what their handlers started would outlive them).  SIGINT from a
    # terminal never reaches us (pytest starts us in a session of our own).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, _ignore)
    set_parent_death_signal(signal.SIGTERM)
    server = Server(int(args[0]), socket.socket(fileno=int(args[1])), wake_r, wake_w)
    return server.run()


def _ignore(signum: int, frame: Any) -> None:
    """SIGTERM's handler: nothing; the wakeup pipe tells the loop."""


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)  # nothing left to tidy: skipping interpreter teardown ends the session sooner
