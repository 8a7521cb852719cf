"""Success criteria: parse them from the plan, judge values against them, say it in words.

Pure functions over the frozen model (no pytest, no YAML).  ``judge`` runs once per item and
criterion, so it does the least it can: regexes are compiled once and statistics are computed
only when there are several seeds or a ``confidence`` asks for them.

Decisions the SPEC leaves open (also in the README):

- Tiered: at least one of ``target``/``acceptable`` is required; without ``acceptable`` the target
  is the pass threshold; without ``failure`` a value short of acceptable is a ``miss``.
  ``direction`` also accepts ``maximize``/``max``/``up`` and ``minimize``/``min``/``down``.
- A comparison with extra keys is written ``{rule: ">= 0.9", borderline: 0.01, ...}``;
  ``{min: x}`` / ``{max: x}`` / both work too.
- Unknown keys far from every known key are annotations and are ignored (kept in ``raw``); one
  within edit distance 2 (1 for known keys under 5 letters, so ``mean`` is not taken for ``min``)
  is an error with "did you mean".
- ``confidence`` judges the interval of the *mean*, so it cannot be combined with another
  ``aggregate``.
- ``aggregate: all``: every seed is judged on its own; the value shown (and the level) is the
  worst seed's.
- Borderline: a pass whose margin to the pass threshold is at most the borderline margin
  (for ``in``, to either edge).  Default margin: 10% of |target - acceptable| for tiered (1% of
  |acceptable| when there is no distinct target), 1% of |threshold| otherwise; none for ``==`` /
  ``!=``; an explicit ``borderline: 0`` turns it off.  Under ``confidence`` the margin is measured
  from the interval's worse end.
- ``stub=True`` (``judge_stub``): a wiring check.  The level is judged as usual, but ``passed`` is
  True unless the metric is missing or not a number, and nothing is flagged borderline.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from pytest_mlexp.model import Accepted, Aggregate, Criterion, Direction, Judgement, Level, Loc, Stats
from pytest_mlexp.stats import _interval, _mean_std, seeds_phrase, seeds_to_settle

__all__ = [
    "CriterionError",
    "display_name",
    "fmt",
    "judge",
    "judge_stub",
    "judged_value",
    "parse_criterion",
    "rule_text",
    "sentence",
]

Op = Literal["<", "<=", ">", ">=", "==", "!=", "in"]


class CriterionError(ValueError):
    """A criterion that does not parse; ``plan.py`` turns it into a PlanError at ``loc``."""

    def __init__(self, message: str, fix: str = "", loc: Loc | None = None) -> None:
        self.message = message
        self.fix = fix
        self.loc = loc
        text = f"{loc}: {message}" if loc is not None else message
        super().__init__(f"{text}\n  fix: {fix}" if fix else text)


# --- parsing ----------------------------------------------------------------------------------

_NUM = r"[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_CMP_RE = re.compile(rf"^\s*(<=|>=|==|!=|<|>|≤|≥|≠)\s*({_NUM})\s*$")
_IN_RE = re.compile(rf"^\s*in\s*[\[(]\s*({_NUM})\s*,\s*({_NUM})\s*[\])]\s*$", re.IGNORECASE)
_NUM_RE = re.compile(rf"^\s*{_NUM}\s*$")
_UNICODE_OPS = {"≤": "<=", "≥": ">=", "≠": "!="}

_TIER_KEYS = ("target", "acceptable", "failure")
_KNOWN_KEYS = (
    *_TIER_KEYS,
    "direction",
    "min",
    "max",
    "rule",
    "note",
    "borderline",
    "aggregate",
    "confidence",
    "from",
    "accepted",
)
_ACCEPTED_KEYS = ("reason", "by", "date")
_DIRECTIONS: dict[str, Direction] = {
    "higher": "higher",
    "maximize": "higher",
    "maximise": "higher",
    "max": "higher",
    "up": "higher",
    "lower": "lower",
    "minimize": "lower",
    "minimise": "lower",
    "min": "lower",
    "down": "lower",
}
_AGGREGATES = ("mean", "median", "min", "max", "all")
_EXAMPLES = '{target: 0.7, acceptable: 0.6, failure: 0.5}, ">= 0.9", "< 0.35", "in [0.2, 0.4]" or {min: 0.9}'


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _near_miss(key: str, known: Sequence[str]) -> str | None:
    """The known key ``key`` is probably a typo of, if any."""
    low = key.lower()
    best: tuple[int, str] | None = None
    for cand in known:
        dist = _edit_distance(low, cand)
        limit = 1 if len(cand) < 5 else 2
        if dist <= limit and (best is None or dist < best[0]):
            best = (dist, cand)
    return best[1] if best else None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(metric: str, key: str, value: Any) -> float:
    """A finite float from a plan value; numeric strings are accepted (YAML 1.1 writes 1e-3 as one)."""
    if _is_number(value):
        out = float(value)
    elif isinstance(value, str) and _NUM_RE.match(value):
        out = float(value.replace("_", ""))
    else:
        raise CriterionError(
            f"criterion {metric!r}: {key} must be a number, got {value!r}",
            f"write {key}: 0.5 (a plain number)",
        )
    if not math.isfinite(out):
        raise CriterionError(
            f"criterion {metric!r}: {key} must be finite, got {value!r}", f"use a finite {key}"
        )
    return out


def _parse_compare(metric: str, text: str) -> tuple[Op, float | None, float | None, float | None]:
    """``">= 0.6"`` -> (op, threshold, low, high); never eval."""
    m = _CMP_RE.match(text)
    if m:
        op = cast(Op, _UNICODE_OPS.get(m.group(1), m.group(1)))
        return op, float(m.group(2).replace("_", "")), None, None
    m = _IN_RE.match(text)
    if m:
        low, high = float(m.group(1).replace("_", "")), float(m.group(2).replace("_", ""))
        if low > high:
            raise CriterionError(
                f"criterion {metric!r}: range {text.strip()!r} has its low end above its high end",
                f'write "in [{fmt(high)}, {fmt(low)}]"',
            )
        return "in", None, low, high
    stripped = text.strip()
    fix = f"write a comparison such as {_EXAMPLES}"
    single = re.match(rf"^\s*=\s*({_NUM})\s*$", stripped)
    if single:
        fix = f'write "== {single.group(1)}" (two equals signs)'
    elif _NUM_RE.match(stripped):
        fix = f'write ">= {stripped}" or "<= {stripped}": a bare number does not say which side passes'
    raise CriterionError(f"criterion {metric!r}: cannot read {text!r} as a comparison", fix)


def _parse_accepted(metric: str, value: Any) -> Accepted:
    if isinstance(value, str) and value.strip():
        return Accepted(reason=value.strip())
    if isinstance(value, Mapping):
        for key in value:
            if str(key) not in _ACCEPTED_KEYS:
                near = _near_miss(str(key), _ACCEPTED_KEYS)
                if near:
                    raise CriterionError(
                        f"criterion {metric!r}: unknown key {key!r} under accepted; did you mean {near}?",
                        f"rename {key} to {near}",
                    )
        reason = value.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise CriterionError(
                f"criterion {metric!r}: accepted needs a reason",
                'write accepted: {reason: "why this is good enough", by: "name", date: "2026-02-03"}',
            )
        by, date = value.get("by"), value.get("date")
        return Accepted(
            reason=reason.strip(), by="" if by is None else str(by), date="" if date is None else str(date)
        )
    raise CriterionError(
        f"criterion {metric!r}: accepted must be a reason or a mapping, got {value!r}",
        'write accepted: {reason: "why this is good enough", by: "name", date: "2026-02-03"}',
    )


def _tier_direction(
    metric: str, target: float | None, acceptable: float | None, failure: float | None
) -> Direction:
    for better, worse in ((target, failure), (acceptable, failure), (target, acceptable)):
        if better is not None and worse is not None and better != worse:
            return "higher" if better > worse else "lower"
    raise CriterionError(
        f"criterion {metric!r}: cannot tell whether higher or lower is better from its tiers",
        "add direction: higher (or direction: lower)",
    )


def _check_tiers(
    metric: str, direction: Direction, target: float | None, acceptable: float | None, failure: float | None
) -> None:
    names = [(n, v) for n, v in zip(_TIER_KEYS, (target, acceptable, failure), strict=True) if v is not None]
    for (n1, v1), (n2, v2) in itertools.pairwise(names):
        bad = v1 < v2 if direction == "higher" else v1 > v2
        if bad:
            word = "below" if direction == "higher" else "above"
            order = ">=" if direction == "higher" else "<="
            other = "lower" if direction == "higher" else "higher"
            raise CriterionError(
                f"criterion {metric!r}: direction is {direction} but {n1} {_exact(v1)} is {word} "
                f"{n2} {_exact(v2)}; with direction {direction} the tiers must satisfy "
                f"target {order} acceptable {order} failure",
                f"use direction: {other}, or fix the tier values",
            )


def parse_criterion(metric: str, raw: Any, *, loc: Loc | None, experiment_level: bool) -> Criterion:
    """Parse one criterion as written in the plan (see SPEC section 3 and the module docstring).

    Raises CriterionError (with ``message``, ``fix`` and ``loc``) when it does not parse.
    """
    try:
        return _parse(metric, raw, loc=loc, experiment_level=experiment_level)
    except CriterionError as err:
        if err.loc is None and loc is not None:
            raise CriterionError(err.message, err.fix, loc) from None
        raise


def _parse(metric: str, raw: Any, *, loc: Loc | None, experiment_level: bool) -> Criterion:
    if isinstance(raw, str):
        op, threshold, low, high = _parse_compare(metric, raw)
        return Criterion(metric, "compare", op=op, threshold=threshold, low=low, high=high, raw=raw, loc=loc)
    if isinstance(raw, bool) or raw is None:
        raise CriterionError(
            f"criterion {metric!r}: {raw!r} is not a criterion", f"write a criterion such as {_EXAMPLES}"
        )
    if _is_number(raw):
        raise CriterionError(
            f"criterion {metric!r}: a bare number ({raw!r}) does not say which side passes",
            f'write ">= {raw}" (or "<= {raw}"), or {{target: ..., acceptable: ..., failure: ...}}',
        )
    if not isinstance(raw, Mapping):
        raise CriterionError(
            f"criterion {metric!r}: expected a mapping or a comparison string, got {type(raw).__name__}",
            f"write a criterion such as {_EXAMPLES}",
        )

    spec: dict[str, Any] = {}
    for key, value in raw.items():
        skey = str(key)
        if skey in _KNOWN_KEYS:
            spec[skey] = value
            continue
        near = _near_miss(skey, _KNOWN_KEYS)
        if near is not None:
            raise CriterionError(
                f"criterion {metric!r}: unknown key {skey!r}; did you mean {near}?",
                f"rename {skey} to {near}",
            )
        # Anything else (achieved, status, description, ...) is an annotation: kept in raw only.

    tiers = {k: spec[k] for k in _TIER_KEYS if spec.get(k) is not None}
    bounds = {k: spec[k] for k in ("min", "max") if spec.get(k) is not None}
    rule = spec.get("rule")
    kinds = [name for name, present in (("tiers", tiers), ("min/max", bounds), ("rule", rule)) if present]
    if len(kinds) > 1:
        raise CriterionError(
            f"criterion {metric!r}: mixes {' and '.join(kinds)}; a criterion is one of them",
            "keep either target/acceptable/failure, or min/max, or rule",
        )
    if not kinds:
        raise CriterionError(
            f"criterion {metric!r}: has no threshold", f"write a criterion such as {_EXAMPLES}"
        )

    fields: dict[str, Any] = {}
    if tiers:
        target = _number(metric, "target", tiers["target"]) if "target" in tiers else None
        acceptable = _number(metric, "acceptable", tiers["acceptable"]) if "acceptable" in tiers else None
        failure = _number(metric, "failure", tiers["failure"]) if "failure" in tiers else None
        if target is None and acceptable is None:
            raise CriterionError(
                f"criterion {metric!r}: a failure tier alone does not say what passes",
                "add acceptable: (the pass threshold) and, if you like, target:",
            )
        raw_dir = spec.get("direction")
        if raw_dir is None:
            direction = _tier_direction(metric, target, acceptable, failure)
        else:
            found = _DIRECTIONS.get(str(raw_dir).strip().lower())
            if found is None:
                raise CriterionError(
                    f"criterion {metric!r}: direction must be higher or lower, got {raw_dir!r}",
                    "write direction: higher (bigger is better) or direction: lower",
                )
            direction = found
        _check_tiers(metric, direction, target, acceptable, failure)
        fields.update(
            kind="tiered",
            target=target,
            acceptable=acceptable if acceptable is not None else target,
            failure=failure,
            direction=direction,
        )
    elif bounds:
        if spec.get("direction") is not None:
            raise CriterionError(
                f"criterion {metric!r}: direction belongs to target/acceptable/failure, not min/max",
                "remove direction",
            )
        low = _number(metric, "min", bounds["min"]) if "min" in bounds else None
        high = _number(metric, "max", bounds["max"]) if "max" in bounds else None
        if low is not None and high is not None:
            if low > high:
                raise CriterionError(
                    f"criterion {metric!r}: min {fmt(low)} is above max {fmt(high)}", "swap min and max"
                )
            fields.update(kind="compare", op="in", low=low, high=high)
        elif low is not None:
            fields.update(kind="compare", op=">=", threshold=low)
        else:
            fields.update(kind="compare", op="<=", threshold=high)
    else:
        if not isinstance(rule, str):
            raise CriterionError(
                f"criterion {metric!r}: rule must be a comparison string, got {rule!r}",
                'write rule: ">= 0.9"',
            )
        if spec.get("direction") is not None:
            raise CriterionError(
                f"criterion {metric!r}: direction belongs to target/acceptable/failure, not a rule",
                "remove direction",
            )
        op, threshold, low, high = _parse_compare(metric, rule)
        fields.update(kind="compare", op=op, threshold=threshold, low=low, high=high)

    note = spec.get("note")
    if note is not None:
        fields["note"] = str(note)
    if spec.get("borderline") is not None:
        margin = _number(metric, "borderline", spec["borderline"])
        if margin < 0:
            raise CriterionError(
                f"criterion {metric!r}: borderline must be a margin >= 0, got {spec['borderline']!r}",
                "write the absolute margin, e.g. borderline: 0.01",
            )
        fields["borderline"] = margin
    if spec.get("aggregate") is not None:
        agg = str(spec["aggregate"]).strip().lower()
        if agg not in _AGGREGATES:
            raise CriterionError(
                f"criterion {metric!r}: aggregate must be one of {', '.join(_AGGREGATES)}, "
                f"got {spec['aggregate']!r}",
                "write aggregate: mean (or median, min, max, all)",
            )
        fields["aggregate"] = cast(Aggregate, agg)
    if spec.get("confidence") is not None:
        conf = _number(metric, "confidence", spec["confidence"])
        if not 0.0 < conf < 1.0:
            fix = f"write confidence: {conf / 100:g}" if 1 < conf < 100 else "write e.g. confidence: 0.95"
            raise CriterionError(
                f"criterion {metric!r}: confidence must lie strictly between 0 and 1, "
                f"got {spec['confidence']!r}",
                fix,
            )
        if fields.get("aggregate", "mean") != "mean":
            raise CriterionError(
                f"criterion {metric!r}: confidence judges the interval of the mean, "
                f"so it cannot be combined with aggregate: {fields['aggregate']}",
                "remove aggregate, or remove confidence",
            )
        fields["confidence"] = conf
    if spec.get("from") is not None:
        if not experiment_level:
            raise CriterionError(
                f"criterion {metric!r}: from is only for experiment-level criteria",
                "remove from (a sub-experiment's criteria judge its own metrics)",
            )
        source = spec["from"]
        if not isinstance(source, str) or not source.strip():
            raise CriterionError(
                f"criterion {metric!r}: from must name a sub-experiment, got {source!r}", "write from: e_p2_3"
            )
        fields["from_"] = source.strip()
    if spec.get("accepted") is not None:
        fields["accepted"] = _parse_accepted(metric, spec["accepted"])
    return Criterion(metric=metric, raw=raw, loc=loc, **fields)


# --- display ----------------------------------------------------------------------------------


def fmt(x: Any) -> str:
    """A measured number for people: up to 4 significant digits (``0.912``, ``1.23e-05``, ``12346``)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return repr(x)
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0:
        return "0"
    text = f"{x:.4g}"
    if "e+" in text and abs(x) < 1e15:  # 12345.6 reads better as 12346 than as 1.235e+04
        text = f"{x:.0f}"
    return text


