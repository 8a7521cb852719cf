"""Unlucky disks: a results folder that cannot be written is a usage error before anything runs;
a full disk or another write error mid-run is one error line and a clean stop with exit 1, and
every result already journaled survives; temp files of an interrupted rewrite are cleaned up
(issue 15, SPEC section 14 "The disk").

Tests run as root here, so permission bits prove nothing: the real cases use a read-only bind
mount and a tiny tmpfs where the machine allows mounting (they skip, saying why, elsewhere); the
simulated ones (ENOSPC and EROFS raised by the journal's writes, a folder that is a file) run
everywhere."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import store as store_mod
from pytest_mlexp.store import load_yaml
from tests.conftest import Project

PLAN = """
project: {name: Disk, hypothesis: "h"}
experiments:
  e-d:
    sub_experiments:
      d_1: {}
      d_2: {}
      d_3: {}
      d_4: {}
      d_5: {}
      d_6: {}
"""

HANDLERS = """
import os
from pathlib import Path

def _run(runner):
    with open(os.environ["RAN"], "a") as fh:
        fh.write(runner.sub_experiment_id + "\\n")
    return {"metrics": {"m": 1.0}, "finding": "x" * int(os.environ.get("FINDING_SIZE", "10"))}

def d_1(runner):
    return _run(runner)

def d_2(runner):
    return _run(runner)

def d_3(runner):
    return _run(runner)

def d_4(runner):
    return _run(runner)

def d_5(runner):
    return _run(runner)

def d_6(runner):
    return _run(runner)
