"""Stale reasons, restoring, reuse decisions and history items (SPEC section 11), without pytest."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_mlexp.fingerprint import FINGERPRINT_VERSION
from pytest_mlexp.model import Plan, Project
from pytest_mlexp.resultsdoc import HISTORY_LIMIT, history_item, move_to_stale
from pytest_mlexp.reuse import NodeFingerprint, params_change, plan_reuse, reused_outcomes
from pytest_mlexp.store import ResultsStore
from tests import factories


def fp(value: str = "f" * 64, seeds: tuple[int, ...] = (0, 1)) -> NodeFingerprint:
    return NodeFingerprint(value, {"handler": "m:f"}, seeds, "p" * 64, (), None)


def stored(
    finished: str, seeds: list[int], *, status: str = "passed", fingerprint: str = "f" * 64, **extra: Any
) -> dict[str, Any]:
    return {
        "status": status,
        "finding": f"run of {finished}",
        "metrics": {"acc": 0.5},
        "per_seed": {s: {"acc": 0.5 + s / 10} for s in seeds},
        "artifacts": [f"artifacts/s/{fingerprint[:12]}/seed{s}/m.txt" for s in seeds],
        "duration_s": 2.0 * len(seeds),
        "provenance": {
            "fingerprint": fingerprint,
            "fingerprint_version": FINGERPRINT_VERSION,
            "seeds": seeds,
        },
        "started_at": finished,
        "finished_at": finished,
        **extra,
    }


def test_params_change_says_what_changed() -> None:
    assert params_change({"lr": 0.01}, {"lr": 0.1}) == "params changed: lr 0.01 → 0.1"
    assert params_change({"lr": 0.01}, {"lr": 0.01, "epochs": 3}) == "params changed: epochs added (3)"
    assert params_change({"lr": 0.01, "wd": 0.1}, {"lr": 0.01}) == "params changed: wd removed (was 0.1)"
    assert params_change({"opt": {"lr": 1}}, {"opt": {"lr": 2}}) == "params changed: opt.lr 1 → 2"
    assert params_change({"name": "a"}, {"name": "b"}) == "params changed: name 'a' → 'b'"
    # a secret's value is never shown, not even the old one
    assert (
        params_change({"api_token": "***"}, {"api_token": "sk-new"})
        == "params changed: a secret's value (not shown)"
    )
    assert params_change({"n": 1}, {"n": 1.0}) == "params changed: n 1 → 1.0"  # an int became a float
    assert params_change(None, {}) == "params changed"


def test_reuse_takes_each_seed_from_the_newest_matching_result(tmp_path: Path) -> None:
    current = stored(
        "2026-01-03T00:00:00Z", [0], history=[history_item(stored("2026-01-01T00:00:00Z", [0, 1]))]
    )
    stale = stored("2026-01-02T00:00:00Z", [1, 2])
    plan = plan_reuse(
        fp(seeds=(0, 1, 2, 3)),
        (0, 1, 2, 3),
        current=current,
        stale=stale,
        plan_root=tmp_path,
        read_by_dependents=False,
    )
    assert {s: src.finished_at for s, src in plan.sources.items()} == {
        0: "2026-01-03T00:00:00Z",
        1: "2026-01-02T00:00:00Z",  # the stale entry is newer than the history item
        2: "2026-01-02T00:00:00Z",
    }
    assert plan.to_run((0, 1, 2, 3)) == [3]
    assert plan.date == "2026-01-03T00:00:00Z"
    outcomes = {o.seed: o for o in reused_outcomes(plan)}
    assert outcomes[1].result is not None and outcomes[1].result["metrics"] == {"acc": 0.6}
    assert outcomes[1].result["artifacts"] == [f"artifacts/s/{'f' * 12}/seed1/m.txt"]
    assert outcomes[1].duration_s == 2.0 and outcomes[1].finished_at == "2026-01-02T00:00:00Z"


def test_never_reused_errors_other_fingerprints_and_placeholders(tmp_path: Path) -> None:
    def decide(current: Mapping[str, Any] | None) -> list[int]:
        plan = plan_reuse(
            fp(), (0, 1), current=current, stale=None, plan_root=tmp_path, read_by_dependents=False
        )
        return sorted(plan.sources)

    assert decide(stored("t", [0, 1])) == [0, 1]
    assert decide(stored("t", [0, 1], status="failed")) == [0, 1]  # a measured miss is a result
    assert decide(stored("t", [0, 1], status="error")) == []
    assert decide(stored("t", [0, 1], status="infra_error")) == []
    assert decide({"status": "blocked", "blocked_reason": "gate"}) == []
    assert decide(stored("t", [0, 1], fingerprint="e" * 64)) == []
    # another fingerprint version gives another fingerprint (the version is hashed into it)
    assert decide(stored("t", [0, 1], fingerprint="0" * 64)) == []
    assert decide(None) == []


def test_an_imported_result_is_reused_whole_while_it_is_current(tmp_path: Path) -> None:
    imported = {
        "status": "passed",
        "metrics": {"acc": 0.7},
        "imported": {"started_at": "2025-06-01T10:00:00Z"},
    }
    plan = plan_reuse(
        None, (0, 1), current=imported, stale=None, plan_root=tmp_path, read_by_dependents=False
    )
    assert sorted(plan.sources) == [0, 1] and plan.imported and plan.date == "2025-06-01T10:00:00Z"
    errored = {**imported, "status": "error"}
    assert not plan_reuse(
        None, (0,), current=errored, stale=None, plan_root=tmp_path, read_by_dependents=False
    ).sources


def test_files_gone_are_not_reused_for_a_dependent_that_reads_them(tmp_path: Path) -> None:
    entry = stored("t", [0, 1])
    for art in entry["artifacts"][:1]:  # seed 0's file exists, seed 1's is gone
        (tmp_path / art).parent.mkdir(parents=True)
        (tmp_path / art).write_text("x")
    read = plan_reuse(fp(), (0, 1), current=entry, stale=None, plan_root=tmp_path, read_by_dependents=True)
    assert sorted(read.sources) == [0]
    unread = plan_reuse(fp(), (0, 1), current=entry, stale=None, plan_root=tmp_path, read_by_dependents=False)
    assert sorted(unread.sources) == [0, 1]


def test_history_items_keep_what_reuse_and_comparison_need() -> None:
    entry = stored(
        "2026-01-01T00:00:00Z", [0], params={"lr": 0.1}, wandb={"url": "u", "run_path": "p", "mode": "x"}
    )
    entry["provenance"].update(git_commit="abc", params_sha256="d", python="3.11", inputs={"handler": "m:f"})
    entry["criteria"] = {"acc": {"level": "pass"}}
    entry["error"] = {"type": "ValueError", "message": "bad\nmore", "traceback": "long"}
    item = history_item(entry)
    assert item["git_commit"] == "abc" and item["params_sha256"] == "d" and item["fingerprint"] == "f" * 64
    assert item["tracking"] == {"url": "u", "run_path": "p"}
    assert item["per_seed"] == entry["per_seed"] and item["params"] == {"lr": 0.1}
    assert item["error"] == "ValueError: bad"  # one line, no traceback
    assert "criteria" not in item and "python" not in item and "provenance" not in item
    assert history_item(item) == item  # an item moved again stays the same


def test_a_node_that_goes_stale_twice_keeps_both_runs() -> None:
    stale: dict[str, Any] = {}
    move_to_stale(stale, "s", stored("2026-01-01T00:00:00Z", [0]), "params changed: lr 1 → 2")
    move_to_stale(stale, "s", stored("2026-01-02T00:00:00Z", [0]), "params changed: lr 2 → 3")
    newest = stale["s"]
    assert newest["finished_at"] == "2026-01-02T00:00:00Z"
    assert newest["stale_reason"] == "params changed: lr 2 → 3"
    (older,) = newest["history"]
    assert older["finished_at"] == "2026-01-01T00:00:00Z"
    assert older["stale_reason"] == "params changed: lr 1 → 2"
    for day in range(3, 3 + HISTORY_LIMIT + 2):
        move_to_stale(stale, "s", stored(f"2026-01-{day:02d}T00:00:00Z", [0]), "x")
    assert len(stale["s"]["history"]) == HISTORY_LIMIT


class SwapWhenAsked:
    """A reconciler that says which stale entry the plan wants back (by its finding)."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted

    def stale_reason(self, key: str, entry: Mapping[str, Any]) -> str | None:
        return None if entry.get("finding") == self.wanted else "params changed"

    def restorable(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
        return candidate.get("finding") == self.wanted

    def restored(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in candidate.items() if k != "stale_reason"}

    def reconcile(self, experiment_id: str, doc: dict[str, Any]) -> None:
        pass


def test_the_store_swaps_a_current_and_a_stale_entry_when_the_plan_asks(tmp_path: Path) -> None:
    sub = factories.sub("s1", "exp")
    plan = Plan(
        path=tmp_path / "research_plan.yaml",
        project=Project("P", "h", None, {}),
        experiments=(factories.experiment("exp", [sub]),),
        gates=(),
        modal={},
        meta={},
    )
    first = ResultsStore(plan, stub=False, warn=print)
    first.record("exp", "s1", stored("2026-01-01T00:00:00Z", [0]))
    first.flush()
    # the plan changed: s1's result goes stale
    second = ResultsStore(plan, stub=False, warn=print, reconciler=SwapWhenAsked("nothing"))
    assert "s1" not in second.doc("exp")["sub_experiments"]
    second.record("exp", "s1", stored("2026-01-02T00:00:00Z", [0]))
    second.flush()
    # undone: the first run comes back whole, the second goes stale, both kept
    third = ResultsStore(
        plan, stub=False, warn=print, reconciler=SwapWhenAsked("run of 2026-01-01T00:00:00Z")
    )
    doc = third.doc("exp")
    assert doc["sub_experiments"]["s1"]["finished_at"] == "2026-01-01T00:00:00Z"
    assert doc["stale"]["s1"]["finished_at"] == "2026-01-02T00:00:00Z"
    assert doc["stale"]["s1"]["stale_reason"] == "params changed"
    assert "stale_reason" not in doc["sub_experiments"]["s1"]


def test_a_result_stale_by_its_seeds_is_an_earlier_attempt_of_the_same_params() -> None:
    from pytest_mlexp.resultsdoc import earlier_attempts, seeds_added_after_inconclusive

    def attempt(seeds: list[int], when: str, lr: float) -> dict[str, Any]:
        return {
            "status": "failed",
            "params": {"lr": lr},
            "per_seed": {s: {"acc": 0.9} for s in seeds},
            "criteria": {"acc": {"level": "inconclusive"}},
            "provenance": {"seeds": seeds},
            "finished_at": when,
        }

    now = attempt([0, 1, 2, 3, 4, 5], "2026-02-03T00:00:00Z", 0.1)
    stale = {**attempt([0, 1, 2], "2026-02-02T00:00:00Z", 0.1), "stale_reason": "seeds changed"}
    stale["history"] = [{"finished_at": "2026-02-01T00:00:00Z", "status": "failed", "metrics": {}}]
    got = earlier_attempts(now, stale)
    assert [h["finished_at"][:10] for h in got] == ["2026-02-02", "2026-02-01"]
    assert seeds_added_after_inconclusive(now, stale) == (["acc"], 3, 6)
    other = {**stale, "params": {"lr": 0.01}}  # another experiment's result, not an attempt of this one
    assert earlier_attempts(now, other) == [] and seeds_added_after_inconclusive(now, other) is None


def _fingerprinted_plan(tmp_path: Path) -> tuple[Plan, Any]:
    """A plan of one experiment: ``a`` and ``b`` share a handler, ``c`` waits for ``a``, ``n``
    has no handler; and what its fingerprints' ``ref_of`` answers."""
    from pytest_mlexp.handler_modules import HandlerRef

    handler = tmp_path / "experiments" / "h.py"
    handler.parent.mkdir()
    handler.write_text("def h(runner):\n    return {'metrics': {'x': 1.0}}\n")
    subs = [
        factories.sub("a", "exp", params={"lr": 0.1}),
        factories.sub("b", "exp", params={"lr": 0.2}),
        factories.sub("c", "exp", dependencies=("a",)),
        factories.sub("n", "exp"),
    ]
    plan = Plan(
        path=tmp_path / "research_plan.yaml",
        project=Project("P", "h", None, {}),
        experiments=(factories.experiment("exp", subs),),
        gates=(),
        modal={},
        meta={},
    )
    ref = HandlerRef(handler, "experiments.h", "h", ("runner",), 1, "0" * 64)
    return plan, (lambda sub: None if sub.id == "n" else ref)


def test_a_fingerprint_without_upstream_is_answered_again_as_first_worked_out(tmp_path: Path) -> None:
    # digest() answers a result without upstream from the session's cache once it is known;
    # what it answers is what a fresh PlanFingerprints works out, and a result with upstream
    # still follows its upstream's fingerprint.
    from pytest_mlexp.fingerprint import Fingerprinter
    from pytest_mlexp.reuse import PlanFingerprints

    plan, ref_of = _fingerprinted_plan(tmp_path)
    entries: dict[str, Any] = {"a": {"status": "passed", "provenance": {"fingerprint": "1" * 64}}}

    def fresh() -> PlanFingerprints:
        return PlanFingerprints(plan, Fingerprinter(tmp_path), stub=False, ref_of=ref_of)

    subs = plan.experiment("exp").sub_experiments
    warm = fresh()
    for sub in subs:  # worked out once (the item's run, or the file's first read)
        warm.node(sub, None, entries.get)
    first = {sub.id: warm.digest(sub, None, entries.get) for sub in subs}
    assert first == {sub.id: fresh().digest(sub, None, entries.get) for sub in subs}
    assert first["n"] is None and len({first["a"], first["b"], first["c"]}) == 3
    for sub in subs:
        node = warm.node(sub, None, entries.get)
        assert (node.fingerprint if node is not None else None) == first[sub.id]
    entries["a"] = {"status": "passed", "provenance": {"fingerprint": "2" * 64}}
    again = {sub.id: warm.digest(sub, None, entries.get) for sub in subs}
    assert again == {sub.id: fresh().digest(sub, None, entries.get) for sub in subs}
    assert again["c"] != first["c"] and {k: v for k, v in again.items() if k != "c"} == {
        k: v for k, v in first.items() if k != "c"
    }


def test_reconcile_marks_and_unmarks_outdated_and_missing_files(tmp_path: Path) -> None:
    # An entry marked as it should be is written as it is (the same object); one whose marks
    # are wrong gets them put right, whichever way.
    from pytest_mlexp.fingerprint import Fingerprinter
    from pytest_mlexp.reuse import PlanFingerprints, PlanReconciler

    plan, ref_of = _fingerprinted_plan(tmp_path)
    fps = PlanFingerprints(plan, Fingerprinter(tmp_path), stub=False, ref_of=ref_of)
    docs: dict[str, Any] = {}
    rec = PlanReconciler(fps, doc_of=docs.__getitem__)
    a, b = plan.sub("a"), plan.sub("b")
    fp_a = fps.node(a, None, lambda _: None)
    fp_b = fps.node(b, None, lambda _: None)
    assert fp_a is not None and fp_b is not None
    (tmp_path / "here.txt").write_text("x")

    def result(fp: NodeFingerprint, **extra: Any) -> dict[str, Any]:
        return {"status": "passed", "provenance": fp.provenance(), **extra}

    current = result(fp_a, artifacts=["here.txt"])
    doc: dict[str, Any] = {
        "sub_experiments": {
            "a": current,
            "b": result(fp_a, artifacts=["gone.txt"]),  # another sub's fingerprint: outdated
            "n": {"status": "passed", "outdated": "was", "artifacts_missing": ["x"]},
        },
        "stale": {},
    }
    docs["exp"] = doc
    rec.reconcile("exp", doc)
    subs = doc["sub_experiments"]
    assert subs["a"] is current
    assert subs["b"]["outdated"] and subs["b"]["artifacts_missing"] == ["gone.txt"]
    assert "outdated" not in subs["n"] and "artifacts_missing" not in subs["n"]
    subs["b"] = result(fp_b, outdated="old", artifacts_missing=["gone.txt"], artifacts=["here.txt"])
    rec.reconcile("exp", doc)
    assert "outdated" not in subs["b"] and "artifacts_missing" not in subs["b"]