def _exact(x: float | None) -> str:
    """A threshold as the researcher wrote it: shortest round-tripping form (``0.35``, ``1e-05``)."""
    if x is None:
        return "?"
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _fmt_value(value: float, threshold: float | None) -> str:
    """``fmt`` with more digits where 4 would make a value look equal to the threshold it missed."""
    text = fmt(value)
    if threshold is None or value == threshold or (text != _exact(threshold) and text != fmt(threshold)):
        return text
    for digits in range(5, 18):
        text = f"{value:.{digits}g}"
        if float(text) != threshold:
            return text
    return repr(value)


def rule_text(c: Criterion) -> str:
    """``">= 0.6 (target 0.7)"``, ``"<= 0.35"``, ``"in [0.2, 0.4]"``: what ``Judgement.rule`` says."""
    if c.kind == "tiered":
        base = f"{'>=' if c.direction == 'higher' else '<='} {_exact(c.acceptable)}"
        if c.target is not None and c.target != c.acceptable:
            base += f" (target {_exact(c.target)})"
        return base
    if c.op == "in":
        return f"in [{_exact(c.low)}, {_exact(c.high)}]"
    return f"{c.op} {_exact(c.threshold)}"


def _needs_text(c: Criterion) -> str:
    if c.kind == "tiered" and c.target is not None and c.target != c.acceptable:
        op = ">=" if c.direction == "higher" else "<="
        return f"{op} {_exact(c.acceptable)} (acceptable; target {_exact(c.target)})"
    return rule_text(c)


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


