"""The records that cross module and process boundaries, typed, each with one constructor.

* :class:`SeedOutcome` -- what running one seed gave: the handler's result, or an error.  Built
  where the seed ran (``execution.run_seed``, or :meth:`SeedOutcome.failure` for work that did
  not get that far), returned by every executor's ``Handle.result()``, and folded into one
  entry per item by ``orchestrate``.  It travels between processes as ``to_dict()`` (JSON- and
  pickle-safe) and comes back through ``from_dict()``, which refuses anything else.
* :class:`ResultEntry` -- one sub-experiment's (or sweep point's) entry in results.yaml
  (SPEC section 8).  A ``TypedDict``: it *is* the stored mapping, so the store keeps the very
  object it is given as its view and writes it to the journal as it is (no conversion on the
  per-item path), and readers of a hand-edited file get the same shape.  :func:`new_entry` is
  its one constructor, :func:`entry_from_dict` reads one from stored data (``to_dict`` is the
  identity: it is plain data already).
* :class:`ResultOp` -- what an item asks the results owner to do (record an entry, record a
  block, set an experiment header).  It rides on the test report (``to_dict()``) from an xdist
  worker to the controller, which alone writes files.

Why frozen, slotted ``@struct`` classes (``structs.py``: a dataclass cheap to create at import)
for outcomes and ops: they are built once per seed/item and
read field by field (attribute access, no key typos, one constructor that checks the shape);
converting one to plain data happens only where it leaves the process.  Measured on the
1,000-item bench, the per-item path did not get slower (README "Performance").

Standard library only, imported by workers and Modal containers before the handler.
"""

from __future__ import annotations

import time
import traceback as _traceback
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import datetime, timezone
from typing import Any, Final, Literal, TypedDict

from .safetext import clean_text
from .structs import field_names, struct

__all__ = [
    "ERROR",
    "INFRA",
    "OK",
    "OUTDATED",
    "STALE_REASON",
    "UNFINISHED_IMPORT",
    "ErrorInfo",
    "OutcomeError",
    "ResultEntry",
    "ResultOp",
    "SeedOutcome",
    "SeedResult",
    "as_mapping",
    "as_outcome",
    "entry_from_dict",
    "error_info",
    "new_entry",
    "now_iso",
    "outdated_reason",
    "stale_reason",
    "tracker_label",
    "tracking_of",
]

# Outcome statuses of one seed.  "failed" (criteria) is decided later, by the judge.
OK: Final = "ok"
ERROR: Final = "error"
INFRA: Final = "infra_error"
OutcomeStatus = Literal["ok", "error", "infra_error"]
_STATUSES = frozenset((OK, ERROR, INFRA))

# The two keys SPEC section 11 adds to an entry, named here once: the store and the reconciler
# write them (``resultsdoc``, ``reuse``); the verdict, FINDINGS, ``--lf`` and the ``mlexp`` command
# read them through the two readers below, so a writer and a reader can never disagree on a name.
STALE_REASON: Final = "stale_reason"  # under ``stale:``: why the plan no longer stands behind it
OUTDATED: Final = "outdated"  # a current result whose code or ``deps:`` changed since it ran: why
# The stale reason (its start) of an entry the previous runner never finished: written by
# ``legacy.py`` when it adopts such a file, read by FINDINGS' next steps (which then need not
# import the adopter).
UNFINISHED_IMPORT: Final = "imported with status "


def as_mapping(value: Any) -> Mapping[str, Any] | None:
    """``value`` when it is a mapping, else None.  Asked many times per entry (its metrics,
    points, error, tracking...): a dict (what results hold) or None (a key that is not there)
    answers without the ``Mapping`` ABC's machinery."""
    if value.__class__ is dict:
        return value
    return None if value is None else (value if isinstance(value, Mapping) else None)


