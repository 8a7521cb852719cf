"""Statistics over seeds, with the standard library only.

The plugin is imported by every pytest run in an environment, so nothing here may pull in numpy
or scipy.  The Student-t quantile is computed from the regularized incomplete beta function
(a continued fraction, as in Numerical Recipes' ``betacf``) and refined by a bracketed Newton
iteration; it agrees with ``scipy.stats.t.ppf`` to better than 1e-9 for the usual p and df.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pytest_mlexp.model import Stats

if TYPE_CHECKING:
    import statistics

__all__ = [
    "SEEDS_CAP",
    "aggregate",
    "confidence_interval",
    "describe",
    "seeds_phrase",
    "seeds_to_settle",
    "seeds_to_settle_welch",
    "t_quantile",
    "welch_interval",
]

#: ``seeds_to_settle`` does not look further than this; it answers ``SEEDS_CAP + 1`` beyond it.
SEEDS_CAP = 1000


@lru_cache(maxsize=1)
def _normal() -> statistics.NormalDist:
    # statistics (with fractions and decimal behind it) costs ~2 ms to import: only the
    # functions that need it load it, not every plan run (criteria import this module).
    import statistics

    return statistics.NormalDist()


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast only on this side; use the symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0, computed directly (no 1 - cdf cancellation in the tail)."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


def _t_pdf(t: float, df: float) -> float:
    log_pdf = (
        math.lgamma((df + 1.0) / 2.0)
        - math.lgamma(df / 2.0)
        - 0.5 * math.log(df * math.pi)
        - (df + 1.0) / 2.0 * math.log1p(t * t / df)
    )
    return math.exp(log_pdf)


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom (``df`` >= 1
    need not be whole: Welch's interval has fractional degrees of freedom).

    Cached: verdicts ask for the same few quantiles over and over.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p!r}")
    if isinstance(df, bool) or not df >= 1:
        raise ValueError(f"df must be at least 1, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df == 1:  # Cauchy: exact
        return math.tan(math.pi * (p - 0.5))
    if df == 2:  # exact closed form
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    nu = float(df)
    q = 1.0 - p
    # Start from the Cornish-Fisher expansion around the normal quantile (close for df >= 3).
    z = _normal().inv_cdf(p)
    t = z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu * nu)
    lo, hi = 0.0, max(t, 1.0)
    while _t_upper_tail(hi, nu) > q:  # make sure the bracket holds the root
        lo, hi = hi, hi * 2.0
    if not lo < t < hi:
        t = (lo + hi) / 2.0
    for _ in range(200):
        tail = _t_upper_tail(t, nu)
        if tail > q:
            lo = t
        else:
            hi = t
        step = (tail - q) / _t_pdf(t, nu)  # dQ/dt = -pdf
        new = t + step
        if not lo < new < hi:  # Newton left the bracket: bisect instead
            new = (lo + hi) / 2.0
        if abs(new - t) <= 1e-13 * max(1.0, abs(t)):
            return new
        t = new
    return t


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    try:
        mean = math.fsum(values) / n
    except OverflowError:  # values near the float limit: scale by the largest first (each
        # scaled value is at most 1 in size, so neither the sum nor the mean can overflow;
        # dividing by n alone still can: fsum's exact sum of three max/3 rounds past the max)
        scale = max(abs(v) for v in values)
        mean = math.fsum(v / scale for v in values) / n * scale
    if n < 2:
        return mean, 0.0
    # Two passes with fsum: stable for the tiny spreads seeds usually have.
    try:
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    except OverflowError:
        var = math.inf
    return mean, math.sqrt(var)


def _interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float] | None:
    if n < 2:
        return None
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return (mean - half, mean + half)


def describe(values: Sequence[float]) -> Stats:
    """Mean, sample std (ddof=1; 0.0 for one value), n and the Student-t 95% CI of the mean."""
    if not values:
        raise ValueError("describe() needs at least one value")
    mean, std = _mean_std(values)
    return Stats(mean=mean, std=std, n=len(values), ci95=_interval(mean, std, len(values), 0.95))


def confidence_interval(values: Sequence[float], confidence: float) -> tuple[float, float] | None:
    """The Student-t ``confidence`` interval of the mean; None with fewer than 2 values."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if len(values) < 2:
        return None
    mean, std = _mean_std(values)
    return _interval(mean, std, len(values), confidence)


