"""Handlers that misbehave in the pytest process (the ``local`` executor) cost their own result
only: read-only params at every depth, ``os._exit``, ``os.fork``, a closed ``sys.stdout``, a
timeout (issue 15, SPEC section 14 "Handlers under local")."""

from __future__ import annotations

import pytest

from tests.conftest import Project

PARAMS_PLAN = """
project: {name: Params, hypothesis: "h"}
experiments:
  e-p:
    params:
      optim: {lr: 0.001, betas: [0.9, 0.99]}
      layers: [64, 64]
    sub_experiments:
      p_1:
        seeds: [0, 1]
      p_2: {}
"""

PARAMS_HANDLERS = """
import copy

def _try(change):
    try:
        change()
    except (TypeError, AttributeError) as exc:
        return str(exc)
    return "changed"

def _bump(params):
    params["optim"]["lr"] *= 10

def p_1(runner):
    p = runner.params
    said = [
        _try(lambda: _bump(p)),
        _try(lambda: p["layers"].append(5)),
        _try(lambda: p["optim"]["betas"].__setitem__(0, 0.5)),
        _try(lambda: p["optim"].update(lr=1.0)),
        _try(lambda: p.__setitem__("new", 1)),
        _try(lambda: runner.variant.__setitem__("x", 1)),
    ]
    # A copy is the handler's own to change.
    mine = copy.deepcopy(dict(p))
    _bump(mine)
    mine["layers"].append(5)
    plain = dict(p["optim"])
    plain["lr"] = 5.0
    assert isinstance(p["optim"], dict) and p["optim"] == {"lr": 0.001, "betas": [0.9, 0.99]}
    import json
    json.dumps(p)  # still plain data to everything that reads it
    return {
        "metrics": {"lr": p["optim"]["lr"], "layers": len(p["layers"]), "copy_lr": mine["optim"]["lr"]},
        "finding": " | ".join(said),
    }

def p_2(runner):
    return {"metrics": {"lr": runner.params["optim"]["lr"], "layers": len(runner.params["layers"])}}
"""


