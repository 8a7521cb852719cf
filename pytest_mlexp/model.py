"""The typed, frozen model of a research plan.

Everything downstream (items, executors, verdicts, reports) reads these objects; only
``plan.py`` builds them.  Pure data: no pytest, no YAML, no heavy imports.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from .structs import struct

if TYPE_CHECKING:
    from .criteria.forms import Form

from .secrets import is_secret_key
from .textutil import lazy_re

# Lazy: only parsing a plan checks ids, and a run mostly reads its plan from the cache.
ID_RE = lazy_re(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Direction = Literal["higher", "lower"]
Aggregate = Literal["mean", "median", "min", "max", "all"]


@struct(frozen=True, slots=True)
class Loc:
    """Where something was written: the plan file and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class PlanError(Exception):
    """A mistake in a plan file, reported as ``file:line: message`` plus how to fix it."""

    def __init__(self, loc: Loc | None, message: str, fix: str = "") -> None:
        self.loc = loc
        self.message = message
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.loc}: " if self.loc is not None else ""
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


@struct(frozen=True)
class Accepted:
    """A human decision recorded in the plan: the thing counts as passed and is listed for review."""

    reason: str
    by: str = ""
    date: str = ""


@struct(frozen=True)
class Achieved:
    """A measurement recorded by hand in the plan (``achieved:``, SPEC section 10): used for a
    criterion that no measured result supplies, shown as "recorded in the plan (line N), not
    measured", and always listed for review."""

    value: float
    loc: Loc
    where: str  # "criterion", "sub-experiment e_1", "pivot pivot_e3", "experiment"

    def __str__(self) -> str:
        return f"recorded in the plan (line {self.loc.line}), not measured"


@struct(frozen=True)
class PlanStatus:
    """The plan's own ``status:`` annotation of an experiment (shown, compared, never decisive)."""

    text: str
    loc: Loc


@struct(frozen=True, slots=True)
class Criterion:
    """One success criterion, parsed (see ``criteria.parse_criterion``): a form and shared options.

    ``form`` is one of the classes in ``criteria/forms.py`` (tiered, comparison, range) or
    ``criteria/contrast.py`` (a comparison with another measurement, SPEC section 3a); it decides
    what passes, the levels, margins and words.  The options here apply to every form.
    """

    metric: str
    form: Form
    note: str | None = None
    borderline: float | None = None  # explicit absolute margin; None means the form's default
    aggregate: Aggregate = "mean"
    confidence: float | None = None
    from_: str | None = None  # experiment level only: the sub-experiment that supplies the value
    accepted: Accepted | None = None
    raw: Any = None  # the spec as written, for display
    loc: Loc | None = None
    achieved: Achieved | None = None  # ``achieved:`` written on the criterion itself

    # Read-only views of the form's parts (None where the form has no such part): what
    # ``{min: 0.9}`` became, say, is ``op == ">="`` and ``threshold == 0.9``.
    @property
    def kind(self) -> Literal["tiered", "compare", "metric"]:
        return self.form.kind

    @property
    def op(self) -> Literal["<", "<=", ">", ">=", "==", "!=", "in"] | None:
        return cast('Literal["<", "<=", ">", ">=", "==", "!=", "in"] | None', getattr(self.form, "op", None))

    @property
    def threshold(self) -> float | None:
        return cast("float | None", getattr(self.form, "threshold", None))

    @property
    def low(self) -> float | None:
        return cast("float | None", getattr(self.form, "low", None))

    @property
    def high(self) -> float | None:
        return cast("float | None", getattr(self.form, "high", None))

    @property
    def target(self) -> float | None:
        return cast("float | None", getattr(self.form, "target", None))

    @property
    def acceptable(self) -> float | None:
        return cast("float | None", getattr(self.form, "acceptable", None))

    @property
    def failure(self) -> float | None:
        return cast("float | None", getattr(self.form, "failure", None))

    @property
    def direction(self) -> Direction | None:
        return cast("Direction | None", getattr(self.form, "direction", None))

    @property
    def compares_with(self) -> str | None:
        """The other sub-experiment a comparison of two measurements names (None: none, or the
        same sub-experiment's other metric)."""
        ref = self.form.references()
        return ref[0] if ref is not None else None


@struct(frozen=True)
class Select:
    metric: str
    mode: Literal["max", "min"]
    loc: Loc | None = None  # where ``select:`` was written (a wiring error names the line)


