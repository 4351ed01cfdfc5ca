"""RiskGate: each of the 8 checks passes just inside and rejects just outside its threshold; order matters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from config.settings import ExecutorConfig
from pipeline.core.calendar import MarketCalendar
from pipeline.core.models import AccountState, Position, TradeSignal
from pipeline.entry.risk_gate import RISK_CHECKS, RiskGate

SECTORS = {"NVDA": "semiconductors", "AMD": "semiconductors", "AAPL": "technology"}
OPEN = datetime(2024, 6, 12, 15, 0, tzinfo=UTC)  # Wednesday 11:00 New York


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar(start="2024-01-01", end="2024-12-31")


@dataclass
class Scenario:
    """A signal that passes every check, and the knobs each row turns."""

    config: dict[str, Any] = field(default_factory=dict)
    equity: float = 100_000.0
    buying_power: float = 150_000.0
    daily_pnl: float = 0.0
    positions: list[Position] = field(default_factory=list)
    now: datetime = OPEN
    ticker: str = "NVDA"
    direction: str = "long"
    entry: float = 100.0
    stop: float = 95.0
    timeframe: str = "5m"

    def signal(self) -> TradeSignal:
        return TradeSignal("trend_aligned_long", self.direction, self.ticker, self.timeframe, 80,
                           self.entry, self.stop, timestamp=self.now)

    def account(self) -> AccountState:
        return AccountState(equity=self.equity, cash=self.equity, buying_power=self.buying_power,
                            open_positions=list(self.positions), daily_pnl=self.daily_pnl,
                            starting_equity=100_000.0)


def pos(ticker: str, direction: str = "long", entry: float = 50.0, current: float = 50.0, shares: float = 10,
        stop: float | None = None) -> Position:
    stop = stop if stop is not None else (entry * 0.9 if direction == "long" else entry * 1.1)
    return Position(ticker=ticker, direction=direction, entry_price=entry, current_price=current,
                    shares=shares, stop_loss=stop)


def run(s: Scenario, calendar: MarketCalendar):
    gate = RiskGate(ExecutorConfig(**s.config), calendar, SECTORS)
    return gate.validate(s.signal(), s.account(), s.now)


Mutation = Callable[[Scenario], None]


def _set(**values: Any) -> Mutation:
    def apply(s: Scenario) -> None:
        for key, value in values.items():
            setattr(s, key, value)
    return apply


# (check, inside mutation, outside mutation)
THRESHOLDS: list[tuple[str, str, Mutation, Mutation]] = [
    ("daily_loss", "10% of 100k", _set(daily_pnl=-9_999.99), _set(daily_pnl=-10_000.0)),
    ("daily_loss", "custom 2%", _set(config={"daily_loss_limit": 0.02}, daily_pnl=-1_999.0),
     _set(config={"daily_loss_limit": 0.02}, daily_pnl=-2_000.01)),
    ("max_positions", "3 slots",
     _set(config={"max_concurrent_positions": 3}, positions=[pos("X1"), pos("X2")]),
     _set(config={"max_concurrent_positions": 3}, positions=[pos("X1"), pos("X2"), pos("X3")])),
    ("duplicate_ticker", "winner vs loser",
     _set(positions=[pos("NVDA", entry=90.0, current=90.01)]),
     _set(positions=[pos("NVDA", entry=90.0, current=89.99)])),
    ("duplicate_ticker", "flat is not a winner",
     _set(positions=[pos("NVDA", entry=90.0, current=90.01)]),
     _set(positions=[pos("NVDA", entry=90.0, current=90.0)])),
    ("duplicate_ticker", "add to winner disabled",
     _set(positions=[pos("AMD", entry=90.0, current=95.0)]),
     _set(config={"allow_add_to_winner": False}, positions=[pos("NVDA", entry=90.0, current=95.0)])),
    ("conflicting_signal", "short elsewhere vs short here",
     _set(positions=[pos("AMD", "short")]), _set(positions=[pos("NVDA", "short")])),
    ("exposure", "single stock 15% = 15k (held 14.9k + 100)",
     _set(positions=[pos("NVDA", entry=140.0, current=149.00, shares=100)]),
     _set(positions=[pos("NVDA", entry=140.0, current=149.01, shares=100)])),
    ("exposure", "sector 30% = 30k (held 29.9k + 100)",
     _set(positions=[pos("AMD", entry=250.0, current=299.00, shares=100)]),
     _set(positions=[pos("AMD", entry=250.0, current=299.01, shares=100)])),
    ("market_hours", "09:30 open", _set(now=datetime(2024, 6, 12, 13, 30, tzinfo=UTC)),
     _set(now=datetime(2024, 6, 12, 13, 29, 59, tzinfo=UTC))),
    ("market_hours", "16:00 close (eod_close_time 16:00)",
     _set(config={"eod_close_time": "16:00"}, now=datetime(2024, 6, 12, 19, 59, 59, tzinfo=UTC)),
     _set(config={"eod_close_time": "16:00"}, now=datetime(2024, 6, 12, 20, 0, tzinfo=UTC))),
    ("market_hours", "15:55 end-of-day cutoff: no day trade opened to be flattened",
     _set(now=datetime(2024, 6, 12, 19, 54, 59, tzinfo=UTC)), _set(now=datetime(2024, 6, 12, 19, 55, tzinfo=UTC))),
    ("market_hours", "custom eod_close_time 15:30",
     _set(config={"eod_close_time": "15:30"}, now=datetime(2024, 6, 12, 19, 29, 59, tzinfo=UTC)),
     _set(config={"eod_close_time": "15:30"}, now=datetime(2024, 6, 12, 19, 30, tzinfo=UTC))),
    ("market_hours", "early close 13:00 day after Thanksgiving: 12:55 cutoff",
     _set(now=datetime(2024, 11, 29, 17, 54, 59, tzinfo=UTC)), _set(now=datetime(2024, 11, 29, 17, 55, tzinfo=UTC))),
    ("market_hours", "after the cutoff a daily signal still passes (bypass)",
     _set(now=datetime(2024, 6, 12, 19, 57, tzinfo=UTC), timeframe="1d"),
     _set(now=datetime(2024, 6, 12, 19, 57, tzinfo=UTC), timeframe="5m")),
    ("market_hours", "holiday: daily bypass vs 5m",
     _set(now=datetime(2024, 7, 4, 15, 0, tzinfo=UTC), timeframe="1d"),
     _set(now=datetime(2024, 7, 4, 15, 0, tzinfo=UTC), timeframe="5m")),
    ("min_equity", "25k PDT", _set(equity=25_000.0), _set(equity=24_999.99)),
    ("buying_power", "min_position_value 100", _set(buying_power=100.0), _set(buying_power=99.99)),
    ("buying_power", "one share at 500", _set(entry=500.0, stop=490.0, buying_power=500.0),
     _set(entry=500.0, stop=490.0, buying_power=499.99)),
]


def test_baseline_passes_all_checks(calendar: MarketCalendar) -> None:
    decision = run(Scenario(), calendar)
    assert decision.approved, decision.reason
    assert decision.adjustments["sector"] == "semiconductors"


@pytest.mark.parametrize(("check", "label", "inside", "outside"), THRESHOLDS,
                         ids=[f"{c}-{label}" for c, label, _, _ in THRESHOLDS])
def test_check_threshold(check: str, label: str, inside: Mutation, outside: Mutation,
                         calendar: MarketCalendar) -> None:
    ok = Scenario()
    inside(ok)
    decision = run(ok, calendar)
    assert decision.approved, f"{label}: inside should pass, got {decision.reason}"

    bad = Scenario()
    outside(bad)
    decision = run(bad, calendar)
    assert not decision.approved, f"{label}: outside should be rejected"
    assert decision.check == check
    assert decision.reason.startswith(f"{check}:"), decision.reason


def test_add_to_winner_is_noted(calendar: MarketCalendar) -> None:
    s = Scenario(positions=[pos("NVDA", entry=90.0, current=95.0)])
    decision = run(s, calendar)
    assert decision.approved
    assert decision.adjustments["adding_to_winner"] is True


def test_held_ticker_does_not_need_a_new_slot(calendar: MarketCalendar) -> None:
    s = Scenario(config={"max_concurrent_positions": 2},
                 positions=[pos("X1"), pos("NVDA", entry=90.0, current=95.0)])
    assert run(s, calendar).approved


def test_reasons_carry_figures(calendar: MarketCalendar) -> None:
    s = Scenario(daily_pnl=-12_345.0)
    reason = run(s, calendar).reason
    assert "-12,345.00" in reason and "10,000.00" in reason


def test_checks_are_in_spec_order() -> None:
    assert [name for name, _ in RISK_CHECKS] == [
        "daily_loss", "max_positions", "duplicate_ticker", "conflicting_signal",
        "exposure", "market_hours", "min_equity", "buying_power",
    ]


ORDER_CASES: list[tuple[str, Mutation]] = [
    ("daily_loss", _set(daily_pnl=-20_000.0, equity=1_000.0)),
    ("daily_loss", _set(daily_pnl=-20_000.0, config={"max_concurrent_positions": 1}, positions=[pos("X1")])),
    ("max_positions", _set(config={"max_concurrent_positions": 1}, positions=[pos("X1")], buying_power=0.0)),
    ("duplicate_ticker", _set(positions=[pos("NVDA", entry=90.0, current=80.0)],
                              now=datetime(2024, 6, 15, 15, 0, tzinfo=UTC))),
    ("conflicting_signal", _set(positions=[pos("NVDA", "short", entry=100.0, current=200.0, shares=1000)])),
    ("exposure", _set(positions=[pos("AMD", current=400.0, shares=100)], now=datetime(2024, 6, 15, tzinfo=UTC))),
    ("market_hours", _set(now=datetime(2024, 6, 15, 15, 0, tzinfo=UTC), equity=30_000.0, buying_power=1.0)),
    ("min_equity", _set(equity=20_000.0, buying_power=1.0)),
]


@pytest.mark.parametrize(("expected", "mutation"), ORDER_CASES, ids=[c for c, _ in ORDER_CASES])
def test_first_failing_check_is_reported(expected: str, mutation: Mutation, calendar: MarketCalendar) -> None:
    s = Scenario()
    mutation(s)
    decision = run(s, calendar)
    assert not decision.approved
    assert decision.check == expected, decision.reason


def test_a_failing_check_fails_closed(calendar: MarketCalendar) -> None:
    s = Scenario()
    signal = s.signal()
    signal.entry_price = None  # type: ignore[assignment]  # a malformed object slipped past the guard
    gate = RiskGate(ExecutorConfig(), calendar, SECTORS)
    decision = gate.validate(signal, s.account(), s.now)
    assert not decision.approved
    assert decision.check in {name for name, _ in RISK_CHECKS}
