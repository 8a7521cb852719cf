"""The overhead budgets counted in instructions, not seconds (run by hand, not a test):
``python bench/instructions.py [--reps N] [--src CHECKOUT] [--keep DIR]``.

``bench/perf.py`` measures time, side by side, and on a shared VM its per-round ratios of the
1,000-item run spread from 0.8 to 1.5: a change of a few percent cannot be seen in it, and
whether a budget is met depends on the round.  This script runs the same commands on the same
projects under Valgrind's cachegrind (``--cache-sim=no``), which counts every instruction the
process executes in user space ("I refs").  The count does not depend on what else the machine
runs: two runs of the same command agree to a few parts in a thousand (the script runs each
command ``--reps`` times and prints the spread), so a ratio of counts is a figure that can be
compared from one change to the next.

It is a proxy for CPU time, not time itself, and it leaves out three things:

* the kernel's work on the process's behalf (system calls: the results' fsyncs, the journal's
  writes, page faults), which a plan run has more of (``bench/perf.py``'s CPU rows include it);
* how fast the instructions run (cache misses: a plan run holds more memory);
* waiting (fsync).

So the time ratios are a little higher than these.  The budgets themselves are the time
ratios of ``bench/perf.py``; this script says where a change moved the work, without the noise.

Under Valgrind a run is ~15 times slower, so the results store's time-based rewrite of
results.yaml (every 10 s of a long run, ``store.refresh_s``) happens a few times in the
1,000-item run where at full speed it does not: about 0.3% of the plan side's count.

Measured (each a fresh ``pytest`` subprocess, the repository's dev plugins off as in
``bench/perf.py``, byte-code and the parsed plan cached by a warm-up run first, results deleted
before every run):

1. start-up: ``pytest --co -q`` in a project without a plan, plugin on vs ``-p no:mlexp``;
2. the 1,000-item run: 1,000 trivial sub-experiments vs 1,000 parametrised tests;
3. the marginal item: (count(1,000) - count(100)) / 900 on each side.

Needs ``valgrind`` on PATH (Debian: ``apt-get install valgrind``).  Runs up to one command per
CPU at once (the counts do not care); ~95 s on 2 CPUs with ``--reps 2``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from perf import (  # bench/ is first on sys.path
    BASE,
    ENV,
    Table,
    clean_results,
    param_project,
    plain_project,
    plan_project,
    run,
    use_checkout,
    verdict,
)

# cachegrind's summary line: "==123== I   refs:      4,234,252,503" (3.19), "I refs:" in newer ones.
_IREFS = re.compile(r"^==\d+==\s+I\s+refs:\s+([\d,]+)\s*$", re.MULTILINE)


def instructions(text: str) -> int:
    """The instruction count from cachegrind's output (its summary on stderr)."""
    found = _IREFS.findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one 'I refs' line in cachegrind's output, found {len(found)}")
    return int(found[0].replace(",", ""))


def counted(cwd: Path, args: Sequence[str], *, plan: bool, extra_env: Mapping[str, str] | None = None) -> int:
    """One pytest subprocess under cachegrind (``ENV`` and ``extra_env``); its instruction count."""
    if plan:
        clean_results(cwd)
    else:
        shutil.rmtree(cwd / ".pytest_cache", ignore_errors=True)
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        *BASE,
        *args,
    ]
    env = {**ENV, **(extra_env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} in {cwd} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return instructions(proc.stderr)


def spread(counts: Sequence[int]) -> str:
    """How far apart the repetitions of one command landed, in parts per thousand."""
    if len(counts) < 2:
        return "one run"
    return f"repetitions within {(max(counts) - min(counts)) / min(counts) * 1000:.1f}‰"


PLAN_ARGS = ["-q", "--experiment", "all", "--mlexp-wandb", "disabled"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="runs of each command (default 2)")
    parser.add_argument("--src", default="", help="import pytest_mlexp from this checkout (PYTHONPATH)")
    parser.add_argument("--keep", default="", help="build the projects here and keep them")
    parser.add_argument("--small", type=int, default=100, help="the small run of the marginal item")
    parser.add_argument("-n", type=int, default=1000, help="the whole run's items (default 1000)")
    opts = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH (Debian: apt-get install valgrind); bench/perf.py measures time")
    if opts.src:
        use_checkout(opts.src)
    small, n = opts.small, opts.n
    with tempfile.TemporaryDirectory(prefix="mlexp-instr-") as scratch:
        tmp = Path(opts.keep) if opts.keep else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        ENV["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        plain = plain_project(tmp / "plain")
        plans = {k: plan_project(tmp / f"plan{k}-run", k) for k in (small, n)}
        params = {k: param_project(tmp / f"param{k}-run", k) for k in (small, n)}
        # (name, folder, args, is a plan run)
        jobs: list[tuple[str, Path, list[str], bool]] = [
            ("start-up on", plain, ["--co", "-q"], False),
            ("start-up off", plain, ["--co", "-q", "-p", "no:mlexp"], False),
        ]
        for k in (small, n):
            jobs += [(f"plan {k}", plans[k], PLAN_ARGS, True), (f"param {k}", params[k], ["-q"], False)]
        for _, folder, args, is_plan in jobs:  # byte-code and the parsed plan, cached once
            if is_plan:
                clean_results(folder)
            run(folder, args)
        # A run's count does not depend on what else runs, but two runs in one folder would
        # share its results: the same folder's runs one after another, folders side by side.
        by_folder: dict[Path, list[tuple[str, list[str], bool]]] = {}
        for name, folder, args, is_plan in jobs:
            by_folder.setdefault(folder, []).extend([(name, args, is_plan)] * opts.reps)

        def run_folder(folder: Path) -> list[tuple[str, int]]:
            return [(name, counted(folder, args, plan=is_plan)) for name, args, is_plan in by_folder[folder]]

        counts: dict[str, list[int]] = {}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for got in pool.map(run_folder, list(by_folder)):
                for name, count in got:
                    counts.setdefault(name, []).append(count)
    m = {name: statistics.median(values) for name, values in counts.items()}
    # The budgets are for 1,000 items against 100; other sizes are measured, not judged.
    judged = (small, n) == (100, 1000)
    table = Table()
    print(f"Python {sys.version.split()[0]}, instructions (cachegrind 'I refs'), medians of {opts.reps}")
    a, b = m["start-up on"], m["start-up off"]
    table.add(
        "start-up, `--co -q`, no plan",
        f"{a / 1e6:,.0f} M",
        f"{b / 1e6:,.0f} M",
        f"{a / b:.3f} ({spread(counts['start-up on'])})",
        verdict(a / b, 1.03) + " (time)",
    )
    a, b = m[f"plan {n}"], m[f"param {n}"]
    table.add(
        f"{n:,} items, run",
        f"{a / 1e6:,.0f} M",
        f"{b / 1e6:,.0f} M",
        f"{a / b:.3f} ({spread(counts[f'plan {n}'])})",
        verdict(a / b, 1.15) + " (time)" if judged else "",
    )
    ma = (m[f"plan {n}"] - m[f"plan {small}"]) / (n - small)
    mb = (m[f"param {n}"] - m[f"param {small}"]) / (n - small)
    table.add(
        f"marginal per item, ({n:,} - {small}) / {n - small}",
        f"{ma / 1e3:,.0f} k",
        f"{mb / 1e3:,.0f} k",
        f"{ma / mb:.3f}",
        verdict(ma / mb, 1.3) + " (time)" if judged else "",
    )
    print()
    print(table.render())


if __name__ == "__main__":
    main()
