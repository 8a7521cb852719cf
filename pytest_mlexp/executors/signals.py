"""Keeping the plugin's SIGTERM/SIGINT handlers when a library replaces them.

pytest-mlexp turns SIGTERM into an interruption (like Ctrl-C) so that a session killed by a
scheduler still cancels its work and writes its results.  Some libraries install their own
handlers when they start: ``ray.init`` does, and SIGTERM then aborts pytest (exit 134) with no
results written and the library's processes orphaned.  An executor that starts such a library
wraps that call::

    from pytest_mlexp import keep_signal_handlers

    with keep_signal_handlers():
        ray.init()

Standard library only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["SIGNALS", "keep_signal_handlers"]

#: the signals whose handlers the plugin relies on (SIGTERM: its own; SIGINT: Python's, which
#: raises KeyboardInterrupt)
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def keep_signal_handlers(signals: Sequence[int] = SIGNALS) -> Iterator[list[str]]:
    """Run the block, then put back every handler of ``signals`` that it replaced.

    Yields a list that, after the block, holds the names of the signals whose handler was
    replaced and has been restored (empty when the library left them alone).  Handlers can be
    read and set only in the main thread; elsewhere the block just runs (call it from an
    executor's ``__init__``, ``bind`` or ``submit``, which run there, not from ``run_job``)."""
    restored: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield restored
        return
    saved: dict[int, Any] = {int(s): signal.getsignal(s) for s in signals}
    try:
        yield restored
    finally:
        for signum, handler in saved.items():
            if handler is None:  # installed outside Python: nothing to put back
                continue
            if signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
                restored.append(signal.Signals(signum).name)