@struct(frozen=True, slots=True)
class SweepPoint:
    """One point of a sweep's cartesian product: ``key`` is what goes between the brackets."""

    key: str
    values: Mapping[str, Any]


@struct(frozen=True, slots=True)
class SubExperiment:
    id: str
    experiment_id: str
    handler: str | None  # "package.module:function" or None (found by convention)
    params: Mapping[str, Any]  # merged over defaults and experiment, without stub overrides
    stub_params: Mapping[str, Any]  # merged overrides laid over params under --stub
    sweep: Mapping[str, tuple[Any, ...]] | None
    select: Select | None
    seeds: tuple[int, ...]  # (0,) when not given
    seeds_given: bool  # whether the plan asked for seeds (results then carry per_seed/stats)
    executor: str
    resources: Mapping[str, Any]
    marks: tuple[str, ...]
    success_criteria: tuple[Criterion, ...]
    dependencies: tuple[str, ...]  # other sub-experiment ids
    meta: Mapping[str, Any]  # annotation keys, kept verbatim
    loc: Loc
    # Sub-experiments this one waits for without listing them under ``dependencies``: the ones
    # its criteria compare against (``accuracy: "> p1_logreg:accuracy"``, SPEC section 3a).
    # They order, dispatch and take part in the cycle check exactly like ``dependencies`` (see
    # ``graph.py``), but block only when the other side has no result to compare with (it
    # errored, was blocked or never ran), not when it missed its own criteria
    # (``blocking.sub_blockers``).
    implicit_dependencies: tuple[str, ...] = ()
    # SPEC section 10: a human decision (counts as passed for sub-level dependencies and the
    # assessment), measurements recorded by hand (metric -> value), and the pivot block of its
    # experiment it belongs to (None: the main list).
    accepted: Accepted | None = None
    achieved: Mapping[str, Achieved] = field(default_factory=dict)
    pivot: str | None = None
    # A handler registry (plan key ``handlers: "package.module:get_handlers"``, inherited; SPEC
    # section 10): the module attribute that maps sub-experiment ids to functions, or a callable
    # returning that mapping.  An explicit ``handler`` wins over it.
    registry: str | None = None
    # Files the results depend on besides code (``deps:``, SPEC section 11): paths or globs
    # relative to the rootdir, whose content hashes enter the fingerprint.
    deps: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        value = self.meta.get("name")
        return str(value) if value is not None else self.id

    def resolved_params(self, stub: bool, point: SweepPoint | None = None) -> dict[str, Any]:
        """The params a handler sees: params, then stub overrides, then the sweep point."""
        merged = dict(self.params)
        if stub:
            merged.update(self.stub_params)
        if point is not None:
            merged.update(point.values)
        return merged

    def points(self) -> tuple[SweepPoint, ...]:
        """The sweep's points in plan order (empty when there is no sweep)."""
        if not self.sweep:
            return ()
        keys = list(self.sweep)
        out = []
        for combo in itertools.product(*(enumerate(self.sweep[k]) for k in keys)):
            values = {k: value for k, (_, value) in zip(keys, combo, strict=True)}
            # A secret-named param's value never goes into the key (node ids, the cache, file
            # and run names): its position does (``api_token_0``).
            shown = {k: (i if is_secret_key(k) else value) for k, (i, value) in zip(keys, combo, strict=True)}
            out.append(SweepPoint(point_key(shown), values))
        return tuple(out)


