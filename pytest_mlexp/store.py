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
* The file is written by ``yamlwrite.dump_yaml`` (a fast emitter for plain data) and read with
  libyaml's safe loader; journal lines are encoded by ``journal.py``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from .atomic import BATCH, locked, write_files
from .fastjson import Encoder
from .gcpause import paused
from .journal import PLAIN_JSON, dumps, fix_seed_keys, loads
from .model import Plan
from .resultsdoc import (
    HISTORY_LIMIT,
    PROTECTED_KEYS,
    SCHEMA_VERSION,
    canonical,
    count_entries,
    empty_doc,
    fingerprint_of,
    history_after,
    move_to_stale,
    points_in,
    upgrade_doc,
    upgrade_entry,
)
from .safetext import clean_obj, clean_text, storable
from .structs import struct
from .textutil import lazy_re
from .yamlwrite import dump_yaml, yaml_error

if TYPE_CHECKING:
    from .records import ResultEntry


class Reconciler(Protocol):
    """Decides what the plan stands behind; the store moves entries accordingly (``reuse.py``
    holds the plugin's).  ``key`` is a sub-experiment id or ``"<sub_id>[<point>]"``; ``doc`` the
    experiment's document being settled (entries of its other sub-experiments are read there)."""

    def stale_reason(self, key: str, entry: Mapping[str, Any]) -> str | None:
        """Why the plan no longer stands behind ``entry`` (params, seeds changed), or None."""

    def restorable(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
        """Whether a stale entry (or history item) is what the plan asks for again."""

    def restored(self, key: str, candidate: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
        """``candidate`` as a current entry again (its original dates kept)."""

    def reconcile(self, experiment_id: str, doc: dict[str, Any]) -> None:
        """After stale entries moved: restore what matches again, mark what is outdated."""


__all__ = [
    "COMPACT_MIN",
    "HISTORY_LIMIT",
    "SCHEMA_VERSION",
    "Reconciler",
    "ResultsStore",
    "ResultsWriteError",
    "StoreError",
    "dump_yaml",
    "load_yaml",
    "params_digest",
    "utc_stamp",
]

# Records journaled before the first count-based rewrite of a results file.  The journal already
# makes every record durable, and the time-based refresh (refresh_s) keeps the file fresh for a
# person watching a slow run; a rewrite mid-run of a fast one (milliseconds: emit, fsync, lock)
# only bounds how long the journal grows relative to the file, so it can wait for many records.
COMPACT_MIN = 1024

try:  # POSIX only; elsewhere sessions are not locked against each other (see _lock)
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

_UNREADABLE: Any = object()


class StoreError(Exception):
    """A results file this version of pytest-mlexp must not touch (a newer schema)."""


class ResultsWriteError(OSError):
    """A result could not be made durable (a full disk, a read-only folder): the journal could not
    be opened or written.  Nothing torn is left behind; what was journaled before is kept.  An
    ``OSError`` (with the cause's errno), so the glue catches it without importing this module."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot write results to {self.path.parent} ({self.strerror})"


# Encoders built once: ``json.dumps`` with any keyword builds a new encoder on every call, which
# was a fifth of the cost of recording a small entry.
_DIGEST_JSON = Encoder(sort_keys=True, default=repr, separators=(",", ":"), ensure_ascii=False)


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the params as canonical JSON: equal params give equal digests across runs."""
    text = _DIGEST_JSON.encode(params)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def utc_stamp() -> str:
    """Compact UTC time for file names (no ``:``, which Windows refuses)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def load_yaml(data: bytes | str) -> Any:
    """Safe load, with libyaml's parser when it is available."""
    # Loading builds many small containers; cyclic GC passes over them make a large results file
    # load superlinearly (and they cannot form cycles), so pause GC meanwhile.
    import yaml  # not at import: a run with no results file to read never needs PyYAML

    with paused():
        return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# A JSON escape of a lone surrogate (what ensure_ascii writes for "\udce9").
_SURROGATE_ESCAPE = lazy_re(r"(?<!\\)(?:\\\\)*\\ud[89a-f][0-9a-f]{2}")
# The same escape in a YAML file an earlier version wrote (libyaml refuses to read it).
_YAML_SURROGATE_ESCAPE = lazy_re(rb"(?<!\\)((?:\\\\)*)\\u(d[89a-f][0-9a-f]{2})", re.IGNORECASE)


def _journal_text(fields: Mapping[str, Any]) -> str:
    """A summary's or header's fields as journal JSON, written whatever they hold."""
    try:
        text = dumps(dict(fields))
    except (TypeError, ValueError, RecursionError):
        text = dumps(storable(dict(fields)))
    if "\\ud" in text and _SURROGATE_ESCAPE.search(text):
        text = dumps(clean_obj(json.loads(text)))
    return text


def _repair_surrogate_escapes(data: bytes) -> bytes:
    """``"\\udce9"`` escapes in a results file as the text safetext writes for them."""

    def shown(match: re.Match[bytes]) -> bytes:
        char = chr(int(match.group(2), 16))
        return match.group(1) + clean_text(char).replace("\\", "\\\\").encode("utf-8")

    return _YAML_SURROGATE_ESCAPE.sub(shown, data)


def _same_attempt(stored: Any, new: Mapping[str, Any]) -> bool:
    """Whether ``new`` re-records the attempt ``stored`` (a result reused whole from it): then
    it is not its own history.  A fresh run is never the same attempt, even one that finished
    in the same second with the same fingerprint."""
    reused = new.get("reused")
    if not isinstance(stored, dict) or not isinstance(reused, Mapping) or reused.get("seeds"):
        return False
    fp = fingerprint_of(new)
    return (
        fp is not None
        and fp == fingerprint_of(stored)
        and stored.get("finished_at") == new.get("finished_at") == reused.get("from")
    )


def _stat_sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@struct
class _State:
    """One experiment's results file as this session sees it."""

    experiment_id: str
    path: Path
    doc: dict[str, Any]
    disk_sig: tuple[int, int, int] | None  # stat of the file as we last read or wrote it
    entries_on_disk: int
    journal: IO[bytes] | None = None
    journal_path: Path | None = None
    journal_size: int = 0  # bytes of whole lines in the journal
    pending: int = 0  # journal lines since the last rewrite
    retry_at: int = 0  # after a failed rewrite: pending count at which to try again
    last_write: float = field(default_factory=time.monotonic)
    write_cost: float = 0.0
    # What this session changed, laid over the file on disk when another session wrote it too.
    subs: set[str] = field(default_factory=set)
    points: set[tuple[str, str]] = field(default_factory=set)
    summary: dict[str, set[str]] = field(default_factory=dict)
    header: set[str] = field(default_factory=set)
    # Found when reading, acted on only when this session first writes the experiment (SPEC
    # section 10: looking writes nothing): a file to keep as results.legacy.yaml (and how many
    # entries were imported from it), a file to move aside, journals of dead sessions that
    # were replayed in memory and must be folded into the file.
    problem: _Problem | None = None
    dead_journals: list[Path] = field(default_factory=list)
    prepared: bool = False


@struct(frozen=True)
class _Problem:
    """What is wrong with the file on disk: ``legacy`` (no schema; ``imported`` entries were
    read from it) or ``corrupt`` (``why``)."""

    kind: str  # "legacy" | "corrupt"
    why: str = ""
    imported: int = 0


def _stored_in(doc: dict[str, Any], sub_id: str, point: str | None) -> Any:
    """What ``doc`` (an experiment's results) holds for ``sub_id`` (or one of its points)."""
    holder = doc["sub_experiments"].get(sub_id)
    if point is None or not isinstance(holder, dict):
        return holder
    points = holder.get("points")
    return points.get(point) if isinstance(points, dict) else None


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
        reconciler: Reconciler | None = None,
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
        self.reconciler = reconciler
        self.refresh_s = refresh_s
        self.lock_timeout_s = lock_timeout_s
        self.fsync = fsync
        self.filename = "results.stub.yaml" if stub else "results.yaml"
        self._journal_prefix = ".results-stub." if stub else ".results."
        self._token = f"{os.getpid()}-{os.urandom(4).hex()}"  # what secrets.token_hex does
        self._states: dict[str, _State] = {}
        self._touched: dict[str, None] = {}  # insertion-ordered set
        self._point_keys: dict[str, tuple[str, ...]] = {}
        self.rewrites = 0  # number of results-file rewrites, for tests of the linear-cost rule
        # Set by the results view: the document with its judgements made again from the current
        # plan (results.yaml stores measurements; what is said of them is re-judged at every write).
        self.judge: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

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
            doc, sig, problem = self._read(path, experiment_id)
            self._mark_stale(experiment_id, doc)
            state = _State(experiment_id, path, doc, sig, count_entries(doc), problem=problem)
            self._states[experiment_id] = state
            self._replay(state)
        return state

    def _writable(self, experiment_id: str) -> _State:
        """The experiment's state, made ready for this session's first write to its files."""
        state = self._state(experiment_id)
        if not state.prepared:
            self._prepare(state)
        return state

    def _read(
        self, path: Path, experiment_id: str
    ) -> tuple[dict[str, Any], tuple[int, int, int] | None, _Problem | None]:
        """The file as a document, without changing anything on disk: a file that cannot be
        used as it is comes with the problem the first write will deal with."""
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # (a file where the folder should be:
            return empty_doc(experiment_id), None, None  # the writability check before the run says so)
        sig = _stat_sig(path)
        try:
            raw = load_yaml(data)
        except (yaml_error(), UnicodeDecodeError, ValueError) as exc:
            raw = _UNREADABLE
            if b"\\u" in data or b"\\U" in data:
                # Written by an earlier version with "\udce9" escapes (a lone surrogate):
                # every entry is still there, only those escapes need reading differently.
                with contextlib.suppress(yaml_error(), UnicodeDecodeError, ValueError):
                    raw = load_yaml(_repair_surrogate_escapes(data))
            if raw is _UNREADABLE:
                why = f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                return empty_doc(experiment_id), None, _Problem("corrupt", why)
        if raw is None:  # an empty file holds nothing worth keeping
            return empty_doc(experiment_id), sig, None
        if not isinstance(raw, dict):
            return (
                empty_doc(experiment_id),
                None,
                _Problem("corrupt", f"is not a mapping (found {type(raw).__name__})"),
            )
        schema = raw.get("schema")
        if schema is None or (isinstance(schema, int) and not isinstance(schema, bool) and schema < 1):
            # Deferred: only a file without a schema needs the adopter of the old seed runner's.
            from .legacy import import_seed_results, imported_count, is_seed_runner

            if self.stub or not is_seed_runner(raw):
                return empty_doc(experiment_id), None, _Problem("legacy")
            doc = import_seed_results(raw, experiment_id, self.plan)
            return doc, None, _Problem("legacy", imported=imported_count(doc))
        if not isinstance(schema, int) or isinstance(schema, bool):
            return empty_doc(experiment_id), None, _Problem("corrupt", f"has an unreadable schema {schema!r}")
        if schema > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written with results schema {schema}, but this pytest-mlexp knows schema "
                f"{SCHEMA_VERSION}; upgrade pytest-mlexp (pip install -U pytest-mlexp) to read or "
                "update it (the file was left untouched)"
            )
        doc = empty_doc(experiment_id)
        for key, value in raw.items():
            if key not in ("schema", "experiment_id"):
                doc[key] = value
        if not isinstance(doc.get("sub_experiments"), dict):
            doc["sub_experiments"] = {}
        if not isinstance(doc.get("stale"), dict):
            doc["stale"] = {}
        if schema < SCHEMA_VERSION:
            upgrade_doc(doc)  # written back as the current schema on the next write
        return doc, sig, None

    @staticmethod
    def _free_name(path: Path) -> Path:
        if not path.exists():
            return path
        n = 2
        while path.with_name(f"{path.name}.{n}").exists():
            n += 1
        free: Path = path.with_name(f"{path.name}.{n}")
        return free

    def _set_problem_aside(self, path: Path, problem: _Problem) -> None:
        """Keep a file this session is about to replace: as results.legacy.yaml (no schema) or
        moved aside (unreadable).  Only ever called when the experiment is written."""
        if not path.exists():
            return
        if problem.kind == "legacy":
            legacy = self._free_name(path.with_name(path.name.replace(".yaml", ".legacy.yaml")))
            os.replace(path, legacy)
            if problem.imported:
                self.warn(
                    f"{path}: written by another runner (no 'schema' key); its {problem.imported} "
                    f"result(s) were imported (marked imported) and the original is kept as {legacy.name}"
                )
            else:
                self.warn(
                    f"{path}: no 'schema' key (written by hand or an older tool); "
                    f"kept as {legacy.name}, starting a fresh {path.name}"
                )
            return
        target = self._free_name(path.with_name(f"{path.name}.corrupt-{utc_stamp()}"))
        os.replace(path, target)
        self.warn(f"{path} {problem.why}; moved it aside to {target.name} and started a fresh one")

    # -- stale entries -------------------------------------------------------------------------

    def _stale_reason(self, key: str, entry: Any) -> str | None:
        """Why the current plan no longer stands behind ``entry`` (None: it still does)."""
        if not isinstance(entry, dict):
            return None
        if self.reconciler is not None:
            return self.reconciler.stale_reason(key, entry)
        if self.digest_for is None:
            return None
        expected = self.digest_for(key)
        if expected is None:
            return None
        prov = entry.get("provenance")
        stored = prov.get("params_sha256") if isinstance(prov, dict) else None
        return "params changed" if stored is not None and stored != expected else None

    def _unplace(self, doc: dict[str, Any], key: str, entry: Any, reason: str) -> None:
        """``entry`` (the current one of ``key``, already taken out) goes under ``stale:``; when
        the stale entry of that key matches the plan again, the two swap (an edit and its undo
        lose nothing, whole entries, SPEC section 11)."""
        stale: dict[str, Any] = doc["stale"]
        older = stale.get(key)
        rec = self.reconciler
        if rec is not None and isinstance(older, dict) and rec.restorable(key, older, doc):
            del stale[key]
            self._put(doc, key, rec.restored(key, older, doc))
        move_to_stale(stale, key, entry, reason)

    @staticmethod
    def _put(doc: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
        sub_id, _, point = key.partition("[")
        subs: dict[str, Any] = doc["sub_experiments"]
        if point:
            points_in(subs, sub_id)[point[:-1]] = entry
        else:
            subs[sub_id] = entry

    def _mark_stale(self, experiment_id: str, doc: dict[str, Any]) -> None:
        """Move entries the current plan no longer stands behind under ``stale:`` (with the
        reason), bring back stale entries it stands behind again, and let the reconciler mark
        what is outdated."""
        subs: dict[str, Any] = doc["sub_experiments"]
        own: set[str] = set()
        if self.plan.has_experiment(experiment_id):
            own = {s.id for s in self.plan.experiment(experiment_id).sub_experiments}
        for sub_id in list(subs):
            entry = subs[sub_id]
            if sub_id not in own or not isinstance(entry, dict):
                self._unplace(doc, sub_id, subs.pop(sub_id), "not in plan")
                continue
            sub = self.plan.sub(sub_id)
            points = entry.get("points")
            if not sub.sweep:
                # A sweep that was removed, or params that changed since the run.
                reason = (
                    "no longer a sweep" if isinstance(points, dict) else self._stale_reason(sub_id, entry)
                )
                if reason is not None:
                    self._unplace(doc, sub_id, subs.pop(sub_id), reason)
                continue
            if not isinstance(points, dict):
                if "provenance" in entry:  # a plain run from before the sweep was added
                    self._unplace(doc, sub_id, subs.pop(sub_id), "now a sweep")
                continue
            valid = set(self._points_of(sub_id))
            moved = False
            for key in list(points):
                node = f"{sub_id}[{key}]"
                reason = "not in plan" if key not in valid else self._stale_reason(node, points[key])
                if reason is not None:
                    moved = True
                    self._unplace(doc, node, points.pop(key), reason)
            if moved:
                # The summary (selected point, aggregate status) was computed over points that no
                # longer count; keep only the points until the glue sets a new summary.
                summary = {k: v for k, v in entry.items() if k != "points"}
                holder = subs.get(sub_id)
                points = holder.get("points") if isinstance(holder, dict) else None
                if summary:
                    move_to_stale(doc["stale"], sub_id, summary, "its points changed")
                if points:
                    subs[sub_id] = {"points": points}
                else:
                    subs.pop(sub_id, None)
        if self.reconciler is not None:
            self.reconciler.reconcile(experiment_id, doc)

    # -- crash recovery ------------------------------------------------------------------------

    def _replay(self, state: _State) -> None:
        """Lay the journals of sessions that died before compacting over the view, in memory.

        Folding them into results.yaml (and deleting them) waits for this session's first write
        of the experiment (:meth:`_prepare`).  An xdist worker also replays live journals: they
        hold its own controller's results."""
        folder = state.path.parent
        if not folder.is_dir():
            return
        applied = False
        for journal in sorted(folder.glob(f"{self._journal_prefix}*.journal")):
            if journal == state.journal_path:
                continue
            if not self.readonly:
                if not self._is_dead(journal):
                    continue  # its session is alive and will write its own results
                state.dead_journals.append(journal)
            try:
                data = journal.read_bytes()
            except OSError:
                continue
            for line in data.splitlines():
                try:
                    op = loads(line)
                except ValueError:
                    continue  # the half-written last line of a crash
                self._apply(state, op)
                applied = True
        if applied:
            # The dead session ran against the same plan (or an older one): judge its entries alike.
            self._mark_stale(state.experiment_id, state.doc)
        # Nothing of it is this session's change (yet): a merge must not lay it over newer files.
        state.subs.clear()
        state.points.clear()
        state.summary.clear()
        state.header.clear()

    def _prepare(self, state: _State) -> None:
        """Before this session's first write of an experiment: keep a file it cannot use (as
        results.legacy.yaml, or moved aside) and fold in dead sessions' journals, so the
        file written next holds everything that was read."""
        state.prepared = True
        if self.readonly:
            return
        problem = state.problem
        state.problem = None
        if problem is not None:
            self._set_problem_aside(state.path, problem)
        claimed: list[tuple[Path, IO[bytes] | None]] = []
        for journal in state.dead_journals:
            claim = self._claim(journal)
            if claim is False:
                continue  # claimed by another session meanwhile: it folds it in
            claimed.append((journal, None if claim is True else claim))
        state.dead_journals.clear()
        if not claimed and not (problem is not None and problem.imported):
            return
        # Imported and recovered entries go to disk now, before this session's own changes,
        # which a merge with another session's file must be able to tell apart from them.
        self._write(state)
        for journal, handle in claimed:
            with contextlib.suppress(OSError):
                journal.unlink()
            if handle is not None:
                handle.close()

    def _is_dead(self, journal: Path) -> bool:
        """Whether the journal's session is gone (nobody holds its lock).  Takes no lock."""
        claim = self._claim(journal)
        if claim is False:
            return False
        if claim is not True:
            claim.close()  # releases the flock: looking must not keep anything
        return True

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
            fix_seed_keys(entry)
            if "wandb" in entry:  # a journal an older version left behind
                upgrade_entry(entry)
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
            points_in(subs, sub_id)[point] = entry
            state.points.add((sub_id, point))

    def _summary(self, state: _State, sub_id: str, fields: Mapping[str, Any]) -> None:
        subs = state.doc["sub_experiments"]
        holder = subs.get(sub_id)
        if not isinstance(holder, dict):
            holder = subs[sub_id] = {}
        for key, value in fields.items():
            if key == "points":
                continue
            if value is None:  # a summary key with nothing to say now (an error that is gone)
                holder.pop(key, None)
            else:
                holder[key] = value
        state.summary.setdefault(sub_id, set()).update(k for k in fields if k != "points")

    def _header(self, state: _State, fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            if key not in PROTECTED_KEYS:
                state.doc[key] = value
                state.header.add(key)

    def record(
        self, experiment_id: str, sub_id: str, entry: ResultEntry, *, point: str | None = None
    ) -> None:
        """Store one finished sub-experiment (or sweep point) and make it durable before returning."""
        state = self._writable(experiment_id)
        new = dict(entry)  # the store's own top level; nested values are never changed in place
        new.pop("history", None)
        stored = _stored_in(state.doc, sub_id, point)  # (the state in hand: not looked up again)
        # Nothing stored (a first run): no history to carry, and no calls to find none.
        hist = [] if stored is None else history_after(stored, same=_same_attempt(stored, new))
        op = {"op": "r", "sub": sub_id, "point": point, "history": hist, "entry": new}
        try:
            # Entries are plain data (results are normalised to it): the view keeps the entry
            # itself, and its JSON is the journal line.  Decoding the line again for a private
            # copy was the largest part of recording an item.
            text = PLAIN_JSON.encode(op)
        except (TypeError, ValueError, RecursionError):
            # Something else (a Path, a numpy scalar, a cycle, an int too long for text): keep
            # what a replay will rebuild; a value that cannot be written at all becomes text
            # that says so, and only that value is lost, never the entry or another one.
            try:
                text = dumps(op)
            except (TypeError, ValueError, RecursionError):
                op["entry"] = storable(new)
                text = dumps(op)
            new = loads(text)["entry"]
        if "\\ud" in text and _SURROGATE_ESCAPE.search(text):
            # A lone surrogate (os.fsdecode of a latin-1 file name) cannot be written as UTF-8:
            # stored the one way safetext shows it, in the journal and the view alike.
            new = clean_obj(new)
            op["entry"] = new
            text = PLAIN_JSON.encode(op)
        if "per_seed" in new:  # (a single seed's entry has none: no call to find none)
            fix_seed_keys(new)
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
        stored = _stored_in(self.doc(experiment_id), sub_id, point)
        if stored is not None and not (isinstance(stored, dict) and stored.get("status") == "blocked"):
            return False
        if isinstance(stored, dict) and stored.get("blocked_reason") == reason:
            return False
        self.record(experiment_id, sub_id, {"status": "blocked", "blocked_reason": reason}, point=point)
        return True

    def set_summary(self, experiment_id: str, sub_id: str, fields: Mapping[str, Any]) -> None:
        """Set a sweep's summary fields (selected, status, metrics, criteria, finding...)."""
        state = self._writable(experiment_id)
        text = _journal_text(fields)
        plain: dict[str, Any] = loads(text)
        fix_seed_keys(plain)
        self._summary(state, sub_id, plain)
        self._journal(state, f'{{"op":"s","sub":{dumps(sub_id)},"fields":{text}}}\n')

    def set_experiment(self, experiment_id: str, fields: Mapping[str, Any]) -> None:
        """Set the experiment header (name, status, success_criteria_met, confidence, ...)."""
        state = self._writable(experiment_id)
        text = _journal_text(fields)
        self._header(state, json.loads(text))
        self._journal(state, f'{{"op":"e","fields":{text}}}\n')

    def _journal(self, state: _State, line: str) -> None:
        if state.journal is None:
            # Named only when opened (a Path operation per record was a tenth of recording one).
            journal_path = state.path.with_name(f"{self._journal_prefix}{self._token}.journal")
            try:
                state.path.parent.mkdir(parents=True, exist_ok=True)
                # Unbuffered: each record is one write(2), on disk (in the page cache) when we return.
                state.journal = open(journal_path, "ab", buffering=0)  # noqa: SIM115
            except OSError as exc:
                raise ResultsWriteError(journal_path, exc) from exc
            state.journal_path = journal_path
            state.journal_size = 0
            if _fcntl is not None:
                # Held for the session: other sessions see the journal as alive and leave it alone.
                _fcntl.flock(state.journal.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        self._touched[state.experiment_id] = None
        self._append(state, line.encode("ascii"))
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
            except (OSError, StoreError, yaml_error()) as exc:
                # The record is durable in the journal already; a failed rewrite (disk full, a
                # newer tool's file appeared) must not fail the item.  Retry after twice as many
                # records so a persistent failure does not cost a rewrite attempt per item.
                state.retry_at = 2 * max(1, state.pending)
                self.warn(
                    f"{state.path}: could not rewrite ({exc}); results are kept in {state.journal_path}"
                )

    def _append(self, state: _State, data: bytes) -> None:
        """Append one whole line to the journal, or nothing: a full disk may take half a line
        (a short write, or an error after part of it); that part is cut off again, so the next
        line never lands after a torn one and every line a replay reads is whole."""
        handle = state.journal
        assert handle is not None
        start = state.journal_size
        rest: bytes | memoryview = data  # a view of what is left only after a short write
        try:
            while rest:
                written = handle.write(rest)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                rest = memoryview(rest)[written:] if written < len(rest) else b""
        except OSError as exc:
            with contextlib.suppress(OSError):
                handle.truncate(start)
            raise ResultsWriteError(state.journal_path or state.path, exc) from exc
        state.journal_size = start + len(data)

    def _compact(self, state: _State) -> None:
        """Rewrite results.yaml with everything journaled, then empty the journal."""
        self._write(state)
        self._compacted(state)

    def _compacted(self, state: _State) -> None:
        """After results.yaml took everything journaled: empty the journal."""
        if state.journal is not None:
            # Only after the new results.yaml is in place: a crash in between replays the journal
            # again, which is harmless (set semantics).
            state.journal.truncate(0)
            state.journal_size = 0
        state.pending = 0
        state.retry_at = 0

    def _lock(self, folder: Path) -> contextlib.AbstractContextManager[None]:
        """An exclusive ``flock`` on the experiment's folder itself: no lock file is ever made."""
        return locked(folder, timeout_s=self.lock_timeout_s, warn=self.warn)

    def _write(self, state: _State) -> None:
        error = self._write_states([state])[0]
        if error is not None:
            raise error

    def _write_states(self, states: list[_State]) -> list[Exception | None]:
        """Rewrite these experiments' results files, each under its folder's lock (taken in path
        order, so two sessions writing several never wait on each other in a circle), their
        fsyncs waited for together (``atomic.write_files``): what each failed with (None:
        written).  One experiment's failure leaves the others written."""
        errors: list[Exception | None] = [None] * len(states)
        started = time.monotonic()
        written: list[int] = []
        with contextlib.ExitStack() as held:
            files: list[tuple[Path, bytes]] = []
            for i, state in enumerate(states):
                try:
                    state.path.parent.mkdir(parents=True, exist_ok=True)
                    held.enter_context(self._lock(state.path.parent))
                    if _stat_sig(state.path) != state.disk_sig:
                        # Another session wrote (or removed) the file since we read it: merge over it.
                        disk, _, problem = self._read(state.path, state.experiment_id)
                        if problem is not None:  # what it wrote cannot be used: keep it, as on a first write
                            self._set_problem_aside(state.path, problem)
                        self._mark_stale(state.experiment_id, disk)
                        state.doc = self._merge(disk, state)
                    elif self.reconciler is not None:
                        # What this session ran may have changed what other entries depend on (an
                        # upstream result's fingerprint): mark them again before they are written.
                        self.reconciler.reconcile(state.experiment_id, state.doc)
                    text = dump_yaml(self._canonical(state))
                except (OSError, StoreError, yaml_error()) as exc:
                    errors[i] = exc
                    continue
                files.append((state.path, text.encode("utf-8", "surrogateescape")))
                written.append(i)
            for i, error in zip(written, write_files(files, fsync=self.fsync), strict=True):
                if error is not None:
                    errors[i] = error
                else:
                    states[i].disk_sig = _stat_sig(states[i].path)
        done = time.monotonic()
        for i, state in enumerate(states):
            if errors[i] is None:
                state.entries_on_disk = count_entries(state.doc)
                state.last_write = done
                state.write_cost = (done - started) / len(states)
                self.rewrites += 1
        return errors

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
            points_in(subs, sub_id)[point] = my_subs[sub_id]["points"][point]
        for sub_id, keys in state.summary.items():
            if sub_id in state.subs:
                continue
            holder = subs.get(sub_id)
            if not isinstance(holder, dict):
                holder = subs[sub_id] = {}
            for key in keys:
                if key in my_subs.get(sub_id, {}):
                    holder[key] = my_subs[sub_id][key]
                else:
                    holder.pop(key, None)
        stale = dict(mine.get("stale", {}))
        stale.update(disk["stale"])
        disk["stale"] = stale
        return disk

    def _canonical(self, state: _State) -> dict[str, Any]:
        """The document in SPEC order (header, sub-experiments in plan order, stale), judged again
        from the current plan (``judge``); a judge that fails costs the judgement, never the write."""
        doc = state.doc
        if self.judge is not None:
            try:
                doc = self.judge(state.experiment_id, doc)
            except Exception as exc:
                self.warn(f"{state.path}: written without re-judging ({type(exc).__name__}: {exc})")
                doc = state.doc
        return canonical(doc, state.experiment_id, self.plan, self._points_of)

    # -- session end ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every touched experiment's results file and remove this session's journals.

        Every experiment is attempted (their files written together: ``_write_states``); the
        first failure is raised afterwards (its journal stays, so the next session still
        recovers those results).
        """
        first: BaseException | None = None
        touched = [self._states[experiment_id] for experiment_id in self._touched]
        due = sorted((state for state in touched if state.pending), key=lambda state: str(state.path))
        failed: dict[int, BaseException] = {}
        for start in range(0, len(due), BATCH):  # a lock and a file open per experiment of a batch
            batch = due[start : start + BATCH]
            for state, error in zip(batch, self._write_states(batch), strict=True):
                if error is not None:
                    failed[id(state)] = error
        for state in touched:
            failure = failed.get(id(state))
            if failure is not None:
                first = first or failure  # its journal stays for the next session (see release)
                continue
            try:
                if state.pending:
                    self._compacted(state)
            except OSError as exc:
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

    def reload(self, experiment_id: str) -> None:
        """Read an experiment's results from disk again when next asked, unless this session
        changed them (another session may have written it meanwhile: research/FINDINGS.md shows
        every experiment as stored when it is written)."""
        state = self._states.get(experiment_id)
        if state is not None and state.journal is None and not state.pending:
            del self._states[experiment_id]

    def release(self) -> None:
        """Close this session's journals that ``flush`` could not fold in (they stay on disk, and
        their locks are released, for the next session to replay).  Nothing to do after a
        successful ``flush``."""
        for state in self._states.values():
            if state.journal is not None:
                with contextlib.suppress(OSError):
                    state.journal.close()
                state.journal = None

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
