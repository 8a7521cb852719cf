"""The worker side of the ``process`` and ``modal`` executors.

* :func:`serve`: a warm worker, running the seeds that arrive on a socket one after another
  (forked from the fork server, ``forkserver.py``, or ``python -m pytest_mlexp.remote --serve FD``).
* ``python -m pytest_mlexp.remote TASK.json OUTCOME.json [--fixtures FIXTURES.pickle]`` runs one
  seed and writes its outcome (for executors that start one process per seed elsewhere).
* :func:`modal_entry` is the body of the Modal function and runs the same code in a container.

All go through :func:`run_task`.  Standard library and ``execution`` only: this is what a
worker or container imports before the handler does.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .execution import Task, import_failure, import_handler, run_seed
from .fastjson import Encoder
from .records import SeedOutcome, now_iso


class FixtureError(Exception):
    """A fixture value could not be unpickled in the worker."""


def pack_fixtures(values: Mapping[str, Any], executor: str) -> bytes:
    """Pickle fixture values one by one, so a failure names the fixture (in the pytest process)."""
    packed: dict[str, bytes] = {}
    for name, value in values.items():
        try:
            packed[name] = pickle.dumps(value)
        except Exception as exc:
            raise FixtureError(
                f"fixture {name!r} could not be sent to the {executor} executor: "
                f"{type(exc).__name__}: {exc}; use the local executor or make it picklable"
            ) from exc
    return pickle.dumps(packed)


def unpack_fixtures(blob: bytes) -> dict[str, Any]:
    packed = pickle.loads(blob)
    out: dict[str, Any] = {}
    for name, data in packed.items():
        try:
            out[name] = pickle.loads(data)
        except Exception as exc:
            raise FixtureError(
                f"fixture {name!r} could not be unpickled in the worker: {type(exc).__name__}: {exc} "
                "(a value whose class is defined in a conftest.py or test module cannot be imported "
                "there); use the local executor or define the class in an importable module"
            ) from exc
    return out


def run_task(
    task_data: Mapping[str, Any],
    fixtures_blob: bytes | None = None,
    *,
    follow: bool = False,
    interrupt_is_error: bool = False,
) -> dict[str, Any]:
    """One seed: a Task dict (and pickled fixtures) in, the outcome as plain data out
    (``SeedOutcome.to_dict()``; handler errors included, with their traceback).

    ``follow``: also append what the handler logs to the workdir's progress file, which the
    pytest process reads for its live line (process executor).  ``interrupt_is_error``: a
    ``KeyboardInterrupt`` raised by the handler is its error (in a worker process)."""
    outcome = run_outcome(
        Task.from_dict(task_data), fixtures_blob, follow=follow, interrupt_is_error=interrupt_is_error
    )
    return outcome.to_dict()


def run_outcome(
    task: Task,
    fixtures_blob: bytes | None = None,
    *,
    follow: bool = False,
    interrupt_is_error: bool = False,
    imported: Callable[[], None] | None = None,
) -> SeedOutcome:
    """:func:`run_task`, as the typed record.  ``imported``: called once the handler's module is
    imported, just before the handler runs."""
    started = now_iso()
    fixtures: dict[str, Any] = {}
    if fixtures_blob:
        try:
            fixtures = unpack_fixtures(fixtures_blob)
        except FixtureError as exc:
            return SeedOutcome.failure(task.seed, "fixture", exc, started_at=started)
    try:
        handler = import_handler(task)
    except BaseException as exc:  # a module that calls sys.exit() on import is its error too
        if isinstance(exc, KeyboardInterrupt) and not interrupt_is_error:
            raise
        return import_failure(task.seed, exc, started)
    if imported is not None:
        imported()
    if not (follow and task.progress_file):
        return run_seed(task, handler, fixtures=fixtures, interrupt_is_error=interrupt_is_error)
    from .progress import progress_file

    with progress_file(Path(task.progress_file)) as (on_metrics, on_progress):
        return run_seed(
            task,
            handler,
            fixtures=fixtures,
            metric_sinks=(on_metrics,),
            progress_sinks=(on_progress,),
            interrupt_is_error=interrupt_is_error,
        )


# Made when this module is imported, before the handler's: a handler that replaces json.dumps
# does not change how its outcome is written (as wire.py's messages).
_encode_outcome = Encoder(default=repr).encode


def write_outcome(path: Path, outcome: Mapping[str, Any]) -> None:
    """Write atomically: the parent never reads half an outcome from a worker killed mid-write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_encode_outcome(outcome), encoding="utf-8")
    os.replace(tmp, path)


