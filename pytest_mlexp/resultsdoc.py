"""The shape of a results.yaml document (SPEC section 8): key order, sweep points, history.

Pure functions on plain data: the store (``store.py``) keeps documents in this shape and writes
them in :func:`canonical` order, because the file is read by people.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .model import Plan
from .records import OUTDATED, STALE_REASON

__all__ = [
    "ENTRY_ORDER",
    "HEADER_ORDER",
    "HISTORY_LIMIT",
    "PROTECTED_KEYS",
    "SCHEMA_VERSION",
    "canonical",
    "count_entries",
    "earlier_attempts",
    "empty_doc",
    "fingerprint_of",
    "history_after",
    "history_item",
    "move_to_stale",
    "points_in",
    "seeds_added_after_inconclusive",
    "unstale",
    "upgrade_doc",
    "upgrade_entry",
]

# 2 (wave 2): verdicts, tracking, fingerprints, outdated and imported results add fields; a
# schema-1 file is read as it is and written back as schema 2 on its next write.
SCHEMA_VERSION = 2
HISTORY_LIMIT = 10

# SPEC section 8 key order: the file is read by people, so it must not come out in arbitrary order.
HEADER_ORDER = (
    "schema",
    "experiment_id",
    "name",
    "status",
    "verdict",
    "opens_gates",
    "success_criteria_met",
    "confidence",
    "recommendation",
    "recommendation_reasons",
    "pivot",
    "updated_at",
    "criteria",
    "pivots",
)
ENTRY_ORDER = (
    "status",
    "selected",
    "finding",
    "blocked_reason",
    STALE_REASON,
    OUTDATED,
    "reused",
    "artifacts_missing",
    "metrics",
    "per_seed",
    "stats",
    "criteria",
    "points",
    "params",
    "artifacts",
    "executor",
    "duration_s",
    "tracking",
    "provenance",
    "error",
    "issues",
    "blockers",
    "extra",
    "imported",
    "started_at",
    "finished_at",
)
# Keys a header may not set: they are the store's own bookkeeping.
PROTECTED_KEYS = frozenset({"schema", "experiment_id", "sub_experiments", "stale"})


def upgrade_entry(entry: Any) -> None:
    """A schema-1 entry in place: its ``wandb:`` block becomes ``tracking: {tracker: wandb, ...}``
    (the runs under ``runs:`` too), as do the entries of its sweep points."""
    if not isinstance(entry, dict):
        return
    legacy = entry.get("wandb")
    if isinstance(legacy, dict) and "tracking" not in entry:
        block = {"tracker": "wandb", **legacy}
        runs = block.get("runs")
        if isinstance(runs, list):
            block["runs"] = [{"tracker": "wandb", **r} if isinstance(r, dict) else r for r in runs]
        # Same place in the key order: the file is read by people, and diffs stay small.
        items = [("tracking", block) if k == "wandb" else (k, v) for k, v in entry.items()]
        entry.clear()
        entry.update(items)
    points = entry.get("points")
    if isinstance(points, dict):
        for point in points.values():
            upgrade_entry(point)


def upgrade_doc(doc: dict[str, Any]) -> None:
    """A schema-1 document in place (read as it is, written back as schema 2)."""
    for section in ("sub_experiments", "stale"):
        entries = doc.get(section)
        if isinstance(entries, dict):
            for entry in entries.values():
                upgrade_entry(entry)


# What a history item keeps of the attempt it records (SPEC section 11): when it finished, how it
# ended, its metrics, params digest, fingerprint, commit and tracker link; and, so that a later
# session can reuse or restore it by fingerprint, its seeds' values, finding, artifacts and params.
_HISTORY_TOP = (
    "finished_at",
    "status",
    STALE_REASON,
    "finding",
    "metrics",
    "per_seed",
    "params",
    "artifacts",
    "duration_s",
    "imported",
    "reused",
)
# (A digest per input, ``provenance.inputs``, stays with the current entry only: kept for every
# attempt it made results.yaml several times larger for what only explains an outdated result.)
# Nor its fingerprint_version: the version is hashed into the fingerprint, so equal fingerprints
# are of one version.
# handler_sha256 and seeds also let findings count attempts with unchanged code and see seeds
# added after an inconclusive result (optional stopping, SPEC section 10).
_HISTORY_PROVENANCE = ("params_sha256", "fingerprint", "seeds", "git_commit", "handler_sha256")


def history_item(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt as a history item (see above); the item's own history is not kept."""
    item: dict[str, Any] = {}
    for key in _HISTORY_TOP:
        value = entry.get(key)
        if value is not None and value != {} and value != []:
            item[key] = value
    item.setdefault("metrics", {})
    prov = entry.get("provenance")
    if isinstance(prov, Mapping):
        for key in _HISTORY_PROVENANCE:
            if prov.get(key) is not None or (key == "git_commit" and key in prov):
                item[key] = prov[key]
    for key in _HISTORY_PROVENANCE:
        if key not in item and (entry.get(key) is not None or key in entry):  # already an item (moved again)
            item[key] = entry[key]
    if "seeds" not in item and isinstance(entry.get("per_seed"), Mapping) and entry["per_seed"]:
        item["seeds"] = list(entry["per_seed"])  # an entry written before fingerprints
    criteria = entry.get("criteria")
    if isinstance(criteria, Mapping):
        inconclusive = [
            str(m) for m, j in criteria.items() if isinstance(j, Mapping) and j.get("level") == "inconclusive"
        ]
        if inconclusive:
            item["inconclusive"] = inconclusive
    elif isinstance(entry.get("inconclusive"), list):  # already an item (moved again)
        item["inconclusive"] = entry["inconclusive"]
    link = entry.get("tracking") or entry.get("wandb")
    if isinstance(link, Mapping):
        kept = {k: link[k] for k in ("tracker", "url", "run_path", "offline_dir") if link.get(k)}
        runs = link.get("runs")
        if isinstance(runs, list) and len(runs) > 1:
            kept["runs"] = [
                {k: r[k] for k in ("url", "run_path", "offline_dir") if isinstance(r, Mapping) and r.get(k)}
                for r in runs
            ]
        if kept:
            item["tracking"] = kept
    error = entry.get("error")
    if isinstance(error, Mapping):
        lines = str(error.get("message") or "").strip().splitlines()
        item["error"] = f"{error.get('type') or error.get('kind') or 'Error'}: {lines[0] if lines else ''}"
    elif isinstance(error, str):
        item["error"] = error
    return item


