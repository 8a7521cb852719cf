"""What W&B tracking costs per sub-experiment, offline (run by hand, not a test).

    python bench/wandb_cost.py [N] [STEPS]

Two measurements, each in a fresh process so that W&B's service starts cold:

1. ``seed``: one process runs N seeds through ``execution.run_seed`` (what every executor
   ends in) with a handler that logs STEPS points (default 100), tracked offline and
   untracked; prints the first seed's extra cost (``import wandb`` + service start) and the
   median of the later ones.
2. ``session``: a scratch project of N sub-experiments run by pytest with
   ``--mlexp-wandb offline`` and ``disabled``; the wall-time difference divided by N.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]

HANDLER = """
def handler(runner):
    for step in range(runner.params["steps"]):
        runner.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 100}, step=step)
        if step % 10 == 0:
            runner.progress(step / runner.params["steps"])
    runner.results.save_artifact("note.txt", "hello")
    return {"metrics": {"acc": 0.9}}
"""


def _seed_worker(n: int, steps: int, tracked: bool) -> list[float]:
    """Runs in a child process: the time of each of n seeds."""
    from pytest_mlexp.execution import Task, run_seed
    from pytest_mlexp.trackers import teardown_all
    from pytest_mlexp.trackers.wandb import WandbTracker

    root = Path(tempfile.mkdtemp(prefix="mlexp-wb-"))
    namespace: dict[str, object] = {}
    exec(HANDLER, namespace)
    handler = namespace["handler"]
    times = []
    for seed in range(n):
        tracking = (
            {
                "tracker": WandbTracker.import_path(),
                "mode": "offline",
                "project": "bench",
                "dir": ".",
                "group": "bench",
                "job_type": "sub",
                "name": f"sub-seed{seed}",
                "config": {"steps": steps, "seed": seed},
                "criteria": [],
            }
            if tracked
            else {}
        )
        task = Task(
            experiment_id="bench",
            sub_id="sub",
            point=None,
            seed=seed,
            params={"steps": steps},
            stub=False,
            root=str(root),
            plan_root=str(root / "research"),
            module_path="",
            module_name="",
            function="handler",
            artifacts_dir=str(root / "research" / "artifacts" / f"seed{seed}"),
            workdir=str(root / "work"),
            tracking=tracking,
        )
        t0 = time.perf_counter()
        outcome = run_seed(task, handler)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
        assert outcome["status"] == "ok" and not outcome.get("warnings"), outcome
    t0 = time.perf_counter()
    teardown_all()
    times.append(time.perf_counter() - t0)  # last: the session-end teardown
    return times


def _child(n: int, steps: int, tracked: bool) -> list[float]:
    repo = str(Path(__file__).resolve().parents[1])
    code = (
        f"import json, sys; sys.path.insert(0, {repo!r}); from bench.wandb_cost import _seed_worker; "
        f"print(json.dumps(_seed_worker({n}, {steps}, {tracked!r})))"
    )
    env = {**os.environ, "WANDB_SILENT": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def seed_costs(n: int, steps: int) -> None:
    plain = _child(n, steps, False)
    tracked = _child(n, steps, True)
    first = tracked[0] - plain[0]
    later = statistics.median(t - p for t, p in zip(tracked[1:n], plain[1:n], strict=True))
    print(f"per seed, {steps} logged steps, offline, {n} seeds in one process:")
    print(f"  untracked seed:            {statistics.median(plain[:n]) * 1000:8.1f} ms")
    print(f"  first tracked seed extra:  {first * 1000:8.1f} ms  (import wandb + W&B service start)")
    print(f"  later tracked seeds extra: {later * 1000:8.1f} ms  (median)")
    print(f"  teardown at session end:   {tracked[n] * 1000:8.1f} ms")


def session_costs(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mlexp-wb-session-") as tmp:
        root = Path(tmp)
        subs = ", ".join(f"s{i}" for i in range(n))
        (root / "research").mkdir()
        (root / "research" / "research_plan.yaml").write_text(
            f"project: {{name: bench}}\nexperiments:\n  exp:\n    sub_experiments: [{subs}]\n",
            encoding="utf-8",
        )
        (root / "experiments").mkdir()
        body = "".join(
            f"\ndef s{i}(runner):\n    for k in range(100):\n"
            f"        runner.log_metrics({{'loss': 1 / (k + 1)}})\n"
            f"    return {{'metrics': {{'i': {i}}}}}\n"
            for i in range(n)
        )
        (root / "experiments" / "exp.py").write_text(body, encoding="utf-8")
        walls: dict[str, list[float]] = {}
        for mode in ("disabled", "offline", "disabled", "offline"):
            env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": mode}
            t0 = time.perf_counter()
            subprocess.run(
                [*PYTEST, "--experiment", "exp", f"--mlexp-wandb={mode}"],
                cwd=root,
                env=env,
                capture_output=True,
                check=True,
            )
            walls.setdefault(mode, []).append(time.perf_counter() - t0)
        off, on = min(walls["disabled"]), min(walls["offline"])
        print(f"pytest session of {n} sub-experiments (best of 2):")
        print(f"  --mlexp-wandb disabled: {off:6.2f} s")
        print(f"  --mlexp-wandb offline:  {on:6.2f} s  (+{(on - off) * 1000 / n:.0f} ms per sub-experiment)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seed_costs(n, steps)
    session_costs(n)


if __name__ == "__main__":
    main()
