"""Fan-out benchmark (run by hand, not a test): ``python bench/fanout.py [N] [SLEEP_S]``.

A plan of N sub-experiments (default 8) that each sleep SLEEP_S seconds (default 1) with
``executor: process``, run twice in a scratch project: serially (``--mlexp-executor local``)
and with the process executor at ``--mlexp-concurrency N``.  Dispatch ahead should make the
second about the time of the slowest item (plus worker start-up), not the sum.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
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


def run(root: Path, *args: str) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--experiment", "all", *args], cwd=root, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    sleep_s = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    with tempfile.TemporaryDirectory(prefix="mlexp-fanout-") as tmp:
        root = Path(tmp)
        make_project(root, n, sleep_s)
        serial = run(root, "--mlexp-executor", "local")
        fanned = run(root, "--mlexp-concurrency", str(n))
    print(f"{n} sub-experiments x {sleep_s:g} s, {os.cpu_count()} CPUs")
    label = f"process, concurrency {n}:"
    print(f"{'serial (local):':<28}{serial:6.2f} s wall")
    print(f"{label:<28}{fanned:6.2f} s wall")
    print(f"{'speed-up:':<28}{serial / fanned:6.2f}x")


if __name__ == "__main__":
    main()
