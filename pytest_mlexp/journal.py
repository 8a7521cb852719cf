"""The journal's encoding: one JSON line per change to a results file (see ``store.py``).

Lines are ASCII JSON.  Decoding shares one string object per distinct key and short value, and
turns ``per_seed`` keys back into the integers results.yaml stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from .fastjson import Encoder

__all__ = ["PLAIN_JSON", "dumps", "fix_seed_keys", "loads"]


def _json_default(obj: Any) -> Any:
    # Results should already be plain data; these keep a stray Path or numpy scalar from losing a result.
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    item = getattr(obj, "item", None)
    if callable(item):
        with contextlib.suppress(Exception):
            return item()
    return str(obj)


_JOURNAL_JSON = Encoder(default=_json_default)
# Without a default: refuses anything that is not JSON's own (dict, list, tuple, str, int, float,
# bool, None), which is how record() tells an entry it can keep as it is.  Without the circular
# reference check (an id set kept per container: ~1.8 of the ~14 µs an entry costs): a cycle
# then raises RecursionError, which record() catches with the rest.
PLAIN_JSON = Encoder(check_circular=False)


def dumps(obj: Any) -> str:
    return _JOURNAL_JSON.encode(obj)


def _shared_strings(obj: dict[str, Any]) -> dict[str, Any]:
    """``json.loads`` object hook: one string object per distinct key and short value.

    Every result entry repeats the same keys and many of the same values (status, executor,
    commit, handler digest, python version, timestamps of the same second); decoded one entry
    at a time, each would be a new string, which made the stored view of a 10,000-item run
    twice the size it needs to be.
    """
    intern = sys.intern
    return {intern(k): intern(v) if v.__class__ is str and len(v) <= 80 else v for k, v in obj.items()}


_JOURNAL_DECODER = json.JSONDecoder(object_hook=_shared_strings)


def loads(text: str | bytes) -> Any:
    # Journal lines are ASCII (the encoder escapes the rest); a torn line that is not even UTF-8
    # raises UnicodeDecodeError, a ValueError like any other unreadable line.
    return _JOURNAL_DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)


def fix_seed_keys(entry: dict[str, Any]) -> None:
    # JSON object keys are strings; SPEC section 8 stores per_seed keyed by int seed.
    per_seed = entry.get("per_seed")
    if isinstance(per_seed, dict) and any(isinstance(k, str) for k in per_seed):
        fixed: dict[Any, Any] = {}
        for k, v in per_seed.items():
            if isinstance(k, str) and k.lstrip("-").isdigit():
                fixed[int(k)] = v
            else:
                fixed[k] = v
        entry["per_seed"] = fixed
