"""A pool of warm worker processes, each running seeds one after another (SPEC section 12).

The piece any executor built on the worker entry point (``remote.serve``) can use::

    pool = WorkerPool(size=4, env=lambda gpus: {...})
    run = pool.run(task.to_dict(), gpus=["0"], timeout=60, token=handle)   # blocks; any thread
    pool.kill(handle)                                                        # from another thread
    pool.close()                                                             # session end

* Workers live across seeds: at most ``size`` warm ones, each pinned to the GPUs it was started
  with (a seed goes to an idle worker with the same GPUs, else a new one replaces an idle one).
* A worker is replaced after it crashes, is killed (timeout, cancel), or has run ``max_seeds``
  seeds; ``fresh=True`` runs the seed in a worker of its own that exits afterwards.
* New workers are forked from a fork server (``forkserver.py``) that has imported only the
  worker's modules, so starting eight costs about what starting one does; where that is not
  possible they are started as ``python -m pytest_mlexp.remote --serve FD``.
* Every worker runs in a process group of its own (killing it reaches what its handler
  started) and ends with the pytest process, however that ends.
* Each seed's output goes to a ``0600`` log in the session's scratch folder (``scratch.py``);
  its tail comes back with a failure.
"""

from __future__ import annotations

import contextlib
import os
import site
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import wire
from ..procutil import exit_text, kill_group
from ..scratch import SessionScratch

__all__ = ["SeedRun", "WorkerPool", "WorkerStartError", "package_parent"]

#: characters of a seed's output kept when it fails
TAIL_CHARS = 4000
#: seconds a new worker (or the fork server) has to answer before it counts as failed to start
START_TIMEOUT_S = 120.0
#: seconds to wait for the fork server to end at session end (it gives workers 10 s to exit)
CLOSE_TIMEOUT_S = 30.0


class WorkerStartError(RuntimeError):
    """No worker process could be started (the message holds what it printed)."""


@dataclass
class SeedRun:
    """What became of one seed sent to a worker."""

    #: the worker's outcome as plain data (``SeedOutcome.to_dict()``); None when the worker
    #: ended (or was killed) before it answered
    outcome: dict[str, Any] | None
    pid: int
    #: the worker's exit code when it ended (negative: the signal); None when it still runs
    code: int | None = None
    #: killed for taking too long: the handler (``started``), or the import of its module
    timed_out: bool = False
    #: the tail of what the seed printed, when it failed or its worker was lost
    output: str = ""
    #: the handler was called (its module imported): a seed's timeout counts from then
    started: bool = False
    #: the seconds the import of the handler's module was allowed (when it took longer)
    import_limit: float | None = None

    @property
    def exit_text(self) -> str:
        return exit_text(self.code)


@dataclass(eq=False)
class _Worker:
    pid: int
    sock: socket.socket
    gpus: tuple[str, ...]
    one_shot: bool
    proc: subprocess.Popen[bytes] | None = None  # started by us, not forked by the server
    seeds: int = 0
    dead: bool = False
    killed: bool = False  # by kill(): a cancel or a stop, never run again


_KILLED = object()  # kill() came before the token's seed had a worker


def package_parent() -> str | None:
    """The folder to put on a worker's PYTHONPATH so that it imports this very pytest_mlexp (a
    source checkout that is not installed); None when it is installed in site-packages."""
    parent = str(Path(__file__).resolve().parents[2])
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return None if parent in sites else parent


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return ("...\n" if size > chars else "") + text


