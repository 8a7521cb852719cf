"""A plan file -> the frozen model (``model.py``), with every user mistake as a ``PlanError``.

Both dialects of SPEC section 2 go through one path: the tiered dialect is the detailed one with
``sub_experiments`` written as a list of ids and nothing to inherit but ``defaults``.  Unknown keys
are annotations (kept in ``meta``) unless they are a near miss of a key that means something at
that level, because a silently ignored ``sucess_criteria`` would make an experiment pass with no
criteria at all.

The key tables below are also what ``schema.py`` turns into the published JSON Schema.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .graph import PrerequisiteGraph
from .model import (
    ID_RE,
    Accepted,
    Criterion,
    Experiment,
    Gate,
    Loc,
    Plan,
    PlanError,
    Project,
    Select,
    SubExperiment,
    Unlocks,
)
from .yamlload import Doc, YamlError, load_yaml

__all__ = [
    "ANNOTATION_KEYS",
    "KNOWN_KEYS",
    "load_plan",
    "near_miss",
    "parse_plan_text",
]

# --- key tables (the schema is generated from these) ------------------------------------------

INHERITABLE_KEYS: tuple[str, ...] = (
    "handler",
    "params",
    "stub_params",
    "sweep",
    "select",
    "seeds",
    "executor",
    "resources",
    "marks",
)
_INHERITABLE_SET = frozenset(INHERITABLE_KEYS)
NOT_INHERITED_KEYS: tuple[str, ...] = ("success_criteria", "dependencies", "accepted")
TOP_KEYS: tuple[str, ...] = ("project", "defaults", "modal", "experiments", "gates")
PROJECT_KEYS: tuple[str, ...] = ("name", "hypothesis", "wandb_project")
EXPERIMENT_KEYS: tuple[str, ...] = (
    "name",
    "phase",
    "sub_experiments",
    "success_criteria",
    "dependencies",
    "replaces",
    "retired",
    "accepted",
    *INHERITABLE_KEYS,
)
SUB_EXPERIMENT_KEYS: tuple[str, ...] = (
    "name",
    "success_criteria",
    "dependencies",
    "accepted",
    *INHERITABLE_KEYS,
)
GATE_KEYS: tuple[str, ...] = ("name", "experiments", "unlocks", "accepted")
RESOURCES_KEYS: tuple[str, ...] = ("gpu", "timeout", "memory", "cpu", "retries")
SELECT_KEYS: tuple[str, ...] = ("metric", "mode")
MODAL_KEYS: tuple[str, ...] = ("python", "pip", "apt", "env", "secrets", "volumes")
ACCEPTED_KEYS: tuple[str, ...] = ("reason", "by", "date")
UNLOCKS_KEYS: tuple[str, ...] = ("phase",)

KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "plan": TOP_KEYS,
    "project": PROJECT_KEYS,
    # success_criteria/dependencies/accepted are recognised under defaults only to say they are wrong
    "defaults": INHERITABLE_KEYS + NOT_INHERITED_KEYS,
    "experiment": EXPERIMENT_KEYS,
    "sub_experiment": SUB_EXPERIMENT_KEYS,
    "gate": GATE_KEYS,
    "resources": RESOURCES_KEYS,
    "select": SELECT_KEYS,
    "modal": MODAL_KEYS,
    "accepted": ACCEPTED_KEYS,
    "unlocks": UNLOCKS_KEYS,
}

_KNOWN_SETS = {level: frozenset(keys) for level, keys in KNOWN_KEYS.items()}

# Words research teams use as annotations.  They are never near-miss errors even when they sit
# within the edit distance of a known key (``model`` vs ``modal``, ``notes``...).
COMMON_ANNOTATIONS: frozenset[str] = frozenset(
    {
        "type", "status", "outcome", "achieved", "description", "note", "notes", "rationale",
        "proposal", "architecture", "future_study", "owner", "author", "authors", "tags", "links",
        "link", "model", "models", "dataset", "datasets", "date", "version", "reason", "summary",
        "title", "comment", "comments", "todo", "results", "findings", "priority", "references",
        "goal", "goals", "metrics", "ideas", "hypothesis",
    }
)  # fmt: skip

ANNOTATION_KEYS: dict[str, frozenset[str]] = {
    "plan": COMMON_ANNOTATIONS | {"archived", "links", "last_updated", "future_research"},
    "project": COMMON_ANNOTATIONS,
    "defaults": COMMON_ANNOTATIONS,
    "experiment": COMMON_ANNOTATIONS,
    "sub_experiment": COMMON_ANNOTATIONS,
    "gate": COMMON_ANNOTATIONS,
    "resources": COMMON_ANNOTATIONS,
    "select": frozenset(),
    "modal": COMMON_ANNOTATIONS | {"app", "app_name", "image"},
    "accepted": COMMON_ANNOTATIONS,
    "unlocks": COMMON_ANNOTATIONS,
}

HANDLER_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
MARK_RE = re.compile(r"^[A-Za-z_]\w*$")
_PHASE_IN_TEXT = re.compile(r"\bphase\s*(\d+)", re.IGNORECASE)
_PHASE_VALUE = re.compile(r"^\s*(?:phase\s*)?(\d+)\b", re.IGNORECASE)
_ID_RULE = "ids are letters, digits, '_', '.' and '-', starting with a letter or digit"
_SCALARS = (str, int, float, bool, type(None))


# --- edit distance ----------------------------------------------------------------------------


def _distance(a: str, b: str) -> int:
    """Optimal-string-alignment (restricted Damerau-Levenshtein) distance."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def _closest(word: str, candidates: Iterable[str], short: int = 6) -> str | None:
    """The candidate within distance 2 of ``word`` (1 for candidates shorter than ``short``)."""
    best: tuple[int, str] | None = None
    lowered = word.lower()
    for cand in candidates:
        limit = 2 if len(cand) >= short else 1
        if abs(len(cand) - len(word)) > limit:
            continue
        d = _distance(lowered, cand.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, cand)
    return best[1] if best is not None else None


