"""``pytest --mlexp-init``: a starter study in the rootdir, never overwriting a file.

Writes a plan with two experiments and a gate, working handlers that use only the standard
library, a ``pytest.ini`` where pytest found no configuration file (it pins the rootdir), and a
``.gitignore`` where there is none.  For files that already exist (an ini file, a .gitignore)
it prints the lines meant for them instead.  ``plan_init`` decides (reading, never writing);
``run_init`` is the pytest glue that writes and prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["GITIGNORE_LINES", "HANDLERS_FILE", "InitPlan", "plan_init", "run_init"]

HANDLERS_FILE = "starter_study.py"

# What pytest-mlexp (and the trackers it drives) leave beside the research that is not research:
# stub results and artifacts, W&B's offline runs, MLflow's default store, and the journal and
# temporary files of results.yaml and FINDINGS.md writing (store.py, atomic.py; locks are taken
# on folders, so there are no lock files), and byte-code caches, the plan's parsed form among them
# (plancache.py).
GITIGNORE_LINES = (
    "__pycache__/",
    "results.stub.yaml",
    "artifacts-stub/",
    "wandb/",
    "mlruns.db",
    "mlartifacts/",
    ".results*.journal",
    ".results*.tmp",
    ".FINDINGS.md.*.tmp",
)
GITIGNORE_HEADER = "# pytest-mlexp: generated files that are not results"

PLAN = """\
# A starter study written by `pytest --mlexp-init`: make it yours.
#   pytest --experiment all --stub   the wiring, in a second (stub_params, first seed only)
#   pytest --experiment all          the real run: results in research/experiments/<id>/,
#                                    findings in research/FINDINGS.md
project:
  name: Starter study
  hypothesis: >-
    A nearest-centroid classifier beats always guessing the most common class on two
    overlapping clusters of points.

defaults:
  # Every experiment sees the same data: data_seed fixes it, the seed varies the model.
  params: {n_train: 2000, n_test: 1000, separation: 3.0, data_seed: 0}
  stub_params: {n_train: 100, n_test: 50}

experiments:
  p1-baseline:
    name: "P1: Majority-class baseline"
    phase: 1
    description: "What any model has to beat."
    sub_experiments:
      p1_majority:
        description: "Always predict the class most common in training"
        success_criteria:
          # A sanity check: the classes are balanced, so guessing is right about half the time.
          accuracy: "in [0.4, 0.6]"
    success_criteria:  # the experiment's own, judged from stored results (the gate reads them)
      accuracy: {rule: "in [0.4, 0.6]", from: p1_majority}

  p2-centroid:
    name: "P2: Nearest centroid vs the baseline"
    phase: 2
    description: "A classifier with one mean point per class, over 3 seeds."
    sub_experiments:
      p2_centroid:
        description: "Nearest class centroid, fitted on a resample drawn with each seed"
        dependencies: [p1_majority]  # reads P1's stored accuracy as runner.upstream
        seeds: 3
        success_criteria:
          accuracy: {target: 0.9, acceptable: 0.85, failure: 0.7}
    success_criteria:
      accuracy: {target: 0.9, acceptable: 0.85, failure: 0.7, from: p2_centroid}
      gain_over_baseline: {rule: "> 0.1", from: p2_centroid, note: "accuracy points over P1"}

gates:
  gate_1:
    name: "Gate 1: a baseline to beat"
    experiments: [p1-baseline]
    unlocks: "Phase 2 (a real model)"
"""

HANDLERS = '''\
"""Handlers of the starter study written by `pytest --mlexp-init` (standard library only).