"""


def _project(project: Project, monkeypatch: pytest.MonkeyPatch, finding_size: int = 10) -> Path:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    ran = project.path / "ran.txt"
    monkeypatch.setenv("RAN", str(ran))
    monkeypatch.setenv("FINDING_SIZE", str(finding_size))
    return ran


def _ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("mlexp: error:")]


def _assert_clean_stop(result: pytest.RunResult, words: str) -> None:
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out  # never 0 (a false green), never 3 (INTERNALERROR)
    assert "INTERNALERROR" not in out
    assert "Traceback" not in out
    lines = _error_lines(result)
    assert len(lines) == 1, out
    assert words in lines[0]
    assert "kept" in lines[0]


def _journal_lines(folder: Path) -> list[Any]:
    """Every line of every journal left in ``folder``, parsed: a torn line fails here."""
    out = []
    for journal in folder.glob(".results*.journal"):
        data = journal.read_bytes()
        assert not data or data.endswith(b"\n"), f"torn last line in {journal.name}"
        out += [json.loads(line) for line in data.splitlines()]
    return out


class _FailingJournal:
    """The journal's file object, failing like a disk: after ``ok`` writes, the next writes half
    its bytes (ENOSPC) or nothing (EROFS) and raises."""

    def __init__(self, raw: Any, state: dict[str, Any]) -> None:
        self._raw = raw
        self._state = state

    def write(self, data: bytes) -> int:
        state = self._state
        if state["writes"] >= state["ok"]:
            if state["errno"] == errno.ENOSPC:
                self._raw.write(data[: len(data) // 2])  # what a full disk leaves: a torn line
            raise OSError(state["errno"], os.strerror(state["errno"]))
        state["writes"] += 1
        return int(self._raw.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@pytest.fixture
def failing_journal(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"writes": 0, "ok": 3, "errno": errno.ENOSPC, "on": True}
    real_open = open

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if state["on"] and mode == "ab" and str(file).endswith(".journal"):
            return _FailingJournal(handle, state)
        return handle

    real_write = store_mod.write_files

    def fake_write(items: list[tuple[Path, bytes]], **kwargs: Any) -> list[OSError | None]:
        # Once the disk is "full", rewriting results.yaml fails the same way.
        if state["on"] and state["writes"] >= state["ok"]:
            return [OSError(state["errno"], os.strerror(state["errno"])) for _ in items]
        return real_write(items, **kwargs)

    monkeypatch.setattr(store_mod, "open", fake_open, raising=False)
    monkeypatch.setattr(store_mod, "write_files", fake_write)
    return state


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_a_write_error_mid_run_stops_cleanly_and_keeps_what_was_journaled(
    project: Project, monkeypatch: pytest.MonkeyPatch, failing_journal: dict[str, Any], code: int
) -> None:
    ran = _project(project, monkeypatch)
    failing_journal["errno"] = code
    result = project.run("--experiment", "all")
    _assert_clean_stop(result, os.strerror(code))
    assert _ran(ran) == ["d_1", "d_2", "d_3", "d_4"]  # stopped after the item it could not record
    folder = project.experiment_dir("e-d")
    journaled = [line["sub"] for line in _journal_lines(folder) if line.get("op") == "r"]
    assert journaled == ["d_1", "d_2", "d_3"]

    # The disk is fine again: the next session recovers every journaled result.
    failing_journal["on"] = False
    again = project.run("--experiment", "d_5")
    assert again.ret == 1  # the assessment: d_4 and d_6 never ran
    subs = project.results("e-d")["sub_experiments"]
    assert sorted(subs) == ["d_1", "d_2", "d_3", "d_5"]
    assert not list(folder.glob(".results*.journal"))


def _mount(args: list[str]) -> str | None:
    """Run mount; the reason it cannot be done here, or None."""
    if os.geteuid() != 0:
        return "needs root to mount"
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"mount failed: {exc}"
    return None if done.returncode == 0 else f"mount not allowed here: {done.stderr.strip()}"


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def tiny_tmpfs(project: Project) -> Iterator[Path]:
    folder = project.path / "research" / "experiments"
    folder.mkdir(parents=True)
    why = _mount(["-t", "tmpfs", "-o", "size=64k,nr_inodes=200", "tmpfs", str(folder)])
    if why:
        pytest.skip(why)
    yield folder
    _umount(folder)


def test_a_really_full_disk_stops_cleanly_and_the_next_session_recovers(
    project: Project, monkeypatch: pytest.MonkeyPatch, tiny_tmpfs: Path
) -> None:
    ran = _project(project, monkeypatch, finding_size=20_000)  # ~20 KB per journal line
    # A subprocess: the disk errors are real ones, from the kernel.
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    _assert_clean_stop(result, "No space left on device")
    stopped_at = len(_ran(ran))
    assert 1 < stopped_at < 6
    folder = project.experiment_dir("e-d")
    journaled = [line["sub"] for line in _journal_lines(folder) if line.get("op") == "r"]
    assert journaled == _ran(ran)[: stopped_at - 1]  # all but the one that did not fit

    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_tmpfs)], check=True, timeout=30)
    again = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "d_6")
    assert "INTERNALERROR" not in again.stdout.str()
    doc = load_yaml((folder / "results.yaml").read_bytes())
    assert set(doc["sub_experiments"]) == {*journaled, "d_6"}


@pytest.fixture
def read_only_experiments(project: Project) -> Iterator[Path]:
    folder = project.path / "research" / "experiments"
    (folder / "e-d").mkdir(parents=True)
    why = _mount(["--bind", str(folder), str(folder)])
    if why:
        pytest.skip(why)
    try:
        why = _mount(["-o", "remount,bind,ro", str(folder)])
        if why:
            pytest.skip(why)
        yield folder / "e-d"
    finally:
        _umount(folder)


def test_a_read_only_results_folder_is_a_usage_error_before_anything_runs(
    project: Project, monkeypatch: pytest.MonkeyPatch, read_only_experiments: Path
) -> None:
    ran = _project(project, monkeypatch)
    result = project.run("--experiment", "all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "research/experiments/e-d" in err and "cannot be written" in err and "Read-only file system" in err
    assert "INTERNALERROR" not in result.stdout.str() + err
    assert _ran(ran) == []


def test_a_results_folder_that_cannot_be_made_is_a_usage_error_before_anything_runs(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _project(project, monkeypatch)
    experiments = project.path / "research" / "experiments"
    experiments.mkdir(parents=True)
    (experiments / "e-d").write_text("a file where the results folder should be")
    result = project.run("--experiment", "all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "research/experiments/e-d" in err and "cannot be written" in err
    assert _ran(ran) == []
    # Unit tests alone never check (nor need) the results folders.
    project.pytester.makepyfile(test_unit="def test_ok():\n    pass\n")
    project.run("test_unit.py").assert_outcomes(passed=1)


def test_temp_files_of_an_interrupted_rewrite_are_removed_by_the_next_writer(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, monkeypatch)
    folder = project.experiment_dir("e-d")
    folder.mkdir(parents=True)
    research = project.path / "research"
    dead = 999_999_999  # no such process
    leftovers = [
        folder / f".results.yaml.{dead}.0a1b2c3d.tmp",
        folder / f".FINDINGS.md.{dead}.0a1b2c3d.tmp",
        research / f".FINDINGS.md.{dead}.0a1b2c3d.tmp",
    ]
    alive = folder / f".results.yaml.{os.getpid()}.0a1b2c3d.tmp"  # a live session's: not ours to take
    for path in [*leftovers, alive]:
        path.write_text("half a file")
    project.run("--experiment", "d_1")
    assert [p.name for p in leftovers if p.exists()] == []
    assert alive.exists()
    assert (folder / "results.yaml").exists()
