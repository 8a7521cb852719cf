"""Weights & Biases: mode resolution (pytest process) and the tracker (where the handler runs).

Importing this module does not import ``wandb`` (≈0.45 s): that happens in the first
:meth:`WandbTracker.start`, inside the thread whose wait is bounded by the init timeout.

Decisions (SPEC section 7 leaves them open):

* **Log where the handler runs.**  The run is opened in the process that runs the handler (the
  pytest process, a worker process, a Modal container), from the plain settings in
  ``Task.tracking``, so metrics stream live from remote GPUs and nothing is replayed afterwards.
  Remote workers need ``WANDB_API_KEY`` for online mode (:meth:`WandbTracker.worker_env`).
* **One run per sub-experiment (sweep point) and seed**: ``group`` = experiment id,
  ``job_type`` = sub-experiment id, ``name`` = ``<sub_id>[<point>]-seed<k>``.
* **Failures never cost a result and never hang.**  init and finish run in a thread with a
  bounded wait; any W&B exception becomes one warning.  After an init or finish failure W&B is
  switched off for the rest of the process: a dead network would otherwise cost the same
  timeout once per seed.
* ``console="off"``: W&B must not rewire ``sys.stdout``/``stderr`` under pytest's capture.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .base import SWITCHED_OFF, Tracker, TrackerRun, call_with_timeout

if TYPE_CHECKING:
    from ..execution import Task

__all__ = [
    "MODES",
    "WandbRun",
    "WandbTracker",
    "has_credentials",
    "netrc_api_key",
    "project_slug",
    "resolve_mode",
    "sanitize_artifact_name",
]

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_HOST = "api.wandb.ai"
INIT_TIMEOUT = 60.0
FINISH_TIMEOUT = 120.0
# Beyond W&B's own timeouts: our thread join is the backstop, W&B's setting should fire first.
GRACE = 15.0


def _backstop(timeout: float) -> float:
    return timeout + min(GRACE, timeout / 2)


# WANDB_MODE values wandb itself accepts, mapped onto ours.
_ENV_MODES = {
    "online": "online",
    "run": "online",
    "shared": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}

OFFLINE_NOTICE = (
    "mlexp: W&B: no credentials (WANDB_API_KEY or `wandb login`), so runs are logged offline "
    "under wandb/; upload them later with `wandb sync <dir>` (see results.yaml)"
)


# --- mode resolution (the pytest process; no network, no wandb import) -------------------------


def _wandb_host(environ: Mapping[str, str]) -> str:
    base = environ.get("WANDB_BASE_URL", "").strip()
    if base:
        host = urlparse(base if "://" in base else f"https://{base}").hostname
        if host:
            return host
    return DEFAULT_HOST


def _netrc_path(environ: Mapping[str, str]) -> Path | None:
    if environ.get("NETRC"):
        return Path(environ["NETRC"]).expanduser()
    home = environ.get("HOME") or os.path.expanduser("~")
    for name in (".netrc", "_netrc"):  # _netrc: Windows
        path = Path(home) / name
        if path.is_file():
            return path
    return None


def netrc_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The W&B key ``wandb login`` stored in the netrc file, read locally (never the network)."""
    env = os.environ if environ is None else environ
    path = _netrc_path(env)
    if path is None or not path.is_file():
        return None
    host = _wandb_host(env)
    import netrc

    try:
        auth = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        return None
    return auth[2] if auth and auth[2] else None


def has_credentials(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("WANDB_API_KEY", "").strip()) or netrc_api_key(env) is not None


def resolve_mode(
    flag: str, *, stub: bool, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """``(mode, notice)`` for ``--mlexp-wandb flag``: online, offline or disabled.

    An explicit online/offline/disabled wins (also under ``--stub``).  ``auto``: disabled under
    ``--stub``; else ``WANDB_MODE`` where set (``WANDB_DISABLED=true`` counts as disabled); else
    online with credentials, offline (with a one-line ``notice``) without.
    """
    if flag not in MODES:
        raise ValueError(f"--mlexp-wandb must be one of {', '.join(MODES)}, not {flag!r}")
    if flag != "auto":
        return flag, None
    if stub:
        return "disabled", None
    env = os.environ if environ is None else environ
    if env.get("WANDB_DISABLED", "").strip().lower() in ("1", "true", "yes"):
        return "disabled", None
    from_env = env.get("WANDB_MODE", "").strip().lower()
    if from_env in _ENV_MODES:
        return _ENV_MODES[from_env], None
    if has_credentials(env):
        return "online", None
    return "offline", OFFLINE_NOTICE


def project_slug(name: str) -> str:
    """A W&B project name from free text: ``"Foresight: P2"`` -> ``foresight-p2``."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")
    return slug[:128]


def sanitize_artifact_name(name: str) -> str:
    """W&B artifact names allow only letters, digits, ``-``, ``_`` and ``.``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".")
    return clean[:128] or "artifacts"


