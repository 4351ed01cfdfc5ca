"""TradingService through a real Core and a non-persistent paper broker in simulated time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.trading_service import RebalanceProposal, TradingConfig, TradingService

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session
PRICES = {"AAPL": 200.0, "MSFT": 400.0, "GOOGL": 150.0}
TARGET = {"AAPL": 0.3, "MSFT": 0.3, "GOOGL": 0.4}
# limits that allow the target: 40% in one stock, all three in the technology sector
ROOMY = {"max_single_stock_exposure": 0.45, "max_sector_exposure": 1.0}


async def _core(tmp_path: Path, **executor: Any) -> Core:
    settings = load_settings(
        state_dir=tmp_path / "state",
        broker={"primary": "paper"},
        paper={"persistent": False},
        pipeline={"retry_backoff_base": 0.01},
        executor={**ROOMY, **executor},
    )
    core = Core(settings, SimulatedClock(SESSION))
    await core.start()
    for ticker, price in PRICES.items():
        _mark(core, ticker, price)
    return core


def _mark(core: Core, ticker: str, price: float) -> None:
    core.brokers["paper"].set_price(ticker, price)
    core.ledger.mark(ticker, price)


def _service(core: Core, **config: Any) -> TradingService:
    return TradingService(
        TradingConfig(**config), orchestrator=core.orchestrator, ledger=core.ledger,
        price_lookup=core.ledger.last_prices.get, account=core.account_state, clock=core.clock,
        lifecycle=core.lifecycle, settle=core.settle,
    )


def _held(core: Core, ticker: str) -> float:
    holding = core.ledger.holding(ticker)
    return holding.quantity if holding else 0.0


def _weights(core: Core) -> dict[str, float]:
    equity = core.ledger.equity()
    return {t: _held(core, t) * core.ledger.last_prices[t] / equity for t in PRICES}


def _submissions(core: Core) -> list[str]:
    return [r.client_order_id for r in core.brokers["paper"].request_log if r.method == "submit_order"]


@pytest.fixture
async def core(tmp_path: Path):
    core = await _core(tmp_path)
    yield core
    await core.stop()


# -- buy / sell ---------------------------------------------------------------------------------------------
async def test_buy_by_dollars_and_by_shares(core: Core) -> None:
    service = _service(core)
    await service.connect()
    await service.connect()  # idempotent
    by_dollars = await service.buy("aapl", dollars=5_000)
    by_shares = await service.buy("MSFT", shares=10)
    await core.settle()
    assert by_dollars.ok and by_dollars.shares == 25 and by_dollars.status == "filled", by_dollars
    assert by_shares.ok and by_shares.shares == 10 and not by_shares.capped, by_shares
    assert _held(core, "AAPL") == 25 and _held(core, "MSFT") == 10
    assert core.brokers["paper"].position("AAPL")[0] == 25
    # the orders went through the pipeline: journaled as manual signals from the trading service
    rows = await core.journal.query("SELECT signal_id FROM orders WHERE symbol IN ('AAPL', 'MSFT')")
    assert {r["signal_id"] for r in rows} == {by_dollars.signal_id, by_shares.signal_id}
    await core.journal.flush()
    signals = await core.journal.query("SELECT payload FROM signals")
    assert signals and all('"trading_service"' in s["payload"] and '"manual"' in s["payload"] for s in signals)


async def test_sell_reduces_then_closes_and_never_oversells(core: Core) -> None:
    service = _service(core)
    assert (await service.buy("AAPL", shares=30)).ok
    await core.settle()
    partial = await service.sell("AAPL", shares=10)
    await core.settle()
    assert partial.ok and partial.status == "filled", partial
    assert _held(core, "AAPL") == 20
    too_many = await service.sell("AAPL", shares=21)
    assert not too_many.ok and "21 shares > 20 held long" in too_many.reason
    by_dollars = await service.sell("AAPL", dollars=2_100)  # 10 whole shares at 200
    await core.settle()
    assert by_dollars.ok and by_dollars.shares == 10
    rest = await service.sell("AAPL", shares=10)
    await core.settle()
    assert rest.ok and not core.ledger.holds("AAPL")
    assert core.brokers["paper"].position("AAPL")[0] == 0
    assert not core.lifecycle.exiting("AAPL")
    nothing = await service.sell("AAPL", shares=1)
    assert not nothing.ok and "no long position" in nothing.reason and "short=True" in nothing.reason
    assert core.lifecycle.round_trips == 1


async def test_explicit_short_goes_through_the_pipeline(core: Core) -> None:
    service = _service(core)
    short = await service.sell("MSFT", shares=5, short=True)
    await core.settle()
    assert short.ok, short
    assert _held(core, "MSFT") == -5
    cover = await service.buy("MSFT", shares=5)  # covers: reduce-only
    await core.settle()
    assert cover.ok and not core.ledger.holds("MSFT")


async def test_explicit_quantity_is_capped_by_the_risk_limits(tmp_path: Path) -> None:
    core = await _core(tmp_path, max_single_stock_exposure=0.15)
    try:
        result = await _service(core).buy("AAPL", shares=1_000)  # 200k wanted, 15k allowed
        await core.settle()
        assert result.ok and result.capped and result.shares == 75, result
        assert "capped by the risk limits" in result.reason
        assert _held(core, "AAPL") == 75
    finally:
        await core.stop()


async def test_bad_buy_input_names_the_field(core: Core) -> None:
    service = _service(core)
    with pytest.raises(ValueError, match="exactly one of dollars or shares"):
        await service.buy("AAPL", dollars=100, shares=1)
    with pytest.raises(ValueError, match="exactly one of dollars or shares"):
        await service.buy("AAPL")
    with pytest.raises(ValueError, match="dollars"):
        await service.buy("AAPL", dollars=-5)
    with pytest.raises(ValueError, match="shares"):
        await service.sell("AAPL", shares=float("nan"))
    with pytest.raises(ValueError, match="ticker"):
        await service.buy("  ", shares=1)
    small = await service.buy("AAPL", dollars=50)
    assert not small.ok and "less than one whole share" in small.reason
    unknown = await service.buy("ZZZZ", shares=1)
    assert not unknown.ok and "no price known for ZZZZ" in unknown.reason
    assert _submissions(core) == []


# -- rebalance ----------------------------------------------------------------------------------------------
async def test_preview_lists_trades_and_cost(core: Core) -> None:
    proposal = await _service(core).preview_rebalance(TARGET)
    assert not proposal.approved
    trades = {t.ticker: t for t in proposal.trades}
    assert set(trades) == set(TARGET) and all(t.side == "buy" for t in proposal.trades)
    assert trades["AAPL"].shares == 149 and trades["MSFT"].shares == 74 and trades["GOOGL"].shares == 266
    assert trades["AAPL"].est_price == 200.0 and trades["AAPL"].est_value == 149 * 200.0
    # 2 bps slippage on ~99.7k, no commission
    assert 19.0 < proposal.estimated_cost < 21.0
    assert proposal.current_weights == {"AAPL": 0.0, "MSFT": 0.0, "GOOGL": 0.0, "cash": 1.0}
    for ticker, weight in TARGET.items():
        assert abs(proposal.resulting_weights[ticker] - weight) < 0.01
    assert proposal.warnings == []
    assert _submissions(core) == []  # a preview sends nothing


async def test_execute_refuses_unapproved(core: Core) -> None:
    service = _service(core)
    proposal = await service.preview_rebalance(TARGET)
    result = await service.execute_rebalance(proposal)
    assert not result.executed and "not approved" in result.reason and result.trades == []
    assert _submissions(core) == []


async def test_execute_brings_weights_within_tolerance(core: Core) -> None:
    service = _service(core, rebalance_tolerance=0.02)
    proposal = await service.preview_rebalance(TARGET)
    proposal.approved = True
    result = await service.execute_rebalance(proposal)
    await core.settle()
    assert result.executed and result.ok, result
    weights = _weights(core)
    for ticker, target in TARGET.items():
        assert abs(weights[ticker] - target) <= 0.02, (ticker, weights)
    assert core.ledger.cash >= 0


async def test_rebalance_sells_first_then_buys(core: Core) -> None:
    service = _service(core)
    assert (await service.buy("AAPL", shares=220)).ok  # 44% of equity
    await core.settle()
    core.clock.advance(60)
    proposal = await service.preview_rebalance(TARGET)
    sides = [(t.side, t.ticker) for t in proposal.trades]
    assert sides[0] == ("sell", "AAPL") and {s for s, _ in sides[1:]} == {"buy"}
    assert proposal.current_weights["AAPL"] == pytest.approx(0.44, abs=0.001)
    proposal.approved = True
    before = len(_submissions(core))
    result = await service.execute_rebalance(proposal)
    await core.settle()
    assert result.ok, result
    sent = _submissions(core)[before:]
    assert sent[0] == result.trades[0].client_order_id and result.trades[0].side == "sell"
    for ticker, target in TARGET.items():
        assert abs(_weights(core)[ticker] - target) <= 0.02, _weights(core)


async def test_target_breaching_the_limits_is_capped_with_a_reason(tmp_path: Path) -> None:
    core = await _core(tmp_path, max_single_stock_exposure=0.35)
    try:
        service = _service(core)
        proposal = await service.preview_rebalance(TARGET)
        assert any("GOOGL" in w and "max_single_stock_exposure 35%" in w for w in proposal.warnings)
        proposal.approved = True
        result = await service.execute_rebalance(proposal)
        await core.settle()
        googl = next(t for t in result.trades if t.ticker == "GOOGL")
        assert googl.ok and googl.capped and "capped by the risk limits" in googl.reason, googl
        assert _weights(core)["GOOGL"] <= 0.35 + 1e-3
        assert abs(_weights(core)["AAPL"] - 0.3) <= 0.02
    finally:
        await core.stop()


async def test_sector_limit_refuses_the_rest_with_a_reason(tmp_path: Path) -> None:
    core = await _core(tmp_path, max_sector_exposure=0.30)
    try:
        service = _service(core)
        proposal = await service.preview_rebalance(TARGET)
        assert any("sector technology" in w for w in proposal.warnings)
        proposal.approved = True
        result = await service.execute_rebalance(proposal)
        await core.settle()
        assert result.executed and not result.ok
        refused = [t for t in result.trades if not t.ok]
        assert refused and all(t.stage == "risk_gate" and "sector" in t.reason for t in refused), refused
        assert sum(_weights(core).values()) <= 0.30 + 1e-3
    finally:
        await core.stop()


async def test_kill_switch_refuses_buy_sell_and_execute(core: Core) -> None:
    service = _service(core)
    assert (await service.buy("AAPL", shares=10)).ok
    await core.settle()
    proposal = await service.preview_rebalance(TARGET)
    proposal.approved = True
    before = len(_submissions(core))
    core.state.activate_kill_switch("operator halt", source="test")
    buy = await service.buy("MSFT", shares=1)
    sell = await service.sell("AAPL", shares=5)
    result = await service.execute_rebalance(proposal)
    assert not buy.ok and buy.stage == "kill_switch" and "operator halt" in buy.reason
    assert not sell.ok and sell.stage == "kill_switch" and "operator halt" in sell.reason
    assert not result.executed and "kill switch active: operator halt" in result.reason
    assert len(_submissions(core)) == before
    assert _held(core, "AAPL") == 10
    core.state.deactivate_kill_switch()
    assert (await service.sell("AAPL", shares=5)).ok


async def test_stale_proposal_is_refused(core: Core) -> None:
    service = _service(core, proposal_max_age_seconds=300)
    proposal = await service.preview_rebalance(TARGET)
    proposal.approved = True
    core.clock.advance(301)
    result = await service.execute_rebalance(proposal)
    assert not result.executed and "preview again" in result.reason


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"AAPL": 1.2}, r"target_weights\[AAPL\]: weight 1.2 is outside \[0, 1\]"),
        ({"AAPL": -0.1}, r"target_weights\[AAPL\]: weight -0.1 is outside"),
        ({"AAPL": 0.6, "MSFT": 0.5}, "weights sum to 1.1000 > 1"),
        ({"AAPL": "lots"}, r"target_weights\[AAPL\]: weight must be a number"),
        ({"AAPL": 0.2, "NOPE": 0.2}, r"target_weights\[NOPE\]: no known price for NOPE"),
        ({}, "non-empty mapping"),
        ({"": 0.1}, "target_weights ticker"),
    ],
)
async def test_bad_targets_give_a_clear_error(core: Core, targets: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await _service(core).preview_rebalance(targets)


async def test_execute_rejects_something_that_is_not_a_proposal(core: Core) -> None:
    result = await _service(core).execute_rebalance({"approved": True})  # type: ignore[arg-type]
    assert not result.executed and "expected a RebalanceProposal" in result.reason
    assert isinstance(await _service(core).preview_rebalance({"AAPL": 0.1}), RebalanceProposal)


def test_config_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        TradingConfig(timeframe="7m")
    with pytest.raises(ValueError, match="rebalance_tolerance"):
        TradingConfig(rebalance_tolerance=-1)
    settings = load_settings(broker={"primary": "paper"}, paper={"commission_per_share": 0.01})
    config = TradingConfig.from_settings(settings)
    assert config.paper_trading and config.commission_per_share == 0.01


# -- a refusal is final ---------------------------------------------------------------------------------------
async def test_a_manual_buy_the_journal_cannot_record_is_refused_and_never_sent_later(core: Core) -> None:
    """The operator is told "refused": the entry must not go out once the journal takes writes again (they would
    buy a second time by hand, or again through the CLI)."""
    service = _service(core)
    await service.connect()
    assert core.journal is not None
    await core.journal.run(lambda conn: conn.execute("PRAGMA query_only=ON"))  # every write fails (a full disk)
    refused = await service.buy("AAPL", shares=10)
    assert not refused.ok and refused.stage == "journal", refused
    assert "nothing was sent" in refused.reason and "will not be sent" in refused.reason, refused
    assert core.book.working() == [] and core.orchestrator.reservations.reserved_notional() == 0, "nothing held"
    await core.journal.run(lambda conn: conn.execute("PRAGMA query_only=OFF"))  # the disk has room again
    assert await core.limbo.retry_unjournaled() == []
    await core.settle()
    assert _submissions(core) == [] and _held(core, "AAPL") == 0
    again = await service.buy("AAPL", shares=10)  # the operator decides again: one order, one position
    await core.settle()
    entries = [c for c in _submissions(core) if c.startswith("og-entry-")]  # (its resting stop goes out too)
    assert again.ok and entries == [again.client_order_id] and _held(core, "AAPL") == 10, again


async def test_a_manual_sell_the_journal_cannot_record_yet_says_so_and_goes_out_once(core: Core) -> None:
    """An exit is never dropped: the operator is told it is pending (not refused), and it is sent once."""
    service = _service(core)
    await service.connect()
    bought = await service.buy("MSFT", shares=10)
    await core.settle()
    assert bought.ok and _held(core, "MSFT") == 10, bought
    assert core.journal is not None
    await core.journal.run(lambda conn: conn.execute("PRAGMA query_only=ON"))
    sold = await service.sell("MSFT", shares=10)
    assert sold.ok and sold.status == "pending" and "do not repeat it by hand" in sold.reason, sold
    await core.journal.run(lambda conn: conn.execute("PRAGMA query_only=OFF"))
    assert await core.limbo.retry_unjournaled() == [sold.client_order_id]
    await core.settle()
    assert [c for c in _submissions(core) if c == sold.client_order_id] == [sold.client_order_id]
    assert _held(core, "MSFT") == 0
