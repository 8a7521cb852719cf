"""Text and values that can always be written (safetext.py), and the writers that use it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlexp.findings import update_findings_file
from pytest_mlexp.normalize import normalize_result, normalize_value
from pytest_mlexp.records import SeedOutcome, error_info
from pytest_mlexp.safetext import clean_obj, clean_text, finite_or_nan, has_surrogates, storable
from pytest_mlexp.store import ResultsStore, load_yaml
from pytest_mlexp.yamlwrite import dump_yaml
from tests.unit.test_store import Warnings, entry, make_plan, make_sub, results_path

LATIN1 = os.fsdecode(b"caf\xe9.csv")


class TestCleanText:
    def test_undecodable_byte_is_shown_with_its_value(self) -> None:
        assert LATIN1 == "caf\udce9.csv"
        assert clean_text(LATIN1) == "caf\ufffd\\xe9.csv"

    def test_other_lone_surrogates_show_their_code(self) -> None:
        assert clean_text("a\ud83db") == "a\ufffd\\ud83db"
        assert clean_text("\udc00") == "\ufffd\\udc00"

    def test_valid_text_is_returned_as_is(self) -> None:
        text = "Über café — 日本 🙂"
        assert clean_text(text) is text
        assert clean_text("ascii") == "ascii"

    def test_cleaned_text_is_utf8_and_stable(self) -> None:
        once = clean_text(LATIN1 + "\ud800")
        once.encode("utf-8")
        assert clean_text(once) == once
        assert has_surrogates(LATIN1) and not has_surrogates(once)

    def test_clean_obj_reaches_keys_and_nested_values(self) -> None:
        got = clean_obj({LATIN1: [LATIN1, (1, LATIN1)], "n": 1.5, 3: None})
        shown = clean_text(LATIN1)
        assert got == {shown: [shown, (1, shown)], "n": 1.5, 3: None}


class TestStorable:
    def test_plain_data_is_kept(self) -> None:
        data = {"a": [1, 2.5, None, True], "b": {"c": "d"}, "nan": math.inf}
        assert storable(data) == data

    def test_what_cannot_be_written_becomes_text_that_says_so(self) -> None:
        got = storable({"big": 10**5000, "obj": object(), "path": Path("/x"), ("t",): 1})
        assert got["big"].startswith("<int of ") and "too large" in got["big"]
        assert got["obj"].startswith("<object object")
        assert got["path"] == "/x"
        assert got["('t',)"] == 1
        json.dumps(got)

    def test_a_broken_str_does_not_raise(self) -> None:
        class Broken:
            def __str__(self) -> str:
                raise RuntimeError("no")

        assert "str() failed" in storable({"x": Broken()})["x"]

    def test_int_too_large_for_a_float_is_not_a_number(self) -> None:
        assert math.isnan(finite_or_nan(10**400))
        assert math.isnan(finite_or_nan(-(10**400)))
        assert finite_or_nan(10**300) == 10**300
        assert finite_or_nan(7) == 7


class TestHandlerValues:
    def test_normalize_cleans_findings_string_metrics_and_huge_ints(self) -> None:
        got = normalize_result({"metrics": {"f": LATIN1, "big": 10**400, "ok": 3}, "finding": LATIN1})
        assert got["finding"] == clean_text(LATIN1)
        assert got["metrics"]["f"] == clean_text(LATIN1)
        assert math.isnan(got["metrics"]["big"])
        assert got["metrics"]["ok"] == 3
        assert math.isnan(normalize_value("x", 10**400))
        assert normalize_value("x", LATIN1) == clean_text(LATIN1)

    def test_error_info_cleans_message_and_traceback(self) -> None:
        try:
            raise ValueError("cannot open " + LATIN1)
        except ValueError as exc:
            info = error_info("handler", exc)
        assert info["message"] == "cannot open " + clean_text(LATIN1)
        assert clean_text(LATIN1) in info["traceback"]
        info["traceback"].encode("utf-8")
        failure = SeedOutcome.failure(0, "lost_worker", "gone " + LATIN1, infra=True, traceback=LATIN1)
        assert failure.error is not None
        assert failure.error["message"] == "gone " + clean_text(LATIN1)
        assert failure.error["traceback"] == clean_text(LATIN1)


surrogate_text = st.text(alphabet=st.characters(codec=None, categories=("Cs", "Ll", "Lu", "Nd", "Zs", "Po")))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(surrogate_text, st.lists(surrogate_text, max_size=3) | surrogate_text, max_size=5))
def test_dump_yaml_with_lone_surrogates_loads_with_libyaml(data: dict[str, Any]) -> None:
    text = dump_yaml(data)
    text.encode("utf-8")
    assert load_yaml(text) == clean_obj(data)


class TestStore:
    def test_an_entry_with_surrogates_is_stored_cleaned_and_others_survive(self, tmp_path: Path) -> None:
        plan = make_plan(tmp_path, {"exp": [make_sub("s1"), make_sub("s2")]})
        store = ResultsStore(plan, stub=False, warn=Warnings())
        store.record("exp", "s1", entry(acc=0.5))
        bad = entry()
        bad["finding"] = "read " + LATIN1
        bad["error"] = {"message": LATIN1, "traceback": "x\n" + LATIN1 + "\n"}
        store.record("exp", "s2", bad)  # type: ignore[arg-type]
        assert store.doc("exp")["sub_experiments"]["s2"]["finding"] == "read " + clean_text(LATIN1)
        journal = next(results_path(plan).parent.glob(".results.*.journal")).read_bytes()
        assert b"\\udce9" not in journal
        store.flush()
        data = results_path(plan).read_bytes().decode("utf-8")
        doc = load_yaml(data)
        assert set(doc["sub_experiments"]) == {"s1", "s2"}
        assert doc["sub_experiments"]["s2"]["error"]["traceback"] == "x\n" + clean_text(LATIN1) + "\n"

    def test_a_value_that_cannot_be_written_costs_only_itself(self, tmp_path: Path) -> None:
        plan = make_plan(tmp_path, {"exp": [make_sub("s1"), make_sub("s2")]})
        store = ResultsStore(plan, stub=False, warn=Warnings())
        store.record("exp", "s1", entry(acc=0.5))
        # a third-party executor's outcome may carry anything into an entry
        store.record("exp", "s2", entry(acc=10**5000, other=0.25))
        store.set_summary("exp", "s2", {"note": 10**5000, "text": LATIN1})
        store.set_experiment("exp", {"name": LATIN1})
        store.flush()
        doc = load_yaml(results_path(plan).read_bytes().decode("utf-8"))
        assert doc["sub_experiments"]["s1"]["metrics"] == {"acc": 0.5}
        s2 = doc["sub_experiments"]["s2"]
        assert "too large" in s2["metrics"]["acc"]
        assert s2["metrics"]["other"] == 0.25
        assert "too large" in s2["note"] and s2["text"] == clean_text(LATIN1)
        assert doc["name"] == clean_text(LATIN1)

    def test_a_journal_line_with_surrogate_escapes_replays_into_a_readable_file(self, tmp_path: Path) -> None:
        """A journal left by an earlier version (JSON escapes of a lone surrogate) still replays."""
        plan = make_plan(tmp_path, {"exp": [make_sub("s1")]})
        folder = results_path(plan).parent
        folder.mkdir(parents=True)
        line = json.dumps(
            {"op": "r", "sub": "s1", "point": None, "entry": {"status": "passed", "finding": LATIN1}}
        )
        assert "\\udce9" in line
        (folder / ".results.1-dead.journal").write_text(line + "\n")
        store = ResultsStore(plan, stub=False, warn=Warnings())
        assert store.doc("exp")["sub_experiments"]["s1"]["status"] == "passed"
        assert not results_path(plan).exists()  # read in memory: looking writes nothing
        store.set_experiment("exp", {"status": "partial"})  # the first write folds it in
        store.flush()
        doc = load_yaml(results_path(plan).read_bytes().decode("utf-8"))
        assert doc["sub_experiments"]["s1"]["finding"] == clean_text(LATIN1)

    def test_a_file_with_surrogate_escapes_is_repaired_not_moved_aside(self, tmp_path: Path) -> None:
        plan = make_plan(tmp_path, {"exp": [make_sub("s1"), make_sub("s2")]})
        path = results_path(plan)
        path.parent.mkdir(parents=True)
        path.write_text(
            "schema: 2\nexperiment_id: exp\nsub_experiments:\n  s1:\n    status: passed\n"
            '    finding: "caf\\udce9 and \\\\udce9 kept"\n  s2:\n    status: failed\n'
        )
        warnings = Warnings()
        store = ResultsStore(plan, stub=False, warn=warnings)
        subs = store.doc("exp")["sub_experiments"]
        assert subs["s1"]["finding"] == "caf\ufffd\\xe9 and \\udce9 kept"  # an escaped backslash stays
        assert subs["s2"]["status"] == "failed"
        assert warnings == []
        assert not list(path.parent.glob("*.corrupt-*"))


def test_findings_stay_utf8_on_a_first_write_and_keep_researcher_bytes(tmp_path: Path) -> None:
    path = tmp_path / "FINDINGS.md"
    update_findings_file(path, "block " + LATIN1 + "\n", title="T " + LATIN1)
    text = path.read_bytes().decode("utf-8")
    assert clean_text(LATIN1) in text
    # A researcher's own bytes (not UTF-8: an old latin-1 note) are theirs: kept as they are.
    path.write_bytes(b"# Mine \xe9\n\n" + path.read_bytes().split(b"\n\n", 1)[1])
    update_findings_file(path, "block two " + LATIN1 + "\n", title="T")
    data = path.read_bytes()
    assert data.startswith(b"# Mine \xe9\n\n")
    assert ("block two " + clean_text(LATIN1)).encode("utf-8") in data


@pytest.mark.parametrize("value", [LATIN1, "\ud800", "ok"], ids=["latin1", "high", "ascii"])
def test_cleaned_values_pass_through_the_journal_encoder(value: str) -> None:
    json.dumps(clean_obj({"v": value}), ensure_ascii=False).encode("utf-8")
