"""atomic.write_files: several files written as atomic_write_bytes writes one, their fsyncs waited
for together, one file's failure costing only that file."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import atomic


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_every_file_is_fsynced_before_any_replaces_its_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [tmp_path / f"e{i}" / "results.yaml" for i in range(5)]
    paths[0].parent.mkdir()
    paths[0].write_bytes(b"old\n")
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        with lock:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.fspath(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    errors = atomic.write_files([(p, f"new {i}\n".encode()) for i, p in enumerate(paths)])
    assert errors == [None] * 5
    assert [p.read_bytes() for p in paths] == [f"new {i}\n".encode() for i in range(5)]
    # Each temp file was fsynced, and every fsync came before the first replace.
    synced = {name for kind, name in events if kind == "fsync"}
    replaced = [name for kind, name in events if kind == "replace"]
    assert len(replaced) == 5 and synced == set(replaced)
    assert all(kind == "fsync" for kind, _ in events[:5])
    assert _temps(tmp_path) == []


def test_one_failure_costs_only_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    good = [tmp_path / "a" / "FINDINGS.md", tmp_path / "b" / "FINDINGS.md", tmp_path / "c" / "FINDINGS.md"]
    for path in good:
        path.parent.mkdir()
        path.write_bytes(b"old\n")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "b")):
            raise OSError(5, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    items = [(good[0], b"new a\n"), (blocked / "FINDINGS.md", b"x")]
    items += [(good[1], b"new b\n"), (good[2], b"new c\n")]
    errors = atomic.write_files(items)
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], OSError)  # its folder cannot be made
    assert isinstance(errors[2], OSError) and "I/O error" in str(errors[2])  # its fsync failed
    assert good[0].read_bytes() == b"new a\n" and good[2].read_bytes() == b"new c\n"
    assert good[1].read_bytes() == b"old\n"  # never replaced by content that is not durable
    assert _temps(tmp_path) == []


def test_an_interrupt_midway_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [tmp_path / f"f{i}.md" for i in range(3)]
    for path in paths:
        path.write_bytes(b"old\n")
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_files([(p, b"new\n") for p in paths])
    assert [p.read_bytes() for p in paths] == [b"new\n", b"old\n", b"old\n"]  # whole, old or new
    assert _temps(tmp_path) == []


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise AssertionError("fsync asked for")

    monkeypatch.setattr(os, "fsync", fsync)
    assert atomic.write_files([(tmp_path / "a", b"1"), (tmp_path / "b", b"2")], fsync=False) == [None, None]
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"
    assert atomic.write_files([]) == []


@pytest.mark.parametrize("slow", [True, False], ids=["busy disk: together", "idle disk: in turn"])
def test_fsyncs_go_to_threads_only_once_one_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    # "Slow" by the threshold, not by the clock: below zero every fsync counts as slow.
    monkeypatch.setattr(atomic, "SLOW_FSYNC_S", -1.0 if slow else float("inf"))
    threads: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        threads.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths = [tmp_path / f"f{i}" for i in range(6)]
    assert atomic.write_files([(p, b"x") for p in paths]) == [None] * 6
    assert len(threads) == 6 and all(p.read_bytes() == b"x" for p in paths)
    main = threading.get_ident()
    assert threads[0] == main  # the first always in turn: it tells whether the disk is busy
    assert any(t != main for t in threads[1:]) is slow


@pytest.mark.parametrize("threads", [2, 16])
@pytest.mark.parametrize("startable", [True, False], ids=["threads", "no thread to be had"])
def test_fsyncs_synced_together_report_each_file_s_own_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, startable: bool
) -> None:
    # Fewer threads than files (each syncs every n-th), or none at all (a process limit: the
    # shares are synced in this thread): every file synced once, its failure at its own place.
    monkeypatch.setattr(atomic, "SLOW_FSYNC_S", -1.0)
    monkeypatch.setattr(atomic, "FSYNC_THREADS", threads)
    if not startable:

        def no_thread(*args: Any) -> int:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(atomic._thread, "start_new_thread", no_thread)
    synced: list[str] = []
    lock = threading.Lock()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        with lock:
            synced.append(name)
        if "/f3/" in name or "/f6/" in name:
            raise OSError(5, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths = [tmp_path / f"f{i}" / "results.yaml" for i in range(8)]
    errors = atomic.write_files([(p, b"x") for p in paths])
    assert [i for i, e in enumerate(errors) if e is not None] == [3, 6]
    assert len(synced) == len(set(synced)) == 8
    assert [p.exists() for p in paths] == [i not in (3, 6) for i in range(8)]
    assert _temps(tmp_path) == []


def test_an_unexpected_error_in_a_sync_thread_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only OSErrors are a file's own failure; anything else must not pass for a synced file.
    monkeypatch.setattr(atomic, "SLOW_FSYNC_S", -1.0)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "f2")):
            raise MemoryError
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths = [tmp_path / f"f{i}" / "results.yaml" for i in range(4)]
    with pytest.raises(MemoryError):
        atomic.write_files([(p, b"x") for p in paths])
    assert not any(p.exists() for p in paths) and _temps(tmp_path) == []


def test_many_files_are_written_a_batch_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plan of many experiments must not hold a file open per experiment all at once.
    monkeypatch.setattr(atomic, "BATCH", 2)
    open_temps: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        open_temps.append(len(_temps(tmp_path)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths = [tmp_path / f"f{i}" for i in range(5)]
    assert atomic.write_files([(p, str(i).encode()) for i, p in enumerate(paths)]) == [None] * 5
    assert [p.read_bytes() for p in paths] == [b"0", b"1", b"2", b"3", b"4"]
    assert len(open_temps) == 5 and max(open_temps) <= 2


def test_folders_to_be_made_in_one_folder_share_one_write_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first run's experiment folders do not exist yet: each would be made in experiments/'s
    # nearest existing folder, so one try answers for all of them (and each is named).
    tried: list[Path] = []

    def read_only(folder: Path) -> str:
        tried.append(folder)
        return "Read-only file system"

    monkeypatch.setattr(atomic, "_write_check", read_only)
    folders = [tmp_path / "research" / "experiments" / f"e{i}" for i in range(3)]
    problems = atomic.writable_problems([tmp_path, *folders])
    assert tried == [tmp_path]
    assert problems == dict.fromkeys([tmp_path, *folders], "Read-only file system")


def test_a_write_check_leaves_nothing_behind_and_names_what_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "experiments").write_text("not a folder", encoding="utf-8")
    problems = atomic.writable_problems([tmp_path, tmp_path / "experiments", tmp_path / "experiments" / "e1"])
    assert problems == {
        tmp_path / "experiments": "it is a file, not a folder",
        tmp_path / "experiments" / "e1": "a file is in the way",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments"]
