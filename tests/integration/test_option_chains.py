"""Issue 14.6: options only from a real chain.

Against Alpaca (the real alpaca-py clients over loopback against tests/fakes) the daemon's core prefetches the
option chain — /v2/options/contracts, paged, and the data API's option snapshots — and a long signal in options
mode becomes an order for the chosen call in Alpaca's symbol form, sized on the fake's ask x the one option
multiplier. A stale or missing chain is no option: rejected in `options`, the ETF / the stock in `both`, with the
reason. The synthetic chain serves the paper broker only and says so.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OPTION_MULTIPLIER, AssetClass, Bar, TradeSignal
from tests.conftest import make_signal, until
from tests.fakes.alpaca_server import FakeAlpaca
from tests.market import set_market

pytestmark = pytest.mark.timeout(120)
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # Tuesday 11:00 ET
EXPIRY = date(2026, 12, 18)  # 24 days out: inside the default DTE window [7, 45]
PADDED = "NVDA  261218C00100000"
COMPACT = "NVDA261218C00100000"
ASK = 3.37


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca() as server:
        server.options.quote_time = SESSION - timedelta(seconds=20)
        yield server


def _list_nvda(fake: FakeAlpaca) -> None:
    """One call that passes every filter, and neighbours that each fail one (delta, open interest, spread, DTE)."""
    add = fake.options.add
    add("NVDA", EXPIRY, "C", 100, bid=3.21, ask=ASK, delta=0.46, iv=0.41, open_interest=2300)
    add("NVDA", EXPIRY, "C", 90, bid=10.9, ask=11.2, delta=0.78, iv=0.43, open_interest=1800)      # delta too high
    add("NVDA", EXPIRY, "C", 102, bid=2.50, ask=2.62, delta=0.41, iv=0.40, open_interest=40)       # too thin
    add("NVDA", EXPIRY, "C", 101, bid=1.90, ask=3.10, delta=0.44, iv=0.40, open_interest=900)      # spread too wide
    add("NVDA", date(2026, 11, 27), "C", 100, bid=1.30, ask=1.36, delta=0.45, iv=0.39, open_interest=5000)  # 3 DTE
    add("NVDA", EXPIRY, "P", 100, bid=3.00, ask=3.15, delta=-0.52, iv=0.41, open_interest=2100)
    add("NVDA", EXPIRY, "C", 105, bid=None, ask=None, open_interest=700)                            # no quote


def _settings(tmp_path: Path, fake: FakeAlpaca, mode: str, **options: Any) -> Any:
    alpaca = {"api_key": fake.api_key, "secret_key": fake.secret_key, "paper": True, "base_url": fake.base_url,
              "trading_stream_url": fake.trading_stream_url, "data_stream_url": fake.data_stream_url("iex"),
              "data_url": fake.base_url, "feed": "iex", "request_timeout_seconds": 3.0}
    return load_settings(state_dir=tmp_path / "state", broker={"primary": "alpaca"}, alpaca=alpaca,
                         executor={"instrument_mode": mode}, options={"chain_tickers": ["NVDA"], **options},
                         pipeline={"retry_backoff_base": 0.01, "enable_unified_risk": False})


def _signal(at: datetime = SESSION) -> TradeSignal:
    return make_signal("NVDA", 100.0, 98.0, conviction=90, at=at)


async def chain_ready(core: Core, ticker: str = "NVDA") -> None:
    """Wait until the chain port behind the primary broker answers for `ticker` (its first fetch is in)."""
    provider = core.orchestrator.instruments.chain_provider

    def ready() -> bool:
        try:
            provider.chain(ticker, 100.0, core.clock.now())
        except Exception:
            return False
        return True

    await until(ready, timeout=5, what=f"a real {ticker} option chain behind {core.settings.broker.primary}")


async def _started(settings: Any, clock: SimulatedClock) -> Core:
    core = Core(settings, clock)
    await core.start()
    set_market(core, {"NVDA": 100.0})
    return core


async def test_a_long_signal_buys_the_alpaca_call_sized_on_its_ask(tmp_path: Path, fake: FakeAlpaca) -> None:
    _list_nvda(fake)
    fake.options.contracts_page_size = 2  # the 6 contracts inside the DTE window come in 3 pages
    fake.market_fills()
    clock = SimulatedClock(SESSION)
    core = await _started(_settings(tmp_path, fake, "options"), clock)
    try:
        await chain_ready(core)
        result = await core.orchestrator.process_signal(_signal())
        assert result.success, result.rejection_reason
        await until(lambda: core.ledger.holds(PADDED), what="the option fill in the ledger")
        await core.settle()
        first_pass = [r for r in fake.requests if r.path == "/v2/options/contracts"]
        # the next bar of the underlying, barely moved, must not stop the option out (no option marks at Alpaca:
        # its mark stays the fill price, so a stop at the entry premium would fire at once)
        clock.advance(30)
        set_market(core, {"NVDA": 100.1})
        exits = core.lifecycle.check_exits([Bar("NVDA", clock.now(), 100.0, 100.2, 99.9, 100.1, 5000.0)])
    finally:
        await core.stop()
    assert exits == []
    pages = [dict(r.query) for r in first_pass]  # plain dicts: a failing assert shows them cheaply
    assert len(pages) == 3 and pages[0]["underlying_symbols"] == "NVDA", pages
    assert "page_token" not in pages[0] and all(p.get("page_token") for p in pages[1:]), pages
    window = (pages[0]["expiration_date_gte"], pages[0]["expiration_date_lte"])
    assert window == ("2026-12-01", "2027-01-08")  # today + dte_min, today + dte_max
    assert any(r.path == "/v1beta1/options/snapshots/NVDA" for r in fake.requests)
    intent = result.intent
    assert intent is not None and intent.symbol == PADDED and intent.asset_class == AssetClass.OPTION
    assert intent.reference_price == ASK
    orders = list(fake.orders.values())
    assert [o["symbol"] for o in orders] == [COMPACT]  # Alpaca's form on the wire
    assert orders[0]["asset_class"] == "us_option" and orders[0]["side"] == "buy"
    # sized on the fake's premium: the risk budget buys floor(budget / (ask x multiplier)) whole contracts
    sizing = _stage(tmp_path, intent.signal_id, "sizing")
    routed = _stage(tmp_path, intent.signal_id, "instrument_router")
    assert "alpaca option chain" in routed["reason"] and "synthetic" not in routed["reason"]
    premium = ASK * OPTION_MULTIPLIER
    assert sizing["premium_per_contract"] == pytest.approx(premium)
    assert float(orders[0]["qty"]) == intent.quantity == math.floor(sizing["risk_budget"] / premium)
    assert intent.quantity >= 1
    holding = core.ledger.holding(PADDED)
    assert holding.quantity == intent.quantity and holding.position.multiplier == OPTION_MULTIPLIER
    # its stop: the premium once NVDA has fallen to the signal's stop (98), |delta| 0.46 x 2 below the ask
    assert holding.position.stop_loss == pytest.approx(round(ASK - 0.46 * 2.0, 2)) == sizing["option_stop"]


def _stage(tmp_path: Path, signal_id: str, stage: str) -> dict[str, Any]:
    """A stage's journal row for the signal: its detail, and its reason under "reason"."""
    with sqlite3.connect(tmp_path / "state" / "journal.db") as conn:
        reason, detail = conn.execute("SELECT reason, detail FROM decision_stages WHERE signal_id=? AND stage=?",
                                      (signal_id, stage)).fetchone()
    return {**json.loads(detail or "{}"), "reason": reason}


