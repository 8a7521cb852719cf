"""The project's git state for provenance: the commit, and which files differ from it.

``git_dirty`` of a result (SPEC section 10, last bullet) is true when a file its fingerprint
covers (handler, the project modules it imports, conftests, ``deps:``) or the plan is modified
or untracked; an edited README elsewhere does not make every result dirty.  git is asked twice
per session, never per item.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

from .structs import struct

__all__ = ["GitState", "git_state"]


@struct(frozen=True)
class GitState:
    """``commit`` is None outside a git work tree (then nothing is known to be dirty)."""

    commit: str | None
    top: str | None  # the work tree's top folder
    changed: frozenset[str]  # modified, added, deleted or untracked paths, relative to ``top``
    untracked_dirs: tuple[str, ...]  # untracked folders (git lists the folder, not its files)

    def dirty(self, root: str, files: Iterable[str]) -> bool | None:
        """Whether any of ``files`` (relative to ``root``) differs from the commit."""
        if self.commit is None or self.top is None:
            return None
        prefix = os.path.relpath(root, self.top).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for name in files:
            path = prefix + name
            if path in self.changed or any(path.startswith(d) for d in self.untracked_dirs):
                return True
        return False


def _run(args: list[str], cwd: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def _may_be_in_work_tree(root: str) -> bool:
    """False only when git could not find a work tree for ``root``: no ``.git`` (a folder, or
    the file of a linked work tree or submodule) in it or any folder above it, and no
    ``GIT_DIR``/``GIT_WORK_TREE`` pointing elsewhere.  git looks the same way (its ceiling and
    file-system settings only make it stop sooner), so not starting it then changes no answer;
    it saves a process start (about 1 ms of CPU) in every session of a project outside git."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
        return True
    folder = os.path.abspath(root)
    while True:
        if os.path.lexists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def git_state(root: str) -> GitState:
    """The commit and the changed files of the work tree holding ``root`` (the session asks
    once: ``PlanContext.git``)."""
    none = GitState(None, None, frozenset(), ())
    if not _may_be_in_work_tree(root):
        return none
    head = _run(["git", "rev-parse", "HEAD", "--show-toplevel"], root)
    if head is None or head.returncode != 0:
        return none
    lines = head.stdout.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2:
        return none
    commit, top = lines[0].strip(), lines[1].strip()
    status = _run(["git", "status", "--porcelain=v1", "-z", "--untracked-files=normal"], root)
    changed: set[str] = set()
    dirs: list[str] = []
    if status is not None and status.returncode == 0:
        fields = status.stdout.decode("utf-8", "surrogateescape").split("\0")
        i = 0
        while i < len(fields):
            item = fields[i]
            i += 1
            if len(item) < 4:
                continue
            code, path = item[:2], item[3:]
            if code[0] in "RC":  # a rename: the next field is the old path
                if i < len(fields):
                    changed.add(fields[i])
                i += 1
            if code == "??" and path.endswith("/"):
                dirs.append(path)
            else:
                changed.add(path)
    return GitState(commit or None, top, frozenset(changed), tuple(dirs))
