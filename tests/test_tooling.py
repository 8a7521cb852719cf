"""The project's own tooling holds: ruff, mypy --strict, the published plan schema, packaging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("args", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff_clean(args: tuple[str, ...]) -> None:
    pytest.importorskip("ruff")
    result = _run(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy")  # files and --strict come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_published_schema_in_sync() -> None:
    result = _run("pytest_mlexp.schema", "--check")
    assert result.returncode == 0, result.stderr


def test_package_ships_typing_marker_schema_and_entry_point() -> None:
    from importlib import metadata

    dist = metadata.distribution("pytest-mlexp")
    assert any(ep.group == "pytest11" and ep.value == "pytest_mlexp.plugin" for ep in dist.entry_points)
    package = ROOT / "pytest_mlexp"
    assert (package / "py.typed").is_file()
    assert (package / "schema" / "plan.schema.json").is_file()


def test_the_package_metadata_stays_small() -> None:
    """pytest reads every plugin's metadata on every run (pytest-metadata twice, the header's
    plugin line twice): with the 200 KB README as the long description each read cost 2-3 ms,
    ~5 ms of every pytest run's start-up (README "Performance")."""
    import re
    from importlib import metadata

    # (tomllib is 3.11+; the project supports 3.10)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.M).group(1)  # type: ignore[union-attr]
    assert (ROOT / readme).stat().st_size < 8_000, f"{readme}: keep the package's long description short"
    dist = metadata.distribution("pytest-mlexp")  # (an egg-info in the checkout has PKG-INFO)
    installed = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    assert "pytest-mlexp" in installed
    assert len(installed) < 10_000, "the installed metadata is large: reinstall (pip install -e .)"
