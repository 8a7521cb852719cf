"""``mlexp``: look at a study's results without running anything (SPEC section 11).

    mlexp show [EXPERIMENT...] [--format table|md|csv|json]
    mlexp diff EXPERIMENT [--against previous|<date>|<git commit>] [--format ...]
    mlexp estimate [--experiment ID ...] [--format ...]

Installed with the package as a console script.  It never imports pytest or the plugin's pytest
glue and never runs a handler: it reads the plan and results.yaml (read-only) and the project's
source (for fingerprints, to say what is outdated).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    common.add_argument(
        "--plan", help="the plan file (default: ini mlexp_plan, else research/research_plan.yaml)"
    )
    common.add_argument("--rootdir", help="the project's root (default: found as pytest finds it)")
    common.add_argument("--stub", action="store_true", help="read results.stub.yaml instead")
    parser = argparse.ArgumentParser(
        prog="mlexp", description="Look at pytest-mlexp results: show, diff, estimate."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", parents=[common], help="params × metrics of the current results")
    show.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    diff = sub.add_parser("diff", parents=[common], help="an experiment's results against an earlier run")
    diff.add_argument("experiment", metavar="EXPERIMENT")
    diff.add_argument(
        "--against", default="previous", help="previous (default), a date YYYY-MM-DD, or a git commit"
    )
    est = sub.add_parser("estimate", parents=[common], help="wall time, GPU-hours and cost of a run")
    est.add_argument(
        "--experiment", action="append", default=[], metavar="ID", help="repeatable; default: all"
    )
    est.add_argument("--executor", help="as --mlexp-executor would run them")
    est.add_argument("--concurrency", type=int, help="as --mlexp-concurrency")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .project import CliError, open_project

    try:
        project = open_project(rootdir=args.rootdir, plan=args.plan, stub=args.stub)
        if args.command == "show":
            from .show import show

            out = show(project, list(args.experiments), args.format)
        elif args.command == "diff":
            from .diff import diff

            out = diff(project, args.experiment, args.against, args.format)
        else:
            from .estimate import estimate_cmd

            ids = [v.strip() for arg in args.experiment for v in arg.split(",") if v.strip()]
            out = estimate_cmd(
                project,
                ids,
                args.format,
                executor=args.executor,
                concurrency=args.concurrency,
                stub=args.stub,
            )
    except CliError as exc:
        sys.stderr.write(f"mlexp: {exc}\n")
        return 2
    for line in project.warnings:
        sys.stderr.write(f"mlexp: warning: {line}\n")
    sys.stdout.write(out + "\n")
    return 0
