"""StrategySet: several strategies driven as one by the engine.

Each bar goes to every strategy that trades its ticker, in configuration order; each signal leaves stamped
with the name of the strategy that made it (a strategy cannot speak for another). The exits' cloud source
(the EMA clouds momentum exhaustion, cloud flip and the trailing stop read) is fed every bar as well, unless
it is one of the members already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.core.models import Bar, CloudState, TradeSignal
from pipeline.core.ports import DeclaresExits
from pipeline.strategy.port import RescalesPrices, Strategy
from pipeline.strategy.rescale import check_ratio


class StrategySet:
    """The daemon's strategies: bars in, every member's signals out (stamped); the exits' clouds alongside."""

    def __init__(self, strategies: Sequence[Strategy], clouds: Any = None) -> None:
        names = [s.name for s in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategies: names must be unique, got {names}")
        self.members: tuple[Strategy, ...] = tuple(strategies)
        self.clouds = clouds
        self._feed_clouds = clouds is not None and all(clouds is not s for s in self.members)
        self.timeframes: tuple[str, ...] = tuple(dict.fromkeys(tf for s in self.members for tf in s.timeframes))
        self.name = "+".join(names)
        self.tickers = None
        self.warmup_bars = max(s.warmup_bars for s in self.members)
        self._routes: dict[str, tuple[Strategy, ...]] = {}
        self.signals_by_strategy: dict[str, int] = dict.fromkeys(names, 0)

    def declared_exits(self) -> dict[str, tuple[str, ...] | None]:
        """Each member's declared exits (`Strategy.exits`), None for one that declares none (all seven apply)."""
        return {s.name: tuple(s.exits) if isinstance(s, DeclaresExits) else None for s in self.members}

    def by_name(self, name: str) -> Strategy | None:
        for s in self.members:
            if s.name == name:
                return s
        return None

    def _members_for(self, symbol: str) -> tuple[Strategy, ...]:
        route = self._routes.get(symbol)
        if route is None:
            route = self._routes[symbol] = tuple(
                s for s in self.members if s.tickers is None or symbol in s.tickers)
        return route

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        """Feed one bar to the strategies that trade its ticker; their signals, stamped, in member order."""
        if self._feed_clouds:
            self.clouds.on_bar(bar)
        try:
            members = self._members_for(bar.symbol)
        except TypeError:  # an unhashable symbol: every member refuses the bar itself
            members = self.members
        out: list[TradeSignal] = []
        for strategy in members:
            signals = strategy.on_bar(bar)
            if signals:
                for signal in signals:
                    signal.strategy = strategy.name
                self.signals_by_strategy[strategy.name] += len(signals)
                out.extend(signals)
        return out

    # -- splits ----------------------------------------------------------------------------------------------
    def rescale(self, symbol: str, ratio: float) -> tuple[str, ...]:
        """Rescale `symbol`'s state after a split of `ratio` new shares per old one (`RescalesPrices.rescale`) in
        every member that trades it, and in the exits' clouds when they are not a member.

        Returns the names of those that could NOT (no `rescale` method: a plug-in, say), in member order, the
        clouds last: their state stays in pre-split prices and the caller should warn. An empty tuple: all did
        (a member that held nothing for `symbol` counts as done). ValueError for a bad `ratio`, before any
        member is touched."""
        ratio = check_ratio(ratio)
        owners = list(self._members_for(symbol))
        if self._feed_clouds:
            owners.append(self.clouds)
        return tuple(owner.name for owner in owners if not _rescaled(owner, symbol, ratio))

    # -- warm-up (the daemon's live start) ----------------------------------------------------------------------
    def is_warm(self, symbol: str, timeframe: str) -> bool:
        """True when every member that trades (symbol, timeframe) is warm for it."""
        members = [s for s in self._members_for(symbol) if timeframe in s.timeframes]
        return bool(members) and all(s.is_warm(symbol, timeframe) for s in members)

    def warm_up_minutes(self) -> int:
        minutes = [s.warm_up_minutes() for s in self.members]
        if self._feed_clouds:
            minutes.append(self.clouds.warm_up_minutes())
        return max(minutes)

    def state(self) -> dict[str, Any]:
        return {s.name: s.state() for s in self.members}

    # -- the exits' cloud source (LifecycleManager reads these) -------------------------------------------------
    def completed_on_last_bar(self, symbol: str) -> list[str]:
        return self.clouds.completed_on_last_bar(symbol) if self.clouds is not None else []

    def recent_states(self, symbol: str, timeframe: str, n: int) -> list[CloudState]:
        return self.clouds.recent_states(symbol, timeframe, n) if self.clouds is not None else []

    def cloud_state(self, symbol: str, timeframe: str) -> CloudState | None:
        return self.clouds.cloud_state(symbol, timeframe) if self.clouds is not None else None

    def recent_bars(self, symbol: str, timeframe: str, n: int) -> list[Bar]:
        return self.clouds.recent_bars(symbol, timeframe, n) if self.clouds is not None else []


def _rescaled(strategy: Any, symbol: str, ratio: float) -> bool:
    """Rescale `strategy`'s `symbol` if it can; False when it has no `rescale`."""
    if not isinstance(strategy, RescalesPrices):
        return False
    strategy.rescale(symbol, ratio)
    return True
