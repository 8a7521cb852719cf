"""The live progress line: a running sub-experiment's latest metrics and progress, on one line.

Shown only on an interactive terminal (a TTY with markup), never in CI logs, and not under
``-s``/``--capture=tee-sys`` or ``log_cli`` (the handler's own output and log lines would be
torn by a line that rewrites itself).  It draws after whatever pytest has written on the
current line (``research/research_plan.yaml ..``), using ANSI cursor movement so pytest's text
and colours are left as they were, and erases itself when the seed is done.

Everything goes through pytest's terminal writer (never ``sys.stdout``), with pytest's capture
suspended for the write, as pytest's own live logging does: while an item runs, file
descriptor 1 is redirected into the item's captured output.  The writer keeps track of the
current line's width for its ``[ 40%]`` column; our control characters would corrupt that
estimate, so it is put back after every write.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .textutil import fmt_number

if TYPE_CHECKING:
    import pytest

    from .execution import Task
    from .runner import MetricSink, ProgressSink

__all__ = ["LiveLine", "eta_seconds", "live_line", "shown", "watching"]

PLUGIN_NAME = "mlexp-live"
MIN_INTERVAL = 0.1  # at most 10 redraws a second: a tight training loop must not pay for the terminal
ERASE_TO_END = "\x1b[K"


def _fmt(value: Any) -> str:
    text = fmt_number(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def eta_seconds(elapsed: float, fraction: float) -> float | None:
    """Seconds left if the rest goes at the pace so far: ``elapsed * (1 - fraction) / fraction``.

    None when there is nothing to go on (no progress yet, a clock that did not move) or nothing
    left (done).  A straight-line estimate: the handler's own ``fraction`` is the best measure
    of work done that the plugin has, and it is what a researcher reads the line against.
    """
    if not (0.0 < fraction < 1.0) or not elapsed > 0.0 or not math.isfinite(elapsed):
        return None
    return elapsed * (1.0 - fraction) / fraction


class LiveLine:
    """One updating line on the terminal writer ``tw`` (``enabled`` False: does nothing)."""

    def __init__(
        self,
        tw: Any,
        *,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = MIN_INTERVAL,
        uncaptured: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.tw = tw
        self.uncaptured = uncaptured
        self.enabled = enabled and hasattr(tw, "_current_line")
        self.clock = clock
        self.min_interval = min_interval
        self.draws = 0
        self._label = ""
        self._metrics: dict[str, Any] = {}
        self._step: int | None = None
        self._progress: tuple[float, str | None] | None = None
        self._started = 0.0
        self._last_draw: float | None = None
        self._shown = False
        self._saved = ""  # pytest's text on the current line when we started drawing
        self._column = 0

    # --- sinks --------------------------------------------------------------------------------
    def sinks(self, task: Task) -> tuple[tuple[MetricSink, ...], tuple[ProgressSink, ...]]:
        """Sinks for one seed (the ``execution.observers`` factory)."""
        if not self.enabled:
            return (), ()
        self.start(task.label)
        prefix = f"{task.sub_id}/"

        def on_metrics(metrics: Mapping[str, Any], step: int | None) -> None:
            self._metrics.update(
                {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in metrics.items()}
            )
            self._step = step
            self.update()

        def on_progress(fraction: float, stage: str | None) -> None:
            self._progress = (fraction, stage)
            self.update()

        return (on_metrics,), (on_progress,)

    def start(self, label: str) -> None:
        self._label = label
        self._metrics = {}
        self._step = None
        self._progress = None
        self._started = self.clock()
        self._last_draw = None
        self.update(force=True)  # the label at once: something is running

    # --- drawing ------------------------------------------------------------------------------
    def render(self, width: int) -> str:
        parts = [self._label]
        elapsed = self.clock() - self._started
        if self._progress is not None:
            fraction, stage = self._progress
            parts.append(f"{fraction:4.0%}" + (f" {stage}" if stage else ""))
            eta = eta_seconds(elapsed, fraction)
            if eta is not None:  # next to the fraction: a narrow terminal cuts the metrics first
                parts.append(f"ETA {_elapsed(eta)}")
        if self._step is not None:
            parts.append(f"step {self._step}")
        if self._metrics:
            parts.append(" ".join(f"{k}={_fmt(v)}" for k, v in self._metrics.items()))
        parts.append(_elapsed(elapsed))
        text = " | ".join(parts)
        if width <= 0:
            return ""
        return text if len(text) <= width else text[: max(0, width - 3)] + "..."

    def update(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and self._last_draw is not None and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self._draw()

    def _begin(self) -> str:
        """Move to where our text starts: right after pytest's text on this line."""
        if not self._shown:
            self._saved = str(getattr(self.tw, "_current_line", ""))
            self._column = max(0, int(getattr(self.tw, "width_of_current_line", len(self._saved))))
            self._shown = True
        return "\r" + (f"\x1b[{self._column}C" if self._column else "")

    def _write(self, text: str) -> None:
        try:
            with self.uncaptured():
                self.tw.write(text, flush=True)
        finally:
            self.tw._current_line = self._saved  # our control characters are not pytest's text

    def _draw(self) -> None:
        move = self._begin()
        room = int(getattr(self.tw, "fullwidth", 80)) - self._column - 3
        if room < 20:
            return  # no room after pytest's text (a long -v node id): stay quiet
        self.draws += 1
        self._write(move + "  " + self.render(room) + ERASE_TO_END)

    def clear(self) -> None:
        """Erase the line's text and leave the cursor where pytest expects it."""
        if not self._shown:
            return
        self._write(self._begin() + ERASE_TO_END)
        self._shown = False


