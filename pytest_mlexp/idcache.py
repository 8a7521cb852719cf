"""A value computed once per object, kept only while that object lives (a plan's graph, the
metrics its handlers must report, the metrics its criteria compare).

A plan is frozen but holds dicts, so it is not hashable: such caches are keyed by ``id()``.
They used to keep ``(plan, value)``, the plan itself included, for the last 32 plans: a plan
outlived the session that read it (``MlexpSession.release`` lets go of it so that pytest's
full garbage collections at the end do not go over it), and a process that runs pytest again
and again (a notebook, a pytester suite, an IDE) kept 32 plans of every size alive.  Here the
cache holds a weak reference: an entry goes when its object does, and a recycled ``id()``
never matches (the reference would be dead, or to another object).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["IdentityCache"]

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    """``get(obj, compute)``: ``compute(obj)`` the first time ``obj`` (this very object) is
    asked for, the same value after that, for as long as ``obj`` lives.

    The value must not refer to ``obj`` itself: the entry would then keep it alive.  As a
    guard against that, and against many live objects, at most ``limit`` entries are kept
    (all are dropped when one more is needed; they are computed again if asked)."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 32) -> None:
        self._entries: dict[int, tuple[weakref.ref[K], V]] = {}
        self._limit = limit

    def get(self, obj: K, compute: Callable[[K], V]) -> V:
        key = id(obj)
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is obj:
            return hit[1]
        value = compute(obj)
        entries = self._entries
        if len(entries) >= self._limit:
            entries.clear()

        def gone(ref: weakref.ref[K], key: int = key) -> None:
            # Called when obj is freed (in any thread, at any allocation): only its own entry
            # goes (a later object with the same id() has its own reference), and it never
            # raises (pytest would report an exception here as unraisable).
            if (now := entries.get(key)) is not None and now[0] is ref:
                entries.pop(key, None)

        entries[key] = (weakref.ref(obj, gone), value)
        return value

    def __len__(self) -> int:
        return len(self._entries)
