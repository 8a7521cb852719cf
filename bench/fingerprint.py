"""What fingerprinting costs (SPEC section 11): run by hand, not a test.

    .venv/bin/python bench/fingerprint.py [--n 10000] [--reps 5]

Builds a 10,000-sub-experiment plan (100 experiments of 100, one shared handler module that
imports a helper module, a conftest fixture the handler requests, a ``deps:`` file), runs it
once so that every result is stored with its fingerprint, then measures in fresh pytest
subprocesses:

1. ``pytest --experiment all --co -q`` with those results stored: loading them fingerprints
   every stored result (stale? outdated? restorable?).  A conftest wrapper times everything the
   fingerprint code does (``PlanFingerprints``, ``PlanReconciler``, the reuse decision, counted
   once when nested) and the collection phase (session start to collection finish); printed:
   their ratio (goal < 10%).
2. the same for a whole run (every item computes its fingerprint before it runs), as a share of
   the run's wall time, and with ``--mlexp-reuse`` (every result reused: nothing runs).

The figures are medians over ``--reps`` runs; compare shares, not seconds (the machine may be
noisy).  Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is this script's folder, first on sys.path
from perf import DEV_PLUGINS_OFF, PER_EXPERIMENT, write_plan

ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONHASHSEED": "0"}
for _var in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
    ENV.pop(_var, None)
BASE = [sys.executable, "-m", "pytest", *DEV_PLUGINS_OFF, "-q"]

# Times the fingerprint code (outermost calls only) and the collection phase, in the child.
CONFTEST = """
import json, os, time

import pytest

_target = os.environ.get("MLEXP_BENCH_FP")
_spent = {"fingerprint": 0.0, "fingerprint_cpu": 0.0, "calls": 0, "collect": 0.0, "collect_cpu": 0.0,
          "session": 0.0, "session_cpu": 0.0}
_depth = [0]
_marks = {}

if _target:
    from pytest_mlexp import reuse as _reuse

    def _wrap(owner, name):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if _depth[0]:
                return original(*args, **kwargs)
            _depth[0] += 1
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                _spent["fingerprint"] += time.perf_counter() - t0
                _spent["fingerprint_cpu"] += time.process_time() - c0
                _spent["calls"] += 1
                _depth[0] -= 1

        setattr(owner, name, timed)

    for _name in ("node", "sub_inputs", "params"):
        _wrap(_reuse.PlanFingerprints, _name)
    for _name in ("stale_reason", "restorable", "restored", "reconcile"):
        _wrap(_reuse.PlanReconciler, _name)
    _wrap(_reuse, "plan_reuse")


@pytest.fixture(scope="session")
def dataset():
    return [1, 2, 3]


def pytest_sessionstart(session):
    _marks["start"] = time.perf_counter()
    _marks["cpu"] = time.process_time()


def pytest_collection_finish(session):
    _spent["collect"] = time.perf_counter() - _marks["start"]
    _spent["collect_cpu"] = time.process_time() - _marks["cpu"]


def pytest_unconfigure(config):
    if _target:
        _spent["session"] = time.perf_counter() - _marks.get("start", time.perf_counter())
        _spent["session_cpu"] = time.process_time() - _marks.get("cpu", time.process_time())
        with open(_target, "w") as fh:
            json.dump(_spent, fh)
"""

HANDLER = """
from experiments.helpers import scale


def trivial(runner, dataset):
    return {"metrics": {"x": scale(len(dataset))}}
"""


def project(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (root / "experiments").mkdir()
    (root / "experiments" / "__init__.py").write_text("", encoding="utf-8")
    (root / "experiments" / "helpers.py").write_text("def scale(v):\n    return float(v)\n", encoding="utf-8")
    (root / "experiments" / "bench.py").write_text(HANDLER, encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_bytes(os.urandom(1 << 20))  # 1 MiB, hashed once a session at most
    write_plan(root, n, name="fp", defaults='handler: "experiments.bench:trivial", deps: [data/train.csv]')
    return root


def child(root: Path, args: list[str], ok: tuple[int, ...] = (0, 1)) -> tuple[float, dict[str, float]]:
    """One pytest subprocess: its wall time and what the conftest measured in it."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        target = tmp.name
    env = {**ENV, "MLEXP_BENCH_FP": target}
    t0 = time.perf_counter()
    done = subprocess.run([*BASE, *args], cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode not in ok:
        sys.exit(
            f"pytest {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    spent = json.loads(Path(target).read_text())
    os.unlink(target)
    return wall, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlexp-fp-bench-"))
    try:
        root = project(tmp / "p", args.n)
        experiments = args.n // PER_EXPERIMENT
        print(f"{args.n} sub-experiments in {experiments} experiments; one run to store results ...")
        child(root, ["--experiment", "all", "--mlexp-wandb", "disabled"])  # results stored, fingerprinted
        shares, cpu_shares, collect, cpu = [], [], [], []
        for _ in range(args.reps):
            _, spent = child(root, ["--experiment", "all", "--co"])
            shares.append(spent["fingerprint"] / spent["collect"])
            cpu_shares.append(spent["fingerprint_cpu"] / spent["collect_cpu"])
            collect.append(spent["collect"])
            cpu.append(spent["collect_cpu"])
        print(
            f"collection (--co, {args.n} stored results): {statistics.median(collect):.2f} s wall, "
            f"{statistics.median(cpu):.2f} s CPU; fingerprinting "
            f"{100 * statistics.median(shares):.1f}% of the wall time, "
            f"{100 * statistics.median(cpu_shares):.1f}% of the CPU time (goal < 10%)"
        )
        for label, extra in (
            ("a whole run", []),
            ("a whole run, --mlexp-reuse (all reused)", ["--mlexp-reuse"]),
        ):
            run_shares, run_cpu, walls = [], [], []
            for _ in range(max(1, args.reps // 2)):
                shutil.rmtree(root / ".pytest_cache", ignore_errors=True)
                wall, spent = child(root, ["--experiment", "all", "--mlexp-wandb", "disabled", *extra])
                run_shares.append(spent["fingerprint"] / spent["session"])
                run_cpu.append(spent["fingerprint_cpu"] / spent["session_cpu"])
                walls.append(wall)
            print(
                f"{label}: {statistics.median(walls):.2f} s wall; fingerprinting "
                f"{100 * statistics.median(run_shares):.1f}% of the wall time, "
                f"{100 * statistics.median(run_cpu):.1f}% of the CPU time"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
