"""The live progress line: drawn on a (fake) TTY writer, throttled, erased; absent elsewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_mlexp import live
from pytest_mlexp.live import LiveLine
from tests.conftest import Project

PREFIX = "research/research_plan.yaml ."


class FakeTTYWriter:
    """What LiveLine uses of pytest's TerminalWriter, tracking the current line as it does."""

    hasmarkup = True

    def __init__(self, width: int = 100) -> None:
        self.fullwidth = width
        self._current_line = PREFIX
        self.writes: list[str] = []

    @property
    def width_of_current_line(self) -> int:
        return len(self._current_line)

    def write(self, msg: str, *, flush: bool = False, **markup: bool) -> None:
        self.writes.append(msg)
        self._current_line += msg.rsplit("\n", 1)[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _task(label: str = "e_1 seed 0") -> Any:
    return types.SimpleNamespace(label=label, sub_id="e_1")


def test_draws_after_pytest_text_throttles_and_erases() -> None:
    tw, clock = FakeTTYWriter(), Clock()
    line = LiveLine(tw, enabled=True, clock=clock)
    (on_metrics,), (on_progress,) = line.sinks(_task())
    assert len(tw.writes) == 1  # the label at once
    move = f"\r\x1b[{len(PREFIX)}C"
    assert tw.writes[0].startswith(move + "  e_1 seed 0 | 0s") and tw.writes[0].endswith("\x1b[K")
    clock.now += 0.01
    on_metrics({"e_1/loss": 0.123456, "e_1/acc": 0.9}, 3)
    on_progress(0.5, "train")
    assert len(tw.writes) == 1  # throttled: at most one redraw per 0.1 s
    clock.now += 0.2
    on_metrics({"e_1/loss": 0.1}, 4)
    assert len(tw.writes) == 2
    assert tw.writes[1] == move + "  e_1 seed 0 |  50% train | ETA 0s | step 4 | loss=0.1 acc=0.9 | 0s\x1b[K"
    assert tw._current_line == PREFIX  # pytest's width estimate is untouched
    line.clear()
    assert tw.writes[-1] == move + "\x1b[K" and tw._current_line == PREFIX
    line.clear()  # nothing shown: nothing written
    assert len(tw.writes) == 3


@pytest.mark.parametrize(
    ("elapsed", "fraction", "expected"),
    [
        (30.0, 0.25, 90.0),  # a quarter done in 30 s: three more quarters at that pace
        (10.0, 0.5, 10.0),
        (1.0, 0.001, 999.0),
        (5.0, 0.0, None),  # no progress yet: nothing to go on
        (5.0, 1.0, None),  # done: nothing left
        (0.0, 0.5, None),  # a clock that did not move
        (float("nan"), 0.5, None),
    ],
)
def test_eta_is_elapsed_over_fraction(elapsed: float, fraction: float, expected: float | None) -> None:
    got = live.eta_seconds(elapsed, fraction)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_line_shows_eta_once_progress_is_reported() -> None:
    tw, clock = FakeTTYWriter(width=200), Clock()
    line = LiveLine(tw, enabled=True, clock=clock, min_interval=0.0)
    (on_metrics,), (on_progress,) = line.sinks(_task())
    clock.now += 12.0
    on_metrics({"e_1/loss": 0.5}, 1)
    assert "ETA" not in tw.writes[-1]  # metrics alone say nothing about how far along it is
    clock.now += 18.0
    on_progress(0.25, None)  # 30 s for a quarter: 90 s to go
    assert "|  25% | ETA 1m30s | step 1 | loss=0.5 | 30s\x1b[K" in tw.writes[-1]
    clock.now += 3570.0
    on_progress(0.5, "eval")  # one hour for half: an hour to go
    assert "|  50% eval | ETA 1h00m |" in tw.writes[-1]
    clock.now += 1.0
    on_progress(1.0, "eval")
    assert "ETA" not in tw.writes[-1] and "| 100% eval |" in tw.writes[-1]
    line.start("e_1 seed 1")  # the next seed starts its own estimate
    assert "ETA" not in tw.writes[-1]


def test_writes_happen_with_capture_suspended() -> None:
    tw, suspended = FakeTTYWriter(), []
    state = {"on": False}

    class Uncaptured:
        def __enter__(self) -> None:
            state["on"] = True

        def __exit__(self, *exc: object) -> None:
            state["on"] = False

    def write(msg: str, **kw: Any) -> None:
        suspended.append(state["on"])

    tw.write = write  # type: ignore[method-assign]
    line = LiveLine(tw, enabled=True, uncaptured=Uncaptured)
    line.sinks(_task())
    line.clear()
    assert suspended == [True, True]  # else an item's fd capture swallows the line


def test_render_truncates_and_narrow_terminal_stays_quiet() -> None:
    tw, clock = FakeTTYWriter(), Clock()
    line = LiveLine(tw, enabled=True, clock=clock)
    line.start("x")
    line._metrics = {f"m{i}": i * 1.5 for i in range(40)}
    text = line.render(30)
    assert len(text) == 30 and text.endswith("...")
    narrow = FakeTTYWriter(width=len(PREFIX) + 10)
    LiveLine(narrow, enabled=True, clock=clock).sinks(_task())
    assert narrow.writes == []


def test_disabled_line_writes_nothing() -> None:
    tw = FakeTTYWriter()
    line = LiveLine(tw, enabled=False)
    assert line.sinks(_task()) == ((), ())
    line.update(force=True)
    line.clear()
    assert tw.writes == []


def _tr(tty: bool, markup: bool) -> Any:
    return types.SimpleNamespace(isatty=lambda: tty, _tw=types.SimpleNamespace(hasmarkup=markup))


def test_enabled_only_on_a_tty_with_capture(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure()
    assert live._enabled(config, _tr(True, True))
    assert not live._enabled(config, _tr(False, False))  # CI logs
    assert not live._enabled(config, _tr(True, False))  # --color=no
    assert not live._enabled(pytester.parseconfigure("-s"), _tr(True, True))
    assert not live._enabled(pytester.parseconfigure("--capture=tee-sys"), _tr(True, True))
    assert not live._enabled(pytester.parseconfigure("-o", "log_cli=true"), _tr(True, True))


PLAN = """
project: {name: Demo}
experiments:
  exp-a:
    sub_experiments:
      e_a_1:
        seeds: 2
"""

HANDLERS = """
def e_a_1(runner):
    for i in range(3):
        runner.log_metrics({"loss": 1.0 / (i + 1)})
        runner.progress((i + 1) / 3, "train")
    return {"metrics": {"acc": 0.8}}
"""

PROCESS_HANDLERS = """
import time
from pathlib import Path

def e_a_1(runner):
    deadline = time.monotonic() + 60  # a hang guard
    for i in range(3):
        runner.log_metrics({"loss": 1.0 / (i + 1)}, step=i)
        runner.progress((i + 1) / 3, "train")
        while i == 1 and not Path(SEEN).exists():  # step 1: loss=0.5 (the test's pattern)
            assert time.monotonic() < deadline, "the live line never showed a step"
            time.sleep(0.02)
            runner.log_metrics({"loss": 0.5}, step=1)
            runner.progress(2 / 3, "train")
    return {"metrics": {"acc": 0.8}}
"""


def test_live_line_in_a_run(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    result = project.run("--experiment", "exp-a")  # pytester's output is not a TTY
    assert result.ret == 0 and "\x1b[" not in result.stdout.str()
    plain = next(line for line in result.stdout.lines if line.startswith("research/research_plan.yaml"))
    monkeypatch.setattr(live, "_enabled", lambda config, tr: True)

    class Throttled(live.LiveLine):
        """A throttle interval no run reaches: what is throttled does not depend on the
        machine's speed (with 0.1 s, a stall between two steps would let one more draw in)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "min_interval": 3600.0})

    monkeypatch.setattr(live, "LiveLine", Throttled)
    result = project.run("--experiment", "exp-a")
    out = result.stdout.str()
    assert result.ret == 0
    assert "e_a_1 seed 0 | 0s\x1b[K" in out and "e_a_1 seed 1" in out
    assert out.count("\x1b[K") == 3  # each seed drawn once (the rest throttled), erased once
    # After the line is erased, pytest's dots and its [100%] column land where they would have.
    assert "\x1b[K" + plain[len("research/research_plan.yaml ") :] + "\n" in out


@pytest.mark.parametrize("executor", ["local", "process"])
def test_a_session_without_pytests_terminal_reporter_runs_its_items(project: Project, executor: str) -> None:
    # -p no:terminal: the live line asked pytest for a terminal writer there is none of
    # (every item failed; under process, whose work goes ahead, an INTERNALERROR).
    project.plan(PLAN)
    project.handlers("exp_a", HANDLERS)
    result = project.run("--experiment", "exp-a", "--mlexp-executor", executor, "-p", "no:terminal")
    assert result.ret == 0
    assert project.results("exp-a")["sub_experiments"]["e_a_1"]["status"] == "passed"


@pytest.mark.parametrize("terminal", [False, True], ids=["ci-log", "terminal"])
def test_seeds_in_workers_leave_no_progress_file_behind(
    project: Project, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    # A worker writes its seed's points to a progress file for the live line.  In a CI log
    # nothing read them or removed them: two files a seed, run after run, in the work folders.
    # On a terminal the line follows one seed at a time and removed only the files it followed.
    project.plan(PLAN.replace("seeds: 2", "seeds: 4"))
    project.handlers("exp_a", HANDLERS)
    if terminal:
        monkeypatch.setattr(live, "_enabled", lambda config, tr: True)
    for _ in range(2):
        result = project.run(
            "--experiment", "exp-a", "--mlexp-executor", "process", "--mlexp-concurrency", "2"
        )  # fmt: skip
        assert result.ret == 0
        assert ("\x1b[K" in result.stdout.str()) is terminal
    assert [str(p) for p in project.path.rglob(".mlexp-progress-*")] == []


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("executor", ["local", "process"])
def test_live_line_on_a_real_terminal(project: Project, executor: str) -> None:
    """A real TTY, a real pytest process: what a researcher's terminal receives (for the
    process executor the worker's logged points are followed through its progress file)."""
    seen = project.path / "seen"  # the test saw a step on the terminal
    # progress reported: the line carries an ETA next to the fraction
    step_drawn = re.compile(r"\| +\d+% train \| ETA \d+s \| step \d \| loss=0\.\d+ \| \ds\x1b\[K")
    project.plan(PLAN)
    if executor == "local":
        # In-process seeds are drawn as they log, at most every 0.1 s (live.MIN_INTERVAL): a
        # pause longer than that between steps lets a step be drawn. Not a race: a sleep never
        # ends early, and nothing here waits for another process.
        handlers = "import time\n" + HANDLERS.replace(
            "for i in range(3):", "for i in range(3):\n        time.sleep(0.12)"
        )
    else:
        # A worker's points are replayed by a poller (every 0.1 s, one redraw per poll): seed 0
        # keeps logging its second step until the test has seen it drawn, then goes on.
        handlers = PROCESS_HANDLERS.replace("SEEN", repr(str(seen)))
    project.handlers("exp_a", handlers)
    args = ["-p", "no:cacheprovider", "--experiment", "exp-a", "--mlexp-executor", executor]
    proc, out = run_on_a_terminal(project, args, seen, step_drawn)
    assert proc.wait(60) == 0
    assert "\r\x1b[28C  e_a_1 seed 0 | 0s\x1b[K" in out  # after "research/research_plan.yaml "
    assert step_drawn.search(out), repr(out[:3000])
    assert "\r\x1b[28C\x1b[K\x1b[32m." in out  # erased before pytest writes its dots


def run_on_a_terminal(
    project: Project, args: list[str], seen: Path, step_drawn: re.Pattern[str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m pytest *args`` in ``project`` on a pseudo-terminal, as a researcher's terminal
    would see it: returns the process (ended or ending: its terminal is closed) and everything it
    wrote.  ``seen`` is created once ``step_drawn`` has been drawn, so that a handler waiting for
    it goes on (the test saw a step on the terminal)."""
    master, slave = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm", "WANDB_MODE": "disabled"}
    for name in ("NO_COLOR", "PY_COLORS", "FORCE_COLOR", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=project.path,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
        if not seen.exists() and step_drawn.search(b"".join(chunks).decode(errors="replace")):
            seen.write_text("")
    os.close(master)
    return proc, b"".join(chunks).decode(errors="replace")
