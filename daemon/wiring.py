"""Building the daemon's parts from settings: the broker adapters and the bar feed (the only place that names them)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from pipeline.core.calendar import MarketCalendar
from pipeline.core.clock import Clock
from pipeline.core.ports import Broker, MarketDataFeed
from pipeline.instruments.chains import chain_tickers


def make_broker(name: str, settings: Settings, clock: Clock, state_dir: Path) -> Broker:
    """The broker adapter called `name`, configured from settings."""
    if name == "paper":
        from adapters.paper import PaperBroker

        path = state_dir / "paper_book.json" if settings.paper.persistent else None
        return PaperBroker(settings.paper, clock, state_path=path)
    if name == "alpaca":
        from adapters.alpaca import AlpacaBroker

        return AlpacaBroker(settings.alpaca, clock, options=settings.options, chain_tickers=chain_tickers(settings))
    if name == "ibkr":
        from adapters.ibkr import IBKRBroker

        broker = IBKRBroker(settings.ibkr, clock, options=settings.options, chain_tickers=chain_tickers(settings))
        broker.attach_stops = settings.exits.broker_stop  # the entry's protective STP rides with it as a child
        return broker
    raise ValueError(f"unknown broker {name!r}")


def make_feed(settings: Settings, clock: Clock, calendar: MarketCalendar) -> MarketDataFeed:
    """The bar source of settings.data."""
    data = settings.data
    if data.source == "alpaca":
        from adapters.alpaca_data import AlpacaBarFeed

        return AlpacaBarFeed(settings.alpaca, data.tickers, clock)
    if data.source == "replay":
        from adapters.replay import ReplayFeed

        if data.replay_file is None:
            raise ValueError("data.replay_file must be set when data.source = 'replay'")
        return ReplayFeed(data.replay_file, clock, pace_bars_per_s=data.bars_per_second)
    from adapters.synthetic import SyntheticFeed

    return SyntheticFeed(data.tickers, clock, calendar, seed=data.synthetic_seed, days=data.synthetic_days,
                         pace_bars_per_s=data.bars_per_second)
