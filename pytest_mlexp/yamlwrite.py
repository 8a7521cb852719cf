"""YAML out, for results.yaml: a small, fast emitter for the plain data results hold.

PyYAML's emitter costs ~250 µs per entry even with libyaml (its representer is pure Python),
which would dominate a 10,000-point sweep; :func:`dump_yaml` writes block-style YAML for plain
data (dicts, lists, tuples, strings, numbers, booleans, None), readable and loadable by any YAML
1.1/1.2 safe loader (checked against PyYAML's loader by the tests), and falls back to PyYAML for
anything else (a hand-edited file may hold dates or sets).  Its counterpart for plans, with line
marks, is ``yamlload.py``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .safetext import clean_obj, clean_text
from .textutil import lazy_re

__all__ = ["dump_yaml", "yaml_error"]


class _NotRaised(Exception):
    """Stands for PyYAML's errors while PyYAML is not imported: nothing can raise them then."""


def yaml_error() -> type[Exception]:
    """PyYAML's base error, for ``except`` clauses (evaluated only when an exception arrives),
    without importing PyYAML: a plan run whose plan comes from the cache (``plancache.py``) and
    whose results files are new never needs it (its import weighs ~9 ms, and its modules on
    every later garbage collection)."""
    module = sys.modules.get("yaml")
    error = getattr(module, "YAMLError", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else _NotRaised


_QUOTE_JSON = json.JSONEncoder(ensure_ascii=False)


class _Unsupported(Exception):
    """A value the fast emitter does not handle; ``dump_yaml`` then falls back to PyYAML."""


# Conservative plain scalars: start with a letter or ``_`` and contain no ``:`` or ``#``, so no
# YAML indicator or comment can be formed; every other string is double-quoted.
_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_./+@()%,'=\- ]*")
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# Characters YAML does not allow raw (or treats as line breaks) even inside double quotes.
# Lazy: compiling the surrogate range costs ~1 ms (4.3 M instructions), and of these characters
# ASCII text can only hold DEL, which ``_quote`` looks for without the regex.
_NONPRINT_RE = lazy_re("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
# Characters that rule out a literal block scalar (``|``): controls other than tab and newline.
_NO_LITERAL_RE = lazy_re("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_MAX_KEY = 1000  # YAML implicit keys are limited to 1024 characters


def _escape_nonprint(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        # libyaml refuses "\udce9" (a lone surrogate is not a character): written as text, the
        # one way safetext shows it everywhere ("\ufffd" and the byte, "\\xe9" once unquoted).
        return clean_text(char).replace("\\", "\\\\")
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _quote(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid YAML double-quoted escapes.
    quoted = _QUOTE_JSON.encode(text)
    if (not quoted.isascii() or "\x7f" in quoted) and _NONPRINT_RE.search(quoted):
        quoted = _NONPRINT_RE.sub(_escape_nonprint, quoted)
    return quoted


# Keys and short values (statuses, metric names, executors) repeat in every entry.
_STRING_CACHE: dict[str, str] = {}


def _render_string(text: str) -> str:
    """``text`` as a YAML scalar: plain when that is safe (see ``_PLAIN_RE``), else quoted."""
    if text.isascii():
        # Ids and digests (a sub-experiment's id, a fingerprint: new in every entry) answered
        # without the regex, exactly as it would answer them.
        if text.isidentifier():
            return text if text.lower() not in _RESERVED else f'"{text}"'
        if text.isalnum():  # a digit first: quoted, and JSON's quoting of it adds only the quotes
            return f'"{text}"'
    if _PLAIN_RE.fullmatch(text) and text[-1] != " " and text.lower() not in _RESERVED:
        return text
    return _quote(text)


def _string(text: str) -> str:
    cached = _STRING_CACHE.get(text)
    if cached is not None:
        return cached
    out = _render_string(text)
    if len(text) <= 64:
        if len(_STRING_CACHE) > 50_000:
            _STRING_CACHE.clear()
        _STRING_CACHE[text] = out
    return out


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "." not in text and "e" in text:
        # YAML 1.1 loaders read "1e-05" as a string; "1.0e-05" is a float (PyYAML does the same).
        text = text.replace("e", ".0e", 1)
    return text


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is float:
        return _float(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float):
        return _float(value)
    raise _Unsupported(kind.__name__)


def _key(key: Any) -> str:
    text = _scalar(key)
    if len(text) > _MAX_KEY:
        raise _Unsupported("long key")
    return text


def _literal_ok(text: str) -> bool:
    return "\n" in text and not _NO_LITERAL_RE.search(text)


def _emit_literal(pad: str, head: str, text: str, out: list[str]) -> None:
    # An explicit indentation indicator ("2") makes leading spaces and blank first lines safe;
    # "+" keeps every trailing newline, "-" strips the one the block itself ends with.
    if text.endswith("\n"):
        out.append(f"{head} |2+\n")
        lines = text.split("\n")[:-1]
    else:
        out.append(f"{head} |2-\n")
        lines = text.split("\n")
    inner = pad + "  "
    for line in lines:
        out.append(f"{inner}{line}\n" if line else "\n")


# Lines of the common shapes, cached: a key's head at its indent (``"    status:"``) and a short
# string value's tail (``" passed\n"``).  Keys and short values (statuses, metric names,
# executors, digests, timestamps) repeat in every entry; a cached line part costs one lookup.
# Per indent: its padding and its heads (one lookup per map: an entry holds several).
_LEVELS: dict[int, tuple[str, dict[str, str]]] = {}
_TAILS: dict[str, str] = {}
_CACHE_MAX = 50_000


def _head(heads: dict[str, str], pad: str, key: Any) -> str:
    if key.__class__ is str and len(key) <= 64:
        # An id (each sub-experiment's is new, once per entry): plain unless reserved, as
        # _render_string answers it, without its calls and the string cache.
        if key.isascii() and key.isidentifier() and key.lower() not in _RESERVED:
            head = f"{pad}{key}:"
        else:
            head = f"{pad}{_key(key)}:"
        if len(heads) > _CACHE_MAX:
            heads.clear()
        heads[key] = head
        return head
    return f"{pad}{_key(key)}:"


def _tail(value: str) -> str:
    tail = f" {_string(value)}\n"
    if len(value) <= 64:
        if len(_TAILS) > _CACHE_MAX:
            _TAILS.clear()
        _TAILS[value] = tail
    return tail


def _emit_map(data: Mapping[Any, Any], indent: int, out: list[str]) -> None:
    # (Counted on CPython 3.11, per call or per key; most maps of an entry hold one to three
    # keys: binding ``out.append`` to a local costs more than it saves, as a call of the bound
    # method is slower than ``out.append``'s specialised call; ``type()`` is a specialised call
    # where ``.__class__`` is a generic attribute lookup; the kinds are tried in the order
    # entries hold them most: text, maps, nulls, floats, lists.)
    try:
        pad, heads = _LEVELS[indent]
    except KeyError:
        pad, heads = _LEVELS[indent] = (" " * indent, {})
    tails = _TAILS
    for key, value in data.items():
        # Only str keys are cached, and only a str (or a str subclass, which _key writes as the
        # str it equals) equals a str: a hit is this key's head, whatever the key's type.
        head = heads.get(key)
        if head is None:
            head = _head(heads, pad, key)
        kind = type(value)
        # The common shapes first, each written exactly as the general branches below would.
        if kind is str:
            tail = tails.get(value)
            if tail is not None:
                out.append(head)  # (two pieces, no concatenation: "".join copies them once)
                out.append(tail)
            elif "\n" not in value:
                out.append(head + _tail(value))
            elif _literal_ok(value):
                _emit_literal(pad, head, value, out)
            else:
                out.append(f"{head} {_string(value)}\n")
        elif kind is dict:
            if value:
                out.append(head)
                out.append("\n")
                _emit_map(value, indent + 2, out)
            else:
                out.append(head)
                out.append(" {}\n")
        elif value is None:
            out.append(head)
            out.append(" null\n")
        elif kind is float:
            text = repr(value)
            # nan, inf and exponents ("1e-05") need _float's care; "0.5" is written as it is.
            out.append(f"{head} {_float(value) if 'n' in text or 'e' in text else text}\n")
        elif kind is list:
            if value:
                out.append(head)
                out.append("\n")
                # Block sequences sit at their key's indent, as PyYAML writes them.
                _emit_seq(value, indent, out)
            else:
                out.append(head)
                out.append(" []\n")
        elif kind is int:
            out.append(f"{head} {value}\n")
        else:
            _emit_other(value, pad, head, indent, out)


def _emit_other(value: Any, pad: str, head: str, indent: int, out: list[str]) -> None:
    """A map's value of a kind the fast branches of ``_emit_map`` leave alone (booleans,
    tuples, subclasses of the plain types)."""
    if isinstance(value, dict):
        if value:
            out.append(head + "\n")
            _emit_map(value, indent + 2, out)
        else:
            out.append(head + " {}\n")
    elif isinstance(value, (list, tuple)):  # a tuple: as JSON (and the journal) has it
        if value:
            out.append(head + "\n")
            _emit_seq(value, indent, out)
        else:
            out.append(head + " []\n")
    elif isinstance(value, str) and "\n" in value and _literal_ok(value):
        _emit_literal(pad, head, value, out)
    else:
        out.append(f"{head} {_scalar(value)}\n")


def _emit_seq(data: Sequence[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for value in data:
        kind = type(value)
        if kind is int:  # seeds: the common items (written as _scalar writes an int)
            out.append(f"{pad}- {value}\n")
        elif kind is str:  # names
            out.append(f"{pad}- {_string(value)}\n")
        elif isinstance(value, (dict, list, tuple)) and value:
            inner: list[str] = []
            if isinstance(value, dict):
                _emit_map(value, indent + 2, inner)
            else:
                _emit_seq(value, indent + 2, inner)
            # The first line goes on the dash line ("- key: value"); the rest keep their indent.
            # (Its first piece starts with the inner indent: a head, or a whole line.)
            out.append(f"{pad}- {inner[0][indent + 2 :]}")
            out.extend(inner[1:])
        elif isinstance(value, dict):
            out.append(f"{pad}- {{}}\n")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}- []\n")
        else:
            out.append(f"{pad}- {_scalar(value)}\n")


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Block-style YAML for plain data, readable and loadable by any YAML 1.1/1.2 safe loader."""
    if not data:
        return "{}\n"
    out: list[str] = []
    try:
        _emit_map(data, 0, out)
    except _Unsupported:
        # Values we did not produce ourselves (a hand-edited file may hold dates or sets).
        import yaml

        text: str = yaml.dump(
            clean_obj(dict(data)),
            Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
            sort_keys=False,
            allow_unicode=True,
            width=1 << 30,
        )
        return text
    return "".join(out)