def test_params_are_read_only_at_every_depth(project: Project) -> None:
    project.plan(PARAMS_PLAN)
    project.handlers("handlers", PARAMS_HANDLERS)
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=3)
    doc = project.results("e-p")
    p_1 = doc["sub_experiments"]["p_1"]
    assert p_1["status"] == "passed", p_1.get("error")
    said = p_1["finding"].split(" | ")
    assert "changed" not in said
    for message in said[:5]:
        assert "runner.params is read-only" in message
        assert "copy.deepcopy(dict(runner.params))" in message
    assert "runner.variant is read-only" in said[5]
    assert p_1["per_seed"][0]["lr"] == p_1["per_seed"][1]["lr"] == 0.001
    assert p_1["per_seed"][1]["copy_lr"] == pytest.approx(0.01)
    p_2 = doc["sub_experiments"]["p_2"]
    assert p_2["metrics"] == {"lr": 0.001, "layers": 2.0}
    for entry in (p_1, p_2):
        assert entry["params"] == {"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "layers": [64, 64]}
    # The plan's params were never changed: a second run finds nothing stale.
    again = project.run("--experiment", "p_2")
    again.assert_outcomes(passed=2)
    assert project.results("e-p")["stale"] == {}


MISBEHAVING_PLAN = """
project: {name: Misbehaving, hypothesis: "h"}
experiments:
  e-m:
    sub_experiments:
      m_1: {}
      m_2: {}
      m_3: {}
"""

MISBEHAVING_HANDLERS = """
import os, sys

def m_1(runner):
    print("before")
    return {"metrics": {"m": 1.0}}

def m_2(runner):
    how = os.environ["HOW"]
    if how == "exit":
        print("about to exit")
        os._exit(0)
    if how == "exit-swallowed":
        try:
            os._exit(3)
        except BaseException:
            pass
        return {"metrics": {"m": 2.0}}
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            return {"metrics": {"m": 99.0}}  # the child returns into the plugin...
        os.waitpid(pid, 0)
        return {"metrics": {"m": 2.0}}
    if how == "close":
        print("closing stdout")
        sys.stdout.close()
        sys.stderr.close()
        return {"metrics": {"m": 2.0}}
    raise AssertionError(how)

def m_3(runner):
    print("after, still captured")
    sys.stderr.write("stderr too\\n")
    return {"metrics": {"m": 3.0}}
"""


def _run_misbehaving(
    project: Project, monkeypatch: pytest.MonkeyPatch, how: str, *args: str
) -> pytest.RunResult:
    project.plan(MISBEHAVING_PLAN)
    project.handlers("handlers", MISBEHAVING_HANDLERS)
    monkeypatch.setenv("HOW", how)
    # A subprocess: if the guard failed, the handler would end (or fork) this test process.
    return project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all", *args)


def test_os_exit_in_a_handler_is_a_lost_worker_not_the_end_of_the_session(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_misbehaving(project, monkeypatch, "exit")
    assert result.ret == 1  # never a false green
    result.assert_outcomes(passed=2, failed=2)
    subs = project.results("e-m")["sub_experiments"]
    assert subs["m_1"]["status"] == subs["m_3"]["status"] == "passed"
    m_2 = subs["m_2"]
    assert m_2["status"] == "infra_error"
    assert m_2["error"]["kind"] == "lost_worker"
    assert "os._exit(0)" in m_2["error"]["message"]
    result.stdout.fnmatch_lines(["*m_2*infra_error*lost_worker*"])


def test_os_exit_swallowed_by_the_handler_still_counts(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_misbehaving(project, monkeypatch, "exit-swallowed")
    assert result.ret == 1
    m_2 = project.results("e-m")["sub_experiments"]["m_2"]
    assert m_2["status"] == "infra_error" and m_2["error"]["kind"] == "lost_worker"
    assert "os._exit(3)" in m_2["error"]["message"]


def test_a_forked_child_never_continues_the_session(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_misbehaving(project, monkeypatch, "fork")
    out = result.stdout.str()
    assert out.count("experiment summary") == 1, out
    assert out.count("short test summary") <= 1
    result.assert_outcomes(passed=4)
    subs = project.results("e-m")["sub_experiments"]
    assert subs["m_2"]["metrics"] == {"m": 2.0}  # the parent's result, not the child's


def test_a_closed_stdout_is_restored_after_the_seed(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_misbehaving(project, monkeypatch, "close", "-rA")
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "I/O operation on closed file" not in out + result.stderr.str()
    result.assert_outcomes(passed=4)
    # m_3's output is still captured and shown (-rA): the capture was never closed.
    result.stdout.fnmatch_lines(["*Captured stdout call*", "after, still captured"])
    assert "stderr too" in out
    assert {v["status"] for v in project.results("e-m")["sub_experiments"].values()} == {"passed"}


def test_a_closed_stdout_is_restored_without_capture_too(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_misbehaving(project, monkeypatch, "close", "-s")
    assert "I/O operation on closed file" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=4)
    assert "after, still captured" in result.stdout.str()


TIMEOUT_PLAN = """
project: {name: Slow, hypothesis: "h"}
experiments:
  e-s:
    sub_experiments:
      s_1: {}
      s_2:
        seeds: [0, 1]
        resources: {timeout: 0.5, retries: 2}
      s_3: {}
"""

TIMEOUT_HANDLERS = """
import os, time

def s_1(runner):
    return {"metrics": {"m": 1.0}}

def s_2(runner):
    with open(os.environ["CALLS"], "a") as fh:
        fh.write(f"{runner.seed}\\n")
    time.sleep(120)  # interrupted by the timeout, long before this ends
    return {"metrics": {"m": 2.0}}

def s_3(runner):
    return {"metrics": {"m": 3.0}}
"""


def test_a_local_timeout_is_an_infra_error_never_retried(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.plan(TIMEOUT_PLAN)
    project.handlers("handlers", TIMEOUT_HANDLERS)
    calls = project.path / "calls.txt"
    monkeypatch.setenv("CALLS", str(calls))
    result = project.run("--experiment", "all")
    result.assert_outcomes(passed=2, failed=2)
    subs = project.results("e-s")["sub_experiments"]
    s_2 = subs["s_2"]
    assert s_2["status"] == "infra_error"
    assert s_2["error"]["kind"] == "timeout"
    assert s_2["error"]["type"] == "Timeout"
    assert "resources.timeout of 0.5 s" in s_2["error"]["message"]
    assert "time.sleep(120)" in s_2["error"]["traceback"]  # where the handler was when it ran out
    assert calls.read_text().split() == ["0", "1"]  # each seed once: a timeout is never retried
    assert subs["s_1"]["status"] == subs["s_3"]["status"] == "passed"


LOADER_PLAN = """
project: {name: Loader, hypothesis: "h"}
experiments:
  e-l:
    sub_experiments:
      l_1: {}
      l_2: {}
"""

LOADER_HANDLERS = """
import os

def l_1(runner):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(40, dtype=torch.float32))
    # fork-based workers: each ends with os._exit in its own process, which must stay real
    loader = DataLoader(data, batch_size=5, num_workers=2, multiprocessing_context="fork")
    total = sum(float(batch[0].sum()) for batch in loader)
    again = sum(float(batch[0].sum()) for batch in loader)  # a second epoch: new workers
    return {"metrics": {"total": total, "again": again}}

def l_2(runner):
    os._exit(5)
"""


def test_a_fork_based_data_loader_still_works_while_os_exit_is_caught(project: Project) -> None:
    pytest.importorskip("torch")
    project.plan(LOADER_PLAN)
    project.handlers("handlers", LOADER_HANDLERS)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    out = result.stdout.str()
    assert out.count("experiment summary") == 1, out
    subs = project.results("e-l")["sub_experiments"]
    assert subs["l_1"]["status"] == "passed", subs["l_1"].get("error")
    assert subs["l_1"]["metrics"]["total"] == subs["l_1"]["metrics"]["again"] == float(sum(range(40)))
    assert subs["l_2"]["status"] == "infra_error"
    assert subs["l_2"]["error"]["kind"] == "lost_worker"
    assert result.ret == 1


MIXED_PLAN = """
project: {name: Toy, hypothesis: "x"}
experiments:
  e-x:
    sub_experiments:
      x_mixed: {seeds: 3}
"""

MIXED_HANDLERS = """
import os

def x_mixed(runner):
    if runner.seed == 0:
        raise RuntimeError("boom in seed 0")
    if runner.seed == 1:
        print("seed 1 about to die")
        os._exit(9)
    return {"metrics": {"m": 1.0}}
"""


def test_seeds_that_fail_differently_are_each_named_and_the_error_matches_the_status(
    project: Project,
) -> None:
    # The item was infra_error (a lost worker in seed 1) while its error said "handler" (seed
    # 0's exception), and seed 1's lost worker appeared nowhere.
    project.plan(MIXED_PLAN)
    project.handlers("handlers", MIXED_HANDLERS)
    result = project.pytester.runpytest_subprocess("-p", "no:randomly", "--experiment", "all")
    assert result.ret == 1
    sub = project.results("e-x")["sub_experiments"]["x_mixed"]
    assert sub["status"] == "infra_error"
    error = sub["error"]
    assert error["kind"] == "lost_worker" and error["seed"] == 1 and "os._exit(9)" in error["message"]
    assert error["other_seeds"] == ["seed 0: error (handler) RuntimeError: boom in seed 0"]
    assert sub["per_seed"] == {2: {"m": 1.0}}  # the seed that returned is kept
    result.stdout.fnmatch_lines(
        [
            "*x_mixed: infra_error (lost_worker) in seed 1: *os._exit(9)*",
            "  also seed 0: error (handler) RuntimeError: boom in seed 0",
        ]
    )
    findings = project.findings("e-x")
    assert "- also `seed 0: error (handler) RuntimeError: boom in seed 0`" in findings
