"""The session end's fast paths (``reporting.py``) give the general path's answers.

Each is compared with the code it replaced (kept here as the reference) on varied input: the
summary row's text (a duration under 50 ms without formatting a float), the sweep's selected
point found per sweep, the experiment items that never reported (a count first), the --lf sets
(rows that did not pass picked once), and the all-blocked check (the first unblocked row).
"""

from __future__ import annotations

import itertools
import math
import types
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_mlexp import reporting
from pytest_mlexp.items import AssessmentItem, SubItem
from pytest_mlexp.textutil import fmt_number


def reference_row_detail(row: Mapping[str, Any]) -> str:
    """``_row_detail`` before the fast path (every duration formatted)."""
    if row["status"] == "blocked":
        return str(row.get("reason", ""))
    parts = []
    reused = row.get("reused")
    if reused:
        when = str(reused.get("from") or "")[:10]
        what = "reused (imported)" if reused.get("imported") else "reused"
        seeds = reused.get("seeds")
        parts.append(f"({what} {when})" if not seeds else f"({len(seeds)} seeds {what} {when})")
    metrics = row.get("metrics")
    if metrics:
        criteria = row.get("criteria")
        for name, value in metrics.items() if len(metrics) <= 4 else list(metrics.items())[:4]:
            text = f"{name}={fmt_number(value)}"
            if criteria:
                c = criteria.get(name)
                if c:
                    text += f" ({c.get('rule')}: {c.get('level')})"
            parts.append(text)
    if row.get("error"):
        parts.append(f"[{row['error']}]")
    if row.get("kept"):
        parts.append("(the stored result is kept)")
    if reused and not reused.get("seeds"):
        pass
    elif row.get("duration_s") is not None:
        parts.append(f"{row['duration_s']:.1f}s")
    return "  ".join(parts)


DURATIONS = [
    None,
    0,
    0.0,
    -0.0,
    -0.01,
    1e-300,
    0.000123,
    0.049999999999999996,
    0.05,
    0.0500001,
    0.04,
    0.25,
    0.95,
    1.05,
    12.345,
    3600.0,
    1e20,
    math.nan,
    math.inf,
    -math.inf,
    True,
    7,
]


@pytest.mark.parametrize("duration", DURATIONS)
def test_a_duration_reads_as_the_formatted_float(duration: Any) -> None:
    row = {"status": "passed", "metrics": {"x": 1.0}, "criteria": {}, "duration_s": duration}
    assert reporting._row_detail(row) == reference_row_detail(row)


def test_every_float_under_a_twentieth_reads_zero() -> None:
    # The floats next to the boundary, and a spread below it.
    edge = 0.05
    below = [math.nextafter(edge, 0.0), *(math.nextafter(edge, 0.0) - k * 1e-17 for k in range(50))]
    spread = [i / 100_000 for i in range(5_000)] + [2.0**-k for k in range(5, 1075)]
    for value in [*below, edge, math.nextafter(edge, 1.0), *spread]:
        assert reporting._row_detail({"status": "passed", "duration_s": value}) == f"{value:.1f}s", value


def test_rows_of_every_shape_read_as_before() -> None:
    metrics_choices = [None, {}, {"x": 1.0}, {"a": 0.5, "b": 2, "c": None, "d": True, "e": 9.0}]
    criteria_choices = [None, {}, {"x": {"rule": ">= 0.9", "level": "pass"}}, {"a": {"rule": "< 1"}}]
    reused_choices = [
        None,
        {},
        {"from": "2026-12-01T10:00:00Z"},
        {"from": "2026-12-01T10:00:00Z", "imported": True},
        {"from": "2026-12-01", "seeds": [0, 1, 2]},
    ]
    shapes = itertools.product(
        ["passed", "failed", "error", "blocked"],
        metrics_choices,
        criteria_choices,
        reused_choices,
        [None, "handler"],
        [False, True],
        [None, 0.01, 2.25],
    )
    for status, metrics, criteria, reused, error, kept, duration in shapes:
        row: dict[str, Any] = {
            "status": status,
            "metrics": metrics,
            "criteria": criteria,
            "reused": reused,
            "error": error,
            "duration_s": duration,
            "reason": "held back",
        }
        if kept:
            row["kept"] = True
        assert reporting._row_detail(row) == reference_row_detail(row), row
    assert reporting._row_detail({"status": "passed"}) == reference_row_detail({"status": "passed"})


