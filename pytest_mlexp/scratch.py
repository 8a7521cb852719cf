"""A private scratch folder per pytest session, for files that may hold raw params or output.

``<temp>/pytest-mlexp-<uid>/<pid>-<random>/``: both levels ``0700``, files in it ``0600``.  The
session holds an exclusive ``flock`` on a lock file inside its folder for as long as it runs;
the kernel drops it when the process ends, however it ends (SIGKILL included).  So the next
session that opens a scratch folder removes every sibling whose lock it can take: their owner
is gone (a pid alone could have been reused).  Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["SessionScratch", "scratch_root", "sweep", "sweep_stale"]

LOCK_NAME = ".owner.lock"


def scratch_root() -> Path:
    """The folder that holds every session's scratch folder of this user (made ``0700``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(tempfile.gettempdir()) / f"pytest-mlexp-{uid}"
    root.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError):  # made by us, or a folder we cannot fix: mkdtemp below is 0700 anyway
        if root.stat().st_mode & 0o077:
            root.chmod(0o700)
    return root


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False when another process holds it (or the
    platform has no ``flock``, where nothing is ever swept)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SessionScratch:
    """This session's scratch folder, made (and the stale ones of dead sessions swept) on first use."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._path: Path | None = None
        self._lock_fd: int | None = None
        self._guard = threading.Lock()
        self._count = 0

    @property
    def path(self) -> Path:
        with self._guard:
            if self._path is None:
                root = self._root if self._root is not None else scratch_root()
                root.mkdir(mode=0o700, parents=True, exist_ok=True)
                sweep(root)
                # Made under a hidden name and locked before it gets its real one, so that a
                # sweeping session never sees it unlocked.
                new = Path(tempfile.mkdtemp(prefix=".new-", dir=root))  # 0700
                fd = os.open(new / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
                _try_lock(fd)
                path = new.with_name(f"{os.getpid()}-{new.name[5:]}")
                os.rename(new, path)
                self._lock_fd, self._path = fd, path
            return self._path

    def new_file(self, stem: str, suffix: str = "") -> Path:
        """A fresh, empty ``0600`` file in the folder."""
        with self._guard:
            self._count += 1
            n = self._count
        path = self.path / f"{stem}-{n}{suffix}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        return path

    def close(self) -> None:
        """Remove the folder (session end)."""
        with self._guard:
            path, fd = self._path, self._lock_fd
            self._path = self._lock_fd = None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def sweep_stale() -> list[Path]:
    """Remove the scratch folders of this user's ended sessions (a session start calls this;
    it costs one ``stat`` when there are none)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(tempfile.gettempdir()) / f"pytest-mlexp-{uid}"
    return sweep(root) if root.is_dir() else []


def sweep(root: Path) -> list[Path]:
    """Remove the scratch folders under ``root`` whose session has ended; returns them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith("."):
            # being made this instant, or left half-made by a session killed at that instant
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < time.time() - 3600:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
            continue
        try:
            fd = os.open(Path(entry.path) / LOCK_NAME, os.O_RDWR)
        except OSError:
            continue
        try:
            if _try_lock(fd):  # its owner is gone
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed
