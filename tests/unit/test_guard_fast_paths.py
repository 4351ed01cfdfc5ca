"""The guard's fast paths for a plain well-formed signal (float / int prices and conviction, a plain alphanumeric
ticker, string text fields) leave every other signal to the full rules: a hostile one is rejected with the same
one-line reason as before the fast paths (the reasons below are the ones the full rules gave)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.core.models import SignalType, TradeSignal, signal_problems
from pipeline.entry.signal_guard import validation_failure

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def sig(**overrides: Any) -> TradeSignal:
    values: dict[str, Any] = dict(signal_type="cloud_cross_bullish", direction="long", ticker="AAPL", timeframe="5m",
                                  conviction=80, entry_price=100.0, stop_loss=98.0, timestamp=NOW, source="x")
    values.update(overrides)
    return TradeSignal(**values)


class _Hollow(str):
    """A str whose strip() is empty: the fast path must not take its letters for a symbol."""

    def strip(self, chars: str | None = None) -> str:
        return ""


class _Price(float):
    pass


class _NotASignal:
    def __init__(self) -> None:
        self.signal_type, self.direction, self.ticker = "cloud_cross_bullish", "long", "AAPL"


HUGE = 10**400
UNREADABLE = "signal: unreadable (OverflowError: int too large to convert to float)"


@pytest.mark.parametrize(("overrides", "reason"), [
    ({}, None),
    ({"signal_type": SignalType("cloud_cross_bullish")}, None),
    ({"entry_price": 100, "stop_loss": 98}, None),                  # int prices pass as before
    ({"entry_price": _Price(100.0)}, None),                          # a float subclass: the full test, passes
    ({"conviction": 55.5}, None),
    ({"entry_price": HUGE}, UNREADABLE),                              # too big for a float: unreadable, as before
    ({"stop_loss": HUGE}, UNREADABLE),
    ({"conviction": HUGE}, UNREADABLE),
    ({"entry_price": True}, "entry_price: must be a finite positive price, got True"),
    ({"entry_price": math.nan}, "entry_price: must be a finite positive price, got nan"),
    ({"stop_loss": math.inf}, "stop_loss: must be a finite positive price, got inf"),
    ({"entry_price": 2e6}, "entry_price: must be a finite positive price, got 2000000.0"),
    ({"conviction": True}, "conviction: must be between 0 and 100, got True"),
    ({"conviction": 101}, "conviction: must be between 0 and 100, got 101"),
    ({"ticker": _Hollow("AAPL")}, "ticker: must be a non-empty symbol"),
    ({"ticker": "A" * 30}, "ticker: "),
    ({"entry_price": math.nan, "stop_loss": -3, "ticker": "", "direction": "x"},
     "ticker: must be a non-empty symbol; direction: must be 'long' or 'short', got 'x'; entry_price: must be a "
     "finite positive price, got nan; stop_loss: must be a finite positive price, got -3"),
])
def test_hostile_signals_keep_their_reasons(overrides: dict[str, Any], reason: str | None) -> None:
    signal = sig(**overrides)
    found = validation_failure(signal)
    if reason is None:
        assert found is None and signal_problems(signal) == []
    elif reason.endswith(": "):  # the symbol rules' own wording: only that the ticker is named
        assert found is not None and found.startswith(reason)
    else:
        assert found == reason


def test_missing_fields_are_named_not_crashed_on() -> None:
    assert validation_failure(_NotASignal()) == "timeframe: must be a string, got NoneType"  # type: ignore[arg-type]
    signal = sig()
    del signal.ticker
    assert validation_failure(signal) == "ticker: must be a string, got NoneType"
