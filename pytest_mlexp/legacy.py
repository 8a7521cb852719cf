"""Results written by the seed runner a team used before pytest-mlexp (SPEC section 10).

Such a results.yaml has no ``schema`` key; its results sit under ``results: {experiments:
{<sub_id>: {status, finding, metrics, artifacts}}}`` beside ``experiment_id``, ``status``,
``executed_by``, ``started_at``, ``completed_at``, ``assessment``, ``recommendation``,
``blockers`` and ``issues``.  :func:`import_seed_results` turns one into a results document of
ours, without touching the file (the store keeps it byte for byte until the experiment is first
written, then as results.legacy.yaml):

* a sub status ``completed`` becomes a stored result judged by today's criteria; ``failed``
  becomes ``error``; any other status counts as not run (kept under ``stale:`` with its reason);
* each imported entry carries ``imported: {executed_by, started_at}`` (and ``source_key`` when
  the runner's key was not the plan's id); it has no params, so it is never stale;
* artifact paths, relative to the experiment folder there, become relative to the plan folder
  as ours are;
* a key that is not a plan id but starts with exactly one of the experiment's sub ids followed
  by ``_`` (``e3_1_sanity_check``) is that sub-experiment; other keys go under ``stale:`` with
  reason ``not in plan``;
* everything else the file says (the runner's own assessment, recommendation, blockers,
  issues...) is kept under ``previous_runner:`` and shown in FINDINGS as what the previous runner
  said, never judged.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from .model import Plan
from .normalize import ResultError, normalize_metrics, plain_data
from .records import UNFINISHED_IMPORT, new_entry
from .resultsdoc import empty_doc
from .verdict import judge_sub

__all__ = [
    "LEGACY_NAME",
    "PREVIOUS_RUNNER",
    "UNFINISHED_IMPORT",
    "import_seed_results",
    "imported_count",
    "is_imported",
    "is_seed_runner",
    "match_sub",
]

LEGACY_NAME = "results.legacy.yaml"
PREVIOUS_RUNNER = "previous_runner"  # the top-level key of a results document that keeps the rest
STALE_REASON = "stale_reason"

_SUB_KEYS = ("status", "finding", "metrics", "artifacts", "error")


def is_seed_runner(raw: Mapping[Any, Any]) -> bool:
    """Whether a schema-less results file is in the seed runner's format."""
    results = raw.get("results")
    return isinstance(results, Mapping) and isinstance(results.get("experiments"), Mapping)


def is_imported(entry: Any) -> bool:
    """Whether a stored entry was imported from another runner (``imported:`` marker)."""
    return isinstance(entry, Mapping) and isinstance(entry.get("imported"), Mapping)


def imported_count(doc: Mapping[str, Any]) -> int:
    subs = doc.get("sub_experiments")
    return sum(1 for e in subs.values() if is_imported(e)) if isinstance(subs, Mapping) else 0


def match_sub(key: str, sub_ids: list[str]) -> str | None:
    """The sub-experiment a runner's key names: itself, or the one sub id it starts with
    followed by ``_`` (``e3_1_sanity_check`` -> ``e3_1``) when exactly one does."""
    if key in sub_ids:
        return key
    hits = [s for s in sub_ids if key.startswith(s + "_")]
    return hits[0] if len(hits) == 1 else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _artifact(path: Any, experiment_id: str) -> str:
    text = str(path).replace("\\", "/")
    if "://" in text or posixpath.isabs(text) or (len(text) > 1 and text[1] == ":"):
        return text
    return posixpath.normpath(posixpath.join("experiments", experiment_id, text))


