"""Alpaca's option chains through alpaca-py: the contracts and their quotes, as OptionQuotes in our OCC form.

One fetch of an underlying (run by pipeline.instruments.chains.PrefetchedChains in the background):
- the listed contracts: `TradingClient.get_option_contracts(GetOptionContractsRequest)` (GET /v2/options/contracts,
  active contracts of both rights expiring inside the DTE window, paged with `next_page_token` until done or
  `options.chain_max_contracts`): strike, expiry, type, size and the open interest;
- their quotes: `OptionHistoricalDataClient.get_option_chain(OptionChainRequest)` (GET
  /v1beta1/options/snapshots/{underlying}, the SDK follows its pages): bid/ask, implied vol and greeks.
A contract is kept only with a two-sided quote no older than `options.chain_max_age_seconds`, a standard size
(OPTION_MULTIPLIER shares) and an OCC symbol the codec reads; a field Alpaca leaves out stays None.
Each SDK call runs in the broker's REST threads with its timeout and rate limit (AlpacaBroker._call).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.requests import OptionChainRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetStatus
from alpaca.trading.requests import GetOptionContractsRequest

from config.settings import AlpacaSettings, OptionsSettings
from pipeline.core.models import OPTION_MULTIPLIER
from pipeline.instruments.occ import OccError, parse_occ
from pipeline.instruments.options import OptionQuote

NEW_YORK = ZoneInfo("America/New_York")
CONTRACTS_PAGE = 1000  # Alpaca allows up to 10 000 a page
Call = Callable[..., Awaitable[Any]]


def build_option_data_client(settings: AlpacaSettings) -> OptionHistoricalDataClient:
    """The options market-data client (data_url when set), the SDK's retry loop off, a timeout on every request."""
    from adapters.alpaca import secret_value, with_request_timeout, without_sdk_retry

    client = OptionHistoricalDataClient(
        api_key=secret_value(settings.api_key), secret_key=secret_value(settings.secret_key),
        url_override=settings.data_url.rstrip("/") if settings.data_url else None,
    )
    return with_request_timeout(without_sdk_retry(client), settings.request_timeout_seconds)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number >= 0 else None


class AlpacaOptionChains:
    """Fetches one underlying's chain from Alpaca (contracts + snapshots) for the chain cache."""

    def __init__(self, call: Call, trading: Callable[[], TradingClient], data: Callable[[], Any],
                 settings: OptionsSettings) -> None:
        self._call = call
        self._trading = trading
        self._data = data
        self.settings = settings
        self.pages = 0  # contract pages fetched (diagnostics, tests)

    async def fetch(self, underlying: str, as_of: datetime) -> list[OptionQuote]:
        today = as_of.astimezone(NEW_YORK).date()
        first = today + timedelta(days=self.settings.dte_min)
        last = today + timedelta(days=self.settings.dte_max)
        contracts = await self._contracts(underlying, first, last)
        if not contracts:
            return []
        request = OptionChainRequest(underlying_symbol=underlying, expiration_date_gte=first,
                                     expiration_date_lte=last)
        snapshots = await self._call(self._data().get_option_chain, request, op="option_snapshots")
        return self._quotes(underlying, contracts, snapshots or {}, as_of)

    async def _contracts(self, underlying: str, first: date, last: date) -> dict[str, Any]:
        """Active, standard-size contracts by Alpaca symbol, page after page."""
        found: dict[str, Any] = {}
        token: str | None = None
        while len(found) < self.settings.chain_max_contracts:
            request = GetOptionContractsRequest(
                underlying_symbols=[underlying], status=AssetStatus.ACTIVE, expiration_date_gte=first,
                expiration_date_lte=last, limit=CONTRACTS_PAGE, page_token=token,
            )
            page = await self._call(self._trading().get_option_contracts, request, op="option_contracts")
            self.pages += 1
            for contract in page.option_contracts or []:
                if contract.tradable and _float(contract.size) == OPTION_MULTIPLIER:
                    found[contract.symbol] = contract
            token = page.next_page_token
            if not token:
                break
        return found

    def _quotes(self, underlying: str, contracts: dict[str, Any], snapshots: dict[str, Any],
                as_of: datetime) -> list[OptionQuote]:
        oldest = as_of - timedelta(seconds=self.settings.chain_max_age_seconds)
        quotes: list[OptionQuote] = []
        for symbol, contract in list(contracts.items())[: self.settings.chain_max_contracts]:
            snap = snapshots.get(symbol)
            quote = getattr(snap, "latest_quote", None)
            if quote is None:
                continue
            bid, ask = _float(quote.bid_price), _float(quote.ask_price)
            if bid is None or ask is None or bid <= 0 or ask < bid or quote.timestamp < oldest:
                continue  # one-sided, crossed or old: not a price to size on
            try:
                occ = parse_occ(symbol)
            except OccError:
                continue
            greeks = snap.greeks
            quotes.append(OptionQuote(
                occ_symbol=occ.symbol, underlying=underlying, expiry=contract.expiration_date,
                strike=float(contract.strike_price), right=occ.right, bid=bid, ask=ask,
                mid=round((bid + ask) / 2.0, 4), delta=_float(getattr(greeks, "delta", None)),
                open_interest=_int(contract.open_interest), iv=_float(snap.implied_volatility),
                gamma=_float(getattr(greeks, "gamma", None)), theta=_float(getattr(greeks, "theta", None)),
                vega=_float(getattr(greeks, "vega", None)), quoted_at=quote.timestamp,
            ))
        return quotes
