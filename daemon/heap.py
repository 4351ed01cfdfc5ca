"""The collector's settings of a running daemon: what start-up built is frozen out of the collector's reach, and
young collections are rarer than CPython's default.

Start-up (settings, the NYSE calendar and its pandas tables, the broker SDKs, the ledger rebuilt from the
journal) leaves several hundred thousand long-lived container objects. With the default settings every full
collection walks all of them, a pause of milliseconds in the middle of whatever decision or send is running —
the signal -> order p99. `freeze_start_up()` collects once, then moves every surviving object to the permanent
generation (`gc.freeze()`), which no collection walks; objects made afterwards are collected as usual.
Reference cycles made after start-up are still found: only the collector's thresholds change, never whether it
runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# generation 0 every 10 000 net container allocations instead of 700 (a decision allocates a few hundred, so the
# default collects every few signals); the older generations keep CPython's ratios of 10
THRESHOLDS = (10_000, 10, 10)


def freeze_start_up(thresholds: tuple[int, int, int] = THRESHOLDS) -> int:
    """Collect once, freeze what survived start-up, set the thresholds; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()


def defaults() -> None:
    """CPython's own settings again (tests, a bench's comparison run): nothing frozen, thresholds (700, 10, 10)."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


@contextmanager
def start_up_frozen(thresholds: tuple[int, int, int] = THRESHOLDS) -> Iterator[None]:
    """`freeze_start_up()` for the length of a run inside a process that may have settings of its own (a replay
    from the CLI or a test): on leaving, the thresholds are the caller's again and what was frozen is unfrozen. A
    process that has already frozen something (a daemon) is left as it is: nothing is frozen or changed."""
    if gc.get_freeze_count():
        yield
        return
    before = gc.get_threshold()
    freeze_start_up(thresholds)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
