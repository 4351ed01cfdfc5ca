"""Market data and option chains for FakeTWS, in the TWS socket encodings ib_async 2.1 decodes (decoder.py).

    reqSecDefOptParams (78)  -> securityDefinitionOptionParameter (75) per exchange, then ...End (76):
                                the expirations and strikes of the options the fake lists on the underlying
    reqMktData (1)           -> tickPrice (1) bid / ask / last, tickSize (2) sizes, for an option with a quote
                                tickOptionComputation (21, model: tick 13) and, with generic tick 101, its open
                                interest (tick 27 for a call, 28 for a put); a snapshot ends with tickSnapshotEnd (57)
    cancelMktData (2)        -> recorded (`cancelled`)

Scripting: `FakeTWS.add_option(..., quote=OptionQuoteScript(bid, ask, delta=..., iv=..., open_interest=...))`; a
stock quotes its `price` (bid/ask a cent around it). `fake.market.silent.add(con_id)` leaves a contract's market
data unanswered; `fake.market.requests` holds every reqMktData as a dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.tws_server import FakeTWS

OUT_TICK_PRICE = 1
OUT_TICK_SIZE = 2
OUT_TICK_OPTION_COMPUTATION = 21
OUT_TICK_SNAPSHOT_END = 57
OUT_SEC_DEF_OPT_PARAMS = 75
OUT_SEC_DEF_OPT_PARAMS_END = 76
TICK_BID_SIZE, TICK_BID, TICK_ASK, TICK_ASK_SIZE, TICK_LAST = 0, 1, 2, 3, 4
TICK_MODEL_OPTION = 13
TICK_CALL_OPEN_INTEREST, TICK_PUT_OPEN_INTEREST = 27, 28
ERR_UNKNOWN_CONTRACT = 200
NO_SECURITY = "No security definition has been found for the request"
_CONTRACT_FIELDS = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right", "multiplier",
                    "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass")


@dataclass
class OptionQuoteScript:
    """What the fake's market data says about one option; None leaves a field out (-1 / -2 on the wire)."""

    bid: float
    ask: float
    delta: float | None = None
    iv: float | None = None
    open_interest: int | None = None
    gamma: float = 0.03
    vega: float = 0.12
    theta: float = -0.05
    last: float | None = None
    und_price: float = 100.0


class FakeMarketData:
    """The market-data side of a FakeTWS."""

    def __init__(self, tws: FakeTWS) -> None:
        self.tws = tws
        self.requests: list[dict[str, Any]] = []
        self.cancelled: list[int] = []
        self.opt_param_requests: list[dict[str, str]] = []
        self.silent: set[int] = set()  # con ids whose market data never comes

    # -- reqSecDefOptParams ---------------------------------------------------------------------------
    def on_req_sec_def_opt_params(self, conn: Any, fields: list[str]) -> None:
        req_id, symbol, _fut_exchange, sec_type, con_id = fields[1], fields[2], fields[3], fields[4], fields[5]
        self.opt_param_requests.append({"symbol": symbol, "secType": sec_type, "conId": con_id})
        options = [c for c in self.tws.contracts if c.sec_type == "OPT" and c.symbol == symbol.upper()]
        if options:
            expirations = sorted({c.expiry for c in options})
            strikes = sorted({c.strike for c in options})
            for exchange in ("SMART", "CBOE"):
                self.tws._send(conn, [OUT_SEC_DEF_OPT_PARAMS, req_id, exchange, con_id, symbol.upper(), "100",
                                      len(expirations), *expirations, len(strikes), *[repr(k) for k in strikes]])
        self.tws._send(conn, [OUT_SEC_DEF_OPT_PARAMS_END, req_id])

    # -- reqMktData -----------------------------------------------------------------------------------
    def on_req_mkt_data(self, conn: Any, fields: list[str]) -> None:
        req_id = int(fields[2])
        contract_req = dict(zip(_CONTRACT_FIELDS, fields[3:15], strict=False))
        rest = fields[15:]
        dnc = rest[0] not in ("0", "False", "")
        rest = rest[4:] if dnc else rest[1:]
        generic, snapshot = rest[0], rest[1] not in ("0", "False", "")
        self.requests.append({"reqId": req_id, **contract_req, "genericTickList": generic, "snapshot": snapshot})
        found = [c for c in self.tws.contracts if c.matches(contract_req)]
        if len(found) != 1:
            self.tws._send_error(conn, req_id, ERR_UNKNOWN_CONTRACT, NO_SECURITY)
            return
        contract = found[0]
        if contract.con_id in self.silent:
            return
        if contract.sec_type == "OPT":
            if contract.quote is None:
                self._ticks(conn, req_id, None, None, None)  # listed, but no market: no bid/ask at all
            else:
                self._option_ticks(conn, req_id, contract, generic)
        else:
            price = contract.price
            self._ticks(conn, req_id, round(price - 0.01, 2), round(price + 0.01, 2), price)
        if snapshot:
            self.tws._send(conn, [OUT_TICK_SNAPSHOT_END, 1, req_id])

    def on_cancel_mkt_data(self, _conn: Any, fields: list[str]) -> None:
        self.cancelled.append(int(fields[2]))

    def _ticks(self, conn: Any, req_id: int, bid: float | None, ask: float | None, last: float | None) -> None:
        send = self.tws._send
        if bid is not None:
            send(conn, [OUT_TICK_PRICE, 6, req_id, TICK_BID, bid, 10, 0])
            send(conn, [OUT_TICK_SIZE, 6, req_id, TICK_BID_SIZE, 10])
        if ask is not None:
            send(conn, [OUT_TICK_PRICE, 6, req_id, TICK_ASK, ask, 12, 0])
            send(conn, [OUT_TICK_SIZE, 6, req_id, TICK_ASK_SIZE, 12])
        if last is not None:
            send(conn, [OUT_TICK_PRICE, 6, req_id, TICK_LAST, last, 1, 0])

    def _option_ticks(self, conn: Any, req_id: int, contract: Any, generic: str) -> None:
        q = contract.quote
        self._ticks(conn, req_id, q.bid, q.ask, q.last if q.last is not None else round((q.bid + q.ask) / 2, 2))
        iv = -1 if q.iv is None else q.iv
        delta = -2 if q.delta is None else q.delta
        model_price = round((q.bid + q.ask) / 2, 4)
        self.tws._send(conn, [OUT_TICK_OPTION_COMPUTATION, req_id, TICK_MODEL_OPTION, 0, iv, delta, model_price, 0,
                              q.gamma, q.vega, q.theta, q.und_price])
        if "101" in generic.split(",") and q.open_interest is not None:
            tick = TICK_CALL_OPEN_INTEREST if contract.right == "C" else TICK_PUT_OPEN_INTEREST
            self.tws._send(conn, [OUT_TICK_SIZE, 6, req_id, tick, q.open_interest])