# --- judging ----------------------------------------------------------------------------------


def _problem(value: Any) -> tuple[str, float]:
    """('' , number) for a usable value, else (what is wrong with it, nan)."""
    if type(value) is float:  # the common case first: it is the hot path
        if math.isfinite(value):
            return "", value
    elif type(value) is int and -(2**1000) < value < 2**1000:
        return "", float(value)
    if value is None:
        return "not reported", math.nan
    if isinstance(value, bool):
        return f"a bool ({value!r}), not a number", math.nan
    if isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:
            return "too large for a float", math.nan
        if math.isfinite(number):
            return "", number
        return ("NaN" if math.isnan(number) else ("inf" if number > 0 else "-inf")), math.nan
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"not a number: {text}", math.nan


def _margin(c: Criterion, x: float) -> float:
    """How far ``x`` is on the passing side of the pass threshold (negative: on the failing side)."""
    if c.kind == "tiered":
        acc = cast(float, c.acceptable)
        return x - acc if c.direction == "higher" else acc - x
    op = c.op
    if op == "in":
        return min(x - cast(float, c.low), cast(float, c.high) - x)
    t = cast(float, c.threshold)
    if op in (">=", ">"):
        return x - t
    if op in ("<=", "<"):
        return t - x
    if op == "==":
        return -abs(x - t)
    return abs(x - t)  # "!="


