"""The parsed plan, cached the way Python caches byte-code.

Reading a plan costs PyYAML's import (~9 ms, and its 17 modules then weigh on every garbage
collection of the run and on the interpreter's exit), the plan parser's modules, and about
10 ms per 1,000 sub-experiments to build the model.  A plan changes far less often than the
code around it, so the model a parse produced is kept in ``__pycache__`` next to the plan
(``research/__pycache__/research_plan.yaml.mlexp-cpython-311.pickle``), as pytest keeps the
rewritten byte-code of a test module, and loaded from there while nothing it came from changed.

What "nothing changed" means (all of it goes into the key stored with the model; any difference
is a miss, and a miss parses the plan as if there were no cache):

* the plan file's bytes (a sha256 of them, not its modification time);
* the name the plan is shown by in messages, and the absolute path it resolves to;
* this package's source (path, size and modification time of every ``.py`` file in it: an
  edited parser, model or criterion in a development checkout is a miss);
* PyYAML's files (its ``__init__`` and compiled parser), the interpreter and the pickle format.

Only a plan that parses is cached: a plan with a mistake raises the same ``PlanError`` every
time, from the parser.  Nor is a plan that holds a secret (text under a secret-named key,
``api_key: ...``, anywhere in it): secrets are never written anywhere but where the researcher
wrote them, and a cache file is one more copy, in a folder a ``.gitignore`` may not cover.

Like byte-code, nothing is written under ``PYTHONDONTWRITEBYTECODE``
(``sys.dont_write_bytecode``), and ``PYTHONPYCACHEPREFIX`` (``sys.pycache_prefix``) moves the
cache the same way.  A cache file that cannot be read, is truncated, or holds anything but the
model of this key is a miss; one that cannot be written is skipped.  The file is replaced
atomically, so concurrent writers (pytest-xdist workers) never leave a torn one.

No pytest here; imported only when a plan is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Plan

__all__ = ["cache_file", "holds_secret", "load_plan_cached", "source_stamp"]

_MAGIC = b"mlexp-plan-cache\n"
_KEY_SIZE = 32  # sha256
_TAG = f"mlexp-{sys.implementation.cache_tag or sys.implementation.name}"
_code_stamp: bytes | None = None  # per process: the package does not change under a run


def cache_file(plan_path: Path) -> Path:
    """Where the model of ``plan_path`` (absolute) is cached: ``__pycache__`` beside it, or
    under ``sys.pycache_prefix`` as CPython and pytest place byte-code."""
    name = f"{plan_path.name}.{_TAG}.pickle"
    if sys.pycache_prefix:
        return Path(sys.pycache_prefix, *plan_path.parts[1:-1], name)
    return plan_path.parent / "__pycache__" / name


def _stat_into(h: hashlib._Hash, path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        h.update(f"{path}\0-\n".encode("utf-8", "surrogateescape"))
        return
    h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))


def source_stamp(folder: str) -> bytes:
    """A digest of the path, size and modification time of every ``.py`` file under ``folder``."""
    h = hashlib.sha256()
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                _stat_into(h, os.path.join(here, name))
    return h.digest()


def _code() -> bytes:
    """What the parse depends on besides the plan: this package's source, PyYAML, Python."""
    global _code_stamp
    if _code_stamp is None:
        import importlib.util

        # The pickle format (``_write``'s highest protocol) is the interpreter's: its version.
        h = hashlib.sha256(f"{sys.version}\n".encode())
        h.update(source_stamp(os.path.dirname(os.path.abspath(__file__))))
        # PyYAML reads the document (libyaml's events): found, not imported (that is the cost
        # the cache saves).
        spec = importlib.util.find_spec("yaml")
        if spec is not None and spec.origin:
            _stat_into(h, spec.origin)
            with os.scandir(os.path.dirname(spec.origin)) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.name.startswith("_yaml"):
                        _stat_into(h, entry.path)
        _code_stamp = h.digest()
    return _code_stamp


def _key(data: bytes, shown: str) -> bytes:
    h = hashlib.sha256(_code())
    h.update(f"{shown}\0{os.path.abspath(shown)}\0".encode("utf-8", "surrogateescape"))
    h.update(data)
    return h.digest()


def _read(path: Path, key: bytes) -> Plan | None:
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError:
        return None
    head = len(_MAGIC) + _KEY_SIZE
    if blob[: len(_MAGIC)] != _MAGIC or blob[len(_MAGIC) : head] != key:
        return None
    # pickle's C half, which pickle.loads is: pickle.py itself (the Python pickler and
    # unpickler) is ~5 M instructions to import, on every run that reads its plan from here.
    try:
        from _pickle import loads
    except ImportError:  # an interpreter without it
        from pickle import loads

    from .model import Plan

    try:
        plan = loads(blob[head:])
    except Exception:  # a torn or foreign file is a miss, whatever it raises
        return None
    return plan if isinstance(plan, Plan) else None


def holds_secret(obj: Any) -> bool:
    """Whether text under a secret-named key (``secrets.is_secret_key``: ``api_key``,
    ``password``, ``hf_token``...) is anywhere in ``obj``: a model (its fields), a mapping, a
    list or tuple, at any depth (any other kind of object but a path or an enum counts as one:
    the model is made of those).  What results.yaml redacts (``secrets.secret_texts``: every
    string there, however short), the cache does not hold; numbers and flags it keeps, as
    results.yaml does (``max_tokens: 512``)."""
    from .secrets import secret_texts

    # A loop over a stack, not recursion: a 1,000-sub-experiment plan is ~25,000 objects.
    atoms = (str, bytes, int, float, bool, type(None))
    stack = [obj]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, atoms) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Mapping):
            if secret_texts(item):
                return True
            stack.extend(item.values())  # models inside a mapping (``achieved``), walked too
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(type(item), "__struct_fields__"):
            stack.extend(getattr(item, f.name, None) for f in type(item).__struct_fields__)
        elif not isinstance(item, (PurePath, Enum)):
            return True  # a kind of value this walk cannot see into: not cached, to be safe
    return False


def _cacheable(plan: Plan) -> bool:
    """Nothing secret in it.  The ``modal:`` section's ``secrets`` are the *names* of Modal
    secrets (``modal.Secret.from_name``), not their values: they may be cached."""
    modal = {k: v for k, v in plan.modal.items() if k != "secrets"}
    fields = type(plan).__struct_fields__  # type: ignore[attr-defined]
    return not holds_secret([modal if f.name == "modal" else getattr(plan, f.name) for f in fields])


def _write(path: Path, key: bytes, plan: Plan) -> None:
    if sys.dont_write_bytecode or not _cacheable(plan):
        return
    import pickle

    try:
        payload = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a model pickle cannot hold is simply not cached
        return
    from .atomic import atomic_write_bytes

    # No fsync: a cache torn by a power cut is a miss (its key or its pickle does not read).
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, _MAGIC + key + payload, fsync=False)


def load_plan_cached(data: bytes, shown: str, plan_path: Path) -> Plan:
    """The model of the plan file whose bytes are ``data`` (``shown``: its name in messages;
    ``plan_path``: its absolute path, which places the cache): from the cache when it matches,
    else parsed (raising ``PlanError`` or ``UnicodeDecodeError``) and cached."""
    key = _key(data, shown)
    where = cache_file(plan_path)
    plan = _read(where, key)
    if plan is not None:
        return plan
    from .plan import parse_plan_text

    # As ``Path.read_text`` reads it: UTF-8 with universal newlines.
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    plan = parse_plan_text(text, shown)
    _write(where, key, plan)
    return plan