class _Ctx:
    """A plan context for the selected points: sweeps ``sw`` (selected ``p2``) and ``none``
    (nothing selected yet); ``gone`` is not in the plan."""

    def __init__(self) -> None:
        selected = {"sw": "p2", "none": None}
        self.plan = types.SimpleNamespace(has_sub=lambda sub_id: sub_id in selected)
        self.results = types.SimpleNamespace(
            sub_state=lambda sub_id: types.SimpleNamespace(selected=selected[sub_id])
        )


def reference_selected_points(ctx: Any, rows: list[dict[str, Any]]) -> set[str]:
    """``_selected_points`` as it was: every sweep's selected row name, up front."""
    if ctx is None:
        return set()
    out: set[str] = set()
    for sub_id in {row["name"].partition("[")[0] for row in rows if "[" in row["name"]}:
        if ctx.plan.has_sub(sub_id):
            selected = ctx.results.sub_state(sub_id).selected
            if selected is not None:
                out.add(f"{sub_id}[{selected}]")
    return out


@pytest.mark.parametrize("ctx", [_Ctx(), None])
def test_the_selected_point_is_found_as_before(ctx: Any) -> None:
    names = ["plain", "sw[p1]", "sw[p2]", "sw[p3]", "none[p1]", "gone[p2]", "sw[p2]x", "p2"]
    rows = [{"name": name} for name in names]
    expected = reference_selected_points(ctx, rows)
    memo: dict[str, str | None] = {}
    got = {name for name in names if "[" in name and reporting._is_selected(ctx, name, memo)}
    assert got == expected
    assert ctx is None or got == {"sw[p2]"}


def _item(cls: type, nodeid: str) -> Any:
    """An item of ``cls`` (or a plain object) answering ``nodeid``, without a collection."""
    if cls is object:
        return types.SimpleNamespace(nodeid=nodeid)
    fake = type(f"Fake{cls.__name__}", (cls,), {"nodeid": property(lambda self: self._fake_id)})
    item = fake.__new__(fake)
    object.__setattr__(item, "_fake_id", nodeid)
    return item


def reference_never_finished(records: Mapping[str, Any], items: list[Any]) -> list[str]:
    return [
        it.nodeid for it in items if isinstance(it, (SubItem, AssessmentItem)) and it.nodeid not in records
    ]


@pytest.mark.parametrize(
    "kinds, reported",
    [
        ([SubItem, SubItem, AssessmentItem], {0, 1, 2}),  # every item reported: the count answers
        ([SubItem, SubItem, AssessmentItem], {0, 2}),
        ([SubItem, SubItem, AssessmentItem], set()),
        ([object, SubItem, AssessmentItem], {1, 2}),  # a plain test among them
        ([object, SubItem, AssessmentItem], {1}),
        ([SubItem, SubItem, SubItem], {0, 2}),  # two items with one node id, one reported
    ],
)
def test_the_items_that_never_finished_are_found_as_before(kinds: list[type], reported: set[int]) -> None:
    ids = ["p::e::a", "p::e::b", "p::e::assessment"]
    if kinds == [SubItem, SubItem, SubItem]:
        ids = ["p::e::a", "p::e::a", "p::e::b"]
    items = [_item(cls, nodeid) for cls, nodeid in zip(kinds, ids, strict=True)]
    records = {ids[i]: {"status": "passed"} for i in sorted(reported)}
    state = types.SimpleNamespace(records=records)
    session = types.SimpleNamespace(items=items)
    assert reporting._never_finished(state, session) == reference_never_finished(records, items)  # type: ignore[arg-type]


