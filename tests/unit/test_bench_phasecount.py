"""bench/phasecount.py's cut plugin stops a pytest run at the point it is given, and only there:
what the bench counts up to a point is the run up to that point (no valgrind needed here)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.factories import run_pytest

ROOT = Path(__file__).resolve().parents[2]


def _cut_plugin() -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(
            "mlexp_bench_phasecount", ROOT / "bench" / "phasecount.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
        for name in ("perf", "instructions"):  # imported by it: not left to later tests
            sys.modules.pop(name, None)
    plugin: str = module.CUT_PLUGIN
    return plugin


CONFTEST = """
import atexit
import pytest

atexit.register(print, "ATEXIT-RAN")  # registered after the cut plugin's: runs before it

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    print("SESSIONFINISH-RAN")

def pytest_unconfigure(config):
    print("UNCONFIGURE-RAN")
"""


@pytest.mark.parametrize(
    ("point", "ran", "not_ran"),
    [
        ("end", ["SESSIONFINISH-RAN", "UNCONFIGURE-RAN", "1 passed", "ATEXIT-RAN"], []),
        ("sessionfinish", [], ["SESSIONFINISH-RAN", "passed"]),
        # after every other pytest_unconfigure, before the atexit handlers
        ("unconfigure", ["SESSIONFINISH-RAN", "1 passed", "UNCONFIGURE-RAN"], ["ATEXIT-RAN"]),
        ("atexit", ["UNCONFIGURE-RAN", "ATEXIT-RAN"], []),
        # the N-th call of a function, before it: the summary line is never written
        ("_pytest.terminal:TerminalReporter.summary_stats:before:1", ["SESSIONFINISH-RAN"], ["1 passed"]),
    ],
)
def test_a_run_stops_at_its_point(tmp_path: Path, point: str, ran: list[str], not_ran: list[str]) -> None:
    (tmp_path / "bench_cut.py").write_text(_cut_plugin(), encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (project / "test_one.py").write_text("def test_one():\n    pass\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MLEXP_BENCH_CUT": point, "MLEXP_BENCH_PLAN": ""}
    env.pop("PYTEST_ADDOPTS", None)
    proc = run_pytest(project, "-p", "bench_cut", "-s", "-p", "no:cacheprovider", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ran:
        assert text in proc.stdout, (point, proc.stdout)
    for text in not_ran:
        assert text not in proc.stdout, (point, proc.stdout)