def stale_reason(entry: Any) -> str | None:
    """Why a stale entry went stale (None: not a mapping, or it says nothing)."""
    why = entry.get(STALE_REASON) if isinstance(entry, Mapping) else None
    return str(why) if why else None


def outdated_reason(entry: Any) -> str | None:
    """Why a result is outdated (None: it is not, or it is not a mapping)."""
    found = as_mapping(entry)
    why = found.get(OUTDATED) if found is not None else None
    return str(why) if why else None


_stamp: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """UTC now as ``2026-01-31T12:00:00Z`` (what results.yaml stores)."""
    # Called a few times per seed, mostly within the same second: format each second once.
    global _stamp
    second = int(time.time())
    last = _stamp
    if last[0] == second:
        return last[1]
    text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    _stamp = (second, text)
    return text


class ErrorInfo(TypedDict, total=False):
    """The ``error:`` block of an outcome and of a results entry."""

    kind: str  # handler, import, fixture, invalid_result, timeout, lost_worker, cancelled, ...
    type: str  # the exception's class name, or LostWorker/Timeout/... for infrastructure
    message: str
    traceback: str
    output: str  # the tail of what a worker printed (process executor)
    attempts: int  # attempts made, for retried infra errors
    seed: int | None  # in a results entry: the seed that failed


