"""Limits on what a plan may ask for (SPEC section 14, "Plans").

Each one stops a plan from costing what nobody meant it to cost, or from failing late: an id names
folders and files (a 256-character one fails with "File name too long" after the work is done),
``seeds: 1000000000000`` would build a trillion-item tuple, and a sweep's points become pytest
items.  The YAML-level limits (size once aliases are expanded, nesting, integer digits) live in
``yamlload.py`` and are re-exported here so that all limits can be read in one place.
"""

from __future__ import annotations

from ..yamlload import MAX_DEPTH, MAX_EXPANDED, MAX_INT_DIGITS, shown

__all__ = [
    "COUNTED",
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "MAX_ID_LENGTH",
    "MAX_INT_DIGITS",
    "MAX_SEEDS",
    "MAX_SEED_VALUE",
    "MAX_SWEEP_POINTS",
    "MAX_TIMEOUT",
    "count",
    "shown",
]

# Experiment, sub-experiment, gate and sweep-point ids.  An item's working folder is named
# ``<sub>[<point>]-seed<k>``: with both ids at 100 characters it stays well under the 255 bytes
# most file systems allow in one name.
MAX_ID_LENGTH = 100
MAX_SEEDS = 10_000  # seeds of one sub-experiment (they all run inside one item)
# A seed names a folder (``seed<k>``) and is handed to torch.manual_seed, which takes at most this.
MAX_SEED_VALUE = 2**64 - 1
MAX_SWEEP_POINTS = 1_000_000  # points of one sweep (each one is a pytest item)
# resources.timeout in seconds (about three years): the local executor's interval timer refuses
# much more (OverflowError), and infinity is no timeout at all: leave it out instead.
MAX_TIMEOUT = 100_000_000


COUNTED = 10**30  # counts larger than this are not worth computing or printing


def count(number: int) -> str:
    """A count for a message: ``1,000,000`` written out; a number too long to read, cut short."""
    return f"{number:,}" if number <= COUNTED else "more than 10^30"
