"""The ``runner`` object handed to every handler.

It runs wherever the handler runs (in the pytest process, a worker process or a Modal
container), so it imports only the standard library and reports plain data.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "ArtifactError",
    "ExperimentRunner",
    "FrozenDict",
    "FrozenList",
    "Results",
    "freeze",
    "inside",
    "safe_artifact_path",
]

# (sub_id, metrics with their prefix already applied, step) -> None; set by trackers / live line
MetricSink = Callable[[Mapping[str, Any], "int | None"], None]
ProgressSink = Callable[[float, "str | None"], None]


def _refusal(what: str) -> str:
    return (
        f"{what} is read-only (the plan's values, the same for every seed and sub-experiment): "
        f"copy it first, e.g. params = copy.deepcopy(dict({what})), or dict({what}) for a "
        "shallow copy of the top level"
    )


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes, at every depth (``runner.params``, ``runner.variant``,
    ``runner.upstream``).  A real dict otherwise: ``isinstance(p, dict)``, ``json.dumps``,
    ``dict(p)``, ``{**p}`` all work; ``copy.deepcopy`` and pickling give plain, changeable
    dicts and lists."""

    __slots__ = ("_what",)

    def __init__(self, data: Mapping[str, Any], what: str) -> None:
        super().__init__(data)
        self._what = what

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_refusal(self._what))

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> Any:
        return (dict, (_thawed(self),))


class FrozenList(list[Any]):
    """A list that refuses changes (see :class:`FrozenDict`); ``a + [x]`` gives a new plain list."""

    __slots__ = ("_what",)

    def __init__(self, data: Iterable[Any], what: str) -> None:
        super().__init__(data)
        self._what = what

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_refusal(self._what))

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        import copy

        return [copy.deepcopy(v, memo) for v in self]

    def __reduce__(self) -> Any:
        return (list, (_thawed(self),))


_NEW_DICT = dict.__new__


