"""How a verdict reads, the same in the terminal, FINDINGS.md, JUnit and the HTML report.

Pure text from a :class:`~pytest_mlexp.model.Verdict` (SPEC "Verdicts, once and for all"):

    passed, proceed (completed; 2/2 criteria met; confidence high)
    passed, investigate (completed; 1/1 criteria met; confidence high): criterion accuracy borderline (...)
    passed_with_pivot via pivot_e3_8, proceed (completed; 0/1 criteria met, pivot 1/1; confidence high)
    blocked (gate g1 (Gate 1) not passed: ...); last verdict: failed (2026-11-29)

``blocked`` is a running state, never a verdict: the verdict computed from stored results is
given beside it as context.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import Verdict

__all__ = ["blocked_line", "criteria_count", "day", "recommendation_text", "verdict_line", "verdict_word"]


def recommendation_text(v: Verdict) -> str:
    """The recommendation, or a dash for a verdict with none (``not_run``)."""
    return v.recommendation or "—"


def day(stamp: str | None) -> str:
    """``2026-11-29T18:00:00Z`` -> ``2026-11-29``."""
    return (stamp or "").split("T")[0]


def criteria_count(v: Verdict) -> str:
    """``2/2 criteria met`` (the original criteria), and the passing pivot's beside it."""
    met = sum(1 for j in v.criteria if j.passed)
    text = f"{met}/{len(v.criteria)} criteria met"
    if v.pivot is not None:
        pv = next((p for p in v.pivots if p.pivot.key == v.pivot), None)
        if pv is not None:
            text += f", pivot {sum(1 for j in pv.criteria if j.passed)}/{len(pv.criteria)}"
    return text


def verdict_word(v: Verdict) -> str:
    """``passed``, ``passed_with_pivot via pivot_x``, ``failed``..."""
    return f"{v.verdict} via {v.pivot}" if v.pivot is not None else v.verdict


def verdict_line(v: Verdict, *, stub: bool = False) -> str:
    """The verdict, the recommendation and why (``investigate`` gives its reasons).  Under
    ``--stub`` a wiring run measures nothing: the line says whether the wiring holds."""
    if stub:
        if v.verdict == "not_run":
            return f"not in this run ({v.status}) [stub: thresholds not enforced]"
        if v.passed:
            return f"wiring ok ({v.status}) [stub: thresholds not enforced]"
        return f"wiring broken ({v.status}): {'; '.join(v.problems)} [stub: thresholds not enforced]"
    text = (
        f"{verdict_word(v)}, {recommendation_text(v)} "
        f"({v.status}; {criteria_count(v)}; confidence {v.confidence})"
    )
    if v.recommendation == "investigate" and v.reasons:
        text += ": " + "; ".join(v.reasons)
    elif v.message:
        text += ": " + v.message
    return text


def blocked_line(v: Verdict, reasons: Sequence[str]) -> str:
    """A blocked experiment: the running state first, its last stored verdict as context."""
    why = f" ({'; '.join(reasons)})" if reasons else ""
    if v.verdict == "not_run":
        return f"blocked{why}; no verdict yet (nothing of it has run)"
    when = f" ({day(v.last_run)})" if v.last_run else ""
    return f"blocked{why}; last verdict: {v.verdict}{when}"
