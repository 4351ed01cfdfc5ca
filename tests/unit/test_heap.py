"""daemon.heap: start-up is frozen out of the collector's reach, the thresholds are the daemon's, and a cycle made
afterwards is still collected; `defaults()` gives CPython's settings back."""

from __future__ import annotations

import gc
import weakref

from daemon import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_freeze_then_later_cycles_are_still_collected() -> None:
    try:
        frozen = heap.freeze_start_up()
        assert frozen > 0 and gc.get_freeze_count() == frozen
        assert gc.get_threshold() == heap.THRESHOLDS
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made after start-up: only the collector frees it
        alive = weakref.ref(a)
        del a, b
        gc.collect()
        assert alive() is None
    finally:
        heap.defaults()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)
