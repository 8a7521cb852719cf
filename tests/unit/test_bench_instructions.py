"""bench/instructions.py reads cachegrind's instruction count: the line it parses, and the line
the installed Valgrind really prints (a format it did not know would end the bench with an error,
never with a wrong count)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # it imports perf.py beside it
    had_perf = "perf" in sys.modules
    spec = importlib.util.spec_from_file_location(
        "mlexp_bench_instructions", ROOT / "bench" / "instructions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    if not had_perf:  # bench/perf.py, imported by it as "perf": not left to later tests
        sys.modules.pop("perf", None)


SUMMARY = """==4242== Cachegrind, a cache and branch-prediction profiler
==4242== Command: python -m pytest -q
==4242==
1000 passed in 14.77s
==4242==
==4242== I   refs:      3,605,454,989
"""


def test_reads_the_count(bench: ModuleType) -> None:
    assert bench.instructions(SUMMARY) == 3_605_454_989
    # Newer Valgrinds write one space: "I refs:".
    assert bench.instructions("==7== I refs:        89,171,416\n") == 89_171_416


@pytest.mark.parametrize(
    "text",
    [
        "1000 passed in 14.77s\n",  # no summary (valgrind not run, or killed)
        SUMMARY + SUMMARY,  # two processes' summaries: which one is the run's is unknown
        "a test printed: I   refs:      12\n",  # not valgrind's line
    ],
)
def test_refuses_what_it_cannot_read(bench: ModuleType, text: str) -> None:
    with pytest.raises(ValueError, match="I refs"):
        bench.instructions(text)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_reads_what_valgrind_prints(bench: ModuleType) -> None:
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            "pass",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # An interpreter's start-up is tens of millions of instructions, not a stray number.
    assert 10_000_000 < bench.instructions(proc.stderr) < 10_000_000_000
