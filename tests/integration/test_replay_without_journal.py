"""A replay with the journal off ([journal] enabled = false) reports the trades it made, the same as with the
journal on: its closed trades are kept in memory instead of read back from the journal's table. (It used to report
none: zero trades and an empty summary after hundreds of entries and exits.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.synthetic import write_csv
from config.settings import load_settings


def test_the_journal_off_replay_reports_the_same_trades_as_with_it(tmp_path: Path) -> None:
    from daemon.replay import replay

    path = tmp_path / "bars.csv"
    write_csv(path, [f"T{i}" for i in range(8)], seed=4, n_bars=2400)
    on = asyncio.run(replay(load_settings(state_dir=tmp_path / "on"), path))
    off = asyncio.run(replay(load_settings(state_dir=tmp_path / "off", journal={"enabled": False}), path))
    assert on["exits"] > 20 and len(on["trades"]) > 20
    for key in ("bars", "signals", "entries", "exits", "trades", "total", "periods", "strategies", "account",
                "equity_curve"):
        assert off[key] == on[key], key


def test_the_journal_off_replay_says_why_signals_were_rejected_as_with_it(tmp_path: Path) -> None:
    """Where the signals went with no journal to hold the decision records: the same stages and the same top
    rejection kinds (count and first example each) as the journal's records give. (Its top rejections used to be
    empty without a journal.)"""
    from daemon.replay import replay

    path = tmp_path / "bars.csv"
    write_csv(path, [f"T{i}" for i in range(8)], seed=4, n_bars=2400)
    on = asyncio.run(replay(load_settings(state_dir=tmp_path / "on"), path))
    off = asyncio.run(replay(load_settings(state_dir=tmp_path / "off", journal={"enabled": False}), path))
    assert len(on["top_rejections"]) >= 2, on["top_rejections"]
    assert off["top_rejections"] == on["top_rejections"]
    assert off["stages"] == on["stages"]