def _passes(c: Criterion, x: float) -> bool:
    margin = _margin(c, x)
    return margin > 0 if c.op in (">", "<", "!=") else margin >= 0


def _level(c: Criterion, x: float, passed: bool) -> Level:
    if c.kind != "tiered":
        return "pass" if passed else "fail"
    higher = c.direction == "higher"
    if passed:
        if c.target is not None and (x >= c.target if higher else x <= c.target):
            return "target"
        return "acceptable"
    if c.failure is not None and (x <= c.failure if higher else x >= c.failure):
        return "failure"
    return "miss"


def borderline_margins(c: Criterion) -> tuple[float, float]:
    """The borderline margin below and above (they differ only for ``in``); (0, 0) means none."""
    if c.kind == "compare" and c.op in ("==", "!="):
        return 0.0, 0.0
    if c.borderline is not None:
        return c.borderline, c.borderline
    if c.kind == "tiered":
        acc = cast(float, c.acceptable)
        distinct = c.target is not None and c.target != acc
        margin = 0.1 * abs(cast(float, c.target) - acc) if distinct else 0.01 * abs(acc)
        return margin, margin
    if c.op == "in":
        return 0.01 * abs(cast(float, c.low)), 0.01 * abs(cast(float, c.high))
    margin = 0.01 * abs(cast(float, c.threshold))
    return margin, margin


