"""What every criterion form shares: the parse error, reading numbers, and showing them.

The bottom of the criteria package: it imports nothing else from it.  Suggestions and numbers
for people follow the package's one rule each (``textutil``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pytest_mlexp.textutil import closest, fmt_number, lazy_re

if TYPE_CHECKING:
    from pytest_mlexp.model import Loc

Op = Literal["<", "<=", ">", ">=", "==", "!="]
Outcome = Literal["pass", "fail", "inconclusive"]

#: A number as researchers write one in a rule: ``0.6``, ``.5``, ``1e-3``, ``-2.5E+2``, ``1_000``.
NUM = r"[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
NUM_RE = lazy_re(rf"^\s*{NUM}\s*$")
#: The comparison operators, with the unicode ones people paste from papers.
OPS = r"<=|>=|==|!=|<|>|≤|≥|≠"
UNICODE_OPS: dict[str, Op] = {"≤": "<=", "≥": ">=", "≠": "!="}
EXAMPLES = '{target: 0.7, acceptable: 0.6, failure: 0.5}, ">= 0.9", "< 0.35", "in [0.2, 0.4]" or {min: 0.9}'


class CriterionError(ValueError):
    """A criterion that does not parse; ``plan.py`` turns it into a PlanError at ``loc``."""

    def __init__(self, message: str, fix: str = "", loc: Loc | None = None) -> None:
        self.message = message
        self.fix = fix
        self.loc = loc
        text = f"{loc}: {message}" if loc is not None else message
        super().__init__(f"{text}\n  fix: {fix}" if fix else text)


def near_miss(key: str, known: Sequence[str], *, short: int = 5) -> str | None:
    """The known word ``key`` is probably a typo of, if any (the package's one did-you-mean
    rule, ``textutil.closest``): within 2 edits, 1 for known words shorter than ``short`` (so
    ``mean`` is not taken for ``min``)."""
    return closest(key, known, short=short)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def read_number(text: str) -> float:
    """A float from text that matched ``NUM`` (``1_000`` included)."""
    return float(text.replace("_", ""))


def finite(metric: str, what: str, value: float, written: Any) -> float:
    """``value`` when finite; else the error ``target: .inf`` gets.  ``"== 1e999"`` is refused the
    same way: 1e999 is beyond a float's range, so it would silently read as inf."""
    if not math.isfinite(value):
        raise CriterionError(
            f"criterion {metric!r}: {what} must be finite, got {written!r}",
            f"use a finite {what} (a float ends near 1.8e308; beyond it a number reads as inf)",
        )
    return value


def number(metric: str, key: str, value: Any) -> float:
    """A finite float from a plan value; numeric strings are accepted (YAML 1.1 writes 1e-3 as one)."""
    if is_number(value):
        try:
            out = float(value)
        except OverflowError:  # a huge int
            out = math.inf
    elif isinstance(value, str) and NUM_RE.match(value):
        out = read_number(value)
    else:
        raise CriterionError(
            f"criterion {metric!r}: {key} must be a number, got {value!r}",
            f"write {key}: 0.5 (a plain number)",
        )
    return finite(metric, key, out, value)


# --- showing numbers ----------------------------------------------------------------------------


#: A measured number for people (the package's one number formatter): up to 4 significant
#: digits (``0.912``, ``1.23e-05``, ``12346``).
fmt = fmt_number


def exact(x: float | None) -> str:
    """A threshold as the researcher wrote it: shortest round-tripping form (``0.35``, ``1e-05``)."""
    if x is None:
        return "?"
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def shown(value: float, threshold: float | None) -> str:
    """``fmt`` with more digits where 4 would make a value look equal to the threshold it missed."""
    text = fmt(value)
    if threshold is None or value == threshold or (text != exact(threshold) and text != fmt(threshold)):
        return text
    for digits in range(5, 18):
        text = f"{value:.{digits}g}"
        if float(text) != threshold:
            return text
    return repr(value)


def pct(confidence: float) -> str:
    return f"{confidence * 100:.10g}%"


#: How an aggregate over seeds is named in messages (``all`` shows the worst seed).
HOW = {"mean": "mean", "median": "median", "min": "min", "max": "max", "all": "worst"}

_ACRONYMS = {
    w.lower(): w
    for w in (
        *("LPIPS", "IoU", "mIoU", "MAE", "MSE", "RMSE", "MAPE", "AUC", "ROC", "PR", "F1", "R2", "PSNR"),
        *("SSIM", "FID", "IS", "BLEU", "ROUGE", "WER", "CER", "NLL", "KL", "ECE", "AP", "mAP", "NDCG"),
        *("MRR", "CLIP", "GPU", "CPU", "FPS", "FLOPs", "TPR", "FPR", "TNR", "FNR", "PPL"),
    )
}


def display_name(metric: str) -> str:
    """``spatial_iou`` -> ``Spatial IoU``; ``lpips`` -> ``LPIPS``; other names stay readable."""
    words = [w for w in re.split(r"[_\s]+", metric) if w]
    if not words:
        return metric
    out = [_ACRONYMS.get(w.lower(), w) if w.islower() or w.isupper() else w for w in words]
    first = out[0]
    if first.islower():
        out[0] = first[0].upper() + first[1:]
    return " ".join(out)
