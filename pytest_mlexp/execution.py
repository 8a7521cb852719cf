"""Running one seed of one sub-experiment: plain data in, plain data out.

This is the code every executor ends in: the local executor calls :func:`run_seed` in the
pytest process (with pytest fixtures); the process and Modal executors run
``pytest_mlexp.remote.run_task`` (``python -m pytest_mlexp.remote``, or the Modal function) with a
:class:`Task` dict and get the :class:`~pytest_mlexp.records.SeedOutcome` back as plain data.
Standard library only.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import field
from pathlib import Path
from typing import Any

from .handler_modules import (
    HandlerChanged,
    HandlerError,
    HandlerRef,
    imported_digest,
    load_handler,
    loaded_function,
)
from .normalize import ResultError, normalize_result
from .records import ERROR, INFRA, OK, ErrorInfo, SeedOutcome, SeedResult, error_info, now_iso
from .runner import ExperimentRunner, MetricSink, ProgressSink, inside
from .structs import asdict, struct

__all__ = [
    "ERROR",
    "INFRA",
    "OK",
    "HandlerExited",
    "SeedInterrupt",
    "SeedTimeout",
    "Task",
    "error_info",
    "import_failure",
    "import_handler",
    "now_iso",
    "run_seed",
]

# os._exit as it was when this module was imported: what a forked child leaves with, even
# while the local executor has patched os._exit around a handler.
_REAL_EXIT = os._exit
_new = object.__new__  # (an instance made without its class's call: see run_seed)


class SeedInterrupt(BaseException):
    """Raised into a running handler by whoever runs it, to stop it for a reason that is not
    the handler's error (BaseException: a handler's ``except Exception`` must not swallow it).
    The seed's outcome is an ``infra_error`` of kind :attr:`kind`."""

    kind = "interrupted"


class SeedTimeout(SeedInterrupt):
    """The seed's time ran out (``resources.timeout``, or the item's ``timeout`` mark)."""

    kind = "timeout"


class HandlerExited(SeedInterrupt):
    """The handler called ``os._exit`` in the pytest process (local executor)."""

    kind = "lost_worker"


@struct(slots=True)
class Task:
    """Everything a worker needs to run one seed, as plain data (JSON- and pickle-safe)."""

    experiment_id: str
    sub_id: str
    point: str | None
    seed: int
    params: dict[str, Any] = field(repr=False)  # never in a repr (--showlocals, a log): secrets
    stub: bool
    root: str  # the project root: handler modules are imported relative to it
    plan_root: str  # the plan's folder: artifact paths are relative to it
    module_path: str  # the handler's file, relative to root
    module_name: str  # the stable import name workers reproduce
    function: str
    artifacts_dir: str  # absolute on the machine that runs it (remote executors remap it)
    workdir: str
    upstream: dict[str, Any] = field(default_factory=dict)
    variant: dict[str, Any] = field(default_factory=dict)  # the sweep point's values
    timeout: float | None = None
    tracking: dict[str, Any] = field(
        default_factory=dict, repr=False
    )  # tracker settings (mode, project, ...)
    # Where a worker process appends what the handler logs, for the live line (unique per
    # task, so a file left by an earlier run is never mistaken for this one's); None when the
    # seed runs in the pytest process, whose live line watches it directly.
    progress_file: str | None = None
    # A handler registry (plan key ``handlers:``): ``function`` is the registry attribute of
    # the module and this the key to look up in what it gives (the sub-experiment id).
    registry_key: str | None = None
    # sha256 of the handler's module as the session read it (its provenance's handler_sha256):
    # a worker that imports other source (the file edited meanwhile) refuses to run it.
    source_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        return cls(**dict(data))

    @property
    def label(self) -> str:
        point = f"[{self.point}]" if self.point else ""
        return f"{self.sub_id}{point} seed {self.seed}"


# Observers of a seed that runs in the pytest process (the live progress line): a factory
# Task -> (metric sinks, progress sinks), set by the item around its dispatch.  A ContextVar so
# that executors need not thread it through, and so that it never reaches a worker process or
# an executor's thread (another context): only in-process runs are shown live.
Observers = Callable[["Task"], tuple[tuple[MetricSink, ...], tuple[ProgressSink, ...]]]
observers: ContextVar[Observers | None] = ContextVar("mlexp_observers", default=None)


