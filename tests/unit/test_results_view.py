"""The results view (results.py): what a session reads of results, with no pytest in sight."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_mlexp.model import Plan
from pytest_mlexp.plan import parse_plan_text
from pytest_mlexp.records import ResultOp, new_entry
from pytest_mlexp.results import ResultsView
from pytest_mlexp.store import ResultsStore

PLAN = """\
experiments:
  base:
    sub_experiments:
      b_lr:
        seeds: [1, 2, 3]
        success_criteria: {acc: ">= 0.5"}
      b_one:
        success_criteria: {acc: ">= 0.5"}
      b_sweep:
        sweep: {width: [8, 16]}
        success_criteria: {acc: ">= 0.5"}
  next:
    dependencies: [base]
    success_criteria:
      acc: {min: 0.6, from: n_mlp}
    sub_experiments:
      n_mlp:
        dependencies: [b_one]
"""


def _plan(tmp_path: Path) -> Plan:
    import dataclasses

    plan = parse_plan_text(textwrap.dedent(PLAN), "research/research_plan.yaml")
    (tmp_path / "research").mkdir(exist_ok=True)
    return dataclasses.replace(plan, path=tmp_path / "research" / "research_plan.yaml")


def _view(plan: Plan, *, readonly: bool = False) -> ResultsView:
    store = ResultsStore(plan, stub=False, warn=lambda _: None, readonly=readonly, fsync=False)
    return ResultsView(plan, store, stub=False)


def _record(view: ResultsView, sub: str, point: str | None = None, **fields: object) -> None:
    exp = view.plan.sub(sub).experiment_id
    status = str(fields.pop("status", "passed"))
    view.apply(ResultOp.record(str(view.plan.path), exp, sub, point, new_entry(status, **fields)))


def test_seed_values_pair_each_seed_with_its_value(tmp_path: Path) -> None:
    view = _view(_plan(tmp_path))
    assert view.seed_values("b_lr", "acc") is None  # never ran
    per_seed = {1: {"acc": 0.7}, 2: {"acc": 0.8}, 3: {"loss": 1.0}}
    _record(view, "b_lr", metrics={"acc": 0.75}, per_seed=per_seed)
    assert view.seed_values("b_lr", "acc") == {1: 0.7, 2: 0.8, 3: None}
    _record(view, "b_one", metrics={"acc": 0.9})  # one seed, no per_seed: the plan's first seed
    assert view.seed_values("b_one", "acc") == {0: 0.9}
    assert view.seed_values("b_one", "loss") == {0: None}
    assert view.seed_values("no_such_sub", "acc") is None


def test_seed_values_of_a_sweep_come_from_its_selected_point(tmp_path: Path) -> None:
    view = _view(_plan(tmp_path))
    _record(view, "b_sweep", "width_8", metrics={"acc": 0.6})
    _record(view, "b_sweep", "width_16", metrics={"acc": 0.9})
    assert view.seed_values("b_sweep", "acc") == {0: 0.9}  # ">= 0.5" selects the larger


def test_an_errored_or_blocked_sub_has_no_values(tmp_path: Path) -> None:
    view = _view(_plan(tmp_path))
    _record(view, "b_one", status="error", metrics={"acc": 0.9})
    assert view.seed_values("b_one", "acc") is None
    view.apply(ResultOp.blocked(str(view.plan.path), "base", "b_lr", None, "gate"))
    assert view.seed_values("b_lr", "acc") is None and not view.has_result("b_lr")
    assert view.has_result("b_one")


def test_a_worker_lays_its_results_over_a_read_only_store(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    view = _view(plan, readonly=True)
    _record(view, "b_sweep", "width_8", metrics={"acc": 0.6})
    _record(view, "b_one", metrics={"acc": 0.9})
    assert view.entry("b_sweep", "width_8") is not None
    sweep = view.entry("b_sweep")
    assert sweep is not None and sweep["selected"] == "width_8" and sweep["status"] == "passed"
    assert view.doc("base")["sub_experiments"]["b_one"]["metrics"] == {"acc": 0.9}
    assert not (tmp_path / "research" / "experiments").exists()  # nothing written


def test_blocked_reason_and_verdicts_follow_new_results(tmp_path: Path) -> None:
    view = _view(_plan(tmp_path))
    reason = view.blocked_reason("next")
    assert reason is not None and reason.startswith("dependency base not passed")
    for sub in ("b_lr", "b_one"):
        _record(view, sub, metrics={"acc": 0.9}, per_seed={1: {"acc": 0.9}} if sub == "b_lr" else None)
    _record(view, "b_sweep", "width_8", metrics={"acc": 0.9})
    assert view.verdict("base").passed  # recomputed after the results arrived
    n_mlp = view.plan.sub("n_mlp")
    assert view.blocked_reason("next", n_mlp) is None
    assert view.upstream(n_mlp)["b_one"]["metrics"] == {"acc": 0.9}


def test_a_result_refreshes_the_verdicts_that_read_it(tmp_path: Path) -> None:
    # "next" has a sub-experiment that waits for b_one: its verdict may read b_one's values
    # (a criterion that compares against it), so a new b_one result drops it from the cache.
    view = _view(_plan(tmp_path))
    _record(view, "n_mlp", metrics={"acc": 0.7})
    first = view.verdict("next")
    assert view.verdict("next") is first  # cached
    _record(view, "b_one", metrics={"acc": 0.9})
    assert view.verdict("next") is not first


@pytest.mark.parametrize("readonly", [False, True])
def test_header_ops_only_write_where_the_files_are_owned(tmp_path: Path, readonly: bool) -> None:
    view = _view(_plan(tmp_path), readonly=readonly)
    header = view.experiment_header("base")
    assert header["name"] == "base" and header["status"] == "not_started"
    view.apply(ResultOp.header(str(view.plan.path), "base", header))
    assert ("status" in view.store.doc("base")) is not readonly
