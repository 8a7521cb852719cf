"""Experiment tracking (SPEC section 7): W&B by default, or a tracker a plugin's hook returns.

Two halves, in two places:

* :class:`SessionTracking` (the pytest process): decides the mode, the project and the
  per-task settings once, and puts them in ``Task.tracking`` as plain data.
* :class:`TrackedRun` (where the handler runs, via ``execution.run_seed``): builds the tracker
  from those settings, opens one run per seed, feeds it the runner's metrics and progress, and
  closes it with the final metrics, criteria verdicts and artifacts.  It never raises: every
  tracker failure becomes a line in ``outcome["warnings"]``, which pytest prints once.

Standard library only at import: workers import this before the handler.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import SWITCHED_OFF, Tracker, TrackerError, TrackerRun, TrackerTimeout, call_with_timeout

if TYPE_CHECKING:
    import pytest

    from ..execution import Task
    from ..model import Criterion, Plan, SubExperiment
    from ..records import SeedOutcome
    from ..runner import MetricSink, ProgressSink

__all__ = [
    "TRACKERS",
    "SessionTracking",
    "TrackedRun",
    "Tracker",
    "TrackerError",
    "TrackerRun",
    "TrackerTimeout",
    "call_with_timeout",
    "criterion_from_data",
    "criterion_to_data",
    "open_mlflow_store",
    "register",
    "replay_outcome",
    "teardown_all",
    "worker_env",
]

# The trackers of this process, by import path: one instance per process, so W&B's service is
# started once and reused by every seed (10-20 ms a run instead of ~0.5 s).
_ACTIVE: dict[str, Tracker] = {}
_ACTIVE_LOCK = threading.Lock()


def register(tracker: Tracker) -> None:
    """Use this instance for its class in this process (the pytest process registers the
    hook's instance, so local runs use it rather than a fresh one)."""
    with _ACTIVE_LOCK:
        _ACTIVE[tracker.import_path()] = tracker


def tracker_for(path: str) -> Tracker:
    """The process's tracker for ``module:qualname``, imported and built on first use."""
    with _ACTIVE_LOCK:
        got = _ACTIVE.get(path)
        if got is None:
            module, _, qualname = path.partition(":")
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            got = obj()
            if not isinstance(got, Tracker):
                raise TrackerError(f"{path} is not a pytest_mlexp.trackers.Tracker")
            _ACTIVE[path] = got
        return got


def teardown_all() -> list[str]:
    """Tear down every tracker this process used; returns their last warnings."""
    with _ACTIVE_LOCK:
        trackers = list(_ACTIVE.values())
        _ACTIVE.clear()
    out: list[str] = []
    for tracker in trackers:
        try:
            tracker.teardown()
        except Exception as exc:
            tracker.warn(f"{tracker.name}: teardown failed: {type(exc).__name__}: {exc}")
        out.extend(tracker.drain_warnings())
    return out


def worker_env(tracking: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """For remote executors: the environment (name -> local value) a worker needs so that the
    tracker can log from there (for W&B online: ``WANDB_API_KEY``, also when it is only in the
    netrc file).  Empty when tracking is off or offline."""
    path = tracking.get("tracker")
    if not path:
        return {}
    try:
        return tracker_for(str(path)).worker_env(tracking, environ)
    except Exception:
        return {}


# --- criteria as plain data (they travel to the worker, which judges each seed) ---------------


def criterion_to_data(c: Criterion) -> dict[str, Any]:
    from ..criteria import criterion_to_data as to_data

    return to_data(c)


def criterion_from_data(data: Mapping[str, Any]) -> Criterion:
    from ..criteria import criterion_from_data as from_data

    return from_data(data)


def _verdicts(task: Task, metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """This seed's values judged by the sub-experiment's criteria (the item's verdict, over all
    seeds, is in results.yaml; a run only ever sees its own seed)."""
    from ..criteria import Measurements, judge_measured

    out: dict[str, dict[str, Any]] = {}
    for data in task.tracking.get("criteria") or ():
        c = criterion_from_data(data)
        if c.compares_with is not None:
            continue  # the other sub-experiment's values are not here: judged in results.yaml only
        j = judge_measured(c, Measurements({}, metrics), stub=task.stub)
        out[c.metric] = {
            "value": j.value,
            "rule": j.rule,
            "level": j.level,
            "passed": j.passed,
            "borderline": j.borderline,
        }
    return out


def run_summary(task: Task, outcome: SeedOutcome) -> dict[str, Any]:
    """The run's summary: final metrics, the criteria verdicts, status, finding, error."""
    p = f"{task.sub_id}/"
    result = outcome.result
    metrics = dict(result["metrics"]) if result is not None else {}
    summary: dict[str, Any] = {p + k: v for k, v in metrics.items()}
    summary[p + "status"] = outcome.status
    if result is not None and result.get("finding"):
        summary[p + "finding"] = result["finding"]
    if outcome.error:
        err = outcome.error
        summary[p + "error"] = f"{err.get('type', 'Error')}: {err.get('message', '')}"[:1000]
    summary[p + "duration_s"] = outcome.duration_s
    if outcome.ok:
        verdicts = _verdicts(task, metrics)
        if verdicts:
            summary[p + "criteria"] = verdicts
            summary[p + "criteria_met"] = all(v["passed"] for v in verdicts.values())
    from ..secrets import default_scrubber, secret_param_values

    scrubbed: dict[str, Any] = (
        default_scrubber().extended(secret_param_values(task.params)).scrub_obj(summary)
    )
    return scrubbed


class TrackedRun:
    """The tracker's run around one seed (see module docstring).  Never raises, except
    KeyboardInterrupt."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.tracker: Tracker | None = None
        self.run: TrackerRun | None = None
        self.warnings: list[str] = []
        try:
            self.tracker = tracker_for(str(task.tracking["tracker"]))
            self.run = self.tracker.start(task)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            name = self.tracker.name if self.tracker is not None else str(task.tracking.get("tracker"))
            self.warnings.append(
                f"{name}: no run for {task.label}: {type(exc).__name__}: {exc} (the result is kept)"
            )
            self.run = None

    @property
    def metric_sinks(self) -> tuple[MetricSink, ...]:
        return (self._log,) if self.run is not None else ()

    @property
    def progress_sinks(self) -> tuple[ProgressSink, ...]:
        return (self._progress,) if self.run is not None else ()

    def _failed(self, what: str, exc: BaseException) -> None:
        name = self.tracker.name if self.tracker is not None else "tracker"
        self.warnings.append(f"{name}: {what} failed for {self.task.label}: {type(exc).__name__}: {exc}")
        self.run = None  # a run that failed once is left alone; the handler goes on

    def _log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step)
        except Exception as exc:
            self._failed("logging", exc)

    def _progress(self, fraction: float, stage: str | None) -> None:
        if self.run is None:
            return
        try:
            self.run.progress(fraction, stage)
        except Exception as exc:
            self._failed("logging progress", exc)

    def close(self, outcome: SeedOutcome) -> SeedOutcome:
        """Finish the run (summary, artifacts); the outcome with the run's location
        (``tracking``: ``{tracker, <where the run is>, seed}``) and any warnings."""
        task = self.task
        tracking: dict[str, Any] | None = None
        if self.run is not None:
            run, self.run = self.run, None
            try:
                summary = run_summary(task, outcome)
                result = outcome.result
                artifacts = [Path(task.plan_root) / a for a in (result["artifacts"] if result else ())]
                info = run.finish(summary, artifacts=artifacts, failed=not outcome.ok)
                if info:
                    tracker = self.tracker
                    key = (tracker.key or tracker.name) if tracker is not None else "tracker"
                    tracking = {"tracker": key, **info, "seed": task.seed}
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._failed("finishing the run", exc)
        if os.environ.get("MLEXP_WORKER"):
            # A worker runs one seed and its files travel back right after: offline run files
            # are complete only after wandb.teardown().
            self.warnings.extend(teardown_all())
        elif self.tracker is not None:
            self.warnings.extend(self.tracker.drain_warnings())
        warnings: list[str] = []
        if self.warnings:
            from ..secrets import default_scrubber

            scrub = default_scrubber()
            warnings = [scrub.scrub(w) for w in self.warnings]
            self.warnings = []
        if tracking is None and not warnings:
            return outcome
        out = outcome.replace(tracking=tracking) if tracking is not None else outcome
        return out.with_warnings(warnings)


def replay_outcome(task: Task, outcome: SeedOutcome) -> SeedOutcome:
    """Log a seed's run from its outcome, here (the pytest process): for a worker that could
    not reach the tracker's store (a local MLflow store and Modal, or a cluster without a shared
    file system).  The run gets the seed's own start and end times, its logged history at its
    steps, and the same summary and artifacts as a run logged where the seed ran."""
    from ..structs import replace

    times = {"started_at": outcome.started_at, "finished_at": outcome.finished_at}
    tracking = {k: v for k, v in task.tracking.items() if k != "log_from"}
    here = replace(task, tracking={**tracking, "replay": times})
    tracked = TrackedRun(here)
    prefix = f"{task.sub_id}/"
    for point in outcome.history:
        metrics = point.get("metrics") if isinstance(point, Mapping) else None
        if not isinstance(metrics, Mapping):
            continue
        step = point.get("step")
        prefixed = {prefix + str(k): v for k, v in metrics.items()}
        for sink in tracked.metric_sinks:
            sink(prefixed, step if isinstance(step, int) else None)
    return tracked.close(outcome)


# --- the pytest process ----------------------------------------------------------------------

INIT_TIMEOUT_ENV = "MLEXP_WANDB_INIT_TIMEOUT"
FINISH_TIMEOUT_ENV = "MLEXP_WANDB_FINISH_TIMEOUT"


def _float_env(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = float(environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


TRACKERS = ("wandb", "mlflow", "none")


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text[:240] or type(exc).__name__


def open_mlflow_store(root: str, environ: Mapping[str, str] | None = None) -> Tracker:
    """This process's MLflow tracker with its store opened (and, when fresh, created) once:
    called in the pytest process before any worker starts.  Raises :class:`TrackerError` with a
    one-line message when the store cannot be opened (then MLflow stays off)."""
    from .mlflow import MlflowTracker, store_location

    tracker = tracker_for(MlflowTracker.import_path())
    assert isinstance(tracker, MlflowTracker)
    if tracker.uri is None and tracker.broken is None:
        uri, artifacts = store_location(os.environ if environ is None else environ, root)
        try:
            tracker.prepare(uri, artifacts, root)
        except Exception as exc:
            tracker.disable(f"cannot open the store {uri} ({_first_line(exc)})")
        tracker.drain_warnings()  # said once, by the caller
    if tracker.broken is not None:
        raise TrackerError(
            f"MLflow: {tracker.broken}; MLflow tracking is off (set MLFLOW_TRACKING_URI, "
            "or pass --mlexp-tracker none)"
        )
    return tracker


class SessionTracking:
    """What the session decided about tracking; builds each task's ``tracking`` settings."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        flag: str,
        stub: bool,
        environ: Mapping[str, str] | None = None,
        tracker: str = "wandb",
        explicit: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """``tracker``: ``--mlexp-tracker`` (or ini ``mlexp_tracker``); ``explicit``: it was given
        on the command line (then it tracks ``--stub`` runs too); ``flag``: ``--mlexp-wandb``;
        ``warn``: where a failure after collection is reported (the summary's warnings)."""
        self.config = config
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.notes: list[str] = []  # one-line messages for the terminal (before items run)
        self.tracker: Tracker | None = None
        self.stub = stub
        self.mode = "disabled"
        self._warn = warn
        if tracker not in TRACKERS:
            raise ValueError(f"--mlexp-tracker must be one of {', '.join(TRACKERS)}, not {tracker!r}")
        if tracker == "none":
            return
        if tracker != "wandb" and flag != "auto":
            self.notes.append(
                f"mlexp: --mlexp-wandb {flag} is ignored: the tracker is {tracker} (--mlexp-tracker)"
            )
        hooked = config.hook.pytest_mlexp_tracker(config=config)
        if hooked is not None:
            if not isinstance(hooked, Tracker):
                raise TypeError(
                    f"pytest_mlexp_tracker returned {type(hooked).__name__}, "
                    "not a pytest_mlexp.trackers.base.Tracker"
                )
            # A third party's tracker: our W&B credential logic does not apply, only on/off.
            self.mode = "disabled" if flag == "disabled" or (flag == "auto" and stub) else flag
            if self.mode != "disabled":
                self.tracker = hooked
                register(hooked)
            return
        if tracker == "mlflow":
            self._choose_mlflow(explicit)
            return
        if flag == "disabled":  # resolve_mode's answer, without importing the W&B module
            self.mode = "disabled"
            return
        from .wandb import resolve_mode

        self.mode, notice = resolve_mode(flag, stub=stub, environ=self.environ)
        if self.mode == "disabled":
            return
        import importlib.util

        if importlib.util.find_spec("wandb") is None:  # finds it without importing it
            self.notes.append(
                "mlexp: warning: wandb is not installed, so W&B tracking is off "
                "(pip install wandb, or pass --mlexp-wandb disabled to silence this)"
            )
            self.mode = "disabled"
            return
        from .wandb import WandbTracker

        wandb_tracker = WandbTracker()
        register(wandb_tracker)
        self.tracker = wandb_tracker
        if notice:
            self.notes.append(notice)

    def _choose_mlflow(self, explicit: bool) -> None:
        if self.stub and not explicit:
            return  # a wiring run tracks nothing unless asked on the command line
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:  # finds it without importing it
            self.notes.append(
                "mlexp: warning: mlflow is not installed, so MLflow tracking is off "
                '(pip install "pytest-mlexp[mlflow]", or pass --mlexp-tracker none to silence this)'
            )
            return
        root = str(getattr(self.config, "rootpath", None) or os.getcwd())
        try:
            self.tracker = open_mlflow_store(root, self.environ)
        except TrackerError as exc:
            self.notes.append(f"mlexp: warning: {exc}")
            return
        self.mode = "mlflow"

    @property
    def enabled(self) -> bool:
        return self.tracker is not None

    def observe(self, outcomes: Sequence[SeedOutcome]) -> None:
        """A tracker that switched itself off where a seed ran (a worker process, a container:
        each its own process) is off for the seeds built from now on too, so that a broken
        store or server costs one failure, not one per seed.  Its warning is already on the
        outcome."""
        tracker = self.tracker
        if tracker is None:
            return
        prefix = f"{tracker.name}: "
        for outcome in outcomes:
            if any(w.startswith(prefix) and SWITCHED_OFF in w for w in outcome.warnings):
                self.tracker = None
                return

    def project(self, plan: Plan, root: str) -> str:
        """``project.wandb_project``, else ini ``mlexp_wandb_project``, else ``WANDB_PROJECT``,
        else the plan's project name (or the rootdir's name) slugified."""
        from .wandb import project_slug

        for value in (
            plan.project.wandb_project,
            str(self.config.getini("mlexp_wandb_project") or ""),
            self.environ.get("WANDB_PROJECT", ""),
        ):
            if value and value.strip():
                return value.strip()
        return project_slug(plan.project.name) or project_slug(Path(root).name) or "mlexp"

    def folder(self, plan: Plan, root: str) -> str | None:
        """Where W&B writes (it adds ``wandb/``): the project root (the plan folder's parent),
        relative to the rootdir so remote workers resolve it against their copy; None when
        ``WANDB_DIR`` is set (W&B then uses it)."""
        if self.environ.get("WANDB_DIR"):
            return None
        project_root = Path(plan.root).parent
        try:
            return project_root.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return str(project_root)

    def settings_for(
        self,
        plan: Plan,
        root: str,
        sub: SubExperiment,
        point_key: str | None,
        variant: Mapping[str, Any],
        seed: int,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``Task.tracking`` for one seed: plain data, secrets redacted (empty when off)."""
        if self.tracker is None:
            return {}
        from ..criteria import rule_text
        from ..secrets import default_scrubber, redact_params, secret_param_values

        exp = plan.experiment(sub.experiment_id)
        config: dict[str, Any] = redact_params(dict(params))
        extra: dict[str, Any] = {
            "seed": seed,
            "point": point_key,
            "criteria": {c.metric: rule_text(c) for c in sub.success_criteria},
        }
        from_here = {c.metric: rule_text(c) for c in exp.success_criteria if c.from_ == sub.id}
        if from_here:
            extra["experiment_criteria"] = from_here
        if self.stub:
            extra["stub"] = True
        for key, value in extra.items():
            config["mlexp_" + key if key in config else key] = value  # a param keeps its name
        scrub = default_scrubber().extended(secret_param_values(params))
        tracker = self.tracker
        settings: dict[str, Any] = {
            "tracker": self.tracker.import_path(),
            "mode": self.mode,
            "project": self.project(plan, root),
            "entity": self.environ.get("WANDB_ENTITY") or None,
            "dir": self.folder(plan, root),
            "group": sub.experiment_id,
            "job_type": sub.id,
            "name": f"{sub.id}[{point_key}]-seed{seed}" if point_key else f"{sub.id}-seed{seed}",
            "config": scrub.scrub_obj(config),
            "criteria": [criterion_to_data(c) for c in sub.success_criteria],
            "init_timeout": _float_env(self.environ, INIT_TIMEOUT_ENV, 60.0),
            "finish_timeout": _float_env(self.environ, FINISH_TIMEOUT_ENV, 120.0),
        }
        try:
            return tracker.task_settings(settings)
        except Exception as exc:
            if getattr(tracker, "broken", None):  # it said so itself when it switched off
                self.tracker = None
                return {}
            # The store or server went away after the session chose it: say so once and track
            # nothing more (each seed asking again would cost the same failure every time).
            self.tracker = None
            message = f"{tracker.name}: {_first_line(exc)}; tracking is off for the rest of this session"
            if self._warn is not None:
                self._warn(message)
            else:
                self.notes.append(f"mlexp: warning: {message}")
            return {}
