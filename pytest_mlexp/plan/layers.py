"""The inheritable settings (SPEC section 2): each level's layer, merging layers (innermost
wins; ``params``, ``stub_params`` and ``resources`` merge key by key; marks accumulate), and the
parsers of ``sweep``, ``select``, ``seeds``, ``resources`` and ``marks``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..model import Select, parse_mark
from ..structs import struct
from .context import UNSET, Ctx, type_name
from .keys import GPU_TYPE_AS, HANDLER_RE, INHERITABLE_KEYS, KNOWN_SETS, MARK_RE, SLURM_KEYS, closest_key
from .limits import COUNTED, MAX_SEED_VALUE, MAX_SEEDS, MAX_SWEEP_POINTS, MAX_TIMEOUT, count, shown

INHERITABLE_SET = frozenset(INHERITABLE_KEYS)
_SCALARS = (str, int, float, bool, type(None))


@struct
class Layer:
    """The inheritable settings one level wrote; ``UNSET`` where it wrote nothing."""

    handler: Any = UNSET
    registry: Any = UNSET  # ``handlers:``: str | None
    params: dict[Any, Any] | None = None
    stub_params: dict[Any, Any] | None = None
    sweep: Any = UNSET  # dict[str, tuple[Any, ...]] | None
    sweep_line: int = 0
    select: Any = UNSET  # Select | None
    seeds: Any = UNSET  # tuple[int, ...] | None
    executor: Any = UNSET  # str | None
    resources: dict[Any, Any] | None = None
    marks: tuple[str, ...] = ()
    # deps: a mapping (name -> path or glob) merges key by key like params; a list replaces
    deps: Any = UNSET  # dict[str, str | None] | tuple[str, ...]


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


def merge_layers(outer: Layer, inner: Layer) -> Layer:
    def pick(a: Any, b: Any) -> Any:
        return a if b is UNSET else b

    def merged(a: dict[Any, Any] | None, b: dict[Any, Any] | None) -> dict[Any, Any] | None:
        if a is None or b is None:
            return b if a is None else a
        return _deep_merge(a, b)

    marks = outer.marks + tuple(m for m in inner.marks if m not in outer.marks)
    handler = pick(outer.handler, inner.handler)
    if inner.registry is not UNSET and inner.handler is UNSET:
        handler = UNSET  # a registry replaces a handler inherited from further out
    return Layer(
        handler=handler,
        registry=pick(outer.registry, inner.registry),
        params=merged(outer.params, inner.params),
        stub_params=merged(outer.stub_params, inner.stub_params),
        sweep=pick(outer.sweep, inner.sweep),
        sweep_line=outer.sweep_line if inner.sweep is UNSET else inner.sweep_line,
        select=pick(outer.select, inner.select),
        seeds=pick(outer.seeds, inner.seeds),
        executor=pick(outer.executor, inner.executor),
        resources=merged(outer.resources, inner.resources),
        marks=marks,
        deps=_merge_deps(outer.deps, inner.deps),
    )


def _merge_deps(outer: Any, inner: Any) -> Any:
    """``deps`` is inherited like ``params``: mappings merge key by key, anything else replaces."""
    if inner is UNSET:
        return outer
    if isinstance(outer, dict) and isinstance(inner, dict):
        return {**outer, **inner}
    return inner


def deps_patterns(deps: Any) -> tuple[str, ...]:
    """The paths and globs a merged ``deps`` names (a named entry set to null drops it)."""
    if deps is UNSET or deps is None:
        return ()
    if isinstance(deps, dict):
        return tuple(dict.fromkeys(v for v in deps.values() if v is not None))
    return tuple(deps)


def parse_layer(ctx: Ctx, owner: dict[Any, Any], known: dict[str, Any], where: str) -> Layer:
    layer = Layer()
    for key, raw in known.items():
        if key not in INHERITABLE_SET:
            continue
        line = ctx.kline(owner, key)
        if key == "handler":
            if raw is not None and not (isinstance(raw, str) and HANDLER_RE.fullmatch(raw)):
                raise ctx.err(
                    line,
                    f"handler of {where} must look like 'package.module:function', not {type_name(raw)}",
                    "write handler: experiments.my_module:my_function (or leave it out to find it by name)",
                )
            layer.handler = raw
        elif key == "handlers":
            if raw is not None and not (isinstance(raw, str) and HANDLER_RE.fullmatch(raw)):
                raise ctx.err(
                    line,
                    f"handlers of {where} must name a handler registry as 'package.module:attribute', "
                    f"not {type_name(raw)}",
                    'write handlers: "experiments.my_package:get_handlers" (a function returning '
                    "{sub_id: function}, or a module attribute holding that mapping)",
                )
            layer.registry = raw
        elif key in ("params", "stub_params"):
            if raw is not None and not isinstance(raw, dict):
                raise ctx.err(
                    line,
                    f"{key} of {where} must be a mapping, not {type_name(raw)}",
                    f"write {key}: {{name: value}}",
                )
            if raw:
                _check_param_names(ctx, raw, f"{key} of {where}")
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
                    f"executor of {where} must be a name, not {type_name(raw)}",
                    "write executor: local",
                )
            layer.executor = raw
        elif key == "resources":
            layer.resources = _parse_resources(ctx, raw, line, where)
        elif key == "marks":
            layer.marks = _parse_marks(ctx, raw, line, where)
        elif key == "deps":
            layer.deps = _parse_deps(ctx, raw, line, where)
    return layer


def _parse_deps(ctx: Ctx, raw: Any, line: int, where: str) -> Any:
    """``deps``: a path or glob, a list of them, or a mapping name -> path/glob (relative to the
    rootdir; SPEC section 11).  Absolute paths and ``..`` are refused: a fingerprint must mean
    the same on every machine that has the project."""
    fix = 'write deps: [data/train.csv, "data/shards/*.parquet"] (paths relative to the rootdir)'
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(None, v) for v in raw]
    else:
        raise ctx.err(line, f"deps of {where} must be a path, a list or a mapping, not {type_name(raw)}", fix)
    for name, value in items:
        if name is not None and not isinstance(name, str):
            raise ctx.err(line, f"deps of {where}: names must be strings, not {type_name(name)}", fix)
        if value is None and name is not None:
            continue  # a named entry set to null drops an inherited one
        if not isinstance(value, str) or not value.strip():
            raise ctx.err(
                line, f"deps of {where}: each entry must be a path or glob, not {type_name(value)}", fix
            )
        text = value.strip().replace("\\", "/")
        if text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in text.split("/"):
            raise ctx.err(
                line, f"deps of {where}: {shown(value)} must be relative to the rootdir, inside it", fix
            )
    if isinstance(raw, dict):
        return {k: (v.strip().replace("\\", "/") if isinstance(v, str) else None) for k, v in raw.items()}
    return tuple(v.strip().replace("\\", "/") for v in raw)


def _check_param_names(ctx: Ctx, params: dict[Any, Any], where: str) -> None:
    """Every mapping key inside params is a string.  Params are digested as JSON with sorted keys
    and written to results.yaml: ``{1: a, b: c}`` cannot be sorted, and ``1`` would come back as
    ``"1"``.  Shared (aliased) mappings are walked once."""
    stack: list[Any] = [params]
    while stack:
        node = stack.pop()
        if id(node) in ctx.walked:
            continue
        ctx.walked.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ctx.err(
                        ctx.kline(node, key),
                        f"{where}: the name {shown(key)} must be a string, not {type_name(key)}",
                        f"quote it: '{shown(key)}': ...",
                    )
                if isinstance(value, dict | list):
                    stack.append(value)
        else:
            stack.extend(item for item in node if isinstance(item, dict | list))


def _parse_sweep(ctx: Ctx, raw: Any, line: int, where: str) -> dict[str, tuple[Any, ...]] | None:
    fix = "write sweep: {param: [value, value, ...]}"
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise ctx.err(line, f"sweep of {where} must be a mapping of param -> list of values", fix)
    out: dict[str, tuple[Any, ...]] = {}
    for param, values in raw.items():
        pline = ctx.kline(raw, param)
        if not isinstance(param, str):
            raise ctx.err(
                pline, f"sweep param {shown(param)} of {where} must be a string", "quote the param name"
            )
        if not isinstance(values, list) or not values:
            raise ctx.err(
                pline,
                f"sweep param {shown(param)} of {where} must be a non-empty list, not {type_name(values)}",
                fix,
            )
        for index, value in enumerate(values):
            if not isinstance(value, _SCALARS):
                raise ctx.err(
                    ctx.doc.item_line(values, index, pline),
                    f"sweep value of {shown(param)} in {where} must be a scalar, not {type_name(value)}",
                    "sweep over plain values; put structured settings in params",
                )
        out[param] = tuple(values)
    points = 1
    for values in out.values():
        points *= len(values)
        if points > COUNTED:  # a thousand params of a thousand values: stop multiplying
            break
    if points > MAX_SWEEP_POINTS:
        raise ctx.err(
            line,
            f"sweep of {where} has {count(points)} points: at most {MAX_SWEEP_POINTS:,} "
            "(each point is a test item)",
            "sweep fewer values, or split the sweep over several sub-experiments",
        )
    return out


def _parse_select(ctx: Ctx, raw: Any, line: int, where: str) -> Select | None:
    fix = "write select: {metric: accuracy, mode: max}"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ctx.err(line, f"select of {where} must be a mapping, not {type_name(raw)}", fix)
    known, extra = ctx.split(raw, "select", f"select of {where}")
    if extra:
        key = next(iter(extra))
        raise ctx.err(ctx.kline(raw, key), f"unknown key {shown(key)} in select of {where}", fix)
    metric = known.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ctx.err(line, f"select of {where} needs a metric name", fix)
    mode = known.get("mode", "max")
    if mode is None:
        mode = "max"
    if mode not in ("max", "min"):
        raise ctx.err(
            ctx.kline(raw, "mode"), f"select mode of {where} must be max or min, not {shown(mode)}", fix
        )
    return Select(metric=metric, mode=mode, loc=ctx.loc(line))


def _parse_seeds(ctx: Ctx, raw: Any, line: int, where: str) -> tuple[int, ...] | None:
    fix = "write seeds: 3 (seeds 0, 1, 2) or seeds: [0, 1, 2]"
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise ctx.err(line, f"seeds of {where} must be at least 1, not {shown(raw)}", fix)
        if raw > MAX_SEEDS:
            raise ctx.err(
                line,
                f"seeds of {where} asks for {count(raw)} seeds: at most {MAX_SEEDS:,} "
                "(they all run inside one item)",
                "ask for fewer seeds",
            )
        return tuple(range(raw))
    if isinstance(raw, list) and raw:
        if len(raw) > MAX_SEEDS:
            raise ctx.err(
                line,
                f"seeds of {where} lists {len(raw):,} seeds: at most {MAX_SEEDS:,} "
                "(they all run inside one item)",
                "list fewer seeds",
            )
        seen: set[int] = set()
        for index, seed in enumerate(raw):
            item_line = ctx.doc.item_line(raw, index, line)
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ctx.err(item_line, f"seed {shown(seed)} of {where} must be a non-negative integer", fix)
            if seed > MAX_SEED_VALUE:
                raise ctx.err(
                    item_line,
                    f"seed {shown(seed)} of {where} is too large: a seed names a folder and is "
                    "handed to torch.manual_seed",
                    f"use seeds from 0 to at most {MAX_SEED_VALUE}",
                )
            if seed in seen:
                raise ctx.err(
                    item_line,
                    f"seed {seed} of {where} is listed twice",
                    "list each seed once, or write seeds: 3 for seeds 0, 1, 2",
                )
            seen.add(seed)
        return tuple(raw)
    raise ctx.err(
        line, f"seeds of {where} must be a positive integer or a list of integers, not {type_name(raw)}", fix
    )


def _parse_resources(ctx: Ctx, raw: Any, line: int, where: str) -> dict[Any, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"resources of {where} must be a mapping, not {type_name(raw)}",
            'write resources: {gpu: "A100"}',
        )
    known, _ = ctx.split(raw, "resources", f"resources of {where}")
    for key, value in known.items():
        kline = ctx.kline(raw, key)
        if value is None:
            continue
        # .inf is no limit at all (leave the key out); .nan compares false with everything
        number = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) != math.inf
        if key == "gpu" and not isinstance(value, str):
            raise ctx.err(
                kline, f"resources.gpu of {where} must be a string like 'A100-80GB' or 'H100:2'", "quote it"
            )
        if key in ("timeout", "cpu") and not (number and value > 0):
            raise ctx.err(kline, f"resources.{key} of {where} must be a positive number", f"write {key}: 2")
        if key == "timeout" and value > MAX_TIMEOUT:
            raise ctx.err(
                kline,
                f"resources.timeout of {where} is {shown(value)} s: at most {MAX_TIMEOUT:,} s "
                "(about three years)",
                "leave timeout out for no limit",
            )
        if key == "memory" and not (number and value > 0):
            raise ctx.err(
                kline, f"resources.memory of {where} must be a positive number of MiB", "write memory: 8192"
            )
        if key == "retries" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ctx.err(
                kline, f"resources.retries of {where} must be a whole number >= 0", "write retries: 1"
            )
        if key == "slurm":
            _check_slurm(ctx, value, kline, where)
        if key == "isolate" and not isinstance(value, bool):
            raise ctx.err(kline, f"resources.isolate of {where} must be true or false", "write isolate: true")
        if key == "max_seeds_per_worker" and not (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        ):
            raise ctx.err(
                kline,
                f"resources.max_seeds_per_worker of {where} must be a whole number >= 1",
                "write max_seeds_per_worker: 20",
            )
    return raw


def _mark_parses(mark: str) -> bool:
    try:
        parse_mark(mark)
    except ValueError:
        return False
    return True


def _check_slurm(ctx: Ctx, raw: Any, line: int, where: str) -> None:
    """``resources.slurm``: every key reaches sbatch, so an unknown one is an error, never an
    annotation."""
    if not isinstance(raw, dict):
        raise ctx.err(
            line,
            f"resources.slurm of {where} must be a mapping, not {type_name(raw)}",
            "write slurm: {partition: gpu, account: my-lab}",
        )
    for key, value in raw.items():
        kline = ctx.kline(raw, key)
        if key not in KNOWN_SETS["slurm"]:
            guess = closest_key(str(key), SLURM_KEYS)
            raise ctx.err(
                kline,
                f"unknown key {key!r} in resources.slurm of {where}",
                f"did you mean {guess}?" if guess else f"use one of: {', '.join(SLURM_KEYS)}",
            )
        if value is None:
            continue
        if key == "gpu_type_as" and value not in GPU_TYPE_AS:
            raise ctx.err(
                kline,
                f"resources.slurm.gpu_type_as of {where} must be one of {', '.join(GPU_TYPE_AS)}, "
                f"not {type_name(value)}",
                "write gpu_type_as: constraint",
            )
        if key in ("partition", "account", "qos", "constraint") and not isinstance(value, str):
            message = f"resources.slurm.{key} of {where} must be a string, not {type_name(value)}"
            raise ctx.err(kline, message, "quote it")
        if key == "additional_parameters" and not isinstance(value, dict):
            raise ctx.err(
                kline,
                f"resources.slurm.additional_parameters of {where} must be a mapping of sbatch options",
                "write additional_parameters: {mail-type: END}",
            )


def _parse_marks(ctx: Ctx, raw: Any, line: int, where: str) -> tuple[str, ...]:
    fix = 'write marks: [slow, gpu] (a mark with arguments is a call: "timeout(3600)")'
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ctx.err(line, f"marks of {where} must be a list of mark names, not {type_name(raw)}", fix)
    out: list[str] = []
    for index, mark in enumerate(items):
        item_line = ctx.doc.item_line(items, index, line)
        if not isinstance(mark, str) or not MARK_RE.fullmatch(mark) or not _mark_parses(mark):
            raise ctx.err(item_line, f"mark {shown(mark)} of {where} must be a plain name like slow", fix)
        if mark not in out:
            out.append(mark)
    return tuple(out)