def near_miss(key: Any, level: str) -> str | None:
    """The known key of ``level`` that an unknown ``key`` was probably meant to be, if any."""
    if not isinstance(key, str) or key in ANNOTATION_KEYS[level]:
        return None
    return _closest(key, KNOWN_KEYS[level])


def _closest_id(word: str, ids: Iterable[str]) -> str | None:
    # ids are long and similar (e_p2_1, e_p2_2): a distance of 2 only suggests, never decides
    return _closest(word, ids, short=4)


# --- parsing context --------------------------------------------------------------------------

_UNSET: Any = object()


@dataclass
class _Ctx:
    file: str
    doc: Doc

    def loc(self, line: int) -> Loc:
        return Loc(self.file, line)

    def err(self, line: int, message: str, fix: str) -> PlanError:
        return PlanError(self.loc(line), message, fix)

    def split(
        self, mapping: dict[Any, Any], level: str, where: str, *, also_meta: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any], dict[Any, Any]]:
        """Known keys of ``level`` and the annotations, in plan order; near misses are errors."""
        known_keys = _KNOWN_SETS[level]
        known: dict[str, Any] = {}
        meta: dict[Any, Any] = {}
        for key, value in mapping.items():
            if key in known_keys:
                known[key] = value
                if key in also_meta:
                    meta[key] = value
                continue
            guess = near_miss(key, level)
            if guess is not None:
                raise self.err(
                    self.doc.key_line(mapping, key),
                    f"unknown key {key!r} in {where}",
                    f"did you mean {guess}?",
                )
            meta[key] = value
        return known, meta

    def kline(self, mapping: Any, key: Any) -> int:
        """The line of ``key`` in ``mapping``, else of the mapping itself."""
        info = self.doc.maps.get(id(mapping))
        if info is None:
            return 1
        entry = info[1].get(key)
        return entry[0] if entry is not None else info[0]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _check_id(ctx: _Ctx, value: Any, line: int, what: str) -> str:
    if not isinstance(value, str):
        raise ctx.err(line, f"{what} id must be a string, not {_type_name(value)}", "quote the id")
    if not ID_RE.fullmatch(value):  # fullmatch: "$" alone lets a trailing newline through
        raise ctx.err(line, f"invalid {what} id {value!r}: {_ID_RULE}", f"rename {value!r}")
    return value


def _id_list(ctx: _Ctx, mapping: dict[Any, Any], key: str, what: str) -> list[tuple[str, int]]:
    """A list of ids (a single string is a list of one), each with the line it was written on."""
    raw = mapping.get(key)
    line = ctx.kline(mapping, key)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [(_check_id(ctx, raw, line, what), line)]
    if not isinstance(raw, list):
        raise ctx.err(
            line, f"{key} must be a list of {what} ids, not {_type_name(raw)}", f"write {key}: [id, ...]"
        )
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        item_line = ctx.doc.item_line(raw, index, line)
        ident = _check_id(ctx, item, item_line, what)
        if ident not in seen:
            seen.add(ident)
            out.append((ident, item_line))
    return out


def _text(ctx: _Ctx, value: Any, line: int, what: str) -> str:
    if isinstance(value, dict | list):
        raise ctx.err(
            line, f"{what} must be text, not {_type_name(value)}", f"write {what} as a quoted string"
        )
    return "" if value is None else str(value)


def _parse_accepted(ctx: _Ctx, raw: Any, line: int) -> Accepted:
    fix = 'write accepted: {reason: "...", by: "...", date: "YYYY-MM-DD"}'
    if isinstance(raw, str) and raw.strip():
        return Accepted(reason=raw)
    if not isinstance(raw, dict):
        raise ctx.err(line, f"accepted must be a mapping with a reason, not {_type_name(raw)}", fix)
    known, _ = ctx.split(raw, "accepted", "accepted")
    reason = known.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ctx.err(line, "accepted needs a reason (the human decision, in words)", fix)
    return Accepted(
        reason=reason,
        by=_text(ctx, known.get("by"), ctx.kline(raw, "by"), "accepted.by"),
        date=_text(ctx, known.get("date"), ctx.kline(raw, "date"), "accepted.date"),
    )


