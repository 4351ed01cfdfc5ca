"""`ordergate watch`: a live terminal view of the running daemon (rich): account and kill switch, positions
with their stops, working orders and the decision feed, refreshed every `--interval` seconds over the control
socket. Piped (or with `--once`) it prints one frame and exits. Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from daemon import tables
from daemon.control import ControlError, DaemonNotRunning, control_request_sync, socket_path

EXIT_OK, EXIT_FAIL = 0, 1
FEED_ROWS = 15


def _fetch(sock: Path) -> dict[str, Any]:
    status = control_request_sync(sock, "status", {}, timeout=5.0)
    decisions = control_request_sync(sock, "decisions", {"limit": FEED_ROWS}, timeout=5.0)
    return {"status": status, "decisions": decisions}


def render(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    status = data["status"]
    ks = status.get("kill_switch") or {}
    head = Text()
    head.append("kill switch ")
    head.append("ACTIVE" if ks.get("active") else "off", style="bold red" if ks.get("active") else "green")
    if ks.get("active"):
        head.append(f" ({ks.get('reason')})")
    for label, key in (("equity", "equity"), ("cash", "cash")):
        head.append(f"   {label} {tables.fmt_money(status.get(key))}")
    for label, key in (("day", "daily_pnl"), ("unrealized", "unrealized_pnl")):
        value = status.get(key) or 0.0
        head.append(f"   {label} ")
        head.append(tables.fmt_money(value, signed=True), style="green" if value > 0 else "red" if value < 0 else "")
    brokers = ", ".join(f"{n} {h.get('state')}" for n, h in (status.get("brokers") or {}).items())
    head.append(f"   brokers: {brokers}   clock {tables.fmt_time(status.get('clock'))}")

    def grid(title: str, columns: list[tables.Column], rows: list[dict[str, Any]], empty: str) -> Table:
        table = Table(title=title, title_justify="left", show_edge=False)
        for column in columns:
            free = column.key == "reason"  # the one column that wraps; the others keep their width
            table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=not free,
                             overflow="fold" if free else "ellipsis", max_width=60 if free else None,
                             min_width=None if free else len(column.header))
        for row in rows:
            cells = []
            for column in columns:
                text = column.fmt(row.get(column.key))
                value = row.get(column.key)
                style = ""
                if column.pnl and isinstance(value, (int, float)):
                    style = "green" if value > 0 else "red" if value < 0 else ""
                if column.key == "outcome" and value == "rejected":
                    style = "red"
                cells.append(Text(text, style=style))
            table.add_row(*cells)
        if not rows:
            table.add_row(Text(empty, style="dim"), *[""] * (len(columns) - 1))
        return table

    positions = [*(status.get("positions") or []), *(status.get("external_positions") or [])]
    working = [{"client_order_id": c} for c in status.get("working_orders") or []]
    feed_columns = [tables.Column("ts", "time", tables.fmt_time), tables.Column("ticker"),
                    tables.Column("direction", "dir"), tables.Column("signal_type", "signal"),
                    tables.price("entry_price", "entry"), tables.Column("stage", "stopped at"),
                    tables.Column("outcome"), tables.Column("reason", "why")]
    return Group(head, grid("positions", tables.POSITION_COLUMNS, positions, "no open positions"),
                 grid("working orders", [tables.Column("client_order_id", "client order id")], working,
                      "no working orders"),
                 grid("decisions", feed_columns, data.get("decisions") or [], "no signals yet"))


def run_watch(args: argparse.Namespace, state_dir: Path) -> int:
    from rich.console import Console
    from rich.live import Live

    sock = socket_path(state_dir)
    console = Console()
    try:
        data = _fetch(sock)
    except DaemonNotRunning:
        print(f"ordergate watch: the daemon is not running (no control socket in {state_dir})")
        return EXIT_FAIL
    except ControlError as exc:
        print(f"ordergate watch: {exc}")
        return EXIT_FAIL
    if args.once or not sys.stdout.isatty():
        console.print(render(data))
        return EXIT_OK
    try:
        with Live(render(data), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(args.interval)
                try:
                    live.update(render(_fetch(sock)))
                except (DaemonNotRunning, ControlError) as exc:
                    live.update(f"ordergate watch: {exc}; retrying")
    except KeyboardInterrupt:
        return EXIT_OK
