"""Live progress from worker processes: the worker appends what the handler logs to a small
JSON-lines file in its workdir; the pytest process follows it while it waits for the seed and
feeds the live line.  Standard library only (it runs in the worker)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .runner import MetricSink, ProgressSink


@contextlib.contextmanager
def progress_file(path: Path) -> Iterator[tuple[MetricSink, ProgressSink]]:
    """Sinks that append each logged point to ``path`` (flushed, so the parent sees it soon);
    the file is closed when the seed ends (a warm worker runs many seeds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        yield _sinks(fh)


def _sinks(fh: TextIO) -> tuple[MetricSink, ProgressSink]:
    def on_metrics(metrics: Mapping[str, Any], step: int | None) -> None:
        fh.write(json.dumps({"m": dict(metrics), "s": step}, default=repr) + "\n")
        fh.flush()

    def on_progress(fraction: float, stage: str | None) -> None:
        fh.write(json.dumps({"p": fraction, "stage": stage}) + "\n")
        fh.flush()

    return on_metrics, on_progress


class Follower:
    """Reads the complete lines a worker appended since the last poll and replays them."""

    def __init__(
        self, path: Path, metric_sinks: tuple[MetricSink, ...], progress_sinks: tuple[ProgressSink, ...]
    ):
        self.path = path
        self.metric_sinks = metric_sinks
        self.progress_sinks = progress_sinks
        self._offset = 0

    def close(self) -> None:
        self.poll()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
        self._offset += end
        for line in data[:end].splitlines():
            try:
                point = json.loads(line)
            except ValueError:
                continue
            if "m" in point:
                for metric_sink in self.metric_sinks:
                    metric_sink(point["m"], point.get("s"))
            elif "p" in point:
                for progress_sink in self.progress_sinks:
                    progress_sink(float(point["p"]), point.get("stage"))
