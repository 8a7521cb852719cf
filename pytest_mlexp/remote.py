"""The worker side of the ``process`` and ``modal`` executors.

``python -m pytest_mlexp.remote TASK.json OUTCOME.json [--fixtures FIXTURES.pickle]`` runs one
seed and writes its outcome; :func:`modal_entry` is the body of the Modal function and runs the
same code in a container.  Both go through :func:`run_task`.  Standard library and
``execution`` only: this is what a worker or container imports before the handler does.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .execution import Task, import_handler, run_seed
from .records import SeedOutcome, now_iso


class FixtureError(Exception):
    """A fixture value could not be unpickled in the worker."""


def pack_fixtures(values: Mapping[str, Any], executor: str) -> bytes:
    """Pickle fixture values one by one, so a failure names the fixture (in the pytest process)."""
    packed: dict[str, bytes] = {}
    for name, value in values.items():
        try:
            packed[name] = pickle.dumps(value)
        except Exception as exc:
            raise FixtureError(
                f"fixture {name!r} could not be sent to the {executor} executor: "
                f"{type(exc).__name__}: {exc}; use the local executor or make it picklable"
            ) from exc
    return pickle.dumps(packed)


def unpack_fixtures(blob: bytes) -> dict[str, Any]:
    packed = pickle.loads(blob)
    out: dict[str, Any] = {}
    for name, data in packed.items():
        try:
            out[name] = pickle.loads(data)
        except Exception as exc:
            raise FixtureError(
                f"fixture {name!r} could not be unpickled in the worker: {type(exc).__name__}: {exc} "
                "(a value whose class is defined in a conftest.py or test module cannot be imported "
                "there); use the local executor or define the class in an importable module"
            ) from exc
    return out


def run_task(
    task_data: Mapping[str, Any], fixtures_blob: bytes | None = None, *, follow: bool = False
) -> dict[str, Any]:
    """One seed: a Task dict (and pickled fixtures) in, the outcome as plain data out
    (``SeedOutcome.to_dict()``; handler errors included, with their traceback).

    ``follow``: also append what the handler logs to the workdir's progress file, which the
    pytest process reads for its live line (process executor)."""
    return run_outcome(Task.from_dict(task_data), fixtures_blob, follow=follow).to_dict()


def run_outcome(task: Task, fixtures_blob: bytes | None = None, *, follow: bool = False) -> SeedOutcome:
    """:func:`run_task`, as the typed record."""
    started = now_iso()
    fixtures: dict[str, Any] = {}
    if fixtures_blob:
        try:
            fixtures = unpack_fixtures(fixtures_blob)
        except FixtureError as exc:
            return SeedOutcome.failure(task.seed, "fixture", exc, started_at=started)
    try:
        handler = import_handler(task)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a module that calls sys.exit() on import is its error too
        return SeedOutcome.failure(task.seed, "import", exc, started_at=started)
    sinks: tuple[Any, ...] = ()
    if follow and task.progress_file:
        from .progress import file_sinks

        sinks = file_sinks(Path(task.progress_file))
    return run_seed(task, handler, fixtures=fixtures, metric_sinks=sinks[:1], progress_sinks=sinks[1:])


def _jsonable(value: Any) -> Any:
    return repr(value)


def write_outcome(path: Path, outcome: Mapping[str, Any]) -> None:
    """Write atomically: the parent never reads half an outcome from a worker killed mid-write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(outcome, default=_jsonable), encoding="utf-8")
    os.replace(tmp, path)


def _watch_parent(parent: int) -> None:
    """Exit when pytest is gone: workers run in their own session, so nothing else stops an
    orphan (pytest killed with SIGKILL, a crashed xdist worker)."""

    def _loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=_loop, name="mlexp-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    blob: bytes | None = None
    if "--fixtures" in args:
        i = args.index("--fixtures")
        blob = Path(args[i + 1]).read_bytes()
        del args[i : i + 2]
    if len(args) != 2:
        print(
            "usage: python -m pytest_mlexp.remote TASK.json OUTCOME.json [--fixtures FILE]", file=sys.stderr
        )
        return 2
    parent = os.environ.get("MLEXP_PARENT_PID")
    if parent and parent.isdigit():
        _watch_parent(int(parent))
    task_data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    outcome = run_task(task_data, blob, follow=True)
    write_outcome(Path(args[1]), outcome)
    return 0


