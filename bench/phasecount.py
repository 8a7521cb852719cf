"""Where a plan run's extra instructions are, phase by phase (run by hand, not a test):
``python bench/phasecount.py [--src CHECKOUT] [-n 1000] [--at module:Qual.name:before|after:N ...]``.

``bench/instructions.py`` counts whole runs; this counts each run up to a point and stops it
there (``os._exit``, so nothing after the point runs), on the same projects as the other
benches: 1,000 trivial sub-experiments against 1,000 parametrised tests.  The points are the
ends of pytest's phases (configure, collection, the run loop, ``pytest_sessionfinish`` and the
summary, ``unconfigure``, the ``atexit`` handlers, the process's end), and, for the plan side,
any ``--at`` point: the N-th call of a function, before or after it (its module must look the
function up at call time: a name imported by value elsewhere is not seen).  The difference
between two points is what ran between them.  Each point is one run under cachegrind, about as
long as a whole run there (~10 s at 1,000 items), two at a time.

Counts of points inside the session end move by about ±3 M from run to run (timestamps written,
dict sizes); the phase ends agree within a few parts in ten thousand.  The results store's
time-based rewrite is turned off in these runs (``refresh_s``): under Valgrind it would fire a
few times and land in whichever phase was running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from instructions import PLAN_ARGS, counted  # bench/ is first on sys.path
from perf import ENV, clean_results, param_project, plan_project, run, use_checkout

PHASES = ("configure", "collection", "runtestloop", "sessionfinish", "unconfigure", "atexit", "end")

CUT_PLUGIN = """
import atexit, importlib, importlib.util, os, sys
import pytest

_AT = os.environ.get("MLEXP_BENCH_CUT", "end")


def _cut():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Points:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session):
        if _AT == "collection":
            _cut()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if _AT == "runtestloop":
            _cut()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        if _AT == "sessionfinish":
            _cut()

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        if _AT == "unconfigure":
            _cut()


def _function_point(spec):
    module, qualname, when, nth = spec.split(":")
    owner = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    real, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when == "before" and calls[0] == int(nth):
            _cut()
        out = real(*args, **kwargs)
        if when == "after" and calls[0] == int(nth):
            _cut()
        return out

    setattr(owner, name, wrapper)


class _QuietStore:
    # The results store's timed rewrite off (see the bench's docstring), set when its module
    # is first imported, where the run imports it (importing it earlier would move its cost).

    def find_spec(self, name, path=None, target=None):
        if name != "pytest_mlexp.store":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            init = module.ResultsStore.__init__

            def __init__(self, *args, **kwargs):
                init(self, *args, **kwargs)
                self.refresh_s = None

            module.ResultsStore.__init__ = __init__

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("MLEXP_BENCH_PLAN"):
    sys.meta_path.insert(0, _QuietStore())


def pytest_configure(config):
    if _AT == "configure":
        _cut()
    if _AT.count(":") == 3:
        _function_point(_AT)
    config.pluginmanager.register(_Points(), "bench-cut-points")


@atexit.register
def _at_exit():  # registered first, so it runs after every other atexit handler
    if _AT == "atexit":
        _cut()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default="", help="import pytest_mlexp from this checkout (PYTHONPATH)")
    parser.add_argument("-n", type=int, default=1000, help="items on each side (default 1000)")
    parser.add_argument("--at", action="append", default=[], help="module:Qual.name:before|after:N")
    opts = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    if opts.src:
        use_checkout(opts.src)
    with tempfile.TemporaryDirectory(prefix="mlexp-phasecount-") as scratch:
        tmp = Path(scratch)
        (tmp / "bench_cut.py").write_text(CUT_PLUGIN, encoding="utf-8")
        ENV["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        ENV["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp), ENV.get("PYTHONPATH", "")) if p)
        plan, plain = plan_project(tmp / "plan", opts.n), param_project(tmp / "param", opts.n)
        jobs = [(side, point) for point in PHASES for side in ("plan", "plain")]
        jobs += [("plan", point) for point in opts.at]

        def one(job: tuple[str, str]) -> int:
            side, point = job
            # Each job its own copy of its project: two runs at once must not share results.
            folder = tmp / f"{side}-{abs(hash(point))}"
            shutil.copytree(plan if side == "plan" else plain, folder)
            # The parsed plan's cache and the byte-code of conftest.py and the handlers are keyed
            # by path: warm them for this copy, or its count would include compiling them.
            if side == "plan":
                clean_results(folder)
            run(folder, PLAN_ARGS if side == "plan" else ["-q"])
            env_point = {"MLEXP_BENCH_CUT": point, "MLEXP_BENCH_PLAN": "1" if side == "plan" else ""}
            args = ["-p", "bench_cut", *(PLAN_ARGS if side == "plan" else ["-q"])]
            return counted(folder, args, plan=side == "plan", extra_env=env_point)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            counts = dict(zip(jobs, pool.map(one, jobs), strict=True))
    print(f"Python {sys.version.split()[0]}, {opts.n} items, M instructions up to each point (cachegrind)")
    # Each row: the count up to the start of that hook (or the end), and the phase that ended there.
    print(f"{'up to':<16} {'plan':>9} {'plain':>9}   {'phase: plan':>11} {'plain':>9} {'extra':>8}")
    prev = None
    for point in PHASES:
        a, b = counts[("plan", point)] / 1e6, counts[("plain", point)] / 1e6
        line = f"{point:<16} {a:9.1f} {b:9.1f}"
        if prev is not None:
            da, db = a - prev[0], b - prev[1]
            line += f"   {da:11.1f} {db:9.1f} {da - db:+8.1f}"
        print(line)
        prev = (a, b)
    for point in opts.at:
        print(f"plan, {point}: {counts[('plan', point)] / 1e6:.1f}")


if __name__ == "__main__":
    main()
