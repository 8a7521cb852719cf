"""results.yaml store: merge, history, legacy/corrupt/newer files, stale, journal, locking, cost."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlexp import store as store_mod
from pytest_mlexp.model import Loc, Plan, Project, SubExperiment
from pytest_mlexp.store import (
    HISTORY_LIMIT,
    SCHEMA_VERSION,
    ResultsStore,
    StoreError,
    dump_yaml,
    params_digest,
)
from tests import factories

LOC = Loc("research_plan.yaml", 1)


def make_sub(
    sub_id: str, exp_id: str = "exp", *, sweep: dict[str, tuple[Any, ...]] | None = None
) -> SubExperiment:
    return factories.sub(sub_id, exp_id, params={"lr": 0.01}, sweep=sweep, loc=LOC)


def make_plan(tmp_path: Path, experiments: dict[str, list[SubExperiment]]) -> Plan:
    exps = tuple(
        factories.experiment(exp_id, subs, name=f"Experiment {exp_id}", phase=1, loc=LOC)
        for exp_id, subs in experiments.items()
    )
    root = tmp_path / "research"
    root.mkdir(exist_ok=True)
    return Plan(
        path=root / "research_plan.yaml",
        project=Project("Demo", "It works", None, {}),
        experiments=exps,
        gates=(),
        modal={},
        meta={},
    )


def entry(
    status: str = "passed", *, finished: str = "2026-11-27T18:00:00Z", **metrics: Any
) -> dict[str, Any]:
    return {
        "status": status,
        "finding": f"status {status}",
        "metrics": metrics or {"acc": 0.9},
        "params": {"lr": 0.01},
        "executor": "local",
        "duration_s": 1.5,
        "provenance": {"git_commit": "abc", "git_dirty": False, "params_sha256": "d1"},
        "started_at": "2026-11-27T17:59:00Z",
        "finished_at": finished,
    }


class Warnings(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return make_plan(
        tmp_path,
        {
            "exp": [make_sub("s1"), make_sub("s2"), make_sub("sw", sweep={"h": (1, 2, 3)})],
            "other": [make_sub("o1", "other")],
        },
    )


def results_path(plan: Plan, exp: str = "exp", name: str = "results.yaml") -> Path:
    return plan.root / "experiments" / exp / name


def read(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def new_store(plan: Plan, **kw: Any) -> ResultsStore:
    kw.setdefault("warn", Warnings())
    kw.setdefault("stub", False)
    return ResultsStore(plan, **kw)


# --- basics -----------------------------------------------------------------------------------


def test_record_flush_roundtrip_in_spec_order(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s2", entry(acc=0.5))
    store.record("exp", "s1", entry(acc=0.25))
    store.set_experiment("exp", {"updated_at": "2026-11-27T18:00:00Z", "status": "completed", "name": "E"})
    store.flush()
    path = results_path(plan)
    doc = read(path)
    assert list(doc)[:5] == ["schema", "experiment_id", "name", "status", "updated_at"]
    assert list(doc)[-2:] == ["sub_experiments", "stale"]
    assert doc["schema"] == SCHEMA_VERSION
    assert list(doc["sub_experiments"]) == ["s1", "s2"]  # plan order, not record order
    assert doc["sub_experiments"]["s1"]["metrics"] == {"acc": 0.25}
    assert doc["stale"] == {}
    assert store.touched() == ["exp"]
    assert not list(path.parent.glob(".results.*.journal"))
    assert new_store(plan).doc("exp")["sub_experiments"] == store.doc("exp")["sub_experiments"]


def test_doc_of_unknown_file_is_empty(plan: Plan) -> None:
    doc = new_store(plan).doc("exp")
    assert doc["sub_experiments"] == {} and doc["stale"] == {}
    assert not results_path(plan).exists()


def test_merge_keeps_entries_not_run(plan: Plan) -> None:
    first = new_store(plan)
    first.record("exp", "s1", entry(acc=0.1))
    first.record("exp", "s2", entry(acc=0.2))
    first.flush()
    second = new_store(plan)
    second.record("exp", "s1", entry(acc=0.3))
    second.flush()
    subs = read(results_path(plan))["sub_experiments"]
    assert subs["s1"]["metrics"] == {"acc": 0.3}
    assert subs["s2"]["metrics"] == {"acc": 0.2}


def test_history_newest_first_and_bounded(plan: Plan) -> None:
    store = new_store(plan)
    for i in range(HISTORY_LIMIT + 5):
        store.record("exp", "s1", entry("failed" if i % 2 else "passed", finished=f"t{i:02d}", acc=float(i)))
    store.flush()
    got = read(results_path(plan))["sub_experiments"]["s1"]
    history = got["history"]
    assert len(history) == HISTORY_LIMIT
    assert [h["finished_at"] for h in history] == [f"t{i:02d}" for i in range(13, 3, -1)]
    # SPEC section 11: each attempt with its params digest, commit (and fingerprint, tracker link
    # when it had them), and what a later session needs to reuse it (finding, params, duration).
    assert history[0] == {
        "finished_at": "t13",
        "status": "failed",
        "finding": "status failed",
        "metrics": {"acc": 13.0},
        "params": {"lr": 0.01},
        "duration_s": 1.5,
        "params_sha256": "d1",
        "git_commit": "abc",
    }
    assert set(got) - {"history"} == set(entry())  # the new entry is what was recorded
    assert list(got)[-1] == "history"


def test_entry_passed_in_is_not_mutated_and_history_key_ignored(plan: Plan) -> None:
    store = new_store(plan)
    e = entry()
    e["history"] = ["bogus"]
    store.record("exp", "s1", e)
    assert e["history"] == ["bogus"]
    assert "history" not in store.doc("exp")["sub_experiments"]["s1"]


# --- files we must not trust ------------------------------------------------------------------


def test_legacy_file_is_kept_byte_for_byte_until_the_first_write(plan: Plan) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    path.write_text("sub_experiments:\n  s1: {status: done}\n", encoding="utf-8")
    warn = Warnings()
    store = new_store(plan, warn=warn)
    assert store.doc("exp")["sub_experiments"] == {}
    # Looking writes nothing (SPEC section 10): the file stays where it is, as it is.
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.yaml"]
    assert path.read_text(encoding="utf-8") == "sub_experiments:\n  s1: {status: done}\n"
    assert warn == []
    store.record("exp", "s1", entry())
    legacy = path.with_name("results.legacy.yaml")
    assert legacy.read_text(encoding="utf-8") == "sub_experiments:\n  s1: {status: done}\n"
    assert len(warn) == 1 and "results.legacy.yaml" in warn[0]
    store.flush()
    assert read(path)["schema"] == SCHEMA_VERSION
    assert legacy.exists()


def test_legacy_rename_never_overwrites_an_earlier_legacy_file(plan: Plan) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    path.with_name("results.legacy.yaml").write_text("old: 1\n", encoding="utf-8")
    path.write_text("old: 2\n", encoding="utf-8")
    store = new_store(plan)
    store.doc("exp")
    assert path.read_text(encoding="utf-8") == "old: 2\n"
    store.record("exp", "s1", entry())
    assert path.with_name("results.legacy.yaml").read_text(encoding="utf-8") == "old: 1\n"
    assert path.with_name("results.legacy.yaml.2").read_text(encoding="utf-8") == "old: 2\n"


@pytest.mark.parametrize(
    "content", ["schema: 1\nsub_experiments: {s1: [unclosed\n", "- a list\n", "\tbad: tab\n"]
)
def test_corrupt_file_is_moved_aside_with_a_warning(plan: Plan, content: str) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    warn = Warnings()
    store = new_store(plan, warn=warn)
    assert store.doc("exp")["sub_experiments"] == {}
    assert path.read_text(encoding="utf-8") == content  # reading moves nothing
    assert not list(path.parent.glob("results.yaml.corrupt-*")) and warn == []
    store.record("exp", "s1", entry())
    aside = list(path.parent.glob("results.yaml.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == content
    assert len(warn) == 1 and aside[0].name in warn[0] and str(path) in warn[0]
    store.flush()
    assert read(path)["sub_experiments"]["s1"]["status"] == "passed"


def test_schema_1_file_is_read_and_upgraded_on_its_next_write(plan: Plan) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    path.write_text(
        "schema: 1\nexperiment_id: exp\nsub_experiments:\n  s2:\n    status: passed\n"
        "    metrics: {acc: 0.5}\nstale: {}\n",
        encoding="utf-8",
    )
    store = new_store(plan)
    assert store.doc("exp")["sub_experiments"]["s2"]["metrics"] == {"acc": 0.5}
    store.record("exp", "s1", entry())
    store.flush()
    doc = read(path)
    assert doc["schema"] == SCHEMA_VERSION == 2
    assert doc["sub_experiments"]["s2"]["metrics"] == {"acc": 0.5}  # kept through the upgrade
    assert doc["sub_experiments"]["s1"]["status"] == "passed"


def test_schema_1_wandb_blocks_are_written_back_as_tracking(plan: Plan) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    path.write_text(
        "schema: 1\nexperiment_id: exp\nsub_experiments:\n  s2:\n    status: passed\n"
        "    metrics: {acc: 0.5}\n    wandb: {url: 'https://wandb.ai/t/p/runs/1', run_path: t/p/1}\n"
        "stale: {}\n",
        encoding="utf-8",
    )
    store = new_store(plan)
    assert store.doc("exp")["sub_experiments"]["s2"]["tracking"]["tracker"] == "wandb"
    store.record("exp", "s1", entry())
    store.flush()
    text = path.read_text(encoding="utf-8")
    assert "wandb:" not in text
    s2 = read(path)["sub_experiments"]["s2"]
    assert s2["tracking"] == {"tracker": "wandb", "url": "https://wandb.ai/t/p/runs/1", "run_path": "t/p/1"}


def test_newer_schema_is_refused_and_left_untouched(plan: Plan) -> None:
    path = results_path(plan)
    path.parent.mkdir(parents=True)
    content = f"schema: {SCHEMA_VERSION + 1}\nsub_experiments: {{}}\n"
    path.write_text(content, encoding="utf-8")
    store = new_store(plan)
    with pytest.raises(StoreError, match="upgrade pytest-mlexp") as info:
        store.doc("exp")
    assert str(path) in str(info.value)
    with pytest.raises(StoreError):
        store.record("exp", "s1", entry())
    store.flush()
    assert path.read_text(encoding="utf-8") == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.yaml"]


# --- stale entries ----------------------------------------------------------------------------


def test_entry_of_removed_or_moved_sub_goes_stale(plan: Plan, tmp_path: Path) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.record("exp", "gone", entry())
    store.record("exp", "o1", entry())  # o1 belongs to experiment "other"
    store.flush()
    fresh = new_store(plan)
    doc = fresh.doc("exp")
    assert set(doc["sub_experiments"]) == {"s1"}
    assert set(doc["stale"]) == {"gone", "o1"}
    fresh.record("exp", "s2", entry())
    fresh.flush()
    on_disk = read(results_path(plan))
    assert set(on_disk["stale"]) == {"gone", "o1"}
    assert set(on_disk["sub_experiments"]) == {"s1", "s2"}


def test_changed_params_digest_goes_stale(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.record("exp", "s2", entry())
    store.flush()
    digests = {"s1": "d1", "s2": "changed"}
    fresh = new_store(plan, digest_for=digests.get)
    doc = fresh.doc("exp")
    assert set(doc["sub_experiments"]) == {"s1"}
    assert doc["stale"]["s2"]["provenance"]["params_sha256"] == "d1"
    # A blocked placeholder has no provenance and cannot be judged stale by digest.
    assert fresh.record_blocked("exp", "s2", "gate_1 failed")


def test_sweep_points_are_checked_individually(plan: Plan) -> None:
    store = new_store(plan)
    for key in ("h_1", "h_2", "h_9"):  # h_9 is no longer a point of the sweep
        store.record("exp", "sw", entry(), point=key)
    store.set_summary("exp", "sw", {"selected": "h_1", "status": "passed", "metrics": {"acc": 0.9}})
    store.flush()
    digests = {"sw": "ignored-for-the-sub-itself", "sw[h_1]": "d1", "sw[h_2]": "other"}
    doc = new_store(plan, digest_for=digests.get).doc("exp")
    assert set(doc["sub_experiments"]["sw"]["points"]) == {"h_1"}
    assert set(doc["stale"]) == {"sw[h_2]", "sw[h_9]", "sw"}
    # The summary was computed over points that no longer count: it waits for a new one.
    assert set(doc["sub_experiments"]["sw"]) == {"points"}
    assert doc["stale"]["sw"]["selected"] == "h_1"


def test_sweep_points_all_stale_removes_the_sub(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "sw", entry(), point="h_1")
    store.flush()
    doc = new_store(plan, digest_for={"sw[h_1]": "x"}.get).doc("exp")
    assert "sw" not in doc["sub_experiments"]
    assert "sw[h_1]" in doc["stale"]


def test_params_digest_is_canonical() -> None:
    assert params_digest({"a": 1, "b": [1, 2]}) == params_digest({"b": [1, 2], "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 1.5})
    assert len(params_digest({"p": Path("x")})) == 64  # default=repr: never raises


# --- blocked ----------------------------------------------------------------------------------


def test_blocked_never_overwrites_a_stored_result(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry("failed"))
    assert store.record_blocked("exp", "s1", "gate_1 not passed") is False
    assert store.doc("exp")["sub_experiments"]["s1"]["status"] == "failed"
    assert store.record_blocked("exp", "s2", "gate_1 not passed") is True
    assert store.doc("exp")["sub_experiments"]["s2"] == {
        "status": "blocked",
        "blocked_reason": "gate_1 not passed",
    }
    assert store.record_blocked("exp", "s2", "gate_1 not passed") is False  # unchanged: nothing written
    assert store.record_blocked("exp", "s2", "dep failed") is True
    store.record("exp", "sw", entry(), point="h_1")
    assert store.record_blocked("exp", "sw", "x", point="h_1") is False
    assert store.record_blocked("exp", "sw", "x", point="h_2") is True
    store.flush()
    fresh = new_store(plan)
    assert fresh.record_blocked("exp", "s1", "again") is False
    assert read(results_path(plan))["sub_experiments"]["s1"]["status"] == "failed"


def test_a_run_after_a_blocked_placeholder_has_no_blocked_history(plan: Plan) -> None:
    store = new_store(plan)
    store.record_blocked("exp", "s1", "gate")
    store.record("exp", "s1", entry())
    assert "history" not in store.doc("exp")["sub_experiments"]["s1"]


# --- durability -------------------------------------------------------------------------------


def test_records_survive_dropping_the_store_without_flush(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"exp": [make_sub("s1"), make_sub("sw", sweep={"h": tuple(range(40))})]})
    store = new_store(plan)
    for i in range(37):
        store.record("exp", "sw" if i % 2 else "s1", entry(acc=float(i)), point=f"h_{i}" if i % 2 else None)
    store.set_summary("exp", "sw", {"selected": "h_1"})
    folder = results_path(plan).parent
    assert list(folder.glob(".results.*.journal"))  # some records live only in the journal
    expected = json.loads(json.dumps(store.doc("exp")["sub_experiments"]))
    del store
    gc.collect()  # closing the journal releases its lock, as the death of a process would
    fresh = new_store(plan)
    got = fresh.doc("exp")["sub_experiments"]
    assert json.loads(json.dumps(got)) == expected
    # Reading replays the journal in memory only: looking writes nothing.
    journals = list(folder.glob(".results.*.journal"))
    assert journals
    on_disk = results_path(plan).read_bytes() if results_path(plan).exists() else None
    fresh.doc("other")
    assert (results_path(plan).read_bytes() if results_path(plan).exists() else None) == on_disk
    # The first write of that experiment folds the journal into results.yaml and removes it.
    fresh.record("exp", "s1", entry(acc=99.0))
    expected["s1"] = json.loads(json.dumps(fresh.doc("exp")["sub_experiments"]["s1"]))
    assert not [j for j in journals if j.exists()]
    fresh.flush()
    assert not list(folder.glob(".results.*.journal"))
    assert json.loads(json.dumps(read(results_path(plan))["sub_experiments"])) == expected
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def test_crashed_process_loses_nothing(plan: Plan, tmp_path: Path) -> None:
    """A real crash: a child process records and dies with os._exit (no flush, no cleanup)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from test_store import make_plan, make_sub, entry
        from pathlib import Path
        from pytest_mlexp.store import ResultsStore
        plan = make_plan(Path({str(tmp_path)!r}), {{"exp": [make_sub(f"s{{i}}") for i in range(50)]}})
        store = ResultsStore(plan, stub=False, warn=print)
        for i in range(50):
            store.record("exp", f"s{{i}}", entry(acc=i / 7))
        os._exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    crashed_plan = make_plan(tmp_path, {"exp": [make_sub(f"s{i}") for i in range(50)]})
    folder = results_path(crashed_plan).parent
    assert list(folder.glob(".results.*.journal"))
    doc = new_store(crashed_plan).doc("exp")
    assert len(doc["sub_experiments"]) == 50
    assert doc["sub_experiments"]["s10"]["metrics"]["acc"] == 10 / 7  # floats round-trip exactly
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def test_half_written_journal_line_is_ignored(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.flush()
    folder = results_path(plan).parent
    line = json.dumps({"op": "r", "sub": "s2", "point": None, "history": [], "entry": entry()})
    (folder / ".results.999999-dead.journal").write_text(line + "\n" + line[:25], encoding="utf-8")
    doc = new_store(plan).doc("exp")
    assert set(doc["sub_experiments"]) == {"s1", "s2"}


def test_live_sessions_journal_is_not_replayed_by_another(plan: Plan) -> None:
    live = new_store(plan)
    live.record("exp", "s1", entry())
    live.record("exp", "s2", entry())
    live.record("exp", "sw", entry(), point="h_1")  # journaled, not yet in results.yaml
    other = new_store(plan)
    assert "sw" not in other.doc("exp")["sub_experiments"]
    assert list(results_path(plan).parent.glob(".results.*.journal"))
    live.flush()
    assert set(read(results_path(plan))["sub_experiments"]) == {"s1", "s2", "sw"}


def test_write_is_atomic_via_os_replace(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        calls.append((os.fspath(src), os.fspath(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.flush()
    path = results_path(plan)
    assert calls and all(dst == str(path) and Path(src).parent == path.parent for src, dst in calls)
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.yaml"]  # no lock file


def test_failed_write_leaves_old_file_and_no_temp(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "COMPACT_MIN", 1)  # rewrite as early as the geometric rule allows
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.flush()
    before = results_path(plan).read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    warn = store.warn
    store.record("exp", "s2", entry())  # 1 entry on disk: this record tries to rewrite
    assert isinstance(warn, Warnings) and "disk full" in warn[-1] and "journal" in warn[-1]
    assert results_path(plan).read_bytes() == before
    assert not [p for p in results_path(plan).parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(OSError, match="disk full"):
        store.flush()  # at the end of the session the failure is not swallowed
    monkeypatch.undo()
    del store
    gc.collect()
    # The record is in the journal all the same.
    assert "s2" in new_store(plan).doc("exp")["sub_experiments"]


class _ShortWrites:
    """The journal's file object, writing at most ``most`` bytes a call (``0``: nothing, a full
    disk that says so only by the count)."""

    def __init__(self, raw: Any, most: int) -> None:
        self._raw = raw
        self.most = most
        self.calls: list[int] = []

    def write(self, data: Any) -> int:
        self.calls.append(len(data))
        return int(self._raw.write(bytes(data[: self.most])))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def test_short_journal_writes_are_continued_until_the_line_is_whole(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry(acc=0.25))  # opens the journal
    state = store._states["exp"]
    handle = state.journal = _ShortWrites(state.journal, 7)  # type: ignore[assignment]
    store.record("exp", "s2", entry(acc=0.5))
    assert len(handle.calls) > 2 and handle.calls == list(range(handle.calls[0], 0, -7))
    assert state.journal_size == state.journal_path.stat().st_size  # type: ignore[union-attr]
    handle.most = 0  # then the disk is full: a write error, and the journal as it was
    with pytest.raises(store_mod.ResultsWriteError):
        store.record("exp", "sw", entry(), point="h_1")
    assert state.journal_size == state.journal_path.stat().st_size  # type: ignore[union-attr]
    lines = state.journal_path.read_bytes().splitlines()  # type: ignore[union-attr]
    assert [json.loads(line)["sub"] for line in lines] == ["s1", "s2"]


def test_flush_writes_every_experiment_it_can_and_keeps_the_journal_of_one_it_cannot(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.record("other", "o1", entry(acc=0.7))
    results_path(plan, "exp").mkdir()  # a folder where results.yaml should be: its rewrite fails
    with pytest.raises(OSError):
        store.flush()
    assert read(results_path(plan, "other"))["sub_experiments"]["o1"]["metrics"] == {"acc": 0.7}
    assert not list(results_path(plan, "other").parent.glob(".results.*.journal"))
    assert list(results_path(plan, "exp").parent.glob(".results.*.journal"))  # kept for the next session
    assert not [p for p in plan.root.rglob("*.tmp")]
    store.release()
    del store
    gc.collect()
    results_path(plan, "exp").rmdir()
    assert "s1" in new_store(plan).doc("exp")["sub_experiments"]  # recovered from the journal


def test_flush_writes_the_experiments_files_with_their_fsyncs_together(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[Path]] = []
    real = store_mod.write_files

    def spy(items: list[tuple[Path, bytes]], **kwargs: Any) -> list[OSError | None]:
        batches.append([path for path, _ in items])
        return real(items, **kwargs)

    monkeypatch.setattr(store_mod, "write_files", spy)
    store = new_store(plan)
    store.record("other", "o1", entry())
    store.record("exp", "s1", entry())
    store.flush()
    # One batch, in path order (two sessions take the folders' locks in the same order).
    assert batches == [[results_path(plan, "exp"), results_path(plan, "other")]]
    assert set(read(results_path(plan, "exp"))["sub_experiments"]) == {"s1"}
    assert set(read(results_path(plan, "other"))["sub_experiments"]) == {"o1"}

    # Many experiments: a batch at a time (a lock and an open file per experiment of a batch).
    monkeypatch.setattr(store_mod, "BATCH", 1)
    batches.clear()
    store = new_store(plan)
    store.record("other", "o1", entry(acc=0.1))
    store.record("exp", "s1", entry(acc=0.2))
    store.flush()
    assert batches == [[results_path(plan, "exp")], [results_path(plan, "other")]]
    assert read(results_path(plan, "other"))["sub_experiments"]["o1"]["metrics"] == {"acc": 0.1}


# --- sessions ---------------------------------------------------------------------------------


def test_two_sessions_merge_without_losing_entries(plan: Plan) -> None:
    a = new_store(plan)
    b = new_store(plan)
    a.doc("exp")
    b.doc("exp")  # both read the same (empty) state first
    a.record("exp", "s1", entry(acc=0.1))
    b.record("exp", "s2", entry(acc=0.2))
    b.record("exp", "sw", entry(), point="h_2")
    a.record("exp", "sw", entry(), point="h_1")
    a.set_summary("exp", "sw", {"selected": "h_1", "status": "passed"})
    a.set_experiment("exp", {"status": "partial"})
    a.flush()
    b.flush()
    doc = read(results_path(plan))
    assert set(doc["sub_experiments"]) == {"s1", "s2", "sw"}
    assert set(doc["sub_experiments"]["sw"]["points"]) == {"h_1", "h_2"}
    assert doc["sub_experiments"]["sw"]["selected"] == "h_1"
    assert doc["status"] == "partial"
    # b now sees a's entries too.
    assert set(b.doc("exp")["sub_experiments"]) == {"s1", "s2", "sw"}


def test_session_overrides_only_what_it_touched(plan: Plan) -> None:
    a = new_store(plan)
    a.record("exp", "s1", entry(acc=0.1))
    a.record("exp", "s2", entry(acc=0.2))
    a.flush()
    b = new_store(plan)
    b.doc("exp")
    c = new_store(plan)
    c.record("exp", "s2", entry(acc=0.9))
    c.flush()
    b.record("exp", "s1", entry(acc=0.5))
    b.flush()
    subs = read(results_path(plan))["sub_experiments"]
    assert subs["s1"]["metrics"]["acc"] == 0.5
    assert subs["s2"]["metrics"]["acc"] == 0.9  # c's newer result survives b's write


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_writers_lock_the_experiment_folder_itself(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session holding the folder's lock makes a write wait for it; no lock file is made."""
    import fcntl
    import threading

    folder = results_path(plan).parent
    folder.mkdir(parents=True)
    holder = os.open(folder, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waiting = threading.Event()
    real_sleep = store_mod.time.sleep

    def sleep(seconds: float) -> None:  # called only when the lock was busy
        waiting.set()
        real_sleep(0)

    monkeypatch.setattr(store_mod.time, "sleep", sleep)
    store = new_store(plan)
    store.record("exp", "s1", entry())
    done = threading.Event()
    writer = threading.Thread(target=lambda: (store.flush(), done.set()))
    writer.start()
    assert waiting.wait(10)  # the writer found the folder locked and waits for it
    assert not done.is_set() and not results_path(plan).exists()
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    writer.join(10)
    assert done.is_set() and read(results_path(plan))["sub_experiments"]["s1"]["status"] == "passed"
    assert sorted(p.name for p in folder.iterdir()) == ["results.yaml"]
    assert store.warn == []


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_stuck_folder_lock_costs_a_warning_not_a_hang(plan: Plan) -> None:
    import fcntl

    folder = results_path(plan).parent
    folder.mkdir(parents=True)
    holder = os.open(folder, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        store = new_store(plan, lock_timeout_s=0.0)
        store.record("exp", "s1", entry())
        store.flush()
    finally:
        os.close(holder)
    assert read(results_path(plan))["sub_experiments"]["s1"]["status"] == "passed"
    assert any("still locked" in w and str(folder) in w for w in store.warn)


def test_stub_writes_only_the_stub_file(plan: Plan) -> None:
    real = new_store(plan)
    real.record("exp", "s1", entry(acc=0.1))
    real.flush()
    before = results_path(plan).read_bytes()
    stub = new_store(plan, stub=True)
    assert stub.doc("exp")["sub_experiments"] == {}  # never reads the real results
    stub.record("exp", "s1", entry(acc=0.7))
    stub.record("exp", "s2", entry(acc=0.7))
    stub.flush()
    assert results_path(plan).read_bytes() == before
    assert (
        read(results_path(plan, name="results.stub.yaml"))["sub_experiments"]["s1"]["metrics"]["acc"] == 0.7
    )
    names = sorted(p.name for p in results_path(plan).parent.iterdir())
    assert names == ["results.stub.yaml", "results.yaml"]  # locks are on the folder: no lock files


def test_other_experiments_are_separate_files(plan: Plan) -> None:
    store = new_store(plan)
    store.record("exp", "s1", entry())
    store.record("other", "o1", entry())
    store.flush()
    assert store.touched() == ["exp", "other"]
    assert set(read(results_path(plan, "other"))["sub_experiments"]) == {"o1"}


# --- cost -------------------------------------------------------------------------------------


def test_rewrites_grow_logarithmically(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"exp": [make_sub("sw", sweep={"i": tuple(range(1000))})]})
    store = new_store(plan, refresh_s=None)
    keys = [p.key for p in plan.sub("sw").points()]
    for key in keys:
        store.record("exp", "sw", {"status": "passed", "metrics": {"x": 1.0}}, point=key)
    during = store.rewrites
    store.flush()
    assert during <= math.log2(1000) + 2  # 1, 2, 4, ... entries: each rewrite at least doubles the file
    assert store.rewrites <= during + 1
    assert len(read(results_path(plan))["sub_experiments"]["sw"]["points"]) == 1000


def test_flush_without_records_writes_nothing(plan: Plan) -> None:
    store = new_store(plan)
    store.doc("exp")
    store.flush()
    assert store.rewrites == 0 and not results_path(plan).exists()


def test_time_based_refresh(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(store_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(store_mod, "COMPACT_MIN", 1)
    store = new_store(plan, refresh_s=10.0)
    store.record("exp", "s1", entry())  # empty file: written at once
    store.record("exp", "s2", entry())  # 1 entry: written
    store.record("exp", "sw", entry(), point="h_1")  # 2 on disk, 1 pending: journal only
    assert store.rewrites == 2
    clock[0] += 11
    store.record("exp", "sw", entry(), point="h_2")
    assert store.rewrites == 3


def test_small_batches_stay_in_the_journal_until_compact_min(plan: Plan) -> None:
    store = new_store(plan, refresh_s=None)
    for i in range(store_mod.COMPACT_MIN - 1):
        store.record("exp", f"s{i}", entry())
    assert store.rewrites == 0 and not results_path(plan).exists()  # durable in the journal only
    store.record("exp", "last", entry())
    assert store.rewrites == 1
    assert len(read(results_path(plan))["sub_experiments"]) == store_mod.COMPACT_MIN


# --- YAML -------------------------------------------------------------------------------------


def test_per_seed_keys_and_floats_round_trip(plan: Plan) -> None:
    e = entry()
    e["per_seed"] = {0: {"acc": 0.1}, 1: {"acc": 1e-05}, 2: {"acc": float("nan")}}
    e["metrics"] = {"acc": 1e16, "neg": -float("inf"), "flag": True, "none": None, "text": "1e-3"}
    store = new_store(plan)
    store.record("exp", "s1", e)
    assert list(store.doc("exp")["sub_experiments"]["s1"]["per_seed"]) == [0, 1, 2]
    store.flush()
    got = read(results_path(plan))["sub_experiments"]["s1"]
    assert list(got["per_seed"]) == [0, 1, 2]
    assert got["per_seed"][1]["acc"] == 1e-05
    assert math.isnan(got["per_seed"][2]["acc"])
    assert got["metrics"] == {"acc": 1e16, "neg": -float("inf"), "flag": True, "none": None, "text": "1e-3"}


def test_tracebacks_are_written_as_literal_blocks(plan: Plan) -> None:
    tb = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\n'
        "RuntimeError: bad: value # not a comment\n"
    )
    e = entry("error")
    e["error"] = {"kind": "handler", "type": "RuntimeError", "message": "bad", "traceback": tb}
    store = new_store(plan)
    store.record("exp", "s1", e)
    store.flush()
    text = results_path(plan).read_text(encoding="utf-8")
    assert "traceback: |2+\n" in text
    assert read(results_path(plan))["sub_experiments"]["s1"]["error"]["traceback"] == tb


def test_non_plain_values_still_write(plan: Plan) -> None:
    e = entry()
    e["artifacts"] = [Path("artifacts/s1/a.png")]
    store = new_store(plan)
    store.record("exp", "s1", e)
    # Not JSON's own: the view holds what the journal replays (the path as text), not the Path.
    assert store.doc("exp")["sub_experiments"]["s1"]["artifacts"] == ["artifacts/s1/a.png"]
    store.flush()
    assert read(results_path(plan))["sub_experiments"]["s1"]["artifacts"] == ["artifacts/s1/a.png"]


def test_a_cycle_or_a_very_deep_value_still_writes(plan: Plan) -> None:
    # The journal's fast encoder has no circular-reference check: a cycle raises RecursionError
    # there, and the entry takes the slow path like any other value JSON cannot hold.
    loop: list[Any] = ["start"]
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(50_000):
        deep = [deep]
    e = entry()
    e["params"] = {"loop": loop, "deep": deep, "ok": 1}
    store = new_store(plan)
    store.record("exp", "s1", e)
    kept = store.doc("exp")["sub_experiments"]["s1"]
    assert kept["params"]["ok"] == 1 and kept["metrics"] == e["metrics"]
    # What a replay rebuilds: finite plain data (the cycle cut where it comes round again).
    assert kept["params"]["loop"] is not loop and kept["params"]["loop"][0] == "start"
    json.dumps(kept)
    replayed = new_store(plan, readonly=True).doc("exp")["sub_experiments"]["s1"]
    assert replayed == kept
    store.flush()
    assert read(results_path(plan))["sub_experiments"]["s1"]["params"] == kept["params"]


def test_plain_entries_are_kept_as_given_and_replay_alike(plan: Plan) -> None:
    e = entry()
    e["params"] = {"shape": (2, 3), "layers": [{"width": 8}]}
    e["per_seed"] = {0: {"acc": 0.5}, 1: {"acc": 0.7}}
    store = new_store(plan)
    store.record("exp", "s1", e)
    kept = store.doc("exp")["sub_experiments"]["s1"]
    assert kept["metrics"] is e["metrics"]  # no decoded copy of plain data
    assert kept is not e  # but the store's own top level
    # A worker's read-only view replays the live journal in memory.
    replayed = new_store(plan, readonly=True).doc("exp")["sub_experiments"]["s1"]
    assert replayed == {**kept, "params": {"shape": [2, 3], "layers": [{"width": 8}]}}
    assert list(replayed["per_seed"]) == [0, 1]
    store.flush()
    assert read(results_path(plan))["sub_experiments"]["s1"]["params"]["shape"] == [2, 3]


def test_dump_yaml_falls_back_for_foreign_types() -> None:
    import datetime

    data = {"when": datetime.date(2026, 11, 27), "items": [1, 2]}
    assert yaml.safe_load(dump_yaml(data)) == data


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.text(alphabet=" \t\n\r#:-'\"|>é\x85\u2028a0", max_size=20)
    | st.sampled_from(
        ["yes", "No", "null", "~", "1e-3", "0x10", ".inf", "2026-01-01", "- a", "a: b", "@x", ""]
    )
)
keys = st.text(max_size=12) | st.integers()
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, documents, max_size=5))
def test_dump_yaml_round_trips_through_pyyaml(data: dict[Any, Any]) -> None:
    text = dump_yaml(data)
    assert yaml.load(text, Loader=yaml.SafeLoader) == data
    assert yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) == data


def test_a_corrupt_file_is_moved_aside_when_pyyaml_was_not_imported_yet(tmp_path: Path) -> None:
    """PyYAML is imported only to read a file (store.load_yaml), and the store's ``except``
    clauses name its error through ``yamlwrite.yaml_error()``: in a fresh process, where the
    read is what imports PyYAML, its error must still be caught (a plan run whose plan came from
    the cache has not imported it)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from tests import factories
        from pytest_mlexp.model import Loc, Plan, Project
        from pytest_mlexp.store import ResultsStore
        assert "yaml" not in sys.modules, "imported before the read"
        loc = Loc("research_plan.yaml", 1)
        root = Path({str(tmp_path)!r}) / "research"
        exp = factories.experiment("exp", [factories.sub("s1", "exp", loc=loc)], loc=loc)
        plan = Plan(path=root / "research_plan.yaml", project=Project("D", "h", None, {{}}),
                    experiments=(exp,), gates=(), modal={{}}, meta={{}})
        path = root / "experiments" / "exp" / "results.yaml"
        path.parent.mkdir(parents=True)
        path.write_text("schema: 1\\nsub_experiments: {{s1: [unclosed\\n", encoding="utf-8")
        warned = []
        store = ResultsStore(plan, stub=False, warn=warned.append)
        assert store.doc("exp")["sub_experiments"] == {{}}
        assert "yaml" in sys.modules
        store.record("exp", "s1", {{"status": "passed", "metrics": {{"acc": 0.9}}}})
        store.flush()
        print(len(warned), sorted(p.name for p in path.parent.glob("results.yaml.corrupt-*")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    count, aside = proc.stdout.split(" ", 1)
    assert count == "1" and "results.yaml.corrupt-" in aside
    written = read(tmp_path / "research" / "experiments" / "exp" / "results.yaml")
    assert written["sub_experiments"]["s1"]["status"] == "passed"