# --- the tracker (where the handler runs) --------------------------------------------------------


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _not_wandb(record: logging.LogRecord) -> bool:
    return not record.name.startswith("wandb")


def _keep_out_of_pytest_logs() -> None:
    """pytest 9 attaches its log capture to non-propagating loggers such as W&B's, which logs at
    DEBUG into its own ``debug.log``: the same 20 lines a run would fill the "Captured log"
    section of every failing item.  Only pytest's handlers on that logger get the filter."""
    for handler in logging.getLogger("wandb").handlers:
        if type(handler).__module__.startswith("_pytest") and _not_wandb not in handler.filters:
            handler.addFilter(_not_wandb)


class WandbRun(TrackerRun):
    def __init__(self, tracker: WandbTracker, wandb: ModuleType, run: Any, task: Task) -> None:
        self._tracker = tracker
        self._wandb = wandb
        self._run = run
        self._task = task
        self._step = 0
        self._logged = False
        self._log_failed = False

    def _log(self, data: Mapping[str, Any], step: int) -> None:
        if self._log_failed:
            return
        try:
            self._run.log(dict(data), step=step)
            self._logged = True
        except Exception as exc:  # stop logging this run; the result does not depend on it
            self._log_failed = True
            self._tracker.warn(
                f"W&B: logging to the run of {self._task.label} failed ({type(exc).__name__}: {exc}); "
                "later points of that run were not logged"
            )

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        # The runner never moves a step back; clamping here too keeps W&B from dropping rows.
        self._step = self._step if step is None else max(int(step), self._step)
        self._log(metrics, self._step)

    def progress(self, fraction: float, stage: str | None) -> None:
        # At the current step: W&B merges it into that row instead of starting a new step that a
        # later log_metrics(step=...) would then collide with.
        self._log({f"{self._task.sub_id}/progress": fraction}, self._step)

    def _artifact(self, paths: Sequence[Path]) -> None:
        existing = [p for p in paths if p.exists()]
        if not existing:
            return
        task = self._task
        point = f"-{task.point}" if task.point else ""
        art = self._wandb.Artifact(
            sanitize_artifact_name(f"{task.sub_id}{point}-seed{task.seed}"), type="mlexp-artifacts"
        )
        root = Path(task.plan_root)
        for path in existing:
            name = _display_path(path, root)
            if path.is_dir():
                art.add_dir(str(path), name=name)
            else:
                art.add_file(str(path), name=name)
        self._run.log_artifact(art)

    def info(self) -> dict[str, Any]:
        """Where the run is: a URL online, the offline folder and its sync command offline."""
        run = self._run
        if self._task.tracking.get("mode") != "offline":
            # not asked offline: W&B prints a warning when an offline run is asked its URL
            url = getattr(run, "url", None)
            if url:
                return {"url": str(url), "run_path": str(getattr(run, "path", "") or "")}
        folder = None
        settings = getattr(run, "settings", None)
        if settings is not None:
            folder = getattr(settings, "sync_dir", None)
        if not folder:
            files = getattr(run, "dir", None)  # <offline-run>/files
            folder = str(Path(files).parent) if files else None
        if not folder:
            return {}
        shown = _display_path(Path(folder), Path(self._task.root))
        return {"offline_dir": shown, "sync": f"wandb sync {shlex.quote(shown)}"}

    def finish(
        self, summary: Mapping[str, Any], *, artifacts: Sequence[Path] = (), failed: bool = False
    ) -> dict[str, Any]:
        tracker, task = self._tracker, self._task
        try:
            if self._logged and not self._log_failed:
                # Commit the last history row first: committed later (by finish), it would
                # overwrite the final metrics in the summary with the last logged values.
                self._run.log({}, step=self._step, commit=True)
            self._run.summary.update(dict(summary))
        except Exception as exc:
            tracker.warn(f"W&B: writing the summary of {task.label} failed: {type(exc).__name__}: {exc}")
        try:
            self._artifact(artifacts)
        except Exception as exc:
            tracker.warn(f"W&B: uploading the artifacts of {task.label} failed: {type(exc).__name__}: {exc}")
        try:
            info = self.info()
        except Exception:
            info = {}
        timeout = _backstop(float(task.tracking.get("finish_timeout") or FINISH_TIMEOUT))
        try:
            call_with_timeout(lambda: self._run.finish(exit_code=1 if failed else 0), timeout, "W&B finish")
        except Exception as exc:
            tracker.disable(f"finishing the run of {task.label} failed ({type(exc).__name__}: {exc})")
        return info


