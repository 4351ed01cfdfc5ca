"""IB's option chains through ib_async's non-blocking calls, as OptionQuotes in our OCC form.

One fetch of an underlying (run by pipeline.instruments.chains.PrefetchedChains in the background):
1. `qualifyContractsAsync(Stock)` for the underlying's conId, then `reqSecDefOptParamsAsync` for its expirations,
   strikes, trading class and multiplier (the SMART chain; a multiplier other than OPTION_MULTIPLIER is skipped);
2. the underlying's price from a `reqTickersAsync` snapshot, to keep the `options.chain_strikes_each_side` strikes
   either side of it (IB allows about 100 market data lines at once);
3. per expiry inside the DTE window, `reqContractDetailsAsync(Option(symbol, expiry))`: the listed contracts;
4. their market data: `reqMktData(contract, "101")` (bid/ask, model greeks and — generic tick 101 — open
   interest, which a snapshot cannot carry), in batches, until each quote is complete or `quote_wait` passes,
   then `cancelMktData`. A contract without a two-sided quote is left out; a missing greek stays None.
ib_async sends at most 45 messages a second and queues the rest in order, orders included: the chain's own
messages are paced to `MESSAGES_PER_SECOND` so a refresh never builds a queue an order would wait behind.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ib_async import IB, Contract, Option, Stock, Ticker

from config.settings import OptionsSettings
from pipeline.core.models import OPTION_MULTIPLIER
from pipeline.core.numbers import positive_number
from pipeline.instruments.occ import OccError, occ_contract
from pipeline.instruments.options import OptionQuote

NEW_YORK = ZoneInfo("America/New_York")
OPEN_INTEREST_TICKS = "101"
BATCH = 40  # market data lines at once (IB's default limit is 100 for the whole account)
MESSAGES_PER_SECOND = 20.0  # under half of ib_async's 45/s: the rest stays free for orders
T = TypeVar("T")
Call = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _expiry(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None


class IBOptionChains:
    """Fetches one underlying's chain from TWS / IB Gateway for the chain cache."""

    def __init__(self, ib: IB, call: Call, require_ready: Callable[[], None], settings: OptionsSettings,
                 quote_wait: float = 3.0) -> None:
        self.ib = ib
        self._call = call
        self._require_ready = require_ready
        self.settings = settings
        self.quote_wait = quote_wait
        self.messages_per_second = MESSAGES_PER_SECOND
        self._next_send = 0.0

    async def fetch(self, underlying: str, as_of: datetime) -> list[OptionQuote]:
        self._require_ready()
        stock = Stock(underlying, "SMART", "USD")
        qualified = await self._call(lambda: self.ib.qualifyContractsAsync(stock), f"qualify {underlying}")
        if not qualified or not getattr(qualified[0], "conId", 0):
            raise LookupError(f"IB knows no stock {underlying!r}")
        stock = qualified[0]
        params = await self._call(
            lambda: self.ib.reqSecDefOptParamsAsync(underlying, "", "STK", stock.conId), f"option params {underlying}")
        chain = next((p for p in params or [] if p.exchange == "SMART" and p.tradingClass == underlying), None)
        if chain is None or _finite(chain.multiplier) != OPTION_MULTIPLIER:
            return []
        spot = await self._spot(stock)
        today = as_of.astimezone(NEW_YORK).date()
        expiries = [e for e in sorted(chain.expirations)
                    if (d := _expiry(e)) is not None and self.settings.dte_min <= (d - today).days
                    <= self.settings.dte_max]
        strikes = self._strikes_near(sorted(chain.strikes), spot)
        contracts: list[Contract] = []
        for expiry in expiries:
            wanted = Option(underlying, expiry, 0.0, "", "SMART", currency="USD", tradingClass=chain.tradingClass)
            details = await self._call(lambda w=wanted: self.ib.reqContractDetailsAsync(w), f"options {expiry}")
            contracts += [d.contract for d in details or [] if d.contract is not None
                          and d.contract.strike in strikes and _finite(d.contract.multiplier) == OPTION_MULTIPLIER]
        contracts = contracts[: self.settings.chain_max_contracts]
        quotes: list[OptionQuote] = []
        for start in range(0, len(contracts), BATCH):
            quotes += await self._quotes(underlying, contracts[start:start + BATCH])
        return quotes

    async def _spot(self, stock: Contract) -> float:
        tickers = await self._call(lambda: self.ib.reqTickersAsync(stock), f"price of {stock.symbol}")
        ticker = tickers[0] if tickers else None
        price = positive_number(ticker.marketPrice()) if ticker is not None else None
        if price is None and ticker is not None:
            price = positive_number(ticker.close)
        if price is None:
            raise LookupError(f"no price for {stock.symbol} from IB (no market data)")
        return price

    def _strikes_near(self, strikes: list[float], spot: float) -> set[float]:
        n = self.settings.chain_strikes_each_side
        below = [k for k in strikes if k <= spot][-n:]
        above = [k for k in strikes if k > spot][:n]
        return set(below + above)

    async def _pace(self) -> None:
        """Wait for this chain's next message slot (monotonic time: a rate, not market time)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_send > now:
            await asyncio.sleep(self._next_send - now)
        self._next_send = max(now, self._next_send) + 1.0 / self.messages_per_second

    async def _quotes(self, underlying: str, contracts: list[Contract]) -> list[OptionQuote]:
        tickers: list[Ticker] = []
        subscribed: list[Contract] = []
        try:
            for contract in contracts:
                await self._pace()
                tickers.append(self.ib.reqMktData(contract, OPEN_INTEREST_TICKS, False, False))
                subscribed.append(contract)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.quote_wait
            while not all(self._complete(t) for t in tickers) and loop.time() < deadline:
                await asyncio.sleep(0.05)
        except BaseException:
            for contract in subscribed:  # cancelled or failed: given back at once, never left streaming
                self.ib.cancelMktData(contract)
            raise
        for contract in subscribed:
            await self._pace()
            self.ib.cancelMktData(contract)
        return [q for t in tickers if (q := self._quote(underlying, t)) is not None]

    @staticmethod
    def _open_interest(ticker: Ticker) -> float | None:
        right = ticker.contract.right if ticker.contract is not None else ""
        value = ticker.callOpenInterest if right.startswith("C") else ticker.putOpenInterest
        number = _finite(value)
        return number if number is not None and number >= 0 else None

    def _complete(self, ticker: Ticker) -> bool:
        return (positive_number(ticker.bid) is not None and positive_number(ticker.ask) is not None
                and ticker.modelGreeks is not None and self._open_interest(ticker) is not None)

    def _quote(self, underlying: str, ticker: Ticker) -> OptionQuote | None:
        contract = ticker.contract
        bid, ask = positive_number(ticker.bid), positive_number(ticker.ask)
        expiry = _expiry(contract.lastTradeDateOrContractMonth or "") if contract is not None else None
        if contract is None or bid is None or ask is None or ask < bid or expiry is None:
            return None
        try:
            occ = occ_contract(contract.symbol, expiry, contract.right, contract.strike)
        except OccError:
            return None
        greeks = ticker.modelGreeks
        oi = self._open_interest(ticker)
        return OptionQuote(
            occ_symbol=occ.symbol, underlying=underlying, expiry=expiry, strike=occ.strike, right=occ.right,
            bid=bid, ask=ask, mid=round((bid + ask) / 2.0, 4),
            delta=_finite(greeks.delta) if greeks is not None else None,
            open_interest=int(oi) if oi is not None else None,
            iv=positive_number(greeks.impliedVol) if greeks is not None else None,
            gamma=_finite(greeks.gamma) if greeks is not None else None,
            theta=_finite(greeks.theta) if greeks is not None else None,
            vega=_finite(greeks.vega) if greeks is not None else None,
            quoted_at=ticker.time,
        )
