"""W&B for real, offline: run a project in a subprocess and read back what W&B wrote.

``run-<id>.wandb`` is a LevelDB-log-format stream of ``wandb_internal_pb2.Record`` messages
(complete after ``run.finish()`` and ``wandb.teardown()``); wandb 0.31 ships no reader, so a
small one is here.  Each run of W&B costs ~0.5 s to start its service: the whole scenario is
one subprocess (which also keeps W&B's service from leaking into other tests).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project

pytest.importorskip("wandb")

_BLOCK = 32768
_HEADER = 7  # ":W&B", magic 0xBEE1, version


def read_records(path: Path) -> list[Any]:
    """The Records of an offline run file (LevelDB log format: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb  # generated: no type information

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out: list[Any] = []
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer: padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # FULL
            out.append(chunk)
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk
        elif kind == 4:  # LAST
            out.append(pending + chunk)
            pending = b""
    records = []
    for raw in out:
        rec = pb.Record()  # type: ignore[attr-defined]
        rec.ParseFromString(raw)
        records.append(rec)
    return records


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)


def read_run(folder: Path) -> dict[str, Any]:
    """run (project, group, job_type, name, config), history rows, summary, artifacts, exit."""
    (path,) = folder.glob("run-*.wandb")
    run: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    artifacts: list[Any] = []
    exit_code = None
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            config = {u.key: json.loads(u.value_json) for u in r.config.update if u.key != "_wandb"}
            run = {
                "project": r.project,
                "group": r.run_group,
                "job_type": r.job_type,
                "name": r.display_name,
                "config": config,
            }
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for u in rec.summary.update:
                summary[_key(u)] = json.loads(u.value_json)
        elif kind == "artifact":
            artifacts.append(rec.artifact)
        elif kind == "exit":
            exit_code = rec.exit.exit_code
    return {**run, "history": history, "summary": summary, "artifacts": artifacts, "exit_code": exit_code}


PLAN = """
project: {name: "Digits Study: P1"}
experiments:
  exp-a:
    sub_experiments:
      e_a_1:
        params: {lr: 0.1, api_key: "sk-plan-secret-123456", epochs: 3}
        success_criteria: {acc: ">= 0.5", loss: "<= 0.1"}
      e_a_2:
        params: {width: 1}
        sweep: {width: [8, 16]}
        executor: process   # runs opened in a warm worker, each finished before the next seed
      e_a_3:
        params: {}
"""

HANDLERS = """
def e_a_1(runner):
    for epoch in range(runner.params["epochs"]):
        runner.log_metrics({"loss": 1.0 / (epoch + 1), "acc": 0.5 + epoch / 10}, step=epoch * 10)
        runner.progress((epoch + 1) / runner.params["epochs"], "train")
    runner.log_metrics({"late": 1.0}, step=5)  # a step that went back: logged at 20, never dropped
    runner.results.save_artifact("plots/curve v1.txt", "hello")
    return {"metrics": {"acc": 0.75, "loss": 0.2}, "finding": "learns"}


def e_a_2(runner):
    import os

    runner.log_metrics({"w": runner.params["width"]})
    return {"metrics": {"w": runner.params["width"], "pid": os.getpid()}}


def e_a_3(runner):
    raise RuntimeError("boom")
"""