# random's state right after ``random.seed(seed)``, by seed: putting it back (``setstate``,
# 1.9 µs) is the same state as seeding again (3.1 µs: the Mersenne Twister's 624 words are
# derived from the seed every time), once per seed of every item.  A plan's seeds are few
# (0, 1, 2, ...); a 625-word state is ~20 KB, so only the first few dozen are kept.
_SEEDED: dict[int, tuple[Any, ...]] = {}
_SEEDED_MAX = 32


def seed_everything(seed: int) -> None:
    """Seed random, and numpy/torch when they are imported (those that are not yet are seeded
    by :class:`_SeedOnImport` if the handler imports them)."""
    state = _SEEDED.get(seed)
    if state is not None:
        random.setstate(state)
    else:
        random.seed(seed)
        if len(_SEEDED) < _SEEDED_MAX:
            _SEEDED[seed] = random.getstate()
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        if module is not None:
            _seed_library(name, module, seed)


# The libraries with a global generator a seed sets, besides random.
_LIBRARIES = ("numpy", "torch")
_LIBRARY_SET = frozenset(_LIBRARIES)


def _seed_library(name: str, module: Any, seed: int) -> None:
    if name == "numpy":
        module.random.seed(seed % (2**32))
    elif hasattr(module, "manual_seed"):
        module.manual_seed(seed)


class _SeedOnImport:
    """In ``sys.meta_path`` while a handler runs, when numpy or torch is not imported yet: the
    first import of one, in the handler's body (``import torch`` inside the function, or a
    helper module's), seeds it as soon as it is loaded.  Without it the first seed a process
    runs draws unseeded numbers where later seeds of the same process are seeded, so results
    depended on how seeds were spread over workers (``--mlexp-concurrency``, ``isolate``)."""

    def __init__(self, seed: int, names: frozenset[str]) -> None:
        self.seed = seed
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        # Asked for a spec only (importlib.util.find_spec: "is torch installed?") or for an
        # import: either way a spec whose loader seeds; only an import runs it.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SeededLoader(spec.loader, name, self.seed)
        return spec


class _SeededLoader:
    """A library's own loader, that seeds the library once it has run.  The module sees its
    real loader (``__loader__``, ``__spec__.loader``) from the moment its code runs."""

    def __init__(self, loader: Any, name: str, seed: int) -> None:
        self._loader = loader
        self._name = name
        self._seed = seed

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _seed_library(self._name, module, self._seed)

    def __getattr__(self, attribute: str) -> Any:
        # object.__getattribute__: a copy made without __init__ has no _loader, and asking
        # for it through this method again would recurse.
        return getattr(object.__getattribute__(self, "_loader"), attribute)


def _seed_on_import(seed: int) -> _SeedOnImport | None:
    # (frozenset.difference with a dict looks each name up in it: no Python loop, per seed.)
    missing = _LIBRARY_SET.difference(sys.modules)
    return _SeedOnImport(seed, missing) if missing else None


