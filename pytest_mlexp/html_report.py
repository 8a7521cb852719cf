"""pytest-html rows for experiment items: metrics, criteria levels, finding, verdict, figures.

Registered only when pytest-html is active and writing a report (``register_if_active``, called
from ``plugin.py``), as pytest-randomly does for plugins it supports without needing them: with
pytest-html absent, none of this is imported and no hook of it exists.

It reads only what an item left in ``report.user_properties`` (the same properties JUnit gets,
set by ``orchestrate.py``), so it knows nothing of how results are made, works the same for
reports that come from xdist workers, and runs in the process that writes the HTML file (the
figures are read there, from the plan's folder).  Everything it adds is passed through the
session's scrubber, then HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .records import tracker_label
from .session import MlexpSession, session_of
from .textutil import fmt_number

__all__ = ["FIGURE_TYPES", "MAX_FIGURE_BYTES", "HtmlRows", "ItemView", "register_if_active"]

PLUGIN_NAME = "mlexp-html"
# What a browser shows in an <img>: the figures a handler saves (runner.save_figure writes png).
FIGURE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# A figure is embedded in the report (base64, in the page or under assets/); one larger than
# this is named with its path instead, so a stray 1 GB "plot" cannot make the report unusable.
MAX_FIGURE_BYTES = 10 * 1024 * 1024
NO_LOG = "No log output captured."  # pytest-html's text for a row without captured output
COLUMN_HEADER = '<th class="mlexp-col">Experiment</th>'
STYLE = (
    "<style>.mlexp table{border-collapse:collapse;margin:4px 0}"
    ".mlexp th,.mlexp td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    ".mlexp .passed-level{color:#2a7d2a}.mlexp .failed-level{color:#b22}</style>"
)

Scrub = Callable[[str], str]


@dataclass
class Criterion:
    metric: str
    level: str
    passed: bool


@dataclass
class ItemView:
    """What one experiment item produced, as its user properties say."""

    kind: str  # "sub" or "assessment"
    status: str
    finding: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, str] = field(default_factory=dict)
    criteria: list[Criterion] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)  # met, confidence, recommendation
    problems: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why investigate
    artifacts: list[str] = field(default_factory=list)
    tracking: dict[str, str] = field(default_factory=dict)  # tracker, url, run_path, sync, ui


def parse_properties(props: Iterable[tuple[str, Any]]) -> ItemView | None:
    """The item's view from its ``user_properties``; None for a test that is not an experiment."""
    pairs = list(props)
    status = next((v for k, v in pairs if k == "mlexp.status"), None)
    if status is None:
        return None
    kind = "assessment" if any(k.startswith("verdict.") for k, _ in pairs) else "sub"
    view = ItemView(kind=kind, status=str(status))
    for key, value in pairs:
        prefix, _, name = key.partition(".")
        if key == "mlexp.finding":
            view.finding = str(value)
        elif key == "mlexp.artifact":
            view.artifacts.append(str(value))
        elif key == "verdict.problem":
            view.problems.append(str(value))
        elif key == "verdict.reason":
            view.reasons.append(str(value))
        elif prefix == "verdict":
            view.verdict[name] = value
        elif prefix == "metric":
            view.metrics[name] = value
        elif prefix == "stats":
            view.stats[name] = str(value)
        elif prefix == "criterion":
            level, _, rest = str(value).partition(" (")
            view.criteria.append(Criterion(name, level, rest.startswith("passed")))
        elif prefix == "tracking" and value:
            view.tracking[name] = str(value)
        elif key == "wandb.url" and value:  # the first release's only link (W&B's)
            view.tracking.setdefault("legacy_url", str(value))
    if "legacy_url" in view.tracking:
        legacy = view.tracking.pop("legacy_url")
        if "tracker" not in view.tracking:
            view.tracking.update(tracker="wandb", url=legacy)
    return view