def _is_attempt(entry: Any) -> bool:
    return isinstance(entry, dict) and "status" in entry and entry.get("status") != "blocked"


def history_after(prev: Any, *, same: bool = False) -> list[dict[str, Any]]:
    """The new entry's history: the replaced attempt first, then its own history, bounded.

    ``same``: the new entry is the replaced attempt itself, re-recorded (a reused result): it is
    not its own history."""
    older = prev.get("history") if isinstance(prev, dict) else None
    rest = [h for h in older if isinstance(h, dict)] if isinstance(older, list) else []
    if same or not _is_attempt(prev):
        # A blocked placeholder is not an attempt; keep what it carried over, if anything.
        return rest[:HISTORY_LIMIT]
    return [history_item(prev), *rest[: HISTORY_LIMIT - 1]]


def fingerprint_of(entry: Any) -> str | None:
    """The fingerprint of an entry or a history item (None when it has none)."""
    if entry.__class__ is not dict and not isinstance(entry, Mapping):
        return None
    prov = entry.get("provenance")
    found = prov.get("fingerprint") if prov.__class__ is dict else entry.get("fingerprint")
    return found if isinstance(found, str) and found else None


def move_to_stale(stale: dict[str, Any], key: str, entry: Any, reason: str) -> None:
    """Put ``entry`` under ``stale[key]`` with its reason; a stale entry already there joins its
    history (newest first, bounded), so an entry that goes stale twice loses nothing."""
    if not isinstance(entry, dict):
        stale[key] = entry
        return
    # "outdated" is relative to today's code: a stale entry is judged again if it ever comes back
    new = {**{k: v for k, v in entry.items() if k != OUTDATED}, STALE_REASON: reason}
    older = stale.get(key)
    if isinstance(older, dict) and _is_attempt(older):
        items = [history_item(older)]
        own = older.get("history") if isinstance(older, dict) else None
        if isinstance(own, list):
            items += [h for h in own if isinstance(h, dict)]
        mine = new.get("history")
        merged = [h for h in mine if isinstance(h, dict)] if isinstance(mine, list) else []
        merged += items
        merged.sort(key=lambda h: str(h.get("finished_at") or ""), reverse=True)
        new["history"] = merged[:HISTORY_LIMIT]
    stale[key] = new


def unstale(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stale entry made current again: the same entry without its stale reason."""
    return {k: v for k, v in entry.items() if k not in (STALE_REASON, OUTDATED)}


def count_entries(doc: Mapping[str, Any]) -> int:
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


def points_in(subs: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """A sweep's ``points:`` mapping in ``subs``, made (with its holder) where missing."""
    holder = subs.get(sub_id)
    if not isinstance(holder, dict):
        holder = subs[sub_id] = {}
    points = holder.get("points")
    if not isinstance(points, dict):
        points = holder["points"] = {}
    return points


def empty_doc(experiment_id: str) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "experiment_id": experiment_id, "sub_experiments": {}, "stale": {}}


