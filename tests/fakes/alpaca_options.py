"""Alpaca's option endpoints for FakeAlpaca: the contracts list (trading API) and option snapshots (data API).

Served in the JSON shapes alpaca-py 0.44 parses (alpaca/trading/client.py get_option_contracts,
alpaca/data/historical/option.py get_option_chain / get_option_snapshot):

    GET /v2/options/contracts                 ?underlying_symbols=&status=&expiration_date[_gte|_lte]=&type=
                                              &strike_price_gte=&strike_price_lte=&root_symbol=&limit=&page_token=
        -> {"option_contracts": [...], "next_page_token": str | null}   (limit: default 100, at most 10 000)
    GET /v2/options/contracts/{symbol_or_id}  -> one contract
    GET /v1beta1/options/snapshots/{underlying} ?type=&strike_price_gte=&strike_price_lte=&expiration_date[_gte|_lte]=
                                              &root_symbol=&feed=&limit=&page_token=
    GET /v1beta1/options/snapshots            ?symbols=A,B&feed=&limit=&page_token=
        -> {"snapshots": {symbol: {"latestQuote", "latestTrade", "greeks", "impliedVolatility"}},
            "next_page_token": str | null}    (limit: default 100, at most 1 000)

Scripting, per test (`fake.options` on a FakeAlpaca)::

    sym = fake.options.add("AAPL", date(2026, 12, 18), "C", 100, bid=3.10, ask=3.30, delta=0.52, iv=0.27,
                           open_interest=1500)            # the compact symbol, e.g. AAPL261218C00100000
    fake.options.add_chain("AAPL", spot=100.0, expiries=[...], strikes=[...], quote_time=ts)  # Black-Scholes quotes
    fake.options.contracts_page_size = 7     # serve at most 7 contracts a page (pagination)
    fake.options.remove_quote(sym) / fake.options.quote_time = ts
    fake.fail_requests("GET", "/v2/options/contracts", status=503)   # as for any path
A market buy of an option fills at its ask (`fake.prices[symbol]`); `requests` records every call as usual.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from aiohttp import web

from pipeline.instruments.occ import occ_contract
from pipeline.instruments.options import bs_delta, bs_price

MAX_CONTRACTS_PAGE = 10_000
MAX_SNAPSHOTS_PAGE = 1_000


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"code": 40010000, "message": "invalid page_token"}',
                                 content_type="application/json") from None


def _money(value: float) -> str:
    return f"{value:.10g}"


class FakeOptionsAPI:
    """The option contracts and snapshots a FakeAlpaca serves."""

    def __init__(self, now: Callable[[], datetime], prices: dict[str, float]) -> None:
        self._now = now
        self._prices = prices
        self.contracts: dict[str, dict[str, Any]] = {}   # compact symbol -> Alpaca contract JSON
        self.snapshots: dict[str, dict[str, Any]] = {}   # compact symbol -> Alpaca snapshot JSON
        self.contracts_page_size = MAX_CONTRACTS_PAGE
        self.snapshots_page_size = MAX_SNAPSHOTS_PAGE
        self.quote_time: datetime | None = None          # stamp of new quotes (default: the fake's now)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/options/contracts", self._list_contracts)
        app.router.add_get("/v2/options/contracts/{symbol_or_id}", self._one_contract)
        app.router.add_get("/v1beta1/options/snapshots/{underlying}", self._chain)
        app.router.add_get("/v1beta1/options/snapshots", self._snapshots)

    # -- scripting ------------------------------------------------------------------------------------
    def add(
        self, underlying: str, expiry: date, right: str, strike: float, *, bid: float | None, ask: float | None,
        delta: float | None = None, iv: float | None = None, open_interest: int | None = 1000, size: int = 100,
        tradable: bool = True, quote_time: datetime | None = None, gamma: float = 0.03, theta: float = -0.05,
        vega: float = 0.12, last: float | None = None,
    ) -> str:
        """List a contract (and quote it unless bid and ask are None); returns its Alpaca (compact) symbol."""
        occ = occ_contract(underlying, expiry, right, strike)
        symbol = occ.compact
        self.contracts[symbol] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "symbol": symbol,
            "name": f"{occ.root} {expiry:%b %d %Y} {strike:g} {'Call' if occ.right == 'C' else 'Put'}",
            "status": "active", "tradable": tradable, "expiration_date": expiry.isoformat(),
            "root_symbol": occ.root, "underlying_symbol": occ.root,
            "underlying_asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, occ.root)),
            "type": "call" if occ.right == "C" else "put", "style": "american", "strike_price": _money(strike),
            "multiplier": str(size), "size": str(size),
            "open_interest": None if open_interest is None else str(open_interest),
            "open_interest_date": None if open_interest is None else self._now().date().isoformat(),
            "close_price": None if last is None and bid is None else _money(last or bid or 0.0),
            "close_price_date": self._now().date().isoformat(), "ppind": True,
        }
        if bid is not None and ask is not None:
            stamp = _iso(quote_time or self.quote_time or self._now())
            snap: dict[str, Any] = {
                "latestQuote": {"ap": ask, "as": 25, "ax": "C", "bp": bid, "bs": 18, "bx": "N", "c": "A", "t": stamp},
                "latestTrade": {"c": "I", "p": last if last is not None else round((bid + ask) / 2, 2), "s": 3,
                                "t": stamp, "x": "C"},
            }
            if iv is not None:
                snap["impliedVolatility"] = iv
            if delta is not None:
                snap["greeks"] = {"delta": delta, "gamma": gamma, "rho": 0.02, "theta": theta, "vega": vega}
            self.snapshots[symbol] = snap
            self._prices[symbol] = ask  # a market buy fills at the ask
        return symbol

    def add_chain(
        self, underlying: str, spot: float, expiries: Iterable[date], strikes: Iterable[float], *, as_of: date,
        iv: float = 0.30, rate: float = 0.04, half_spread: float = 0.05, open_interest: int = 1200,
        quote_time: datetime | None = None,
    ) -> list[str]:
        """Calls and puts at every expiry x strike, quoted around their Black-Scholes value."""
        symbols = []
        for expiry in expiries:
            years = max((expiry - as_of).days, 0.25) / 365.0
            for strike in strikes:
                for right in ("C", "P"):
                    fair = max(bs_price(spot, strike, years, rate, iv, right), 0.05)
                    half = max(fair * half_spread, 0.01)
                    symbols.append(self.add(
                        underlying, expiry, right, strike, bid=round(fair - half, 2), ask=round(fair + half, 2),
                        delta=round(bs_delta(spot, strike, years, rate, iv, right), 4), iv=iv,
                        open_interest=open_interest, quote_time=quote_time,
                    ))
        return symbols

    def remove_quote(self, symbol: str) -> None:
        self.snapshots.pop(symbol, None)

    # -- HTTP -----------------------------------------------------------------------------------------
    async def _list_contracts(self, request: web.Request) -> web.Response:
        q = request.query
        rows = [c for c in self.contracts.values() if self._contract_matches(c, q)]
        rows.sort(key=lambda c: (c["expiration_date"], float(c["strike_price"]), c["type"]))
        limit = min(int(q.get("limit") or 100), MAX_CONTRACTS_PAGE, self.contracts_page_size)
        offset = _offset(q.get("page_token"))
        page = rows[offset:offset + limit]
        token = _token(offset + limit) if offset + limit < len(rows) else None
        return web.json_response({"option_contracts": page, "next_page_token": token})

    async def _one_contract(self, request: web.Request) -> web.Response:
        key = request.match_info["symbol_or_id"]
        found = next((c for c in self.contracts.values() if key in (c["symbol"], c["id"])), None)
        if found is None:
            return web.json_response({"code": 40410000, "message": "option contract not found"}, status=404)
        return web.json_response(found)

    def _contract_matches(self, c: dict[str, Any], q: Any) -> bool:
        if "underlying_symbols" in q and c["underlying_symbol"] not in q["underlying_symbols"].upper().split(","):
            return False
        if q.get("status", "active") != c["status"] or ("root_symbol" in q and q["root_symbol"] != c["root_symbol"]):
            return False
        return self._window(c["symbol"], c["expiration_date"], float(c["strike_price"]), c["type"], q)

    @staticmethod
    def _window(symbol: str, expiry: str, strike: float, kind: str, q: Any) -> bool:
        if "type" in q and q["type"] != kind:
            return False
        if "expiration_date" in q and expiry != q["expiration_date"]:
            return False
        if "expiration_date_gte" in q and expiry < q["expiration_date_gte"]:
            return False
        if "expiration_date_lte" in q and expiry > q["expiration_date_lte"]:
            return False
        if "strike_price_gte" in q and strike < float(q["strike_price_gte"]):
            return False
        return not ("strike_price_lte" in q and strike > float(q["strike_price_lte"]))

    async def _chain(self, request: web.Request) -> web.Response:
        underlying = request.match_info["underlying"].upper()
        q = request.query
        symbols = [s for s, c in self.contracts.items()
                   if c["underlying_symbol"] == underlying and s in self.snapshots
                   and ("root_symbol" not in q or q["root_symbol"] == c["root_symbol"])
                   and self._window(s, c["expiration_date"], float(c["strike_price"]), c["type"], q)]
        return self._snapshot_page(sorted(symbols), q)

    async def _snapshots(self, request: web.Request) -> web.Response:
        q = request.query
        wanted = [s for s in q.get("symbols", "").upper().split(",") if s]
        return self._snapshot_page([s for s in wanted if s in self.snapshots], q)

    def _snapshot_page(self, symbols: list[str], q: Any) -> web.Response:
        limit = min(int(q.get("limit") or 100), MAX_SNAPSHOTS_PAGE, self.snapshots_page_size)
        offset = _offset(q.get("page_token"))
        page = symbols[offset:offset + limit]
        token = _token(offset + limit) if offset + limit < len(symbols) else None
        snapshots = {s: self.snapshots[s] for s in page}
        for snap in snapshots.values():  # JSON has no NaN: the real API leaves a missing value out
            for key in [k for k, v in snap.items() if isinstance(v, float) and not math.isfinite(v)]:
                del snap[key]
        return web.json_response({"snapshots": snapshots, "next_page_token": token})
