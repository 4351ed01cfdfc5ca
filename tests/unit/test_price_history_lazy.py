"""PriceHistory keeps a replay's checked steps as rows and applies them when a symbol is read: every read must
see what applying each bar in order gives, bit for bit (the old eager update, kept here as the reference)."""

from __future__ import annotations

import math
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.entry.return_stats import RollingWindow
from pipeline.entry.unified_risk import PriceHistory

MAXLEN = 7
SYMBOLS = ("A", "B", "C", "D", "E")


class Eager:
    """The bar-at-a-time reference: a deque of closes and a RollingWindow pushed once per bar."""

    def __init__(self) -> None:
        self.series: dict[str, tuple[deque[float], RollingWindow]] = {}
        self.timeframe = "1m"

    def update(self, symbol: str, close: float, timeframe: str) -> None:
        if not (math.isfinite(close) and close > 0):
            return
        if timeframe != self.timeframe:
            self.series.clear()
            self.timeframe = timeframe
        kept, window = self.series.setdefault(symbol, (deque(maxlen=MAXLEN), RollingWindow(MAXLEN - 1)))
        if kept:
            window.push(close / kept[-1] - 1.0)
        kept.append(close)


def _same(lazy: PriceHistory, eager: Eager, symbol: str) -> None:
    window = lazy.window(symbol)
    pair = eager.series.get(symbol)
    if pair is None:
        assert window is None and symbol not in lazy
        return
    kept, reference = pair
    assert window is not None and symbol in lazy
    assert window.values == reference.values
    assert (window.total, window.squares) == (reference.total, reference.squares)  # bit for bit
    assert lazy.closes(symbol).tolist() == list(kept)


closes = st.floats(min_value=1.0, max_value=500.0, allow_nan=False)
step = st.tuples(
    st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=5, unique=True).map(tuple),
    st.lists(closes, min_size=5, max_size=5),
    st.lists(st.integers(0, 5), max_size=3),  # where the step is cut (signals part-way through it)
    st.lists(st.sampled_from(SYMBOLS), max_size=3),  # symbols read at each cut
    st.sampled_from(["checked", "checked", "checked", "unchecked", "one_by_one", "other_tf"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=60), st.integers(2, 40))
def test_reads_see_every_bar_applied_in_order(steps: list, flush_rows: int) -> None:
    lazy, eager = PriceHistory(MAXLEN, "1m"), Eager()
    lazy.flush_rows = flush_rows
    tf = "1m"
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    for symbols, values, cuts, reads, how in steps:
        symbols = shared.setdefault(symbols, symbols)  # a replay's steps share one tuple of symbols
        prices = values[: len(symbols)]
        if how == "other_tf":
            tf = "5m" if tf == "1m" else "1m"
        if how == "one_by_one":
            for s, c in zip(symbols, prices, strict=True):
                lazy.update(s, c, tf)
                eager.update(s, c, tf)
        else:
            done = 0
            for cut in [*sorted(c for c in cuts if c <= len(symbols)), len(symbols)]:
                if cut <= done:
                    continue
                lazy.update_many(symbols, prices, tf, how != "unchecked", done, cut)
                for s, c in zip(symbols[done:cut], prices[done:cut], strict=True):
                    eager.update(s, c, tf)
                done = cut
                for symbol in reads:
                    _same(lazy, eager, symbol)
    for symbol in SYMBOLS:
        _same(lazy, eager, symbol)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), st.lists(st.lists(st.floats(-1, 1), max_size=30), max_size=8))
def test_extend_is_push_of_each_value(size: int, chunks: list[list[float]]) -> None:
    pushed, extended = RollingWindow(size), RollingWindow(size)
    for chunk in chunks:
        for value in chunk:
            pushed.push(value)
        extended.extend(chunk)
        assert extended.values == pushed.values
        assert (extended.total, extended.squares) == (pushed.total, pushed.squares)


def test_rows_waiting_are_bounded() -> None:
    history = PriceHistory(61, "1m")
    symbols = ("A", "B")
    for i in range(1_000):
        history.update_many(symbols, [100.0 + i, 50.0 + i], "1m", True)
        assert len(history._rows) < history.flush_rows
    assert history.closes("A")[-1] == 1099.0 and len(history.window("B")) == 60