def parse_mark(text: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """A plan's mark as pytest gets it: ``slow`` -> ``("slow", (), {})``, ``timeout(60)`` ->
    ``("timeout", (60,), {})``, ``timeout(60, method="thread")`` with keywords; arguments are
    Python literals only.  Raises ValueError for anything else."""
    import ast

    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"mark {text!r} is not a name or a call like timeout(60)") from None
    if isinstance(node, ast.Name):
        return node.id, (), {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ValueError(f"mark {text!r} is not a name or a call like timeout(60)")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {str(k.arg): ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    except ValueError:
        raise ValueError(f"the arguments of mark {text!r} must be numbers, strings or booleans") from None
    if len(kwargs) != len(node.keywords):
        raise ValueError(f"mark {text!r} may not use **")
    return node.func.id, args, kwargs


def gpu_request(spec: Any) -> tuple[int, str | None]:
    """``resources.gpu`` as (count, type as written), read one way by every executor and the
    estimate: ``"A100:2"`` -> ``(2, "A100")``; ``"A100"`` -> ``(1, "A100")``; ``"2"``, ``2`` or
    ``"any:2"`` -> ``(2, None)``; ``"any"`` -> ``(1, None)``; nothing -> ``(0, None)``."""
    text = "" if spec is None or isinstance(spec, bool) else str(spec).strip()
    if not text:
        return 0, None
    name, sep, count = text.rpartition(":")
    if not sep:
        name, count = text, ""
    if name.isdigit() and not count:
        return int(name), None
    n = max(1, int(count)) if count.isdigit() else 1
    kind = name.strip()
    return n, None if kind.lower() in ("", "any", "gpu") else kind


def _id_piece(value: Any) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9_.]", "_", text)


def point_key(values: Mapping[str, Any]) -> str:
    """``{hidden: 32, lr: 0.01}`` -> ``hidden_32-lr_0.01`` (``=`` is not allowed in ``-k``).
    (``SubExperiment.points`` passes a secret-named param's index, not its value.)"""
    return "-".join(f"{_id_piece(k)}_{_id_piece(v)}" for k, v in values.items())


@struct(frozen=True)
class Pivot:
    """A pivot block of an experiment (SPEC section 10): its own sub-experiments and criteria.

    Its criteria read only its own sub-experiments; when the original criteria are not all met
    and every criterion of one pivot is (or the pivot is ``accepted``), the experiment's verdict
    is ``passed_with_pivot``.
    """

    key: str  # the block's key in the plan (``pivot_e3_8``)
    name: str
    rationale: str
    sub_ids: tuple[str, ...]
    success_criteria: tuple[Criterion, ...]
    achieved: Mapping[str, Achieved]
    accepted: Accepted | None
    loc: Loc


@struct(frozen=True)
class Experiment:
    id: str
    name: str
    phase: int | None
    sub_experiments: tuple[SubExperiment, ...]  # main list first, then pivot-only ones
    success_criteria: tuple[Criterion, ...]
    dependencies: tuple[str, ...]  # other experiment ids
    replaces: tuple[str, ...]
    retired: bool
    meta: Mapping[str, Any]
    loc: Loc
    # SPEC section 10: a human decision (verdict ``accepted``), measurements recorded by hand,
    # pivot blocks, and the plan's own ``status`` (shown; a disagreement is listed for review).
    accepted: Accepted | None = None
    achieved: Mapping[str, Achieved] = field(default_factory=dict)
    pivots: tuple[Pivot, ...] = ()
    plan_status: PlanStatus | None = None
    # The marks given under ``defaults:`` and on the experiment itself (not a sub-experiment's
    # own): its assessment carries them, so a skipped or deselected experiment is one whole.
    marks: tuple[str, ...] = ()

    def pivot(self, key: str) -> Pivot:
        return next(p for p in self.pivots if p.key == key)


@struct(frozen=True)
class Unlocks:
    """What a gate unlocks: experiment ids, every experiment of a phase, or free text only."""

    kind: Literal["ids", "phase", "text"]
    ids: tuple[str, ...] = ()
    phase: int | None = None
    text: str = ""


@struct(frozen=True)
class Gate:
    id: str
    name: str
    experiments: tuple[str, ...]
    unlocks: Unlocks
    accepted: Accepted | None
    meta: Mapping[str, Any]
    loc: Loc


@struct(frozen=True)
class Project:
    name: str
    hypothesis: str
    wandb_project: str | None
    meta: Mapping[str, Any]


@struct(frozen=True)
class Prerequisite:
    """Something an experiment waits for: another experiment (``dependency``) or a gate."""

    kind: Literal["dependency", "gate"]
    experiment_id: str | None = None
    gate_id: str | None = None


@struct(frozen=True)
class Plan:
    path: Path  # absolute path of the plan file
    project: Project
    experiments: tuple[Experiment, ...]  # plan order
    gates: tuple[Gate, ...]
    modal: Mapping[str, Any]  # the raw ``modal:`` section ({} when absent)
    meta: Mapping[str, Any]  # other top-level keys, kept verbatim
    # Things worth saying about a plan that parses (``replaces`` naming an unknown id, say):
    # shown as warnings after collection, never errors.
    warnings: tuple[str, ...] = ()
    _exp_index: dict[str, Experiment] = field(default_factory=dict, compare=False, repr=False)
    _sub_index: dict[str, SubExperiment] = field(default_factory=dict, compare=False, repr=False)
    _replaced_by: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for exp in self.experiments:
            self._exp_index[exp.id] = exp
            for sub in exp.sub_experiments:
                self._sub_index[sub.id] = sub
        self._replaced_by.update(replacements(self.experiments))

    @property
    def root(self) -> Path:
        """The folder that holds the plan; results paths are relative to it."""
        return self.path.parent

    def experiment(self, experiment_id: str) -> Experiment:
        return self._exp_index[experiment_id]

    def has_experiment(self, experiment_id: str) -> bool:
        return experiment_id in self._exp_index

    def sub(self, sub_id: str) -> SubExperiment:
        return self._sub_index[sub_id]

    def has_sub(self, sub_id: str) -> bool:
        return sub_id in self._sub_index

    def gate(self, gate_id: str) -> Gate:
        return next(g for g in self.gates if g.id == gate_id)

    def gates_unlocking(self, experiment_id: str) -> tuple[Gate, ...]:
        exp = self.experiment(experiment_id)
        out = []
        for gate in self.gates:
            u = gate.unlocks
            if (u.kind == "ids" and experiment_id in u.ids) or (
                u.kind == "phase" and exp.phase is not None and u.phase == exp.phase
            ):
                out.append(gate)
        return tuple(out)

    def prerequisites(self, experiment_id: str) -> tuple[Prerequisite, ...]:
        """Dependencies first (plan order), then the gates that unlock the experiment."""
        exp = self.experiment(experiment_id)
        deps = [Prerequisite("dependency", experiment_id=d) for d in exp.dependencies]
        gates = [Prerequisite("gate", gate_id=g.id) for g in self.gates_unlocking(experiment_id)]
        return tuple(deps + gates)

    # --- retirement (SPEC section 10) -------------------------------------------------------

    def replaced_by(self, experiment_id: str) -> str | None:
        """The experiment that ``replaces`` this one, if any."""
        return self._replaced_by.get(experiment_id)

    def decider(self, experiment_id: str) -> str:
        """The experiment whose verdict decides a prerequisite on ``experiment_id``: itself, or
        its replacement (followed through replacements of replacements)."""
        return decider(experiment_id, self._replaced_by)

    def retirement(self, experiment_id: str) -> str | None:
        """Why the experiment is left out of every implicit selection (``all``, a named plan
        file, ``mlexp_select_by_default``), or None: replaced, ``retired: true``, or
        ``status: deferred|retired``."""
        replacement = self._replaced_by.get(experiment_id)
        if replacement is not None:
            return f"replaced by {replacement}"
        exp = self._exp_index[experiment_id]
        if exp.retired:
            return "retired"
        status = exp.meta.get("status")
        if isinstance(status, str) and status.strip().lower() in RETIRED_STATUSES:
            return f"status: {status.strip()}"
        return None

    # What waits for what (run order, cycles, xdist components, dispatch): graph.py.


RETIRED_STATUSES = frozenset({"deferred", "retired"})  # ``status:`` values that retire an experiment


def replacements(experiments: Sequence[Experiment]) -> dict[str, str]:
    """replaced id -> the first experiment (plan order) whose ``replaces`` names it."""
    ids = {e.id for e in experiments}
    out: dict[str, str] = {}
    for exp in experiments:
        for old in exp.replaces:
            if old in ids and old != exp.id:
                out.setdefault(old, exp.id)
    return out


def decider(experiment_id: str, replaced_by: Mapping[str, str]) -> str:
    """``experiment_id``, or its replacement followed to the end of the chain (a loop of
    replacements stops where it would repeat)."""
    seen = {experiment_id}
    current = experiment_id
    while current in replaced_by:
        nxt = replaced_by[current]
        if nxt in seen:
            break
        seen.add(nxt)
        current = nxt
    return current


# --- judged results -------------------------------------------------------------------------

Level = Literal[
    "target",  # tiered: met the target
    "acceptable",  # tiered: on the good side of acceptable, short of target
    "miss",  # tiered: between acceptable and failure
    "failure",  # tiered: at or beyond failure
    "pass",  # comparison criterion met
    "fail",  # comparison criterion not met
    "inconclusive",  # confidence interval straddles the threshold, or fewer than 2 seeds
    "missing",  # metric missing, NaN, infinite or not a number (see ``reason``)
    "unmeasured",  # experiment level: no sub-experiment reported it and nothing was recorded
    "accepted",  # a human accepted it (counts as passed, always listed for review)
]


@struct(frozen=True, slots=True)
class Stats:
    """Statistics of one metric over seeds; ``ci95`` is the Student-t 95% interval of the mean."""

    mean: float
    std: float  # sample standard deviation (ddof=1); 0.0 for n == 1
    n: int
    ci95: tuple[float, float] | None  # None when n < 2

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "n": self.n}
        if self.ci95 is not None:
            out["ci95"] = [self.ci95[0], self.ci95[1]]
        return out


