"""Issue 14.3: routing that can trade what it routes.

A routed leveraged ETF without a price (no bars in the file, no quote) falls back to the stock itself in mode
`both`, with the reason recorded; in mode `leveraged_etf` the signal is rejected saying what to add.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from config.settings import InstrumentMode, load_settings
from tests.daily_bars import canonical_daily


def _msft(tmp_path: Path, stamp: str = "") -> Path:
    """MSFT's real daily bars in the canonical layout, date-only or with `stamp` appended to each date."""
    return canonical_daily("MSFT", tmp_path / "msft.csv", stamp)


def _run(tmp_path: Path, mode: str, stamp: str = "") -> tuple[dict, list[tuple[str, str, str]]]:
    from daemon.replay import replay

    settings = load_settings(None)
    settings = settings.model_copy(update={"executor": settings.executor.model_copy(
        update={"instrument_mode": InstrumentMode(mode)})})
    state = tmp_path / mode
    result = asyncio.run(replay(settings, _msft(tmp_path, stamp), state_dir=state))
    with sqlite3.connect(state / "journal.db") as conn:
        rows = conn.execute("SELECT stage, outcome, reason FROM decision_stages WHERE stage IN "
                            "('instrument_router', 'sizing') ORDER BY decision_id, step").fetchall()
    return result, rows


@pytest.mark.parametrize("stamp", ["", "T16:00:00-05:00"], ids=["date-only", "stamped"])
def test_both_falls_back_to_the_stock_when_the_etf_has_no_price(tmp_path: Path, stamp: str) -> None:
    # stamped rows too: the form the issue met it in ("no price for TECS", 0 trades), date-only rows aside
    result, rows = _run(tmp_path, "both", stamp)
    routed = [reason for stage, outcome, reason in rows if stage == "instrument_router" and outcome == "approved"]
    fallbacks = [r for r in routed if "no price for TEC" in r]
    assert fallbacks, routed[:5]
    assert all("MSFT stock" in r for r in fallbacks)
    assert not [r for s, o, r in rows if o == "rejected" and "no price" in r]
    assert result["entries"] >= 3
    assert result["total"]["trades"] >= 3


def test_leveraged_etf_mode_rejects_saying_what_to_add(tmp_path: Path) -> None:
    result, rows = _run(tmp_path, "leveraged_etf")
    rejected = [reason for stage, outcome, reason in rows if outcome == "rejected"]
    assert rejected and result["entries"] == 0
    assert all(stage == "instrument_router" for stage, outcome, _ in rows if outcome == "rejected")
    assert all("no price for TEC" in r and "add" in r for r in rejected), rejected[:3]