def error_info(kind: str, exc: BaseException, *, skip_frames: int = 0) -> ErrorInfo:
    """The ``error:`` block for an exception; the traceback starts ``skip_frames`` frames in
    (so a handler's traceback starts in the handler, not in us)."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = clean_text("".join(_traceback.format_exception(type(exc), exc, tb)))
    try:
        message = clean_text(str(exc))
    except Exception as broken:  # an exception whose __str__ raises is still the handler's error
        message = f"<str() of the exception failed: {type(broken).__name__}>"
    return {"kind": kind, "type": type(exc).__name__, "message": message, "traceback": text}


class _SeedResultKeys(TypedDict):
    metrics: dict[str, Any]
    finding: str | None
    artifacts: list[str]


class SeedResult(_SeedResultKeys, total=False):
    """What a handler returned, normalised (``normalize.normalize_result``)."""

    extra: dict[str, Any]  # the other top-level keys it returned (SPEC section 10)


class OutcomeError(ValueError):
    """Data that is not an outcome (``SeedOutcome.from_dict``): the message says what is wrong."""


@struct(frozen=True, slots=True)
class SeedOutcome:
    """One seed's outcome.  ``status`` ``ok`` comes with ``result``; ``error`` and
    ``infra_error`` with ``error``.  Handler errors and infrastructure failures are outcomes,
    never exceptions (see README "Your own executor")."""

    seed: int
    status: OutcomeStatus
    result: SeedResult | None = None
    error: ErrorInfo | None = None
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    history: Sequence[Mapping[str, Any]] = ()  # what the handler logged, step by step
    packages: Mapping[str, str] = field(default_factory=dict)  # well-known ML packages it imported
    device: str | None = None  # only known when the handler asked ``runner.device``
    tracking: Mapping[str, Any] | None = None  # the tracker's run (results.yaml ``tracking:``)
    warnings: tuple[str, ...] = ()  # tracker and executor warnings, shown once in the summary
    # What the handler noted with runner.add_issue / add_blocker (also when it then raised).
    issues: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    # The handler's exception, in the process that ran it only (--pdb); never sent anywhere.
    exc: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @classmethod
    def failure(
        cls,
        seed: int,
        kind: str,
        cause: BaseException | str,
        *,
        infra: bool = False,
        started_at: str | None = None,
        traceback: str | None = None,
        duration_s: float = 0.0,
        type_name: str | None = None,
    ) -> SeedOutcome:
        """The outcome of a seed whose handler never ran to a result.

        ``kind`` is the error kind (``import``, ``fixture``, ``handler``, ``executor`` for an
        ``error``; ``timeout``, ``lost_worker``, ``preempted``, ``cancelled``, ``credentials``,
        ``setup`` for an ``infra_error``).  ``cause`` is the exception (its type names the
        error and, when ``traceback`` is None, its traceback is kept) or a message.
        """
        if isinstance(cause, BaseException):
            error = error_info(kind, cause)
            if traceback is not None:
                error["traceback"] = clean_text(traceback)
        else:
            error = {
                "kind": kind,
                "type": "",
                "message": clean_text(cause),
                "traceback": clean_text(traceback or ""),
            }
        if type_name is not None:
            error["type"] = type_name
        elif not error["type"]:  # lost_worker -> LostWorker
            error["type"] = "".join(part.capitalize() for part in kind.split("_")) or "Error"
        now = now_iso()
        return cls(
            seed=seed,
            status=INFRA if infra else ERROR,
            error=error,
            started_at=started_at or now,
            finished_at=now,
            duration_s=round(duration_s, 4),
        )

    def replace(self, **changes: Any) -> SeedOutcome:
        """A copy with ``changes`` (``dataclasses.replace``, without its per-call field lookups)."""
        values = {name: getattr(self, name) for name in _OUTCOME_FIELDS}
        values.update(changes)
        return SeedOutcome(**values)

    def with_error(self, **changes: Any) -> SeedOutcome:
        """The same outcome with keys of its ``error`` block changed (e.g. ``attempts=2``)."""
        error: ErrorInfo = {**(self.error or {}), **changes}  # type: ignore[typeddict-item]
        return self.replace(error=error)

    def with_warnings(self, warnings: Sequence[str]) -> SeedOutcome:
        """The same outcome with ``warnings`` added (each once)."""
        merged = tuple(dict.fromkeys((*self.warnings, *warnings)))
        return self if merged == self.warnings else self.replace(warnings=merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and pickle-safe): what a worker writes and a container returns."""
        out: dict[str, Any] = {"seed": self.seed, "status": self.status}
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = dict(self.error)
        out["started_at"] = self.started_at
        out["finished_at"] = self.finished_at
        out["duration_s"] = self.duration_s
        out["history"] = list(self.history)
        out["packages"] = dict(self.packages)
        if self.device is not None:
            out["device"] = self.device
        if self.tracking is not None:
            out["tracking"] = dict(self.tracking)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.issues:
            out["issues"] = list(self.issues)
        if self.blockers:
            out["blockers"] = list(self.blockers)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> SeedOutcome:
        """An outcome from plain data (a worker's JSON, a Modal return value, a third-party
        executor's mapping); raises :class:`OutcomeError` for anything that is not one."""
        if isinstance(data, SeedOutcome):
            return data
        if not isinstance(data, Mapping):
            raise OutcomeError(f"an outcome is a mapping, not {type(data).__name__}")
        status = data.get("status")
        if status not in _STATUSES:
            raise OutcomeError(f"outcome status must be one of ok, error, infra_error, not {status!r}")
        seed = data.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise OutcomeError(f"outcome seed must be an integer, not {seed!r}")
        result = data.get("result")
        if status == OK:
            if not isinstance(result, Mapping) or not isinstance(result.get("metrics"), Mapping):
                raise OutcomeError("an ok outcome needs result: {metrics: {...}}")
            extra = result.get("extra")
            result = {
                "metrics": dict(result["metrics"]),
                "finding": result.get("finding"),
                "artifacts": [str(a) for a in result.get("artifacts") or ()],
            }
            if isinstance(extra, Mapping) and extra:
                result["extra"] = dict(extra)
        else:
            result = None
        error = data.get("error")
        if error is not None and not isinstance(error, Mapping):
            raise OutcomeError(f"outcome error must be a mapping, not {type(error).__name__}")
        if status != OK and error is None:
            error = {"kind": "executor", "type": "Error", "message": "no error details", "traceback": ""}
        # "wandb": what the first release's workers (and executors built on it) wrote
        tracking = data.get("tracking", data.get("wandb"))
        duration = data.get("duration_s")
        return cls(
            seed=seed,
            status=status,
            result=result,  # type: ignore[arg-type]
            error=dict(error) if error is not None else None,  # type: ignore[arg-type]
            started_at=str(data.get("started_at") or ""),
            finished_at=str(data.get("finished_at") or ""),
            duration_s=float(duration) if isinstance(duration, (int, float)) else 0.0,
            history=list(data.get("history") or ()),
            packages=dict(data.get("packages") or {}),
            device=data.get("device") if isinstance(data.get("device"), str) else None,
            tracking=dict(tracking) if isinstance(tracking, Mapping) else None,
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            issues=tuple(str(w) for w in data.get("issues") or ()),
            blockers=tuple(str(w) for w in data.get("blockers") or ()),
        )