def _parse_phase(ctx: _Ctx, raw: Any, line: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        m = _PHASE_VALUE.match(raw)
        if m:
            return int(m.group(1))
    raise ctx.err(line, f"phase must be a whole number, not {_type_name(raw)}", "write phase: 2")


# --- criteria ---------------------------------------------------------------------------------


def _parse_criteria(
    ctx: _Ctx, owner: dict[Any, Any], where: str, *, experiment_level: bool
) -> tuple[tuple[Criterion, ...], dict[str, int]]:
    """The criteria under ``success_criteria`` and, for ``from:``, the line each was written on."""
    raw = owner.get("success_criteria")
    if raw is None:
        return (), {}
    line = ctx.kline(owner, "success_criteria")
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"success_criteria of {where} must be a mapping of metric -> criterion, not {_type_name(raw)}",
            'write success_criteria: {accuracy: ">= 0.9"}',
        )
    from .criteria import CriterionError, parse_criterion

    out: list[Criterion] = []
    from_lines: dict[str, int] = {}
    for metric, spec in raw.items():
        mline = ctx.kline(raw, metric)
        if not isinstance(metric, str) or not metric:
            raise ctx.err(
                mline, f"metric name {metric!r} in {where} must be a string", "quote the metric name"
            )
        try:
            crit = parse_criterion(metric, spec, loc=ctx.loc(mline), experiment_level=experiment_level)
        except CriterionError as exc:
            message = getattr(exc, "message", None) or str(exc)
            fix = getattr(exc, "fix", "") or ""
            raise ctx.err(mline, f"{message} (in {where})", fix) from None
        out.append(crit)
        if isinstance(spec, dict) and "from" in spec:
            from_lines[metric] = ctx.doc.value_line(spec, "from", mline)
        else:
            from_lines[metric] = mline
    return tuple(out), from_lines


# --- inheritable settings ---------------------------------------------------------------------


@dataclass
class _Layer:
    """The inheritable settings one level wrote; ``_UNSET`` where it wrote nothing."""

    handler: Any = _UNSET
    params: dict[Any, Any] | None = None
    stub_params: dict[Any, Any] | None = None
    sweep: Any = _UNSET  # dict[str, tuple[Any, ...]] | None
    sweep_line: int = 0
    select: Any = _UNSET  # Select | None
    seeds: Any = _UNSET  # tuple[int, ...] | None
    executor: Any = _UNSET  # str | None
    resources: dict[Any, Any] | None = None
    marks: tuple[str, ...] = ()