def aggregate(values: Sequence[float], how: Literal["mean", "median", "min", "max"] | str) -> float:
    """One number for a metric over seeds (``all`` is judged seed by seed, so it is refused here)."""
    if not values:
        raise ValueError("aggregate() needs at least one value")
    if how == "mean":
        return math.fsum(values) / len(values)
    if how == "median":
        import statistics

        return float(statistics.median(values))
    if how == "min":
        return float(min(values))
    if how == "max":
        return float(max(values))
    raise ValueError(f"unknown aggregate {how!r}: use mean, median, min or max")


def _smallest_settling(settles: Callable[[int], bool]) -> int:
    """The smallest n in 2..SEEDS_CAP for which ``settles(n)`` holds (it holds for every larger n
    once it holds: the interval only narrows as seeds are added), found by binary search;
    ``SEEDS_CAP + 1`` when even SEEDS_CAP does not settle it."""
    if not settles(SEEDS_CAP):
        return SEEDS_CAP + 1
    lo, hi = 2, SEEDS_CAP  # settles(hi) holds; find the smallest such n
    if settles(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if settles(mid):
            hi = mid
        else:
            lo = mid
    return hi


def seeds_to_settle(values: Sequence[float], threshold: float, confidence: float) -> int | None:
    """About how many seeds would make the ``confidence`` interval of the mean exclude ``threshold``.

    The rule: assume the mean and the sample std stay as observed, and find the smallest n >= 2
    with ``t_{(1+c)/2, n-1} * s / sqrt(n) < |mean - threshold|``.  The left side falls as n grows,
    so a binary search finds it.  None when it cannot be estimated (fewer than 2 values, a std of
    0, or a mean exactly on the threshold: no number of seeds moves it off).  ``SEEDS_CAP + 1``
    means "more than SEEDS_CAP" (see ``seeds_phrase``).
    """
    if len(values) < 2:
        return None
    mean, std = _mean_std(values)
    gap = abs(mean - threshold)
    if std == 0.0 or gap == 0.0:
        return None
    p = (1.0 + confidence) / 2.0

    def settles(n: int) -> bool:
        return t_quantile(p, n - 1) * std / math.sqrt(n) < gap

    return _smallest_settling(settles)


def _welch_df(va: float, vb: float, na: float, nb: float) -> float:
    """Welch-Satterthwaite degrees of freedom of ``va + vb`` (each a variance of a mean)."""
    return (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float
) -> tuple[float, tuple[float, float], float]:
    """``mean(a) - mean(b)``, Welch's ``confidence`` interval of it, and its degrees of freedom.

    For two independent samples of at least 2 values each, variances not assumed equal (the
    interval ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval`` gives).  With
    no spread on either side the interval is the difference itself (and ``df`` is inf).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("welch_interval() needs at least 2 values on each side")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    ma, sa = _mean_std(a)
    mb, sb = _mean_std(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    diff = ma - mb
    if va + vb == 0.0:
        return diff, (diff, diff), math.inf
    df = _welch_df(va, vb, len(a), len(b))
    half = t_quantile((1.0 + confidence) / 2.0, df) * math.sqrt(va + vb)
    return diff, (diff - half, diff + half), df


def seeds_to_settle_welch(
    a: Sequence[float], b: Sequence[float], threshold: float, confidence: float
) -> int | None:
    """``seeds_to_settle`` for Welch's interval: about how many seeds *on each side* would make
    the interval of ``mean(a) - mean(b)`` exclude ``threshold``, assuming both means and stds
    stay as observed.  None when it cannot be estimated; ``SEEDS_CAP + 1``: more than SEEDS_CAP.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    ma, sa = _mean_std(a)
    mb, sb = _mean_std(b)
    var = sa * sa + sb * sb
    gap = abs(ma - mb - threshold)
    if var == 0.0 or gap == 0.0:
        return None
    p = (1.0 + confidence) / 2.0

    def settles(n: int) -> bool:
        va, vb = sa * sa / n, sb * sb / n
        return t_quantile(p, _welch_df(va, vb, n, n)) * math.sqrt(var / n) < gap

    return _smallest_settling(settles)


def seeds_phrase(seeds_needed: int | None) -> str:
    """``about 12 seeds`` / ``more than 1000 seeds`` / ``more seeds`` for display."""
    if seeds_needed is None:
        return "more seeds"
    if seeds_needed > SEEDS_CAP:
        return f"more than {SEEDS_CAP} seeds"
    return f"about {seeds_needed} seeds"