def _is_borderline(c: Criterion, x: float) -> bool:
    """For a passing ``x``: is it within the borderline margin of the threshold?"""
    below, above = borderline_margins(c)
    slack = 1e-12 * max(1.0, abs(x))  # 0.61 - 0.6 is 0.010000000000000009, not 0.01
    if c.op == "in":
        return (below > 0 and x - cast(float, c.low) <= below + slack) or (
            above > 0 and cast(float, c.high) - x <= above + slack
        )
    return below > 0 and _margin(c, x) <= below + slack


def _ci_outcome(c: Criterion, lo: float, hi: float) -> Literal["pass", "fail", "inconclusive"]:
    """Does the whole interval clear the threshold, miss it, or straddle it?"""
    if c.op == "in":
        low, high = cast(float, c.low), cast(float, c.high)
        if low <= lo and hi <= high:
            return "pass"
        return "fail" if hi < low or lo > high else "inconclusive"
    if c.op in ("==", "!="):
        t = cast(float, c.threshold)
        outside = t < lo or t > hi
        point = lo == hi == t
        if c.op == "==":
            return "pass" if point else ("fail" if outside else "inconclusive")
        return "pass" if outside else ("fail" if point else "inconclusive")
    # One-sided rules are monotone: the interval clears when both ends pass.
    a, b = _passes(c, lo), _passes(c, hi)
    return "pass" if a and b else ("fail" if not a and not b else "inconclusive")