async def test_a_held_option_is_marked_from_the_chain_and_exits_at_its_stop(tmp_path: Path, fake: FakeAlpaca) -> None:
    """No venue streams option bars: on its underlying's bar the option is marked at the fresh chain's mid, so its
    stop works."""
    _list_nvda(fake)
    fake.market_fills()
    clock = SimulatedClock(SESSION)
    core = await _started(_settings(tmp_path, fake, "options", chain_refresh_seconds=60), clock)
    try:
        await chain_ready(core)
        result = await core.orchestrator.process_signal(_signal())
        assert result.success, result.rejection_reason
        await until(lambda: core.ledger.holds(PADDED), what="the option fill in the ledger")
        stop = core.ledger.holding(PADDED).position.stop_loss  # 2.45
        # the call falls to 2.30 / 2.40 (mid 2.35, under its stop); the next refresh brings the quote
        fake.options.add("NVDA", EXPIRY, "C", 100, bid=2.30, ask=2.40, delta=0.40, iv=0.44, open_interest=2300,
                         quote_time=SESSION + timedelta(seconds=60))
        clock.advance(60)
        await until(lambda: core.market_price(PADDED) == pytest.approx(2.35), what="the new quote fetched", timeout=5)
        set_market(core, {"NVDA": 98.6})
        exits = core.lifecycle.check_exits([Bar("NVDA", clock.now(), 98.9, 99.0, 98.5, 98.6, 5000.0)])
        await until(lambda: not core.ledger.holds(PADDED), what="the exit filled", timeout=5)
        await core.settle()
    finally:
        await core.stop()
    assert stop == pytest.approx(2.45)
    assert exits[0].reference_price == pytest.approx(2.35)  # exited on the quoted mark, not the entry premium
    assert [(i.symbol, i.kind) for i in exits] == [(PADDED, "exit")]
    sells = [o for o in fake.orders.values() if o["side"] == "sell"]
    assert [(o["symbol"], float(o["qty"])) for o in sells] == [(COMPACT, result.intent.quantity)]