def summary_cell(view: ItemView, scrub: Scrub) -> str:
    """The one-line summary shown in the row itself (the block below it is collapsed for passes)."""
    if view.kind == "assessment":
        v = view.verdict
        text = (
            f"{v.get('verdict', '?')}, {v.get('recommendation', '?')} "
            f"({view.status}; confidence {v.get('confidence', '?')})"
        )
        return html.escape(scrub(text))
    else:
        levels = {c.metric: c.level for c in view.criteria}
        parts = [
            f"{name}={fmt_number(value)}" + (f" ({levels[name]})" if name in levels else "")
            for name, value in list(view.metrics.items())[:4]
        ]
        if len(view.metrics) > 4:
            parts.append("…")
        text = " ".join(parts)
    if view.status not in ("passed", "failed"):
        text = f"[{view.status}] {text}".rstrip()
    return html.escape(scrub(text))


def render_block(view: ItemView, scrub: Scrub) -> str:
    """The HTML shown under the row: verdict, finding, metrics with criteria levels, links."""

    def esc(value: Any) -> str:
        return html.escape(scrub(str(value)))

    out = [STYLE, '<div class="mlexp">']
    if view.kind == "assessment":
        v = view.verdict
        pivot = f" via {esc(v['pivot'])}" if v.get("pivot") else ""
        out.append(
            f'<p class="mlexp-verdict"><b>Verdict:</b> {esc(v.get("verdict", "?"))}{pivot}; '
            f"<b>recommendation:</b> {esc(v.get('recommendation', '?'))} "
            f"(status {esc(view.status)}; success criteria met: {esc(v.get('success_criteria_met', '?'))}; "
            f"confidence: {esc(v.get('confidence', '?'))})</p>"
        )
        if v.get("message"):
            out.append(f'<p class="mlexp-message">{esc(v["message"])}</p>')
        if view.reasons:
            out.append("<p><b>Why investigate:</b></p><ul>")
            out += [f"<li>{esc(r)}</li>" for r in view.reasons]
            out.append("</ul>")
    else:
        out.append(f'<p class="mlexp-status"><b>Status:</b> {esc(view.status)}</p>')
    if view.finding:
        out.append(f'<p class="mlexp-finding"><b>Finding:</b> {esc(view.finding)}</p>')
    rows = _metric_rows(view)
    if rows:
        out.append(
            '<table class="mlexp-metrics"><thead><tr><th>metric</th><th>value</th><th>criterion</th>'
            + ("<th>over seeds</th>" if view.stats else "")
            + "</tr></thead><tbody>"
        )
        for name, value, crit in rows:
            level = "" if crit is None else f"{crit.level} ({'passed' if crit.passed else 'not passed'})"
            css = "" if crit is None else ("passed-level" if crit.passed else "failed-level")
            out.append(
                f'<tr><td>{esc(name)}</td><td>{esc(value)}</td><td class="{css}">{esc(level)}</td>'
                + (f"<td>{esc(view.stats.get(name, ''))}</td>" if view.stats else "")
                + "</tr>"
            )
        out.append("</tbody></table>")
    if view.problems:
        out.append("<p><b>Problems:</b></p><ul>")
        out += [f"<li>{esc(p)}</li>" for p in view.problems]
        out.append("</ul>")
    if view.tracking:
        out.append(f'<p class="mlexp-run">{_run_html(view.tracking, esc)}</p>')
    out.append("</div>")
    return "".join(out)


def _run_html(tracking: dict[str, str], esc: Callable[[Any], str]) -> str:
    """The tracked run, labelled with its tracker's name: a link, or where it is and how to see it."""
    label = esc(tracker_label(tracking.get("tracker")))
    url = tracking.get("url")
    if url:
        shown = tracking.get("run_path") or url
        return f'{label} run: <a href="{esc(url)}" target="_blank">{esc(shown)}</a>'
    text = f"{label} run"
    if tracking.get("run_path"):
        text += f" <code>{esc(tracking['run_path'])}</code>"
    if tracking.get("ui"):
        text += f" (a local store: <code>{esc(tracking['ui'])}</code>)"
    if tracking.get("sync"):
        text += f" (offline: <code>{esc(tracking['sync'])}</code>)"
    return text


