"""Warm-worker benchmark (run by hand, not a test): ``python bench/warm.py [--repeat R] [--skip-demo]``.

Two plans, each run with ``--mlexp-executor local`` and ``--mlexp-executor process`` side by
side in one run (interleaved, R times, default 3; medians, with the spread):

* **the 1-s-import plan**: 8 sub-experiments in one handler module that takes 1 s to import,
  trivial handlers, ``--mlexp-concurrency 2``.  With a fresh process per seed, ``process``
  paid the import 8 times (4 s at two at once); warm workers pay it twice, at once.
  Target (issue 19): ``process`` <= 1.3x ``local``.
* **the demo study** (this repository's ``research/`` and ``experiments/``, torch on the CPU),
  at the default concurrency.  Target: ``process`` <= 1.3x ``local``.

pytest runs with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -p pytest_mlexp.plugin`` (see fanout.py).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import pytest_wall, summary

REPO = Path(__file__).resolve().parents[1]


def make_import_plan(root: Path, n: int = 8, import_s: float = 1.0) -> None:
    subs = ", ".join(f"i{k}" for k in range(n))
    (root / "research").mkdir()
    (root / "research" / "research_plan.yaml").write_text(
        "project: {name: slow-import, hypothesis: warm}\n"
        f"experiments:\n  slow:\n    sub_experiments: [{subs}]\n",
        encoding="utf-8",
    )
    (root / "experiments").mkdir()
    body = "".join(f"\ndef i{k}(runner):\n    return {{'metrics': {{'k': {k}}}}}\n" for k in range(n))
    source = f"import time\ntime.sleep({import_s})  # a heavy import (torch, a big model library)\n"
    (root / "experiments" / "slow.py").write_text(source + body, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def make_demo(root: Path) -> None:
    shutil.copytree(REPO / "research", root / "research")
    shutil.copytree(REPO / "experiments", root / "experiments")
    shutil.copy(REPO / "conftest.py", root / "conftest.py")  # the demo's fixtures (digits)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def fresh_demo(root: Path) -> None:
    """Remove the results of the last run, so that every run does the whole study."""
    research = root / "research"
    for pattern in ("experiments/*/results*.yaml*", "experiments/*/.results*", "experiments/*/FINDINGS.md"):
        for path in research.glob(pattern):
            path.unlink()
    (research / "FINDINGS.md").unlink(missing_ok=True)
    shutil.rmtree(research / "artifacts", ignore_errors=True)


def side_by_side(
    label: str,
    root: Path,
    repeat: int,
    extra: list[str],
    before: Callable[[Path], None] | None = None,
    src: str | None = None,
) -> None:
    local: list[float] = []
    process: list[float] = []
    other: list[float] = []
    runs = [("local", local, None), ("process", process, None)]
    if src:
        runs.append(("process", other, src))
    for _ in range(repeat):
        for name, out, tree in runs:
            if before is not None:
                before(root)
            out.append(pytest_wall(root, "--mlexp-executor", name, *extra, src=tree))
    ratios = [p / max(lo, 1e-9) for p, lo in zip(process, local, strict=True)]
    print(label)
    print(f"  {'local:':<12}{summary(local)}")
    print(f"  {'process:':<12}{summary(process)}")
    print(
        f"  {'ratio:':<12}{statistics.median(process) / statistics.median(local):6.2f}x of the medians "
        f"(per pair: min {min(ratios):.2f}, max {max(ratios):.2f})   target <= 1.30x"
    )
    if other:
        print(f"  {'process, the --src tree:':<12}{summary(other)}")
        ratio = statistics.median(other) / statistics.median(local)
        print(f"  {'its ratio:':<12}{ratio:6.2f}x of the medians")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--src", help="also measure process with the pytest_mlexp in this folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlexp-warm-") as tmp:
        root = Path(tmp) / "import"
        root.mkdir()
        make_import_plan(root)
        pytest_wall(root, "--mlexp-executor", "local")  # .pyc files and the file cache, both sides
        side_by_side(
            "8 sub-experiments, a module that takes 1 s to import, concurrency 2:",
            root,
            args.repeat,
            ["--mlexp-concurrency", "2"],
            src=args.src,
        )
        if not args.skip_demo:
            demo = Path(tmp) / "demo"
            demo.mkdir()
            make_demo(demo)
            side_by_side(
                "the demo study on the CPU (torch):", demo, args.repeat, [], before=fresh_demo, src=args.src
            )


if __name__ == "__main__":
    main()
