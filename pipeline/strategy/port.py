"""The Strategy port: bars in, signals out. What the daemon needs of any strategy it runs.

A strategy is built once at start from its `[[strategies]]` table (`config.settings.StrategySpec`) by a
factory: the class's `from_spec(spec, calendar=...)` classmethod, found through the entry point group
`ordergate.strategies` or a dotted path `module:Class` (see `pipeline.strategy.registry`). It keeps its own
state (indicators, channels, bars seen) and is fed every feed bar of the tickers it trades, in time order;
`on_bar` returns the entry signals of that bar (usually none). The daemon stamps each signal with the
strategy's name, so every order, fill and trade it leads to carries it.

Exits: a strategy may declare `exits`, the names of the seven exits (pipeline.positions.exit_monitor) its
positions get beside those every position gets (stop loss, profit target, time stop, EOD close, trailing stop);
without the attribute its positions get all seven. The EMA cloud strategy declares all seven, the daily
breakout none beyond the common ones.

Warm-up: a strategy emits nothing until it has seen `warmup_bars` completed bars of a (symbol, timeframe);
`is_warm` says whether it has, and `warm_up_minutes` how much 1-minute history a live start should feed it
(through `on_bar`, signals discarded) to be warm at once.

Splits (optional, `RescalesPrices`): after a split of `ratio` new shares per old one, `rescale(symbol, ratio)`
puts the strategy's state for that symbol in post-split terms, exactly as if its whole history had been
split-adjusted (prices divided by `ratio`, volumes multiplied by it), so the first post-split bars do not read
as a crash. A strategy without the method (a plug-in, say) keeps pre-split state; `StrategySet.rescale` names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from pipeline.core.calendar import MarketCalendar
from pipeline.core.models import Bar, TradeSignal


@runtime_checkable
class Strategy(Protocol):
    """A trading strategy: its name, the timeframes and tickers it trades, its warm-up, bars -> signals."""

    name: str
    timeframes: tuple[str, ...]
    tickers: tuple[str, ...] | None   # None: every ticker of the feed
    warmup_bars: int

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        """Feed one bar (of a ticker it trades); returns the entry signals it completes, possibly none."""
        ...

    def is_warm(self, symbol: str, timeframe: str) -> bool:
        """True once it can emit signals for (symbol, timeframe)."""
        ...

    def warm_up_minutes(self) -> int:
        """Minutes of 1-minute history that make it warm for every timeframe."""
        ...

    def state(self) -> dict[str, Any]:
        """Its own state, as plain data (for status and tests): bars seen, what it watches."""
        ...


@runtime_checkable
class RescalesPrices(Protocol):
    """Optional capability of a strategy: rescale one symbol's state after a stock split."""

    def rescale(self, symbol: str, ratio: float) -> bool:
        """After a split of `ratio` new shares per old one (2.0 for 2:1, 0.1 for 1:10): divide every price it
        holds for `symbol` (bars, partial bars, averages, channels, ATRs, last prices) by `ratio` and multiply
        every volume by it, in place, as if the whole history had been split-adjusted; counts, timestamps and
        colours stay. True when it held state for `symbol`, False (nothing done) otherwise. ValueError unless
        `ratio` is a finite number > 0."""
        ...


@runtime_checkable
class BatchStrategy(Protocol):
    """A strategy that also takes a whole time step at once (the EMA clouds: numpy over the step's symbols)."""

    def on_batch(self, batch: Sequence[Bar]) -> list[tuple[int, TradeSignal]]:
        """Feed bars sharing a timestamp; (position in the batch, signal) in batch order, as `on_bar` would."""
        ...


class StrategyFactory(Protocol):
    """What an entry point or dotted path names: a class (or callable) with `from_spec`."""

    def from_spec(self, spec: Any, *, calendar: MarketCalendar | None = None) -> Strategy:
        ...


def trades(strategy: Strategy, symbol: str) -> bool:
    """True when `strategy` trades `symbol` (no ticker list: every symbol)."""
    return strategy.tickers is None or symbol in strategy.tickers