def _metric_rows(view: ItemView) -> list[tuple[str, str, Criterion | None]]:
    by_metric = {c.metric: c for c in view.criteria}
    rows = [(name, fmt_number(value), by_metric.get(name)) for name, value in view.metrics.items()]
    # a criterion whose metric never arrived still gets its row (its level says "missing")
    rows += [(c.metric, "—", c) for c in view.criteria if c.metric not in view.metrics]
    return rows


def figure_extras(
    artifacts: Sequence[str], plan_root: Path, scrub: Scrub
) -> tuple[list[dict[str, Any]], list[str]]:
    """pytest-html image extras for the figures among ``artifacts`` (paths relative to the plan's
    folder), and one note per figure that could not be embedded."""
    from pytest_html import extras

    found: list[dict[str, Any]] = []
    notes: list[str] = []
    root = plan_root.resolve()
    for rel in artifacts:
        mime = FIGURE_TYPES.get(Path(rel).suffix.lower())
        if mime is None:
            continue
        path = (root / rel).resolve()
        if not path.is_relative_to(root):  # never read a file outside the plan's folder
            notes.append(f"{rel}: outside the plan's folder, not shown")
            continue
        try:
            size = path.stat().st_size
            if size > MAX_FIGURE_BYTES:
                notes.append(
                    f"{rel}: {size / 2**20:.1f} MiB, over {MAX_FIGURE_BYTES / 2**20:g} MiB: not embedded"
                )
                continue
            data = path.read_bytes()
        except OSError as exc:
            notes.append(f"{rel}: cannot be read ({exc.strerror or exc})")
            continue
        if mime == "image/svg+xml":  # text: a title or label may quote a secret
            data = scrub(data.decode("utf-8", "replace")).encode("utf-8")
        content = base64.b64encode(data).decode("ascii")
        found.append(extras.image(content, name=scrub(rel), mime_type=mime, extension=path.suffix[1:]))
    return found, notes


class HtmlRows:
    """pytest-html's hooks for experiment rows (registered as ``mlexp-html``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.column = _session(config).selected

    def scrub(self, text: str) -> str:
        return _session(self.config).scrub(text)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # pytest-html collects a test's extras when its teardown report arrives: the call report
        # gets them here, on arrival (from this process or an xdist worker).
        if report.when != "call":
            return
        view = parse_properties(report.user_properties)
        if view is None:
            return
        from pytest_html import extras

        plan_root = Path(self.config.rootpath, report.location[0]).parent
        figures, notes = figure_extras(view.artifacts, plan_root, self.scrub)
        block = render_block(view, self.scrub)
        if notes:
            block += "<ul>" + "".join(f"<li>{html.escape(self.scrub(n))}</li>" for n in notes) + "</ul>"
        existing = list(getattr(report, "extras", None) or [])
        report.extras = [*existing, extras.html(block), *figures]  # type: ignore[attr-defined]

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        if self.column:
            cells.insert(2, COLUMN_HEADER)

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        if not self.column or not cells:
            return
        view = parse_properties(getattr(report, "user_properties", ()) or ())
        text = summary_cell(view, self.scrub) if view is not None else ""
        cells.insert(2, f'<td class="mlexp-col">{text}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        if parse_properties(getattr(report, "user_properties", ()) or ()) is None:
            return
        if data == [NO_LOG]:
            data.clear()  # the block above says what the item did: no "No log output captured."
        else:
            data[:] = [self.scrub(line) for line in data]


def _session(config: pytest.Config) -> MlexpSession:
    return session_of(config)


def register_if_active(config: pytest.Config) -> None:
    """Register ``HtmlRows`` when pytest-html is installed, enabled and writing a report here
    (not on an xdist worker: the controller writes the report and reads the figures)."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("html"):
        return
    try:
        if not config.getoption("htmlpath"):
            return
    except ValueError:  # pytest-html's options absent (an unusual build): nothing to add to
        return
    config.pluginmanager.register(HtmlRows(config), PLUGIN_NAME)
