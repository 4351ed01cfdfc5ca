"""daemon.heap: start-up is frozen out of the collector's reach, the thresholds are the daemon's, and a cycle made
afterwards is still collected; `defaults()` gives CPython's settings back; `start_up_frozen()` does it for one run
and gives the caller's settings back (or leaves a process that froze its own start-up as it is)."""

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


def test_a_run_freezes_start_up_and_gives_the_callers_settings_back() -> None:
    heap.defaults()
    gc.set_threshold(1234, 5, 6)  # a caller's own settings
    try:
        with heap.start_up_frozen():
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == heap.THRESHOLDS
            a, b = _Node(), _Node()
            a.other, b.other = b, a
            alive = weakref.ref(a)
            del a, b
            gc.collect()
            assert alive() is None  # a cycle made during the run is still collected
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == (1234, 5, 6)
    finally:
        heap.defaults()


def test_a_run_inside_a_frozen_process_changes_nothing() -> None:
    try:
        frozen = heap.freeze_start_up((5000, 10, 10))  # a daemon that froze its own start-up
        with heap.start_up_frozen():
            assert gc.get_freeze_count() == frozen
            assert gc.get_threshold() == (5000, 10, 10)
        assert gc.get_freeze_count() == frozen  # not unfrozen by the run
        assert gc.get_threshold() == (5000, 10, 10)
    finally:
        heap.defaults()
