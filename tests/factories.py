"""Model objects for unit tests, built directly (not through the YAML parser): every field has
a plain default and tests override what they are about."""

from __future__ import annotations

from typing import Any

from pytest_mlexp.model import Experiment, Loc, SubExperiment

LOC = Loc("research/research_plan.yaml", 1)


def sub(sub_id: str, experiment_id: str = "exp", **fields: Any) -> SubExperiment:
    base: dict[str, Any] = dict(
        id=sub_id,
        experiment_id=experiment_id,
        handler=None,
        params={},
        stub_params={},
        sweep=None,
        select=None,
        seeds=(0,),
        seeds_given=False,
        executor="local",
        resources={},
        marks=(),
        success_criteria=(),
        dependencies=(),
        meta={},
        loc=LOC,
    )
    base.update(fields)
    return SubExperiment(**base)


def experiment(exp_id: str, subs: Any = (), **fields: Any) -> Experiment:
    base: dict[str, Any] = dict(
        id=exp_id,
        name=exp_id,
        phase=None,
        sub_experiments=tuple(subs),
        success_criteria=(),
        dependencies=(),
        replaces=(),
        retired=False,
        meta={},
        loc=LOC,
    )
    base.update(fields)
    return Experiment(**base)
