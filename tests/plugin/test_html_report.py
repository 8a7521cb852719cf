"""pytest-html: experiment rows show metrics, criteria levels, finding, verdict and figures.

pytest-html 4 builds its rows in the browser, from JSON, with JavaScript: the HTML file's
source holds the data but not the rows.  So the report is rendered in headless Chromium and the
*rendered* page is checked (the DOM after the scripts ran, and a screenshot kept as an artifact).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp.html_report import figure_extras, parse_properties, render_block, summary_cell
from tests.conftest import Project

pytest.importorskip("pytest_html")

SECRET = "sk-html-secret-0123456789"
ENV_SECRET = "env-html-secret-abcdefgh"


def _png(rows: list[list[tuple[int, int, int]]]) -> bytes:
    """A real RGB PNG, built by hand (the standard library has no image writer)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in rows)
    head = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# 2x2: red, green / blue, white
PNG = _png([[(255, 0, 0), (0, 160, 0)], [(0, 0, 255), (255, 255, 255)]])

PLAN = f"""
project: {{name: Html}}
experiments:
  exp-a:
    sub_experiments:
      a_fit:
        params: {{api_token: "{SECRET}"}}
        success_criteria:
          accuracy: {{target: 0.9, acceptable: 0.8, failure: 0.5}}
      a_eval:
        success_criteria:
          loss: "< 0.1"
    success_criteria:
      accuracy: {{target: 0.95, acceptable: 0.9, failure: 0.5, from: a_fit}}
"""

HANDLERS = f"""
import base64, os
PNG = base64.b64decode({base64.b64encode(PNG).decode()!r})

def a_fit(runner):
    png = runner.results.save_artifact("confusion.png", PNG)
    svg = runner.results.save_artifact(
        "curve.svg",
        '<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20"><text y="15">'
        + runner.params["api_token"] + "</text></svg>",
    )
    runner.results.save_artifact("table.csv", "a,b\\n1,2\\n")  # not a figure: not embedded
    return {{
        "metrics": {{"accuracy": 0.9312, "epochs": 3}},
        "finding": "reaches 93.1% with token " + runner.params["api_token"]
        + " and " + os.environ["MY_SERVICE_API_KEY"],
    }}

def a_eval(runner):
    return {{"metrics": {{"loss": 0.4567}}}}
"""


# --- the browser ------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    root = getattr(os, "geteuid", lambda: -1)() == 0
    if root and shutil.which("apt-get"):
        pytest.fail(
            "Chromium is not installed but could be: run `bash scripts/setup.sh dev` "
            "(it installs Debian's chromium package)"
        )
    pytest.skip("Chromium is not installed and cannot be installed here (needs root and apt-get)")


