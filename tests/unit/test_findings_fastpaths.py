"""FINDINGS.md's fast paths give the general path's text, byte for byte.

``_quiet_sub`` (a quiet sub-experiment's section) and ``_provenance_lines`` (the provenance
table's rows) answer the common case without the general path's calls; each is compared here
with the general path on entries that are quiet and on entries that are not in every way the
sections notice.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from typing import Any

import pytest

from pytest_mlexp.criteria import parse_criterion
from pytest_mlexp.findings import experiment as E
from pytest_mlexp.findings import nextsteps as N
from pytest_mlexp.findings.common import _sentence_fn, _table_lines
from pytest_mlexp.model import Accepted, Judgement, SubState, Verdict
from tests import factories

ACC = parse_criterion("acc", ">= 0.9", loc=None, experiment_level=False)
STAMP = "2026-12-02T15:16:36Z"


def plain_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": "passed",
        "finding": None,
        "metrics": {"x": 1.0},
        "criteria": {},
        "params": {},
        "artifacts": [],
        "executor": "local",
        "duration_s": 0.0,
        "provenance": {
            "git_commit": None,
            "git_dirty": None,
            "handler_sha256": "953d3204c2f8969104dc88424dd2acb0c0da2f770f817262777d55eb689939ce",
            "python": "3.11.7",
        },
        "started_at": STAMP,
        "finished_at": STAMP,
    }
    for key, value in changes.items():
        if value is KeyError:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def acc_judgement(passed: bool, **kw: Any) -> Judgement:
    base: dict[str, Any] = dict(
        metric="acc",
        value=0.95 if passed else 0.5,
        level="pass" if passed else "fail",
        passed=passed,
        borderline=False,
        rule=">= 0.9",
        message="",
    )
    base.update(kw)
    return Judgement(**base)


def state_of(entry: Any, status: str = "passed", **kw: Any) -> SubState:
    sub_fields = kw.pop("sub", {})
    sub = factories.sub("s_1", "e", **sub_fields)
    return SubState(sub=sub, status=status, judgements=kw.pop("judgements", ()), values_entry=entry, **kw)  # type: ignore[arg-type]


SAY = _sentence_fn(None)


def general(state: SubState, entry: Any, stale: Any, charts: Any) -> str:
    return "\n".join(E._render_sub(state, entry, stale, SAY, "experiments/e", None, charts))


def fast(state: SubState, entry: Any, stale: Any, charts: Any) -> str | None:
    return E._quiet_sub(state, entry, stale, SAY, "experiments/e", charts)


# Entries the fast path answers (each must give the general path's text).
QUIET_ENTRIES = [
    plain_entry(),
    plain_entry(status="failed"),
    plain_entry(duration_s=1.25),
    plain_entry(duration_s=812.4),
    plain_entry(duration_s=-0.0),
    plain_entry(duration_s=float("nan")),
    plain_entry(duration_s=3),
    plain_entry(duration_s=True),
    plain_entry(duration_s=None),
    plain_entry(duration_s="slow"),
    plain_entry(duration_s=KeyError),
    plain_entry(executor=None),
    plain_entry(executor=""),
    plain_entry(finished_at=None),
    plain_entry(executor=None, duration_s=None, finished_at=None),
    plain_entry(metrics={}),
    plain_entry(metrics=None),
    plain_entry(metrics=KeyError),
    plain_entry(metrics={"acc": 0.9123456, "loss": 1.2345e-5, "big": 123456.7, "n": 3}),
    plain_entry(metrics={"t": True, "f": False, "none": None, "nan": float("nan"), "inf": float("inf")}),
    plain_entry(metrics={"neg": -0.0, "zero": 0.0, "text": "plain words"}),
    plain_entry(finding=""),
    plain_entry(artifacts=None),
    plain_entry(artifacts=KeyError),
    plain_entry(error={"kind": "handler", "type": "E", "message": "m"}),
    plain_entry(blocked_reason="never asked for a passed entry"),
    plain_entry(provenance=KeyError),
    {"metrics": {"x": 2.0}},
]

# Entries the fast path leaves to the general path (anything it would have to say otherwise).
LOUD_ENTRIES = [
    None,
    {},
    ["not", "a", "mapping"],
    plain_entry(finding="found a thing"),
    plain_entry(artifacts=["artifacts/s_1/plot.png", "artifacts/s_1/model.pt"]),
    plain_entry(metrics={"a|b": 1.0}),
    plain_entry(metrics={"multi\nline": 1.0}),
    plain_entry(metrics={"s": "multi\nline"}),
    plain_entry(metrics={"s": "x | y"}),
    plain_entry(metrics={"s": "carriage\rreturn"}),
    plain_entry(metrics={1: 2.0}),
    plain_entry(metrics=[1, 2]),
    plain_entry(stats={"x": {"mean": 1.0, "std": 0.1, "n": 3, "ci95": [0.9, 1.1]}}, per_seed={0: {"x": 1.0}}),
    plain_entry(history=[{"finished_at": "2026-11-01T00:00:00Z", "metrics": {"x": 0.5}}]),
    plain_entry(issues=["an issue"], blockers=["a blocker"]),
    plain_entry(reused={"from": STAMP, "seeds": [0]}),
    plain_entry(outdated="the data changed"),
    plain_entry(artifacts_missing=["artifacts/gone.png"]),
    plain_entry(tracking={"tracker": "wandb", "url": "https://wandb.ai/x"}),
    plain_entry(wandb={"url": "https://wandb.ai/team/proj/runs/abc", "run_path": "team/proj/abc"}),
    plain_entry(imported={"executed_by": "someone", "started_at": STAMP}),
    plain_entry(points={"h_16": {"status": "passed", "metrics": {"x": 1.0}}}, selected="h_16"),
]

STATES: list[dict[str, Any]] = [
    {},
    {"status": "failed"},
    {"status": "error", "detail": "it broke"},
    {"status": "infra_error"},
    {"status": "blocked", "detail": "waits for s_0"},
    {"status": "not_run"},
    {"status": "error", "wiring": True, "detail": "did not report acc"},
    {"judgements": (acc_judgement(True),), "sub": {"success_criteria": (ACC,)}},
    {"status": "failed", "judgements": (acc_judgement(False),), "sub": {"success_criteria": (ACC,)}},
    {
        "judgements": (acc_judgement(True, borderline=True, source="s_0"),),
        "sub": {"success_criteria": (ACC,)},
    },
    {"sub": {"meta": {"name": "A named one"}}},
    {"sub": {"meta": {"description": "its words"}}},
    {"sub": {"pivot": "pv"}},
    {"sub": {"accepted": Accepted("good enough", "me", "2026-12-01")}},
    {"status": "failed", "sub": {"accepted": Accepted("good enough", "me", "2026-12-01")}},
    {"stale": "its params changed"},
]

STALES: list[dict[str, Any]] = [{}, {"s_1": plain_entry(status="passed")}, {"other": {}}]
CHARTS: list[dict[str, str]] = [{}, {"s_1-curves.png": "experiments/e/plots/s_1-curves.png"}, {"x.png": "x"}]


def _status_and_fields(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fields = dict(fields)
    return fields.pop("status", "passed"), fields


@pytest.mark.parametrize("entry", QUIET_ENTRIES + LOUD_ENTRIES, ids=repr)
def test_a_quiet_section_is_the_general_paths_text(entry: Any) -> None:
    answered = 0
    for fields, stale, charts in itertools.product(STATES, STALES, CHARTS):
        status, kw = _status_and_fields(fields)
        state = state_of(entry, status, **kw)
        text = fast(state, entry, stale, charts)
        if text is not None:
            answered += 1
            assert text == general(state, entry, stale, charts), (fields, stale, charts)
    # Not vacuous: a quiet entry of a plain passed state is answered, a loud one never is.
    assert answered > 0 if entry in QUIET_ENTRIES else answered == 0


def test_the_common_section_takes_the_fast_path() -> None:
    entry = plain_entry()
    text = fast(state_of(entry), entry, {}, {})
    assert text == (
        "#### `s_1`: passed\n\n"
        f"Ran: executor `local`, 0.0 s, finished {STAMP}.\n\n"
        "| Metric | Value | Seeds |\n|---|---|---|\n| `x` | 1 | — |\n"
    )


def test_every_key_the_sections_read_is_the_fast_paths_or_loud() -> None:
    """A key the general sections read from an entry is one the fast path reads itself, one
    read only for a status it leaves alone, or one of _LOUD_KEYS (an entry holding it takes
    the general path): a key added to the sections and not here fails this test."""
    handled = {"finding", "metrics", "artifacts", "executor", "duration_s", "finished_at"}
    status_only = {"error", "blocked_reason"}  # read only for an error or a blocked state
    read_when_loud = {"provenance"}  # read by _attempt_lines, only for an entry with history
    read: set[str] = set()
    for fn in (E._render_sub, E._entry_body, E._run_notes, E._notes, E._attempt_lines):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        for node in ast.walk(tree):
            key: Any = None
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "entry"
                and node.args
            ):
                key = node.args[0]
            elif isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Name) and c.id == "entry" for c in node.comparators
            ):
                key = node.left
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and node.value.id == "entry"
            ):
                key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                read.add(key.value)
            elif isinstance(key, ast.Name) and isinstance(getattr(E, key.id, None), str):
                read.add(getattr(E, key.id))  # a module constant (OUTDATED); a loop's name is not one
    assert read, "the sections' code was not read"
    assert read - handled - status_only - read_when_loud <= E._LOUD_KEYS


# --- the provenance table ------------------------------------------------------------------


PROVENANCES: list[Any] = [
    None,
    "not a mapping",
    {},
    {"git_commit": None, "git_dirty": None, "python": "3.11.7", "handler_sha256": "ab" * 32},
    {"git_commit": "0123456789abcdef", "git_dirty": False, "python": "3.11.7", "handler_sha256": "f" * 64},
    {"git_commit": "0123456789abcdef", "git_dirty": True, "python": "3.12.1", "handler_sha256": None},
    {"git_commit": "", "git_dirty": 1, "python": "3.11.7", "handler_sha256": ""},
    {"git_commit": None, "git_dirty": "yes", "python": 3.11, "handler_sha256": 12345678901234567},
    {"git_commit": ["a", "list"], "git_dirty": None, "python": "3.11.7"},
    {"git_commit": "abc|def", "git_dirty": None, "python": "3.11\n7"},
    {"git_commit": None, "git_dirty": None, "python": None},
    {"git_commit": None, "git_dirty": None},
    {
        "git_commit": "c",
        "git_dirty": None,
        "python": "3.11.7",
        "packages": {"torch": "2.5.1", "numpy": "2.1"},
    },
    {"git_commit": "c", "git_dirty": None, "python": "3.11.7", "packages": {}},
    {"git_commit": "c", "git_dirty": None, "python": "3.11.7", "packages": "not a mapping"},
]


def provenance_entries(ids: list[str]) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for i, sub_id in enumerate(ids):
        prov = PROVENANCES[i % len(PROVENANCES)]
        if i % 7 == 3:  # a sweep's summary: the selected point's provenance
            entries[sub_id] = {"selected": "p", "points": {"p": {"provenance": prov}}}
        elif i % 11 == 5:
            entries[sub_id] = "not a mapping"
        elif i % 13 == 6:
            continue  # never ran
        else:
            entries[sub_id] = {"status": "passed", "provenance": prov}
    return entries


@pytest.mark.parametrize(
    "ids",
    [
        [f"s_{i}" for i in range(len(PROVENANCES) * 3)],
        ["a|b", *(f"s_{i}" for i in range(20))],
        ["plain", "two\nlines", "x"],
    ],
)
def test_provenance_lines_are_the_general_rows(ids: list[str]) -> None:
    exp = factories.experiment("e", [factories.sub(i, "e") for i in ids])
    entries = provenance_entries(ids)
    assert N._provenance_lines(exp, entries) == _table_lines(N._provenance_rows(exp, entries))


def test_every_provenance_alone_gives_the_general_row() -> None:
    for prov in PROVENANCES:
        exp = factories.experiment("e", [factories.sub("s_1", "e"), factories.sub("s_2", "e")])
        entries = {"s_1": {"provenance": prov}, "s_2": {"provenance": prov}}
        assert N._provenance_lines(exp, entries) == _table_lines(N._provenance_rows(exp, entries)), prov


# --- a whole block ----------------------------------------------------------------------------


def test_a_whole_block_is_the_general_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """render_experiment over quiet and loud entries alike, with its fast paths and without."""
    entries_list = QUIET_ENTRIES + [e for e in LOUD_ENTRIES if e is not None]
    subs = []
    states = []
    entries: dict[str, Any] = {}
    for i, (entry, fields) in enumerate(zip(entries_list * 2, itertools.cycle(STATES))):
        status, kw = _status_and_fields(fields)
        sub_fields = dict(kw.pop("sub", {}))
        sub = factories.sub(f"s_{i}", "e", **sub_fields)
        subs.append(sub)
        entries[sub.id] = entry
        states.append(
            SubState(sub=sub, status=status, judgements=kw.pop("judgements", ()), values_entry=entry, **kw)  # type: ignore[arg-type]
        )
    exp = factories.experiment("e", subs)
    verdict = Verdict(
        experiment_id="e",
        status="failed",
        criteria=(),
        success_criteria_met=False,
        confidence="medium",
        recommendation="investigate",
        passed=False,
        problems=("s_5 errored",),
        review=(),
        subs=tuple(states),
    )
    doc = {"sub_experiments": entries, "stale": {"s_3": plain_entry(), "s_4": plain_entry()}}
    charts = {"s_1-curves.png": "experiments/e/plots/s_1-curves.png"}
    with_fast = E.render_experiment(exp, doc, verdict, plots=charts)
    monkeypatch.setattr(E, "_quiet_sub", lambda *a: None)
    monkeypatch.setattr(
        E, "_provenance_lines", lambda exp, entries: _table_lines(N._provenance_rows(exp, entries))
    )
    assert E.render_experiment(exp, doc, verdict, plots=charts) == with_fast


@pytest.mark.parametrize("pair", [(True, 1), (1, True), (False, 0), (0.0, False), (1.0, True)])
def test_equal_provenance_keys_of_other_kinds_keep_their_own_text(pair: tuple[Any, Any]) -> None:
    """``1 == True`` (and hash alike): rows whose fields are equal but shown differently are
    not made from one shared cached row."""
    exp = factories.experiment("e", [factories.sub("s_1", "e"), factories.sub("s_2", "e")])
    prov = {"git_commit": "c", "python": "3.11.7", "handler_sha256": "h"}
    entries = {
        sub_id: {"provenance": dict(prov, git_dirty=dirty)}
        for sub_id, dirty in zip(("s_1", "s_2"), pair, strict=True)
    }
    assert N._provenance_lines(exp, entries) == _table_lines(N._provenance_rows(exp, entries))
