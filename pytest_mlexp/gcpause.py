"""The cyclic garbage collector paused around the plugin's own bulk work.

Reading the cached plan, building a plan's items, loading a results file and writing the
session's results and findings each make tens of thousands of containers that are either kept
(the plan, the items) or dropped at once (a document's lines), and none of which form cycles.
With the collector on, every 700 of them set off a young collection, every tenth of those a
middle one, and after enough of those a full one, which walks everything alive: collecting a
1,000-item plan set off 48 young and middle collections and a full one.  Paused, the same
work sets off one young collection when the block ends, and reference counting frees what is
dropped as before.  (The objects kept still count toward the next full collection: in that
session it comes later, during the run, instead.)  Only the plugin's own code runs inside a
paused block: a handler, a fixture or another plugin's hook never does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, and on again after it if it was on (a caller, or the
    user, may have turned it off: it stays off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
