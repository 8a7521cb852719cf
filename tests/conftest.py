"""Shared test helpers: temporary research projects run through pytester."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest_plugins = ["pytester"]

# numpy refuses to be loaded twice in one process ("cannot load module more than once per
# process"), and pytester's in-process runs drop from sys.modules whatever they imported (charts
# import numpy through matplotlib): a later test of this process that imports numpy would then
# fail.  Loaded here first, it is part of the snapshot pytester restores, and stays.
with contextlib.suppress(ImportError):  # the suite runs without numpy too
    import numpy  # noqa: F401

# A research project used as a fixture (its plan, handlers and results), copied into a temp dir
# by the tests that run it: never collected as part of this suite.
collect_ignore = ["adopted"]

# A memory address in a test id ("<object object at 0x7f...>", from a parametrize value's repr)
# differs between processes: pytest-xdist then aborts, its workers having collected different ids.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unstable = [item.nodeid for item in items if _ADDRESS.search(item.nodeid)]
    if unstable:
        raise pytest.UsageError(
            "test ids must be the same in every process (pytest -n 2), these hold a memory "
            "address; give their parametrize an explicit id:\n  " + "\n  ".join(unstable)
        )


def git(root: Path, *args: str) -> None:
    """``git *args`` in ``root`` with an identity of its own (CI machines may have none)."""
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


class Project:
    """A research project in a pytester temp dir: a plan, handler modules, results to read back."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = Path(pytester.path)

    def plan(self, text: str) -> Path:
        path = self.path / "research" / "research_plan.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def handlers(self, name: str, source: str) -> Path:
        path = self.path / "experiments" / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        # In-process runs see the plugin already imported by this test process: pytest warns that
        # it cannot rewrite it, which says nothing about the plugin.
        return self.pytester.runpytest(
            "-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args
        )

    def experiment_dir(self, experiment_id: str) -> Path:
        return self.path / "research" / "experiments" / experiment_id

    def results(self, experiment_id: str, stub: bool = False) -> dict[str, Any]:
        name = "results.stub.yaml" if stub else "results.yaml"
        path = self.experiment_dir(experiment_id) / name
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        return data

    def interrupt(
        self, *args: str, started: Callable[[], bool], sig: int = signal.SIGTERM, **popen: Any
    ) -> tuple[int, str]:
        """Run pytest with ``args`` in a subprocess (``popen``: more of ``subprocess.Popen``'s
        arguments), send it ``sig`` once ``started()`` holds (the work it waits for began), and
        return its exit code and output."""
        proc = self.pytester.popen(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **popen,
        )
        deadline = time.monotonic() + 60  # a hang guard
        while not started():
            assert time.monotonic() < deadline and proc.poll() is None, "the work never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=90)
        return proc.returncode, out.decode(errors="replace")

    def findings(self, experiment_id: str | None = None) -> str:
        if experiment_id is None:
            return (self.path / "research" / "FINDINGS.md").read_text(encoding="utf-8")
        return (self.experiment_dir(experiment_id) / "FINDINGS.md").read_text(encoding="utf-8")


@pytest.fixture
def marks(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder handlers leave marker files in (``MARKS``: workers and jobs inherit it)."""
    folder = project.path / "marks"
    folder.mkdir()
    monkeypatch.setenv("MARKS", str(folder))
    return folder


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    # Tests never talk to W&B: the plugin would otherwise log offline runs into the temp dir.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return Project(pytester)
