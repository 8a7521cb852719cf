"""fastjson.Encoder: json.JSONEncoder's output and errors, with its C encoder built once."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pytest_mlexp import fastjson
from pytest_mlexp.fastjson import Encoder

SETTINGS: list[dict[str, Any]] = [
    {},
    {"sort_keys": True, "default": repr, "separators": (",", ":"), "ensure_ascii": False},
    {"default": str},
    {"skipkeys": True},
]

OBJECTS: list[Any] = [
    {},
    [],
    "plain",
    "é\u2028\ud800",
    {"b": 1, "a": [1, 2.5, -0.0, 1e-05, 10**30], "c": {"d": None, "e": True, "f": False}},
    {"metrics": {"loss": float("nan"), "acc": float("inf"), "neg": float("-inf")}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    ("a", ("tuple", ["inside"])),
    {"ünïcode": "välue", "emoji": "🙂", "ctrl": '\x00\x1f\n\t"'},
    [[[[{"deep": [1]}]]]],
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "default")
def test_same_text_as_json(settings: dict[str, Any]) -> None:
    fast = Encoder(**settings)
    plain = json.JSONEncoder(**settings)
    assert fast._c is not None  # the C path is the one under test here (CPython)
    for obj in OBJECTS:
        try:
            expected: Any = plain.encode(obj)
        except Exception as exc:
            expected = exc
        if isinstance(expected, Exception):
            with pytest.raises(type(expected)):
                fast.encode(obj)
        else:
            assert fast.encode(obj) == expected, obj


def test_nan_refused_when_json_refuses_it() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        Encoder(allow_nan=False).encode({"x": math.nan})


def test_same_errors() -> None:
    enc = Encoder()
    with pytest.raises(TypeError, match="not JSON serializable"):
        enc.encode({"x": object()})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        enc.encode({"loop": loop})
    with pytest.raises(TypeError):
        enc.encode({(1, 2): "a tuple key"})


def test_a_failed_encode_leaves_no_false_cycle() -> None:
    # The C encoder leaves the ids of the containers it was inside in its markers when it
    # raises: the same dict, fixed, must then encode, not read as circular.
    enc = Encoder()
    entry: dict[str, Any] = {"metrics": {"x": object()}}
    with pytest.raises(TypeError):
        enc.encode(entry)
    entry["metrics"]["x"] = 1.0
    assert enc.encode(entry) == '{"metrics": {"x": 1.0}}'
    assert enc.encode(entry) == '{"metrics": {"x": 1.0}}'


def test_reentrant_encode_is_not_a_cycle() -> None:
    # An encode inside another one (a default that encodes, or a second thread) must not share
    # the first one's circular-reference markers: the same container is not a cycle there.
    class Opaque:
        pass

    parent: dict[str, Any] = {"x": Opaque()}
    inside: list[int] = []

    def default(obj: Any) -> Any:
        if inside:
            return "leaf"
        inside.append(1)
        try:
            return enc.encode(parent)
        finally:
            inside.pop()

    enc = Encoder(default=default)
    expected = json.JSONEncoder(default=default).encode(parent)
    assert expected == json.dumps({"x": '{"x": "leaf"}'})
    assert enc.encode(parent) == expected


def test_without_the_c_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(*args: Any) -> Any:
        raise TypeError("make_encoder() takes other arguments now")

    monkeypatch.setattr(fastjson, "_make_encoder", changed)
    enc = Encoder(sort_keys=True)
    assert enc._c is None
    assert enc.encode({"b": 1, "a": [2]}) == '{"a": [2], "b": 1}'
    monkeypatch.setattr(fastjson, "_make_encoder", None)
    assert Encoder().encode({"a": 1}) == '{"a": 1}'
