"""The CLI's terminal output: prices on the tick, money with separators, aligned columns, colour only on a TTY."""

from __future__ import annotations

import io
import re

from daemon import tables

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_prices_rounded_to_the_tick_and_money_separated() -> None:
    assert tables.fmt_price(190.04392499999997) == "190.04"
    assert tables.fmt_price(296.65932000000004) == "296.66"
    assert tables.fmt_price(0.123456) == "0.1235"  # sub-dollar: $0.0001 tick
    assert tables.fmt_price(None) == "-"
    assert tables.fmt_money(14952.041) == "14,952.04"
    assert tables.fmt_money(-0.001, signed=True) == "+0.00"
    assert tables.fmt_money(-1234.5, signed=True) == "-1,234.50"
    assert tables.fmt_qty(20.0) == "20" and tables.fmt_qty(0.5) == "0.5"


def test_positions_table_is_aligned_and_plain_when_piped() -> None:
    rows = [{"symbol": "XOM", "direction": "long", "shares": 20.0, "entry_price": 145.6191, "current_price": 144.16,
             "stop_loss": 138.3105, "target_price": None, "unrealized_pnl": -29.18, "sector": "energy"},
            {"symbol": "NVDA", "direction": "short", "shares": 151.0, "entry_price": 1294.181152,
             "current_price": 1293.12, "stop_loss": 1300.04392499999997, "target_price": 1250.0,
             "unrealized_pnl": 160.2, "sector": "semiconductors"}]
    out = tables.render_positions(rows, colour=False)
    assert "\x1b" not in out
    lines = out.splitlines()
    assert "138.31" in lines[1] and "1,300.04" in lines[2] and "145.6191" not in out
    header = lines[0]
    for col in ("entry", "stop", "unrealized"):  # numbers right-aligned under their header
        end = header.index(col) + len(col)
        assert all(line[end - 1] != " " for line in lines[1:]), (col, out)
    coloured = tables.render_positions(rows, colour=True)
    assert tables.RED + " -29.18" in coloured or tables.RED + "-29.18" in coloured
    assert ANSI.sub("", coloured).replace(" ", "") == out.replace(" ", "")


def test_status_labels_line_up_and_journal_is_tables() -> None:
    status = {"running": True, "pid": 42, "kill_switch": {"active": False}, "daily_pnl": 144.3466580000126,
              "equity": 100098.89, "cash": 97190.69, "open_positions": 1,
              "brokers": {"paper": {"state": "connected"}}, "exposure_by_sector": {"energy": 14952.04}}
    out = tables.render_status(status, colour=False)
    assert "daily P&L:      +144.35" in out and "equity:         100,098.89" in out
    assert "exposure energy:" not in out and "14,952.04" in out
    values = {line.index(":") for line in out.split("\n\n")[0].splitlines()}
    assert len({line[16] != " " for line in out.split("\n\n")[0].splitlines()}) == 1 and values
    summary = {"trades": 2, "wins": 1, "losses": 1, "win_rate": 0.5, "gross_pnl": 10.123456, "avg_r": 0.1,
               "max_drawdown": 5.0, "day": "2026-11-17",
               "by_signal_type": {"cloud_cross_bearish": {"trades": 2, "wins": 1, "losses": 1, "win_rate": 0.5,
                                                          "gross_pnl": 10.123456, "avg_r": 0.1, "max_drawdown": 5.0}},
               "by_exit_type": {"stop_loss": {"trades": 2, "wins": 1, "losses": 1, "win_rate": 0.5,
                                              "gross_pnl": 10.123456, "avg_r": 0.1, "max_drawdown": 5.0}}}
    journal = tables.render_journal(summary, colour=False)
    assert "{" not in journal and "by signal type" in journal and "by exit type" in journal
    assert "cloud_cross_bearish" in journal and "+10.12" in journal and "50.0%" in journal


def test_colour_only_on_a_terminal(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert tables.use_colour(Tty()) and not tables.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not tables.use_colour(Tty())


def test_cli_path_imports_no_heavy_module() -> None:
    import subprocess
    import sys

    code = ("import sys, daemon.cli, daemon.commands, daemon.tables; "
            "print(sorted(m for m in ('pandas', 'numpy', 'aiohttp', 'structlog', 'exchange_calendars', 'plotly') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
