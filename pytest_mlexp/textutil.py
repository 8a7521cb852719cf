"""Text for people, one way each: "did you mean" suggestions and numbers.

Pure and standard library only: plan parsing, criteria, handler lookup, result checking, the
terminal summary, the live line and FINDINGS.md all use these, so a typo is caught (or not) by
the same rule everywhere and a number reads the same in every report.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import Any, AnyStr, cast

__all__ = ["closest", "closest_metric", "distance", "fmt_number", "lazy_re", "listed", "suggestions"]


class _LazyPattern:
    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str | bytes, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[Any] | None = None

    def __getattr__(self, name: str) -> Any:  # match, search, sub...: compiled on the first
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return getattr(self._compiled, name)


def lazy_re(pattern: AnyStr, flags: int = 0) -> re.Pattern[AnyStr]:
    """A module-level regex compiled on first use (``pattern`` and ``flags`` read without it).

    Why: ``re.compile`` costs 20-400 us a pattern, and every plan run imports the modules that
    hold patterns most runs never use (a range criterion, a gate's phase, a surrogate escape);
    a pattern a run uses in any case stays a plain ``re.compile``.  A lazy pattern is not an
    ``re.Pattern`` instance, and each call goes through one Python-level ``__getattr__``: for
    patterns off the per-item path only.
    """
    return cast("re.Pattern[AnyStr]", _LazyPattern(pattern, flags))


def distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (Levenshtein plus adjacent transpositions: ``widht``
    is one edit from ``width``)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def suggestions(word: str, candidates: Iterable[str], *, limit: int = 1, short: int = 6) -> list[str]:
    """The candidates ``word`` is probably a typo of, closest first (ties keep candidate order).

    A candidate qualifies within distance 2 of ``word``, or 1 when it is shorter than ``short``
    characters (a short word is two edits from too many others); case is ignored.  An exact
    match is not a suggestion.  At most ``limit`` are returned.
    """
    lowered = word.lower()
    scored: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for index, cand in enumerate(candidates):
        if cand in seen or cand == word:
            continue
        seen.add(cand)
        allowed = 2 if len(cand) >= short else 1
        if abs(len(cand) - len(word)) > allowed:
            continue
        d = distance(lowered, cand.lower())
        if d <= allowed:
            scored.append((d, index, cand))
    scored.sort()
    return [cand for _, _, cand in scored[: max(0, limit)]]


def closest(word: str, candidates: Iterable[str], *, short: int = 6) -> str | None:
    """The one candidate ``word`` is most probably a typo of (see :func:`suggestions`), or None."""
    found = suggestions(word, candidates, limit=1, short=short)
    return found[0] if found else None


def closest_metric(word: str, candidates: Iterable[str]) -> str | None:
    """The reported metric ``word`` was probably meant to be: :func:`closest`, else the one
    candidate that abbreviates to it or that it abbreviates (``acc`` -> ``accuracy``,
    ``val_acc`` -> ``val_accuracy``): metric names are shortened far more often than mistyped.
    """
    names = list(dict.fromkeys(candidates))
    found = closest(word, names)
    if found is not None:
        return found
    lowered = word.lower()
    if len(lowered) < 3:
        return None

    def abbreviates(short: str, long: str) -> bool:
        # each "_"-separated piece of the short name starts the matching piece of the long one
        a, b = short.split("_"), long.split("_")
        return len(a) == len(b) and all(x and y.startswith(x) for x, y in zip(a, b, strict=True))

    matches = [
        n for n in names if n != word and (abbreviates(lowered, n.lower()) or abbreviates(n.lower(), lowered))
    ]
    return matches[0] if len(matches) == 1 else None


# Floats already formatted: a value is shown several times (FINDINGS.md's tables and sentences,
# the overview, the terminal's summary), and many results share values.  Keyed by float only
# (equal floats format alike: -0.0 and 0.0 are both "0"), cleared when full.
_FLOAT_TEXT: dict[float, str] = {}


def fmt_number(value: Any) -> str:
    """A value for people: numbers to 4 significant digits (``0.912``, ``1.23e-05``, ``12346``),
    ``NaN``/``inf``, booleans as ``true``/``false``, None as a dash, anything else as ``str``."""
    if value.__class__ is float:
        text = _FLOAT_TEXT.get(value)
        if text is None:
            if len(_FLOAT_TEXT) >= 4096:
                _FLOAT_TEXT.clear()
            text = _FLOAT_TEXT[value] = _fmt_number(value)
        return text
    return _fmt_number(value)


def _fmt_number(value: Any) -> str:
    if value is None:
        return "—"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, (float, numbers.Real)):
        return str(value)
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    text = f"{x:.4g}"
    if "e+" in text and abs(x) < 1e15:  # 12345.6 reads better as 12346 than as 1.235e+04
        text = f"{x:.0f}"
    return text


def listed(names: Sequence[str], limit: int = 10) -> str:
    """``a, b, c``; past ``limit`` names, the first ones and how many more (a closing line that
    names every point of a large sweep would fill the terminal)."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
