"""The plain-scalar resolver's shortcut (``yamlload._core``: a scalar whose first character no
core-schema pattern can match is text) gives what the full pattern chain gives."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlexp import yamlload


def _chain(value: str) -> Any:
    """The resolver without the shortcut: every pattern, in order."""
    y = yamlload
    if y._NULL_RE.match(value):
        return None
    if y._BOOL_RE.match(value):
        return value[0] in "tT"
    if y._INT_RE.match(value):
        return int(value)
    if y._OCT_RE.match(value) or y._HEX_RE.match(value):
        return int(value[2:], 8 if value[1] == "o" else 16)
    if y._FLOAT_RE.match(value):
        return float(value)
    if y._INF_RE.match(value):
        return -math.inf if value[0] == "-" else math.inf
    if y._NAN_RE.match(value):
        return math.nan
    return value


def _same(value: str) -> None:
    got, want = yamlload._core(value, 1), _chain(value)
    if isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), value
    else:
        assert got == want and type(got) is type(want), value


EDGES = [
    "",
    "\n",
    "~",
    "null",
    "Null",
    "NULL",
    "null\n",
    "nULL",
    "true",
    "False",
    "TRUE\n",
    "yes",
    "0",
    "-1",
    "+3",
    "007",
    "0o17",
    "0x1F",
    "0b1",
    "1.5",
    ".5",
    "-.5e3",
    "1e3",
    "1_000",
    ".inf",
    "-.Inf",
    "+.INF",
    ".nan",
    ".NaN",
    "nan",
    "inf",
    "e_1",
    "s0_1",
    "experiments.bench:trivial",
    "Tiered",
    "fast",
    "no",
    "N",
    "t",
    "f",
    " 1",
    "1 ",
    "é",
    "\u00a0",
]


def test_edge_scalars_resolve_as_the_full_chain_does() -> None:
    for value in EDGES:
        _same(value)
    assert yamlload._core("s0_1", 1) == "s0_1" and yamlload._core("0x10", 1) == 16


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("~nNultrTRUEfFaAsLS0123456789+-.eoxXbB_ \nIiy")), max_size=8))
def test_any_scalar_resolves_as_the_full_chain_does(value: str) -> None:
    _same(value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_any_text_resolves_as_the_full_chain_does(value: str) -> None:
    _same(value)
