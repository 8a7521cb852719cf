"""pytest hooks only: options, plan collection, session set-up.

Every pytest run in an environment with pytest-mlexp installed imports this module, so it
imports nothing beyond pytest and the standard library; the rest loads when a plan is
collected or run.  PYTEST_DONT_REWRITE (nothing here is a test assertion; see __init__.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

WANDB_MODES = ("auto", "online", "offline", "disabled")
TRACKERS = ("wandb", "mlflow", "none")  # trackers.TRACKERS, without importing the trackers here


def _positive_int(value: str) -> int:
    import argparse

    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlexp", "ML experiments (pytest-mlexp)")
    group.addoption(
        "--experiment",
        action="append",
        dest="mlexp_experiment",
        default=[],
        metavar="ID",
        help="run experiments: an experiment id, a sub-experiment id, an id prefix, or 'all' "
        "(repeatable, comma-separated). Experiments are opt-in: without this they are deselected.",
    )
    group.addoption(
        "--stub",
        action="store_true",
        dest="mlexp_stub",
        default=False,
        help="wiring run: real handlers with stub_params, first seed, local, no W&B; "
        "criteria and gates reported, not enforced; writes results.stub.yaml only.",
    )
    group.addoption(
        "--mlexp-executor",
        dest="mlexp_executor",
        default=None,
        metavar="NAME",
        help="override the executor of every selected sub-experiment "
        "(local, process, modal, slurm, or a plugin's).",
    )
    group.addoption(
        "--mlexp-concurrency",
        dest="mlexp_concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="sub-experiments in flight at once for the process, modal and slurm executors.",
    )
    group.addoption(
        "--mlexp-tracker",
        dest="mlexp_tracker",
        choices=TRACKERS,
        default=None,
        help="experiment tracker: wandb, mlflow or none (default: ini mlexp_tracker, else wandb).",
    )
    group.addoption(
        "--mlexp-wandb",
        dest="mlexp_wandb",
        choices=WANDB_MODES,
        default="auto",
        help="Weights & Biases mode (default auto: WANDB_MODE, else online with credentials, else offline).",
    )
    group.addoption(
        "--mlexp-reuse",
        dest="mlexp_reuse",
        nargs="?",
        const="yes",
        default=None,
        choices=("yes", "no"),
        metavar="yes|no",
        help="reuse stored results whose fingerprint (code, params, seed, deps, upstream) is "
        "unchanged instead of running them again (default: ini mlexp_reuse, else no).",
    )
    group.addoption(
        "--mlexp-scaffold",
        action="store_true",
        dest="mlexp_scaffold",
        default=False,
        help="write handler stubs for sub-experiments that have none, then exit.",
    )
    group.addoption(
        "--mlexp-init",
        action="store_true",
        dest="mlexp_init",
        default=False,
        help="write a starter study (plan, handlers, pytest.ini, .gitignore) into the rootdir, "
        "never overwriting a file, then exit.",
    )
    parser.addini(
        "mlexp_plan", "path of the research plan, relative to rootdir", default="research/research_plan.yaml"
    )
    parser.addini("mlexp_handlers", "folder of handler modules, relative to rootdir", default="experiments")
    parser.addini("mlexp_tracker", "experiment tracker: wandb, mlflow or none", default="wandb")
    parser.addini("mlexp_wandb_project", "W&B project when the plan names none", default="")
    parser.addini("mlexp_plots", "draw criteria, sweep and learning-curve charts", type="bool", default=True)
    parser.addini(
        "mlexp_select_by_default", "run experiments without --experiment", type="bool", default=False
    )
    parser.addini("mlexp_max_artifact_mb", "larger remote artifacts stay on a volume", default="100")
    parser.addini(
        "mlexp_reuse",
        "reuse stored results with an unchanged fingerprint (--mlexp-reuse)",
        type="bool",
        default=False,
    )
    parser.addini(
        "mlexp_gpu_prices",
        "prices per GPU-hour for cost estimates, e.g. 'H100=3.95 A100-80GB=2.50'",
        default="",
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    from .hooks import EarlyOrder, KeepInterrupted, OpCarrier, SessionHooks
    from .session import MlexpSession

    _validate_ini(config)
    state = MlexpSession(config)
    config.pluginmanager.register(SessionHooks(state), "mlexp-session")
    config.pluginmanager.register(EarlyOrder(state), "mlexp-early-order")
    config.pluginmanager.register(KeepInterrupted(state), "mlexp-keep-interrupted")
    if state.is_worker:
        config.pluginmanager.register(OpCarrier(), "mlexp-op-carrier")
    if _distributing(config) and not state.is_worker:
        from .xdist_support import XdistHooks

        config.pluginmanager.register(XdistHooks(state), "mlexp-xdist")
    if config.pluginmanager.hasplugin("html") and getattr(config.option, "htmlpath", None):
        from .html_report import register_if_active  # pytest-html writing a report: our rows

        register_if_active(config)
    if state.selected:
        from .reporting import configure_lastfailed
        from .secrets import default_scrubber

        default_scrubber(refresh=True)  # this session's credentials (trackers scrub with it)

        configure_lastfailed(config)
        _sigterm_as_interrupt(config)
        # (What pytest shows of an experiment item is scrubbed by a plugin registered once the
        # plans are collected and the secrets known: SessionHooks.pytest_collection_finish.)
        if config.pluginmanager.hasplugin("rerunfailures") or config.pluginmanager.hasplugin("timeout"):
            from .neighbours import register  # experiment items never re-run nor timed out by them

            register(config, state)


def _distributing(config: pytest.Config) -> bool:
    """Whether pytest-xdist runs this session on workers: the test xdist applies itself once its
    ``pytest_cmdline_main`` has settled ``-n``.  Only then do its hooks call ours."""
    return (
        config.pluginmanager.hasplugin("xdist")
        and getattr(config.option, "dist", "no") != "no"
        and bool(getattr(config.option, "tx", None))
    )


def _validate_ini(config: pytest.Config) -> None:
    tracker = str(config.getini("mlexp_tracker") or "wandb").strip()
    if tracker not in TRACKERS:
        raise pytest.UsageError(
            f"ini option mlexp_tracker must be one of {', '.join(TRACKERS)}, not {tracker!r}"
        )
    prices = str(config.getini("mlexp_gpu_prices") or "")
    if prices.strip():
        from .estimate import PriceError, parse_prices

        try:
            parse_prices(prices)
        except PriceError as exc:
            raise pytest.UsageError(f"ini option mlexp_gpu_prices: {exc}") from None
    raw = str(config.getini("mlexp_max_artifact_mb"))
    try:
        if float(raw) <= 0:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(
            f"ini option mlexp_max_artifact_mb must be a positive number, not {raw!r}"
        ) from None


def _sigterm_as_interrupt(config: pytest.Config) -> None:
    """SIGTERM (a scheduler's kill, ``timeout``) ends the run like Ctrl-C, so session-end
    writing still happens and nothing finished is lost."""
    import threading

    # In an xdist worker too: the controller passes a SIGTERM on to its workers when they
    # ignore SIGINT (xdist_support.interrupt_workers), and a service manager's stop signals
    # every process of the group.
    if threading.current_thread() is not threading.main_thread():
        return

    def _on_term(signum: int, frame: Any) -> None:
        workers = config.pluginmanager.get_plugin("mlexp-xdist")  # under -n: the controller
        if workers is not None:
            workers.interrupt_workers()
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, _on_term)

    def _restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    config.add_cleanup(_restore)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``--experiment`` only experiment items run, so ordinary test modules are not even
    imported: an experiment run never depends on the unit tests' imports (or breaks on them)."""
    if (
        collection_path.suffix == ".py"
        and collection_path.name not in ("conftest.py", "__init__.py")
        and config.getoption("mlexp_experiment")
    ):
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if not parent.config.pluginmanager.has_plugin("mlexp-session"):
        return None  # the plugin is loaded but not configured (never happens in a normal run)
    from .session import session_of

    state = session_of(parent.config)
    if not state.is_plan_file(file_path):
        return None
    if Path(file_path).resolve() in state.collected:
        return None
    from .items import PlanFile

    node: pytest.Collector = PlanFile.from_parent(parent, path=file_path)
    return node


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("mlexp_init"):
        from .starter import run_init

        return run_init(config)
    if not config.getoption("mlexp_scaffold"):
        return None
    from .scaffolding import run_scaffold

    return run_scaffold(config)
