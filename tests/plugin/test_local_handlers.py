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
