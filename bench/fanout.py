"""Fan-out benchmark (run by hand, not a test): ``python bench/fanout.py [N] [SLEEP_S] [--repeat R]``.

A plan of N sub-experiments (default 8) that each sleep SLEEP_S seconds (default 1) with
``executor: process``, run in a scratch project serially (``--mlexp-executor local``) and with
the process executor at ``--mlexp-concurrency N``.  Dispatch ahead and warm workers forked
from a pre-started server should make the second about the time of one item plus start-up.

The floor is SLEEP_S plus the time to start N ``python -c pass`` at once, measured in the same
run; the target (issue 19) is the process run within 0.6 s of it.  Every measurement is taken
R times (default 5), interleaved, and the median is reported with the spread (min-max).
pytest runs with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -p pytest_mlexp.plugin`` on both sides, so
other installed plugins (hypothesis, xdist, ...) do not add their import time to every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def make_project(root: Path, n: int, sleep_s: float) -> None:
    subs = ", ".join(f"s{i}" for i in range(n))
    (root / "research").mkdir()
    (root / "research" / "research_plan.yaml").write_text(
        "project: {name: fanout, hypothesis: parallel}\n"
        "defaults: {executor: process}\n"
        f"experiments:\n  fan:\n    sub_experiments: [{subs}]\n",
        encoding="utf-8",
    )
    (root / "experiments").mkdir()
    body = "".join(
        f"\ndef s{i}(runner):\n    time.sleep({sleep_s})\n    return {{'metrics': {{'i': {i}}}}}\n"
        for i in range(n)
    )
    (root / "experiments" / "fan.py").write_text("import time\n" + body, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def pytest_wall(root: Path, *args: str, src: str | None = None) -> float:
    """Wall time of one ``pytest --experiment all`` in ``root`` (exits on failure); ``src``: a
    folder holding another copy of ``pytest_mlexp`` to measure instead of the installed one."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "MPLBACKEND": "Agg"}
    if src:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "pytest_mlexp.plugin", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--experiment", "all", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def start_n(n: int) -> float:
    """Wall time to start ``n`` ``python -c pass`` at once and see them all end."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(n)]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - t0


def summary(values: Sequence[float]) -> str:
    return f"{statistics.median(values):6.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=8)
    ap.add_argument("sleep_s", nargs="?", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", help="also measure the process run with the pytest_mlexp in this folder")
    args = ap.parse_args()
    n, sleep_s = args.n, args.sleep_s
    serial: list[float] = []
    fanned: list[float] = []
    starts: list[float] = []
    other: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mlexp-fanout-") as tmp:
        root = Path(tmp)
        make_project(root, n, sleep_s)
        pytest_wall(root, "--mlexp-concurrency", str(n))  # warm the file cache and .pyc files
        for _ in range(args.repeat):
            starts.append(start_n(n))
            fanned.append(pytest_wall(root, "--mlexp-concurrency", str(n)))
            serial.append(pytest_wall(root, "--mlexp-executor", "local"))
            if args.src:
                other.append(pytest_wall(root, "--mlexp-concurrency", str(n), src=args.src))
    floors = [sleep_s + s for s in starts]
    over = [f - fl for f, fl in zip(fanned, floors, strict=True)]
    print(f"{n} sub-experiments x {sleep_s:g} s, {os.cpu_count()} CPUs, {args.repeat} runs (median, spread)")
    print(f"{'serial (local):':<34}{summary(serial)}")
    print(f"{f'process, concurrency {n}:':<34}{summary(fanned)}")
    print(f"{f'start {n} python -c pass:':<34}{summary(starts)}")
    print(f"{'floor (sleep + that start):':<34}{summary(floors)}")
    print(f"{'process minus floor:':<34}{summary(over)}   target <= 0.60 s")
    print(f"{'speed-up over serial:':<34}{statistics.median(serial) / statistics.median(fanned):6.2f}x")
    if other:
        print(f"{'process, the --src tree:':<34}{summary(other)}")
        print(f"{'  minus floor:':<34}{summary([o - fl for o, fl in zip(other, floors, strict=True)])}")


if __name__ == "__main__":
    main()