def _entry(
    raw: Mapping[Any, Any], key: str, experiment_id: str, marker: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """(an entry of ours, "") for a completed or failed result; (None, why not run) otherwise."""
    status = raw.get("status")
    if status not in ("completed", "failed"):
        return None, f"{UNFINISHED_IMPORT}{status!r}: counts as not run"
    entry: dict[str, Any] = dict(new_entry("passed" if status == "completed" else "error"))
    finding = raw.get("finding")
    entry["finding"] = None if finding is None else str(finding)
    extra: dict[str, Any] = {}
    metrics = raw.get("metrics")
    if isinstance(metrics, Mapping):
        try:
            entry["metrics"] = normalize_metrics(metrics, "the previous runner")
        except ResultError as exc:
            # Kept as information all the same: nothing the runner recorded is dropped.
            entry["metrics"] = {}
            extra["metrics"] = plain_data(metrics)
            extra["metrics_problem"] = str(exc)
    else:
        entry["metrics"] = {}
    artifacts = raw.get("artifacts")
    entry["artifacts"] = (
        [_artifact(a, experiment_id) for a in artifacts if isinstance(a, str) and a.strip()]
        if isinstance(artifacts, list)
        else []
    )
    if status == "failed":
        message = raw.get("error")
        entry["error"] = {
            "kind": "imported",
            "type": "PreviousRunnerFailure",
            "message": str(message) if message else "failed under the previous runner",
            "traceback": "",
        }
    for name, value in raw.items():
        if name not in _SUB_KEYS:
            extra[str(name)] = plain_data(value)
    if extra:
        entry["extra"] = extra
    entry["started_at"] = marker.get("started_at")
    # A run still in progress has no completion time: its start is the best date there is.
    entry["finished_at"] = marker.get("completed_at") or marker.get("started_at")
    imported = _marker(marker)
    if key != "":
        imported["source_key"] = key
    entry["imported"] = imported
    return entry, ""


def _marker(marker: Mapping[str, Any]) -> dict[str, Any]:
    return {"executed_by": marker.get("executed_by"), "started_at": marker.get("started_at")}


def import_seed_results(raw: Mapping[Any, Any], experiment_id: str, plan: Plan) -> dict[str, Any]:
    """A results document of ours holding what a seed-runner file recorded (see the module)."""
    doc = empty_doc(experiment_id)
    marker = {
        "executed_by": _text(raw.get("executed_by")),
        "started_at": _text(raw.get("started_at")),
        "completed_at": _text(raw.get("completed_at")),
    }
    previous: dict[str, Any] = {"source": LEGACY_NAME}
    for name, value in raw.items():
        if name != "results":
            previous[str(name)] = plain_data(value)
    doc[PREVIOUS_RUNNER] = previous

    subs: dict[str, Any] = doc["sub_experiments"]
    stale: dict[str, Any] = doc["stale"]
    own = (
        [s.id for s in plan.experiment(experiment_id).sub_experiments]
        if plan.has_experiment(experiment_id)
        else []
    )
    results = raw["results"]["experiments"]
    # Exact ids first, so that ``e3_1`` beats ``e3_1_retry`` for the same sub-experiment.
    keys = sorted((str(k) for k in results), key=lambda k: k not in own)
    for key in keys:
        value = results.get(key)
        if not isinstance(value, Mapping):
            stale[key] = {"value": plain_data(value), STALE_REASON: "not a result (not a mapping)"}
            continue
        target = match_sub(key, own)
        if target is None:  # kept as the runner wrote it: nothing judges it
            stale[key] = {**plain_data(value), "imported": _marker(marker), STALE_REASON: "not in plan"}
            continue
        entry, why_not = _entry(value, "" if target == key else key, experiment_id, marker)
        if entry is None:
            stale[key] = {**plain_data(value), "imported": _marker(marker), STALE_REASON: why_not}
            continue
        if target in subs:
            first = subs[target]["imported"].get("source_key", target)
            stale[key] = {**entry, STALE_REASON: f"also names {target}; {first} was imported"}
            continue
        if entry["status"] == "passed":
            judged = judge_sub(plan.sub(target), entry)
            entry["criteria"] = {j.metric: j.to_dict() for j in judged}
            if not all(j.passed for j in judged):
                entry["status"] = "failed"
        subs[target] = entry
    # Plan order, as the store writes them.
    doc["sub_experiments"] = {s: subs[s] for s in own if s in subs}
    return doc