def canonical(
    doc: Mapping[str, Any], experiment_id: str, plan: Plan, points_of: Callable[[str], tuple[str, ...]]
) -> dict[str, Any]:
    """The document in SPEC order: header, sub-experiments in plan order, stale."""
    out: dict[str, Any] = {"schema": SCHEMA_VERSION, "experiment_id": experiment_id}
    name = doc.get("name")
    if name is None and plan.has_experiment(experiment_id):
        name = plan.experiment(experiment_id).name
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
    if plan.has_experiment(experiment_id):
        for sub in plan.experiment(experiment_id).sub_experiments:
            if sub.id in subs:
                entry = subs[sub.id]
                ordered[sub.id] = ordered_entry(entry, points_of(sub.id) if sub.sweep else ())
    for sub_id, entry in subs.items():
        if sub_id not in ordered:
            ordered[sub_id] = ordered_entry(entry, ())
    out["sub_experiments"] = ordered
    out["stale"] = doc.get("stale", {})
    return out


# The SPEC order of an entry's keys, per tuple of keys as stored: entries of one plan share a
# handful of key sets, so each entry costs one lookup, not a pass over ENTRY_ORDER and its keys.
_KEY_ORDER: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _key_order(keys: tuple[Any, ...]) -> tuple[Any, ...]:
    order = _KEY_ORDER.get(keys)
    if order is None:
        present = set(keys)
        first = [k for k in ENTRY_ORDER if k in present]
        placed = set(first)
        rest = [k for k in keys if k not in placed and k != "history"]
        order = (*first, *rest, *(("history",) if "history" in present else ()))
        if len(_KEY_ORDER) >= 1024:
            _KEY_ORDER.clear()
        _KEY_ORDER[keys] = order
    return order


def ordered_entry(entry: Any, points_order: tuple[str, ...]) -> Any:
    """``entry`` with its keys in SPEC order (its points in plan order): the entry itself when
    it is in that order already (what is written is never changed)."""
    if not isinstance(entry, dict):
        return entry
    keys = tuple(entry)
    order = _KEY_ORDER.get(keys)  # (a hit, for all but a handful of entries: without a call)
    if order is None:
        order = _key_order(keys)
    points = entry.get("points")
    # (An entry in another order, a hand-edited one or one a mark was added to, is copied into
    # SPEC order; the entries a session records are made in it.  A comprehension: dict(zip(...))
    # builds the same dict in about twice the time, each pair a tuple first.)
    if not isinstance(points, dict):
        return entry if order == keys else {key: entry[key] for key in order}
    out: dict[str, Any] = {key: entry[key] for key in order}
    ordered: dict[str, Any] = {}
    for key in points_order:
        if key in points:
            ordered[key] = ordered_entry(points[key], ())
    for key, value in points.items():
        if key not in ordered:
            ordered[key] = ordered_entry(value, ())
    out["points"] = ordered
    return out


def earlier_attempts(entry: Any, stale: Any = None) -> list[dict[str, Any]]:
    """The earlier attempts of ``entry`` as history items, newest first: its own history and,
    when ``stale`` (its node's entry under ``stale:``) ran under the same params, that attempt and
    its history too.  A seeds change makes a result stale (SPEC section 11) but it is still an
    earlier attempt of the same experiment for counting attempts and for optional stopping
    (SPEC section 10)."""
    if not isinstance(entry, dict):
        return []
    own = entry.get("history")
    items = [h for h in own if isinstance(h, dict)] if isinstance(own, list) else []
    if not (_is_attempt(stale) and stale.get("params") == entry.get("params")):
        return items
    theirs = stale.get("history")
    items += [history_item(stale)]
    items += [h for h in theirs if isinstance(h, dict)] if isinstance(theirs, list) else []
    # (No attempt is in both: an entry's history moves with it, to ``stale:`` and back.)
    return sorted(items, key=lambda h: str(h.get("finished_at") or ""), reverse=True)


def seeds_added_after_inconclusive(entry: Any, stale: Any = None) -> tuple[list[str], int, int] | None:
    """``(criteria, seeds then, seeds now)`` when an earlier attempt of this entry (see
    :func:`earlier_attempts`) was inconclusive on a strict subset of its seeds: seeds were added
    after looking (optional stopping, SPEC section 10), so its interval is optimistic.  None
    otherwise."""
    if not isinstance(entry, dict):
        return None
    per_seed = entry.get("per_seed")
    if not isinstance(per_seed, dict):
        return None
    now = {str(k) for k in per_seed}
    for item in earlier_attempts(entry, stale):
        before, metrics = item.get("seeds"), item.get("inconclusive")
        if isinstance(before, list) and isinstance(metrics, list) and metrics:
            then = {str(k) for k in before}
            if then < now:
                return [str(m) for m in metrics], len(then), len(now)
    return None
