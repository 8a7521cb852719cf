"""The handler return contract and metric normalisation (SPEC section 4), with real numpy and torch."""

from __future__ import annotations

import ast
import enum
import fractions
import math
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pytest_mlexp.normalize import ResultError, normalize_result, normalize_value


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True == 1.0 would hide a bool that became a float)."""
    if isinstance(b, float) and math.isnan(b):
        return type(a) is float and math.isnan(a)
    return type(a) is type(b) and a == b


class Color(enum.IntEnum):
    RED = 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, 0.5),
        (3, 3),
        (True, True),
        (False, False),
        ("resnet18", "resnet18"),
        (None, None),
        (float("nan"), float("nan")),
        (float("inf"), float("inf")),
        (-float("inf"), -float("inf")),
        (np.float32(0.25), 0.25),
        (np.float64(0.5), 0.5),
        (np.float16(0.5), 0.5),
        (np.int64(7), 7),
        (np.uint8(7), 7),
        (np.bool_(True), True),
        (np.bool_(False), False),
        (np.float64("nan"), float("nan")),
        (np.array(0.5), 0.5),
        (np.array([0.5]), 0.5),
        (np.array([[2]]), 2),
        (np.array(True), True),
        (np.array([1.5], dtype=np.float32), 1.5),
        (np.str_("text"), "text"),
        (torch.tensor(0.5), 0.5),
        (torch.tensor([0.5]), 0.5),
        (torch.tensor([[3]]), 3),
        (torch.tensor(True), True),
        (torch.tensor(0.5, dtype=torch.bfloat16), 0.5),
        (torch.tensor(float("nan")), float("nan")),
        (Color.RED, 3),
        (fractions.Fraction(1, 4), 0.25),
    ],
    ids=repr,
)
def test_values_normalise_to_plain_python(value: Any, expected: Any) -> None:
    assert same(normalize_value("m", value), expected)


def test_tensor_with_grad_and_a_parameter() -> None:
    w = torch.tensor([2.0], requires_grad=True)
    loss = (w * 3).sum()
    assert loss.requires_grad
    assert same(normalize_value("loss", loss), 6.0)
    p = torch.nn.Parameter(torch.tensor(1.5))
    assert same(normalize_value("p", p), 1.5)


def test_float_subclass_and_module_types_are_plain() -> None:
    class MyFloat(float):
        pass

    assert same(normalize_value("m", MyFloat(1.5)), 1.5)


@pytest.mark.parametrize(
    ("value", "shape_text"),
    [
        (np.zeros((3, 4)), "an array of shape (3, 4)"),
        (np.zeros(2), "an array of shape (2,)"),
        (torch.zeros(3, 4), "a tensor of shape (3, 4)"),
        (torch.zeros(2, requires_grad=True), "a tensor of shape (2,)"),
    ],
)
def test_larger_arrays_say_save_an_artifact(value: Any, shape_text: str) -> None:
    with pytest.raises(ResultError) as info:
        normalize_value("x", value)
    msg = str(info.value)
    assert f"metric 'x' is {shape_text}" in msg
    assert "runner.results.save_artifact(...)" in msg and "report a scalar" in msg


@pytest.mark.parametrize("value", [np.zeros(0), torch.zeros(0)])
def test_empty_arrays(value: Any) -> None:
    with pytest.raises(ResultError, match="empty"):
        normalize_value("x", value)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({"a": 1}, "metrics cannot nest; flatten them into names such as 'x/<key>'"),
        ([0.1, 0.2], "is a list ([0.1, 0.2]): report one number per metric"),
        ((1, 2), "is a tuple"),
        (object(), "a metric must be a number, a bool, a string or None"),
        (b"bytes", "is a bytes"),
        (complex(1, 2), "is a complex"),
        (np.complex64(1 + 2j), "complex"),
        (torch.Size([3]), "(torch.Size([3]))"),
        (torch.float32, "torch.dtype"),
    ],
    # By type: a repr such as object()'s holds a memory address, which differs between xdist
    # workers, and xdist aborts when its workers collect different test ids.
    ids=["dict", "list", "tuple", "object", "bytes", "complex", "np.complex64", "torch.Size", "torch.dtype"],
)
def test_other_values_are_errors(value: Any, needle: str) -> None:
    with pytest.raises(ResultError) as info:
        normalize_value("x", value)
    assert needle in str(info.value)


@pytest.mark.parametrize("module", ["normalize", "handlers", "secrets", "hints"])
def test_modules_import_only_the_standard_library(module: str) -> None:
    """The plugin is imported by every pytest run: numpy/torch must never be imported by it."""
    import importlib

    path = Path(importlib.import_module(f"pytest_mlexp.{module}").__file__ or "")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top == "pytest_mlexp", name


# --- normalize_result -------------------------------------------------------------------------


def test_full_result() -> None:
    out = normalize_result(
        {
            "finding": "MLP reaches 97.1%",
            "metrics": {
                "acc": np.float32(0.971),
                "loss": torch.tensor(0.1),
                "ok": np.bool_(True),
                "note": None,
            },
            "artifacts": ["artifacts/e/x.png", Path("artifacts/e/y.png")],
        },
        "e_p2_1",
    )
    assert out["finding"] == "MLP reaches 97.1%"
    assert out["artifacts"] == ["artifacts/e/x.png", "artifacts/e/y.png"]
    assert same(out["metrics"]["ok"], True) and out["metrics"]["note"] is None
    assert type(out["metrics"]["acc"]) is float and type(out["metrics"]["loss"]) is float
    assert list(out) == ["metrics", "finding", "artifacts"]


def test_minimal_result_and_any_mapping() -> None:
    assert normalize_result({"metrics": {}}) == {"metrics": {}, "finding": None, "artifacts": []}
    assert normalize_result(OrderedDict(metrics={"a": 1})) == {
        "metrics": {"a": 1},
        "finding": None,
        "artifacts": [],
    }
    assert normalize_result({"metrics": {"a": 1}, "finding": None, "artifacts": None})["artifacts"] == []


def test_plain_floats_pass_through_untouched() -> None:
    metrics = {f"m{i}": float(i) for i in range(100)}
    assert normalize_result({"metrics": metrics})["metrics"] == metrics


CONTRACT_ERRORS: list[tuple[Any, list[str]]] = [
    (None, ["handler e_p2_1 returned None", "{'metrics': {", "Did you forget `return`?"]),
    ((0.9, "x"), ["returned a tuple ((0.9, 'x'))", "must return a dict like"]),
    (0.97, ["returned a bare value (0.97)", "{'metrics': {'accuracy': value}}"]),
    (torch.tensor(0.5), ["returned a bare value (tensor(0.5000))"]),
    ("done", ["returned str ('done')"]),
    ({"accuracy": 0.9}, ["has no 'metrics' key: did you mean {'metrics': {'accuracy': 0.9}}?"]),
    ({"metric": {"a": 1}}, ["has 'metric' where 'metrics' is expected"]),
    ({"finding": "x"}, ["has no 'metrics' ({'finding': 'x'})"]),
    ({"metrics": [0.9]}, ["returned 'metrics' as a list ([0.9])", "must be a mapping"]),
    ({"metrics": None}, ["returned 'metrics' as a NoneType"]),
    (
        {"metrics": {}, "findings": "x", "model": 1},
        ["unknown key(s) 'findings' (did you mean 'finding'?) (", "known keys", "kept under 'extra'"],
    ),
    ({"metrics": {1: 0.5}}, ["metric named 1: metric names must be non-empty strings"]),
    ({"metrics": {"": 0.5}}, ["metric named ''"]),
    ({"metrics": {"cm": np.zeros((3, 3))}}, ["invalid metric: metric 'cm' is an array of shape (3, 3)"]),
    ({"metrics": {"hist": list(range(65))}}, ["invalid metric: metric 'hist' is a list of 65 values"]),
    ({"metrics": {"hist": [1, "two"]}}, ["metric 'hist' is a list holding 'two'", "numbers only"]),
    ({"metrics": {"hist": [[1, 2]]}}, ["metric 'hist' is a list holding [1, 2]"]),
    ({"metrics": {"a": {"b": 1}, "a.b": 2}}, ["the metric 'a.b' twice"]),
    ({"metrics": {"probe": {3: 0.5}}}, ["metric named probe.3: metric names must be non-empty strings"]),
    ({"metrics": {}, "finding": 3}, ["returned 'finding' as a int (3): it must be a string"]),
    (
        {"metrics": {}, "artifacts": "a.png"},
        ["'artifacts' as a str ('a.png')", "must be a list of paths"],
    ),
    ({"metrics": {}, "artifacts": [1]}, ["an artifact that is a int (1)"]),
]


@pytest.mark.parametrize(
    ("returned", "needles"),
    CONTRACT_ERRORS,
    ids=[" ".join(repr(returned).split())[:40].rstrip() for returned, _ in CONTRACT_ERRORS],  # one line each
)
def test_each_contract_error_has_its_own_message(returned: Any, needles: list[str]) -> None:
    with pytest.raises(ResultError) as info:
        normalize_result(returned, "e_p2_1")
    for needle in needles:
        assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_message_shows_a_truncated_repr() -> None:
    huge = {"metrics": 1, "findings": "x" * 5000}
    with pytest.raises(ResultError) as info:
        normalize_result(huge)
    assert len(str(info.value)) < 700
    assert "..." in str(info.value)
    assert info.value.returned_repr.startswith("{'metrics': 1")
    assert len(info.value.returned_repr) <= 300


# --- what the seed runner's handlers return (SPEC section 10) ---------------------------------


def test_nested_metrics_flatten_to_dotted_names() -> None:
    out = normalize_result({"metrics": {"probe": {"r2": np.float64(0.5), "mae": {"cm": 7}}, "loss": 0.1}})
    assert out["metrics"] == {"probe.r2": 0.5, "probe.mae.cm": 7, "loss": 0.1}
    assert type(out["metrics"]["probe.r2"]) is float


def test_short_lists_of_numbers_are_kept_as_information() -> None:
    series = [np.float32(0.31), 0.12, 1]
    out = normalize_result({"metrics": {"per_class_map": series, "steps": (1, 2), "none": []}})
    assert out["metrics"]["per_class_map"] == pytest.approx([0.31, 0.12, 1])
    assert type(out["metrics"]["per_class_map"][0]) is float
    assert out["metrics"]["steps"] == [1, 2] and out["metrics"]["none"] == []
    assert len(normalize_result({"metrics": {"x": [0.0] * 64}})["metrics"]["x"]) == 64


def test_other_top_level_keys_are_kept_under_extra_as_plain_data() -> None:
    returned = {
        "metrics": {"acc": 0.9},
        "config": {"lr": np.float32(0.5), "layers": (1, 2), "path": Path("a/b")},
        "notes": "two runs",
        "table": np.arange(3),
    }
    out = normalize_result(returned)
    assert out["extra"] == {
        "config": {"lr": 0.5, "layers": [1, 2], "path": "a/b"},
        "notes": "two runs",
        "table": [0, 1, 2],
    }
    assert list(out) == ["metrics", "finding", "artifacts", "extra"]
    assert "extra" not in normalize_result({"metrics": {}})


def test_broken_repr_does_not_hide_the_error() -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(ResultError, match="repr\\(\\) failed"):
        normalize_result(Weird())