def freeze(value: Any, what: str) -> Any:
    """``value`` with every dict and list in it made read-only (copies: the caller's objects,
    the plan's own, are never handed out)."""
    if value.__class__ is dict and not value:  # no params, no variant, no upstream: the usual case
        # Made empty without FrozenDict.__init__ (a Python call, with dict's own under it, that
        # has nothing to copy): three per seed.
        empty = _NEW_DICT(FrozenDict)
        empty._what = what
        return empty
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v, what) for k, v in value.items()}, what)
    if isinstance(value, list):
        return FrozenList((freeze(v, what) for v in value), what)
    if isinstance(value, tuple):
        return tuple(freeze(v, what) for v in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thawed(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_thawed(v) for v in value)
    return value


class ArtifactError(ValueError):
    """An artifact name that would escape its folder, or data that cannot be written."""


def safe_artifact_path(folder: Path, name: str) -> Path:
    """``folder / name``, refusing absolute names, names that climb out with ``..`` and names
    that are the folder itself (``.``)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArtifactError(f"artifact name {name!r} must be a relative file name, e.g. 'confusion.png'")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if any(p == ".." for p in parts):
        raise ArtifactError(f"artifact name {name!r} may not contain '..': it must stay inside {folder}")
    if not parts:
        raise ArtifactError(
            f"artifact name {name!r} is the artifacts folder itself: name a file, e.g. 'plot.png'"
        )
    return folder.joinpath(*parts)


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, with every symlink on the way resolved, is ``folder`` or below it."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _resolved_inside(folder: Path, path: Path, name: str) -> Path:
    """``path`` resolved, refused when a symlink (the file itself or a folder on the way) leads
    out of ``folder`` or it resolves to the folder itself."""
    base = folder.resolve()
    target = path.resolve()
    if target == base:
        raise ArtifactError(
            f"artifact name {name!r} is the artifacts folder itself: name a file, e.g. 'plot.png'"
        )
    try:
        target.relative_to(base)
    except ValueError:
        raise ArtifactError(
            f"artifact name {name!r} leads to {target}, outside the artifacts folder {folder} (through a "
            "symlink): nothing was written; save under another name"
        ) from None
    return target


def _json_default(obj: Any) -> Any:
    """What ``json`` cannot write itself, as a seed's handlers hand it over: arrays and tensors
    (``tolist``), numpy/torch scalars (``item``), paths, sets; anything else as its text."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    for method in ("tolist", "item"):
        convert = getattr(obj, method, None)
        if callable(convert):
            try:
                return convert()
            except Exception:  # a tensor on a lost device, say: fall back to its text
                break
    return str(obj)


class Results:
    """``runner.results``: where artifacts go.  Paths returned are relative to the plan's folder."""

    def __init__(self, folder: Path | str, plan_root: Path | str) -> None:
        # Kept as given and made Paths on first use: most seeds save no artifact, and building
        # the Paths up front was a measurable share of a trivial seed's cost.
        self._folder = folder
        self._plan_root = plan_root
        self.saved: list[str] = []
        # Paths handed out by get_artifact_path: recorded at the end if the handler wrote them.
        self.claimed: list[Path] = []

    @property
    def folder(self) -> Path:
        folder = self._folder
        if not isinstance(folder, Path):
            folder = self._folder = Path(folder)
        return folder

    def _target(self, name: str) -> Path:
        """Where artifact ``name`` goes, its folders made: checked before any folder on the way
        is made (a symlinked one could lead anywhere) and resolved after, so no symlink is
        followed out of the artifacts folder."""
        folder = self.folder
        path = safe_artifact_path(folder, name)
        folder.mkdir(parents=True, exist_ok=True)
        _resolved_inside(folder, path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _resolved_inside(folder, path, name)

    def save_artifact(self, name: str, data: bytes | str) -> str:
        path = self._target(name)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            path.write_bytes(bytes(data))
        else:
            raise ArtifactError(
                f"save_artifact({name!r}, ...) takes bytes or str, not {type(data).__name__}; "
                "for a matplotlib figure use runner.save_figure(fig, name)"
            )
        rel = _relative(path, Path(self._plan_root))
        if rel not in self.saved:
            self.saved.append(rel)
        return rel

    def save_figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as PNG (``.png`` is added when the name has no suffix)."""
        if not PurePosixPath(name).suffix:
            name += ".png"
        buf = io.BytesIO()
        fig.savefig(buf, format=PurePosixPath(name).suffix.lstrip(".") or "png", bbox_inches="tight")
        return self.save_artifact(name, buf.getvalue())

    def save_json_artifact(self, name: str, obj: Any) -> str:
        """Save ``obj`` as indented JSON (``.json`` is added when the name has no suffix); numpy
        and torch values are written as numbers and lists.  Returns the path, as save_artifact."""
        if not PurePosixPath(name).suffix:
            name += ".json"
        try:
            text = json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False)
        except (TypeError, ValueError) as exc:  # a cycle, or keys json cannot write
            raise ArtifactError(
                f"save_json_artifact({name!r}, ...): cannot be written as JSON: {exc}"
            ) from None
        return self.save_artifact(name, text + "\n")

    def get_artifact_path(self, name: str) -> Path:
        """An absolute path in the artifacts folder for the handler to write itself (a
        checkpoint, a file another library saves); it is recorded as an artifact if the file
        exists when the handler returns.  Its folder is created."""
        path = self._target(name)
        if path not in self.claimed:
            self.claimed.append(path)
        return path

    def record_path(self, path: Path) -> str:
        """Record an existing file inside the artifacts folder; the path relative to the plan's
        folder.  Anything else is an :class:`ArtifactError`."""
        folder = self.folder.resolve()
        if not path.is_absolute():
            candidate = self.folder / path
            path = candidate if candidate.exists() or not path.exists() else path.absolute()
        resolved = path.resolve()
        if resolved == folder or not inside(resolved, folder):
            raise ArtifactError(
                f"runner.log_artifact({str(path)!r}): the file is outside the artifacts folder {folder}; "
                "write it there (runner.results.get_artifact_path(name) gives a path) or save it with "
                "runner.results.save_artifact(name, data)"
            )
        if not resolved.is_file():
            raise ArtifactError(f"runner.log_artifact({str(path)!r}): no such file")
        rel = _relative(resolved, Path(self._plan_root))
        if rel not in self.saved:
            self.saved.append(rel)
        return rel

    def written(self) -> list[str]:
        """Every artifact of the seed: what was saved or logged, then the claimed paths that
        the handler wrote (plan-folder relative, in order, each once)."""
        out = list(self.saved)
        for path in self.claimed:
            if path.is_file():
                rel = _relative(path, Path(self._plan_root))
                if rel not in out:
                    out.append(rel)
        return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class ExperimentRunner:
    """What a handler gets as ``runner`` (SPEC section 4)."""

    def __init__(
        self,
        *,
        experiment_id: str,
        sub_experiment_id: str,
        params: Mapping[str, Any],
        variant: Mapping[str, Any] | None,
        seed: int,
        stub: bool,
        workdir: Path | str,
        artifacts_dir: Path | str,
        plan_root: Path | str,
        upstream: Mapping[str, Any] | None = None,
        metric_sinks: tuple[MetricSink, ...] = (),
        progress_sinks: tuple[ProgressSink, ...] = (),
        device: str | None = None,
    ) -> None:
        self.experiment_id = experiment_id
        self.sub_experiment_id = sub_experiment_id
        # Read-only at every depth, and copies: a handler's change can never reach the plan,
        # another seed or another sub-experiment (under local they share one process).
        self.params: Mapping[str, Any] = freeze(params, "runner.params")
        self.variant: Mapping[str, Any] = freeze(variant or {}, "runner.variant")
        self.seed = seed
        self.stub = stub
        self.upstream: Mapping[str, Any] = freeze(upstream or {}, "runner.upstream")
        self.results = Results(artifacts_dir, plan_root)
        self._workdir = workdir
        self._device = device
        self._metric_sinks = metric_sinks
        self._progress_sinks = progress_sinks
        # Every logged point, kept so remote executors can carry it back and trackers replay it.
        self.history: list[dict[str, Any]] = []
        # Recorded per sub-experiment and shown under "Issues" / "Blockers" in FINDINGS.
        self.issues: list[str] = []
        self.blockers: list[str] = []
        self._prefix = f"{sub_experiment_id}/"
        self._next_step = 0
        self.last_progress: tuple[float, str | None] | None = None
        self.started = time.monotonic()

    @property
    def workdir(self) -> Path:
        workdir = self._workdir
        if not isinstance(workdir, Path):  # given as a str (see Results)
            workdir = self._workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir

    @property
    def device(self) -> str:
        """``cuda``, ``mps`` or ``cpu``; asks torch only when the handler asks (it has torch then)."""
        if self._device is None:
            self._device = detect_device()
        return self._device

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log a dict of scalars; the tracker sees them as ``<sub_id>/<name>`` (a name that
        already starts with ``<sub_id>/`` is not prefixed again).  Nested mappings flatten to
        dotted names, as returned metrics do."""
        from .normalize import normalize_metrics

        clean = normalize_metrics(metrics, "runner.log_metrics")
        if step is None:
            step = self._next_step
        # Steps only move forward, so a tracker never sees a step go back and drop data.
        step = max(int(step), self._next_step - 1 if self.history else 0)
        self._next_step = step + 1
        prefix = self._prefix
        self.history.append({"step": step, "metrics": {k.removeprefix(prefix): v for k, v in clean.items()}})
        prefixed = {k if k.startswith(prefix) else prefix + k: v for k, v in clean.items()}
        for sink in self._metric_sinks:
            sink(prefixed, step)

    def log_artifact(self, path: str | os.PathLike[str]) -> str:
        """Record a file the handler wrote inside its artifacts folder (``runner.results.folder``)
        as an artifact; returns its path relative to the plan's folder.  A path outside that
        folder, or no file, is an error."""
        return self.results.record_path(Path(os.fspath(path)))

    def add_issue(self, text: str) -> None:
        """Note an issue with this sub-experiment (shown under "Issues" in FINDINGS)."""
        line = str(text).strip()
        if line and line not in self.issues:
            self.issues.append(line)

    def add_blocker(self, text: str) -> None:
        """Note what blocks this sub-experiment (shown under "Blockers" in FINDINGS)."""
        line = str(text).strip()
        if line and line not in self.blockers:
            self.blockers.append(line)

    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Report how far along the handler is (0..1); logged as ``<sub_id>/progress``."""
        value = float(fraction)
        if math.isnan(value):
            value = 0.0
        value = min(1.0, max(0.0, value))
        self.last_progress = (value, stage)
        for sink in self._progress_sinks:
            sink(value, stage)

    def save_figure(self, fig: Any, name: str) -> str:
        return self.results.save_figure(fig, name)

    def __repr__(self) -> str:
        return (
            f"ExperimentRunner({self.experiment_id}::{self.sub_experiment_id}, seed={self.seed}, "
            f"stub={self.stub}, params={_redacted(self.params)!r})"
        )


def _redacted(params: Mapping[str, Any]) -> dict[str, Any]:
    from .secrets import redact_params  # only when shown (a traceback's locals, a log line)

    return redact_params(params)


def detect_device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
