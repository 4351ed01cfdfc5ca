"""`ordergate desk`: every instance's open positions, realised and unrealised P&L from the shared PostgreSQL
journal (unrealised at the marks each daemon last journaled)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

from config.settings import ConfigError, Settings
from daemon.tables import Column, fmt_time, pnl, price, qty, table, use_colour

NEW_YORK = ZoneInfo("America/New_York")
INSTANCE_COLUMNS = [
    Column("instance"), Column("open_positions", "positions", numeric=True),
    Column("working_orders", "working", numeric=True), Column("trades_today", "trades today", numeric=True),
    pnl("realized_today", "realized today"), pnl("realized_total", "realized total"), pnl("unrealized"),
    Column("last_seen", "last start", fmt_time),
]
POSITION_COLUMNS = [Column("instance"), Column("symbol"), Column("strategy"), Column("direction", "side"),
                    qty("shares"), price("avg_price", "avg cost"), price("mark"), pnl("unrealized")]


def run_desk(args: argparse.Namespace, settings: Settings) -> int:
    """Print the desk (exit 1 when its journal cannot be read)."""
    from adapters.journal_pg import JournalUnavailable
    from adapters.journal_pg_desk import read_desk

    if settings.journal.dsn is None or not settings.journal.dsn.get_secret_value().strip():
        raise ConfigError("ordergate desk reads the desk's PostgreSQL journal: set [journal] dsn (and backend = "
                          "'postgresql' on each instance), or ORDERGATE_JOURNAL__DSN")
    day = date.fromisoformat(args.day) if args.day else datetime.now(NEW_YORK).date()
    try:
        view = asyncio.run(read_desk(settings.journal.dsn.get_secret_value().strip(), day,
                                     timeout=settings.journal.connect_timeout_seconds))
    except JournalUnavailable as exc:
        print(f"ordergate desk: {exc}", file=sys.stderr)
        return 1
    data = view.as_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    colour = use_colour()
    if not view.instances:
        print(f"no instance has written to the desk journal yet ({day})")
        return 0
    desk = data["desk"]
    print(f"desk {day}: {len(view.instances)} instances, {desk['open_positions']} open positions, realized today "
          f"{desk['realized_today']:+,.2f}, in total {desk['realized_total']:+,.2f}, unrealized "
          f"{desk['unrealized']:+,.2f}" + (f" ({desk['unmarked_positions']} positions without a mark)"
                                          if desk["unmarked_positions"] else ""))
    print(table(view.instances, INSTANCE_COLUMNS, colour=colour))
    print()
    print(table(view.positions, POSITION_COLUMNS, colour=colour) if view.positions else "no open positions")
    return 0