def as_outcome(value: Any, seed: int, source: str = "executor") -> SeedOutcome:
    """``value`` as a :class:`SeedOutcome`: itself, or one read from a mapping in its
    ``to_dict()`` shape; anything else becomes an ``infra_error`` that says what ``source``
    returned (a bug in an executor must not crash the session or lose the other seeds)."""
    if isinstance(value, SeedOutcome):
        return value
    try:
        return SeedOutcome.from_dict(value)
    except OutcomeError as exc:
        return SeedOutcome.failure(
            seed, "executor", f"the {source} returned something that is not an outcome: {exc}", infra=True
        )


_OUTCOME_FIELDS = field_names(SeedOutcome)


class ResultEntry(TypedDict, total=False):
    """One entry of results.yaml (SPEC section 8): a sub-experiment, or one point of its sweep.

    A sweep's sub-experiment entry holds ``points`` (point key -> entry) and the summary of the
    selected point (``selected``, ``status``, ``metrics``, ...).  Keys are written in this order.
    """

    status: str  # passed, failed, error, infra_error, blocked
    selected: str | None
    finding: str | None
    blocked_reason: str
    stale_reason: str  # under ``stale:``: why the plan no longer stands behind it
    outdated: str  # code or deps changed since it ran: why (it still counts; never reused)
    reused: dict[str, Any]  # its seeds' results were reused, not run: from when (SPEC section 11)
    artifacts_missing: list[str]  # files it recorded that are gone
    metrics: dict[str, Any]
    per_seed: dict[int, dict[str, Any]]
    stats: dict[str, Any]
    criteria: dict[str, Any]
    points: dict[str, ResultEntry]
    params: dict[str, Any]
    artifacts: list[str]
    executor: str
    duration_s: float
    tracking: dict[str, Any]  # {tracker, url, run_path, offline_dir, sync, runs}; schema 1: ``wandb``
    provenance: dict[str, Any]
    error: ErrorInfo
    issues: list[str]  # runner.add_issue, over every seed (SPEC section 10)
    blockers: list[str]  # runner.add_blocker
    extra: dict[str, Any]  # top-level keys the handler returned besides metrics/finding/artifacts
    imported: dict[str, Any]  # {executed_by, started_at[, source_key]}: from another runner (legacy.py)
    started_at: str | None
    finished_at: str | None
    history: list[dict[str, Any]]


# How a tracker's key (``tracking.tracker``) is shown: "W&B run", "MLflow run"; a third party's
# tracker is recorded (and shown) by its own ``name``.
_TRACKER_LABELS = {"wandb": "W&B", "mlflow": "MLflow"}


def tracker_label(key: Any) -> str:
    """The name a link is labelled with: ``W&B`` for ``wandb``, ``MLflow`` for ``mlflow``."""
    text = str(key or "").strip()
    return _TRACKER_LABELS.get(text, text or "tracker")