@pytest.mark.parametrize("mode", ["options", "both"])
async def test_a_stale_chain_is_no_option(tmp_path: Path, fake: FakeAlpaca, mode: str) -> None:
    _list_nvda(fake)
    clock = SimulatedClock(SESSION)
    core = await _started(_settings(tmp_path, fake, mode, chain_max_age_seconds=120, chain_refresh_seconds=60),
                          clock)

    def contract_requests() -> int:
        return sum(r.path == "/v2/options/contracts" for r in fake.requests)

    try:
        await chain_ready(core)
        fake.fail_requests("GET", "/v2/options/contracts", status=503, times=1000)  # Alpaca stops answering
        chains = core.brokers["alpaca"].option_chains
        for _ in range(3):  # three refreshes, each failing; the chain held ages past its limit
            asked, failed = contract_requests(), chains.failures
            clock.advance(61)
            # the refresh is over (and the refresher asleep on the clock again) once its failure is counted; the
            # request reaching the fake is not enough: advancing while its 503 is on the way back lets the next
            # sleep start 61 s later, and the next advance wakes nothing
            await until(lambda f=failed: chains.failures > f, what="a failed refresh")
            assert contract_requests() > asked
        now = clock.now()
        set_market(core, {"NVDA": 100.0})
        router = core.orchestrator.instruments
        await until(lambda: "503" in router.route(_signal(now), now).reason, what="the failed refresh", timeout=5)
        decision = router.route(_signal(now), now)
        result = await core.orchestrator.process_signal(_signal(now))
        await core.settle()
    finally:
        await core.stop()
    assert "stale" in decision.reason and "183s ago > options.chain_max_age_seconds 120" in decision.reason
    assert "the last refresh failed" in decision.reason and "503" in decision.reason
    assert not [o for o in fake.orders.values() if len(o["symbol"]) > 10]  # no option order reached Alpaca
    if mode == "options":
        assert not result.success and result.pipeline_stage == "instrument_router"
        assert "stale" in (result.rejection_reason or "")
    else:  # both: no options, so NVDA's sector ETF (no price here) and then the stock itself
        assert decision.approved and "both: no options" in decision.reason
        assert result.success and result.intent is not None and result.intent.symbol == "NVDA"


async def test_a_missing_chain_is_no_option(tmp_path: Path, fake: FakeAlpaca) -> None:
    """Alpaca lists no contracts for the ticker, and a ticker not prefetched has no chain yet: both say so."""
    core = await _started(_settings(tmp_path, fake, "options"), SimulatedClock(SESSION))
    try:
        await chain_ready(core)
        empty = await core.orchestrator.process_signal(_signal())
        other = core.orchestrator.instruments.route(make_signal("AMD", 100.0, 98.0, conviction=90, at=SESSION),
                                                    SESSION)
        await chain_ready(core, "AMD")  # fetched on demand for next time
    finally:
        await core.stop()
    assert not empty.success and empty.pipeline_stage == "instrument_router"
    assert "no call for NVDA among 0 quotes" in (empty.rejection_reason or "")
    assert not other.approved and "no alpaca option chain for AMD" in other.reason
    assert "not among the prefetched tickers" in other.reason
    assert not fake.orders


