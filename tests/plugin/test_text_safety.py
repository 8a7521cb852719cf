"""Text a handler returns, raises or prints may be anything: lone surrogates (``os.fsdecode`` of a
latin-1 file name), bytes that are not UTF-8, numbers too large for a float.  Everything written
stays valid UTF-8 and readable by the plugin's own loader, and no entry costs another (issue 15)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_mlexp.store import load_yaml
from tests.conftest import Project

PLAN = """
project: {name: Text, hypothesis: "h"}
experiments:
  e-t:
    sub_experiments:
      t_1: {}
      t_2: {}
      t_3: {}
      t_4: {}
"""

HANDLERS = r"""
import os, sys
NAME = os.fsdecode(b"caf\xe9.csv")  # what os.listdir returns for a latin-1 file name

def t_1(runner):
    return {"metrics": {"m": 1.0}, "finding": "plain"}

def t_2(runner):
    print("reading", NAME)
    sys.stdout.flush()
    os.write(1, b"raw bytes \xff\xfe that are not UTF-8\n")
    runner.log_metrics({"note": NAME})
    return {"metrics": {"m": 2.0, "file": NAME}, "finding": "read " + NAME}

def t_3(runner):
    print("failing on", NAME)
    raise ValueError("cannot open " + NAME)

def t_4(runner):
    return {"metrics": {"m": 4.0}}
"""

SHOWN = "caf\ufffd\\xe9.csv"  # the one way a lone surrogate is written: U+FFFD, then its byte


def _utf8(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # strict: raises on anything that is not UTF-8


def _assert_clean_run(project: Project, result: pytest.RunResult) -> None:
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out
    assert "UnicodeEncodeError" not in out
    assert "Traceback (most recent call last)" not in out.split("short test summary")[0].split("FAILURES")[0]


def test_lone_surrogates_are_written_as_valid_utf8_and_read_back(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    (project.path / "pytest.ini").write_text("[pytest]\njunit_logging = all\n")
    result = project.run("--experiment", "all", "--junitxml=r.xml", "-rA")
    result.assert_outcomes(passed=3, failed=2)  # t_3 and the assessment
    _assert_clean_run(project, result)

    folder = project.experiment_dir("e-t")
    text = _utf8(folder / "results.yaml")
    doc = load_yaml(text)  # the plugin's own loader (libyaml), which refuses "\udce9"
    subs = doc["sub_experiments"]
    assert {k: v["status"] for k, v in subs.items()} == {
        "t_1": "passed",
        "t_2": "passed",
        "t_3": "error",
        "t_4": "passed",
    }
    assert subs["t_2"]["finding"] == "read " + SHOWN
    assert subs["t_2"]["metrics"]["file"] == SHOWN
    assert SHOWN in subs["t_3"]["error"]["message"]
    assert SHOWN in subs["t_3"]["error"]["traceback"]
    assert SHOWN in _utf8(folder / "FINDINGS.md")
    _utf8(project.path / "research" / "FINDINGS.md")
    junit = _utf8(project.path / "r.xml")
    ET.fromstring(junit)  # well-formed XML
    assert SHOWN in junit

    # The next session reads every entry back: nothing is moved aside as corrupt.
    again = project.run("--experiment", "t_4")
    again.assert_outcomes(passed=1, failed=1)
    assert "moved it aside" not in again.stdout.str()
    assert not list(folder.glob("results.yaml.corrupt-*"))
    doc = load_yaml(_utf8(folder / "results.yaml"))
    assert set(doc["sub_experiments"]) == {"t_1", "t_2", "t_3", "t_4"}


def test_an_existing_findings_file_stays_utf8_and_keeps_its_text(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    folder = project.experiment_dir("e-t")
    folder.mkdir(parents=True)
    mine = "# Notes\n\nÜber café — the researcher's own words.\n\n"
    (folder / "FINDINGS.md").write_text(mine, encoding="utf-8")
    result = project.run("--experiment", "all")
    _assert_clean_run(project, result)
    text = _utf8(folder / "FINDINGS.md")
    # The block goes after the heading; the researcher's words stay, byte for byte, below it.
    assert text.startswith("# Notes\n") and text.endswith(mine[len("# Notes\n") :])
    assert SHOWN in text


def test_a_stored_file_with_surrogate_escapes_is_read_not_moved_aside(project: Project) -> None:
    """results.yaml written by an earlier version held ``"\\udce9"``, which libyaml refuses: it
    is read (the escape shown as the byte it stood for) instead of costing every entry."""
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    folder = project.experiment_dir("e-t")
    folder.mkdir(parents=True)
    (folder / "results.yaml").write_text(
        "schema: 2\nexperiment_id: e-t\nsub_experiments:\n"
        '  t_1:\n    status: passed\n    finding: "caf\\udce9.csv"\n    metrics: {m: 1.0}\n'
        "  t_2:\n    status: passed\n    metrics: {m: 2.0}\n",
        encoding="utf-8",
    )
    result = project.run("--experiment", "t_4")
    assert "moved it aside" not in result.stdout.str()
    doc = load_yaml(_utf8(folder / "results.yaml"))
    assert set(doc["sub_experiments"]) == {"t_1", "t_2", "t_4"}
    assert doc["sub_experiments"]["t_1"]["finding"] == SHOWN


BIG = """
project: {name: Big, hypothesis: "h"}
experiments:
  e-b:
    sub_experiments:
      b_1:
        seeds: [0, 1]
        success_criteria:
          m: ">= 1"
      b_2: {}
"""

BIG_HANDLERS = """
def b_1(runner):
    runner.log_metrics({"curve": 10**400})
    return {"metrics": {"m": 10**400 if runner.seed == 0 else 2, "count": 10**5000}}

def b_2(runner):
    return {"metrics": {"m": 1.0}}
"""


def test_a_metric_too_large_for_a_float_is_not_a_number(project: Project) -> None:
    project.plan(BIG)
    project.handlers("handlers", BIG_HANDLERS)
    result = project.run("--experiment", "all")
    out = result.stdout.str() + result.stderr.str()
    assert "OverflowError" not in out and "INTERNALERROR" not in out
    doc = project.results("e-b")
    b_1 = doc["sub_experiments"]["b_1"]
    assert b_1["status"] == "failed"  # NaN meets no criterion
    assert b_1["per_seed"][0]["m"] != b_1["per_seed"][0]["m"]  # NaN
    assert b_1["per_seed"][0]["count"] != b_1["per_seed"][0]["count"]
    assert b_1["per_seed"][1]["m"] == 2
    assert doc["sub_experiments"]["b_2"]["status"] == "passed"