def run_seed(
    task: Task,
    handler: Callable[..., Any],
    *,
    fixtures: Mapping[str, Any] | None = None,
    metric_sinks: tuple[MetricSink, ...] = (),
    progress_sinks: tuple[ProgressSink, ...] = (),
    on_runner: Callable[[ExperimentRunner], None] | None = None,
    interrupt_is_error: bool = False,
) -> SeedOutcome:
    """Run the handler once and return its outcome: ``ok`` with the normalised result, or
    ``error`` with the traceback (the handler raised, or returned something invalid).

    ``interrupt_is_error``: a ``KeyboardInterrupt`` is the handler's error too (in a worker
    process, where no Ctrl-C can arrive: the handler raised it); else it propagates (Ctrl-C)."""
    # Tracking (W&B, or a hook's tracker) opens here, where the handler runs, from the plain
    # settings in task.tracking: the same in the pytest process, a worker or a Modal container.
    tracked = None
    # "log_from: owner": this worker cannot reach the tracker's store; the pytest process logs
    # the run from the outcome (trackers.replay_outcome, called by the dispatcher).
    if task.tracking and task.tracking.get("log_from") != "owner":
        from .trackers import TrackedRun

        tracked = TrackedRun(task)
        metric_sinks = (*metric_sinks, *tracked.metric_sinks)
        progress_sinks = (*progress_sinks, *tracked.progress_sinks)
    watch = observers.get()
    if watch is not None:
        more_metrics, more_progress = watch(task)
        metric_sinks = (*metric_sinks, *more_metrics)
        progress_sinks = (*progress_sinks, *more_progress)
    # Made and initialised in two calls, not by a class call: that packs the keywords into a
    # dict for __init__ to unpack (its parameters are keyword-only), once per seed.
    runner = _new(ExperimentRunner)
    ExperimentRunner.__init__(
        runner,
        experiment_id=task.experiment_id,
        sub_experiment_id=task.sub_id,
        params=task.params,
        variant=task.variant,
        seed=task.seed,
        stub=task.stub,
        workdir=task.workdir,  # strs: the runner makes Paths only if the handler uses them
        artifacts_dir=task.artifacts_dir,
        plan_root=task.plan_root,
        upstream=task.upstream,
        metric_sinks=metric_sinks,
        progress_sinks=progress_sinks,
    )
    if on_runner is not None:
        on_runner(runner)
    started = now_iso()
    t0 = time.perf_counter()
    kwargs = None
    if fixtures:
        kwargs = dict(fixtures)
        kwargs["runner"] = runner
    result: SeedResult | None = None
    error: ErrorInfo | None = None
    warnings: list[str] = []
    exc_kept: BaseException | None = None
    infra = False
    pid = os.getpid()
    hook = _seed_on_import(task.seed)
    try:
        seed_everything(task.seed)
        if hook is not None:
            sys.meta_path.insert(0, hook)
        try:
            # (no fixtures, the usual case: no dict made for the one keyword)
            returned = handler(runner=runner) if kwargs is None else handler(**kwargs)
        finally:
            if os.getpid() != pid:
                # A child the handler forked, returning (or raising) into our code: it must
                # never go on to record results or run the rest of the session.
                _REAL_EXIT(0)
            if hook is not None:
                try:  # noqa: SIM105 - not contextlib.suppress: three calls and an object per seed
                    sys.meta_path.remove(hook)
                except ValueError:  # the handler took it out itself
                    pass
    except KeyboardInterrupt as exc:
        if not interrupt_is_error:
            raise  # Ctrl-C in the pytest process
        error = error_info("handler", exc, skip_frames=1)  # in a worker: the handler raised it
    except SeedInterrupt as exc:  # stopped by the executor: a timeout, an os._exit caught
        error = error_info(exc.kind, exc, skip_frames=1)
        error["type"] = "".join(part.capitalize() for part in exc.kind.split("_"))
        infra = True
    except BaseException as exc:  # a handler's SystemExit is its error too, not ours
        error = error_info("handler", exc, skip_frames=1)
        exc_kept = exc  # in-process only (for --pdb); never sent anywhere
    else:
        try:
            normalized = normalize_result(returned)
        except ResultError as exc:
            error = {"kind": "invalid_result", "type": "ResultError", "message": str(exc), "traceback": ""}
        else:
            artifacts = normalized["artifacts"]  # a list of its own
            outside = _outside_artifacts(task, artifacts, runner.results.saved) if artifacts else None
            if outside:
                error = {
                    "kind": "invalid_result",
                    "type": "ResultError",
                    "message": (
                        f"the handler returned artifact {outside[0]!r}, outside the artifacts folder "
                        f"{_artifacts_root(task)}: it was not recorded or uploaded; save files with "
                        "runner.results.save_artifact(name, data) and return the path it gives"
                    ),
                    "traceback": "",
                }
                artifacts = []
            results = runner.results
            if results.saved or results.claimed:  # (most seeds save none: no call for nothing)
                for path in results.written():
                    if path not in artifacts:
                        artifacts.append(path)
        if error is None:
            result = {
                "metrics": normalized["metrics"],
                "finding": normalized.get("finding"),
                "artifacts": artifacts,
            }
            extra = normalized.get("extra")
            if extra:
                result["extra"] = extra
                warnings.append(
                    f"{task.sub_id}: the handler returned {', '.join(map(repr, extra))} besides "
                    "metrics/finding/artifacts: kept under 'extra' in results.yaml"
                )
    # By position, in SeedOutcome's field order: a class call with keywords packs them into a
    # dict and __init__ unpacks it again, a third of the outcome's cost (test_runner_api checks).
    outcome = SeedOutcome(
        task.seed,  # seed
        (INFRA if infra else ERROR) if error is not None else OK,  # status
        result,  # result
        error,  # error
        started,  # started_at
        now_iso(),  # finished_at
        round(time.perf_counter() - t0, 4),  # duration_s
        runner.history,  # history
        loaded_packages(),  # packages
        runner._device,  # device
        None,  # tracking (a tracked run's, below)
        tuple(warnings),  # warnings
        tuple(runner.issues),  # issues
        tuple(runner.blockers),  # blockers
        exc_kept,  # exc
    )
    if tracked is not None:
        outcome = tracked.close(outcome)  # never raises: failures become outcome warnings
    return outcome


