"""Nothing lost, nothing leaked: interrupts, hard crashes and secrets (issue 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project

PLAN = """
project: {name: Safe, hypothesis: "h"}
experiments:
  e-s:
    sub_experiments:
      s_1: {}
      s_2: {}
      s_3: {}
      s_4: {}
"""

HANDLERS = """
import os, signal
def s_1(runner):
    return {"metrics": {"m": 1.0}}
def s_2(runner):
    return {"metrics": {"m": 1.0}}
def s_4(runner):
    return {"metrics": {"m": 1.0}}
def s_3(runner):
    how = os.environ.get("HOW")
    if how == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    if how == "kill":  # a hard crash (os._exit is caught under local: SPEC section 14)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"metrics": {"m": 3.0}}
"""


@pytest.mark.parametrize("how", ["term", "int"])
def test_interrupt_keeps_finished_results_and_leaves_no_temp_files(
    project: Project, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    project.plan(PLAN)
    source = (
        HANDLERS
        if how == "term"
        else HANDLERS.replace(
            'if how == "term":', 'if how == "int":\n        raise KeyboardInterrupt\n    if False:'
        )
    )
    project.handlers("handlers", source)
    monkeypatch.setenv("HOW", how)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    assert result.ret == 2  # interrupted
    doc = project.results("e-s")
    assert {k: v["status"] for k, v in doc["sub_experiments"].items()} == {"s_1": "passed", "s_2": "passed"}
    leftovers = [
        p.name for p in project.experiment_dir("e-s").iterdir() if p.name.endswith((".tmp", ".journal"))
    ]
    assert leftovers == []
    assert "s_1" in project.findings("e-s")


def test_hard_crash_loses_nothing_finished(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    monkeypatch.setenv("HOW", "kill")
    project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    # the process died without any session-end code; the journal holds what finished
    assert list(project.experiment_dir("e-s").glob(".results*.journal"))
    monkeypatch.setenv("HOW", "")
    project.run("--experiment", "s_4").assert_outcomes(passed=1, failed=1)
    doc = project.results("e-s")
    assert set(doc["sub_experiments"]) == {"s_1", "s_2", "s_4"}
    assert not list(project.experiment_dir("e-s").glob(".results*.journal"))


SECRET_PLAN = """
project: {name: Secret, hypothesis: "h"}
experiments:
  e-k:
    sub_experiments:
      k_1:
        params:
          api_key: "sk-plan-secret-123456"
          hf_token: "hf_plan_secret_98765"
          key_dim: 64
          tokenizer: "bpe"
"""

SECRET_HANDLERS = """
import os
def k_1(runner):
    key = os.environ["MY_SERVICE_API_KEY"]
    raise RuntimeError("auth failed for " + key + " / " + runner.params["api_key"])
"""


def test_secrets_never_written_or_printed(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(SECRET_PLAN)
    project.handlers("handlers", SECRET_HANDLERS)
    monkeypatch.setenv("MY_SERVICE_API_KEY", "env-secret-value-abcdef")
    result = project.run("--experiment", "all", "--junitxml=r.xml")
    result.assert_outcomes(failed=2)
    written = {
        "terminal": result.stdout.str() + result.stderr.str(),
        "results": (project.experiment_dir("e-k") / "results.yaml").read_text(),
        "findings": (project.experiment_dir("e-k") / "FINDINGS.md").read_text() + project.findings(),
        "junit": (project.path / "r.xml").read_text(),
    }
    for where, text in written.items():
        assert "env-secret-value-abcdef" not in text, where
        assert "sk-plan-secret-123456" not in text, where
        assert "hf_plan_secret_98765" not in text, where
    doc = project.results("e-k")
    params = doc["sub_experiments"]["k_1"]["params"]
    assert params == {"api_key": "***", "hf_token": "***", "key_dim": 64, "tokenizer": "bpe"}
    assert "***" in doc["sub_experiments"]["k_1"]["error"]["traceback"]


def _with_results_file(project: Project, text: str) -> Path:
    """A project whose e-s results.yaml holds ``text`` before the run."""
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS.replace('how = os.environ.get("HOW")', "how = None"))
    folder = project.experiment_dir("e-s")
    folder.mkdir(parents=True)
    (folder / "results.yaml").write_text(text)
    return folder


def test_newer_schema_refused_with_clear_error_and_file_untouched(project: Project) -> None:
    folder = _with_results_file(project, "schema: 99\nexperiment_id: e-s\n")
    result = project.run("--experiment", "all")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*results schema 99*upgrade pytest-mlexp*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert (folder / "results.yaml").read_text() == "schema: 99\nexperiment_id: e-s\n"


def test_unreadable_results_moved_aside_with_warning(project: Project) -> None:
    folder = _with_results_file(project, "schema: 1\nsub_experiments: [unclosed\n")
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["mlexp: warning: *results.yaml*moved it aside*"])
    assert list(folder.glob("results.yaml.corrupt-*"))
    assert project.results("e-s")["sub_experiments"]["s_1"]["status"] == "passed"
