"""A JSON encoder that builds its C encoder once, for the per-item paths (the journal line, the
params digest, an upstream token).

``json.JSONEncoder.encode`` builds a new C encoder object on every call (``iterencode`` makes
the ``_json.make_encoder`` with its settings each time): ~2 µs here, a seventh of encoding a
whole results entry, and nearly all of encoding ``{}``.  :class:`Encoder` makes it once and
calls it directly, with the same output, the same errors and the same circular-reference check.
Where the C module is missing (another Python implementation) or its constructor does not take
the arguments this Python's ``json`` passes it, it is ``json.JSONEncoder.encode`` itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Encoder"]

_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C module

_PROBE = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": float("inf")}}


class Encoder:
    """``json.JSONEncoder(**settings).encode``, without the per-call set-up."""

    __slots__ = ("_c", "_lock", "_make", "_plain")

    def __init__(self, **settings: Any) -> None:
        plain = json.JSONEncoder(**settings)
        self._plain = plain
        self._make: Callable[[], Any] | None = None
        self._c: Any = None
        # One encoder's markers dict belongs to one encode at a time: another thread encoding
        # the same container meanwhile would read as a circular reference.
        self._lock = threading.Lock()
        if _make_encoder is None or plain.indent is not None:
            return  # the pure-Python encoder: nothing to keep

        def make() -> Any:
            # The arguments json.JSONEncoder.iterencode passes (CPython 3.10 to 3.14): a fresh
            # markers dict is the circular-reference check.
            codec = json.encoder
            encoder = codec.encode_basestring_ascii if plain.ensure_ascii else codec.encode_basestring
            return _make_encoder(
                {} if plain.check_circular else None,
                plain.default,
                encoder,
                plain.indent,
                plain.key_separator,
                plain.item_separator,
                plain.sort_keys,
                plain.skipkeys,
                plain.allow_nan,
            )

        try:
            c = make()
            same = "".join(c(_PROBE, 0)) == plain.encode(_PROBE)
        except Exception:  # a _json whose constructor changed: the plain path, always right
            same = False
        if same:
            self._make, self._c = make, make()

    def encode(self, obj: Any) -> str:
        c = self._c
        # A str: encode()'s own fast path; in use by another thread: a one-off encoder.
        if c is None or isinstance(obj, str) or not self._lock.acquire(blocking=False):
            return self._plain.encode(obj)
        try:
            return "".join(c(obj, 0))
        except BaseException:
            # The markers dict may still hold the ids of the containers it was inside: a new
            # encoder, so that an unrelated object reusing one of those ids is not "circular".
            assert self._make is not None
            self._c = self._make()
            raise
        finally:
            self._lock.release()
