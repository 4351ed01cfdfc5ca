"""ChainVenueMixin: the option chain port of a broker adapter that prefetches real chains (Alpaca, IB).

The adapter sets `option_fetcher` (its venue's fetch, with a `settings` attribute) and `option_chains` (a
pipeline.instruments.chains.PrefetchedChains over it); the mixin answers the OptionChainProvider and ChainVenue
ports from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.settings import OptionsSettings
from pipeline.instruments.chains import PrefetchedChains
from pipeline.instruments.options import OptionQuote


class ChainVenueMixin:
    """`chain`, `chain_label`, `last_price` and `reconfigure_options` over the adapter's prefetched chains."""

    option_fetcher: Any
    option_chains: PrefetchedChains

    @property
    def chain_label(self) -> str:
        return self.option_chains.chain_label

    def chain(self, underlying: str, spot: float, as_of: datetime) -> list[OptionQuote]:
        """The prefetched chain of `underlying` while fresh; else OptionChainUnavailable saying why."""
        return self.option_chains.chain(underlying, spot, as_of)

    def last_price(self, symbol: str) -> float | None:
        """An option's quoted mid from a fresh chain (the daemon marks held options with it: no venue streams
        option bars); None for anything else, or when the chain is stale or missing."""
        return self.option_chains.mid(symbol)

    def reconfigure_options(self, options: OptionsSettings, tickers: list[str]) -> None:
        """New DTE window, chain limits and tickers from now on (ChainVenue: a SIGHUP reload)."""
        self.option_fetcher.settings = options
        self.option_chains.reconfigure(options, tickers)