class WandbTracker(Tracker):
    """One per process; opens a W&B run per seed from ``task.tracking``."""

    name = "W&B"
    key = "wandb"
    env_vars = ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY")

    def __init__(self) -> None:
        super().__init__()
        self._wandb: ModuleType | None = None
        self._broken: str | None = None
        self._finish_timeout = FINISH_TIMEOUT
        self._state_lock = threading.Lock()

    @property
    def broken(self) -> str | None:
        return self._broken

    def disable(self, why: str) -> None:
        with self._state_lock:
            first = self._broken is None
            self._broken = self._broken or why
        if first:
            self.warn(f"W&B: {why}; W&B {SWITCHED_OFF} (results are kept)")

    def _import(self) -> ModuleType:
        if self._wandb is None:
            self._wandb = importlib.import_module("wandb")
        return self._wandb

    def start(self, task: Task) -> WandbRun | None:
        if self._broken is not None:
            return None
        t = task.tracking
        mode = str(t.get("mode") or "offline")
        if mode == "disabled":
            return None
        folder: str | None = None
        if t.get("dir"):
            path = Path(str(t["dir"]))
            if not path.is_absolute():
                path = Path(task.root) / path  # relative to the project root: works remotely too
            path.mkdir(parents=True, exist_ok=True)
            folder = str(path)
        init_timeout = float(t.get("init_timeout") or INIT_TIMEOUT)
        finish_timeout = float(t.get("finish_timeout") or FINISH_TIMEOUT)
        self._finish_timeout = finish_timeout

        _keep_out_of_pytest_logs()

        def _init() -> Any:
            wandb = self._import()
            settings = wandb.Settings(
                init_timeout=init_timeout,
                finish_timeout=finish_timeout,
                console="off",
                silent=True,
            )
            return wandb.init(
                project=t.get("project") or None,
                entity=t.get("entity") or None,
                group=t.get("group"),
                job_type=t.get("job_type"),
                name=t.get("name"),
                config=dict(t.get("config") or {}),
                mode=mode,  # explicit: WANDB_MODE changed after the first init has no effect
                dir=folder,
                reinit="create_new",  # one run per seed; keep the object, wandb.run is not set
                settings=settings,
            )

        try:
            run = call_with_timeout(_init, _backstop(init_timeout), "W&B init")
        except ModuleNotFoundError as exc:
            self.disable(f"wandb is not installed where {task.label} runs ({exc})")
            return None
        except Exception as exc:
            self.disable(f"starting the run of {task.label} failed ({type(exc).__name__}: {exc})")
            return None
        return WandbRun(self, self._import(), run, task)

    def teardown(self) -> None:
        wandb = self._wandb
        if wandb is None:
            return
        self._wandb = None
        teardown = getattr(wandb, "teardown", None)
        if teardown is None:
            return
        try:
            call_with_timeout(teardown, _backstop(self._finish_timeout), "W&B teardown")
        except Exception as exc:
            self.warn(f"W&B: teardown failed ({type(exc).__name__}: {exc}); offline runs may be incomplete")

    def worker_env(
        self, tracking: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """What a remote worker needs in its environment for ``tracking`` (the local values).

        Online runs need the API key: from ``WANDB_API_KEY``, else from the netrc entry that
        ``wandb login`` wrote.  A Modal executor passes this as an ephemeral secret unless a
        secret named in ``modal.secrets`` provides it.  Offline runs need nothing.
        """
        env = os.environ if environ is None else environ
        if tracking.get("mode") != "online":
            return {}
        out = {name: env[name] for name in self.env_vars if env.get(name)}
        if "WANDB_API_KEY" not in out:
            key = netrc_api_key(env)
            if key:
                out["WANDB_API_KEY"] = key
        return out
