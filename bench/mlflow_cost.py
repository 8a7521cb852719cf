"""What MLflow tracking costs, with the default sqlite store (run by hand, not a test).

    python bench/mlflow_cost.py [N]

A scratch project of N sub-experiments (one seed each, 100 logged steps) run by pytest with
``--mlexp-tracker none`` and ``--mlexp-tracker mlflow``, alternating, best of 2 each:

* the first MLflow session also makes the store (MLflow's schema migration);
* ``local``: every seed in the pytest process, which imports mlflow and opens the store once;
* ``process``: every seed in a worker process of its own, which imports mlflow and opens the
  store itself (``--mlexp-concurrency 2``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]


def _project(root: Path, n: int) -> None:
    subs = ", ".join(f"s{i}" for i in range(n))
    (root / "research").mkdir()
    (root / "research" / "research_plan.yaml").write_text(
        f"project: {{name: bench}}\nexperiments:\n  exp:\n    sub_experiments: [{subs}]\n", encoding="utf-8"
    )
    (root / "experiments").mkdir()
    body = "".join(
        f"\ndef s{i}(runner):\n    for k in range(100):\n"
        f"        runner.log_metrics({{'loss': 1 / (k + 1)}}, step=k)\n"
        f"    return {{'metrics': {{'i': {i}}}}}\n"
        for i in range(n)
    )
    (root / "experiments" / "exp.py").write_text(body, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\nmlexp_plots = false\n", encoding="utf-8")


def _run(root: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    subprocess.run(
        [*PYTEST, "--experiment", "exp", *args], cwd=root, env=env, capture_output=True, check=True
    )
    return time.perf_counter() - t0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory(prefix="mlexp-mlflow-") as tmp:
        root = Path(tmp)
        _project(root, n)
        first = _run(root, "--mlexp-tracker", "mlflow")
        print(f"first session, making the store:     {first:6.2f} s")
        for executor in ("local", "process"):
            walls: dict[str, list[float]] = {}
            for tracker in ("none", "mlflow", "none", "mlflow"):
                extra = ("--mlexp-executor", executor, "--mlexp-concurrency", "2")
                walls.setdefault(tracker, []).append(_run(root, "--mlexp-tracker", tracker, *extra))
            off, on = min(walls["none"]), min(walls["mlflow"])
            print(f"{n} sub-experiments, {executor:<8} none {off:6.2f} s   mlflow {on:6.2f} s   "
                  f"(+{(on - off) * 1000 / n:.0f} ms per sub-experiment)")  # fmt: skip


if __name__ == "__main__":
    main()
