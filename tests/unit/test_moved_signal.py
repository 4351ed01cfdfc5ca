"""The signal moved to the market price (market_price._moved, the fast copy) is the signal with its prices and
metadata changed and every other field kept: the same as dataclasses.replace, also for a field added later."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from pipeline.core.models import TradeSignal
from pipeline.entry.market_price import SIGNAL_ENTRY_KEY, price_on_market
from pipeline.record.journal import iso_of


def test_the_moved_signal_keeps_every_other_field() -> None:
    signal = TradeSignal(signal_type="cloud_cross_bearish", direction="short", ticker="MSFT", timeframe="15m",
                         conviction=61.5, entry_price=200.0, stop_loss=204.0, target_price=190.0,
                         timestamp=datetime(2026, 11, 24, 16, 0, tzinfo=UTC), source="webhook",
                         signal_id="sig-x", metadata={"note": "n"}, strategy="ema")
    defaults = {f.name: f.default for f in dataclasses.fields(TradeSignal)}
    assert all(getattr(signal, name) != default for name, default in defaults.items()), "every field set"
    moved = price_on_market(signal, 201.0, 0.05).signal
    expected = dataclasses.replace(signal, entry_price=201.0, stop_loss=205.0, target_price=191.0,
                                   metadata={"note": "n", SIGNAL_ENTRY_KEY: 200.0})
    assert moved == expected
    assert signal.entry_price == 200.0 and signal.metadata == {"note": "n"}  # the original is untouched


def test_iso_of_is_isoformat_for_each_datetime() -> None:
    stamps = [datetime(2026, 11, 24, 16, 0, s, tzinfo=UTC) for s in range(5)]
    for ts in [*stamps, stamps[0], stamps[4], stamps[3], stamps[0]]:
        assert iso_of(ts) == ts.isoformat()
