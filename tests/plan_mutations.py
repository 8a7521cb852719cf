"""Hypothesis strategies that mutate valid plans into hostile ones, for the plan-loader fuzz tests.

A plan is mutated twice over: first as data (values swapped for huge and special numbers, keys
renamed to near misses, unicode or long ids, anchors, aliases, merge keys, alias bombs, deep
nesting), then as text once emitted as block YAML (tabs, BOM, CRLF, space-like indentation,
control characters, YAML punctuation, truncation, lines dropped or doubled, extra documents), and
finally as bytes (invalid UTF-8).  The emitter is ours because the values that matter most cannot
be Python values: a 5,000-digit integer cannot even be printed, so it travels as ``Raw`` text.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

PLANS_DIR = Path(__file__).parent / "unit" / "plans"


@dataclass(frozen=True)
class Raw:
    """YAML text written as it is: a number Python cannot print, a tag, a flow collection."""

    text: str


@dataclass(frozen=True)
class Alias:
    name: str


@dataclass
class Anchored:
    value: Any
    name: str


# --- the emitter ------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")
_RESERVED = frozenset({"true", "false", "null", "True", "False", "Null", "TRUE", "FALSE", "NULL"})


def _scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Alias):
        return f"*{value.name}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value not in _RESERVED:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value))


def _key(key: Any) -> str:
    return _scalar(key) if not isinstance(key, str) or _PLAIN.fullmatch(key) else json.dumps(key)


def _emit(value: Any, indent: int, out: list[str], head: str) -> None:
    """Append ``head`` followed by ``value`` (``head`` is ``key:`` or ``-`` at ``indent``)."""
    pad = " " * indent
    anchor = ""
    if isinstance(value, Anchored):
        anchor = f" &{value.name}"
        value = value.value
    if isinstance(value, dict) and value:
        out.append(f"{pad}{head}{anchor}")
        for key, item in value.items():
            _emit(item, indent + 2, out, f"{_key(key)}:")
    elif isinstance(value, list) and value:
        out.append(f"{pad}{head}{anchor}")
        for item in value:
            _emit(item, indent + 2, out, "-")
    elif isinstance(value, dict | list):
        out.append(f"{pad}{head}{anchor} {'{}' if isinstance(value, dict) else '[]'}")
    else:
        out.append(f"{pad}{head}{anchor} {_scalar(value)}")


def emit(plan: dict[Any, Any]) -> str:
    out: list[str] = []
    for key, value in plan.items():
        _emit(value, 0, out, f"{_key(key)}:")
    return "\n".join(out) + "\n"


# --- valid plans to start from ----------------------------------------------------------------

E2E_PLAN: dict[str, Any] = {
    "project": {"name": "Fuzz", "hypothesis": "plans never crash the plugin"},
    "defaults": {"params": {"value": 0.9, "opt": {"lr": 0.01, "layers": [8, 8]}}, "seeds": 2},
    "experiments": {
        "e-one": {
            "name": "E1",
            "phase": 1,
            "sub_experiments": {
                "s_a": {"success_criteria": {"accuracy": ">= 0.8"}},
                "s_b": {"sweep": {"width": [1, 2]}, "resources": {"timeout": 60}, "marks": ["slow"]},
            },
            "success_criteria": {"accuracy": {"target": 0.95, "acceptable": 0.85, "failure": 0.5}},
        },
        "e-two": {
            "phase": 2,
            "dependencies": ["e-one"],
            "sub_experiments": ["s_c"],
            "success_criteria": {"accuracy": "in [0.5, 1.0]"},
        },
    },
    "gates": {"g1": {"experiments": ["e-one"], "unlocks": {"phase": 2}}},
}

# handlers for E2E_PLAN's sub-experiments, found by convention (experiments/<experiment>.py);
# they read params the mutations may have removed or changed without failing over it
E2E_HANDLERS = {
    "e_one": "def s_a(runner):\n    value = runner.params.get('value')\n"
    "    return {'metrics': {'accuracy': value if isinstance(value, float) else 0.9}}\n\n"
    "def s_b(runner):\n    return {'metrics': {'accuracy': 0.9}}\n",
    "e_two": "def s_c(runner):\n    return {'metrics': {'accuracy': 0.75}}\n",
}


def base_plans() -> list[dict[str, Any]]:
    plans = [E2E_PLAN]
    for path in sorted(PLANS_DIR.glob("*.yaml")):
        plans.append(yaml.safe_load(path.read_text(encoding="utf-8")))
    return plans


# --- data mutations ---------------------------------------------------------------------------

LONG_ID = "s" * 256
SPECIAL_VALUES: list[Any] = [
    Raw("9" * 5000),
    Raw("0x" + "f" * 4000),
    Raw("7" * 4300),
    Raw(".inf"),
    Raw("-.inf"),
    Raw(".nan"),
    Raw("1e999"),
    Raw("-1e999"),
    Raw("1e-400"),
    Raw("1000000000000"),
    Raw("10001"),
    Raw("18446744073709551616"),
    Raw("-1"),
    Raw("0"),
    Raw("-0.0"),
    Raw("0.5"),
    Raw("2026-02-10"),
    Raw("yes"),
    Raw("~"),
    Raw("0x1F"),
    Raw("1_000"),
    Raw("+.inf"),
    Raw("!!python/name:os.getcwd ''"),
    Raw("!!python/object/apply:os.getcwd []"),
    Raw("!!binary aGVsbG8="),
    Raw("!!set {a: null}"),
    Raw("!!timestamp 2020-01-01"),
    Raw("!!int 12"),
    Raw("!!int 1.5"),
    Raw("!!float 1" + "0" * 400),
    Raw("!!str 5"),
    Raw("!custom x"),
    Raw("{a: 1, a: 2}"),
    Raw("[" * 150 + "]" * 150),
    Raw('"\\ud800"'),
    Raw('"\\x00"'),
    Raw('"\\U0010FFFF"'),
    Raw("'it''s'"),
    "== 1e999",
    ">= .inf",
    "in (1, 2)",
    "in [2, 1]",
    "> nan",
    ">=",
    "",
    " ",
    "x" * 300,
    "s" * 101,
    LONG_ID,
    "e\u200b1",
    "\u202eevil",
    "caf\u00e9",
    "\u65e5\u672c",
    "\U0001f600",
    "e 1",
    "e1\n",
    None,
    True,
    False,
    0.0,
    -1,
    2**64,
    {},
    [],
    [1, 1],
    {"target": 1.0},
    {"max": Raw(".nan")},
]
KEY_POOL: list[Any] = [
    Raw("1"),
    Raw("true"),
    Raw("null"),
    Raw("<<"),
    Raw("? [a]"),
    "e\u00e9",
    "\u65e5\u672c",
    LONG_ID,
    "s" * 101,
    "",
    "a b",
    "-x",
    "sucess_criteria",
    "parmas",
    "sweeps",
    "seed",
    "dependancies",
    "unlock",
]


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value inside ``data``, Anchored wrappers seen through."""
    out: list[tuple[Any, Any]] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, Anchored):
            node = node.value
        if isinstance(node, dict):
            for key in list(node):
                out.append((node, key))
                stack.append(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                out.append((node, index))
                stack.append(node[index])
    return out


def _dicts(data: Any) -> list[dict[Any, Any]]:
    found = [c for c, _ in _slots(data) if isinstance(c, dict)]
    return found or [data]


Mutation = Callable[[st.DrawFn, dict[Any, Any]], None]


def set_value(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    container, key = draw(st.sampled_from(_slots(plan)))
    # a copy: the pool's mappings and lists must not carry one case's mutations into the next
    container[key] = copy.deepcopy(
        draw(
            st.one_of(
                st.sampled_from(SPECIAL_VALUES),
                st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
                st.integers(-(2**70), 2**70),
                st.floats(),
            )
        )
    )


def rename_key(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    container = draw(st.sampled_from(_dicts(plan)))
    if not container:
        return
    old = draw(st.sampled_from(list(container)))
    siblings = [k for k in container if isinstance(k, str)]
    new = draw(
        st.one_of(
            st.sampled_from(KEY_POOL),
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8),
            # a duplicate key: the same text as a sibling, as a different dict key
            st.sampled_from(siblings).map(lambda k: Raw(json.dumps(k))) if siblings else st.nothing(),
        )
    )
    items = [(new if k == old else k, v) for k, v in container.items()]
    container.clear()
    container.update(items)


def delete(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    container, key = draw(st.sampled_from(_slots(plan)))
    del container[key]


def anchor_and_alias(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    """An anchor on one value and an alias of it in another place: before it (unknown), after it
    (shared), or inside it (a self-reference)."""
    slots = _slots(plan)
    container, key = draw(st.sampled_from(slots))
    name = f"x{len(slots)}"
    container[key] = Anchored(container[key], name)
    target, tkey = draw(st.sampled_from(_slots(plan)))
    if target is container and tkey == key:
        return
    if draw(st.booleans()) and isinstance(target, dict):
        target[Raw("<<")] = Alias(name)  # a merge key
    else:
        target[tkey] = Alias(name)


def alias_bomb(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    levels = draw(st.integers(1, 9))
    bomb: dict[Any, Any] = {"a0": Anchored(["lol"] * 9, "a0")}
    for i in range(1, levels + 1):
        bomb[f"a{i}"] = Anchored([Alias(f"a{i - 1}")] * 9, f"a{i}")
    items = list(bomb.items()) + list(plan.items())
    plan.clear()
    plan.update(items)
    container, key = draw(st.sampled_from(_slots({k: v for k, v in plan.items() if k not in bomb})))
    container[key] = Alias(f"a{levels}")


def deep(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    container, key = draw(st.sampled_from(_slots(plan)))
    value: Any = 1
    for _ in range(draw(st.integers(50, 130))):
        value = {"d": value} if draw(st.booleans()) else [value]
    container[key] = value


def reshape(draw: st.DrawFn, plan: dict[Any, Any]) -> None:
    container, key = draw(st.sampled_from(_slots(plan)))
    old = container[key]
    container[key] = draw(
        st.sampled_from([[old], {"k": old}, "text", [], {}, list(range(draw(st.integers(2, 20))))])
    )


DATA_MUTATIONS: list[Mutation] = [
    set_value,
    set_value,
    rename_key,
    delete,
    anchor_and_alias,
    alias_bomb,
    deep,
    reshape,
]


# --- text mutations ---------------------------------------------------------------------------

INSERTS = [
    "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ufffe", "\uffff", "\ufeff",
    "\u00a0", "\u3000", "\t", ":", "- ", "{", "}", "[", "]", "&", "*", "!", "%", "@", "`", "|",
    ">", "'", '"', "#", "\\", "\n", " ", "? ", ",",
]  # fmt: skip


def _line_indices(text: str) -> list[int]:
    return [m.start() for m in re.finditer(r"^", text, re.MULTILINE)]


def crlf(draw: st.DrawFn, text: str) -> str:
    return text.replace("\n", "\r\n")


def bom(draw: st.DrawFn, text: str) -> str:
    at = draw(st.sampled_from([0, draw(st.integers(0, len(text)))]))
    return text[:at] + "\ufeff" + text[at:]


def indent_with(draw: st.DrawFn, text: str) -> str:
    """A leading space of some line becomes a tab or a space-like character YAML reads as text."""
    lines = text.split("\n")
    indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
    if not indented:
        return text
    i = draw(st.sampled_from(indented))
    char = draw(st.sampled_from(["\t", "\u00a0", "\u2007", "\u3000"]))
    lines[i] = char + lines[i][1:]
    return "\n".join(lines)


def insert(draw: st.DrawFn, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(INSERTS)) + text[at:]


def truncate(draw: st.DrawFn, text: str) -> str:
    return text[: draw(st.integers(0, len(text)))]


def drop_or_double_line(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    if draw(st.booleans()):
        del lines[i]
    else:
        lines.insert(i, lines[i])
    return "\n".join(lines)


def documents(draw: st.DrawFn, text: str) -> str:
    return draw(
        st.sampled_from(
            [
                "%YAML 1.1\n---\n" + text,
                "%TAG ! tag:example.com,2000:\n---\n" + text,
                text + "---\nexperiments: {}\n",
                text + "...\n",
                "--- |\n  " + text.replace("\n", "\n  "),
            ]
        )
    )


TEXT_MUTATIONS = [crlf, bom, indent_with, insert, insert, truncate, drop_or_double_line, documents]

BYTES_INSERTS = [b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\xe2\x80", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf"]


@st.composite
def plan_texts(draw: st.DrawFn, bases: list[dict[str, Any]], *, data_max: int = 4, text_max: int = 2) -> str:
    """A valid plan, mutated ``0..data_max`` times as data and ``0..text_max`` times as text."""
    plan = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, data_max))):
        if _slots(plan):
            draw(st.sampled_from(DATA_MUTATIONS))(draw, plan)
    text = emit(plan)
    for _ in range(draw(st.integers(0, text_max))):
        text = draw(st.sampled_from(TEXT_MUTATIONS))(draw, text)
    return text


@st.composite
def plan_bytes(draw: st.DrawFn, bases: list[dict[str, Any]]) -> bytes:
    """A mutated plan as the bytes of a file, sometimes not UTF-8 at all."""
    data = draw(plan_texts(bases)).encode("utf-8")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(BYTES_INSERTS)) + data[at:]
    return data
