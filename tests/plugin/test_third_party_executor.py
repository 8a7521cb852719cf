"""A third-party executor built from the public API only, as the README's Slurm sketch does:
every seed through ``python -m pytest_mlexp.remote``, the outcome read back from its file."""

from __future__ import annotations

from tests.conftest import Project

PLAN = """
project: {name: Toy, hypothesis: "x"}
defaults: {executor: files}
experiments:
  e-one:
    sub_experiments:
      t_ok:
        seeds: [0, 1]
        success_criteria: {acc: ">= 0.5"}
      t_raise: {}
      t_lost: {resources: {retries: 1}}
      t_garbage: {}
"""

HANDLERS = """
import os

def t_ok(runner):
    return {"metrics": {"acc": 0.5 + runner.seed / 10, "pid": os.getpid()}}

def t_raise(runner):
    raise ValueError("boom in the worker")

def t_lost(runner):
    os._exit(3)

def t_garbage(runner):
    return {"metrics": {"acc": 1.0}}
"""

CONFTEST = """
import json, os, subprocess, sys, tempfile
from pathlib import Path

from pytest_mlexp import PoolExecutor, SeedOutcome, infra_outcome

SEEN = []


class FilesExecutor(PoolExecutor):
    name = "files"

    def run_job(self, handle, attempt):
        task = handle.job.task
        SEEN.append((self.context.root, self.context.handlers_dir, [p.root for p in self.context.plans()]))
        tmp = Path(tempfile.mkdtemp())
        (tmp / "task.json").write_text(json.dumps(task.to_dict()))
        cmd = [sys.executable, "-m", "pytest_mlexp.remote", str(tmp / "task.json"), str(tmp / "out.json")]
        if subprocess.run(cmd, capture_output=True).returncode != 0 or not (tmp / "out.json").exists():
            return infra_outcome(task, "lost_worker", f"the worker died (attempt {attempt})")
        data = json.loads((tmp / "out.json").read_text())
        if task.sub_id == "t_garbage":
            return {"status": "ok"}  # a broken executor: no seed, no result
        if task.seed == 1:
            return data  # the plain mapping is accepted, too
        return SeedOutcome.from_dict(data)


def pytest_mlexp_executor(name, config):
    if name == "files":
        return FilesExecutor(concurrency=2)


def pytest_sessionfinish(session):
    if SEEN:
        print("CONTEXT", SEEN[0][0] == session.config.rootpath, SEEN[0][1], len(SEEN[0][2]))
"""


def test_an_executor_made_from_the_public_api_keeps_the_contract(project: Project) -> None:
    project.plan(PLAN)
    project.handlers("e_one", HANDLERS)
    project.pytester.makeconftest(CONFTEST)
    result = project.run("--experiment", "all", "-s")
    result.assert_outcomes(passed=1, failed=4)  # t_ok passes; the assessment fails with the rest
    result.stdout.fnmatch_lines(["*CONTEXT True experiments 1"])  # bound to the session's context
    subs = project.results("e-one")["sub_experiments"]
    assert subs["t_ok"]["status"] == "passed" and subs["t_ok"]["executor"] == "files"
    assert subs["t_ok"]["per_seed"][0]["acc"] == 0.5 and subs["t_ok"]["per_seed"][1]["acc"] == 0.6
    assert subs["t_raise"]["status"] == "error" and subs["t_raise"]["error"]["type"] == "ValueError"
    assert "boom in the worker" in subs["t_raise"]["error"]["traceback"]
    lost = subs["t_lost"]["error"]
    assert (
        subs["t_lost"]["status"] == "infra_error" and lost["kind"] == "lost_worker" and lost["attempts"] == 2
    )
    garbage = subs["t_garbage"]["error"]
    assert subs["t_garbage"]["status"] == "infra_error" and garbage["kind"] == "executor"
    assert "the files executor returned something that is not an outcome" in garbage["message"]
