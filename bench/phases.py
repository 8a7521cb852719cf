"""Where a plan run's time goes, against plain pytest (run by hand, not a test):
``python bench/phases.py [--reps N] [--sizes 100,1000] [--src CHECKOUT]``.

``bench/perf.py`` says how much slower a plan run is than plain pytest; this says where.  It
runs the same projects (1,000 trivial sub-experiments vs 1,000 parametrised tests, and 100 of
each) and times each phase of every run from inside it, in CPU time (``time.process_time``) so
that other work on a shared machine does not count:

* ``start``: the interpreter and pytest up to ``pytest_configure`` (the plugin's import);
* ``configure``: configure until the session starts;
* ``collect``: collection (for a plan: the plugin's modules are imported here, the plan is read);
* ``run``: the run loop (every item's set-up, call, report and tear-down);
* ``finish``: ``pytest_sessionfinish``, every plugin's (for a plan: results.yaml and
  FINDINGS.md are written; pytest writes its cache);
* ``end``: after ``pytest_sessionfinish`` until the last ``pytest_unconfigure`` (the summary);
* ``exit``: from the last ``pytest_unconfigure`` until the process is gone: pytest's clean-up
  and the interpreter's finalisation, whose garbage collections go over everything still
  alive (the child's CPU time from ``os.wait4`` minus its CPU time at that hook).

Each phase is reported per side (medians over the repetitions, sides alternated) and as the
difference per item, (plan − plain) / n, and, with two sizes, the marginal difference per item
between them (fixed costs cancel out).  A conftest plugin records the marks; both sides get it.

The last two columns are the garbage collector's share of each phase (CPU time inside
collections, from ``gc.callbacks``): the collector's work grows with everything alive, not
with the instructions a plugin runs, so it is where time and ``bench/instructions.py``'s
counts part.  The exit phase's figure covers pytest's clean-up only: the interpreter's own
collections at exit call no callbacks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from perf import BASE, ENV, clean_results, param_project, plan_project  # bench/ is first on sys.path

PHASES = ("start", "configure", "collect", "run", "finish", "end", "exit")

MARKS_PLUGIN = """
import atexit, gc, json, os, time
import pytest

_marks = {}
_gc = {}  # the collector's CPU time so far, at each mark
_target = os.environ["MLEXP_BENCH_PHASES"]
_in_gc = [0.0, 0.0]  # [total so far, when the running collection started]


def _collecting(phase, info):
    if phase == "start":
        _in_gc[1] = time.process_time()
    else:
        _in_gc[0] += time.process_time() - _in_gc[1]


gc.callbacks.append(_collecting)


def _mark(name):
    _marks[name] = time.process_time()
    _gc[name] = _in_gc[0]


@atexit.register
def _at_exit():
    # pytest's clean-up (its second full collection) has run; the interpreter's own
    # collections at exit call no callbacks, so the exit phase's figure stops here.
    _mark("atexit")
    with open(_target, "w") as fh:
        json.dump({"marks": _marks, "gc": _gc}, fh)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _mark("configure")
    config.pluginmanager.register(_Last(), "bench-phases-last")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _mark("sessionstart")


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    _mark("collection")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    _mark("runtestloop")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):  # the outermost wrapper: around every plugin's
    _mark("sessionfinish")
    try:
        return (yield)
    finally:
        _mark("sessionfinished")


class _Last:
    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        _mark("unconfigure")