def _artifacts_root(task: Task) -> Path:
    """The plan's artifacts folder (``artifacts/`` or ``artifacts-stub/``): returned paths must be
    inside it (another sub-experiment's file may be returned, a file elsewhere may not)."""
    return Path(task.plan_root) / ("artifacts-stub" if task.stub else "artifacts")


def _outside_artifacts(task: Task, returned: list[str], saved: list[str]) -> list[str]:
    """Returned artifact paths that lead (through ``..`` or a symlink) out of the artifacts
    folder; paths ``save_artifact`` gave are inside by construction and not checked again."""
    if not returned:
        return []
    roots = (_artifacts_root(task), Path(task.artifacts_dir))
    plan_root = Path(task.plan_root)
    out = []
    for text in returned:
        if text in saved:
            continue
        path = Path(text)
        if not path.is_absolute():
            path = plan_root / path
        if not any(inside(path, root) for root in roots):
            out.append(text)
    return out


# Distributions worth recording in provenance when the handler has imported them.
_TRACKED = {
    "torch": "torch",
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "pandas": "pandas",
    "jax": "jax",
    "transformers": "transformers",
    "lightning": "lightning",
    "tensorflow": "tensorflow",
}
_versions: dict[str, str | None] = {}


def loaded_packages() -> dict[str, str]:
    """Versions of the well-known ML packages this process has imported (never imports them)."""
    # Once per seed, and usually none is imported: a view's isdisjoint looks each name up in
    # sys.modules without a Python loop (it iterates over the shorter side).
    if _TRACKED.keys().isdisjoint(sys.modules.keys()):
        return {}
    out: dict[str, str] = {}
    for module, dist in _TRACKED.items():
        if module not in sys.modules:
            continue
        if dist not in _versions:
            from importlib import metadata

            try:
                _versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                _versions[dist] = None
        version = _versions[dist]
        if version:
            out[dist] = version
    return out


# (task.root, task.module_path) -> the handler file and the root as load_handler keys them
_import_paths: dict[tuple[str, str], tuple[str, str]] = {}


def import_handler(task: Task) -> Callable[..., Any]:
    """Import the handler under its stable module name (the same in every worker)."""
    # Fast path: every seed after the first of a handler finds its module already imported.
    paths = _import_paths.get((task.root, task.module_path))
    if task.registry_key is not None:
        return load_handler(_ref_of(task), Path(task.root))
    if paths is None:
        root = Path(task.root)
        paths = _import_paths[(task.root, task.module_path)] = (
            os.fspath(root / task.module_path),
            os.fspath(root),
        )
    fn: Callable[..., Any] | None = loaded_function(task.module_name, paths[0], paths[1], task.function)
    if fn is None:
        fn = load_handler(_ref_of(task), Path(task.root))
    expected = task.source_sha256
    if expected:
        got = imported_digest(task.module_name)
        if got is not None and got != expected:
            raise HandlerChanged(_changed_text(task, expected, got))
    return fn


def _changed_text(task: Task, expected: str, got: str) -> str:
    now = (
        f"its source hashed {got[:12]} when this process imported it" if got else "it changed while importing"
    )
    return (
        f"{task.module_path} changed on disk after the session read it (its source hashed "
        f"{expected[:12]} then; {now}): this seed would run other code than its result's provenance "
        "records, so it did not run. Re-run the session; edits made while a session runs reach "
        "only the worker processes started after them"
    )


def _ref_of(task: Task) -> HandlerRef:
    return HandlerRef(
        module_path=Path(task.root) / task.module_path,
        module_name=task.module_name,
        function=task.function,
        params=("runner",),
        lineno=0,
        source_sha256="",
        registry_key=task.registry_key,
    )


def import_failure(seed: int, exc: BaseException, started_at: str) -> SeedOutcome:
    """The outcome of a seed whose handler could not be imported or found.  A lookup problem
    (a registry without the id, say) says itself in its message: no traceback of ours."""
    if isinstance(exc, HandlerError):
        return SeedOutcome.failure(seed, "handler", exc, started_at=started_at, traceback="")
    return SeedOutcome.failure(seed, "import", exc, started_at=started_at)