def _pass_threshold(c: Criterion, near: float) -> float | None:
    """The threshold a value is measured against (for ``in``: the edge nearer ``near``)."""
    if c.kind == "tiered":
        return c.acceptable
    if c.op == "in":
        low, high = cast(float, c.low), cast(float, c.high)
        return low if abs(near - low) <= abs(near - high) else high
    return c.threshold


def _pct(confidence: float) -> str:
    return f"{confidence * 100:.10g}%"


_HOW = {"mean": "mean", "median": "median", "min": "min", "max": "max", "all": "worst"}


def _aggregate(c: Criterion, nums: Sequence[float]) -> float:
    """The value judged over several seeds (the mean's interval is handled by ``judge``)."""
    how = c.aggregate
    if how == "all":
        # Every seed must pass: the worst seed decides, and is the value shown.
        return min(nums, key=lambda x: (_passes(c, x), _margin(c, x)))
    if how == "median":
        ordered = sorted(nums)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
    if how == "min":
        return min(nums)
    if how == "max":
        return max(nums)
    return math.fsum(nums) / len(nums)


def judged_value(criterion: Criterion | None, values: Sequence[Any]) -> float | None:
    """The number ``judge`` would show for these per-seed values, cheaply (no message, no stats).

    The criterion's aggregate (``all``: the worst seed; with ``confidence``: the mean); the mean
    without a criterion; None when a value is missing or not a number.  Used to rank sweep points.
    """
    nums: list[float] = []
    for v in values or (None,):
        short, number = _problem(v)
        if short:
            return None
        nums.append(number)
    if len(nums) == 1:
        return nums[0]
    if criterion is None or criterion.confidence is not None:
        return math.fsum(nums) / len(nums)
    return _aggregate(criterion, nums)


