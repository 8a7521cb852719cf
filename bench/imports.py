"""Import-cost benchmark (run by hand, not a test): ``python bench/imports.py [--reps N] [--src OTHER]``.

What a local plan run pays, once, to import the plugin's modules: the fixed cost that every
``pytest --experiment ...`` adds to plain pytest whatever the plan's size (issue 19's overhead
budgets).  Two steps, each in fresh subprocesses:

1. the module list: a tiny plan (two sub-experiments, a criterion, local executor) is run with
   ``--experiment all`` in a scratch project whose conftest writes the ``pytest_mlexp`` modules
   (and whether PyYAML is) in ``sys.modules`` at the end of the run;
2. the cost: a fresh interpreter imports pytest first (plain pytest pays that too), then, timed,
   PyYAML and that module list; and once more with PyYAML imported before the clock starts (the
   plugin's own share).  Median over ``--reps`` interpreters.

``--src OTHER_TREE`` measures another checkout (e.g. ``/work/main``) the same way, alternated
with this tree (ABAB...), so the two figures are taken side by side under the same load.
Byte-code caching stays on (the first, untimed, run of each side fills it), as for any user; the
cache goes in the scratch folder, never into either tree.
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

from perf import DEV_PLUGINS_OFF  # bench/ is this script's folder, first on sys.path

HERE = Path(__file__).resolve().parent.parent
CACHE: dict[str, str] = {}  # PYTHONPYCACHEPREFIX: set in main() to a folder of the scratch directory

CONFTEST = """
import json, os, sys

def pytest_unconfigure(config):
    with open(os.environ["MLEXP_BENCH_MODULES"], "w") as fh:
        json.dump({
            "mlexp": sorted(m for m in sys.modules if m.startswith("pytest_mlexp")),
            "yaml": "yaml" in sys.modules,
        }, fh)
"""

# Two sub-experiments and a tiered criterion: what most plans hold (the criterion brings in
# the judging, and FINDINGS.md's "vs previous" column).
PLAN = """project: {name: imports, hypothesis: it imports}
defaults: {handler: "experiments.bench:trivial"}
experiments:
  exp0:
    sub_experiments: [s0, s1]
    success_criteria: {x: {target: 0.9, acceptable: 0.5}}
"""

HANDLER = "def trivial(runner):\n    return {'metrics': {'x': 1.0}}\n"

# The timed child: pytest is imported untimed (plain pytest imports it too).
TIMER = """
import importlib, json, sys, time
import pytest
mods = json.loads(sys.argv[1])
if sys.argv[2] == "pre":
    import yaml
t, c = time.perf_counter(), time.process_time()
for m in mods:
    importlib.import_module(m)
print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000)
"""


def env_for(tree: Path) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONHASHSEED": "0"}
    for var in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(var, None)
    # PYTHONPATH comes before the editable install's finder: this tree's pytest_mlexp is imported.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH", "")]))
    env.update(CACHE)
    return env


def module_list(tree: Path, scratch: Path) -> list[str]:
    """The modules a local run of a tiny plan imports, from that tree."""
    root = scratch / f"project-{abs(hash(str(tree)))}"
    (root / "research").mkdir(parents=True)
    (root / "experiments").mkdir()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (root / "experiments" / "bench.py").write_text(HANDLER, encoding="utf-8")
    (root / "research" / "research_plan.yaml").write_text(PLAN, encoding="utf-8")
    target = root / "modules.json"
    cmd = [sys.executable, "-m", "pytest", "-q", *DEV_PLUGINS_OFF]
    cmd += ["--experiment", "all", "--mlexp-wandb", "disabled"]
    env = {**env_for(tree), "MLEXP_BENCH_MODULES": str(target)}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stdout[-3000:] + proc.stderr[-2000:]
        sys.exit(f"the plan run in {root} failed ({proc.returncode}):\n{tail}")
    got = json.loads(target.read_text(encoding="utf-8"))
    mods: list[str] = got["mlexp"]
    if got["yaml"]:
        mods = ["yaml", *mods]
    return mods


def timed(tree: Path, mods: list[str], *, yaml_first: bool) -> tuple[float, float]:
    """(wall ms, CPU ms) of the imports in one fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", TIMER, json.dumps(mods), "pre" if yaml_first else "with"],
        env=env_for(tree),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21, help="fresh interpreters per side (median)")
    parser.add_argument("--src", default="", help="also measure this other checkout, side by side")
    opts = parser.parse_args()
    sides = {"this tree": HERE}
    if opts.src:
        sides[opts.src] = Path(opts.src).resolve()
    with tempfile.TemporaryDirectory(prefix="mlexp-imports-") as tmp:
        CACHE["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        lists = {name: module_list(tree, Path(tmp)) for name, tree in sides.items()}
        times: dict[str, dict[bool, list[tuple[float, float]]]] = {
            name: {True: [], False: []} for name in sides
        }
        for name, tree in sides.items():  # warm-up: byte-compile, fill the OS cache
            timed(tree, lists[name], yaml_first=False)
        order = list(sides)
        for i in range(opts.reps):
            for name in order if i % 2 == 0 else order[::-1]:
                for yaml_first in (False, True):
                    times[name][yaml_first].append(timed(sides[name], lists[name], yaml_first=yaml_first))
    print(f"importing the modules a local plan run uses (pytest already imported), median of {opts.reps}:")
    medians: dict[str, list[float]] = {}
    for name in sides:
        n = sum(1 for m in lists[name] if m.startswith("pytest_mlexp"))
        medians[name] = [
            statistics.median(t[i] for t in times[name][yaml_first])
            for yaml_first in (False, True)
            for i in (0, 1)
        ]
        every, every_cpu, ours, ours_cpu = medians[name]
        print(
            f"  {name}: {n} pytest_mlexp modules + PyYAML {every:.1f} ms (CPU {every_cpu:.1f}); "
            f"without PyYAML {ours:.1f} ms (CPU {ours_cpu:.1f})"
        )
    if opts.src:
        a, b = (medians[name] for name in sides)
        print(
            f"  this tree / {opts.src}: {a[0] / b[0]:.2f} (CPU {a[1] / b[1]:.2f}); "
            f"without PyYAML {a[2] / b[2]:.2f} (CPU {a[3] / b[3]:.2f})"
        )


if __name__ == "__main__":
    main()