"""


def one(root: Path, args: list[str], env: dict[str, str], scratch: Path) -> dict[str, float]:
    """One run; its phases in CPU seconds, and (``gc:<phase>``) the garbage collector's share."""
    out = scratch / "phases.json"
    out.unlink(missing_ok=True)
    env = {
        **env,
        "MLEXP_BENCH_PHASES": str(out),
        "PYTHONPATH": os.pathsep.join(p for p in (str(scratch), env.get("PYTHONPATH", "")) if p),
    }
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [*BASE, "-p", "bench_phases", *args], cwd=root, env=env, stdout=log, stderr=log
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            sys.exit(
                f"{root}: pytest exited {child.returncode}:\n{log.read()[-4000:].decode(errors='replace')}"
            )
    cpu_total = usage.ru_utime + usage.ru_stime  # the child's whole CPU time, its exit included
    data = json.loads(out.read_text(encoding="utf-8"))
    m = data["marks"]
    g = data["gc"]
    finish_end = m["sessionfinished"]
    collector = {
        "gc:start": g["configure"],
        "gc:configure": g["sessionstart"] - g["configure"],
        "gc:collect": g["runtestloop"] - g["collection"],
        "gc:run": g["sessionfinish"] - g["runtestloop"],
        "gc:finish": g["sessionfinished"] - g["sessionfinish"],
        "gc:end": g["unconfigure"] - g["sessionfinished"],
        "gc:exit": g["atexit"] - g["unconfigure"],
    }
    return collector | {
        "start": m["configure"],
        "configure": m["sessionstart"] - m["configure"],
        "collect": m["runtestloop"] - m["collection"],
        "run": m["sessionfinish"] - m["runtestloop"],
        "finish": finish_end - m["sessionfinish"],
        "end": m["unconfigure"] - finish_end,
        "exit": cpu_total - m["unconfigure"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000", help="comma list of item counts")
    parser.add_argument("--src", help="import pytest_mlexp from this checkout (PYTHONPATH)")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    env = dict(ENV)
    if opts.src:
        env["PYTHONPATH"] = str(Path(opts.src).resolve())
    plan_args = ["-q", "--experiment", "all", "--mlexp-wandb", "disabled"]
    with tempfile.TemporaryDirectory(prefix="mlexp-phases-") as tmp:
        scratch = Path(tmp)
        (scratch / "bench_phases.py").write_text(MARKS_PLUGIN, encoding="utf-8")
        env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
        projects = {}
        for n in sizes:
            projects[("plan", n)] = (plan_project(scratch / f"plan{n}", n), plan_args)
            projects[("plain", n)] = (param_project(scratch / f"param{n}", n), ["-q"])
        for root, args in projects.values():  # warm the byte-code caches
            clean_results(root)
            one(root, args, env, scratch)
        got: dict[tuple[str, int], list[dict[str, float]]] = {k: [] for k in projects}
        for rep in range(opts.reps):
            keys = list(projects)
            keys = keys[rep % len(keys) :] + keys[: rep % len(keys)]  # rotate the order
            for key in keys:
                root, args = projects[key]
                clean_results(root)
                got[key].append(one(root, args, env, scratch))
    fields = (*PHASES, *(f"gc:{p}" for p in PHASES))
    med = {k: {p: statistics.median(r[p] for r in v) for p in fields} for k, v in got.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {opts.reps} repetitions, medians, ms")
    for n in sizes:
        plan, plain = med[("plan", n)], med[("plain", n)]
        print(f"\n{n} items            plan    plain   difference  per item   collector: plan  plain")
        for p in (*PHASES, "total"):
            a = sum(plan[q] for q in PHASES) if p == "total" else plan[p]
            b = sum(plain[q] for q in PHASES) if p == "total" else plain[p]
            ga = sum(plan[f"gc:{q}"] for q in PHASES) if p == "total" else plan[f"gc:{p}"]
            gb = sum(plain[f"gc:{q}"] for q in PHASES) if p == "total" else plain[f"gc:{p}"]
            print(
                f"  {p:<12} {a * 1e3:8.1f} {b * 1e3:8.1f} {(a - b) * 1e3:10.1f} {(a - b) / n * 1e6:7.1f} µs"
                f" {ga * 1e3:13.1f} {gb * 1e3:6.1f}"
            )
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print(f"\nmarginal per item, ({hi} − {lo}) / {hi - lo}: plan, plain, difference (µs)")
        for p in (*PHASES, "total"):

            def marg(side: str, p: str = p) -> float:
                def tot(n: int) -> float:
                    m = med[(side, n)]
                    return sum(m[q] for q in PHASES) if p == "total" else m[p]

                return (tot(hi) - tot(lo)) / (hi - lo) * 1e6

            a, b = marg("plan"), marg("plain")
            print(f"  {p:<12} {a:8.1f} {b:8.1f} {a - b:8.1f}")


if __name__ == "__main__":
    main()
