"""The typed records that cross module and process boundaries (records.py)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from pytest_mlexp.executors.base import FutureHandle, Job, PoolExecutor, infra_outcome
from pytest_mlexp.records import (
    OutcomeError,
    ResultOp,
    SeedOutcome,
    as_mapping,
    as_outcome,
    entry_from_dict,
    new_entry,
)
from pytest_mlexp.remote import run_task
from tests.unit.test_executors import make_task


def _ok(seed: int = 0) -> SeedOutcome:
    return SeedOutcome(
        seed,
        "ok",
        result={"metrics": {"acc": 0.9}, "finding": "fine", "artifacts": ["a.png"]},
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        duration_s=1.25,
        history=[{"step": 0, "metrics": {"loss": 1.0}}],
        packages={"numpy": "2.0"},
        device="cpu",
        tracking={"tracker": "wandb", "url": "https://wandb.example/run"},
        warnings=("W&B: slow",),
    )


def test_outcome_round_trips_as_plain_data() -> None:
    out = _ok()
    data = out.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-safe (a worker's outcome file)
    assert SeedOutcome.from_dict(json.loads(json.dumps(data))) == out
    assert pickle.loads(pickle.dumps(out)) == out  # a Modal call's return value
    assert data["tracking"] == {"tracker": "wandb", "url": "https://wandb.example/run"}
    # what the first release's workers wrote is still read
    legacy = {k: v for k, v in data.items() if k != "tracking"}
    legacy["wandb"] = {"url": "https://wandb.example/run"}
    assert SeedOutcome.from_dict(legacy).tracking == {"url": "https://wandb.example/run"}


def test_the_handlers_exception_never_leaves_the_process() -> None:
    exc = ValueError("boom")
    out = SeedOutcome.failure(3, "handler", exc).replace(exc=exc)
    assert out.exc is exc and "exc" not in out.to_dict() and "_exc" not in out.to_dict()
    assert SeedOutcome.from_dict(out.to_dict()).exc is None


def test_one_failure_builder_for_errors_and_infrastructure() -> None:
    try:
        raise ImportError("no module named torch")
    except ImportError as exc:
        err = SeedOutcome.failure(1, "import", exc, started_at="2026-01-01T00:00:00Z")
    assert err.status == "error" and err.seed == 1 and err.started_at == "2026-01-01T00:00:00Z"
    assert err.error is not None and err.error["type"] == "ImportError"
    assert "raise ImportError" in err.error["traceback"]  # the cause's own traceback
    infra = SeedOutcome.failure(2, "lost_worker", "the worker died", infra=True, duration_s=1.23456)
    assert infra.status == "infra_error" and infra.error is not None
    assert infra.error == {
        "kind": "lost_worker",
        "type": "LostWorker",
        "message": "the worker died",
        "traceback": "",
    }
    assert infra.duration_s == 1.2346 and infra.finished_at


def test_infra_outcome_is_the_public_face_of_the_builder(tmp_path: Any) -> None:
    task = make_task(tmp_path, "sub", "")
    out = infra_outcome(task, "preempted", "spot instance reclaimed", traceback="tail")
    assert out == SeedOutcome.failure(
        task.seed, "preempted", "spot instance reclaimed", infra=True, traceback="tail"
    ).replace(started_at=out.started_at, finished_at=out.finished_at)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("ok", "a mapping, not str"),
        ({"seed": 0, "status": "done"}, "status must be one of"),
        ({"seed": "0", "status": "ok", "result": {"metrics": {}}}, "seed must be an integer"),
        ({"seed": 0, "status": "ok"}, "needs result: {metrics"),
        ({"seed": 0, "status": "error", "error": "bad"}, "error must be a mapping"),
    ],
)
def test_from_dict_refuses_what_is_not_an_outcome(data: Any, problem: str) -> None:
    with pytest.raises(OutcomeError, match=problem.replace("{", r"\{")):
        SeedOutcome.from_dict(data)


def test_a_third_party_mapping_is_accepted_and_garbage_becomes_an_infra_error() -> None:
    good = as_outcome({"seed": 4, "status": "ok", "result": {"metrics": {"x": 1}}}, 4)
    assert good.ok and good.result is not None and good.result["metrics"] == {"x": 1}
    assert good.result["artifacts"] == [] and good.result["finding"] is None
    bad = as_outcome(None, 4, "slurm executor")
    assert bad.status == "infra_error" and bad.error is not None and bad.error["kind"] == "executor"
    assert "the slurm executor returned something that is not an outcome" in bad.error["message"]


class _Broken(PoolExecutor):
    name = "broken"

    def run_job(self, handle: FutureHandle, attempt: int) -> Any:
        return {"status": "ok"}  # no seed, no result: a bug in the executor


def test_a_pool_executor_that_returns_garbage_fails_the_seed_not_the_session(tmp_path: Any) -> None:
    pool = _Broken()
    out = pool.submit(Job(make_task(tmp_path, "sub", ""))).result(5)
    pool.close()
    assert out.status == "infra_error" and out.error is not None
    assert "broken executor returned something that is not an outcome" in out.error["message"]


def test_run_task_gives_plain_data_that_reads_back_as_an_outcome(tmp_path: Any) -> None:
    task = make_task(tmp_path, "good", "def good(runner):\n    return {'metrics': {'n': 2}}\n")
    task.module_name = "mlexp_test_records_good"  # its own name: other tests import the same file name
    data = run_task(task.to_dict())
    out = SeedOutcome.from_dict(data)
    assert out.ok and out.result is not None and out.result["metrics"] == {"n": 2}


def test_entries_are_the_stored_mapping() -> None:
    entry = new_entry("passed", metrics={"acc": 0.5})
    assert list(entry) == ["status", "metrics"]  # status first, as people read the file
    assert entry_from_dict(entry) is entry
    assert entry_from_dict(["not", "an", "entry"]) is None
    assert entry_from_dict({"status": 3}) is None


def test_ops_travel_as_plain_data() -> None:
    ops = [
        ResultOp.record("/p/plan.yaml", "e1", "s1", "w_8", new_entry("passed"), ["a warning"]),
        ResultOp.blocked("/p/plan.yaml", "e1", "s1", None, "gate g not passed"),
        ResultOp.header("/p/plan.yaml", "e1", {"status": "completed"}),
        ResultOp.assessment_blocked("/p/plan.yaml", "e1", "dependency e0 not passed"),
    ]
    for op in ops:
        data = op.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert ResultOp.from_dict(data) == op
    with pytest.raises(ValueError, match="not a result op"):
        ResultOp.from_dict({"op": "delete", "plan": "p", "experiment": "e"})


def test_as_mapping_answers_for_any_mapping_and_nothing_else() -> None:
    """The one reader the verdict, the sub-experiment judge, gates and FINDINGS share: a dict
    answers at once, but any other mapping (a read-only view, a frozen params mapping) counts too."""
    from types import MappingProxyType

    from pytest_mlexp.records import tracking_of

    plain = {"a": 1}
    view = MappingProxyType({"a": 1})
    assert as_mapping(plain) is plain
    assert as_mapping(view) is view
    for other in (None, "a", 1, 1.5, True, ["a"], ("a",), {"a"}):
        assert as_mapping(other) is None
    assert tracking_of({"tracking": view}) is view
    assert tracking_of({"tracking": "not a block", "wandb": MappingProxyType({"url": "u"})}) == {
        "tracker": "wandb",
        "url": "u",
    }
    assert tracking_of({"tracking": None}) is None