def _watch_parent(parent: int) -> None:
    """Exit when pytest is gone, taking the handler's children along: a worker runs in its
    own session, so nothing else stops an orphan (pytest killed with SIGKILL, a crashed xdist
    worker).  The fallback for workers that pytest started itself; those forked from the
    server are looked after by it (``forkserver.py``)."""

    def _loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                _end_group(3)

    threading.Thread(target=_loop, name="mlexp-parent-watch", daemon=True).start()


def _end_group(code: int) -> None:
    """Kill this worker's process group (itself and what the handler started) and exit."""
    if hasattr(os, "killpg") and os.getpgid(0) == os.getpid():  # only a group we lead
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
    os._exit(code)


# --- warm workers -------------------------------------------------------------------------------

#: signal handlers a handler may change, put back before the next seed (those that can be caught)
_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGUSR1",
        "SIGUSR2", "SIGCHLD", "SIGPIPE", "SIGWINCH", "SIGURG", "SIGXCPU", "SIGXFSZ",
    )
    if hasattr(signal, name)
)  # fmt: skip
_TIMERS = tuple(
    getattr(signal, n) for n in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF") if hasattr(signal, n)
)
#: the worker's own variables (and every ``MLEXP_*`` it has): a seed's environment (pytest's)
#: never changes them
_WORKER_KEYS = frozenset({"CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONUNBUFFERED"})


def _worker_key(key: str) -> bool:
    return key in _WORKER_KEYS or key.startswith("MLEXP_")


class Baseline:
    """The process state a worker starts each seed from, taken when it starts serving:
    the environment (``CUDA_VISIBLE_DEVICES``, ``MLEXP_*``), the working directory,
    ``sys.argv``, the standard streams, signal handlers and the blocked-signal mask (and no
    timer pending).  A seed that changed them leaves the next seed none the wiser.  What the
    handler's own modules keep in their globals stays: that is what a warm worker is for; so
    does what importing them changed in that state (:meth:`absorb`), as the module is not
    imported again for the next seed."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.argv = list(sys.argv)
        self.signals = {s: signal.getsignal(s) for s in _SIGNALS}
        self.mask = _signal_mask()
        #: what module imports in this worker set (a value) or removed (None) in the environment
        self.imported_env: dict[str, str | None] = {}

    def absorb(self, environ_before: Mapping[str, str], cwd_before: str | None = None) -> None:
        """An import that loaded new modules is done: what it changed in the environment (from
        ``environ_before``), the working directory (from ``cwd_before``) and signal handlers is
        the worker's from now on (``os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ...)`` at a
        module's top).  A folder the seed was sent to run in stays the seed's."""
        now = os.environ
        for key in {*environ_before, *now}:
            if not _worker_key(key) and environ_before.get(key) != now.get(key):
                value = now.get(key)
                self.imported_env[key] = value
                if value is None:
                    self.environ.pop(key, None)
                else:
                    self.environ[key] = value
        with contextlib.suppress(OSError):
            now_cwd = os.getcwd()
            if now_cwd != cwd_before:
                self.cwd = now_cwd
        self.signals = {s: signal.getsignal(s) for s in _SIGNALS}

    def seed_environ(self, given: Mapping[str, str]) -> dict[str, str]:
        """A seed's environment: ``given`` (the pytest process's when the seed was submitted,
        its fixtures' variables included, as a fresh worker started then would have), with
        the worker's own variables (its GPUs) and what its module imports set."""
        env = {str(k): str(v) for k, v in given.items()}
        for key, own in self.environ.items():
            if _worker_key(key):
                env[key] = own
        for key, value in self.imported_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def restore(self) -> None:
        if os.environ != self.environ:
            tz = os.environ.get("TZ")
            os.environ.clear()
            os.environ.update(self.environ)
            if tz != os.environ.get("TZ") and hasattr(time, "tzset"):
                time.tzset()  # the seed's time zone is not the next one's
        try:
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        except OSError:  # the folder it left us in was removed
            with contextlib.suppress(OSError):
                os.chdir(self.cwd)
        argv = getattr(sys, "argv", None)
        if not isinstance(argv, list) or argv != self.argv:
            sys.argv = list(self.argv)  # a tuple, or deleted: a new list, not a slice assignment
        if hasattr(signal, "setitimer"):
            for timer in _TIMERS:
                with contextlib.suppress(OSError, ValueError):
                    signal.setitimer(timer, 0)
        for signum, handler in self.signals.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    signal.signal(signum, handler)
        if self.mask is not None and _signal_mask() != self.mask:
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        _restore_streams()


