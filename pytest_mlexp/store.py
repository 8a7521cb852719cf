"""results.yaml: read, merge, journal, compact, lock (SPEC section 8).

Design, in short:

* ``doc(experiment_id)`` is the merged current view, loaded once and cached.
* ``record()`` updates that view and appends one JSON line to a per-session journal next to
  results.yaml (``.results.<pid>-<token>.journal``).  The line is written with one unbuffered
  ``write`` call, so once ``record()`` returns, a crash of this process loses nothing: the next
  session replays leftover journals whose owner is gone.
* results.yaml itself is rewritten (atomically: temp file + ``os.replace``) only when the number of
  records journaled since the last rewrite reaches the number of entries in the file.  The file
  at most doubles between rewrites, so the total bytes written for N items is O(N), not O(N²).
  A slow run also rewrites it every ``refresh_s`` seconds (bounded to a few percent of wall time)
  so that results.yaml stays fresh for a researcher who looks at it mid-run.
* A rewrite takes an exclusive lock, re-reads the file if another session changed it, lays this
  session's entries over it and keeps everything else, so two sessions never lose each other's
  results.
* PyYAML's emitter costs ~250 µs per entry even with libyaml (its representer is pure Python), which
  would dominate a 10,000-point sweep; ``dump_yaml`` is a small emitter for the plain data we store
  (checked against PyYAML's loader by the tests) and falls back to PyYAML for anything else.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import yaml

from .atomic import atomic_write_text
from .model import Plan

try:  # POSIX only; elsewhere sessions are not locked against each other (see _lock)
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
# Records journaled before the first count-based rewrite of a results file.  The journal already
# makes every record durable, and the time-based refresh (refresh_s) keeps the file fresh for a
# person watching a slow run; a rewrite mid-run of a fast one (milliseconds: emit, fsync, lock)
# only bounds how long the journal grows relative to the file, so it can wait for many records.
COMPACT_MIN = 1024
HISTORY_LIMIT = 10

# SPEC section 8 key order: the file is read by people, so it must not come out in arbitrary order.
HEADER_ORDER = (
    "schema",
    "experiment_id",
    "name",
    "status",
    "success_criteria_met",
    "confidence",
    "recommendation",
    "updated_at",
    "criteria",
)
ENTRY_ORDER = (
    "status",
    "selected",
    "finding",
    "blocked_reason",
    "metrics",
    "per_seed",
    "stats",
    "criteria",
    "points",
    "params",
    "artifacts",
    "executor",
    "duration_s",
    "wandb",
    "provenance",
    "error",
    "started_at",
    "finished_at",
)
# Keys set_experiment may not touch: they are the store's own bookkeeping.
_PROTECTED = frozenset({"schema", "experiment_id", "sub_experiments", "stale"})

_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class StoreError(Exception):
    """A results file this version of pytest-mlexp must not touch (a newer schema)."""


# Encoders built once: ``json.dumps`` with any keyword builds a new encoder on every call, which
# was a fifth of the cost of recording a small entry.
_DIGEST_JSON = json.JSONEncoder(sort_keys=True, default=repr, separators=(",", ":"), ensure_ascii=False)
_QUOTE_JSON = json.JSONEncoder(ensure_ascii=False)


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the params as canonical JSON: equal params give equal digests across runs."""
    text = _DIGEST_JSON.encode(params)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def utc_stamp() -> str:
    """Compact UTC time for file names (no ``:``, which Windows refuses)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- YAML -------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """A value the fast emitter does not handle; ``dump_yaml`` then falls back to PyYAML."""


# Conservative plain scalars: start with a letter or ``_`` and contain no ``:`` or ``#``, so no
# YAML indicator or comment can be formed; every other string is double-quoted.
_PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_./+@()%,'=\- ]*")
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# Characters YAML does not allow raw (or treats as line breaks) even inside double quotes.
_NONPRINT_RE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
# Characters that rule out a literal block scalar (``|``): controls other than tab and newline.
_NO_LITERAL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_MAX_KEY = 1000  # YAML implicit keys are limited to 1024 characters


def _escape_nonprint(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _quote(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid YAML double-quoted escapes.
    quoted = _QUOTE_JSON.encode(text)
    if _NONPRINT_RE.search(quoted):
        quoted = _NONPRINT_RE.sub(_escape_nonprint, quoted)
    return quoted


# Keys and short values (statuses, metric names, executors) repeat in every entry.
_STRING_CACHE: dict[str, str] = {}


def _string(text: str) -> str:
    cached = _STRING_CACHE.get(text)
    if cached is not None:
        return cached
    if _PLAIN_RE.fullmatch(text) and text[-1] != " " and text.lower() not in _RESERVED:
        out = text
    else:
        out = _quote(text)
    if len(text) <= 64:
        if len(_STRING_CACHE) > 50_000:
            _STRING_CACHE.clear()
        _STRING_CACHE[text] = out
    return out


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "." not in text and "e" in text:
        # YAML 1.1 loaders read "1e-05" as a string; "1.0e-05" is a float (PyYAML does the same).
        text = text.replace("e", ".0e", 1)
    return text


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is float:
        return _float(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float):
        return _float(value)
    raise _Unsupported(kind.__name__)


def _key(key: Any) -> str:
    text = _scalar(key)
    if len(text) > _MAX_KEY:
        raise _Unsupported("long key")
    return text


def _literal_ok(text: str) -> bool:
    return "\n" in text and not _NO_LITERAL_RE.search(text)


def _emit_literal(pad: str, head: str, text: str, out: list[str]) -> None:
    # An explicit indentation indicator ("2") makes leading spaces and blank first lines safe;
    # "+" keeps every trailing newline, "-" strips the one the block itself ends with.
    if text.endswith("\n"):
        out.append(f"{head} |2+\n")
        lines = text.split("\n")[:-1]
    else:
        out.append(f"{head} |2-\n")
        lines = text.split("\n")
    inner = pad + "  "
    for line in lines:
        out.append(f"{inner}{line}\n" if line else "\n")


def _emit_map(data: Mapping[Any, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    known = _STRING_CACHE
    for key, value in data.items():
        # Most keys repeat and are cached already (short, so within _MAX_KEY): skip _key's calls.
        text = known.get(key) if key.__class__ is str else None
        head = f"{pad}{text if text is not None else _key(key)}:"
        kind = value.__class__
        if kind is str and "\n" not in value:  # the common scalars first, as _scalar emits them
            text = known.get(value)
            out.append(f"{head} {text if text is not None else _string(value)}\n")
        elif kind is float:
            out.append(f"{head} {_float(value)}\n")
        elif isinstance(value, dict):
            if value:
                out.append(head + "\n")
                _emit_map(value, indent + 2, out)
            else:
                out.append(head + " {}\n")
        elif isinstance(value, (list, tuple)):  # a tuple: as JSON (and the journal) has it
            if value:
                out.append(head + "\n")
                # Block sequences sit at their key's indent, as PyYAML writes them.
                _emit_seq(value, indent, out)
            else:
                out.append(head + " []\n")
        elif isinstance(value, str) and _literal_ok(value):
            _emit_literal(pad, head, value, out)
        else:
            out.append(f"{head} {_scalar(value)}\n")


def _emit_seq(data: Sequence[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for value in data:
        if isinstance(value, (dict, list, tuple)) and value:
            inner: list[str] = []
            if isinstance(value, dict):
                _emit_map(value, indent + 2, inner)
            else:
                _emit_seq(value, indent + 2, inner)
            # The first line goes on the dash line ("- key: value"); the rest keep their indent.
            out.append(f"{pad}- {inner[0][indent + 2 :]}")
            out.extend(inner[1:])
        elif isinstance(value, dict):
            out.append(f"{pad}- {{}}\n")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}- []\n")
        else:
            out.append(f"{pad}- {_scalar(value)}\n")


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Block-style YAML for plain data, readable and loadable by any YAML 1.1/1.2 safe loader."""
    if not data:
        return "{}\n"
    out: list[str] = []
    try:
        _emit_map(data, 0, out)
    except _Unsupported:
        # Values we did not produce ourselves (a hand-edited file may hold dates or sets).
        text: str = yaml.dump(
            dict(data), Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True, width=1 << 30
        )
        return text
    return "".join(out)