class _ForkServer:
    """The pytest side of ``forkserver.py``."""

    def __init__(self, python: str, cwd: str, env: Mapping[str, str], log: Path) -> None:
        lifeline_r, self._lifeline_w = os.pipe()  # only this process holds the write end
        self.sock, theirs = socket.socketpair()
        self._lock = threading.Lock()
        self.log = log
        try:
            with open(log, "ab") as out:
                self.proc = subprocess.Popen(
                    [python, "-m", "pytest_mlexp.forkserver", str(lifeline_r), str(theirs.fileno())],
                    pass_fds=(lifeline_r, theirs.fileno()),
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the terminal reaches pytest only
                )
        finally:
            os.close(lifeline_r)
            theirs.close()

    def _ask(
        self, header: Mapping[str, Any], fds: Sequence[int] = (), timeout: float = START_TIMEOUT_S
    ) -> dict[str, Any]:
        with self._lock:
            try:
                if fds:
                    wire.send_with_fds(self.sock, header, fds)
                else:
                    wire.send(self.sock, header)
                reply = wire.recv(self.sock, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                reply = None
                problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = "it ended"
        if reply is None:
            raise WorkerStartError(f"the fork server did not answer ({problem})\n{_tail(self.log)}")
        return reply[0]

    def spawn(self, env: Mapping[str, str], cwd: str) -> tuple[int, socket.socket]:
        mine, theirs = socket.socketpair()
        try:
            reply = self._ask({"op": "spawn", "env": dict(env), "cwd": cwd}, [theirs.fileno()])
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return int(reply["pid"]), mine

    def wait(self, pid: int, timeout: float = 5.0) -> int | None:
        try:
            code = self._ask({"op": "wait", "pid": pid, "timeout": timeout}, timeout=timeout + 30).get("code")
        except WorkerStartError:
            return None
        return code if isinstance(code, int) else None

    def close(self) -> None:
        """End the session: the server lets idle workers exit, kills the rest, and ends."""
        with contextlib.suppress(OSError), self._lock:
            wire.send(self.sock, {"op": "close"})
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)  # its workers get SIGKILL from the kernel (Linux)
            self.proc.wait()
        finally:
            with contextlib.suppress(OSError):
                os.close(self._lifeline_w)


