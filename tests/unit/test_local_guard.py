"""What the local executor guards while a handler runs in the pytest process (``guard`` and
``unguard``)."""

from __future__ import annotations

import io
import os
import sys

import pytest

from pytest_mlexp.execution import HandlerExited
from pytest_mlexp.executors.local import guard, unguard


class _Stream(io.StringIO):
    flushed = 0

    def flush(self) -> None:
        self.flushed += 1
        super().flush()


def test_exit_and_closed_streams_are_caught_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _Stream(), _Stream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    real_exit = os._exit
    exits: list[int] = []

    def handler() -> None:
        sys.stdout.close()  # a flush, not a close
        sys.stderr = io.StringIO()  # replaced: put back afterwards
        os._exit(3)

    with pytest.raises(HandlerExited, match=r"os\._exit\(3\)"):
        undo = guard(exits)
        try:
            handler()
        finally:
            unguard(undo)
    assert exits == [3]
    assert os._exit is real_exit
    assert sys.stdout is out and sys.stderr is err
    assert not out.closed and out.flushed == 1
    assert "close" not in vars(out) and "close" not in vars(err)


def test_a_close_the_handler_removed_itself_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Stream()
    monkeypatch.setattr(sys, "stdout", out)
    undo = guard([])
    del out.close  # the instance's stand-in: the class's close shows again
    unguard(undo)
    assert "close" not in vars(out) and not out.closed