def _signal_mask() -> set[Any] | None:
    """The calling thread's blocked signals (None where that cannot be read)."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    try:
        return set(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    except (OSError, ValueError):
        return None


def _restore_streams() -> None:
    """``sys.stdout``/``stderr`` back to the process's own streams on fds 1 and 2 (a handler may
    have replaced or closed them)."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        original = getattr(sys, f"__{name}__")
        if original is None or original.closed:
            raw = io.FileIO(fd, "w", closefd=False)
            original = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)
            setattr(sys, f"__{name}__", original)
        if getattr(sys, name) is not original:
            setattr(sys, name, original)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or replaced by something odd
            stream.flush()


def _redirect_output(fd: int) -> None:
    """Send this process's fds 1 and 2 (and so ``print``, C extensions, child processes) to ``fd``."""
    _flush_streams()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def _end_children(before: set[int]) -> None:
    """Kill (and collect) every process the seed started: children that are new since it
    began, with everything below them (orphans re-parented here come along, see
    ``set_child_subreaper``); those started before it, at import time, are left."""
    from .procutil import children, kill_trees, reap

    started = [pid for pid in children() if pid not in before]
    if started:
        kill_trees(started)
        reap(started, timeout=10.0)


def _stdlib_forkserver_pid() -> int | None:
    """The pid of multiprocessing's fork server in this process, when one was started (a
    ``Pool`` or a torch ``DataLoader`` with the ``"forkserver"`` start method, the default on
    Linux from Python 3.14)."""
    module = sys.modules.get("multiprocessing.forkserver")
    pid = getattr(getattr(module, "_forkserver", None), "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def _forget_stdlib_forkserver(pid: int) -> None:
    """The fork server a seed started was ended with the seed's other children; multiprocessing
    keeps its pid and, asked again, ``os.waitpid``s it (``ChildProcessError``: we reaped it)
    rather than starting a new one, so every later seed in this worker that used it failed.
    Forget it as ``ForkServer._stop`` does (without its wait: it is gone), so that the next
    seed's pool starts a fresh one.  Private state of the standard library (3.8 to 3.14): on a
    Python where it differs, nothing is changed."""
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    lock = getattr(server, "_lock", None)
    if server is None or lock is None:
        return
    try:
        with lock:
            if getattr(server, "_forkserver_pid", None) != pid:
                return  # started again meanwhile (a thread the handler left), or not ours
            alive_fd = server._forkserver_alive_fd
            address = server._forkserver_address
            server._forkserver_pid = None
            server._forkserver_alive_fd = None
            server._forkserver_address = None
            if isinstance(alive_fd, int):
                with contextlib.suppress(OSError):
                    os.close(alive_fd)
            if isinstance(address, str) and address and not address.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.unlink(address)  # the listening socket's file (not an abstract name)
    except Exception:  # never the seed's outcome, never the worker
        pass


def _free_memory() -> None:
    """Between seeds: give the GPU memory torch caches back, so that the next seed (or another
    process on this GPU) has it."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            import gc

            gc.collect()
            cuda.empty_cache()
    except Exception:  # a best effort: the next seed still runs
        pass


def run_one(
    header: Mapping[str, Any],
    blob: bytes,
    baseline: Baseline,
    idle_fd: int,
    started: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """One seed in a warm worker: fresh state, output to the seed's log, children ended after.
    ``started``: called once the handler's module is imported, as the handler is called (the
    pytest process counts the seed's timeout from then, as under ``local``, where the module
    is imported before any seed runs)."""
    from .procutil import children

    baseline.restore()
    given = header.get("env")
    if isinstance(given, dict):
        os.environ.clear()
        os.environ.update(baseline.seed_environ(given))
    folder = header.get("cwd")  # the pytest process's, where a fixture changed it
    no_folder: OSError | None = None
    if isinstance(folder, str):
        try:
            os.chdir(folder)
        except OSError as exc:  # removed meanwhile: under local the handler would fail in it
            no_folder = exc
    log = header.get("log")
    try:
        log_fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if log else idle_fd
    except OSError:
        log_fd = idle_fd
    _redirect_output(log_fd)
    # What runs now (other modules' import-time processes, a fork server they started) is the
    # worker's, whether or not this seed's module then imports.
    before: set[int] = set(children())
    modules, environ_before = len(sys.modules), dict(os.environ)
    try:
        cwd_before: str | None = os.getcwd()
    except OSError:
        cwd_before = None

    def imported() -> None:
        # What the module started on import belongs to the worker (later seeds may rely on
        # it); what the handler starts from here on belongs to this seed.  So does what a first
        # import changed in the environment, the folder or the signal handlers.
        before.update(children())
        if len(sys.modules) != modules:
            baseline.absorb(environ_before, cwd_before)
        started()

    try:
        # Params, upstream and variant come from this message's JSON: a fresh copy every seed.
        task = Task.from_dict(header["task"])
        if no_folder is not None:
            where = folder or "the pytest process's current folder"
            return SeedOutcome.failure(
                task.seed,
                "handler",
                f"{type(no_folder).__name__}: the folder this seed was to run in, {where}, is gone "
                f"({no_folder.strerror}): a fixture's folder removed before the seed started",
                started_at=now_iso(),
            ).to_dict()
        outcome = run_outcome(task, blob or None, follow=True, interrupt_is_error=True, imported=imported)
        return outcome.to_dict()
    finally:
        _flush_streams()
        forkserver = _stdlib_forkserver_pid()
        _end_children(before)
        if forkserver is not None and forkserver not in before:
            _forget_stdlib_forkserver(forkserver)
        _redirect_output(idle_fd)
        if log_fd != idle_fd:
            os.close(log_fd)
        # Now too, not only before the next seed: an alarm the handler left must not fire
        # while the worker waits, nor a signal handler it left answer for the worker.
        baseline.restore()


def serve(sock: socket.socket) -> int:
    """A warm worker: run the seeds that arrive on ``sock`` one after another, each in the
    state :class:`Baseline` took, until told to exit or the pytest process goes away.

    Messages (``wire.py``): ``{"op": "run", "task": {...}, "log": path}`` with the pickled
    fixtures as the blob, answered by ``{"op": "started"}`` once the handler's module is
    imported and the handler is called, then ``{"op": "done", "outcome": {...}}`` (a seed that
    fails before its handler is called, a module that does not import, sends only the
    latter); ``{"op": "exit"}``."""
    from . import wire
    from .procutil import children, kill_trees, reap, set_child_subreaper

    set_child_subreaper()  # what a handler's children leave behind comes to us, to be killed
    # A child the handler forks (a data loader's workers) must not hold our end of the socket:
    # the pytest process learns that this worker died from the socket closing.
    os.register_at_fork(after_in_child=sock.close)
    with contextlib.suppress(ImportError):
        import faulthandler

        faulthandler.enable()  # a crash in C leaves its traceback in the seed's log
    idle_fd = os.dup(1)  # where output goes between seeds (the worker's own log)
    baseline = Baseline()
    try:
        while True:
            message = wire.recv(sock)
            if message is None:
                return 0  # pytest closed the connection (or is gone)
            header, blob = message
            if header.get("op") != "run":
                return 0
            outcome = run_one(header, blob, baseline, idle_fd, lambda: wire.send(sock, {"op": "started"}))
            wire.send(sock, {"op": "done", "outcome": outcome})
            _free_memory()
    finally:
        trackers = sys.modules.get("pytest_mlexp.trackers")  # imported only if a seed tracked
        if trackers is not None:
            with contextlib.suppress(Exception):
                trackers.teardown_all()  # offline tracker files are complete once this returns
        # What the handlers' modules registered with atexit (a file flushed and closed, a
        # library's run finished) runs as it would at the end of the pytest process under
        # ``local``: the worker itself ends with os._exit, which skips it.  Before the leftover
        # children are killed (multiprocessing's own hook ends its pools).  A callback that
        # hangs is ended with the worker by the session's close.
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()  # runs each once and clears them (what raises is printed)
        _flush_streams()
        leftover = children()
        if leftover:
            kill_trees(leftover)
            reap(leftover, timeout=5.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"] and len(args) == 2 and args[1].isdigit():
        # A warm worker that pytest started itself (no fork server): the socket is fd args[1].
        parent = os.environ.get("MLEXP_PARENT_PID")
        if parent and parent.isdigit():
            _watch_parent(int(parent))
        return serve(socket.socket(fileno=int(args[1])))
    blob: bytes | None = None
    if "--fixtures" in args:
        i = args.index("--fixtures")
        blob = Path(args[i + 1]).read_bytes()
        del args[i : i + 2]
    if len(args) != 2:
        print(
            "usage: python -m pytest_mlexp.remote TASK.json OUTCOME.json [--fixtures FILE]\n"
            "       python -m pytest_mlexp.remote --serve FD",
            file=sys.stderr,
        )
        return 2
    parent = os.environ.get("MLEXP_PARENT_PID")
    if parent and parent.isdigit():
        _watch_parent(int(parent))
    task_data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    outcome = run_task(task_data, blob, follow=True, interrupt_is_error=True)
    write_outcome(Path(args[1]), outcome)
    return 0


# --- Modal ----------------------------------------------------------------------------------------


def collect_artifacts(task: Task, settings: Mapping[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Files the handler wrote: small ones as bytes (they travel with the result), larger ones
    copied to the artifacts volume (``{relative path: path on the volume}``)."""
    limit = int(settings.get("max_artifact_bytes") or 100 * 2**20)
    mount = settings.get("volume_mount")
    prefix = str(settings.get("volume_prefix") or "")
    root = Path(task.plan_root)
    small: dict[str, bytes] = {}
    large: dict[str, str] = {}
    folder = Path(task.artifacts_dir)
    if not folder.is_dir():
        return small, large
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.stat().st_size <= limit:
            small[rel] = path.read_bytes()
        elif mount:
            dest = Path(mount, prefix, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            large[rel] = f"{prefix}/{rel}" if prefix else rel
        else:
            large[rel] = ""  # no volume: it cannot come back; the caller says so
    return small, large


def offline_run_files(task: Task, outcome: Mapping[str, Any]) -> dict[str, bytes]:
    """The files of an offline W&B run written in the container (relative to the project
    root), so they travel back with the result (``outcome``: as plain data)."""
    info = outcome.get("tracking")
    folder = info.get("offline_dir") if isinstance(info, Mapping) else None
    if not folder:
        return {}
    root = Path(task.root)
    base = Path(str(folder)) if Path(str(folder)).is_absolute() else root / str(folder)
    out: dict[str, bytes] = {}
    if base.is_dir():
        for path in base.rglob("*"):
            if path.is_file():
                try:
                    out[path.relative_to(root).as_posix()] = path.read_bytes()
                except (OSError, ValueError):
                    continue
    return out


def run_task_with_files(
    task_data: Mapping[str, Any],
    fixtures_blob: bytes | None = None,
    *,
    max_artifact_bytes: int = 100 * 2**20,
) -> dict[str, Any]:
    """:func:`run_task` for a back end that does not share this machine's files with the pytest
    process: the outcome as plain data plus the files the seed wrote, as bytes
    (``artifact_files``: artifacts up to ``max_artifact_bytes`` each, relative to the plan
    folder; ``artifact_volume``: the larger ones, not kept; ``wandb_files``: an offline W&B
    run).  On the pytest side, ``pytest_mlexp.receive_outcome(task, data)`` writes them in place
    and returns the outcome."""
    task = Task.from_dict(task_data)
    data = run_outcome(task, fixtures_blob).to_dict()
    small, large = collect_artifacts(task, {"max_artifact_bytes": max_artifact_bytes})
    data["artifact_files"] = small
    data["artifact_volume"] = large
    data["wandb_files"] = offline_run_files(task, data)
    return data


def modal_entry(
    task_data: Mapping[str, Any], fixtures_blob: bytes | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The Modal function's body (registered at run time by the modal executor): the outcome as
    plain data, plus the files that travel back with it (``artifact_files``, ``artifact_volume``,
    ``wandb_files``; the executor takes them out before reading the outcome)."""
    task = Task.from_dict(task_data)
    outcome = run_outcome(task, fixtures_blob)
    small, large = collect_artifacts(task, settings)
    if large and settings.get("volume_name"):
        try:
            import modal

            modal.Volume.from_name(str(settings["volume_name"])).commit()
        except Exception as exc:  # the files are still committed when the container stops
            outcome = outcome.with_warnings([f"volume commit failed: {exc}"])
    data = outcome.to_dict()
    data["artifact_files"] = small
    data["artifact_volume"] = large
    data["wandb_files"] = offline_run_files(task, data)
    return data


if __name__ == "__main__":
    sys.exit(main())