class WorkerPool:
    """Warm worker processes for seeds (see the module docstring).  Thread-safe."""

    def __init__(
        self,
        *,
        size: int,
        env: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
        python: str | None = None,
        cwd: str | None = None,
        fork_server: bool = True,
        scratch: SessionScratch | None = None,
    ) -> None:
        self.size = max(1, size)
        self._env = env or (lambda gpus: dict(os.environ))
        self.python = python or sys.executable
        self.cwd = cwd or os.getcwd()
        self.scratch = scratch or SessionScratch()
        self._use_server = fork_server and hasattr(os, "fork") and hasattr(socket, "send_fds")
        self._server: _ForkServer | None = None
        self._server_failed = False
        self._release_keeper = threading.Event()  # lets the fork server's keeper thread end
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._warm = 0  # warm workers alive, busy or idle
        self._active: dict[Hashable, Any] = {}  # token -> its worker (or _KILLED, or None)
        self._closed = False
        #: every worker pid this pool started (tests and diagnostics)
        self.started: list[int] = []

    @property
    def server_pid(self) -> int | None:
        """The fork server's pid, once it runs (diagnostics, tests)."""
        server = self._server
        return server.proc.pid if server is not None else None

    # --- starting workers ---------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = dict(self._env(()))
        parent = package_parent()
        if parent:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, env.get("PYTHONPATH")) if p)
        env["MLEXP_PARENT_PID"] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")  # the output tail is complete even when killed
        return env

    def start(self) -> None:
        """Start the fork server now (it imports in the background while the session goes on);
        otherwise the first seed starts it."""
        with self._lock:
            self._ensure_server()

    def _ensure_server(self) -> _ForkServer | None:
        if self._server is None and self._use_server and not self._server_failed and not self._closed:
            self._server = self._start_server()
            self._server_failed = self._server is None
        return self._server

    def _start_server(self) -> _ForkServer | None:
        """Start the fork server from a thread of the pool's own that lives until :meth:`close`:
        on Linux the server is told to end (its parent-death signal) when the thread that
        started it ends, and the caller's thread may be short-lived."""
        started: list[_ForkServer | None] = []
        ready = threading.Event()

        def keep() -> None:
            try:
                log = self.scratch.new_file("server", ".log")
                started.append(_ForkServer(self.python, self.cwd, self._base_env(), log))
            except Exception:  # workers are then started by us (see _spawn)
                started.append(None)
            finally:
                ready.set()
            self._release_keeper.wait()

        threading.Thread(target=keep, name="mlexp-forkserver-keeper", daemon=True).start()
        ready.wait()
        return started[0] if started else None

    def _spawn(self, gpus: Sequence[str], one_shot: bool) -> _Worker:
        env = {**self._base_env(), **self._env(gpus)}
        env["MLEXP_WORKER"] = "1" if one_shot else "warm"  # a one-seed worker tears trackers down after it
        env["MLEXP_PARENT_PID"] = str(os.getpid())
        with self._lock:
            server = self._ensure_server()
        if server is not None:
            try:
                pid, sock = server.spawn(env, self.cwd)
            except WorkerStartError:
                if self._closed:
                    raise
                with self._lock:
                    self._server_failed = True  # started by us from now on
            else:
                self.started.append(pid)
                return _Worker(pid, sock, tuple(gpus), one_shot)
        return self._exec(env, gpus, one_shot)

    def _exec(self, env: Mapping[str, str], gpus: Sequence[str], one_shot: bool) -> _Worker:
        mine, theirs = socket.socketpair()
        log = self.scratch.new_file("worker", ".log")
        try:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [self.python, "-m", "pytest_mlexp.remote", "--serve", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    cwd=self.cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            mine.close()
            raise WorkerStartError(f"could not start {self.python}: {exc}") from exc
        finally:
            theirs.close()
        self.started.append(proc.pid)
        return _Worker(proc.pid, mine, tuple(gpus), one_shot, proc=proc)

    def _take(self, gpus: Sequence[str], fresh: bool, max_seeds: int, new: bool = False) -> _Worker:
        """An idle warm worker pinned to ``gpus`` that has run fewer than ``max_seeds`` seeds
        (the seed's own limit, checked before it runs: an item that asks for few seeds per
        worker never starts in one that has run many), else (or when ``new``) a new one,
        retiring an idle one (one too old for this seed first, else one with other GPUs) when
        ``size`` are alive."""
        key = tuple(gpus)
        retire: _Worker | None = None
        with self._lock:
            if not fresh:
                for i, worker in enumerate(self._idle):
                    if not new and worker.gpus == key and worker.seeds < max_seeds:
                        return self._idle.pop(i)
                if self._warm >= self.size and self._idle:
                    old = [i for i, w in enumerate(self._idle) if w.gpus == key]
                    retire = self._idle.pop(old[0] if old else 0)
                    self._warm -= 1
                self._warm += 1
        if retire is not None:
            self._retire(retire)
        try:
            return self._spawn(gpus, one_shot=fresh)
        except BaseException:
            if not fresh:
                with self._lock:
                    self._warm -= 1
            raise

    def _retire(self, worker: _Worker) -> None:
        """Let a worker go: it sees its socket close, tidies up (trackers, children) and exits."""
        with contextlib.suppress(OSError):
            worker.sock.close()
        if worker.proc is not None:
            threading.Thread(target=worker.proc.wait, daemon=True).start()  # collect it

    def _exit_code(self, worker: _Worker) -> int | None:
        if worker.proc is not None:
            try:
                return worker.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                return None
        server = self._server
        return server.wait(worker.pid) if server is not None else None

    # --- running a seed -----------------------------------------------------------------------
    def run(
        self,
        task: Mapping[str, Any],
        *,
        blob: bytes = b"",
        gpus: Sequence[str] = (),
        fresh: bool = False,
        max_seeds: int = 100,
        timeout: float | None = None,
        import_timeout: float | None = None,
        token: Hashable | None = None,
        environ: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> SeedRun:
        """Run one seed (``task``: a ``Task.to_dict()``) in a worker and wait for it.

        ``fresh``: in a worker of its own, which exits afterwards.  ``timeout``: seconds the
        handler may run, counted from its call, before the worker is killed
        (``SeedRun.timed_out``); the import of its module before that is not counted (as under
        ``local``, which imports it before any seed), but bounded on its own by
        ``import_timeout`` (default: the larger of ``timeout`` and ``START_TIMEOUT_S``; no bound
        without a timeout).  ``token``: what :meth:`kill` is called with.  A warm worker that
        died before the seed began (while it waited: the kernel's OOM killer, a thread an
        earlier seed left behind) costs the seed nothing: it runs on a new worker.
        ``environ``: the environment the seed runs in (the pytest process's when it was
        submitted; the worker keeps its own GPUs); None: the worker's own.  ``cwd``: the folder
        the seed runs in (the pytest process's, where a fixture changed it); None: the worker's.
        Raises :class:`WorkerStartError` when no worker could be started."""
        token = object() if token is None else token
        if import_timeout is None and timeout is not None:
            import_timeout = max(timeout, START_TIMEOUT_S)
        with self._lock:
            if self._closed:
                return SeedRun(None, 0)
            self._active[token] = None
        worker: _Worker | None = None
        new = False
        try:
            while True:
                worker = self._take(gpus, fresh, max_seeds, new)
                with self._lock:
                    killed = self._active.get(token) is _KILLED or self._closed
                    self._active[token] = worker
                if killed:
                    self._lose(worker)
                    return SeedRun(None, worker.pid, self._exit_code(worker))
                reused = worker.seeds > 0
                run = self._run_on(worker, task, blob, timeout, import_timeout, max_seeds, environ, cwd)
                if (
                    run.outcome is None
                    and reused
                    and not (run.started or run.timed_out or worker.killed or self._closed)
                ):
                    # It died before this seed began: once more, free, on a new worker (not the
                    # next idle one: a module whose import kills its worker would take them all).
                    new = True
                    continue
                return run
        finally:
            with self._lock:
                self._active.pop(token, None)

    def _run_on(
        self,
        worker: _Worker,
        task: Mapping[str, Any],
        blob: bytes,
        timeout: float | None,
        import_timeout: float | None,
        max_seeds: int,
        environ: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> SeedRun:
        log = self.scratch.new_file("seed", ".log")
        message: dict[str, Any] = {"op": "run", "task": task, "log": str(log)}
        if environ is not None:
            message["env"] = dict(environ)
        if cwd is not None:
            message["cwd"] = cwd
        try:
            reply: tuple[dict[str, Any], bytes] | None
            timed_out = started = False
            try:
                wire.send(worker.sock, message, blob)
                # "started" once the handler's module is imported; "done" alone when the seed
                # failed before its handler was called (a module that does not import).
                reply = wire.recv(worker.sock, timeout=import_timeout)
                if reply is not None and reply[0].get("op") == "started":
                    started = True
                    reply = wire.recv(worker.sock, timeout=timeout)
            except TimeoutError:
                reply, timed_out = None, True
            except OSError:  # it died mid-message, or before reading ours
                reply = None
            outcome = reply[0].get("outcome") if reply is not None else None
            if not isinstance(outcome, dict):
                self._lose(worker)
                return SeedRun(
                    None,
                    worker.pid,
                    self._exit_code(worker),
                    timed_out,
                    _tail(log),
                    started=started,
                    import_limit=import_timeout if timed_out and not started else None,
                )
            worker.seeds += 1
            self._release(worker, max_seeds)
            output = _tail(log) if outcome.get("status") != "ok" else ""
            return SeedRun(outcome, worker.pid, output=output, started=started)
        finally:
            with contextlib.suppress(OSError):
                log.unlink()

    def _lose(self, worker: _Worker) -> None:
        """A worker that died, timed out or was cancelled: killed with its group, replaced."""
        worker.dead = True
        kill_group(worker.pid)
        with contextlib.suppress(OSError):
            worker.sock.close()
        if not worker.one_shot:
            with self._lock:
                self._warm -= 1

    def _release(self, worker: _Worker, max_seeds: int) -> None:
        with self._lock:
            keep = not worker.one_shot and worker.seeds < max_seeds and not self._closed
            if keep:
                self._idle.append(worker)
            elif not worker.one_shot:
                self._warm -= 1
        if not keep:
            self._retire(worker)

    def kill(self, token: Hashable) -> None:
        """Stop the seed run with ``token`` (its worker is killed with its process group and
        replaced later); a seed that has no worker yet never starts."""
        with self._lock:
            if token not in self._active:
                return
            worker = self._active[token]
            if worker is None:
                self._active[token] = _KILLED
                return
        if isinstance(worker, _Worker):
            worker.killed = True
            kill_group(worker.pid)

    def close(self) -> None:
        """Session end: running seeds are killed, idle workers exit, the fork server ends
        after them; the scratch folder is removed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            running = [w for w in self._active.values() if isinstance(w, _Worker)]
        for worker in running:
            kill_group(worker.pid)
        for worker in idle:
            self._retire(worker)
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._release_keeper.set()
        for worker in idle:
            if worker.proc is not None:
                try:
                    worker.proc.wait(timeout=CLOSE_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    kill_group(worker.pid)
        self.scratch.close()