def load_yaml(data: bytes | str) -> Any:
    """Safe load, with libyaml's parser when it is available."""
    # Loading builds many small containers; cyclic GC passes over them make a large results file
    # load superlinearly (and they cannot form cycles), so pause GC meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return yaml.load(data, Loader=_YAML_LOADER)
    finally:
        if enabled:
            gc.enable()


# --- journal encoding -------------------------------------------------------------------------


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


_JOURNAL_JSON = json.JSONEncoder(default=_json_default)
# Without a default: refuses anything that is not JSON's own (dict, list, tuple, str, int, float,
# bool, None), which is how record() tells an entry it can keep as it is.
_PLAIN_JSON = json.JSONEncoder()


def _dumps(obj: Any) -> str:
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


def _loads(text: str | bytes) -> Any:
    # Journal lines are ASCII (the encoder escapes the rest); a torn line that is not even UTF-8
    # raises UnicodeDecodeError, a ValueError like any other unreadable line.
    return _JOURNAL_DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)


def _fix_seed_keys(entry: dict[str, Any]) -> None:
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


def _history(prev: Any) -> list[dict[str, Any]]:
    """The new entry's history: the replaced attempt first, then its own history, bounded."""
    if not isinstance(prev, dict) or prev.get("status") == "blocked" or "status" not in prev:
        # A blocked placeholder is not an attempt; keep what it carried over, if anything.
        older = prev.get("history") if isinstance(prev, dict) else None
        return list(older[:HISTORY_LIMIT]) if isinstance(older, list) else []
    item = {
        "finished_at": prev.get("finished_at"),
        "status": prev.get("status"),
        "metrics": prev.get("metrics", {}),
    }
    older = prev.get("history")
    rest = older[: HISTORY_LIMIT - 1] if isinstance(older, list) else []
    return [item, *rest]


