"""yamlwrite's fast branches (cached key heads and value tails, exact-type checks) write exactly
what its general branches write: results.yaml is byte for byte what it was before them."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlexp import yamlwrite as yw


def general_map(data: Mapping[Any, Any], indent: int, out: list[str]) -> None:
    """The emitter's general path only: every key and value through ``_key`` / ``_scalar``."""
    pad = " " * indent
    for key, value in data.items():
        head = f"{pad}{yw._key(key)}:"
        if isinstance(value, dict):
            if value:
                out.append(head + "\n")
                general_map(value, indent + 2, out)
            else:
                out.append(head + " {}\n")
        elif isinstance(value, (list, tuple)):
            if value:
                out.append(head + "\n")
                general_seq(value, indent, out)
            else:
                out.append(head + " []\n")
        elif isinstance(value, str) and yw._literal_ok(value):
            yw._emit_literal(pad, head, value, out)
        else:
            out.append(f"{head} {yw._scalar(value)}\n")


def general_seq(data: Sequence[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for value in data:
        if isinstance(value, (dict, list, tuple)) and value:
            inner: list[str] = []
            if isinstance(value, dict):
                general_map(value, indent + 2, inner)
            else:
                general_seq(value, indent + 2, inner)
            out.append(f"{pad}- {inner[0][indent + 2 :]}")
            out.extend(inner[1:])
        elif isinstance(value, dict):
            out.append(f"{pad}- {{}}\n")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}- []\n")
        else:
            out.append(f"{pad}- {yw._scalar(value)}\n")


def general_dump(data: Mapping[str, Any]) -> str | None:
    """What the general path writes, or None where it falls back to PyYAML."""
    if not data:
        return "{}\n"
    out: list[str] = []
    try:
        general_map(data, 0, out)
    except yw._Unsupported:
        return None
    return "".join(out)


class MyFloat(float):
    pass


class MyStr(str):
    pass


class MyInt(int):
    pass


ENTRY_KEYS = ["status", "metrics", "criteria", "provenance", "seeds", "x", "acc", "finding", "0"]
texts = (
    st.text(max_size=20)
    | st.text(alphabet="ab :#-\n\t'\"|\x85\u2028é\udce9", max_size=12)
    | st.sampled_from(["passed", "yes", "No", "null", "~", "1e-3", "", " x", "x ", "a" * 70, "b\n" * 3])
    | st.text(min_size=60, max_size=80)
)
floats = st.floats() | st.sampled_from([1e-05, 1e16, -0.0, 1.5e300, 5e-324, math.inf, -math.inf])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**70, max_value=2**80)
    | floats
    | texts
    | floats.map(MyFloat)
    | texts.map(MyStr)
    | st.integers(-5, 5).map(MyInt)
)
keys = st.sampled_from(ENTRY_KEYS) | texts | st.integers(-3, 3) | st.booleans() | st.none()


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=5)
        | st.dictionaries(keys, inner, max_size=3).map(collections.OrderedDict)
    )


documents = st.dictionaries(keys, st.recursive(scalars, containers, max_leaves=30), max_size=6)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_the_fast_branches_write_what_the_general_path_writes(data: dict[Any, Any]) -> None:
    expected = general_dump(data)
    if expected is None:  # a long key: both go to PyYAML
        return
    assert yw.dump_yaml(data) == expected
    assert yw.dump_yaml(data) == expected  # again, from the caches the first call filled


def test_a_results_entry_is_written_as_before() -> None:
    entry = {
        "status": "passed",
        "finding": None,
        "metrics": {"x": 1.0, "loss": 1e-05, "n": 3, "nan": math.nan, "ok": True},
        "criteria": {},
        "params": {"lr": 0.01, "layers": [1, 2], "name": "mlp"},
        "artifacts": [],
        "provenance": {"handler_sha256": "953d3204c2f8969104dc88424dd2acb0c0da2f770f817262777d55eb689939ce"},
        "per_seed": {0: {"x": 1.0}, 1: {"x": 2.0}},
        "history": [{"finished_at": "2026-12-01T00:31:05Z", "metrics": {"x": 0.5}}],
        "error": {"message": "line one\nline two\n", "traceback": ""},
    }
    doc = {"schema": 2, "sub_experiments": {"s0": entry, "s1": dict(entry)}}
    text = yw.dump_yaml(doc)
    assert text == general_dump(doc)
    assert "    metrics:\n      x: 1.0\n      loss: 1.0e-05\n" in text
    assert "      nan: .nan\n      ok: true\n" in text
    loaded = yaml.load(text, Loader=yaml.SafeLoader)
    assert loaded["sub_experiments"]["s1"]["error"]["message"] == "line one\nline two\n"
    assert loaded["sub_experiments"]["s0"]["per_seed"] == {0: {"x": 1.0}, 1: {"x": 2.0}}


def reference_string(text: str) -> str:
    """How a string was written before ids and digests got their shortcut: by the regex."""
    if yw._PLAIN_RE.fullmatch(text) and text[-1] != " " and text.lower() not in yw._RESERVED:
        return text
    return yw._quote(text)


@settings(max_examples=500, deadline=None)
@given(
    texts
    | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
    | st.from_regex(r"[0-9a-f]{1,64}", fullmatch=True)
    | st.sampled_from(["Yes", "NULL", "off", "_", "None", "x1", "1x", "007", "s0_0", "a.b", "a-b", "é1"])
)
def test_ids_and_digests_are_written_as_the_regex_writes_them(text: str) -> None:
    assert yw._render_string(text) == reference_string(text)
