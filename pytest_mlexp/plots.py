"""Charts made for you (SPEC section 13): criteria, sweeps and learning curves.

Drawn at session end, by the process that owns the results files, for the experiments the
session touched, when matplotlib can be imported.  matplotlib is imported here only, only then,
and drawn with its Agg canvas (``Figure`` + ``FigureCanvasAgg``: no display, no pyplot state,
no change to a backend the handlers chose).  The charts are PNGs under
``research/experiments/<id>/plots/``, shown in that experiment's FINDINGS.md:

* ``criteria.png``: each criterion's value (with its 95% interval over seeds, and the seeds
  themselves) against its bands: target / acceptable / miss / failure for tiered criteria,
  pass / fail for comparisons and ranges;
* ``<sub_id>-sweep.png``: a sweep's selection metric against each swept param, the selected
  point marked;
* ``<sub_id>-curves.png``: what ``runner.log_metrics`` logged, per key: one line per seed (and
  their mean), or for a sweep the mean of each point (the selected one first).

Building what a chart shows (a "spec": plain data) is separate from drawing it.  The PNG carries
a digest of its spec (a ``tEXt`` chunk): a chart whose data did not change is not drawn again,
so an unchanged result leaves the file, and the repository, untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import curves as curve_files
from .model import Criterion, Experiment, Plan, SubExperiment, Verdict
from .records import as_mapping
from .textutil import lazy_re

__all__ = ["FOLDER", "available", "experiment_plots", "png_digest", "specs_for"]

FOLDER = "plots"
VERSION = "1"  # part of every digest: a change to the drawing code redraws every chart
MAX_CRITERIA = 24
MAX_KEYS = 6
MAX_SWEEP_LINES = 12
MAX_SWEEP_PARAMS = 4
# Lazy: matched only against the files of an experiment's existing plots folder.
_OURS = lazy_re(r"^(criteria|.+-sweep|.+-curves)\.png$")

# Colours: green for what passes, amber for a miss, red for failure (colour-blind safe enough
# with the labels on each band).
BAND_COLOURS = {
    "target": "#4caf50",
    "acceptable": "#a5d6a7",
    "pass": "#a5d6a7",
    "miss": "#ffd180",
    "failure": "#ef9a9a",
    "fail": "#ef9a9a",
}
PASSED = "#1b5e20"
FAILED = "#b71c1c"


def available() -> bool:
    """Whether matplotlib can be imported here (found without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


# --- what each chart shows (plain data) ------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def bands(c: Criterion | None) -> list[list[Any]]:
    """``[low, high, level]`` spans of the value axis (None: unbounded) for a criterion."""
    if c is None:
        return []
    if c.kind == "tiered":
        t, a, f = _num(c.target), _num(c.acceptable), _num(c.failure)
        if t is None or a is None:
            return []
        direction = c.direction or ("higher" if f is None or t >= f else "lower")
        if direction == "higher":
            out = [[None, f if f is not None else a, "failure" if f is not None else "miss"]]
            if f is not None:
                out.append([f, a, "miss"])
            return [*out, [a, t, "acceptable"], [t, None, "target"]]
        out = [[None, t, "target"], [t, a, "acceptable"]]
        if f is not None:
            return [*out, [a, f, "miss"], [f, None, "failure"]]
        return [*out, [a, None, "miss"]]
    op = c.op
    if op == "in":
        low, high = _num(c.low), _num(c.high)
        if low is None or high is None:
            return []
        return [[None, low, "fail"], [low, high, "pass"], [high, None, "fail"]]
    threshold = _num(c.threshold)
    if threshold is None:
        return []
    if op in (">", ">="):
        return [[None, threshold, "fail"], [threshold, None, "pass"]]
    if op in ("<", "<="):
        return [[None, threshold, "pass"], [threshold, None, "fail"]]
    return []


def _compared_bands(c: Criterion | None) -> list[list[Any]]:
    """A comparison with another measurement is drawn as the difference against 0."""
    op = getattr(c, "op", None)
    if op in (">", ">="):
        return [[None, 0.0, "fail"], [0.0, None, "pass"]]
    if op in ("<", "<="):
        return [[None, 0.0, "pass"], [0.0, None, "fail"]]
    return []


def borderline_span(c: Criterion | None, compared: bool = False) -> list[float] | None:
    """The pass side's first stretch, as wide as the criterion's explicit ``borderline``: a pass
    in it is listed for review (``[low, high]``), or None."""
    margin = _num(getattr(c, "borderline", None)) if c is not None else None
    if c is None or margin is None or margin <= 0:
        return None
    if c.kind == "tiered" and not compared:
        a, t, f = _num(c.acceptable), _num(c.target), _num(c.failure)
        if a is None or t is None:
            return None
        higher = (c.direction or ("higher" if f is None or t >= f else "lower")) == "higher"
        return [a, a + margin] if higher else [a - margin, a]
    edge = 0.0 if compared else _num(c.threshold)
    if edge is None:
        return None
    if c.op in (">", ">="):
        return [edge, edge + margin]
    if c.op in ("<", "<="):
        return [edge - margin, edge]
    return None


def _seed_values(entry: Any, metric: str) -> list[float]:
    per_seed = entry.get("per_seed") if isinstance(entry, Mapping) else None
    if not isinstance(per_seed, Mapping):
        return []
    values = [_num(v.get(metric)) for v in per_seed.values() if isinstance(v, Mapping)]
    return [v for v in values if v is not None]


def _criterion_row(
    label: str, data: Mapping[str, Any], c: Criterion | None, seeds: list[float]
) -> dict[str, Any]:
    value = _num(data.get("value"))
    stats = data.get("stats")
    ci = stats.get("ci95") if isinstance(stats, Mapping) else None
    shown_bands = bands(c)
    margin = borderline_span(c)
    compared = data.get("compared")
    if isinstance(compared, Mapping) and _num(compared.get("difference")) is not None:
        value, ci, seeds = _num(compared["difference"]), compared.get("ci"), []
        label += f" − {compared.get('other', 'other')}"
        shown_bands = _compared_bands(c)
        margin = borderline_span(c, compared=True)
    interval = [float(ci[0]), float(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    return {
        "label": label,
        "value": value,
        "ci": interval,
        "seeds": seeds,
        "level": str(data.get("level", "")),
        "passed": bool(data.get("passed")),
        "rule": str(data.get("rule", "")),
        "bands": shown_bands,
        "borderline": margin,
    }


def criteria_spec(exp: Experiment, doc: Mapping[str, Any], verdict: Verdict) -> dict[str, Any] | None:
    """Every criterion of the experiment (its own, then each sub-experiment's) with its value."""
    subs = doc.get("sub_experiments") if isinstance(doc.get("sub_experiments"), Mapping) else {}
    assert isinstance(subs, Mapping)
    rows: list[dict[str, Any]] = []
    for j in verdict.criteria:
        c = next((x for x in exp.success_criteria if x.metric == j.metric), None)
        data = j.to_dict()
        seeds = _seed_values(subs.get(j.source), j.metric) if j.source else []
        rows.append(_criterion_row(j.metric + (f" (from {j.source})" if j.source else ""), data, c, seeds))
    # An experiment criterion taken from a sub-experiment is often that sub-experiment's own one
    # too (same metric, same rule): drawn once.
    shown = {(j.source, j.metric, j.rule) for j in verdict.criteria}
    for sub in exp.sub_experiments:
        entry = subs.get(sub.id)
        if entry.__class__ is dict:  # (a dict, and most have no criteria, {}: no call)
            stored = entry.get("criteria")
            if not stored:
                continue
        else:
            found = as_mapping(entry)
            stored = found.get("criteria") if found is not None else None
            if not stored:
                continue
        judged = as_mapping(stored)
        if not judged:
            continue
        for metric, data in judged.items():
            if isinstance(data, Mapping) and (sub.id, metric, data.get("rule")) not in shown:
                c = next((x for x in sub.success_criteria if x.metric == metric), None)
                rows.append(_criterion_row(f"{sub.id}: {metric}", data, c, _seed_values(entry, str(metric))))
    rows = rows[:MAX_CRITERIA]
    if not any(r["value"] is not None for r in rows):
        return None
    return {"chart": "criteria", "name": "criteria.png", "title": f"{exp.name}: criteria", "rows": rows}


def _select_metric(sub: SubExperiment, points: Mapping[str, Any]) -> tuple[str | None, str]:
    if sub.select is not None:
        return sub.select.metric, sub.select.mode
    for c in sub.success_criteria:
        return c.metric, "min" if getattr(c, "direction", None) == "lower" else "max"
    for entry in points.values():
        metrics = entry.get("metrics") if isinstance(entry, Mapping) else None
        for name, value in (metrics or {}).items():
            if _num(value) is not None:
                return str(name), "max"
    return None, "max"


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def sweep_spec(sub: SubExperiment, entry: Any) -> dict[str, Any] | None:
    """A sweep's selection metric at each point, against each swept param."""
    points = entry.get("points") if isinstance(entry, Mapping) else None
    if not sub.sweep or not isinstance(points, Mapping) or not points:
        return None
    metric, mode = _select_metric(sub, points)
    if metric is None:
        return None
    rows = []
    for point in sub.points():
        found = points.get(point.key)
        if not isinstance(found, Mapping):
            continue
        metrics = found.get("metrics") if isinstance(found.get("metrics"), Mapping) else {}
        assert isinstance(metrics, Mapping)
        value = _num(metrics.get(metric))
        if value is None:
            continue
        stats = found.get("stats")
        st = stats.get(metric) if isinstance(stats, Mapping) else None
        ci = st.get("ci95") if isinstance(st, Mapping) else None
        rows.append(
            {
                "key": point.key,
                "values": {k: _plain(v) for k, v in point.values.items()},
                "value": value,
                "ci": [float(ci[0]), float(ci[1])]
                if isinstance(ci, (list, tuple)) and len(ci) == 2
                else None,
                "seeds": _seed_values(found, metric),
            }
        )
    if not rows:
        return None
    return {
        "chart": "sweep",
        "name": f"{sub.id}-sweep.png",
        "title": f"{sub.id}: {metric} ({mode}) across the sweep",
        "metric": metric,
        "params": list(sub.sweep)[:MAX_SWEEP_PARAMS],
        "selected": entry.get("selected") if isinstance(entry.get("selected"), str) else None,
        "rows": rows,
    }


def _mean_curve(seeds: Mapping[str, Any], key: str) -> list[list[float]]:
    """``[[step, mean over the seeds that logged that step], ...]``."""
    by_step: dict[int, list[float]] = {}
    for curves in seeds.values():
        got = curves.get(key) if isinstance(curves, Mapping) else None
        if isinstance(got, Mapping):
            for step, value in zip(got.get("steps") or (), got.get("values") or (), strict=False):
                by_step.setdefault(int(step), []).append(float(value))
    return [[float(s), math.fsum(v) / len(v)] for s, v in sorted(by_step.items())]


def _keys(files: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for data in files:
        for curves in data["seeds"].values():
            if isinstance(curves, Mapping):
                keys += [str(k) for k in curves if str(k) not in keys]
    return keys[:MAX_KEYS]


def _curve_names(plan: Plan, experiment_id: str) -> frozenset[str]:
    """The names in the experiment's curves folder, listed once (most items log no curves:
    opening a missing file per sub-experiment at every session end was per-item work)."""
    folder = plan.root / "experiments" / experiment_id / curve_files.FOLDER
    try:
        return frozenset(os.listdir(folder))
    except OSError:  # no folder (nothing logged curves), or not a folder
        return frozenset()


def curves_spec(
    plan: Plan, sub: SubExperiment, entry: Any, present: frozenset[str] | None = None
) -> dict[str, Any] | None:
    """The sub-experiment's learning curves from its curve files (``curves.py``).  ``present``:
    the names in the curves folder when the caller listed it (a file not there is not read)."""
    exp_id = sub.experiment_id
    lines: list[dict[str, Any]] = []
    if sub.sweep:
        points = entry.get("points") if isinstance(entry, Mapping) else None
        if not isinstance(points, Mapping):
            return None
        selected = entry.get("selected")
        order = [p.key for p in sub.points() if p.key in points]
        if isinstance(selected, str) and selected in order:
            order.remove(selected)
            order.insert(0, selected)
        files = []
        for key in order[:MAX_SWEEP_LINES]:
            if present is not None and curve_files.curve_name(sub.id, key) not in present:
                continue
            data = curve_files.read(curve_files.curve_path(plan.root, exp_id, sub.id, key))
            if data is not None:
                files.append((key, data))
        keys = _keys([d for _, d in files])
        for key, data in files:
            label = f"{key} (selected)" if key == selected else key
            lines.append(
                {
                    "label": label,
                    "bold": key == selected,
                    "curves": {k: _mean_curve(data["seeds"], k) for k in keys},
                }
            )
        shown = f"{len(files)} of {len(points)} points, " if len(points) > len(files) else ""
        note = f" ({shown}each the mean of its seeds)"
    else:
        if present is not None and curve_files.curve_name(sub.id, None) not in present:
            return None
        data = curve_files.read(curve_files.curve_path(plan.root, exp_id, sub.id, None))
        if data is None:
            return None
        keys = _keys([data])
        seeds = data["seeds"]
        for seed in sorted(seeds, key=lambda s: int(s) if str(s).isdigit() else 0):
            curves = seeds[seed] if isinstance(seeds[seed], Mapping) else {}
            lines.append(
                {
                    "label": f"seed {seed}",
                    "bold": len(seeds) == 1,
                    "curves": {
                        k: [
                            [float(s), float(v)]
                            for s, v in zip(curves[k]["steps"], curves[k]["values"], strict=False)
                        ]
                        for k in keys
                        if isinstance(curves.get(k), Mapping)
                    },
                }
            )
        if len(seeds) > 1:
            lines.append(
                {
                    "label": f"mean of {len(seeds)} seeds",
                    "bold": True,
                    "colour": "#000000",  # not one of the seeds' colours
                    "curves": {k: _mean_curve(seeds, k) for k in keys},
                }
            )
        note = ""
    if not keys or not lines:
        return None
    return {
        "chart": "curves",
        "name": f"{sub.id}-curves.png",
        "title": f"{sub.id}: learning curves{note}",
        "keys": keys,
        "lines": lines,
    }


def specs_for(plan: Plan, exp: Experiment, doc: Mapping[str, Any], verdict: Verdict) -> list[dict[str, Any]]:
    """What the experiment's charts show, in the order FINDINGS.md shows them."""
    subs = doc.get("sub_experiments") if isinstance(doc.get("sub_experiments"), Mapping) else {}
    assert isinstance(subs, Mapping)
    specs: list[dict[str, Any] | None] = [criteria_spec(exp, doc, verdict)]
    present = _curve_names(plan, exp.id)
    for sub in exp.sub_experiments:
        # (A single run's curves are read only from a file that is there: with none, most
        # sub-experiments have no chart, and their entries are not looked up.)
        if not (sub.sweep or present):
            continue
        entry = subs.get(sub.id)
        if entry is None:
            continue
        if sub.sweep:
            specs.append(sweep_spec(sub, entry))
        specs.append(curves_spec(plan, sub, entry, present))
    return [s for s in specs if s is not None]


def digest(spec: Mapping[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{VERSION}:{text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- the files -----------------------------------------------------------------------------------


def png_digest(path: Path) -> str | None:
    """The ``mlexp`` text chunk of a PNG we wrote (read from the chunks before the image data)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IDAT" or length > 1 << 20:
                    return None
                body = fh.read(length)
                fh.read(4)  # crc
                if kind == b"tEXt" and body.startswith(b"mlexp\x00"):
                    return body[6:].decode("latin-1")
    except OSError:
        return None


def experiment_plots(plan: Plan, exp: Experiment, doc: Mapping[str, Any], verdict: Verdict) -> dict[str, str]:
    """Draw the experiment's charts (those whose data changed), remove ones it no longer has;
    ``{chart name: path relative to the plan's folder}`` for FINDINGS.md.  Needs matplotlib."""
    folder = plan.root / "experiments" / exp.id / FOLDER
    made: dict[str, str] = {}
    for spec in specs_for(plan, exp, doc, verdict):
        path = folder / spec["name"]
        key = digest(spec)
        if png_digest(path) != key:
            data = draw(spec, key)
            from .atomic import atomic_write_bytes

            atomic_write_bytes(path, data, fsync=False)
        made[spec["name"]] = path.relative_to(plan.root).as_posix()
    if folder.is_dir():
        for old in folder.iterdir():
            if _OURS.match(old.name) and old.name not in made:
                with contextlib.suppress(OSError):
                    old.unlink()
    return made


# --- drawing -------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def draw(spec: Mapping[str, Any], key: str) -> bytes:
    """The chart as PNG bytes, with ``key`` in its ``mlexp`` text chunk."""
    chart = spec["chart"]
    if chart == "criteria":
        fig = _draw_criteria(spec)
    elif chart == "sweep":
        fig = _draw_sweep(spec)
    else:
        fig = _draw_curves(spec)
    buf = io.BytesIO()
    # No "Software" chunk (a matplotlib upgrade alone must not change the file's bytes).
    fig.savefig(buf, format="png", metadata={"Software": None, "mlexp": key})
    return buf.getvalue()


def _limits(numbers: Sequence[float]) -> tuple[float, float]:
    low, high = min(numbers), max(numbers)
    span = high - low
    pad = span * 0.12 if span > 0 else (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def _draw_criteria(spec: Mapping[str, Any]) -> Any:
    rows = spec["rows"]
    fig = _figure(7.0, 0.55 + 0.78 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        numbers = [row["value"], *(row["ci"] or ()), *row["seeds"]]
        numbers += [e for b in row["bands"] for e in b[:2] if e is not None]
        numbers += row.get("borderline") or []
        finite = [n for n in numbers if n is not None]
        low, high = _limits(finite) if finite else (0.0, 1.0)
        for start, end, level in row["bands"]:
            left = low if start is None else max(start, low)
            right = high if end is None else min(end, high)
            if right > left:
                ax.axvspan(left, right, color=BAND_COLOURS.get(level, "#eeeeee"), alpha=0.55, lw=0)
                ax.text((left + right) / 2, 0.97, level, ha="center", va="top", fontsize=7, color="#444444",
                        transform=ax.get_xaxis_transform())  # fmt: skip
        if row.get("borderline"):
            left, right = row["borderline"]
            ax.axvspan(left, right, facecolor="none", hatch="///", edgecolor="#b8860b", lw=0, alpha=0.6)
            ax.text(left, 0.04, " borderline", ha="left", va="bottom", fontsize=6.5,
                    color="#8a6400", transform=ax.get_xaxis_transform())  # fmt: skip
        if row["seeds"]:
            n = len(row["seeds"])
            ys = [0.22 + 0.36 * (i / max(1, n - 1)) for i in range(n)] if n > 1 else [0.4]
            ax.scatter(row["seeds"], ys, s=12, color="#555555", alpha=0.6, zorder=3, label="seeds")
        colour = PASSED if row["passed"] else FAILED
        if row["value"] is not None:
            ci = row["ci"]
            err = [[row["value"] - ci[0]], [ci[1] - row["value"]]] if ci else None
            ax.errorbar(
                [row["value"]], [0.4], xerr=err, fmt="o", color=colour, ms=7, capsize=4, lw=1.6, zorder=4
            )
            shown = f"{row['value']:.4g}"
        else:
            shown = "not measured"
        title = f"{row['label']} = {shown}: {row['level']}" + (f"   ({row['rule']})" if row["rule"] else "")
        ax.set_title(title, fontsize=8.5, loc="left", color=colour, pad=3)
        ax.set_xlim(low, high)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7.5)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
    fig.suptitle(f"{spec['title']} (dot: value, bar: 95% CI over seeds, grey: seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(_num(v) is not None for v in values)


def _draw_sweep(spec: Mapping[str, Any]) -> Any:
    params, rows = spec["params"], spec["rows"]
    fig = _figure(max(6.4, 4.2 * len(params)), 3.4)
    axes = fig.subplots(1, len(params), squeeze=False)[0]
    for ax, param in zip(axes, params, strict=True):
        raw = [r["values"].get(param) for r in rows]
        numeric = _is_numeric(raw)
        if numeric:
            xs = [float(v) for v in raw]
            positive = all(x > 0 for x in xs)
            if positive and max(xs) / min(xs) >= 8:
                ax.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs) else 10)
            ticks = sorted(set(xs))
            if len(ticks) <= 12:
                ax.set_xticks(ticks)
                ax.set_xticklabels([f"{t:g}" for t in ticks])
        else:
            labels = list(dict.fromkeys(str(v) for v in raw))
            xs = [float(labels.index(str(v))) for v in raw]
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, fontsize=7.5, rotation=30 if len(labels) > 4 else 0)
        for x, row in zip(xs, rows, strict=True):
            if row["seeds"]:
                ax.scatter([x] * len(row["seeds"]), row["seeds"], s=10, color="#777777", alpha=0.5, zorder=2)
            ci = row["ci"]
            err = [[row["value"] - ci[0]], [ci[1] - row["value"]]] if ci else None
            chosen = row["key"] == spec["selected"]
            ax.errorbar([x], [row["value"]], yerr=err, fmt="o", ms=6 if chosen else 5, capsize=3,
                        color=FAILED if chosen else "#1f4e79", zorder=3)  # fmt: skip
            if chosen:
                ax.annotate("selected", (x, row["value"]), textcoords="offset points", xytext=(6, 6),
                            fontsize=7.5, color=FAILED)  # fmt: skip
        if len(params) == 1 and numeric:
            pairs = sorted(zip(xs, (r["value"] for r in rows), strict=True))
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], color="#1f4e79", lw=1, alpha=0.6, zorder=1)
        ax.set_xlabel(param, fontsize=8.5)
        ax.set_ylabel(spec["metric"], fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{spec['title']}\n(dot: mean, bar: 95% CI over seeds, grey: seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def _draw_curves(spec: Mapping[str, Any]) -> Any:
    from matplotlib.ticker import MaxNLocator

    keys, lines = spec["keys"], spec["lines"]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = _figure(max(6.4, 3.6 * cols), 2.7 * rows + 0.45)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, keys, strict=False):
        for line in lines:
            points = line["curves"].get(key) or []
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            if line["bold"]:
                ax.plot(xs, ys, lw=1.8, label=line["label"], zorder=3, color=line.get("colour"))
            else:
                ax.plot(xs, ys, lw=0.9, alpha=0.45, label=line["label"], zorder=2)
        ax.set_title(key, fontsize=8.5)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(labels) > 1:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(spec["title"], fontsize=9)
    fig.tight_layout(rect=(0, 0.07 if len(labels) > 1 else 0, 1, 1))
    return fig