def _count_entries(doc: Mapping[str, Any]) -> int:
    subs = doc.get("sub_experiments")
    if not isinstance(subs, dict):
        return 0
    total = 0
    for entry in subs.values():
        total += 1
        points = entry.get("points") if isinstance(entry, dict) else None
        if isinstance(points, dict):
            total += len(points)
    return total


def _stat_sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _points_in(subs: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """A sweep's ``points:`` mapping in ``subs``, made (with its holder) where missing."""
    holder = subs.get(sub_id)
    if not isinstance(holder, dict):
        holder = subs[sub_id] = {}
    points = holder.get("points")
    if not isinstance(points, dict):
        points = holder["points"] = {}
    return points


def _empty_doc(experiment_id: str) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "experiment_id": experiment_id, "sub_experiments": {}, "stale": {}}


# --- the store --------------------------------------------------------------------------------


@dataclass
class _State:
    """One experiment's results file as this session sees it."""

    experiment_id: str
    path: Path
    doc: dict[str, Any]
    disk_sig: tuple[int, int, int] | None  # stat of the file as we last read or wrote it
    entries_on_disk: int
    journal: IO[bytes] | None = None
    journal_path: Path | None = None
    pending: int = 0  # journal lines since the last rewrite
    retry_at: int = 0  # after a failed rewrite: pending count at which to try again
    last_write: float = field(default_factory=time.monotonic)
    write_cost: float = 0.0
    # What this session changed, laid over the file on disk when another session wrote it too.
    subs: set[str] = field(default_factory=set)
    points: set[tuple[str, str]] = field(default_factory=set)
    summary: dict[str, set[str]] = field(default_factory=dict)
    header: set[str] = field(default_factory=set)


