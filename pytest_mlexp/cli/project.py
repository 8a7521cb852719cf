"""The project the ``mlexp`` command looks at: rootdir, ini options, plan and stored results.

Found as pytest finds them, without pytest: the nearest ``pytest.ini``, ``pyproject.toml`` (with
``[tool.pytest.ini_options]``), ``tox.ini`` (``[pytest]``) or ``setup.cfg`` (``[tool:pytest]``)
upwards from the current folder names the rootdir; ``mlexp_plan``, ``mlexp_handlers`` and
``mlexp_gpu_prices`` are read from it.  Results are read only: nothing is renamed, moved aside
or written (the store is opened read-only), and no handler is imported.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fingerprint import Fingerprinter, HashCache
from ..handlers import HandlerIndex
from ..model import Plan, PlanError, SubExperiment
from ..plan import parse_plan_text
from ..reuse import PlanFingerprints, PlanReconciler
from ..store import ResultsStore, StoreError

__all__ = ["CliError", "Project", "find_ini", "open_project"]


class CliError(Exception):
    """A problem the command reports in one line (exit status 2)."""


_TOML_SECTIONS = ("tool.pytest.ini_options", "tool.pytest")


def _read_toml(path: Path) -> dict[str, Any] | None:
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]  # Python 3.11+

        data: dict[str, Any] = tomllib.loads(text)
    except ImportError:  # Python 3.10: the options this command reads are plain strings
        found: dict[str, Any] = {}
        section = None
        for line in text.splitlines():
            head = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
            if head:
                section = head.group(1).strip()
                continue
            m = re.match(r'^\s*(\w+)\s*=\s*"([^"]*)"', line)
            if m and section in _TOML_SECTIONS:
                found[m.group(1)] = m.group(2)
        return found if section is not None and found else ({} if "[tool.pytest" in text else None)
    except ValueError:
        return None
    tool = data.get("tool", {}).get("pytest", {})
    if not isinstance(tool, dict):
        return None
    if "ini_options" in tool and isinstance(tool["ini_options"], dict):
        return dict(tool["ini_options"])
    return dict(tool) if tool else None


def _read_pytest_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]

        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ImportError, ValueError):
        return {}
    found = data.get("pytest")
    return dict(found) if isinstance(found, dict) else {}


def _read_cfg(path: Path, section: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return None
    return dict(parser[section]) if parser.has_section(section) else None


def find_ini(start: Path) -> tuple[Path, dict[str, Any]]:
    """(rootdir, ini options) as pytest would find them from ``start``; no file: (start, {})."""
    folder = start.resolve()
    while True:
        for name, read in (
            ("pytest.toml", _read_pytest_toml),
            ("pytest.ini", lambda p: _read_cfg(p, "pytest") or {}),
            ("pyproject.toml", _read_toml),
            ("tox.ini", lambda p: _read_cfg(p, "pytest")),
            ("setup.cfg", lambda p: _read_cfg(p, "tool:pytest")),
        ):
            candidate = folder / name
            if candidate.is_file():
                options = read(candidate)
                if options is not None:
                    return folder, options
        if folder.parent == folder:
            return start.resolve(), {}
        folder = folder.parent


@dataclass
class Project:
    root: Path
    ini: Mapping[str, Any]
    plan: Plan
    store: ResultsStore
    warnings: list[str] = field(default_factory=list)

    def doc(self, experiment_id: str) -> Mapping[str, Any]:
        return self.store.doc(experiment_id)

    def entry_of(self, sub_id: str) -> Mapping[str, Any] | None:
        if not self.plan.has_sub(sub_id):
            return None
        doc = self.doc(self.plan.sub(sub_id).experiment_id)
        found = (doc.get("sub_experiments") or {}).get(sub_id)
        return found if isinstance(found, Mapping) else None

    def experiments(self, ids: list[str]) -> list[Any]:
        if not ids:
            return list(self.plan.experiments)
        out = []
        for value in ids:
            if self.plan.has_experiment(value):
                out.append(self.plan.experiment(value))
                continue
            matches = [e for e in self.plan.experiments if e.id.split("-")[0] == value]
            if len(matches) == 1:
                out.append(matches[0])
                continue
            from ..textutil import closest

            ids_known = [e.id for e in self.plan.experiments]
            guess = closest(value, ids_known, short=4)
            hint = f" (did you mean {guess}?)" if guess else ""
            raise CliError(
                f"no experiment {value!r} in {self.plan.path}{hint}; experiments: {', '.join(ids_known)}"
            )
        return out

    def gpu_prices(self) -> str:
        return str(self.ini.get("mlexp_gpu_prices") or "")


def open_project(
    *, rootdir: str | None = None, plan: str | None = None, stub: bool = False, start: Path | None = None
) -> Project:
    """The project from the current folder (or ``rootdir``), its plan (or ``plan``) and results."""
    here = Path(start or os.getcwd())
    if rootdir is not None:
        root = Path(rootdir).resolve()
        _, ini = find_ini(root)
    else:
        root, ini = find_ini(here)
    if plan is not None:
        plan_path = Path(plan)
        plan_path = plan_path if plan_path.is_absolute() else (here / plan_path)
    else:
        plan_path = root / str(ini.get("mlexp_plan") or "research/research_plan.yaml")
    plan_path = plan_path.resolve()
    try:
        text = plan_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(
            f"cannot read the plan {plan_path}: {exc.strerror or exc} (give it with --plan)"
        ) from None
    try:
        shown = plan_path.relative_to(root).as_posix()
    except ValueError:
        shown = str(plan_path)
    try:
        model = parse_plan_text(text, shown)
    except PlanError as exc:
        raise CliError(exc.render()) from None
    import dataclasses

    model = dataclasses.replace(model, path=plan_path)
    handlers = HandlerIndex(root, str(ini.get("mlexp_handlers") or "experiments"))
    refs: dict[str, Any] = {}

    def ref_of(sub: SubExperiment) -> Any:
        if sub.id not in refs:
            try:
                refs[sub.id] = handlers.find(sub.experiment_id, sub.id, sub.handler)
            except LookupError:
                refs[sub.id] = None
        return refs[sub.id]

    # The content hashes the plugin keeps (read here, never written: this command only looks).
    hashes = HashCache(root / ".pytest_cache" / "d" / "mlexp" / "deps-hashes.json")
    hashes.path = None
    fingerprints = PlanFingerprints(model, Fingerprinter(root, hashes=hashes), stub=stub, ref_of=ref_of)
    warnings: list[str] = []
    holder: dict[str, ResultsStore] = {}
    reconciler = PlanReconciler(fingerprints, doc_of=lambda exp_id: holder["store"].doc(exp_id))
    store = ResultsStore(model, stub=stub, warn=warnings.append, reconciler=reconciler, readonly=True)
    holder["store"] = store
    project = Project(root, ini, model, store, warnings)
    try:
        for exp in model.experiments:
            store.doc(exp.id)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    return project
