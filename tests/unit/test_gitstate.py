"""When the session's git state starts git, and that not starting it changes no answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import gitstate
from pytest_mlexp.gitstate import git_state
from tests.conftest import git


def _committed_repo(root: Path) -> Path:
    (root / "project").mkdir(parents=True)
    (root / "project" / "h.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "c")
    return root / "project"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The git commands the state asks for (still run for real)."""
    asked: list[list[str]] = []
    real = gitstate._run

    def counting(args: list[str], cwd: str) -> Any:
        asked.append(args)
        return real(args, cwd)

    monkeypatch.setattr(gitstate, "_run", counting)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    return asked


def test_outside_a_work_tree_git_is_not_started(tmp_path: Path, runs: list[list[str]]) -> None:
    (tmp_path / "project").mkdir()
    state = git_state(str(tmp_path / "project"))
    assert state.commit is None and state.dirty(str(tmp_path / "project"), ["h.py"]) is None
    assert runs == []


def test_inside_a_work_tree_git_is_asked(tmp_path: Path, runs: list[list[str]]) -> None:
    project = _committed_repo(tmp_path / "repo")
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    state = git_state(str(deep))  # .git two folders up
    assert state.commit is not None and len(state.commit) == 40
    assert [args[1] for args in runs] == ["rev-parse", "status"]


def test_a_linked_work_tree_is_found_by_its_git_file(tmp_path: Path, runs: list[list[str]]) -> None:
    project = _committed_repo(tmp_path / "repo")
    linked = tmp_path / "linked"
    git(tmp_path / "repo", "worktree", "add", "-q", str(linked))
    assert (linked / ".git").is_file()
    state = git_state(str(linked / "project"))
    assert state.commit == git_state(str(project)).commit and state.commit is not None


def test_git_dir_in_the_environment_is_asked_from_anywhere(
    tmp_path: Path, runs: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _committed_repo(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "repo" / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    state = git_state(str(elsewhere))
    assert state.commit is not None and len(state.commit) == 40
    assert runs and runs[0][1] == "rev-parse"