def judge(
    criterion: Criterion, values: Sequence[Any], *, seeds: int | None = None, stub: bool = False
) -> Judgement:
    """Judge one criterion against the per-seed values of its metric (one value without seeds).

    ``seeds``: how many seeds the plan asked for; seeds that did not report count as missing.
    ``stub``: a wiring check (see the module docstring and ``judge_stub``).
    """
    c = criterion
    metric = c.metric
    rule = rule_text(c)
    vals = list(values) if values else [None]
    if seeds is not None and seeds > len(vals):
        vals.extend([None] * (seeds - len(vals)))
    nums: list[float] = []
    bad_short = ""
    bad_count = 0
    for v in vals:
        short, number = _problem(v)
        if short:
            bad_count += 1
            bad_short = bad_short or short
        else:
            nums.append(number)
    if bad_count:
        where = f" in {bad_count} of {len(vals)} seeds" if len(vals) > 1 else ""
        reason = (
            f"metric {metric!r} was not reported{where}"
            if bad_short == "not reported"
            else f"metric {metric!r} is {bad_short}{where}"
        )
        message = f"{metric}: {bad_short}{where}"
        if c.accepted is not None:
            return _accept(c, None, rule, message, reason, None)
        return Judgement(metric, None, "missing", False, False, rule, message, reason=reason, note=c.note)

    n = len(nums)
    stats: Stats | None = None
    detail = ""
    seeds_needed: int | None = None
    suffix = ""
    if n > 1:
        mean, std = _mean_std(nums)
        ci95 = _interval(mean, std, n, 0.95)
        stats = Stats(mean=mean, std=std, n=n, ci95=ci95)
    if c.confidence is not None:
        conf = c.confidence
        value: float = stats.mean if stats is not None else nums[0]
        if stats is None:
            level: Level = "inconclusive"
            passed = False
            borderline = False
            suffix = f", a {_pct(conf)} confidence criterion needs at least 2 seeds"
        else:
            lo, hi = cast(tuple[float, float], _interval(stats.mean, stats.std, n, conf))
            detail = f" (mean of {n} seeds, {_pct(conf)} CI [{fmt(lo)}, {fmt(hi)}])"
            outcome = _ci_outcome(c, lo, hi)
            if outcome == "inconclusive":
                level, passed, borderline = "inconclusive", False, False
                threshold = cast(float, _pass_threshold(c, value))
                seeds_needed = seeds_to_settle(nums, threshold, conf)
                suffix = f", {seeds_phrase(seeds_needed)} would settle it"
            else:
                passed = outcome == "pass"
                level = _level(c, value, passed)
                borderline = passed and (_is_borderline(c, lo) or _is_borderline(c, hi))
    else:
        how = c.aggregate
        if n == 1:
            value = vals[0] if type(vals[0]) is int else nums[0]
        elif how == "mean":
            value = cast(Stats, stats).mean
        else:
            value = _aggregate(c, nums)
        if n > 1:
            detail = f" ({_HOW[how]} of {n} seeds"
            if how == "mean" and stats is not None and stats.ci95 is not None:
                detail += f", 95% CI [{fmt(stats.ci95[0])}, {fmt(stats.ci95[1])}]"
            detail += ")"
        passed = _passes(c, value)
        level = _level(c, value, passed)
        borderline = passed and _is_borderline(c, value)

    shown = _fmt_value(value, _pass_threshold(c, value))
    message = f"{metric} = {shown}{detail} needs {_needs_text(c)}: {level}{suffix}"
    if borderline:
        below, above = borderline_margins(c)
        message += f" (borderline: within {fmt(max(below, above))} of the threshold; requires human review)"
    if c.accepted is not None:
        return _accept(c, value, rule, message, None, stats)
    if stub:
        if not passed:
            message += " (stub: threshold not enforced)"
        passed, borderline = True, False
    return Judgement(
        metric,
        value,
        level,
        passed,
        borderline,
        rule,
        message,
        stats=stats,
        seeds_needed=seeds_needed,
        note=c.note,
    )


def _accept(
    c: Criterion, value: Any, rule: str, message: str, reason: str | None, stats: Stats | None
) -> Judgement:
    acc = cast(Accepted, c.accepted)
    who = "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))
    # The judged outcome stays visible in the message; the level records the human decision.
    message = f"{message}; accepted{who}: {acc.reason}"
    return Judgement(
        c.metric,
        value,
        "accepted",
        True,
        False,
        rule,
        message,
        reason=reason,
        stats=stats,
        note=c.note,
        accepted=acc,
    )


