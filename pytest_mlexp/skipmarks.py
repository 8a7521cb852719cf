"""Whether a mark makes pytest skip an item, judged before pytest reaches it (dispatch ahead
holds such an item back; the ``--co`` cost estimate leaves it out).  pytest glue, one concern."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["skipped_by_marks"]

_SKIPPING = frozenset({"skip", "skipif", "xfail"})


def _skipping_marks_above(node: Any) -> frozenset[str]:
    """The names of skip, skipif and xfail marks on ``node`` and its parents."""
    names: set[str] = set()
    while node is not None:
        names.update(m.name for m in node.own_markers if m.name in _SKIPPING)
        node = node.parent
    return frozenset(names)


def skipped_by_marks(item: pytest.Item, memo: dict[int, frozenset[str]] | None = None) -> bool:
    """Whether a mark makes pytest skip the item when it reaches it: ``skip``, a ``skipif``
    whose condition holds, ``xfail(run=False)`` (without ``--runxfail``).  Judged as pytest's
    skipping plugin judges them (its functions; a condition that cannot be judged counts as a
    skip); a skip a conftest hook or fixture decides at set-up cannot be seen from here.
    ``memo`` (an empty dict the caller keeps over a loop of items): the parents' marks read
    once per parent, not once per item (pytest's ``iter_markers`` walks every parent)."""
    parent = item.parent
    if memo is None:
        above = _skipping_marks_above(parent)
    else:
        got = memo.get(id(parent))
        above = memo[id(parent)] = _skipping_marks_above(parent) if got is None else got
    own = item.own_markers
    names = above.union(m.name for m in own if m.name in _SKIPPING) if own else above
    if not names:
        return False
    marked = "skip" in names or "skipif" in names
    if not marked and (item.config.option.runxfail or "xfail" not in names):
        return False
    try:
        from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

        if evaluate_skip_marks(item) is not None:
            return True
        xfail = None if item.config.option.runxfail else evaluate_xfail_marks(item)
        return xfail is not None and not xfail.run
    except BaseException as exc:  # a condition's error, or the pytest.fail() pytest raises for it
        if isinstance(exc, KeyboardInterrupt):
            raise
        return True
