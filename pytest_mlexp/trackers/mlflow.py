"""MLflow, built in (``--mlexp-tracker mlflow``): the store (pytest process) and the tracker.

Importing this module does not import ``mlflow`` (≈2 s): that happens on first use, in the
process that logs, and only when the session's tracker is MLflow.

Decisions (SPEC section 13; MLflow 3 facts in the README):

* **One run per sub-experiment (sweep point) and seed**, made with ``MlflowClient.create_run``:
  it stays ``RUNNING`` while the handler runs and is ended with ``set_terminated`` as
  ``FINISHED`` or ``FAILED``.  (``mlflow.start_run`` plus ``end_run`` would mark it finished at
  once.)  Experiment = the project, as for W&B; the run name, and the tags ``group`` (experiment
  id) and ``job_type`` (sub-experiment id), as for W&B.
* **The store is made once, in the pytest process, before any worker starts**: several
  processes creating a fresh sqlite store at once fail in MLflow's schema migration.  Without
  ``MLFLOW_TRACKING_URI`` it is ``sqlite:///<rootdir>/mlruns.db`` with artifacts under
  ``<rootdir>/mlartifacts`` (absolute paths, so every process finds them).  The experiment is
  found or made there too, and its id travels with each task.
* **Where the run is logged**: where the handler runs when that process can reach the store
  (an http(s) server, a database server, or a local file on a machine that shares this one's
  files); else (a local store and Modal, or a cluster without a shared file system: the
  executor's ``shares_filesystem``) the pytest process logs each seed's run from its outcome
  when it comes back.
* **Returned metrics are logged one step after the last logged step**, so that MLflow's
  "latest" value of a key is the one results.yaml records.
* **A failure never costs a result and is not retried per seed**: the first failure to open the
  store or a run, or to end one, switches MLflow off for the rest of that process, with one
  warning.  MLflow's own warnings and INFO lines (schema migration, deprecations) are kept out
  of the terminal.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shlex
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .base import SWITCHED_OFF, Tracker, TrackerError, TrackerRun, call_with_timeout

if TYPE_CHECKING:
    from ..execution import Task

__all__ = [
    "DEFAULT_ARTIFACTS",
    "DEFAULT_STORE",
    "MlflowRun",
    "MlflowTracker",
    "is_local_store",
    "metric_key",
    "normalize_uri",
    "run_url",
    "store_location",
    "ui_command",
]

DEFAULT_STORE = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
# MLflow's limits (mlflow/utils/validation.py)
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
FLUSH_S = 1.0  # logged points are sent at most once a second (one write, not one per call)

# One lock for every MLflow call of this process: the warning filters and logger levels set
# around a call are process-wide, and the client is then used by one thread at a time.
_LOCK = threading.RLock()


# --- where the store is (the pytest process; no mlflow import) ----------------------------------


def normalize_uri(uri: str, cwd: str | os.PathLike[str]) -> str:
    """``uri`` with a relative local path made absolute (``sqlite:///mlruns.db``,
    ``file:./mlruns``, ``./mlruns``), so that every process finds the same store."""
    uri = uri.strip()
    if _is_databricks(uri):
        return uri
    base = Path(cwd)
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and not path.startswith("/") and path != ":memory:":
            return "sqlite:///" + str((base / path).resolve())
        return uri
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = parsed.path if parsed.netloc in ("", "localhost") else ""
        if uri.startswith("file:") and not uri.startswith("file:/"):  # file:./mlruns
            path = uri[len("file:") :]
        if path and not Path(path).is_absolute():
            return (base / path).resolve().as_uri()
        return uri
    if not parsed.scheme or (len(parsed.scheme) == 1 and os.name == "nt"):  # a plain path (or C:\\)
        return (base / uri).resolve().as_uri()
    return uri


def _is_databricks(uri: str) -> bool:
    return uri == "databricks" or uri.startswith(("databricks:", "databricks-uc"))


def is_local_store(uri: str) -> bool:
    """Whether the store is a file on this machine (sqlite or MLflow's file store), which a worker
    on another machine cannot reach."""
    if _is_databricks(uri):
        return False
    scheme = urlparse(uri).scheme
    return scheme in ("sqlite", "file", "") or (len(scheme) == 1 and os.name == "nt")


def store_location(environ: Mapping[str, str], root: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(tracking URI, artifact root or None)``: ``MLFLOW_TRACKING_URI`` (relative paths made
    absolute), else ``sqlite:///<root>/mlruns.db`` with artifacts in ``<root>/mlartifacts``."""
    given = environ.get("MLFLOW_TRACKING_URI", "").strip()
    if given:
        return normalize_uri(given, os.getcwd()), None
    folder = Path(root).resolve()
    return f"sqlite:///{folder / DEFAULT_STORE}", str(folder / DEFAULT_ARTIFACTS)


def ui_command(uri: str, root: str | os.PathLike[str]) -> str | None:
    """For a local store: the command that serves it (``mlflow ui --backend-store-uri ...``), with
    the path relative to the project root when the store is inside it (results files are
    committed: no one's home folder in them); None for a server."""
    if not is_local_store(uri):
        return None
    shown = uri
    prefix = "sqlite:///" if uri.startswith("sqlite:///") else None
    path = uri[len(prefix) :] if prefix else (urlparse(uri).path if uri.startswith("file:") else uri)
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        rel = None
    if rel is not None:
        shown = f"{prefix}{rel}" if prefix else rel
    return f"mlflow ui --backend-store-uri {shlex.quote(shown)}"


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page on an MLflow server (http or https URIs); None where there is no server."""
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# --- names and values as MLflow takes them -----------------------------------------------------

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")


def metric_key(name: str) -> str:
    """A metric, param or tag key MLflow accepts: letters, digits, ``_ - . / space``; no empty or
    ``.``/``..`` path parts (MLflow refuses names that resolve to other names)."""
    clean = _BAD_KEY_CHARS.sub("_", str(name))
    parts = ["_" if p in (".", "..") else p for p in clean.split("/") if p]
    return "/".join(parts)[:MAX_KEY] or "_"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow params: ``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": "0.1"}``."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[metric_key(name)] = str(value)[:MAX_PARAM_VALUE]
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _ms(stamp: Any) -> int | None:
    """``2026-01-31T12:00:00Z`` (results.yaml's times) as epoch milliseconds."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    """An exception in one line: MLflow's messages run to several hundred characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 240 else text[:237] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Around every MLflow call: its Python warnings (deprecations, the file store's
    maintenance notice) and INFO lines (schema migration) stay out of the terminal, and a
    ``filterwarnings = error`` in the user's pytest configuration cannot turn them into
    failures of the tracker."""
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            if lg.getEffectiveLevel() < logging.WARNING:
                lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


# --- the tracker --------------------------------------------------------------------------------


class MlflowRun(TrackerRun):
    """One MLflow run; points are buffered and sent in batches (see ``FLUSH_S``)."""

    def __init__(self, tracker: MlflowTracker, client: Any, run_id: str, task: Task) -> None:
        self._tracker = tracker
        self._client = client
        self.run_id = run_id
        self._task = task
        self._step = -1  # the last step logged (-1: none yet)
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()
        self._log_failed = False

    def _metric(self, key: str, value: float, step: int) -> Any:
        from mlflow.entities import Metric

        return Metric(metric_key(key), value, int(time.time() * 1000), step)

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        step = max(self._step, 0) if step is None else max(int(step), self._step)
        self._step = step
        for key, value in metrics.items():
            number = _number(value)
            if number is not None:  # strings and None are information: they live in results.yaml
                self._pending.append(self._metric(key, number, step))
        if len(self._pending) >= METRICS_PER_BATCH or time.monotonic() - self._last_flush >= FLUSH_S:
            self._flush()

    def progress(self, fraction: float, stage: str | None) -> None:
        self.log({f"{self._task.sub_id}/progress": fraction}, None)

    def _flush(self, tags: Sequence[Any] = ()) -> None:
        """Send the pending points (and ``tags``) in as few writes as MLflow's batch limits allow:
        each is a transaction of its own, tens of milliseconds on a sqlite store."""
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if not (pending or tags) or self._log_failed:
            return
        try:
            with _quiet():
                m, t = 0, 0
                while m < len(pending) or t < len(tags):
                    self._client.log_batch(
                        self.run_id,
                        metrics=pending[m : m + METRICS_PER_BATCH],
                        tags=list(tags[t : t + PARAMS_PER_BATCH]),
                    )
                    m, t = m + METRICS_PER_BATCH, t + PARAMS_PER_BATCH
        except Exception as exc:  # stop logging this run; the result does not depend on it
            self._log_failed = True
            self._tracker.warn(
                f"MLflow: logging to the run of {self._task.label} failed ({_short(exc)}); "
                "later points of that run were not logged"
            )

    def _tags(self, summary: Mapping[str, Any]) -> dict[str, str]:
        """What is not a number in the summary (status, finding, error, criteria levels)."""
        tags: dict[str, str] = {}
        for key, value in summary.items():
            if isinstance(value, Mapping):  # criteria: {metric: {level, passed, rule, ...}}
                for metric, verdict in value.items():
                    if isinstance(verdict, Mapping):
                        text = f"{verdict.get('level')} ({verdict.get('rule')})"
                        tags[metric_key(f"{key}/{metric}")] = text[:MAX_TAG_VALUE]
            elif _number(value) is None and value is not None:
                tags[metric_key(key)] = str(value)[:MAX_TAG_VALUE]
        return tags

    def finish(
        self, summary: Mapping[str, Any], *, artifacts: Sequence[Path] = (), failed: bool = False
    ) -> dict[str, Any]:
        from mlflow.entities import RunTag

        task, tracker = self._task, self._tracker
        # The returned metrics one step after the last logged one: MLflow shows a key's value at
        # its highest step as "latest", which must be the value results.yaml records.
        final = self._step + 1
        for key, value in summary.items():
            number = _number(value)
            if number is not None:
                self._pending.append(self._metric(key, number, final))
        # the last points, the returned metrics and the summary's tags: one write
        self._flush([RunTag(k, v) for k, v in self._tags(summary).items()])
        try:
            self._artifacts(artifacts)
        except Exception as exc:
            tracker.warn(f"MLflow: uploading the artifacts of {task.label} failed: {_short(exc)}")
        replay = task.tracking.get("replay") or {}
        end = _ms(replay.get("finished_at")) if replay else None
        try:
            tracker.call(
                lambda: self._client.set_terminated(
                    self.run_id, status="FAILED" if failed else "FINISHED", end_time=end
                ),
                task,
                "set_terminated",
            )
        except Exception as exc:
            tracker.disable(f"ending the run of {task.label} failed ({_short(exc)})")
        return self.info()

    def _artifacts(self, paths: Sequence[Path]) -> None:
        root = Path(self._task.plan_root)
        for path in paths:
            if not path.exists():
                continue
            try:
                rel = path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = path.name
            with _quiet():
                if path.is_dir():
                    self._client.log_artifacts(self.run_id, str(path), artifact_path=rel)
                else:
                    folder = rel.rpartition("/")[0]
                    self._client.log_artifact(self.run_id, str(path), artifact_path=folder or None)

    def info(self) -> dict[str, Any]:
        """Where the run is: a link on a server; on a local store its id and how to serve it."""
        t = self._task.tracking
        experiment_id = str(t.get("experiment_id") or "")
        out: dict[str, Any] = {"run_path": f"{experiment_id}/{self.run_id}"}
        url = run_url(str(t.get("uri") or ""), experiment_id, self.run_id)
        if url:
            out["url"] = url
        elif t.get("ui"):
            out["ui"] = t["ui"]
            out["ui_url"] = f"{UI_ADDRESS}/#/experiments/{experiment_id}/runs/{self.run_id}"
        return out


class MlflowTracker(Tracker):
    """One per process; opens an MLflow run per seed from ``task.tracking``."""

    name = "MLflow"
    key = "mlflow"
    env_vars = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_ALLOW_FILE_STORE",
    )

    def __init__(self) -> None:
        super().__init__()
        self._mlflow: ModuleType | None = None
        self._clients: dict[str, Any] = {}
        self._experiments: dict[tuple[str, str], str] = {}
        self._broken: str | None = None
        self._state_lock = threading.Lock()
        self.uri: str | None = None  # the pytest process's store (prepare)
        self.artifact_root: str | None = None
        self.root: str | None = None

    @property
    def broken(self) -> str | None:
        return self._broken

    def disable(self, why: str) -> None:
        with self._state_lock:
            first = self._broken is None
            self._broken = self._broken or why
        if first:
            self.warn(f"MLflow: {why}; MLflow {SWITCHED_OFF} (results are kept)")

    def _import(self) -> ModuleType:
        if self._mlflow is None:
            with _quiet():
                self._mlflow = importlib.import_module("mlflow")
        return self._mlflow

    def client(self, uri: str) -> Any:
        """The process's client for ``uri`` (opening it creates a fresh sqlite store's tables)."""
        got = self._clients.get(uri)
        if got is None:
            mlflow = self._import()
            with _quiet():
                got = mlflow.MlflowClient(tracking_uri=uri)
            self._clients[uri] = got
        return got

    def call(self, fn: Any, task: Task | None, what: str) -> Any:
        """``fn()`` under ``_quiet``; bounded in time when the store is a server (a dead network
        must cost one timeout, not a hang)."""
        uri = str(task.tracking.get("uri") if task is not None else self.uri or "")
        if is_local_store(uri):
            with _quiet():
                return fn()
        # In a helper thread, without the process lock (a call that hangs must not hold it) and
        # without touching the warning filters (not thread-safe): a server's client is quiet.
        timeout = float((task.tracking.get("init_timeout") if task is not None else None) or 60.0)
        return call_with_timeout(fn, timeout + 15.0, f"MLflow {what}")

    # --- the pytest process -----------------------------------------------------------------------
    def prepare(self, uri: str, artifact_root: str | None, root: str) -> None:
        """Open (and so create) the store once, in the pytest process, before any worker starts.
        Raises on failure (the caller says so in one line and switches tracking off)."""
        self.uri, self.artifact_root, self.root = uri, artifact_root, root
        if artifact_root is not None:
            Path(artifact_root).mkdir(parents=True, exist_ok=True)
        client = self.client(uri)
        # A query makes the store create its tables now (a fresh sqlite file is migrated here).
        self.call(lambda: client.search_experiments(max_results=1), None, "opening the store")

    def experiment_id(self, uri: str, name: str, artifact_root: str | None) -> str:
        """The id of the experiment called ``name``, made when missing (restored when deleted);
        another process making it at the same moment is fine."""
        key = (uri, name)
        found = self._experiments.get(key)
        if found is not None:
            return found
        client = self.client(uri)

        def find_or_make() -> str:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                try:
                    return str(client.create_experiment(name, artifact_location=artifact_root))
                except Exception:
                    exp = client.get_experiment_by_name(name)  # made by another process meanwhile
                    if exp is None:
                        raise
            if getattr(exp, "lifecycle_stage", "active") == "deleted":
                client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)

        found = str(self.call(find_or_make, None, "finding the experiment"))
        self._experiments[key] = found
        return found

    def task_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The store and experiment every task needs: its URI, the experiment's id (found or made
        here, once per project), whether the store is a local file, and how to serve it."""
        if self.uri is None:
            raise TrackerError("the MLflow store was not prepared")
        if self._broken is not None:
            raise TrackerError(self._broken)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or str(settings.get("project") or "mlexp")
        experiment_id = self.experiment_id(self.uri, name, self.artifact_root)
        out = dict(settings)
        out.update(
            uri=self.uri,
            experiment=name,
            experiment_id=experiment_id,
            local_store=is_local_store(self.uri),
        )
        ui = ui_command(self.uri, self.root or os.getcwd())
        if ui:
            out["ui"] = ui
        return out

    # --- where the run is logged ----------------------------------------------------------------------
    def start(self, task: Task) -> MlflowRun | None:
        if self._broken is not None:
            return None
        t = task.tracking
        uri = str(t.get("uri") or "")
        replay = t.get("replay") or {}
        try:
            client = self.client(uri)
            experiment_id = str(t.get("experiment_id") or "") or self.experiment_id(
                uri, str(t.get("experiment") or t.get("project") or "mlexp"), None
            )
            tags = {
                "group": str(t.get("group") or ""),
                "job_type": str(t.get("job_type") or ""),
                "mlexp.seed": str(task.seed),
            }
            if task.point:
                tags["mlexp.point"] = task.point
            if task.stub:
                tags["mlexp.stub"] = "true"
            start_ms = _ms(replay.get("started_at")) if replay else None

            def create() -> Any:
                return client.create_run(
                    experiment_id, start_time=start_ms, tags=tags, run_name=str(t.get("name") or "")
                )

            run = self.call(create, task, "create_run")
        except ModuleNotFoundError as exc:
            self.disable(f"mlflow is not installed where {task.label} runs ({exc})")
            return None
        except Exception as exc:
            self.disable(f"starting the run of {task.label} failed ({_short(exc)})")
            return None
        logged = MlflowRun(self, client, run.info.run_id, task)
        try:
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in flatten(dict(t.get("config") or {})).items()]
            with _quiet():
                for start in range(0, len(params), PARAMS_PER_BATCH):
                    client.log_batch(run.info.run_id, params=params[start : start + PARAMS_PER_BATCH])
        except Exception as exc:
            self.warn(f"MLflow: logging the params of {task.label} failed: {_short(exc)}")
        return logged

    def worker_env(
        self, tracking: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """A remote worker needs the server's credentials; a local store needs nothing (the
        pytest process logs for workers that cannot reach it)."""
        if tracking.get("local_store"):
            return {}
        return super().worker_env(tracking, environ)