def judge_stub(criterion: Criterion, values: Sequence[Any], *, seeds: int | None = None) -> Judgement:
    """``judge`` for ``--stub``: thresholds are not enforced, only that the metric is a number."""
    return judge(criterion, values, seeds=seeds, stub=True)


# --- sentences for FINDINGS.md ----------------------------------------------------------------

_COMPARE_WORDS: dict[str, tuple[str, str]] = {
    ">=": ("is at least {t}", "is below {t}"),
    ">": ("is above {t}", "is not above {t}"),
    "<=": ("is at most {t}", "is above {t}"),
    "<": ("is below {t}", "is not below {t}"),
    "==": ("equals {t}", "does not equal {t}"),
    "!=": ("differs from {t}", "equals {t}"),
}


def sentence(j: Judgement, criterion: Criterion) -> str:
    """One plain-language sentence about a judgement, for FINDINGS.md."""
    c = criterion
    name = display_name(c.metric)
    src = f" (from {j.source})" if j.source else ""
    if j.value is None:
        if j.accepted is not None:
            return f"{name} was not measured{src} but was accepted{_who(j)}: {j.accepted.reason}."
        return f"{name} could not be judged{src}: {j.reason or 'not reported'}."
    subject = f"{name} of {fmt(j.value)}"
    if j.stats is not None and j.stats.n > 1:
        how = "mean" if c.confidence is not None else _HOW[c.aggregate]
        subject += f" ({how} of {j.stats.n} seeds)"
    subject += src
    if j.accepted is not None:
        return f"{subject} was accepted against {_needs_text(c)}{_who(j)}: {j.accepted.reason}."
    if j.level == "inconclusive":
        conf = _pct(c.confidence or 0.95)
        if j.stats is None:
            return (
                f"{subject} is inconclusive: a {conf} confidence criterion ({_needs_text(c)}) "
                "needs at least 2 seeds."
            )
        return (
            f"{subject} is inconclusive: its {conf} confidence interval straddles {_needs_text(c)}; "
            f"{seeds_phrase(j.seeds_needed)} would settle it."
        )
    x = float(j.value)
    if c.kind == "tiered":
        text = _tier_sentence(c, subject, x, j.level)
    elif c.op == "in":
        rng = f"[{_exact(c.low)}, {_exact(c.high)}]"
        text = f"{subject} {'lies within' if j.level == 'pass' else 'lies outside'} {rng}."
    else:
        good, bad = _COMPARE_WORDS[cast(str, c.op)]
        words = (good if j.level == "pass" else bad).format(t=_exact(c.threshold))
        text = f"{subject} {words}" + ("." if j.level == "pass" else f"; it needs {rule_text(c)}.")
    if j.borderline:
        below, above = borderline_margins(c)
        margin = fmt(max(below, above))
        text += f" This is borderline (within {margin} of the threshold) and requires human review."
    return text


def _who(j: Judgement) -> str:
    acc = j.accepted
    if acc is None:
        return ""
    return "".join((f" by {acc.by}" if acc.by else "", f" on {acc.date}" if acc.date else ""))


def _tier_sentence(c: Criterion, subject: str, x: float, level: str) -> str:
    higher = c.direction == "higher"
    good, bad = ("above", "below") if higher else ("below", "above")
    acc = cast(float, c.acceptable)
    A = _exact(acc)
    has_target = c.target is not None and c.target != acc
    if level in ("target", "acceptable"):
        side = "at" if x == acc else good
        if not has_target:
            what = "target" if c.target is not None else "acceptable threshold"
            return f"{subject} meets the {A} {what}" + ("." if x == acc else f" ({side} it).")
        if level == "target":
            return (
                f"{subject} is {side} the {A} acceptable threshold and meets the {_exact(c.target)} target."
            )
        return f"{subject} is {side} the {A} acceptable threshold but short of the {_exact(c.target)} target."
    if level == "miss":
        tail = f"miss; failure at {_exact(c.failure)}" if c.failure is not None else "miss"
        return f"{subject} is {bad} the {A} acceptable threshold ({tail})."
    F = _exact(c.failure)
    side = "at" if x == c.failure else bad
    return f"{subject} is {side} the {F} failure threshold (failure; acceptable at {A})."
