"""Text and values that can always be written: valid UTF-8, and numbers a file can hold.

A handler's strings come from anywhere: ``os.listdir`` on a latin-1 file name gives
``"caf\\udce9.csv"`` (a *lone surrogate*, Python's stand-in for the byte 0xE9), which UTF-8
cannot encode and libyaml refuses to read back even as an escape.  One rule, used by everything
that writes (results, the journal, FINDINGS.md, JUnit through the entries):

* a lone surrogate ``U+DC80``..``U+DCFF`` (an undecodable byte) becomes ``U+FFFD`` followed by
  the byte as ``\\xe9``: ``"caf\\udce9.csv"`` -> ``"caf�\\xe9.csv"`` (the reader sees that a byte
  was not text, and which one);
* any other lone surrogate becomes ``U+FFFD`` followed by its code as ``\\ud83d``.

The result is plain text: written as is, it reads back equal to itself.

:func:`storable` goes further for values that must reach a file whatever they are (a
third-party executor's outcome may hold an object, or an int of 5,000 digits that neither JSON
nor ``str()`` will write).  Standard library only.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from .textutil import lazy_re

__all__ = ["clean_obj", "clean_text", "finite_or_nan", "has_surrogates", "storable"]

# Lazy: compiling the surrogate range costs ~0.5 ms (2.3 M instructions), and only text that is
# not ASCII is searched (most runs have none).
_SURROGATE_RE = lazy_re("[\ud800-\udfff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for one undecodable byte
        return f"\ufffd\\x{code - 0xDC00:02x}"
    return f"\ufffd\\u{code:04x}"


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a character UTF-8 cannot encode."""
    return not text.isascii() and _SURROGATE_RE.search(text) is not None


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate shown as described in the module docstring."""
    if text.isascii():  # the common case, answered without a regex
        return text
    try:  # text that encodes has no lone surrogate (a findings block: 4x faster than the regex)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub(_shown, text)
    return text


def clean_obj(obj: Any) -> Any:
    """``obj`` with every string in it (mapping keys included) cleaned; containers are copied
    only where something changed, other values are kept as they are."""
    kind = obj.__class__
    if kind is str:
        return clean_text(obj)
    if isinstance(obj, str):
        return clean_text(str(obj))
    if isinstance(obj, Mapping):
        return {(clean_text(k) if isinstance(k, str) else k): clean_obj(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_obj(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clean_obj(v) for v in obj)
    return obj


# ints with more digits than this cannot be turned into text (Python's guard against slow
# conversions, sys.int_info.str_digits_check_threshold); below it they are written as they are.
_MAX_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300


def _int_text_ok(value: int) -> bool:
    # bit_length is exact and cheap; 3.33 bits per decimal digit, with a margin.
    return value.bit_length() < 3.3 * _MAX_DIGITS


def storable(obj: Any, _depth: int = 0) -> Any:
    """``obj`` as plain data JSON and YAML can always write: dicts with str keys, lists, str,
    finite or non-finite floats, ints that fit in text, bools, None.  Anything else becomes a
    short text that says what it was (the entry is kept; only that value is shown as text)."""
    if obj is None or obj is True or obj is False:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj) if _int_text_ok(obj) else f"<int of {obj.bit_length()} bits: too large to write>"
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return clean_text(str(obj))
    if _depth > 50:
        return "<nested too deep to write>"
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            key = k if isinstance(k, (str, int)) and not isinstance(k, bool) else _text_of(k)
            if isinstance(key, str):
                key = clean_text(key)
            elif not _int_text_ok(key):
                key = _text_of(key)
            out[key] = storable(v, _depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [storable(v, _depth + 1) for v in obj]
    return _text_of(obj)


def _text_of(obj: Any) -> str:
    if isinstance(obj, int) and not _int_text_ok(obj):
        return f"<int of {obj.bit_length()} bits: too large to write>"
    try:
        text = str(obj)
    except Exception as exc:  # a broken __str__ must not cost the entry
        text = f"<{type(obj).__name__}: str() failed: {type(exc).__name__}>"
    return clean_text(text[:1000])


def finite_or_nan(value: int) -> int | float:
    """An int metric as it can be judged: itself, or NaN ("not a number") when no float can
    hold it (``10**400``): criteria, averages and statistics all work on floats."""
    if value.bit_length() < 1024:  # every int below 2**1023 converts (the common case, no try)
        return value
    try:
        float(value)
    except OverflowError:
        return math.nan
    return value