class ResultsStore:
    """Results of one session for every experiment of a plan, merged with what is on disk.

    ``digest_for(key)`` returns the current resolved-params digest for a sub-experiment id, or for
    ``"<sub_id>[<point_key>]"``, or None to skip the check; a stored entry whose
    ``provenance.params_sha256`` differs moves under ``stale:``.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        stub: bool,
        warn: Callable[[str], None],
        digest_for: Callable[[str], str | None] | None = None,
        refresh_s: float | None = 10.0,
        lock_timeout_s: float = 30.0,
        fsync: bool = True,
        readonly: bool = False,
    ) -> None:
        # readonly: an xdist worker's view. It never renames, moves aside, claims or deletes
        # anything (the controller owns the files); it only reads them and the journals.
        self.readonly = readonly
        self.plan = plan
        self.stub = stub
        self.warn = warn
        self.digest_for = digest_for
        self.refresh_s = refresh_s
        self.lock_timeout_s = lock_timeout_s
        self.fsync = fsync
        self.filename = "results.stub.yaml" if stub else "results.yaml"
        self._journal_prefix = ".results-stub." if stub else ".results."
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._states: dict[str, _State] = {}
        self._touched: dict[str, None] = {}  # insertion-ordered set
        self._point_keys: dict[str, tuple[str, ...]] = {}
        self.rewrites = 0  # number of results-file rewrites, for tests of the linear-cost rule

    def _points_of(self, sub_id: str) -> tuple[str, ...]:
        """A sweep's point keys in plan order (the plan is frozen, so computed once)."""
        keys = self._point_keys.get(sub_id)
        if keys is None:
            keys = self._point_keys[sub_id] = tuple(p.key for p in self.plan.sub(sub_id).points())
        return keys

    # -- paths ---------------------------------------------------------------------------------

    def path(self, experiment_id: str) -> Path:
        return self.plan.root / "experiments" / experiment_id / self.filename

    # -- reading -------------------------------------------------------------------------------

    def doc(self, experiment_id: str) -> dict[str, Any]:
        """The merged current view of an experiment's results (do not mutate it)."""
        return self._state(experiment_id).doc

    def _state(self, experiment_id: str) -> _State:
        state = self._states.get(experiment_id)
        if state is None:
            path = self.path(experiment_id)
            doc, sig = self._read(path, experiment_id)
            self._mark_stale(experiment_id, doc)
            state = _State(experiment_id, path, doc, sig, _count_entries(doc))
            self._states[experiment_id] = state
            self._recover(state)
        return state

    def _read(self, path: Path, experiment_id: str) -> tuple[dict[str, Any], tuple[int, int, int] | None]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return _empty_doc(experiment_id), None
        sig = _stat_sig(path)
        try:
            raw = load_yaml(data)
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            self._set_aside(path, f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            return _empty_doc(experiment_id), None
        if raw is None:  # an empty file holds nothing worth keeping
            return _empty_doc(experiment_id), sig
        if not isinstance(raw, dict):
            self._set_aside(path, f"is not a mapping (found {type(raw).__name__})")
            return _empty_doc(experiment_id), None
        schema = raw.get("schema")
        if schema is None or (isinstance(schema, int) and not isinstance(schema, bool) and schema < 1):
            if self.readonly:
                return _empty_doc(experiment_id), None
            legacy = self._free_name(path.with_name(path.name.replace(".yaml", ".legacy.yaml")))
            os.replace(path, legacy)
            self.warn(
                f"{path}: no 'schema' key (written by hand or an older tool); "
                f"kept as {legacy.name}, starting a fresh {path.name}"
            )
            return _empty_doc(experiment_id), None
        if not isinstance(schema, int) or isinstance(schema, bool):
            self._set_aside(path, f"has an unreadable schema {schema!r}")
            return _empty_doc(experiment_id), None
        if schema > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written with results schema {schema}, but this pytest-mlexp knows schema "
                f"{SCHEMA_VERSION}; upgrade pytest-mlexp (pip install -U pytest-mlexp) to read or "
                "update it (the file was left untouched)"
            )
        doc = _empty_doc(experiment_id)
        for key, value in raw.items():
            if key not in ("schema", "experiment_id"):
                doc[key] = value
        if not isinstance(doc.get("sub_experiments"), dict):
            doc["sub_experiments"] = {}
        if not isinstance(doc.get("stale"), dict):
            doc["stale"] = {}
        return doc, sig

    @staticmethod
    def _free_name(path: Path) -> Path:
        if not path.exists():
            return path
        n = 2
        while path.with_name(f"{path.name}.{n}").exists():
            n += 1
        free: Path = path.with_name(f"{path.name}.{n}")
        return free

    def _set_aside(self, path: Path, why: str) -> None:
        if self.readonly:
            return
        target = self._free_name(path.with_name(f"{path.name}.corrupt-{utc_stamp()}"))
        os.replace(path, target)
        self.warn(f"{path} {why}; moved it aside to {target.name} and started a fresh one")

    # -- stale entries -------------------------------------------------------------------------

    def _digest_changed(self, key: str, entry: Any) -> bool:
        if self.digest_for is None or not isinstance(entry, dict):
            return False
        expected = self.digest_for(key)
        if expected is None:
            return False
        prov = entry.get("provenance")
        stored = prov.get("params_sha256") if isinstance(prov, dict) else None
        return stored is not None and stored != expected

    def _mark_stale(self, experiment_id: str, doc: dict[str, Any]) -> None:
        """Move entries the current plan no longer stands behind under ``stale:``."""
        subs: dict[str, Any] = doc["sub_experiments"]
        stale: dict[str, Any] = doc["stale"]
        own: set[str] = set()
        if self.plan.has_experiment(experiment_id):
            own = {s.id for s in self.plan.experiment(experiment_id).sub_experiments}
        for sub_id in list(subs):
            entry = subs[sub_id]
            if sub_id not in own or not isinstance(entry, dict):
                stale[sub_id] = subs.pop(sub_id)
                continue
            sub = self.plan.sub(sub_id)
            points = entry.get("points")
            if not sub.sweep:
                # A sweep that was removed, or params that changed since the run.
                if isinstance(points, dict) or self._digest_changed(sub_id, entry):
                    stale[sub_id] = subs.pop(sub_id)
                continue
            if not isinstance(points, dict):
                if "provenance" in entry:  # a plain run from before the sweep was added
                    stale[sub_id] = subs.pop(sub_id)
                continue
            valid = set(self._points_of(sub_id))
            moved = False
            for key in list(points):
                node = f"{sub_id}[{key}]"
                if key not in valid or self._digest_changed(node, points[key]):
                    stale[node] = points.pop(key)
                    moved = True
            if moved:
                # The summary (selected point, aggregate status) was computed over points that no
                # longer count; keep only the points until the glue sets a new summary.
                summary = {k: v for k, v in entry.items() if k != "points"}
                if summary:
                    stale[sub_id] = summary
                if points:
                    subs[sub_id] = {"points": points}
                else:
                    del subs[sub_id]

    # -- crash recovery ------------------------------------------------------------------------

    def _recover(self, state: _State) -> None:
        """Replay journals left by sessions that died before compacting, then fold them in."""
        folder = state.path.parent
        if not folder.is_dir():
            return
        claimed: list[tuple[Path, IO[bytes] | None]] = []
        for journal in sorted(folder.glob(f"{self._journal_prefix}*.journal")):
            if journal == state.journal_path:
                continue
            if self.readonly:  # replay in memory only: live journals hold this session's results
                with contextlib.suppress(OSError):
                    for line in journal.read_bytes().splitlines():
                        with contextlib.suppress(ValueError):
                            self._apply(state, _loads(line))
                continue
            claim = self._claim(journal)
            if claim is False:
                continue  # its session is alive and will write its own results
            handle = None if claim is True else claim
            try:
                data = journal.read_bytes()
            except OSError:
                if handle is not None:
                    handle.close()
                continue
            claimed.append((journal, handle))
            for line in data.splitlines():
                try:
                    op = _loads(line)
                except ValueError:
                    continue  # the half-written last line of a crash
                self._apply(state, op)
        if not claimed:
            return
        # The dead session ran against the same plan (or an older one): judge its entries alike.
        self._mark_stale(state.experiment_id, state.doc)
        self._write(state)
        for journal, handle in claimed:
            with contextlib.suppress(OSError):
                journal.unlink()
            if handle is not None:
                handle.close()
        # What was recovered is now on disk; this session has not changed anything yet.
        state.subs.clear()
        state.points.clear()
        state.summary.clear()
        state.header.clear()

    def _claim(self, journal: Path) -> IO[bytes] | bool:
        """An open, locked handle if the journal's session is gone; False if it is alive."""
        if _fcntl is None:  # pragma: no cover - Windows refuses to rename a file another process has open
            claim = journal.with_name(journal.name + ".claim")
            try:
                os.rename(journal, claim)
                os.rename(claim, journal)
            except OSError:
                return False
            return True
        try:
            handle = open(journal, "rb")  # noqa: SIM115 - kept open to hold the lock
        except OSError:
            return False
        try:
            _fcntl.flock(handle.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        return handle

    def _apply(self, state: _State, op: Any) -> None:
        """Replay one journal line (set semantics, so replaying twice changes nothing)."""
        if not isinstance(op, dict):
            return
        kind = op.get("op")
        if kind == "r":
            entry = op.get("entry")
            if not isinstance(entry, dict):
                return
            _fix_seed_keys(entry)
            if op.get("history"):
                entry["history"] = op["history"]
            self._place(state, str(op.get("sub")), op.get("point"), entry)
        elif kind == "s":
            fields = op.get("fields")
            if isinstance(fields, dict):
                self._summary(state, str(op.get("sub")), fields)
        elif kind == "e":
            fields = op.get("fields")
            if isinstance(fields, dict):
                self._header(state, fields)

    # -- writing -------------------------------------------------------------------------------

    def _place(self, state: _State, sub_id: str, point: str | None, entry: dict[str, Any]) -> None:
        subs = state.doc["sub_experiments"]
        if point is None:
            subs[sub_id] = entry
            state.subs.add(sub_id)
        else:
            _points_in(subs, sub_id)[point] = entry
            state.points.add((sub_id, point))

    def _summary(self, state: _State, sub_id: str, fields: Mapping[str, Any]) -> None:
        subs = state.doc["sub_experiments"]
        holder = subs.get(sub_id)
        if not isinstance(holder, dict):
            holder = subs[sub_id] = {}
        for key, value in fields.items():
            if key != "points":
                holder[key] = value
        state.summary.setdefault(sub_id, set()).update(k for k in fields if k != "points")

    def _header(self, state: _State, fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            if key not in _PROTECTED:
                state.doc[key] = value
                state.header.add(key)

    def _stored(self, experiment_id: str, sub_id: str, point: str | None) -> Any:
        holder = self.doc(experiment_id)["sub_experiments"].get(sub_id)
        if point is None or not isinstance(holder, dict):
            return holder
        points = holder.get("points")
        return points.get(point) if isinstance(points, dict) else None

    def record(
        self, experiment_id: str, sub_id: str, entry: Mapping[str, Any], *, point: str | None = None
    ) -> None:
        """Store one finished sub-experiment (or sweep point) and make it durable before returning."""
        state = self._state(experiment_id)
        new = dict(entry)  # the store's own top level; nested values are never changed in place
        new.pop("history", None)
        hist = _history(self._stored(experiment_id, sub_id, point))
        op = {"op": "r", "sub": sub_id, "point": point, "history": hist, "entry": new}
        try:
            # Entries are plain data (results are normalised to it): the view keeps the entry
            # itself, and its JSON is the journal line.  Decoding the line again for a private
            # copy was the largest part of recording an item.
            text = _PLAIN_JSON.encode(op)
        except (TypeError, ValueError):
            # Something else (a Path, a numpy scalar, a cycle): keep what a replay will rebuild.
            text = _dumps(op)
            new = _loads(text)["entry"]
        _fix_seed_keys(new)
        if hist:
            new["history"] = hist
        self._place(state, sub_id, point, new)
        self._journal(state, text + "\n")

    def record_blocked(
        self, experiment_id: str, sub_id: str, reason: str, *, point: str | None = None
    ) -> bool:
        """Record ``blocked`` unless a result is stored (a result is never overwritten by a skip).

        A stored ``blocked`` placeholder is updated when the reason changed.  Returns whether
        anything was written.
        """
        stored = self._stored(experiment_id, sub_id, point)
        if stored is not None and not (isinstance(stored, dict) and stored.get("status") == "blocked"):
            return False
        if isinstance(stored, dict) and stored.get("blocked_reason") == reason:
            return False
        self.record(experiment_id, sub_id, {"status": "blocked", "blocked_reason": reason}, point=point)
        return True

    def set_summary(self, experiment_id: str, sub_id: str, fields: Mapping[str, Any]) -> None:
        """Set a sweep's summary fields (selected, status, metrics, criteria, finding...)."""
        state = self._state(experiment_id)
        text = _dumps(dict(fields))
        plain: dict[str, Any] = _loads(text)
        _fix_seed_keys(plain)
        self._summary(state, sub_id, plain)
        self._journal(state, f'{{"op":"s","sub":{_dumps(sub_id)},"fields":{text}}}\n')

    def set_experiment(self, experiment_id: str, fields: Mapping[str, Any]) -> None:
        """Set the experiment header (name, status, success_criteria_met, confidence, ...)."""
        state = self._state(experiment_id)
        text = _dumps(dict(fields))
        self._header(state, json.loads(text))
        self._journal(state, f'{{"op":"e","fields":{text}}}\n')

    def _journal(self, state: _State, line: str) -> None:
        if state.journal is None:
            state.path.parent.mkdir(parents=True, exist_ok=True)
            state.journal_path = state.path.with_name(f"{self._journal_prefix}{self._token}.journal")
            # Unbuffered: each record is one write(2), on disk (in the page cache) when we return.
            state.journal = open(state.journal_path, "ab", buffering=0)  # noqa: SIM115
            if _fcntl is not None:
                # Held for the session: other sessions see the journal as alive and leave it alone.
                _fcntl.flock(state.journal.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        self._touched[state.experiment_id] = None
        state.journal.write(line.encode("ascii"))
        state.pending += 1
        # Geometric: rewrite once the journal holds as many records as the file has entries, so
        # every entry is rewritten a bounded number of times (linear total cost). Never for fewer
        # than COMPACT_MIN records (see there); the time-based refresh below keeps the file fresh
        # for people watching a slow run.
        due = state.pending >= max(COMPACT_MIN, state.entries_on_disk, state.retry_at)
        if not due and self.refresh_s is not None:
            due = time.monotonic() - state.last_write >= max(self.refresh_s, 20 * state.write_cost)
        if due:
            try:
                self._compact(state)
            except (OSError, StoreError, yaml.YAMLError) as exc:
                # The record is durable in the journal already; a failed rewrite (disk full, a
                # newer tool's file appeared) must not fail the item.  Retry after twice as many
                # records so a persistent failure does not cost a rewrite attempt per item.
                state.retry_at = 2 * max(1, state.pending)
                self.warn(
                    f"{state.path}: could not rewrite ({exc}); results are kept in {state.journal_path}"
                )

    def _compact(self, state: _State) -> None:
        """Rewrite results.yaml with everything journaled, then empty the journal."""
        self._write(state)
        if state.journal is not None:
            # Only after the new results.yaml is in place: a crash in between replays the journal
            # again, which is harmless (set semantics).
            state.journal.truncate(0)
        state.pending = 0
        state.retry_at = 0

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        if _fcntl is None:  # pragma: no cover - no advisory locks; sessions must not overlap
            yield
            return
        lock_path = path.with_name(path.name + ".lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            locked = False
            while True:
                try:
                    _fcntl.flock(handle.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                    locked = True
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
            if not locked:
                # Never hang a session on a stuck lock: writing is still atomic, a merge may miss
                # the other session's newest entries until its own next write.
                self.warn(f"{lock_path}: still locked after {self.lock_timeout_s:g} s; writing without it")
            yield
        finally:
            handle.close()  # closing releases the flock

    def _write(self, state: _State) -> None:
        started = time.monotonic()
        state.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(state.path):
            if _stat_sig(state.path) != state.disk_sig:
                # Another session wrote (or removed) the file since we read it: merge over it.
                disk, _ = self._read(state.path, state.experiment_id)
                self._mark_stale(state.experiment_id, disk)
                state.doc = self._merge(disk, state)
            atomic_write_text(state.path, dump_yaml(self._canonical(state)), fsync=self.fsync)
            state.disk_sig = _stat_sig(state.path)
        state.entries_on_disk = _count_entries(state.doc)
        state.last_write = time.monotonic()
        state.write_cost = state.last_write - started
        self.rewrites += 1

    def _merge(self, disk: dict[str, Any], state: _State) -> dict[str, Any]:
        """The file on disk with this session's changes laid over it."""
        mine = state.doc
        my_subs = mine["sub_experiments"]
        subs: dict[str, Any] = disk["sub_experiments"]
        for key in state.header:
            if key in mine:
                disk[key] = mine[key]
        for sub_id in state.subs:
            if sub_id in my_subs:
                subs[sub_id] = my_subs[sub_id]
        for sub_id, point in state.points:
            if sub_id in state.subs:
                continue
            _points_in(subs, sub_id)[point] = my_subs[sub_id]["points"][point]
        for sub_id, keys in state.summary.items():
            if sub_id in state.subs:
                continue
            holder = subs.get(sub_id)
            if not isinstance(holder, dict):
                holder = subs[sub_id] = {}
            for key in keys:
                if key in my_subs.get(sub_id, {}):
                    holder[key] = my_subs[sub_id][key]
        stale = dict(mine.get("stale", {}))
        stale.update(disk["stale"])
        disk["stale"] = stale
        return disk

    def _canonical(self, state: _State) -> dict[str, Any]:
        """The document in SPEC order: header, sub-experiments in plan order, stale."""
        doc = state.doc
        out: dict[str, Any] = {"schema": SCHEMA_VERSION, "experiment_id": state.experiment_id}
        name = doc.get("name")
        if name is None and self.plan.has_experiment(state.experiment_id):
            name = self.plan.experiment(state.experiment_id).name
        if name is not None:
            out["name"] = name
        for key in HEADER_ORDER[3:]:
            if key in doc:
                out[key] = doc[key]
        for key, value in doc.items():
            if key not in out and key not in ("sub_experiments", "stale"):
                out[key] = value
        subs: dict[str, Any] = doc["sub_experiments"]
        ordered: dict[str, Any] = {}
        if self.plan.has_experiment(state.experiment_id):
            for sub in self.plan.experiment(state.experiment_id).sub_experiments:
                if sub.id in subs:
                    entry = subs[sub.id]
                    ordered[sub.id] = _ordered_entry(entry, self._points_of(sub.id) if sub.sweep else ())
        for sub_id, entry in subs.items():
            if sub_id not in ordered:
                ordered[sub_id] = _ordered_entry(entry, ())
        out["sub_experiments"] = ordered
        out["stale"] = doc.get("stale", {})
        return out

    # -- session end ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every touched experiment's results file and remove this session's journals.

        Every experiment is attempted; the first failure is raised afterwards (its journal stays,
        so the next session still recovers those results).
        """
        first: BaseException | None = None
        for experiment_id in list(self._touched):
            state = self._states[experiment_id]
            try:
                if state.pending:
                    self._compact(state)
            except (OSError, StoreError, yaml.YAMLError) as exc:
                first = first or exc
                continue
            if state.journal is not None:
                state.journal.close()  # releases the flock
                state.journal = None
                if state.journal_path is not None:
                    with contextlib.suppress(OSError):
                        state.journal_path.unlink()
        if first is not None:
            raise first

    def __del__(self) -> None:
        # A store dropped without flush (a crashed glue, a test) leaves its journals for the next
        # session to replay; closing them here releases their locks and avoids ResourceWarnings.
        for state in getattr(self, "_states", {}).values():
            if state.journal is not None:
                with contextlib.suppress(Exception):
                    state.journal.close()
                state.journal = None

    def touched(self) -> list[str]:
        """Experiments this session recorded something for, in first-touched order."""
        return list(self._touched)


def _ordered_entry(entry: Any, points_order: tuple[str, ...]) -> Any:
    if not isinstance(entry, dict):
        return entry
    out: dict[str, Any] = {}
    for key in ENTRY_ORDER:
        if key in entry:
            out[key] = entry[key]
    for key, value in entry.items():
        if key not in out and key != "history":
            out[key] = value
    if "history" in entry:
        out["history"] = entry["history"]
    points = out.get("points")
    if isinstance(points, dict):
        ordered: dict[str, Any] = {}
        for key in points_order:
            if key in points:
                ordered[key] = _ordered_entry(points[key], ())
        for key, value in points.items():
            if key not in ordered:
                ordered[key] = _ordered_entry(value, ())
        out["points"] = ordered
    return out