def test_offline_runs_read_back(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = project.path
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp / ".wandb-home" / name.lower()))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("MY_SERVICE_API_KEY", "env-secret-abcdefgh")
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    # One slot: both sweep points run in the same warm worker, one after the other.
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "--experiment", "exp-a", "--mlexp-concurrency", "1"
    )
    assert result.ret == 1, result.stdout.str()  # e_a_3 raised
    result.stdout.fnmatch_lines(["*e_a_1*failed*loss*", "*e_a_3*error*"])
    assert "Captured log" not in result.stdout.str()  # W&B logs to wandb/debug.log only
    assert "warning: W&B" not in result.stdout.str()  # no warnings: nothing went wrong
    # the summary says where each run is, labelled with the tracker's name
    result.stdout.fnmatch_lines(["*e_a_1 *failed*", "* W&B (offline): wandb sync wandb/offline-run-*"])

    subs = project.results("exp-a")["sub_experiments"]
    # One run per sub-experiment (sweep point) and seed, under <project root>/wandb/.
    folders = sorted((tmp / "wandb").glob("offline-run-*"))
    assert len(folders) == 4
    runs = {r["name"]: r for r in (read_run(f) for f in folders)}
    assert set(runs) == {"e_a_1-seed0", "e_a_2[width_8]-seed0", "e_a_2[width_16]-seed0", "e_a_3-seed0"}

    r1 = runs["e_a_1-seed0"]
    assert (r1["project"], r1["group"], r1["job_type"]) == ("digits-study-p1", "exp-a", "e_a_1")
    assert r1["config"]["api_key"] == "***" and r1["config"]["lr"] == 0.1
    assert r1["config"]["seed"] == 0 and r1["config"]["point"] is None
    assert r1["config"]["criteria"] == {"acc": ">= 0.5", "loss": "<= 0.1"}
    text = json.dumps(r1["config"])
    assert "sk-plan-secret" not in text
    steps = [row["_step"] for row in r1["history"]]
    assert steps == sorted(steps) and steps[:3] == [0, 10, 20]
    logged = {k for row in r1["history"] for k in row if not k.startswith("_")}
    assert logged == {"e_a_1/loss", "e_a_1/acc", "e_a_1/progress", "e_a_1/late"}
    assert r1["history"][-1]["e_a_1/late"] == 1.0 and r1["history"][-1]["_step"] == 20
    summary = r1["summary"]
    assert summary["e_a_1/acc"] == 0.75 and summary["e_a_1/finding"] == "learns"
    verdicts = summary["e_a_1/criteria"]  # this seed's values against the sub's criteria
    assert verdicts["acc"] == {
        "value": 0.75,
        "rule": ">= 0.5",
        "level": "pass",
        "passed": True,
        "borderline": False,
    }
    assert verdicts["loss"]["level"] == "fail" and verdicts["loss"]["passed"] is False
    assert summary["e_a_1/criteria_met"] is False
    assert r1["exit_code"] == 0
    (art,) = r1["artifacts"]
    assert art.name == "e_a_1-seed0" and art.type == "mlexp-artifacts"
    (path,) = [e.path for e in art.manifest.contents]  # artifacts/<sub>/<fingerprint[:12]>/...
    assert re.fullmatch(r"artifacts/e_a_1/[0-9a-f]{12}/plots/curve v1\.txt", path), path

    point = runs["e_a_2[width_16]-seed0"]
    assert point["config"]["width"] == 16 and point["config"]["point"] == "width_16"
    # Each seed of a warm worker has a run of its own, finished (an exit record) before its
    # result came back; the first run's history is not the second's.
    points = subs["e_a_2"]["points"]
    assert points["width_8"]["metrics"]["pid"] == points["width_16"]["metrics"]["pid"]
    other = runs["e_a_2[width_8]-seed0"]
    assert other["config"]["width"] == 8 and other["exit_code"] == 0 and point["exit_code"] == 0
    assert [row["e_a_2/w"] for row in other["history"] if "e_a_2/w" in row] == [8]
    assert [row["e_a_2/w"] for row in point["history"] if "e_a_2/w" in row] == [16]
    failed = runs["e_a_3-seed0"]
    assert failed["exit_code"] == 1
    assert failed["summary"]["e_a_3/status"] == "error"
    assert "boom" in failed["summary"]["e_a_3/error"]

    # The location is recorded: results.yaml and FINDINGS.md, relative to the project root.
    w1 = subs["e_a_1"]["tracking"]
    assert w1["tracker"] == "wandb" and w1["seed"] == 0
    assert w1["offline_dir"].startswith("wandb/offline-run-")
    assert w1["sync"] == f"wandb sync {w1['offline_dir']}"
    assert (tmp / w1["offline_dir"]).is_dir()
    assert subs["e_a_3"]["status"] == "error" and "offline_dir" in subs["e_a_3"]["tracking"]
    assert subs["e_a_2"]["points"]["width_8"]["tracking"]["offline_dir"].startswith("wandb/")
    assert w1["sync"] in project.findings("exp-a")
    assert "W&B (offline): `wandb/offline-run-" in project.findings("exp-a")