def _render(report: Path, out: Path) -> tuple[str, Path]:
    """The page as Chromium renders it (scripts run), and a screenshot of it."""
    browser = _chromium()
    base = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={out / 'chromium-profile'}",  # its own: xdist runs two at once
    ]
    url = report.resolve().as_uri()
    # Generous hang guards only: nothing here asserts on time.
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True
    ).stdout
    shot = out / "report.png"
    subprocess.run(
        [*base, "--window-size=1200,1600", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert shot.stat().st_size > 0
    print(f"screenshot of the rendered report: {shot}")
    return dom, shot


class Rows(HTMLParser):
    """The rendered result rows: per ``tbody.results-table-row``, its text and its images.
    Only elements count (attribute values, where pytest-html keeps its JSON, are not text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self._row: dict[str, Any] | None = None
        self._depth = 0
        self._skip = 0  # inside <style>/<script>
        self._template = 0  # inside <template>: pytest-html's blueprints, not rendered rows

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("style", "script"):
            self._skip += 1
        if tag == "template":
            self._template += 1
        if tag == "tbody" and not self._template and "results-table-row" in (a.get("class") or ""):
            self._row = self.rows.setdefault(str(a.get("id")), {"text": [], "imgs": []})
            self._depth = 0
        if self._row is None:
            return
        if tag == "tbody":
            self._depth += 1
        if tag == "img" and a.get("src"):
            self._row["imgs"].append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1
        if tag == "template":
            self._template -= 1
        if self._row is not None and tag == "tbody":
            self._depth -= 1
            if self._depth == 0:
                self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and not self._skip and data.strip():
            self._row["text"].append(data.strip())


def _rows(dom: str) -> dict[str, dict[str, Any]]:
    parser = Rows()
    parser.feed(dom)
    return {k: {"text": " ".join(v["text"]), "imgs": v["imgs"]} for k, v in parser.rows.items()}


def _project(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", ENV_SECRET)
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)


NODE = "research/research_plan.yaml::exp-a::"


def _check_rows(rows: dict[str, dict[str, Any]], img_prefix: str) -> None:
    fit, ev, assess = rows[NODE + "a_fit"], rows[NODE + "a_eval"], rows[NODE + "assessment"]
    # the row itself: a one-line summary in the Experiment column
    assert "accuracy=0.9312 (target) epochs=3" in fit["text"]
    # the block under it: finding, every metric with its criterion's level
    assert "Finding: reaches 93.1% with token *** and ***" in fit["text"]
    assert "accuracy 0.9312 target (passed)" in fit["text"]
    assert "epochs 3" in fit["text"]
    assert "No log output captured" not in fit["text"]
    # the figure the handler saved, embedded; the CSV is not a figure
    assert any(src.startswith(img_prefix) for src in fit["imgs"]), fit["imgs"]
    # artifacts/<sub>/<fingerprint[:12]>/<name> (artifacts are kept per fingerprint)
    assert re.search(r"artifacts/a_fit/[0-9a-f]{12}/confusion\.png", fit["text"]) and "1 / 2" in fit["text"]
    assert "loss=0.4567 (fail)" in ev["text"] and "loss 0.4567 fail (not passed)" in ev["text"]
    assert not [src for src in ev["imgs"] if src]  # no figure: pytest-html's viewer stays empty
    # the assessment: the verdict and why
    assert "failed, pivot (completed; confidence high)" in assess["text"]
    assert "Verdict: failed; recommendation: pivot" in assess["text"]
    assert "success criteria met: True; confidence: high" in assess["text"]
    assert "accuracy 0.9312 acceptable (passed)" in assess["text"]
    assert "Problems: a_eval failed: loss = 0.4567 needs < 0.1: fail" in assess["text"]


def test_report_rendered_in_chromium_shows_metrics_verdict_and_figure(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _project(project, monkeypatch)
    report = project.path / "out" / "report.html"
    result = project.run(
        "--experiment", "all", f"--html={report}", "--self-contained-html", "-o", "render_collapsed="
    )
    assert result.ret == 1  # a_eval misses its criterion
    dom, _shot = _render(report, tmp_path)
    rows = _rows(dom)
    assert set(rows) == {NODE + "a_fit", NODE + "a_eval", NODE + "assessment"}
    _check_rows(rows, "data:image/png;base64,")
    # scrubbed in the rendered page and in the file (the SVG's text too)
    source = report.read_text(encoding="utf-8")
    for text in (dom, source):
        assert SECRET not in text and ENV_SECRET not in text
    svg = next(e for e in _extras_of(source) if e.endswith("svg+xml"))
    assert svg  # the SVG figure is in the report as well (second in the viewer)


def _extras_of(source: str) -> list[str]:
    import re

    return re.findall(r"data:image/[a-z+]+", source.replace("&#34;", '"'))


def test_report_under_xdist_with_assets_rendered_in_chromium(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    _project(project, monkeypatch)
    report = project.path / "out" / "report.html"
    result = project.pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "2", "--experiment", "all", f"--html={report}", "-o", "render_collapsed="
    )
    assert result.ret == 1
    dom, _ = _render(report, tmp_path)
    # the rows came from the workers' reports; the figures were read where the report is written
    _check_rows(_rows(dom), "assets/")
    assets = sorted(p.name for p in (report.parent / "assets").iterdir())
    png = next(name for name in assets if name.endswith(".png"))
    assert (report.parent / "assets" / png).read_bytes() == PNG
    svg = next(name for name in assets if name.endswith(".svg"))
    assert (
        SECRET not in (report.parent / "assets" / svg).read_text()
        and "***" in (report.parent / "assets" / svg).read_text()
    )


def test_rows_are_untouched_without_html_and_unit_tests_get_an_empty_cell(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, monkeypatch)
    project.pytester.makepyfile(test_unit="def test_plain():\n    assert True\n")
    config = project.pytester.parseconfigure("--experiment", "all")
    assert config.pluginmanager.get_plugin("mlexp-html") is None  # no --html: nothing registered
    config = project.pytester.parseconfigure("-p", "no:html", "--experiment", "all")
    assert config.pluginmanager.get_plugin("mlexp-html") is None
    report = project.path / "unit.html"
    result = project.run("-p", "no:cacheprovider", f"--html={report}", "--self-contained-html")
    result.assert_outcomes(passed=1)
    source = report.read_text(encoding="utf-8")
    # experiments not selected: no Experiment column in a unit-test report
    assert "mlexp-col" not in source and "test_unit.py::test_plain" in source


# --- pure parts -------------------------------------------------------------------------------
def _scrub(text: str) -> str:
    return text.replace(SECRET, "***")


def test_properties_parse_into_a_view_and_render_escaped_and_scrubbed() -> None:
    props = [
        ("mlexp.status", "failed"),
        ("mlexp.finding", f"<b>x</b> {SECRET}"),
        ("metric.acc", 0.123456),
        ("metric.note", "a<b"),
        ("stats.acc", "mean=0.12 std=0.01 n=3"),
        ("criterion.acc", "miss (not passed)"),
        ("criterion.f1", "missing (not passed)"),
        ("wandb.url", "https://wandb.example/run?a=1&b=2"),
        ("mlexp.artifact", "artifacts/s/fig.png"),
    ]
    view = parse_properties(props)
    assert view is not None and view.kind == "sub" and view.artifacts == ["artifacts/s/fig.png"]
    block = render_block(view, _scrub)
    assert SECRET not in block and "&lt;b&gt;x&lt;/b&gt; ***" in block
    assert "<td>acc</td><td>0.1235</td>" in block and "miss (not passed)" in block
    assert "<td>f1</td><td>—</td>" in block  # a criterion whose metric never came still shows
    assert "mean=0.12 std=0.01 n=3" in block and "a&lt;b" in block
    assert 'href="https://wandb.example/run?a=1&amp;b=2"' in block and "W&amp;B run" in block
    assert summary_cell(view, _scrub) == "acc=0.1235 (miss) note=a&lt;b"
    error = parse_properties([("mlexp.status", "infra_error")])
    assert error is not None and summary_cell(error, _scrub) == "[infra_error]"
    assert parse_properties([("other", 1)]) is None  # not an experiment item


def test_figures_stay_inside_the_plan_folder_and_big_ones_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_mlexp import html_report

    root = tmp_path / "research"
    (root / "artifacts" / "s").mkdir(parents=True)
    (root / "artifacts" / "s" / "fig.png").write_bytes(PNG)
    limit = len(PNG) + 100  # the SVG below is shorter too
    (root / "artifacts" / "s" / "big.jpg").write_bytes(b"x" * (limit + 1))
    (root / "artifacts" / "s" / "plot.SVG").write_text(f"<svg><text>{SECRET}</text></svg>")
    (tmp_path / "outside.png").write_bytes(PNG)
    (root / "artifacts" / "s" / "link.png").symlink_to(tmp_path / "outside.png")
    monkeypatch.setattr(html_report, "MAX_FIGURE_BYTES", limit)
    paths = [f"artifacts/s/{n}" for n in ("fig.png", "big.jpg", "plot.SVG", "link.png", "gone.png")]
    paths += ["artifacts/s/data.csv", "../outside.png"]
    found, notes = figure_extras(paths, root, _scrub)
    assert [(e["name"], e["mime_type"]) for e in found] == [
        ("artifacts/s/fig.png", "image/png"),
        ("artifacts/s/plot.SVG", "image/svg+xml"),
    ]
    assert base64.b64decode(found[0]["content"]) == PNG
    assert base64.b64decode(found[1]["content"]).decode() == "<svg><text>***</text></svg>"
    assert len(notes) == 4
    assert "big.jpg: 0.0 MiB, over" in notes[0] and "not embedded" in notes[0]
    assert "link.png: outside the plan's folder" in notes[1]
    assert "gone.png: cannot be read" in notes[2]
    assert "../outside.png: outside the plan's folder" in notes[3]
