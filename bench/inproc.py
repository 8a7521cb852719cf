"""In-process budgets (run by hand, not a test): ``python bench/inproc.py [--reps N] [--only ...]``.

The suite asserts what these functions do; how fast they do it lives here, because a wall-clock
assertion in a test fails on a loaded machine (a 5-second budget failed at 6.19 s on the first
run of a fresh clone).  Each figure is a ratio measured side by side in one run against a
baseline that does the unavoidable part of the same work, alternating the two, several
repetitions, median of each:

1. ``plan``: ``parse_plan_text`` of a 10,000-sub-experiment plan (100 experiments of 100, with
   seeds, criteria, ``from:`` and dependencies) vs only reading the parser's events of the same
   text with PyYAML's fastest loader (libyaml's where built), which the plan loader consumes
   too: building the data, its line table, the plan model and its checks on top of the bare
   parse (budget <= 12, the headroom the test's old 5-second bound gave over its 0.45 s; for
   scale, ``yaml.load`` of the same text costs about twice the whole plan parse).
2. ``judge``: ``criteria.judge`` of a tiered criterion with ``borderline`` on one seed's value,
   5,000 values, vs a hand-written check of the same tiers that formats its own message
   (budget <= 40: a judgement also builds the rule text, the margin and the sentence parts).
3. ``timeout``: ``trackers.base.call_with_timeout`` around a call that hangs, with a 0.2 s
   timeout, vs waiting 0.2 s on an event: a hung W&B call must cost its timeout and no more
   (budget <= 1.5).

Budgets were the wall-clock assertions of the tests (``test_ten_thousand_sub_experiments_load``,
``test_judge_is_cheap``, the tracker timeout tests); these ratios keep their intent without
depending on how loaded the machine is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable


def big_plan_text(experiments: int = 100, subs: int = 100) -> str:
    """The plan of ``tests/unit/test_plan.py::test_ten_thousand_sub_experiments_load``."""
    lines = ["defaults: {params: {epochs: 3}}", "experiments:"]
    for e in range(experiments):
        lines += [f"  exp_{e}:", f"    phase: {e % 3 + 1}", "    sub_experiments:"]
        for s in range(subs):
            lines += [
                f"      s_{e}_{s}:",
                f"        params: {{lr: 1e-3, hidden: {s}}}",
                "        seeds: 2",
                "        success_criteria: {accuracy: '>= 0.9'}",
            ]
        lines += [
            "    success_criteria:",
            f"      accuracy: {{target: 0.9, acceptable: 0.8, failure: 0.5, from: s_{e}_0}}",
        ]
        if e:
            lines.append(f"    dependencies: [exp_{e - 1}]")
    return "\n".join(lines) + "\n"


def side_by_side(reps: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[float, float]:
    """Medians of a and b, alternated (ABBA...) so that drift in machine load hits both alike."""
    a()  # warm-up: imports, caches
    b()
    ra: list[float] = []
    rb: list[float] = []
    for i in range(reps):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        x, y = first(), second()
        if i % 2 == 0:
            ra.append(x)
            rb.append(y)
        else:
            rb.append(x)
            ra.append(y)
    return statistics.median(ra), statistics.median(rb)


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def plan(reps: int) -> tuple[str, float, float, float]:
    import yaml

    from pytest_mlexp.plan import parse_plan_text

    text = big_plan_text()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parsed = parse_plan_text(text, "big.yaml")
    assert len(parsed.experiments) == 100 and parsed.has_sub("s_99_99")
    a, b = side_by_side(
        reps,
        timed(lambda: parse_plan_text(text, "big.yaml")),
        timed(lambda: sum(1 for _ in yaml.parse(text, Loader=loader))),
    )
    return "10,000-sub-experiment plan: parse_plan_text vs the YAML parser's events", a, b, 12.0


def judge(reps: int) -> tuple[str, float, float, float]:
    from pytest_mlexp.criteria import judge as judge_one
    from pytest_mlexp.criteria import parse_criterion

    raw = {"target": 0.7, "acceptable": 0.6, "failure": 0.5, "direction": "higher", "borderline": 0.01}
    criterion = parse_criterion("acc", raw, loc=None, experiment_level=False)
    values = [0.5 + (i % 100) / 200 for i in range(5000)]

    def by_hand(v: float) -> tuple[str, str]:
        level = "target" if v >= 0.7 else "acceptable" if v >= 0.6 else "miss" if v > 0.5 else "failure"
        return level, f"acc = {v:.4g} (target >= 0.7, acceptable >= 0.6, failure <= 0.5): {level}"

    assert judge_one(criterion, [0.75]).level == "target"
    a, b = side_by_side(
        reps,
        timed(lambda: [judge_one(criterion, [v]) for v in values]),
        timed(lambda: [by_hand(v) for v in values]),
    )
    return "judge, 5,000 values: criteria.judge vs a hand-written tier check", a, b, 40.0


def timeout(reps: int) -> tuple[str, float, float, float]:
    from pytest_mlexp.trackers.base import TrackerTimeout, call_with_timeout

    limit = 0.2
    release = threading.Event()

    def hung() -> None:
        try:
            call_with_timeout(lambda: release.wait(60), limit, "hang")
        except TrackerTimeout:
            return
        raise AssertionError("call_with_timeout returned a hung call's value")

    try:
        a, b = side_by_side(reps, timed(hung), timed(lambda: threading.Event().wait(limit)))
    finally:
        release.set()  # let the abandoned threads end
    return f"a hung tracker call, {limit:g} s timeout: call_with_timeout vs Event.wait", a, b, 1.5


BENCHES = {"plan": plan, "judge": judge, "timeout": timeout}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each comparison (default 7)")
    parser.add_argument("--only", default="", help="comma list of: " + ",".join(BENCHES))
    opts = parser.parse_args()
    names = [n for n in opts.only.split(",") if n] or list(BENCHES)
    print(f"Python {sys.version.split()[0]}, {opts.reps} repetitions, medians", flush=True)
    over = False
    for name in names:
        what, a, b, budget = BENCHES[name](opts.reps)
        ratio = a / b
        ok = ratio <= budget
        over |= not ok
        mark = "ok" if ok else "OVER"
        print(f"  {what}: {a * 1e3:.1f} ms vs {b * 1e3:.1f} ms -> {ratio:.2f} (<= {budget:g} {mark})")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