def _deep_merge(base: Mapping[Any, Any], over: Mapping[Any, Any]) -> dict[Any, Any]:
    """Key by key, recursively into mappings; anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _deep_merge(old, value)
        else:
            out[key] = value
    return out


def _merge(outer: _Layer, inner: _Layer) -> _Layer:
    def pick(a: Any, b: Any) -> Any:
        return a if b is _UNSET else b

    def merged(a: dict[Any, Any] | None, b: dict[Any, Any] | None) -> dict[Any, Any] | None:
        if a is None or b is None:
            return b if a is None else a
        return _deep_merge(a, b)

    marks = outer.marks + tuple(m for m in inner.marks if m not in outer.marks)
    return _Layer(
        handler=pick(outer.handler, inner.handler),
        params=merged(outer.params, inner.params),
        stub_params=merged(outer.stub_params, inner.stub_params),
        sweep=pick(outer.sweep, inner.sweep),
        sweep_line=outer.sweep_line if inner.sweep is _UNSET else inner.sweep_line,
        select=pick(outer.select, inner.select),
        seeds=pick(outer.seeds, inner.seeds),
        executor=pick(outer.executor, inner.executor),
        resources=merged(outer.resources, inner.resources),
        marks=marks,
    )


def _parse_layer(ctx: _Ctx, owner: dict[Any, Any], known: dict[str, Any], where: str) -> _Layer:
    layer = _Layer()
    for key, raw in known.items():
        if key not in _INHERITABLE_SET:
            continue
        line = ctx.kline(owner, key)
        if key == "handler":
            if raw is not None and not (isinstance(raw, str) and HANDLER_RE.fullmatch(raw)):
                raise ctx.err(
                    line,
                    f"handler of {where} must look like 'package.module:function', not {_type_name(raw)}",
                    "write handler: experiments.my_module:my_function (or leave it out to find it by name)",
                )
            layer.handler = raw
        elif key in ("params", "stub_params"):
            if raw is not None and not isinstance(raw, dict):
                raise ctx.err(
                    line,
                    f"{key} of {where} must be a mapping, not {_type_name(raw)}",
                    f"write {key}: {{name: value}}",
                )
            setattr(layer, key, raw)
        elif key == "sweep":
            layer.sweep = _parse_sweep(ctx, raw, line, where)
            layer.sweep_line = line
        elif key == "select":
            layer.select = _parse_select(ctx, raw, line, where)
        elif key == "seeds":
            layer.seeds = _parse_seeds(ctx, raw, line, where)
        elif key == "executor":
            if raw is not None and not (isinstance(raw, str) and raw.strip()):
                raise ctx.err(
                    line,
                    f"executor of {where} must be a name, not {_type_name(raw)}",
                    "write executor: local",
                )
            layer.executor = raw
        elif key == "resources":
            layer.resources = _parse_resources(ctx, raw, line, where)
        elif key == "marks":
            layer.marks = _parse_marks(ctx, raw, line, where)
    return layer


def _parse_sweep(ctx: _Ctx, raw: Any, line: int, where: str) -> dict[str, tuple[Any, ...]] | None:
    fix = "write sweep: {param: [value, value, ...]}"
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise ctx.err(line, f"sweep of {where} must be a mapping of param -> list of values", fix)
    out: dict[str, tuple[Any, ...]] = {}
    for param, values in raw.items():
        pline = ctx.kline(raw, param)
        if not isinstance(param, str):
            raise ctx.err(pline, f"sweep param {param!r} of {where} must be a string", "quote the param name")
        if not isinstance(values, list) or not values:
            raise ctx.err(
                pline,
                f"sweep param {param!r} of {where} must be a non-empty list, not {_type_name(values)}",
                fix,
            )
        for index, value in enumerate(values):
            if not isinstance(value, _SCALARS):
                raise ctx.err(
                    ctx.doc.item_line(values, index, pline),
                    f"sweep value of {param!r} in {where} must be a scalar, not {_type_name(value)}",
                    "sweep over plain values; put structured settings in params",
                )
        out[param] = tuple(values)
    return out


def _parse_select(ctx: _Ctx, raw: Any, line: int, where: str) -> Select | None:
    fix = "write select: {metric: accuracy, mode: max}"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ctx.err(line, f"select of {where} must be a mapping, not {_type_name(raw)}", fix)
    known, extra = ctx.split(raw, "select", f"select of {where}")
    if extra:
        key = next(iter(extra))
        raise ctx.err(ctx.kline(raw, key), f"unknown key {key!r} in select of {where}", fix)
    metric = known.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ctx.err(line, f"select of {where} needs a metric name", fix)
    mode = known.get("mode", "max")
    if mode is None:
        mode = "max"
    if mode not in ("max", "min"):
        raise ctx.err(ctx.kline(raw, "mode"), f"select mode of {where} must be max or min, not {mode!r}", fix)
    return Select(metric=metric, mode=mode)


def _parse_seeds(ctx: _Ctx, raw: Any, line: int, where: str) -> tuple[int, ...] | None:
    fix = "write seeds: 3 (seeds 0, 1, 2) or seeds: [0, 1, 2]"
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise ctx.err(line, f"seeds of {where} must be at least 1, not {raw}", fix)
        return tuple(range(raw))
    if isinstance(raw, list) and raw:
        seen: set[int] = set()
        for index, seed in enumerate(raw):
            item_line = ctx.doc.item_line(raw, index, line)
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ctx.err(item_line, f"seed {seed!r} of {where} must be a non-negative integer", fix)
            if seed in seen:
                raise ctx.err(
                    item_line,
                    f"seed {seed} of {where} is listed twice",
                    "list each seed once, or write seeds: 3 for seeds 0, 1, 2",
                )
            seen.add(seed)
        return tuple(raw)
    raise ctx.err(
        line, f"seeds of {where} must be a positive integer or a list of integers, not {_type_name(raw)}", fix
    )


def _parse_resources(ctx: _Ctx, raw: Any, line: int, where: str) -> dict[Any, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"resources of {where} must be a mapping, not {_type_name(raw)}",
            'write resources: {gpu: "A100"}',
        )
    known, _ = ctx.split(raw, "resources", f"resources of {where}")
    for key, value in known.items():
        kline = ctx.kline(raw, key)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "gpu" and not isinstance(value, str):
            raise ctx.err(
                kline, f"resources.gpu of {where} must be a string like 'A100-80GB' or 'H100:2'", "quote it"
            )
        if key in ("timeout", "cpu") and not (number and value > 0):
            raise ctx.err(kline, f"resources.{key} of {where} must be a positive number", f"write {key}: 2")
        if key == "memory" and not (number and value > 0):
            raise ctx.err(
                kline, f"resources.memory of {where} must be a positive number of MiB", "write memory: 8192"
            )
        if key == "retries" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ctx.err(
                kline, f"resources.retries of {where} must be a whole number >= 0", "write retries: 1"
            )
    return raw


def _parse_marks(ctx: _Ctx, raw: Any, line: int, where: str) -> tuple[str, ...]:
    fix = "write marks: [slow, gpu]"
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ctx.err(line, f"marks of {where} must be a list of mark names, not {_type_name(raw)}", fix)
    out: list[str] = []
    for index, mark in enumerate(items):
        item_line = ctx.doc.item_line(items, index, line)
        if not isinstance(mark, str) or not MARK_RE.fullmatch(mark):
            raise ctx.err(item_line, f"mark {mark!r} of {where} must be a plain name like slow", fix)
        if mark not in out:
            out.append(mark)
    return tuple(out)


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class _SubRef:
    """Where a sub-experiment was declared, and its dependency lines for later checks."""

    experiment_id: str
    line: int
    deps: list[tuple[str, int]]
    compares: list[tuple[str, int]] = field(default_factory=list)  # criteria naming another sub


@dataclass
class _ExpRef:
    line: int
    deps: list[tuple[str, int]]
    from_lines: dict[str, int]


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and parse a plan file; every mistake in it is a ``PlanError`` naming file and line."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PlanError(
            Loc(file, 1), f"cannot read the plan: {exc.strerror or exc}", "check the path"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PlanError(Loc(file, line), "the plan is not UTF-8 text", "save the file as UTF-8") from None
    return parse_plan_text(text, file)


def parse_plan_text(text: str, path: str) -> Plan:
    """Parse plan text; ``path`` is used in messages and as ``Plan.path`` (made absolute)."""
    try:
        doc = load_yaml(text)
    except YamlError as exc:
        raise PlanError(Loc(path, exc.line), exc.message, exc.fix) from None
    ctx = _Ctx(path, doc)
    try:
        return _build(ctx)
    except RecursionError:
        raise ctx.err(
            1, "the plan nests too deeply (or refers to itself through an alias)", "simplify it"
        ) from None


def _build(ctx: _Ctx) -> Plan:
    top = ctx.doc.data
    if top is None:
        raise ctx.err(1, "the plan is empty", "add project:, experiments: and gates: sections")
    if not isinstance(top, dict):
        raise ctx.err(
            ctx.doc.line(top),
            f"a plan must be a mapping, not {_type_name(top)}",
            "start the file with experiments:",
        )
    known, meta = ctx.split(top, "plan", "the plan")
    project = _parse_project(ctx, top, known.get("project"))
    modal = _parse_modal(ctx, top, known.get("modal"))
    defaults = _parse_defaults(ctx, top, known.get("defaults"))

    raw_exps = known.get("experiments")
    if raw_exps is None:
        raw_exps = {}
    if not isinstance(raw_exps, dict):
        raise ctx.err(
            ctx.kline(top, "experiments"),
            f"experiments must be a mapping of id -> experiment, not {_type_name(raw_exps)}",
            "write experiments:\n    my-experiment:\n      sub_experiments: [...]",
        )

    subs: dict[str, _SubRef] = {}
    exp_refs: dict[str, _ExpRef] = {}
    experiments: list[Experiment] = []
    for exp_id, spec in raw_exps.items():
        line = ctx.kline(raw_exps, exp_id)
        _check_id(ctx, exp_id, line, "experiment")
        exp, ref = _parse_experiment(ctx, exp_id, spec, line, defaults, subs)
        experiments.append(exp)
        exp_refs[exp_id] = ref

    gates = _parse_gates(ctx, top, known.get("gates"), experiments)
    _check_references(ctx, experiments, exp_refs, subs)
    experiments = _criterion_references(ctx, experiments, subs)
    _check_cycles(ctx, experiments, exp_refs, subs, gates)

    return Plan(
        path=Path(os.path.abspath(ctx.file)),
        project=project,
        experiments=tuple(experiments),
        gates=tuple(gates),
        modal=modal,
        meta=meta,
    )


def _parse_project(ctx: _Ctx, top: dict[Any, Any], raw: Any) -> Project:
    if raw is None:
        return Project(name="", hypothesis="", wandb_project=None, meta={})
    line = ctx.kline(top, "project")
    if isinstance(raw, str):
        return Project(name=raw, hypothesis="", wandb_project=None, meta={})
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"project must be a mapping, not {_type_name(raw)}",
            "write project: {name: ..., hypothesis: ...}",
        )
    known, meta = ctx.split(raw, "project", "project")
    wandb = known.get("wandb_project")
    if wandb is not None and not isinstance(wandb, str):
        raise ctx.err(ctx.kline(raw, "wandb_project"), "project.wandb_project must be a string", "quote it")
    return Project(
        name=_text(ctx, known.get("name"), ctx.kline(raw, "name"), "project.name"),
        hypothesis=_text(ctx, known.get("hypothesis"), ctx.kline(raw, "hypothesis"), "project.hypothesis"),
        wandb_project=wandb,
        meta=meta,
    )


def _parse_modal(ctx: _Ctx, top: dict[Any, Any], raw: Any) -> dict[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "modal"),
            f"modal must be a mapping, not {_type_name(raw)}",
            'write modal: {python: "3.11"}',
        )
    known, _ = ctx.split(raw, "modal", "modal")
    for key, value in known.items():
        kline = ctx.kline(raw, key)
        if value is None:
            continue
        if key == "python" and not isinstance(value, str):
            raise ctx.err(
                kline,
                f"modal.python must be a quoted version string, not {_type_name(value)} "
                "(unquoted, 3.10 reads as 3.1)",
                f'write python: "{value}"',
            )
        if key in ("pip", "apt", "secrets"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ctx.err(kline, f"modal.{key} must be a list of strings", f"write {key}: [name, ...]")
        if key in ("env", "volumes") and not isinstance(value, dict):
            raise ctx.err(
                kline,
                f"modal.{key} must be a mapping, not {_type_name(value)}",
                f"write {key}: {{name: value}}",
            )
    return dict(raw)


def _parse_defaults(ctx: _Ctx, top: dict[Any, Any], raw: Any) -> _Layer:
    if raw is None:
        return _Layer()
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "defaults"),
            f"defaults must be a mapping, not {_type_name(raw)}",
            "write defaults: {params: {...}}",
        )
    known, _ = ctx.split(raw, "defaults", "defaults")
    for key in NOT_INHERITED_KEYS:
        if key in known:
            raise ctx.err(
                ctx.kline(raw, key),
                f"{key} cannot go under defaults: it is not inherited",
                f"move {key} to each experiment or sub-experiment it applies to",
            )
    return _parse_layer(ctx, raw, known, "defaults")


def _parse_experiment(
    ctx: _Ctx, exp_id: str, spec: Any, line: int, defaults: _Layer, subs: dict[str, _SubRef]
) -> tuple[Experiment, _ExpRef]:
    where = f"experiment {exp_id!r}"
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ctx.err(
            line, f"{where} must be a mapping, not {_type_name(spec)}", "write its keys indented below the id"
        )
    known, meta = ctx.split(spec, "experiment", where, also_meta=("accepted",))
    if "accepted" in known and known["accepted"] is not None:
        _parse_accepted(ctx, known["accepted"], ctx.kline(spec, "accepted"))
    base = _merge(defaults, _parse_layer(ctx, spec, known, where))

    raw_name = known.get("name")
    name = exp_id if raw_name is None else _text(ctx, raw_name, ctx.kline(spec, "name"), "name")
    phase = _parse_phase(ctx, known.get("phase"), ctx.kline(spec, "phase"))
    retired = known.get("retired", False)
    if retired is None:
        retired = False
    if not isinstance(retired, bool):
        raise ctx.err(
            ctx.kline(spec, "retired"), f"retired of {where} must be true or false", "write retired: true"
        )
    replaces = tuple(i for i, _ in _id_list(ctx, spec, "replaces", "experiment"))
    deps = _id_list(ctx, spec, "dependencies", "experiment")

    raw_subs = known.get("sub_experiments")
    sub_line = ctx.kline(spec, "sub_experiments")
    entries: list[tuple[Any, Any, int]] = []  # (id, spec, line)
    if isinstance(raw_subs, list):
        for index, item in enumerate(raw_subs):
            item_line = ctx.doc.item_line(raw_subs, index, sub_line)
            if isinstance(item, dict):
                raise ctx.err(
                    item_line,
                    f"sub_experiments of {where} is a list, so its items must be ids",
                    "write sub_experiments as a mapping of id -> spec (no '-' before each id)",
                )
            entries.append((item, None, item_line))
    elif isinstance(raw_subs, dict):
        entries = [(sid, sspec, ctx.kline(raw_subs, sid)) for sid, sspec in raw_subs.items()]
    elif raw_subs is not None:
        raise ctx.err(
            sub_line,
            f"sub_experiments of {where} must be a list of ids or a mapping of id -> spec, "
            f"not {_type_name(raw_subs)}",
            "write sub_experiments: [e_1, e_2]",
        )

    sub_objs: list[SubExperiment] = []
    for sid, sspec, sline in entries:
        _check_id(ctx, sid, sline, "sub-experiment")
        first = subs.get(sid)
        if first is not None:
            raise ctx.err(
                sline,
                f"duplicate sub-experiment id {sid!r} "
                f"(first at line {first.line}, in experiment {first.experiment_id!r})",
                "sub-experiment ids are unique across the plan: rename one",
            )
        sub, sub_deps = _parse_sub(ctx, exp_id, sid, sspec, sline, base)
        subs[sid] = _SubRef(exp_id, sline, sub_deps)
        sub_objs.append(sub)

    criteria, from_lines = _parse_criteria(ctx, spec, where, experiment_level=True)
    exp = Experiment(
        id=exp_id,
        name=name,
        phase=phase,
        sub_experiments=tuple(sub_objs),
        success_criteria=criteria,
        dependencies=tuple(i for i, _ in deps),
        replaces=replaces,
        retired=retired,
        meta=meta,
        loc=ctx.loc(line),
    )
    return exp, _ExpRef(line, deps, from_lines)


def _parse_sub(
    ctx: _Ctx, exp_id: str, sid: str, spec: Any, line: int, base: _Layer
) -> tuple[SubExperiment, list[tuple[str, int]]]:
    where = f"sub-experiment {sid!r}"
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ctx.err(
            line, f"{where} must be a mapping, not {_type_name(spec)}", "write its keys indented below the id"
        )
    if spec:
        known, meta = ctx.split(spec, "sub_experiment", where, also_meta=("name", "accepted"))
        if "accepted" in known and known["accepted"] is not None:
            _parse_accepted(ctx, known["accepted"], ctx.kline(spec, "accepted"))
        layer = _merge(base, _parse_layer(ctx, spec, known, where))
        deps = _id_list(ctx, spec, "dependencies", "sub-experiment")
        criteria, _ = _parse_criteria(ctx, spec, where, experiment_level=False)
    else:
        meta, layer, deps, criteria = {}, base, [], ()

    sweep = None if layer.sweep is _UNSET else layer.sweep
    seeds = None if layer.seeds is _UNSET else layer.seeds
    sub = SubExperiment(
        id=sid,
        experiment_id=exp_id,
        handler=None if layer.handler is _UNSET else layer.handler,
        params=dict(layer.params or {}),
        stub_params=dict(layer.stub_params or {}),
        sweep=sweep,
        select=None if layer.select is _UNSET else layer.select,
        seeds=seeds if seeds is not None else (0,),
        seeds_given=seeds is not None,
        executor=layer.executor if isinstance(layer.executor, str) else "local",
        resources=dict(layer.resources or {}),
        marks=layer.marks,
        success_criteria=criteria,
        dependencies=tuple(i for i, _ in deps),
        meta=meta,
        loc=ctx.loc(line),
    )
    if sweep:
        _check_points(ctx, sub, layer.sweep_line or line)
    return sub, deps


def _check_points(ctx: _Ctx, sub: SubExperiment, line: int) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for point in sub.points():
        if point.key in seen:
            raise ctx.err(
                line,
                f"sweep of sub-experiment {sub.id!r} gives two points the same id [{point.key}] "
                f"({seen[point.key]} and {dict(point.values)})",
                "make the swept values distinct once characters other than letters, digits, '_' and '.' "
                "become '_'",
            )
        seen[point.key] = dict(point.values)


def _parse_gates(ctx: _Ctx, top: dict[Any, Any], raw: Any, experiments: list[Experiment]) -> list[Gate]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ctx.err(
            ctx.kline(top, "gates"),
            f"gates must be a mapping of id -> gate, not {_type_name(raw)}",
            "write gates: {g1: {...}}",
        )
    exp_ids = [e.id for e in experiments]
    known_ids = set(exp_ids)
    out: list[Gate] = []
    for gate_id, spec in raw.items():
        line = ctx.kline(raw, gate_id)
        _check_id(ctx, gate_id, line, "gate")
        where = f"gate {gate_id!r}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ctx.err(
                line,
                f"{where} must be a mapping, not {_type_name(spec)}",
                "write experiments: and unlocks: below it",
            )
        known, meta = ctx.split(spec, "gate", where)
        members = _id_list(ctx, spec, "experiments", "experiment")
        for member, mline in members:
            if member not in known_ids:
                raise _unknown(ctx, mline, member, f"experiment {member!r} in {where}", exp_ids)
        accepted = known.get("accepted")
        name = known.get("name")
        out.append(
            Gate(
                id=gate_id,
                name=gate_id if name is None else _text(ctx, name, ctx.kline(spec, "name"), "name"),
                experiments=tuple(m for m, _ in members),
                unlocks=_parse_unlocks(ctx, spec, where, exp_ids),
                accepted=None
                if accepted is None
                else _parse_accepted(ctx, accepted, ctx.kline(spec, "accepted")),
                meta=meta,
                loc=ctx.loc(line),
            )
        )
    return out


def _parse_unlocks(ctx: _Ctx, spec: dict[Any, Any], where: str, exp_ids: list[str]) -> Unlocks:
    raw = spec.get("unlocks")
    line = ctx.kline(spec, "unlocks")
    fix = 'write unlocks: [experiment-id, ...], unlocks: 2 (a phase), or unlocks: "Phase 2 (...)"'
    if raw is None:
        return Unlocks(kind="text")
    if isinstance(raw, bool):
        raise ctx.err(line, f"unlocks of {where} cannot be a boolean", fix)
    if isinstance(raw, int):
        return Unlocks(kind="phase", phase=raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text in exp_ids:
            return Unlocks(kind="ids", ids=(text,))
        if text.isdigit():
            return Unlocks(kind="phase", phase=int(text), text=raw)
        m = _PHASE_IN_TEXT.search(text)
        if m:
            return Unlocks(kind="phase", phase=int(m.group(1)), text=raw)
        guess = _closest_id(text, exp_ids) if ID_RE.fullmatch(text) else None
        if guess is not None:
            # one id-like word close to an experiment id is a typo, not free text: as text it
            # would silently unlock nothing
            raise ctx.err(
                line, f"unlocks of {where} names an unknown experiment {text!r}", f"did you mean {guess}?"
            )
        return Unlocks(kind="text", text=raw)
    if isinstance(raw, list):
        ids = _id_list(ctx, spec, "unlocks", "experiment")
        for ident, iline in ids:
            if ident not in exp_ids:
                raise _unknown(ctx, iline, ident, f"experiment {ident!r} in unlocks of {where}", exp_ids)
        return Unlocks(kind="ids", ids=tuple(i for i, _ in ids))
    if isinstance(raw, dict):
        known, _ = ctx.split(raw, "unlocks", f"unlocks of {where}")
        if "phase" not in known:
            raise ctx.err(line, f"unlocks of {where} is a mapping without phase", "write unlocks: {phase: 2}")
        phase = _parse_phase(ctx, known["phase"], ctx.kline(raw, "phase"))
        if phase is None:
            raise ctx.err(line, f"unlocks of {where} has an empty phase", "write unlocks: {phase: 2}")
        return Unlocks(kind="phase", phase=phase)
    raise ctx.err(line, f"unlocks of {where} cannot be {_type_name(raw)}", fix)


# --- cross references and cycles --------------------------------------------------------------


def _unknown(ctx: _Ctx, line: int, name: str, what: str, candidates: Iterable[str]) -> PlanError:
    guess = _closest_id(name, candidates)
    fix = f"did you mean {guess}?" if guess else "check the spelling, or add it to the plan"
    return ctx.err(line, f"unknown {what}", fix)


def _check_references(
    ctx: _Ctx, experiments: list[Experiment], exp_refs: dict[str, _ExpRef], subs: dict[str, _SubRef]
) -> None:
    exp_ids = [e.id for e in experiments]
    exp_set = set(exp_ids)
    for exp in experiments:
        ref = exp_refs[exp.id]
        for dep, line in ref.deps:
            if dep not in exp_set:
                if dep in subs:
                    raise ctx.err(
                        line,
                        f"dependency {dep!r} of experiment {exp.id!r} is a sub-experiment, not an experiment",
                        f"depend on its experiment {subs[dep].experiment_id!r}, "
                        "or list it under the dependencies of a sub-experiment",
                    )
                raise _unknown(ctx, line, dep, f"dependency {dep!r} of experiment {exp.id!r}", exp_ids)
        for sub in exp.sub_experiments:
            for dep, line in subs[sub.id].deps:
                if dep not in subs:
                    if dep in exp_set:
                        raise ctx.err(
                            line,
                            f"dependency {dep!r} of sub-experiment {sub.id!r} is an experiment",
                            "sub-experiments depend on sub-experiments; "
                            "put experiment dependencies on the experiment",
                        )
                    raise _unknown(ctx, line, dep, f"dependency {dep!r} of sub-experiment {sub.id!r}", subs)
        for crit in exp.success_criteria:
            if crit.from_ is not None and crit.from_ not in subs:
                line = ref.from_lines.get(crit.metric, ref.line)
                raise _unknown(
                    ctx, line, crit.from_, f"sub-experiment {crit.from_!r} in from of {crit.metric!r}", subs
                )


def _criterion_references(
    ctx: _Ctx, experiments: list[Experiment], subs: dict[str, _SubRef]
) -> list[Experiment]:
    """Criteria that compare with another sub-experiment (SPEC section 3a): checked against the
    plan's ids, and made implicit dependencies (``SubExperiment.implicit_dependencies``)."""
    from .criteria import CriterionError, resolve_references

    try:
        resolved, gained = resolve_references(experiments, subs)
    except CriterionError as exc:
        raise ctx.err(exc.loc.line if exc.loc is not None else 1, exc.message, exc.fix) from None
    for sub_id, refs in gained.items():
        subs[sub_id].compares = refs
    return resolved


def _check_cycles(
    ctx: _Ctx,
    experiments: list[Experiment],
    exp_refs: dict[str, _ExpRef],
    subs: dict[str, _SubRef],
    gates: list[Gate],
) -> None:
    """No cycle in the prerequisite graph that also orders and dispatches the run (graph.py)."""
    lines = {("experiment", e.id, dep): line for e in experiments for dep, line in exp_refs[e.id].deps}
    lines.update(
        {("sub", sid, dep): line for sid, ref in subs.items() for dep, line in (*ref.compares, *ref.deps)}
    )
    cycle = PrerequisiteGraph(experiments, gates, lines).cycle()
    if cycle is not None:
        raise ctx.err(cycle.line, cycle.message, cycle.fix)
