"""Write a file so that readers see either the old content or the new, never a half-written one;
clean up after writers that died mid-way; find out whether a folder can be written at all."""

from __future__ import annotations

import _thread
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

try:  # POSIX only
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]


def _unique() -> str:
    """``<pid>.<8 hex digits>``: a name part no other writer uses (``remove_stale_temps`` reads
    the pid back).  os.urandom(4).hex() is secrets.token_hex(4) without importing secrets."""
    return f"{os.getpid()}.{os.urandom(4).hex()}"


def _temp_for(path: Path) -> Path:
    """A new temp file's name beside ``path`` (its folder made, stale temps of it removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path not in _cleaned:
        remove_stale_temps(path)
    return path.with_name(f".{path.name}.{_unique()}.tmp")


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to a temp file in ``path``'s folder, then ``os.replace`` it over ``path``.

    The temp file lives in the same folder because ``os.replace`` is only atomic within one file
    system.  ``fsync`` makes the new content durable before the rename, so a power cut cannot
    leave an empty file where the old one was (the rename alone only orders the metadata).
    """
    tmp = _temp_for(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A failed write (disk full, Ctrl-C) must not leave temp files behind in the research folder.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_files(items: Sequence[tuple[Path, bytes]], *, fsync: bool = True) -> list[OSError | None]:
    """Each ``(path, data)`` written as ``atomic_write_bytes`` writes it, every temp file
    written and fsynced before any replaces its file: what each file failed with (None: written).

    A session writes a results.yaml per experiment it ran, then a FINDINGS.md per experiment:
    one fsync after another waits for one journal commit of the file system after another
    (0.1-0.3 ms each on an idle disk, several ms on a busy one).  On a busy disk the fsyncs are
    issued together from threads (``_fsync_all``), and the file system commits them in one or
    two; the main thread only waits meanwhile (the threads need the GIL only to return).  Every
    file is still durable before it replaces the old one, and one file's failure (a full disk)
    neither stops nor undoes the others."""
    if len(items) > BATCH:  # a plan of many experiments: never more files open at once than this
        return [
            e
            for start in range(0, len(items), BATCH)
            for e in write_files(items[start : start + BATCH], fsync=fsync)
        ]
    errors: list[OSError | None] = [None] * len(items)
    temps: list[tuple[int, Path, IO[bytes]]] = []
    try:
        for i, (path, data) in enumerate(items):
            try:
                tmp = _temp_for(path)
                opened: IO[bytes] = open(tmp, "wb")  # noqa: SIM115 - closed below, after its fsync
                temps.append((i, tmp, opened))
                opened.write(data)
                opened.flush()
            except OSError as exc:
                errors[i] = exc
        if fsync:
            synced = [(i, handle) for i, _, handle in temps if errors[i] is None]
            for (i, _), failed in zip(synced, _fsync_all([h.fileno() for _, h in synced]), strict=True):
                errors[i] = failed
        for i, tmp, handle in temps:
            try:
                handle.close()
                if errors[i] is None:
                    os.replace(tmp, items[i][0])
                    continue
            except OSError as exc:
                errors[i] = errors[i] or exc
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except BaseException:
        # Ctrl-C midway: no temp file is left in the research folder (one already in place is
        # the new file, written whole).
        for _, tmp, handle in temps:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return errors


# Files written (and held open until their fsync) at once by ``write_files``; the results store
# holds as many folder locks at most (each an open file descriptor).
BATCH = 64
# An fsync slower than this means a busy disk: the remaining files are synced at once.
SLOW_FSYNC_S = 0.001
# Threads that sync files at once (each syncs every n-th file, one after another).
FSYNC_THREADS = 16


def _sync(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def _fsync_all(fds: Sequence[int]) -> list[OSError | None]:
    """``os.fsync`` of each (see ``write_files``); what each failed with.  One after another
    while the disk answers quickly (0.1-0.3 ms each on an idle disk: starting threads would cost
    more); once one takes longer than ``SLOW_FSYNC_S`` (other work is writing to the disk, and
    each fsync waits for its own journal commit), the rest are issued together from threads, so
    the file system commits them at once (a tenth of the wait, measured on a shared VM)."""
    out: list[OSError | None] = []
    for done, fd in enumerate(fds, start=1):
        started = time.monotonic()
        out.append(_sync(fd))
        rest = fds[done:]
        if len(rest) > 1 and time.monotonic() - started > SLOW_FSYNC_S:
            return out + _sync_together(rest)
    return out


def _sync_together(fds: Sequence[int]) -> list[OSError | None]:
    """``_sync`` of each of ``fds``, from up to ``FSYNC_THREADS`` threads at once.

    Bare ``_thread`` threads, each releasing its lock when done: ``threading.Thread.start``
    waits for each new thread to run before it starts the next, and a pool adds a future and a
    queue per file: for the 20 files a 1,000-item session writes, 2-3 ms more CPU than this (and
    more wall time).  Every thread is waited for before this returns: nothing is left running
    into a later fork (warm workers fork), and no thread outlives the files it syncs (unless a
    Ctrl-C ends the wait: a late fsync then finds its descriptor closed, or another file's,
    which it only syncs)."""
    out: list[OSError | None] = [None] * len(fds)
    raised: list[BaseException] = []
    step = min(len(fds), FSYNC_THREADS)

    def work(first: int, finished: _thread.LockType) -> None:
        try:
            for i in range(first, len(fds), step):
                out[i] = _sync(fds[i])
        except BaseException as exc:  # not an OSError (_sync returns those): raised in the caller
            raised.append(exc)
        finally:
            finished.release()

    running: list[_thread.LockType] = []
    for first in range(step):
        finished = _thread.allocate_lock()
        finished.acquire()
        try:
            _thread.start_new_thread(work, (first, finished))
        except RuntimeError:  # no thread to be had (a process limit): this share in this thread
            work(first, finished)
        running.append(finished)
    for finished in running:
        finished.acquire()
    if raised:
        raise raised[0]
    return out


# Files whose folder this process already cleaned of dead writers' temp files.
_cleaned: set[Path] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's process (alive), or a number no process can have
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove ``.<name>.<pid>.<hex>.tmp`` files next to ``path`` left by a writer that died
    mid-rewrite (killed between creating the temp file and renaming it).  A live process's
    temp file, or this process's, is left alone: it may be being written right now."""
    _cleaned.add(path)
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    mine = os.getpid()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid, _, token = name[len(prefix) : -len(".tmp")].partition(".")
        if not (pid.isdigit() and token) or int(pid) == mine or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)


def writable_problems(folders: Iterable[Path]) -> dict[Path, str]:
    """Why files cannot be written in each of ``folders`` (only those that cannot).

    Tried for real (a file made and removed: permission bits say nothing for root, and a
    read-only mount only shows when writing), in the folder or, while it does not exist yet, in
    the nearest folder above it that does (where it would be made): nothing is left behind.
    Folders that would be made in the same existing folder (a first run's experiment folders)
    share one try: the same answer, asked once rather than once per experiment."""
    problems: dict[Path, str] = {}
    tried: dict[Path, str | None] = {}
    for folder in folders:
        probe = folder
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if not probe.exists():
            problems[folder] = "no folder above it exists"
        elif not probe.is_dir():
            problems[folder] = "a file is in the way" if probe != folder else "it is a file, not a folder"
        else:
            if probe not in tried:
                tried[probe] = _write_check(probe)
            why = tried[probe]
            if why is not None:
                problems[folder] = why
    return problems


def _write_check(folder: Path) -> str | None:
    name = os.path.join(folder, f".mlexp-write-check.{_unique()}")
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(name)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@contextlib.contextmanager
def locked(
    folder: Path, *, timeout_s: float = 30.0, warn: Callable[[str], None] | None = None
) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``folder`` itself for the ``with`` block: no
    lock file is ever made (SPEC section 10).  The folder must exist.

    Never hangs a session on a stuck lock: after ``timeout_s`` it says so (``warn``) and goes
    on without it (writes stay atomic; a merge may miss another session's newest changes)."""
    if _fcntl is None:  # pragma: no cover - no advisory locks here; sessions must not overlap
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:  # a folder that cannot be opened: writing is still atomic
        if warn is not None:
            warn(f"{folder}: cannot be locked ({exc.strerror or exc}); writing without a lock")
        yield
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    if warn is not None:
                        warn(f"{folder}: still locked after {timeout_s:g} s; writing without the lock")
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock
