"""Secrets never shown: credential values a handler prints or logs (pytest's captured sections,
``-rA``, failures, JUnit with ``junit_logging = all``), swept values of secret-named params (node
ids, results, FINDINGS, JUnit, the cache, trackers), and ``--showlocals`` on a plugin frame
(issue 15, SPEC section 14 "Secrets").  Each with ``HF_TOKEN``, ``WANDB_API_KEY`` and a secret
param of the plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.factories import recording_tracker_conftest

HF_TOKEN = "hf_envsecret_abcdefgh123"
WANDB_API_KEY = "wandbsecretkey0123456789abcdef"
PLAN_SECRET = "sk-plan-secret-123456"
SWEPT = ("tok-swept-secret-aaaa", "tok-swept-secret-bbbb")
SECRETS = (HF_TOKEN, WANDB_API_KEY, PLAN_SECRET, *SWEPT)

PLAN = f"""
project: {{name: Leaks, hypothesis: "h"}}
experiments:
  e-k:
    sub_experiments:
      k_print:
        params: {{api_key: "{PLAN_SECRET}", lr: 0.1}}
      k_sweep:
        sweep: {{api_token: ["{SWEPT[0]}", "{SWEPT[1]}"], lr: [0.1]}}
"""

HANDLERS = """
import logging, os, sys

log = logging.getLogger("handler")

def k_print(runner):
    for value in (os.environ["HF_TOKEN"], os.environ["WANDB_API_KEY"], runner.params["api_key"]):
        print("token is", value)
        sys.stderr.write("stderr has " + value + "\\n")
        log.warning("logged %s", value)
    if os.environ.get("FAIL"):
        raise RuntimeError("failed while holding " + os.environ["HF_TOKEN"])
    return {"metrics": {"m": 1.0}}

def k_sweep(runner):
    print("using", runner.params["api_token"], os.environ["WANDB_API_KEY"])
    log.warning("swept %s", runner.params["api_token"])
    if os.environ.get("FAIL"):
        raise RuntimeError("failed with " + runner.params["api_token"])
    return {"metrics": {"m": 1.0}, "finding": "used " + runner.params["api_token"]}
"""

TRACKER = recording_tracker_conftest("tracker.log", '{"settings": self.task.tracking, "summary": summary}')


def _setup(project: Project, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    project.pytester.makeconftest(TRACKER)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_API_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")  # trackers on: the hook's tracker records what it got
    # Caches written as for any user (the plan's model, plancache.py), whatever this suite runs under.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    if fail:
        monkeypatch.setenv("FAIL", "1")


def _everything_written(project: Project, result: pytest.RunResult) -> dict[str, str]:
    written = {"terminal": result.stdout.str() + result.stderr.str()}
    for path in project.path.rglob("*"):  # every file, binary ones too (a cache, a pickle)
        if path.is_file():
            if path.name in ("research_plan.yaml",) or path.suffix in (".py", ".pyc"):
                continue  # the plan holds its own secrets, as the researcher wrote them
            written[str(path.relative_to(project.path))] = path.read_bytes().decode("utf-8", "replace")
    return written


def _assert_no_secret(written: dict[str, str]) -> None:
    for where, text in written.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"


def test_printed_and_logged_secrets_are_scrubbed_from_captured_sections_and_junit(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch)
    (project.path / "pytest.ini").write_text("[pytest]\njunit_logging = all\n")
    result = project.run("--experiment", "all", "-rA", "--junitxml=r.xml")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "Captured stdout call" in out and "token is ***" in out  # shown, scrubbed
    assert "Captured log call" in out and "logged ***" in out
    junit = (project.path / "r.xml").read_text()
    assert "token is ***" in junit and "stderr has ***" in junit and "logged ***" in junit
    _assert_no_secret(_everything_written(project, result))


def test_secrets_are_scrubbed_from_failure_sections(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch, fail=True)
    result = project.run("--experiment", "all", "--junitxml=r.xml", "-o", "junit_logging=all")
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert "Captured stdout call" in out and "token is ***" in out
    assert "failed while holding ***" in out
    _assert_no_secret(_everything_written(project, result))


def test_a_swept_secret_param_never_becomes_part_of_a_node_id_or_a_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch)
    result = project.run("--experiment", "k_sweep", "-v", "--junitxml=r.xml", "-o", "junit_logging=all")
    result.assert_outcomes(passed=2, failed=1)  # the assessment: k_print did not run
    out = result.stdout.str()
    assert "k_sweep[api_token_0-lr_0.1]" in out and "k_sweep[api_token_1-lr_0.1]" in out
    doc = project.results("e-k")["sub_experiments"]["k_sweep"]
    assert set(doc["points"]) == {"api_token_0-lr_0.1", "api_token_1-lr_0.1"}
    assert doc["points"]["api_token_0-lr_0.1"]["params"]["api_token"] == "***"
    assert doc["points"]["api_token_0-lr_0.1"]["finding"] == "used ***"
    runs = [json.loads(line) for line in (project.path / "tracker.log").read_text().splitlines()]
    assert len(runs) == 2 and all(r["settings"]["config"]["api_token"] == "***" for r in runs)
    # The cache keeps node ids of failures: a second, failing run puts them there.
    monkeypatch.setenv("FAIL", "1")
    project.run("--experiment", "k_sweep")
    cache = "".join(p.read_text() for p in (project.path / ".pytest_cache").rglob("*") if p.is_file())
    assert "api_token_0" in cache
    _assert_no_secret(_everything_written(project, result))


BUGGY_CONFTEST = (
    TRACKER
    + """

import pytest_mlexp.orchestrate as _orchestrate

def _bug(*args, **kwargs):
    raise RuntimeError("a bug in the plugin")

_orchestrate.build_entry = _bug
"""
)


def test_showlocals_never_shows_a_raw_secret_from_the_plugins_frames(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup(project, monkeypatch)
    project.pytester.makeconftest(BUGGY_CONFTEST)
    # A subprocess: the conftest's "bug" must not outlive the run.
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "--experiment", "all", "--showlocals", "-rA", "--junitxml=r.xml"
    )
    out = result.stdout.str()
    assert "a bug in the plugin" in out
    assert "params" in out  # the plugin frame's locals are shown...
    _assert_no_secret(_everything_written(project, result))  # ...without their secrets


def test_the_plans_own_file_is_the_only_place_the_plan_secret_stays(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above skips the plan itself: make sure that is the only file skipped."""
    _setup(project, monkeypatch)
    result = project.run("--experiment", "all")
    written = _everything_written(project, result)
    assert "research/experiments/e-k/results.yaml" in written
    assert "research/FINDINGS.md" in written
    assert not any(Path(name).name == "research_plan.yaml" for name in written)


REPORTS_SCRUBBED = """
import pytest

def pytest_runtestloop(session):
    scrubbing = session.config.pluginmanager.has_plugin("mlexp-report-scrubber")
    (session.config.rootpath / "scrubbing.txt").write_text(str(scrubbing))
"""


def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from pytest_mlexp.secrets import secret_values

    credentials = set(secret_values())
    for name, value in list(os.environ.items()):
        if value in credentials:
            monkeypatch.delenv(name)


def test_a_secret_only_the_plan_holds_is_scrubbed_from_what_pytest_shows(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credential in the environment: the plan's secret param alone, known once the plan is
    # collected, puts the report scrubber in place before the first item runs.
    _no_credentials(monkeypatch)
    project.plan(PLAN)
    project.handlers(
        "handlers",
        "def k_print(runner):\n    print('token is', runner.params['api_key'])\n    "
        "return {'metrics': {'m': 1.0}}\n",
    )
    project.pytester.makeconftest(REPORTS_SCRUBBED)
    result = project.run("--experiment", "k_print", "-rA")
    out = result.stdout.str()
    assert "token is ***" in out and PLAN_SECRET not in out
    assert (project.path / "scrubbing.txt").read_text() == "True"


def test_a_session_without_secrets_does_not_wrap_every_report(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_credentials(monkeypatch)
    project.plan("experiments:\n  e-k:\n    sub_experiments: [k_plain]\n")
    project.handlers(
        "handlers", "def k_plain(runner):\n    print('nothing secret')\n    return {'metrics': {'m': 1.0}}\n"
    )
    project.pytester.makeconftest(REPORTS_SCRUBBED)
    result = project.run("--experiment", "all", "-rA")
    result.assert_outcomes(passed=2)
    assert "nothing secret" in result.stdout.str()
    assert (project.path / "scrubbing.txt").read_text() == "False"