async def test_the_paper_brokers_synthetic_chain_is_labelled(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state", executor={"instrument_mode": "options"},
                             pipeline={"enable_unified_risk": False})
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    try:
        core.ledger.last_prices["NVDA"] = 100.0
        decision = core.orchestrator.instruments.route(_signal(), SESSION)
    finally:
        await core.stop()
    assert decision.approved, decision.reason
    assert "synthetic chain (paper broker)" in decision.reason


async def _paper_option(tmp_path: Path, clock: SimulatedClock, signal: TradeSignal) -> tuple[Core, str]:
    """A started paper Core in options mode with NVDA at 100, holding the option `signal` bought (its symbol)."""
    settings = load_settings(state_dir=tmp_path / "state", executor={"instrument_mode": "options"},
                             pipeline={"enable_unified_risk": False})
    core = Core(settings, clock)
    await core.start()
    try:
        set_market(core, {"NVDA": 100.0})
        result = await core.orchestrator.process_signal(signal)
        assert result.success and result.intent is not None, result.rejection_reason
        symbol = result.intent.symbol
        await until(lambda: core.ledger.position(symbol) is not None, what="the paper option fill")
    except BaseException:
        await core.stop()
        raise
    return core, symbol


async def test_a_paper_option_is_held_until_its_underlying_reaches_the_stop(tmp_path: Path) -> None:
    """The paper broker's synthetic chain: the option is marked from the paper book's model value on each bar of
    NVDA; a flat bar keeps it (its stop is not the entry premium), a fall through the signal's stop closes it."""
    clock = SimulatedClock(SESSION)
    core, symbol = await _paper_option(tmp_path, clock, _signal())
    try:
        for price in (100.05, 99.9):
            clock.advance(300)
            await core.engine.on_batch([Bar("NVDA", clock.now(), price, price, price, price, 10_000.0)])
            await core.settle()
            assert core.ledger.position(symbol) is not None, f"stopped out on a flat bar at {price}"
        held = core.ledger.position(symbol)
        assert held is not None and 0 < held.stop_loss < held.entry_price
        clock.advance(300)
        await core.engine.on_batch([Bar("NVDA", clock.now(), 97.0, 97.0, 97.0, 97.0, 10_000.0)])
        await core.settle()
        await until(lambda: core.ledger.position(symbol) is None, what="the option closed at its stop", timeout=5)
    finally:
        await core.stop()


async def test_a_swing_option_is_closed_at_the_cutoff_of_its_last_session(tmp_path: Path) -> None:
    """A daily-timeframe option has no time stop and no day-trade close; held past its last session it would be
    exercised (a call into shares, a put into a short sale). The paper position is sold at 15:55 ET of its expiry
    day, by the clock alone, and not a minute earlier."""
    from pipeline.instruments.occ import parse_occ
    from pipeline.positions.time_exits import TimeExits

    clock = SimulatedClock(SESSION)
    core, symbol = await _paper_option(tmp_path, clock, make_signal("NVDA", 100.0, 98.0, conviction=90,
                                                                    timeframe="1d", at=SESSION))
    try:
        expiry = parse_occ(symbol).expiry
        cutoff = TimeExits(core.settings.executor, core.calendar).eod_cutoff(
            datetime.combine(expiry, datetime.min.time(), tzinfo=UTC) + timedelta(hours=17))
        assert cutoff is not None
        clock.advance_to(cutoff - timedelta(minutes=1))
        assert core.lifecycle.check_exits() == []
        clock.advance_to(cutoff)
        (exit_intent,) = core.lifecycle.check_exits()
        assert exit_intent.exit_type == "eod_close" and exit_intent.symbol == symbol
        await core.settle()
        await until(lambda: core.ledger.position(symbol) is None, what="the option sold", timeout=5)
    finally:
        await core.stop()
