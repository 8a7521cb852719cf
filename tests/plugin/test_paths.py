"""Artifacts stay inside the artifacts folder: no symlink out, no returned path outside it, no
name that is the folder itself (issue 15, SPEC section 14 "Paths")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.factories import recording_tracker_conftest

PLAN = """
project: {name: Paths, hypothesis: "h"}
experiments:
  e-a:
    sub_experiments:
      a_save: {}
      a_return: {}
      a_ok: {}
"""

HANDLERS = """
import os
from pathlib import Path

OUTSIDE = Path(os.environ["OUTSIDE"])

def _refused(save):
    try:
        path = save()
    except ValueError as exc:
        return str(exc)
    return "written to " + path

def a_save(runner):
    folder = runner.results.folder
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(OUTSIDE / "secret.txt", folder / "link.txt")
    os.symlink(OUTSIDE, folder / "away")
    said = [
        _refused(lambda: runner.results.save_artifact("link.txt", "overwritten")),
        _refused(lambda: runner.results.save_artifact("away/new.txt", "planted")),
        _refused(lambda: runner.results.save_artifact("away/deeper/new.txt", "planted")),
        _refused(lambda: runner.results.save_artifact(".", "a file where the folder is")),
        _refused(lambda: runner.results.save_artifact("sub/..", "a file where the folder is")),
        _refused(lambda: runner.results.save_artifact("./", "a file where the folder is")),
    ]
    fine = runner.results.save_artifact("plot.txt", "inside")
    return {"metrics": {"m": 1.0}, "finding": " | ".join(said), "artifacts": [fine]}

def a_return(runner):
    how = os.environ["HOW"]
    folder = runner.results.folder
    folder.mkdir(parents=True, exist_ok=True)
    if how == "absolute":
        path = str(OUTSIDE / "secret.txt")
    elif how == "relative":
        path = os.path.relpath(OUTSIDE / "secret.txt", runner.results.folder.parents[2])
    else:  # a symlink inside the folder that points out of it
        os.symlink(OUTSIDE / "secret.txt", folder / "innocent.txt")
        path = str(folder / "innocent.txt")
    return {"metrics": {"m": 2.0}, "artifacts": [runner.results.save_artifact("own.txt", "x"), path]}

def a_ok(runner):
    return {"metrics": {"m": 3.0}}
"""

TRACKER = recording_tracker_conftest("uploads.log", "[self.task.sub_id, [str(a) for a in artifacts]]")


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_text("the researcher's private file")
    return folder


def _setup(project: Project, monkeypatch: pytest.MonkeyPatch, outside: Path, how: str) -> None:
    project.plan(PLAN)
    project.handlers("handlers", HANDLERS)
    project.pytester.makeconftest(TRACKER)
    monkeypatch.setenv("OUTSIDE", str(outside))
    monkeypatch.setenv("HOW", how)
    monkeypatch.setenv("WANDB_MODE", "offline")  # trackers on: the hook's tracker records uploads


def test_save_artifact_never_follows_a_symlink_out_nor_writes_the_folder_itself(
    project: Project, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    _setup(project, monkeypatch, outside, "absolute")
    project.run("--experiment", "a_save")
    entry = project.results("e-a")["sub_experiments"]["a_save"]
    assert entry["status"] == "passed", entry.get("error")
    said = entry["finding"].split(" | ")
    assert not [s for s in said if s.startswith("written to")], said
    assert "link.txt" in said[0] and "outside the artifacts folder" in said[0]
    assert "away/new.txt" in said[1] and "outside the artifacts folder" in said[1]
    assert "away/deeper/new.txt" in said[2]
    assert "is the artifacts folder itself" in said[3] and "is the artifacts folder itself" in said[5]
    assert "may not contain '..'" in said[4]
    assert (outside / "secret.txt").read_text() == "the researcher's private file"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]  # nothing planted, no folder made
    folder = project.path / "research" / "artifacts" / "a_save"
    assert folder.is_dir()
    fp = entry["provenance"]["fingerprint"][:12]  # artifacts are kept per fingerprint
    assert entry["artifacts"] == [f"artifacts/a_save/{fp}/plot.txt"]


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_returned_artifacts_outside_the_folder_are_refused_never_recorded_or_uploaded(
    project: Project, monkeypatch: pytest.MonkeyPatch, outside: Path, how: str
) -> None:
    _setup(project, monkeypatch, outside, how)
    result = project.run("--experiment", "a_return", "--experiment", "a_ok", "--junitxml=r.xml")
    subs = project.results("e-a")["sub_experiments"]
    entry = subs["a_return"]
    assert entry["status"] == "error"
    assert entry["error"]["kind"] == "invalid_result"
    message = entry["error"]["message"]
    assert "outside the artifacts folder" in message
    assert ("innocent.txt" if how == "symlink" else "secret.txt") in message
    assert entry["artifacts"] == []
    assert subs["a_ok"]["status"] == "passed"
    uploads = [json.loads(line) for line in (project.path / "uploads.log").read_text().splitlines()]
    assert all(str(outside) not in path for _, paths in uploads for path in paths), uploads
    assert "secret.txt" not in (project.path / "r.xml").read_text().replace(message, "")
    result.stdout.fnmatch_lines(["*a_return*error*"])