class _Cache:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = {k: v for k, v in data.items()}

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def reference_lf_sets(
    records: Mapping[str, Mapping[str, Any]], before: list[str], opening: set[tuple[Any, str]]
) -> list[str]:
    """The mode's last-failed set as the loop over every row made it (no suppliers)."""
    current = set(before)
    for nodeid, row in records.items():
        if (
            row["status"] in ("failed", "error", "infra_error", "blocked")
            and (
                row.get("plan"),
                row["experiment"],
            )
            not in opening
        ):
            current.add(nodeid)
        else:
            current.discard(nodeid)
    return sorted(current)


def test_the_last_failed_sets_are_made_as_before() -> None:
    statuses = ["passed", "failed", "error", "infra_error", "blocked", "not_run"]
    passing = {"e_open"}  # its verdict opens gates: its items never join the set

    def context_for(plan: str) -> Any:
        return types.SimpleNamespace(
            plan=types.SimpleNamespace(has_experiment=lambda exp_id: exp_id != "e_gone"),
            results=types.SimpleNamespace(
                verdict=lambda exp_id: types.SimpleNamespace(passed=exp_id in passing)
            ),
        )

    for seed in range(40):
        records: dict[str, dict[str, Any]] = {}
        for i in range(30):
            exp_id = ["e_open", "e_shut", "e_gone"][(i * 7 + seed) % 3]
            row: dict[str, Any] = {
                "status": statuses[(i * 5 + seed * 3) % len(statuses)],
                "kind": "sub",
                "experiment": exp_id,
            }
            if (i + seed) % 4:
                row["plan"] = "/p/plan.yaml"
            records[f"p::{exp_id}::s{i}"] = row
        before = [f"p::e_shut::s{i}" for i in range(0, 40, 3)] + ["p::other::x"]
        cache = _Cache(
            {
                "mlexp/lastfailed": {"real": list(before), "stub": ["p::stub::y"]},
                "cache/lastfailed": {"p::e_open::s1": True, "elsewhere::t": True},
            }
        )
        state = types.SimpleNamespace(
            config=types.SimpleNamespace(cache=cache),
            stub=False,
            records=records,
            context_for=context_for,
        )
        opening = {(row.get("plan"), row["experiment"]) for row in records.values() if row.get("plan")}
        opening = {key for key in opening if key[1] in passing}
        reporting._update_lastfailed(state, True)  # type: ignore[arg-type]
        expected = reference_lf_sets(records, before, opening)
        assert cache.data[reporting.CACHE_LF]["real"] == expected
        every = set(expected) | {"p::stub::y"} | set(records)
        lastfailed = {k: True for k in ("p::e_open::s1", "elsewhere::t") if k not in every}
        lastfailed.update(dict.fromkeys(expected, True))
        assert cache.data["cache/lastfailed"] == lastfailed


def reference_all_blocked(records: Mapping[str, Mapping[str, Any]]) -> bool:
    subs = [r for r in records.values() if r["kind"] == "sub"]
    return bool(subs) and all(r["status"] == "blocked" for r in subs)


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [("assessment", "passed")],
        [("sub", "blocked")],
        [("sub", "blocked"), ("assessment", "blocked"), ("sub", "blocked")],
        [("sub", "blocked"), ("sub", "passed")],
        [("assessment", "failed"), ("sub", "blocked")],
        [("sub", "failed")],
    ],
)
def test_all_blocked_is_decided_as_before(rows: list[tuple[str, str]]) -> None:
    records = {
        f"p::e::{i}": {"kind": kind, "status": status, "reason": "held", "experiment": "e"}
        for i, (kind, status) in enumerate(rows)
    }
    state = types.SimpleNamespace(records=records, skipped=[], notes_end=[])
    session = types.SimpleNamespace(exitstatus=0)
    reporting._fail_if_all_blocked(state, session)  # type: ignore[arg-type]
    assert bool(state.notes_end) == reference_all_blocked(records)
    assert session.exitstatus == (pytest.ExitCode.TESTS_FAILED if reference_all_blocked(records) else 0)
