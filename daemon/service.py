"""A TradingService that stands on its own: `TradingService(TradingConfig(...))`, then `await connect()`.

The spec's high-level API runs over the daemon's own core (journal, state, ledger, orchestrator, lifecycle). Only
`daemon` wires concrete adapters, so this is where a service without a running daemon gets one: `connect()`
builds a `Core` on the paper broker (non-persistent, in a private state directory unless `state_dir` is given)
with `initial_cash` from the config, on the live clock, and marks the first synthetic bar's prices for the
shipped tickers (or the `prices` given), so it trades offline. `paper_trading=False` is refused: a live account
is traded through the daemon (`ordergate buy/sell/rebalance`), never from a throwaway core.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from pipeline.core.clock import Clock, LiveClock
from pipeline.trading_service import TradingConfig
from pipeline.trading_service import TradingService as _PipelineTradingService


class TradingService(_PipelineTradingService):
    """The spec's TradingService with the daemon's defaults: paper broker, live clock, shipped tickers."""

    def __init__(
        self,
        config: TradingConfig,
        *,
        settings: Settings | None = None,
        prices: Mapping[str, float] | None = None,
        state_dir: str | Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not config.paper_trading:
            raise ValueError("paper_trading: a standalone TradingService trades only the paper broker; "
                             "use the daemon (ordergate buy/sell/rebalance) for a live account")
        self.config = config
        self._scratch = None if state_dir is not None else tempfile.TemporaryDirectory(prefix="ordergate-service-")
        self._state_dir = Path(state_dir) if state_dir is not None else Path(self._scratch.name)  # type: ignore[union-attr]
        self._settings = settings
        self._prices = dict(prices) if prices is not None else None
        self._clock: Clock = clock or LiveClock()
        self.core: Any = None
        self._connected = False

    async def connect(self) -> None:
        """Build and start the paper core (once), then mark its prices."""
        if self.core is not None:
            return
        from daemon.core import Core  # the wiring (imported here: `import daemon` stays light)

        settings = self._settings or load_settings(
            state_dir=self._state_dir, broker={"primary": "paper", "fallback": None},
            paper={"persistent": False, "initial_cash": self.config.initial_cash,
                   "commission_per_share": self.config.commission_per_share,
                   "slippage_bps": self.config.slippage_bps},
        )
        core = Core(settings, self._clock, state_dir=self._state_dir)
        await core.start()
        for symbol, price in (self._prices or _first_prices(settings)).items():
            core.brokers["paper"].set_price(symbol, price)
            core.ledger.mark(symbol, price)
        self.core = core
        super().__init__(
            self.config, orchestrator=core.orchestrator, ledger=core.ledger, price_lookup=core.prices.price,
            account=core.account.account_state, clock=self._clock, lifecycle=core.lifecycle, settle=core.settle,
        )
        await super().connect()

    async def buy(self, ticker: str, *, dollars: float | None = None, shares: float | None = None) -> Any:
        """As the base class, then wait until the fill is in the ledger (the next call sees the position)."""
        result = await super().buy(ticker, dollars=dollars, shares=shares)
        await self.core.settle()
        return result

    async def sell(self, ticker: str, *, dollars: float | None = None, shares: float | None = None,
                   short: bool = False) -> Any:
        """As the base class, then wait until the fill is in the ledger."""
        result = await super().sell(ticker, dollars=dollars, shares=shares, short=short)
        await self.core.settle()
        return result

    async def close(self) -> None:
        """Stop the core (finish submissions, flush the journal, disconnect)."""
        if self.core is not None:
            await self.core.stop()
            self.core = None
        self._connected = False


def _first_prices(settings: Settings) -> dict[str, float]:
    """The first synthetic bar's close of each configured ticker (the embedded data `make run` trades)."""
    from adapters.synthetic import SyntheticFeed

    batch = next(iter(SyntheticFeed(settings.data.tickers, None).bar_batches()), [])
    return {bar.symbol: bar.close for bar in batch}