# --- Modal ----------------------------------------------------------------------------------------


def collect_artifacts(task: Task, settings: Mapping[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Files the handler wrote: small ones as bytes (they travel with the result), larger ones
    copied to the artifacts volume (``{relative path: path on the volume}``)."""
    limit = int(settings.get("max_artifact_bytes") or 100 * 2**20)
    mount = settings.get("volume_mount")
    prefix = str(settings.get("volume_prefix") or "")
    root = Path(task.plan_root)
    small: dict[str, bytes] = {}
    large: dict[str, str] = {}
    folder = Path(task.artifacts_dir)
    if not folder.is_dir():
        return small, large
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.stat().st_size <= limit:
            small[rel] = path.read_bytes()
        elif mount:
            dest = Path(mount, prefix, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            large[rel] = f"{prefix}/{rel}" if prefix else rel
        else:
            large[rel] = ""  # no volume: it cannot come back; the caller says so
    return small, large


def offline_run_files(task: Task, outcome: Mapping[str, Any]) -> dict[str, bytes]:
    """The files of an offline W&B run written in the container (relative to the project
    root), so they travel back with the result (``outcome``: as plain data)."""
    info = outcome.get("tracking")
    folder = info.get("offline_dir") if isinstance(info, Mapping) else None
    if not folder:
        return {}
    root = Path(task.root)
    base = Path(str(folder)) if Path(str(folder)).is_absolute() else root / str(folder)
    out: dict[str, bytes] = {}
    if base.is_dir():
        for path in base.rglob("*"):
            if path.is_file():
                try:
                    out[path.relative_to(root).as_posix()] = path.read_bytes()
                except (OSError, ValueError):
                    continue
    return out


def run_task_with_files(
    task_data: Mapping[str, Any],
    fixtures_blob: bytes | None = None,
    *,
    max_artifact_bytes: int = 100 * 2**20,
) -> dict[str, Any]:
    """:func:`run_task` for a back end that does not share this machine's files with the pytest
    process: the outcome as plain data plus the files the seed wrote, as bytes
    (``artifact_files``: artifacts up to ``max_artifact_bytes`` each, relative to the plan
    folder; ``artifact_volume``: the larger ones, not kept; ``wandb_files``: an offline W&B
    run).  On the pytest side, ``pytest_mlexp.receive_outcome(task, data)`` writes them in place
    and returns the outcome."""
    task = Task.from_dict(task_data)
    data = run_outcome(task, fixtures_blob).to_dict()
    small, large = collect_artifacts(task, {"max_artifact_bytes": max_artifact_bytes})
    data["artifact_files"] = small
    data["artifact_volume"] = large
    data["wandb_files"] = offline_run_files(task, data)
    return data


def modal_entry(
    task_data: Mapping[str, Any], fixtures_blob: bytes | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The Modal function's body (registered at run time by the modal executor): the outcome as
    plain data, plus the files that travel back with it (``artifact_files``, ``artifact_volume``,
    ``wandb_files``; the executor takes them out before reading the outcome)."""
    task = Task.from_dict(task_data)
    outcome = run_outcome(task, fixtures_blob)
    small, large = collect_artifacts(task, settings)
    if large and settings.get("volume_name"):
        try:
            import modal

            modal.Volume.from_name(str(settings["volume_name"])).commit()
        except Exception as exc:  # the files are still committed when the container stops
            outcome = outcome.with_warnings([f"volume commit failed: {exc}"])
    data = outcome.to_dict()
    data["artifact_files"] = small
    data["artifact_volume"] = large
    data["wandb_files"] = offline_run_files(task, data)
    return data


if __name__ == "__main__":
    sys.exit(main())