One function per sub-experiment, named like it: pytest-mlexp finds it by reading this file and
calls it once per seed with `runner` (params, seed, logging, artifacts).  Replace the bodies
with your own work and keep the shape of what they return:
{"metrics": {...}, "finding": "one sentence", "artifacts": [paths]}.
"""

from __future__ import annotations

import random


def make_points(n, separation, rng):
    """n labelled points (x, y, label) from two unit-variance clusters, balanced classes."""
    points = []
    for i in range(n):
        label = i % 2
        centre = separation / 2 if label else -separation / 2
        points.append((rng.gauss(centre, 1.0), rng.gauss(0.0, 1.0), label))
    rng.shuffle(points)
    return points


def load_split(params):
    """The same train/test split for every seed and experiment (data_seed fixes it)."""
    rng = random.Random(params["data_seed"])
    n_train = params["n_train"]
    points = make_points(n_train + params["n_test"], params["separation"], rng)
    return points[:n_train], points[n_train:]


def p1_majority(runner):
    """Baseline: always predict the class most common in training."""
    train, test = load_split(runner.params)
    ones = sum(label for _, _, label in train)
    guess = 1 if 2 * ones >= len(train) else 0
    accuracy = sum(label == guess for _, _, label in test) / len(test)
    return {
        "metrics": {"accuracy": accuracy},
        "finding": f"Always guessing class {guess} is right {accuracy:.1%} of the time",
    }


def p2_centroid(runner):
    """Nearest class centroid, fitted on a resample of the training set drawn with this seed."""
    baseline = runner.upstream["p1_majority"]["metrics"].get("accuracy")
    if baseline is None:
        raise RuntimeError("p1_majority has no stored accuracy: run pytest --experiment p1-baseline first")
    train, test = load_split(runner.params)
    rng = random.Random(runner.seed)
    sample = [rng.choice(train) for _ in train]
    centroids = {}
    for label in (0, 1):
        xs = [(x, y) for x, y, lab in sample if lab == label]
        centroids[label] = (sum(x for x, _ in xs) / len(xs), sum(y for _, y in xs) / len(xs))
    runner.progress(0.5, stage="fit")

    def predict(x, y):
        return min(centroids, key=lambda k: (x - centroids[k][0]) ** 2 + (y - centroids[k][1]) ** 2)

    correct = 0
    for i, (x, y, label) in enumerate(test, 1):
        correct += predict(x, y) == label
        if i % 100 == 0 or i == len(test):
            runner.log_metrics({"running_accuracy": correct / i}, step=i)  # live line, W&B
            runner.progress(0.5 + 0.5 * i / len(test), stage="test")
    accuracy = correct / len(test)
    figure = runner.results.save_artifact("test_points.svg", scatter_svg(test, predict, centroids))
    return {
        "metrics": {"accuracy": accuracy, "gain_over_baseline": accuracy - baseline},
        "finding": f"Nearest centroid is right {accuracy:.1%} of the time, "
        f"{accuracy - baseline:+.1%} over the baseline",
        "artifacts": [figure],
    }


def scatter_svg(points, predict, centroids, size=320):
    """The test points (colour: true class; ringed in red: misclassified) and the centroids."""
    shown = points[:300]
    xs = [p[0] for p in shown] + [c[0] for c in centroids.values()]
    ys = [p[1] for p in shown] + [c[1] for c in centroids.values()]
    lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)

    def at(x, y):  # data coordinates to pixels, y up
        span = size - 20
        return 10 + (x - lo_x) / (hi_x - lo_x) * span, size - 10 - (y - lo_y) / (hi_y - lo_y) * span

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">']
    out.append(f'<rect width="{size}" height="{size}" fill="white"/>')
    for x, y, label in shown:
        cx, cy = at(x, y)
        ring = ' stroke="red" stroke-width="1.5"' if predict(x, y) != label else ""
        fill = "#1f77b4" if label else "#ff7f0e"
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{fill}"{ring}/>')
    for x, y in centroids.values():
        cx, cy = at(x, y)
        out.append(f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="black"/>')
    out.append("</svg>")
    return "\\n".join(out)
'''

INI_COMMENT = (
    "# Written by `pytest --mlexp-init`.  A configuration file pins pytest's rootdir to this\n"
    "# folder, so the plan and handler paths (relative to the rootdir) mean the same whichever\n"
    "# folder pytest is started from.\n"
)


@dataclass
class InitPlan:
    """What ``--mlexp-init`` will do: files to write, files left alone, lines to print."""

    writes: dict[Path, str] = field(default_factory=dict)
    existing: list[Path] = field(default_factory=list)  # starter files already there
    blocked: list[Path] = field(default_factory=list)  # starter files in the way of a new plan
    ini_lines: tuple[str, list[str]] | None = None  # (section header, lines) for an existing ini
    ini_path: Path | None = None
    gitignore_lines: list[str] = field(default_factory=list)  # missing from an existing .gitignore


def _ini_section(ini: Path, text: str) -> tuple[str, bool]:
    """The section an existing configuration file keeps pytest's options in, and whether its
    values are TOML strings."""
    name = ini.name
    if name == "setup.cfg":
        return "[tool:pytest]", False
    if name == "pyproject.toml":
        return (
            "[tool.pytest]" if re.search(r"^\[tool\.pytest\]", text, re.M) else "[tool.pytest.ini_options]"
        ), True
    return "[pytest]", ini.suffix == ".toml"


def plan_init(root: Path, plan_setting: str, handlers_setting: str, inipath: Path | None) -> InitPlan:
    """Decide what to write under ``root`` (reads files, writes nothing)."""
    out = InitPlan()
    plan_path = root / plan_setting
    handlers_path = root / handlers_setting / HANDLERS_FILE
    if plan_path.exists():
        out.existing = [p for p in (plan_path, handlers_path) if p.exists()]
    elif handlers_path.exists():
        out.blocked = [handlers_path]
    else:
        out.writes[plan_path] = PLAN
        out.writes[handlers_path] = HANDLERS
    options = {"mlexp_plan": plan_setting, "mlexp_handlers": handlers_setting}
    if inipath is None:
        ini = root / "pytest.ini"
        out.writes[ini] = INI_COMMENT + "[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
    else:
        out.ini_path = inipath
        try:
            text = inipath.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        section, toml = _ini_section(inipath, text)
        missing = [k for k in options if not re.search(rf"^\s*{k}\s*=", text, re.M)]
        if missing:
            quote = (lambda v: f'"{v}"') if toml else (lambda v: v)
            out.ini_lines = (section, [f"{k} = {quote(options[k])}" for k in missing])
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        out.writes[gitignore] = GITIGNORE_HEADER + "\n" + "\n".join(GITIGNORE_LINES) + "\n"
    else:
        try:
            have = {line.strip() for line in gitignore.read_text(encoding="utf-8").splitlines()}
        except (OSError, UnicodeDecodeError):
            have = set()
        out.gitignore_lines = [line for line in GITIGNORE_LINES if line not in have]
    return out


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def run_init(config: pytest.Config) -> int:
    root = Path(config.rootpath)
    plan_setting = str(config.getini("mlexp_plan") or "research/research_plan.yaml")
    handlers_setting = str(config.getini("mlexp_handlers") or "experiments")
    inipath = Path(config.inipath) if config.inipath else None
    init = plan_init(root, plan_setting, handlers_setting, inipath)

    # Runs before pytest configures its terminal reporter: plain prints (as --mlexp-scaffold).
    print(f"mlexp: rootdir {root}")
    if init.blocked:
        names = ", ".join(_shown(p, root) for p in init.blocked)
        print(
            f"mlexp: {names} exists but {plan_setting} does not: the starter study was not written "
            "(nothing is overwritten). Move it aside, or point ini mlexp_plan / mlexp_handlers elsewhere."
        )
        return int(pytest.ExitCode.USAGE_ERROR)
    for path, text in init.writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as fh:  # "x": never replaces a file made meanwhile
            fh.write(text)
        print(f"mlexp: wrote {_shown(path, root)}")
    kept = [*init.existing]
    if init.ini_path is not None and init.ini_lines is None:
        kept.append(init.ini_path)
    if (root / ".gitignore").exists() and root / ".gitignore" not in init.writes and not init.gitignore_lines:
        kept.append(root / ".gitignore")
    if kept:
        print(f"mlexp: exists, left as it is: {', '.join(_shown(p, root) for p in kept)}")
    if init.existing:
        print(
            f"mlexp: {plan_setting} exists: no starter study written "
            "(pytest --mlexp-scaffold writes handler stubs for your own plan)"
        )
    if init.ini_lines is not None and init.ini_path is not None:
        section, lines = init.ini_lines
        print(f"mlexp: {_shown(init.ini_path, root)} exists; add under {section}:")
        for line in lines:
            print(f"    {line}")
    if init.gitignore_lines:
        print("mlexp: .gitignore exists; add:")
        for line in init.gitignore_lines:
            print(f"    {line}")
    if any(p.name == HANDLERS_FILE for p in init.writes):
        print("mlexp: next: pytest --experiment all --stub   (the wiring, in a second)")
        folder = Path(plan_setting).parent.as_posix()
        print(
            f"mlexp: then: pytest --experiment all          (the real run: results and findings in {folder}/)"
        )
    return 0
