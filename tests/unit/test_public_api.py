"""The public surface: ``pytest_mlexp.__all__``, loaded lazily; typed hookspecs; one version."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import pytest_mlexp
from pytest_mlexp import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_resolves_to_what_the_modules_define() -> None:
    from pytest_mlexp.executors.base import Executor, PoolExecutor, infra_outcome
    from pytest_mlexp.records import SeedOutcome
    from pytest_mlexp.runner import ExperimentRunner
    from pytest_mlexp.trackers.base import Tracker

    for name in pytest_mlexp.__all__:
        assert getattr(pytest_mlexp, name) is not None, name
    assert pytest_mlexp.ExperimentRunner is ExperimentRunner
    assert pytest_mlexp.Executor is Executor and pytest_mlexp.PoolExecutor is PoolExecutor
    assert pytest_mlexp.infra_outcome is infra_outcome and pytest_mlexp.SeedOutcome is SeedOutcome
    assert pytest_mlexp.Tracker is Tracker
    assert set(pytest_mlexp.__all__) <= set(dir(pytest_mlexp))
    try:
        pytest_mlexp.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_importing_the_package_loads_none_of_it() -> None:
    # Every pytest run imports the package (the plugin lives in it): the public names load lazily.
    code = "import sys, pytest_mlexp; print(sorted(m for m in sys.modules if m.startswith('pytest_mlexp.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hookspecs_are_typed_and_documented() -> None:
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("pytest_")]
    assert {f.__name__ for f in specs} == {
        "pytest_mlexp_executor",
        "pytest_mlexp_tracker",
        "pytest_mlexp_modal_image",
    }
    for spec in specs:
        assert spec.__doc__ and ":returns:" in spec.__doc__, spec.__name__
    assert inspect.signature(hookspecs.pytest_mlexp_executor).return_annotation == "Executor | None"
    assert inspect.signature(hookspecs.pytest_mlexp_tracker).return_annotation == "Tracker | None"


def test_the_version_is_written_once() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pytest_mlexp.__version__"}
    assert metadata.version("pytest-mlexp") == pytest_mlexp.__version__
