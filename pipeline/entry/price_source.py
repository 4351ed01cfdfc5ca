"""The price entries are sized on: the primary broker's own where it quotes one (QuotesPrices: the paper
broker's, what it fills at), else the data feed's last bar (the ledger's marks)."""

from __future__ import annotations

from pipeline.core.ports import QuotesPrices
from pipeline.positions.ledger import Ledger


class MarketPrices:
    """Looks a symbol's current price up; None when neither the broker nor the feed has one."""

    def __init__(self, broker: object, ledger: Ledger) -> None:
        self.quotes = broker if isinstance(broker, QuotesPrices) else None
        self.ledger = ledger

    def price(self, symbol: str) -> float | None:
        """The broker's price of `symbol`, else the last one marked in the ledger."""
        own = self.quotes.last_price(symbol) if self.quotes is not None else None
        return own if own is not None else self.ledger.last_price(symbol)