Pairing = Literal["paired", "welch", "constant", "single"]


@struct(frozen=True)
class Contrast:
    """How a criterion that compares two measurements was judged (SPEC section 3a).

    ``difference`` is what the criterion's operator is applied to (against 0): the aggregate of
    the per-seed differences when ``paired`` (or ``constant``: one side is a single value), the
    difference of the two sides' aggregates otherwise.  ``ci`` is the interval of the mean
    difference at ``confidence`` (the criterion's, else 95%), or None with too few values.
    """

    other: str  # the right side as written: "p1_logreg:accuracy" or ":baseline_acc"
    other_value: float | None  # the other side's aggregate
    difference: float | None
    pairing: Pairing
    n: int  # values on this side (pairs when paired)
    n_other: int  # values on the other side
    ci: tuple[float, float] | None = None
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "other": self.other,
            "other_value": self.other_value,
            "difference": self.difference,
            "pairing": self.pairing,
            "n": self.n,
            "n_other": self.n_other,
        }
        if self.ci is not None:
            out["ci"] = [self.ci[0], self.ci[1]]
            out["confidence"] = self.confidence
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Contrast | None:
        """The inverse of ``to_dict``; None for anything that is not one (an edited file)."""
        if not isinstance(data, Mapping):
            return None
        try:
            ci = data.get("ci")
            pairing = data.get("pairing")
            return cls(
                other=str(data["other"]),
                other_value=_float_or_none(data.get("other_value")),
                difference=_float_or_none(data.get("difference")),
                pairing=pairing if pairing in ("paired", "welch", "constant", "single") else "single",
                n=int(data.get("n", 1)),
                n_other=int(data.get("n_other", 1)),
                ci=(float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None,
                confidence=float(data.get("confidence", 0.95)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _float_or_none(value: Any) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


@struct(frozen=True, slots=True)
class Judgement:
    """A criterion judged against a value (or the per-seed values)."""

    metric: str
    value: Any  # the judged value (the aggregate over seeds); None when missing
    level: Level
    passed: bool
    borderline: bool  # a pass within the borderline margin: requires human review
    rule: str  # e.g. "<= 0.35 (target 0.25)" or ">= 0.6"
    # one line, e.g. "accuracy = 0.912 (mean of 3 seeds, 95% CI [...]) needs >= 0.95
    # (acceptable; target 0.97): miss"
    message: str
    reason: str | None = None  # why a value could not be judged (missing, NaN, ...)
    stats: Stats | None = None
    seeds_needed: int | None = None  # for inconclusive: about how many seeds would settle it
    source: str | None = None  # experiment level: the sub-experiment that supplied the value
    note: str | None = None
    accepted: Accepted | None = None
    contrast: Contrast | None = None  # a comparison of two measurements: the other side
    recorded: Achieved | None = None  # judged on a value recorded in the plan, not measured

    @property
    def needs_review(self) -> bool:
        return self.borderline or self.level in ("inconclusive", "accepted") or self.recorded is not None

    def to_dict(self) -> dict[str, Any]:
        """The shape stored under ``criteria:`` in results.yaml (SPEC section 8)."""
        out: dict[str, Any] = {"value": self.value}
        if self.source is not None:
            out["from"] = self.source
        out.update(rule=self.rule, level=self.level, passed=self.passed, borderline=self.borderline)
        if self.reason:
            out["reason"] = self.reason
        if self.stats is not None:
            out["stats"] = self.stats.to_dict()
        if self.seeds_needed is not None:
            out["seeds_needed"] = self.seeds_needed
        if self.note:
            out["note"] = self.note
        if self.contrast is not None:
            out["compared"] = self.contrast.to_dict()
        if self.recorded is not None:
            out["recorded"] = f"{self.recorded.loc}"
        if self.accepted is not None:
            out["accepted"] = {
                "reason": self.accepted.reason,
                "by": self.accepted.by,
                "date": self.accepted.date,
            }
        return out


#: An experiment's verdict (SPEC "Verdicts, once and for all"), in precedence order.
VerdictName = Literal["passed", "passed_with_pivot", "accepted", "recorded", "failed", "not_run"]
VERDICTS: tuple[VerdictName, ...] = (
    "passed",
    "passed_with_pivot",
    "accepted",
    "recorded",
    "failed",
    "not_run",
)
#: The verdicts that open gates and dependencies (and pass the assessment).
OPENING: frozenset[str] = frozenset(("passed", "passed_with_pivot", "accepted", "recorded"))

SubStatus = Literal["passed", "failed", "error", "infra_error", "blocked", "not_run"]


@struct(frozen=True, slots=True)
class SubState:
    """A sub-experiment judged from the current plan and its stored result (never from the
    status or criteria stored beside it): what every report shows of it."""

    sub: SubExperiment
    status: SubStatus
    judgements: tuple[Judgement, ...]  # its own criteria (a sweep: on the selected point)
    values_entry: Mapping[str, Any] | None  # where its values are (a sweep: the selected point)
    detail: str = ""  # why it errored, is blocked, or what its wiring lacks
    selected: str | None = None  # a sweep: the point that represents it
    measured: bool = False  # a measured result stands behind it (it ran to values)
    wiring: bool = False  # ``error`` because a metric the plan needs was not reported (SPEC 5a)
    stale: str | None = None  # its stored result went stale (why): it counts as never run

    @property
    def counts_as_passed(self) -> bool:
        """Passed, or ``accepted`` in the plan (for sub-level dependencies and the assessment)."""
        return self.status == "passed" or self.sub.accepted is not None

    @property
    def recorded_only(self) -> bool:
        """Never measured, and every criterion it has is met by values recorded in the plan (or
        it has none): it does not count as "never ran" for the ``recorded`` verdict."""
        return (
            not self.measured
            and self.status in ("not_run", "blocked")
            and all(j.passed and j.recorded is not None for j in self.judgements)
            and (bool(self.judgements) or not self.sub.success_criteria)
        )


@struct(frozen=True)
class PivotVerdict:
    """A pivot block judged: its criteria read only its own sub-experiments."""

    pivot: Pivot
    criteria: tuple[Judgement, ...]
    met: bool  # every criterion met (measured or recorded), or the pivot is ``accepted``
    problems: tuple[str, ...]


@struct(frozen=True)
class Verdict:
    """An experiment's verdict: a pure function of the plan and the merged results.

    ``verdict`` is the table's word; ``passed`` is whether it opens gates and dependencies (and
    whether the assessment passes): true for ``passed``, ``passed_with_pivot``, ``accepted`` and
    ``recorded``.  ``criteria`` are the original experiment-level criteria; ``pivots`` each pivot
    block judged on its own.
    """

    experiment_id: str
    status: Literal["completed", "failed", "partial", "blocked", "not_started"]
    criteria: tuple[Judgement, ...]
    success_criteria_met: bool
    confidence: Literal["high", "medium", "low"]
    recommendation: Literal["proceed", "investigate", "pivot"] | None  # None: not run
    passed: bool  # opens gates: the assessment would pass
    problems: tuple[str, ...]  # one line each: why it does not pass (the assessment's message)
    review: tuple[str, ...]  # one line each: what requires human review
    verdict: VerdictName = "failed"
    reasons: tuple[str, ...] = ()  # why the recommendation is ``investigate``
    subs: tuple[SubState, ...] = ()
    pivots: tuple[PivotVerdict, ...] = ()
    pivot: str | None = None  # ``passed_with_pivot``: the pivot that passed
    message: str = ""  # the assessment's line when it passes other than plainly
    plan_status: PlanStatus | None = None
    plan_disagrees: str | None = None  # the plan's status against the verdict, with the line
    last_run: str | None = None  # the newest ``finished_at`` of its results

    @property
    def opens_gates(self) -> bool:
        return self.passed

    def sub_state(self, sub_id: str) -> SubState | None:
        return next((s for s in self.subs if s.sub.id == sub_id), None)