def _enabled(config: pytest.Config, tr: Any) -> bool:
    if tr is None:
        return False
    isatty = getattr(tr, "isatty", False)
    tty = bool(isatty() if callable(isatty) else isatty)
    tw = getattr(tr, "_tw", None) or config.get_terminal_writer()
    if not (tty and getattr(tw, "hasmarkup", False)):
        return False
    if getattr(config.option, "capture", "fd") in ("no", "tee-sys"):
        return False
    try:
        if config.getini("log_cli"):
            return False
    except ValueError:
        pass
    return True


def live_line(config: pytest.Config) -> LiveLine:
    """The session's live line (registered as a plugin, so state stays off globals)."""
    got = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(got, LiveLine):
        return got
    tr = config.pluginmanager.get_plugin("terminalreporter")
    tw = getattr(tr, "_tw", None) if tr is not None else None
    capman = config.pluginmanager.get_plugin("capturemanager")
    uncaptured = getattr(capman, "global_and_fixture_disabled", None) or contextlib.nullcontext
    if tw is None and tr is not None:
        tw = config.get_terminal_writer()
    line = LiveLine(
        tw,  # None without pytest's terminal reporter (-p no:terminal): the line is off
        enabled=_enabled(config, tr),
        uncaptured=uncaptured,
    )
    config.pluginmanager.register(line, PLUGIN_NAME)
    return line


def shown(config: pytest.Config) -> bool:
    """Whether the live line is on.  Seeds that run in another process write a progress file
    for it only then: nothing would read (or remove) one in a CI log."""
    return live_line(config).enabled


def watching(config: pytest.Config) -> AbstractContextManager[object]:
    """Show seeds that run in this process (and thread) on the live line while inside (a
    context manager that does nothing when the line is off: not a terminal, ``-s``...)."""
    line = live_line(config)
    return _Watching(line) if line.enabled else _IDLE


_IDLE = contextlib.nullcontext()


class _Watching:
    __slots__ = ("_line", "_token", "_var")

    def __init__(self, line: LiveLine) -> None:
        from .execution import observers

        self._line = line
        self._var = observers

    def __enter__(self) -> LiveLine:
        self._token = self._var.set(self._line.sinks)
        return self._line

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._token)
        self._line.clear()
