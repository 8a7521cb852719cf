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
import json, os, time
import pytest

_marks = {}
_target = os.environ["MLEXP_BENCH_PHASES"]


def _mark(name):
    _marks[name] = time.process_time()


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
        with open(_target, "w") as fh:
            json.dump({"marks": _marks}, fh)
"""


def one(root: Path, args: list[str], env: dict[str, str], scratch: Path) -> dict[str, float]:
    """One run; its phases in CPU seconds."""
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
    finish_end = m["sessionfinished"]
    return {
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
    med = {k: {p: statistics.median(r[p] for r in v) for p in PHASES} for k, v in got.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {opts.reps} repetitions, medians, ms")
    for n in sizes:
        plan, plain = med[("plan", n)], med[("plain", n)]
        print(f"\n{n} items            plan    plain   difference  per item")
        for p in (*PHASES, "total"):
            a = sum(plan.values()) if p == "total" else plan[p]
            b = sum(plain.values()) if p == "total" else plain[p]
            print(
                f"  {p:<12} {a * 1e3:8.1f} {b * 1e3:8.1f} {(a - b) * 1e3:10.1f} {(a - b) / n * 1e6:7.1f} µs"
            )
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print(f"\nmarginal per item, ({hi} − {lo}) / {hi - lo}: plan, plain, difference (µs)")
        for p in (*PHASES, "total"):

            def marg(side: str, p: str = p) -> float:
                def tot(n: int) -> float:
                    m = med[(side, n)]
                    return sum(m.values()) if p == "total" else m[p]

                return (tot(hi) - tot(lo)) / (hi - lo) * 1e6

            a, b = marg("plan"), marg("plain")
            print(f"  {p:<12} {a:8.1f} {b:8.1f} {a - b:8.1f}")


if __name__ == "__main__":
    main()
