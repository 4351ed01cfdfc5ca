"""The replay's one-call-per-step paths give exactly (bit for bit) what the bar-by-bar ones give.

PriceHistory.update_many against update() per bar, bad closes and a change of timeframe included, and
RollingWindow.push against the textbook running-sum update it replaced (the same two operations per sum, in the
same order): the correlation and VaR checks read these figures, so a replay's decisions cannot drift.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.entry.return_stats import RollingWindow
from pipeline.entry.unified_risk import PriceHistory


def _reference_push(window: dict, value: float, size: int) -> None:
    """The running-sum update as written before (subtract the oldest, add the newest, exact again per window)."""
    values = window["values"]
    if len(values) == size:
        old = values.pop(0)
        window["total"] -= old
        window["squares"] -= old * old
    values.append(value)
    window["total"] += value
    window["squares"] += value * value
    window["pushes"] += 1
    if window["pushes"] >= size:
        window["pushes"] = 0
        window["total"] = math.fsum(values)
        window["squares"] = math.fsum(v * v for v in values)


def test_push_matches_the_reference_update_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 60):
        window = RollingWindow(size)
        ref = {"values": [], "total": 0.0, "squares": 0.0, "pushes": 0}
        for value in rng.normal(0.0, 0.02, 5_003).tolist():
            window.push(value)
            _reference_push(ref, value, size)
            assert (window.total, window.squares, list(window.values)) == (ref["total"], ref["squares"],
                                                                          ref["values"])


def test_sums_read_now_and_then_are_the_running_update_of_every_push() -> None:
    """The sums are worked out when read: read after every push or only now and then (across exact points, or
    not for longer than a window), they are the running update's bit for bit."""
    rng = np.random.default_rng(11)
    for size in (1, 3, 60):
        window = RollingWindow(size)
        ref = {"values": [], "total": 0.0, "squares": 0.0, "pushes": 0}
        gaps = iter(rng.integers(1, 3 * size + 2, 10_000).tolist())
        read_at = next(gaps)
        for count, value in enumerate(rng.normal(0.0, 0.02, 4_001).tolist(), 1):
            window.push(value)
            _reference_push(ref, value, size)
            if count == read_at:
                read_at += next(gaps)
                assert (window.sums(len(window)), window.values) == ((ref["total"], ref["squares"]), ref["values"])
                assert list(window.tail(size + 5)) == ref["values"]  # never a value from before the window


def _state(history: PriceHistory) -> dict:
    out = {}
    for symbol in sorted(history._closes):
        window = history.window(symbol)
        assert window is not None
        out[symbol] = (list(history._closes[symbol]), list(window.values), window.total, window.squares)
    return out


def test_update_many_is_update_per_bar() -> None:
    rng = np.random.default_rng(5)
    symbols = tuple(f"S{i}" for i in range(7))
    per_bar, per_step = PriceHistory(11, "1m"), PriceHistory(11, "1m")
    for step in range(400):
        closes = (100.0 * np.exp(rng.normal(0, 0.01, len(symbols)))).tolist()
        if step % 37 == 0:
            closes[step % len(symbols)] = float("nan")  # ignored by both
        if step % 41 == 0:
            closes[(step + 1) % len(symbols)] = -1.0
        timeframe = "5m" if step == 250 else "1m" if step == 300 else None  # a new horizon starts afresh
        chosen = symbols if step % 3 else symbols[:4]  # a step without some symbols
        for symbol, close in zip(chosen, closes, strict=False):
            per_bar.update(symbol, close, timeframe)
        per_step.update_many(chosen, closes[:len(chosen)], timeframe)
        assert per_bar.timeframe == per_step.timeframe
    assert _state(per_step) == _state(per_bar)


def test_checked_steps_of_one_tuple_are_update_per_bar() -> None:
    """A replay's steps share one tuple of symbols (their series are looked up once): the same state as bar by
    bar, through a new symbol, a step of other symbols and a change of timeframe."""
    rng = np.random.default_rng(9)
    wide, narrow = tuple(f"S{i}" for i in range(6)), ("S2", "S7")
    per_bar, per_step = PriceHistory(9, "1m"), PriceHistory(9, "1m")
    for step in range(300):
        symbols = narrow if step % 11 == 0 else wide
        timeframe = "5m" if step == 200 else None
        closes = (100.0 * np.exp(rng.normal(0, 0.01, len(symbols)))).tolist()
        for symbol, close in zip(symbols, closes, strict=True):
            per_bar.update(symbol, close, timeframe)
        per_step.update_many(symbols, closes, timeframe, checked=True)
    assert _state(per_step) == _state(per_bar)
