"""Issue 11.3, sized on the market: every entry is sized and reserved on the market price plus the fill's slippage.

Through real parts: an in-process Core with the paper broker (its own prices and its buying-power check), the
webhook over HTTP on loopback, and the real alpaca-py client against FakeAlpaca, which refuses an order it
cannot fund at the price it fills at (403, code 40310000) like Alpaca does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.alpaca import AlpacaBroker
from adapters.webhook import SIGNALS_PATH, WebhookServer
from config.settings import WebhookSettings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar, TradeSignal
from tests.fakes.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.timeout(120)

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET on a regular session
TOKEN = "tok-11-3-sized-on-the-market-0123456789"


async def _core(tmp_path: Path, broker: str = "paper", **overrides: Any) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state",
        broker={"primary": broker},
        paper={"persistent": False, **overrides.pop("paper", {})},
        pipeline={"enable_unified_risk": False, "retry_backoff_base": 0.01, **overrides.pop("pipeline", {})},
        **overrides,
    )
    core = Core(settings, SimulatedClock(SESSION))
    if broker == "alpaca":
        alpaca = core.brokers["alpaca"]
        assert isinstance(alpaca, AlpacaBroker)
        alpaca.stream_backoff = (0.05, 0.3)
    await core.start()
    return core


def _signal(ticker: str, entry: float, stop: float, target: float | None = None, direction: str = "long",
            source: str = "test") -> TradeSignal:
    return TradeSignal(signal_type="cloud_cross_bullish" if direction == "long" else "cloud_cross_bearish",
                       direction=direction, ticker=ticker, timeframe="5m", conviction=80, entry_price=entry,
                       stop_loss=stop, target_price=target, timestamp=SESSION, source=source)


async def _feed_bars(core: Core, prices: dict[str, float]) -> None:
    """One feed bar per ticker through the engine: the market the daemon would see."""
    await core.engine.on_batch([Bar(t, SESSION, p, p, p, p, 1_000.0) for t, p in prices.items()])


async def _decisions(core: Core, signal_id: str) -> list[dict[str, Any]]:
    assert core.journal is not None
    await core.journal.flush()
    return await core.journal.query("SELECT stage, outcome, reason FROM decision_stages WHERE signal_id=?"
                                    " ORDER BY decision_id, step", (signal_id,))


async def _order_statuses(core: Core) -> list[dict[str, Any]]:
    assert core.journal is not None
    await core.journal.flush()
    return await core.journal.query("SELECT client_order_id, status, reason FROM orders WHERE kind='entry'")


# -- a far entry price, no price at all ------------------------------------------------------------------------
async def test_far_entry_price_is_rejected_naming_both_prices(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        await _feed_bars(core, {"NVDA": 850.0})
        result = await core.orchestrator.process_signal(_signal("NVDA", 800.0, 790.0))
        assert not result.success and result.pipeline_stage == "market_price", result
        reason = result.rejection_reason or ""
        assert "800.00" in reason and "850.00" in reason and "max_entry_deviation" in reason, reason
        assert {"stage": "market_price", "outcome": "rejected", "reason": reason} in \
            await _decisions(core, result.signal_id)
        assert core.brokers["paper"].submissions() == 0
    finally:
        await core.stop()


async def test_no_market_price_is_a_rejection_not_a_guess(tmp_path: Path) -> None:
    core = await _core(tmp_path)
    try:
        result = await core.orchestrator.process_signal(_signal("ZZZQ", 50.0, 49.0))
        assert not result.success and result.pipeline_stage == "market_price", result
        assert "no market price for ZZZQ" in (result.rejection_reason or "")
        assert core.brokers["paper"].submissions() == 0
    finally:
        await core.stop()


@pytest.mark.parametrize(("direction", "entry", "stop", "target", "shifted"), [
    ("long", 99.0, 97.0, 103.0, (98.0, 104.0)),      # market 100: 1 % above the signal
    ("short", 101.0, 103.0, 97.0, (102.0, 96.0)),    # market 100: 1 % below the signal
])
async def test_a_near_entry_is_sized_on_the_market_with_its_stop_and_target_moved_along(
    tmp_path: Path, direction: str, entry: float, stop: float, target: float, shifted: tuple[float, float],
) -> None:
    core = await _core(tmp_path)
    try:
        await _feed_bars(core, {"ACME": 100.0})
        result = await core.orchestrator.process_signal(_signal("ACME", entry, stop, target, direction))
        assert result.success and result.intent is not None, result.rejection_reason
        intent = result.intent
        assert intent.reference_price == pytest.approx(100.0)
        assert (intent.stop_loss, intent.target_price) == pytest.approx(shifted)
        # the single-stock cap (15 % of 100 000) on the market price: 150 shares (on the signal's: 151 / 148)
        assert intent.quantity == 150
        assert {"stage": "market_price", "outcome": "approved"}.items() <= \
            next(d for d in await _decisions(core, result.signal_id) if d["stage"] == "market_price").items()
    finally:
        await core.stop()


# -- a webhook signal priced at half the market ---------------------------------------------------------------
async def _post(session: aiohttp.ClientSession, port: int, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"http://127.0.0.1:{port}{SIGNALS_PATH}", json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        return resp.status, await resp.json()


async def test_webhook_signal_at_half_the_market_is_sized_on_the_market(tmp_path: Path) -> None:
    """The issue's case: entry 50, stop 49 with the market at 100. Allowed through a wide max_entry_deviation, the
    entry is sized on 100 with the stop at 99: within 15 % of equity in the stock and 5 % of equity at risk."""
    core = await _core(tmp_path, pipeline={"max_entry_deviation": 1.0})
    equity = core.ledger.equity()
    await _feed_bars(core, {"ACME": 100.0})

    async def submit(signal: TradeSignal) -> str:  # what the daemon's intake does: journal, then the bus
        await core.bus.signals.publish(signal)
        return "queued"

    server = WebhookServer(WebhookSettings(token=SecretStr(TOKEN), port=0), submit, core.clock)
    port = await server.start()
    consumer = asyncio.create_task(core.consume_signals())
    try:
        async with aiohttp.ClientSession() as session:
            status, _ = await _post(session, port, {
                "ticker": "ACME", "direction": "long", "signal_type": "cloud_cross_bullish", "timeframe": "5m",
                "conviction": 100, "entry_price": 50.0, "stop_loss": 49.0, "target_price": 52.0,
                "timestamp": SESSION.isoformat(), "source": "tradingview"})
        assert status == 202
        for _ in range(500):
            await asyncio.sleep(0.01)
            if core.ledger.holds("ACME"):
                break
        await core.settle()
        holding = core.ledger.holding("ACME")
        position = holding.position
        config = core.settings.executor
        assert position.entry_price == pytest.approx(100.0 * 1.0002)  # the paper fill: market + 2 bps
        assert holding.quantity * 100.0 <= config.max_single_stock_exposure * equity
        assert position.stop_loss == pytest.approx(99.0) and position.target_price == pytest.approx(102.0)
        assert holding.quantity * (100.0 - position.stop_loss) <= config.max_risk_per_trade * equity
    finally:
        consumer.cancel()
        await server.stop()
        await core.stop()


# -- bursts near the buying-power limit -----------------------------------------------------------------------
BURST_LIMITS = {"max_concurrent_positions": 100, "max_single_stock_exposure": 0.05, "max_sector_exposure": 1.0}


def _burst(tickers: list[str], market: float, shorts: bool = True) -> list[TradeSignal]:
    """Signals priced 1.5 % on the cheap side of the market (within max_entry_deviation); every 4th one short."""
    out = []
    for i, t in enumerate(tickers):
        if shorts and i % 4 == 3:
            out.append(_signal(t, market * 1.015, market * 1.015 + 1.0, direction="short"))
        else:
            out.append(_signal(t, market * 0.985, market * 0.985 - 1.0))
    return out


async def _run_burst(core: Core, signals: list[TradeSignal]) -> None:
    consumer = asyncio.create_task(core.consume_signals())
    try:
        await asyncio.gather(*(core.bus.signals.publish(s) for s in signals))
        for _ in range(6_000):  # a bound for a loaded machine, not a speed requirement
            await asyncio.sleep(0.01)
            if core.bus.signals.depth() == 0 and not core.router.in_flight():
                break
        await core.settle(timeout=60.0)
    finally:
        consumer.cancel()


async def test_burst_of_100_near_the_buying_power_limit_gets_no_paper_rejection(tmp_path: Path) -> None:
    core = await _core(tmp_path, paper={"slippage_bps": 30.0}, executor=BURST_LIMITS)
    try:
        tickers = [f"P{i:03d}" for i in range(100)]
        await _feed_bars(core, dict.fromkeys(tickers, 40.0))
        await _run_burst(core, _burst(tickers, 40.0, shorts=False))  # the paper book funds longs from short sales
        orders = await _order_statuses(core)
        assert len(orders) >= 15, "buying power, not the other limits, must stop the burst"
        assert [o for o in orders if o["status"] == "rejected"] == []
        assert all(o["status"] == "filled" for o in orders)
        assert core.brokers["paper"].cash >= 0
        await core.journal.flush()
        refused = await core.journal.query(
            "SELECT reason FROM decisions WHERE outcome='rejected' AND stage IN ('risk_gate','sizing')")
        assert refused and all("buying_power" in r["reason"] for r in refused), refused[:3]
    finally:
        await core.stop()


async def test_burst_of_100_near_the_buying_power_limit_gets_no_alpaca_rejection(
    tmp_path: Path, fake: FakeAlpaca,
) -> None:
    fake.account.update(cash="100000", buying_power="100000", multiplier="1")  # a cash account: no margin
    fake.market_fills(slippage=0.003)
    alpaca = {"api_key": fake.api_key, "secret_key": fake.secret_key, "paper": True, "base_url": fake.base_url,
              "trading_stream_url": fake.trading_stream_url, "data_stream_url": fake.data_stream_url("iex"),
              "feed": "iex", "request_timeout_seconds": 5.0}
    core = await _core(tmp_path, broker="alpaca", alpaca=alpaca, executor=BURST_LIMITS)
    try:
        tickers = [f"A{i:03d}" for i in range(100)]
        fake.prices.update(dict.fromkeys(tickers, 40.0))
        await _feed_bars(core, dict.fromkeys(tickers, 40.0))
        await _run_burst(core, _burst(tickers, 40.0))
        await fake.wait_for(lambda: all(o["status"] in ("filled", "rejected") for o in fake.orders.values()
                                        if o["type"] != "stop"), timeout=60.0)  # the protective stops rest
        await core.settle(timeout=60.0)
        rejections = [r for r in fake.submit_answers if r >= 400]
        assert rejections == []
        orders = await _order_statuses(core)
        entries = [o for o in fake.orders.values() if o["type"] != "stop"]
        stops = [o for o in fake.orders.values() if o["type"] == "stop" and o["status"] not in ("canceled", "replaced")]
        assert len(orders) >= 15 and len(entries) == len(orders) and len(stops) == len(orders)  # each one protected
        assert [o for o in orders if o["status"] == "rejected"] == []
        assert float(fake.account["buying_power"]) >= 0
    finally:
        await core.stop()


async def test_fake_alpaca_refuses_an_order_it_cannot_fund_at_its_fill_price(fake: FakeAlpaca) -> None:
    """The fake, like Alpaca, holds the cost of open orders at the price they fill at and answers 403."""
    from pipeline.core.clock import LiveClock
    from pipeline.core.models import OrderIntent, Side
    from pipeline.core.ports import OrderRejected

    fake.account.update(cash="10000", buying_power="10000")
    fake.market_fills(slippage=0.01, delay=5.0)  # fills come later: the first order's cost stays held meanwhile
    fake.prices["ACME"] = 100.0
    broker = AlpacaBroker(fake.alpaca_settings(request_timeout_seconds=5), LiveClock())
    await broker.connect()
    try:
        first = OrderIntent(client_order_id="og-entry-a", signal_id="s1", symbol="ACME", side=Side.BUY,
                            quantity=50, kind="entry", reference_price=100.0)
        await broker.submit_order(first)                 # 50 x 101 = 5 050 held
        second = OrderIntent(client_order_id="og-entry-b", signal_id="s2", symbol="ACME", side=Side.BUY,
                             quantity=50, kind="entry", reference_price=100.0)
        with pytest.raises(OrderRejected, match="insufficient buying power") as err:
            await broker.submit_order(second)            # 50 x 101 = 5 050 > the 4 950 left
        assert err.value.code == 403
        assert fake.submit_answers == [200, 403]
        third = OrderIntent(client_order_id="og-entry-c", signal_id="s3", symbol="ACME", side=Side.BUY,
                            quantity=49, kind="entry", reference_price=100.0)
        await broker.submit_order(third)                 # 49 x 101 = 4 949 fits
    finally:
        await broker.close()


# -- the high-level API and the paper broker -------------------------------------------------------------------
async def test_trading_service_buys_on_the_market_price_not_a_stale_mark(tmp_path: Path) -> None:
    """`ordergate buy` (the daemon's TradingService) prices the order where the entry is sized: the paper broker's
    own price, not the ledger's mark from an earlier bar."""
    from daemon.process import Daemon

    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"},
                             paper={"persistent": False}, pipeline={"enable_unified_risk": False})
    daemon = Daemon(settings)
    core = daemon.core
    await core.start()
    try:
        core.ledger.mark("ACME", 50.0)                  # an old bar
        core.brokers["paper"].set_price("ACME", 100.0)  # where the paper broker fills now
        result = await daemon.handlers.trading_service().buy("ACME", dollars=5_000.0)
        assert result.ok, result.reason
        assert result.est_price == 100.0 and result.shares == 50
        assert result.filled_qty == 50 and result.filled_avg_price == pytest.approx(100.0 * 1.0002)
    finally:
        await core.stop()


async def test_a_burst_after_short_sales_gets_no_paper_rejection(tmp_path: Path) -> None:
    """Short-sale proceeds are cash in the ledger but not buying power at the broker: after shorts, a burst of longs
    near the limit must still fit what the broker will fund."""
    core = await _core(tmp_path, paper={"slippage_bps": 30.0}, executor=BURST_LIMITS)
    try:
        shorts = [f"S{i:02d}" for i in range(6)]
        longs = [f"L{i:03d}" for i in range(60)]
        await _feed_bars(core, dict.fromkeys(shorts + longs, 40.0))
        await _run_burst(core, [_signal(t, 40.0, 41.0, direction="short") for t in shorts])
        assert all(core.ledger.holding(t).quantity < 0 for t in shorts)
        await _run_burst(core, _burst(longs, 40.0, shorts=False))
        orders = await _order_statuses(core)
        assert len(orders) > len(shorts) + 5
        assert [o for o in orders if o["status"] == "rejected"] == []
    finally:
        await core.stop()