def tracking_of(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An entry's tracked run: its ``tracking:`` block, or a schema-1 ``wandb:`` block read as
    one (``tracker: wandb``); None when it has neither."""
    block = as_mapping(entry.get("tracking"))
    if block is not None:
        return block
    legacy = as_mapping(entry.get("wandb"))
    if legacy is not None:
        return {"tracker": "wandb", **legacy}
    return None


def new_entry(status: str, **fields: Any) -> ResultEntry:
    """A results entry: ``status`` first (the file is read by people, in SPEC order)."""
    entry: dict[str, Any] = {"status": status}
    entry.update(fields)
    return entry  # type: ignore[return-value]


def entry_from_dict(data: Any) -> ResultEntry | None:
    """A stored entry as a :class:`ResultEntry`, or None when ``data`` is not one (a file
    edited by hand may hold anything).  No copy: stored entries are never changed in place."""
    if isinstance(data, dict) and isinstance(data.get("status", ""), str):
        return data  # type: ignore[return-value]
    return None


OpKind = Literal["record", "blocked", "experiment", "experiment_blocked", "kept"]


@struct(frozen=True, slots=True)
class ResultOp:
    """What an item's result asks of the results owner; see the constructors."""

    kind: OpKind
    plan: str  # the plan file, as the item's path (the owner finds its results by it)
    experiment: str
    sub: str | None = None
    point: str | None = None
    entry: ResultEntry | None = None  # record
    reason: str | None = None  # blocked, experiment_blocked
    fields: Mapping[str, Any] | None = None  # experiment: the header fields
    warnings: tuple[str, ...] = ()  # tracker and executor warnings from wherever the seeds ran
    # record: what the seeds logged, cut down (``curves.from_outcomes``); its own file, not results.yaml
    curves: Mapping[str, Any] | None = None

    @classmethod
    def record(
        cls,
        plan: str,
        experiment: str,
        sub: str,
        point: str | None,
        entry: ResultEntry,
        warnings: Sequence[str] = (),
        curves: Mapping[str, Any] | None = None,
    ) -> ResultOp:
        """Store ``entry`` for the sub-experiment (or its sweep point), and its ``curves``."""
        return cls("record", plan, experiment, sub, point, entry, warnings=tuple(warnings), curves=curves)

    @classmethod
    def kept(cls, plan: str, experiment: str, sub: str, point: str | None, entry: ResultEntry) -> ResultOp:
        """A cancelled run over a stored result: nothing is stored (the stored result is kept,
        SPEC section 8), but the summary shows the cancelled ``entry`` and says so."""
        return cls("kept", plan, experiment, sub, point, entry)

    @classmethod
    def blocked(cls, plan: str, experiment: str, sub: str, point: str | None, reason: str) -> ResultOp:
        """Record ``blocked`` with ``reason`` unless a result is stored."""
        return cls("blocked", plan, experiment, sub, point, reason=reason)

    @classmethod
    def header(cls, plan: str, experiment: str, fields: Mapping[str, Any]) -> ResultOp:
        """Set the experiment's header (its verdict) in results.yaml."""
        return cls("experiment", plan, experiment, fields=fields)

    @classmethod
    def assessment_blocked(cls, plan: str, experiment: str, reason: str) -> ResultOp:
        """The assessment was blocked: nothing to store, but the summary shows it."""
        return cls("experiment_blocked", plan, experiment, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the test report that carries it from an xdist worker."""
        out: dict[str, Any] = {"op": self.kind, "plan": self.plan, "experiment": self.experiment}
        for name in ("sub", "point", "entry", "reason", "fields", "curves"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultOp:
        kind = data["op"]
        if kind not in ("record", "blocked", "experiment", "experiment_blocked", "kept"):
            raise ValueError(f"not a result op: {kind!r}")
        return cls(
            kind,
            str(data["plan"]),
            str(data["experiment"]),
            sub=data.get("sub"),
            point=data.get("point"),
            entry=data.get("entry"),
            reason=data.get("reason"),
            fields=data.get("fields"),
            warnings=tuple(data.get("warnings") or ()),
            curves=data.get("curves"),
        )
