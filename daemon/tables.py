"""Terminal output of the CLI: aligned tables, prices on the instrument's tick, money with separators, P&L in
colour on a terminal (plain when piped, or with NO_COLOR set). `--json` never comes through here.

Standard library only, imported on the CLI path: nothing here may pull in pandas, pydantic or the daemon.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

GREEN, RED, BOLD, DIM, RESET = "\x1b[32m", "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
SUB_PENNY_BELOW = 1.0  # US equities: $0.01 tick at or above $1, $0.0001 below (Reg NMS rule 612)


def use_colour(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def tick_decimals(price: float) -> int:
    """Decimals of the instrument's tick for a stock at this price: 2 at or above $1, 4 below."""
    return 2 if abs(price) >= SUB_PENNY_BELOW else 4


def fmt_price(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "-" if value is None else str(value)
    return f"{number:,.{tick_decimals(number)}f}"


def fmt_money(value: Any, *, signed: bool = False) -> str:
    number = _number(value)
    if number is None:
        return "-" if value is None else str(value)
    if abs(number) < 0.005:
        number = 0.0  # no "-0.00"
    return f"{number:+,.2f}" if signed else f"{number:,.2f}"


def fmt_qty(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "-" if value is None else str(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.4f}".rstrip("0")


def fmt_pct(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.1%}"


def fmt_r(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:+.2f}R"


def fmt_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fmt_time(value: Any) -> str:
    """An ISO timestamp shortened to `YYYY-MM-DD HH:MM:SS` (UTC offsets dropped when +00:00)."""
    if not value:
        return "-"
    text = str(value).replace("T", " ")
    return text.removesuffix("+00:00")[:19]


class Column:
    """One table column: the row key, its header, a formatter and whether it is a number (right-aligned)."""

    def __init__(self, key: str, header: str | None = None, fmt: Callable[[Any], str] = fmt_text, *,
                 numeric: bool = False, pnl: bool = False) -> None:
        self.key = key
        self.header = key.replace("_", " ") if header is None else header
        self.fmt = fmt
        self.numeric = numeric or pnl
        self.pnl = pnl


def price(key: str, header: str | None = None) -> Column:
    return Column(key, header, fmt_price, numeric=True)


def money(key: str, header: str | None = None) -> Column:
    return Column(key, header, fmt_money, numeric=True)


def pnl(key: str, header: str | None = None) -> Column:
    return Column(key, header, lambda v: fmt_money(v, signed=True), pnl=True)


def qty(key: str, header: str | None = None) -> Column:
    return Column(key, header, fmt_qty, numeric=True)


def paint(text: str, value: Any, colour: bool) -> str:
    """Green for a gain, red for a loss, on a terminal; the text unchanged otherwise."""
    number = _number(value)
    if not colour or number is None or abs(number) < 0.005:
        return text
    return f"{GREEN if number > 0 else RED}{text}{RESET}"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, colour: bool = False,
          indent: str = "") -> str:
    """Rows as an aligned table: a header, then one line per row; numbers right-aligned."""
    cells = [[c.fmt(row.get(c.key)) for c in columns] for row in rows]
    widths = [max([len(c.header)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def align(text: str, column: Column, width: int) -> str:
        return text.rjust(width) if column.numeric else text.ljust(width)

    header = "  ".join(align(c.header, c, w) for c, w in zip(columns, widths, strict=True)).rstrip()
    lines = [indent + (f"{BOLD}{header}{RESET}" if colour else header)]
    for row, line in zip(rows, cells, strict=True):
        parts = []
        for column, text, width in zip(columns, line, widths, strict=True):
            shown = paint(text, row.get(column.key), colour) if column.pnl else text
            pad = " " * (width - len(text))  # padded outside the colour codes
            parts.append(pad + shown if column.numeric else shown + pad)
        lines.append(indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, str]], indent: str = "") -> str:
    """`label: value` lines with the values in one column, whatever the labels' lengths."""
    items = list(pairs)
    width = max((len(label) for label, _ in items), default=0) + 1
    return "\n".join(f"{indent}{(label + ':').ljust(width)} {value}" for label, value in items)


# -- the commands ------------------------------------------------------------------------------------------
POSITION_COLUMNS = [
    Column("symbol"), Column("strategy"), Column("direction", "side"), qty("shares"), price("entry_price", "entry"),
    price("current_price", "last"), price("stop_loss", "stop"), price("target_price", "target"),
    pnl("unrealized_pnl", "unrealized"), Column("sector"), Column("broker"), Column("entry_time", "opened", fmt_time),
]
ORDER_COLUMNS = [
    Column("created_ts", "created", fmt_time), Column("symbol"), Column("side"), Column("kind"), qty("quantity", "qty"),
    qty("filled_qty", "filled"), price("filled_avg_price", "avg price"), Column("status"), Column("broker"),
    Column("client_order_id", "client order id"), Column("reason"),
]
SUMMARY_COLUMNS = [
    Column("name", "", fmt_text), Column("trades", numeric=True), Column("wins", numeric=True),
    Column("losses", numeric=True), Column("win_rate", "win rate", fmt_pct, numeric=True),
    pnl("gross_pnl", "gross P&L"), Column("avg_r", "avg R", fmt_r, numeric=True),
    money("max_drawdown", "max drawdown"),
]


STRATEGY_COLUMNS = [
    Column("strategy"), Column("kind"), Column("open_positions", "open", numeric=True),
    money("market_value", "value"), money("unrealized_pnl", "unrealized"), money("daily_pnl", "daily P&L"),
    Column("max_positions", "max pos", numeric=True), Column("equity_share", "equity share", numeric=True),
    Column("daily_loss", "daily loss", numeric=True),
]


def render_positions(rows: list[dict[str, Any]], colour: bool) -> str:
    if not rows:
        return "no open positions"
    out = table(rows, POSITION_COLUMNS, colour=colour)
    external = [r for r in rows if r.get("external")]
    if external:
        out += f"\n{len(external)} external (not ordergate's: counted as risk, never traded): " + ", ".join(
            str(r.get("symbol")) for r in external)
    return out


def render_orders(rows: list[dict[str, Any]], colour: bool) -> str:
    if not rows:
        return "no orders"
    show = [c for c in ORDER_COLUMNS if c.key != "reason" or any(r.get("reason") for r in rows)]
    return table(rows, show, colour=colour)


def render_journal(summary: dict[str, Any], colour: bool) -> str:
    if not summary:
        return "no journal"
    total = {"name": "all", **{k: summary.get(k) for k in ("trades", "wins", "losses", "win_rate", "gross_pnl",
                                                           "avg_r", "max_drawdown")}}
    day = summary.get("day")
    lines = [f"closed trades {day}" if day else "closed trades", table([total], SUMMARY_COLUMNS, colour=colour)]
    for key, title in (("by_signal_type", "by signal type"), ("by_exit_type", "by exit type")):
        groups = summary.get(key) or {}
        if not groups:
            continue
        rows = [{"name": name, **stats} for name, stats in sorted(groups.items())]
        columns = [Column("name", title.removeprefix("by ")), *SUMMARY_COLUMNS[1:]]
        lines += ["", title, table(rows, columns, colour=colour)]
    decisions = summary.get("decisions") or {}
    if decisions:  # every signal of the day by where its decision record ended
        rows = [{"stage": stage, "outcome": outcome, "signals": n}
                for stage, outcomes in sorted(decisions.items()) for outcome, n in sorted(outcomes.items())]
        lines += ["", "signals by decision", table(rows, [Column("stage"), Column("outcome"),
                                                         Column("signals", numeric=True)], colour=colour)]
    return "\n".join(lines)


def render_status(result: dict[str, Any], colour: bool) -> str:
    ks = result.get("kill_switch") or {}
    active = bool(ks.get("active"))
    kill = "ACTIVE" if active else "off"
    if colour:
        kill = f"{RED}{BOLD}{kill}{RESET}" if active else f"{GREEN}{kill}{RESET}"
    if active:
        kill += f"  ({ks.get('reason')}, since {fmt_time(ks.get('since'))})"
    running = "yes" if result.get("running") else "no"
    if result.get("pid"):
        running += f" (pid {result['pid']})"
    if result.get("control_socket") == "missing":
        running += ", control socket missing"
    pairs: list[tuple[str, str]] = [("running", running), ("kill switch", kill)]
    if active and ks.get("durable") is False:
        pairs.append(("", f"NOT ON DISK: a restart now would lose it ({ks.get('write_error')}; retrying)"))
    daily = result.get("daily_pnl", 0.0)
    pairs.append(("daily P&L", paint(fmt_money(daily, signed=True), daily, colour)))
    for key, label in (("equity", "equity"), ("cash", "cash")):
        if key in result:
            pairs.append((label, fmt_money(result[key])))
    for key, label in (("realized_pnl", "realized P&L"), ("unrealized_pnl", "unrealized P&L")):
        if key in result:
            pairs.append((label, paint(fmt_money(result[key], signed=True), result[key], colour)))
    pairs.append(("open positions", fmt_text(result.get("open_positions"))))
    if "open_orders" in result:
        pairs.append(("open orders", fmt_text(result.get("open_orders"))))
    breaker = result.get("circuit_breaker") or {}
    if breaker.get("open"):
        pairs.append(("circuit breaker", f"OPEN until {fmt_time(breaker.get('open_until'))}"))
    for name, health in (result.get("brokers") or {}).items():
        state = str(health.get("state"))
        if colour:
            state = f"{GREEN if state == 'connected' else RED}{state}{RESET}"
        error = f"  ({health.get('last_error')})" if health.get("last_error") else ""
        pairs.append((f"broker {name}", state + error))
    if result.get("clock"):
        pairs.append(("clock", fmt_time(result["clock"])))
    if result.get("state_error"):
        pairs.append(("state file", f"UNREADABLE: {result['state_error']}"))
    lines = [fields(pairs)]
    exposure = result.get("exposure_by_sector") or {}
    if exposure:
        rows = [{"sector": s, "value": v} for s, v in sorted(exposure.items(), key=lambda kv: -abs(kv[1]))]
        lines += ["", "exposure by sector", table(rows, [Column("sector"), money("value", "market value")],
                                                  colour=colour, indent="  ")]
    strategies = result.get("strategies") or {}
    if len(strategies) > 1:  # several strategies on the account: each one's positions, P&L and limits
        rows = [{"strategy": name, **line} for name, line in strategies.items()]
        lines += ["", "strategies", table(rows, STRATEGY_COLUMNS, colour=colour, indent="  ")]
    positions = [*(result.get("positions") or []), *(result.get("external_positions") or [])]
    if positions:
        lines += ["", "positions", render_positions(positions, colour)]
    return "\n".join(lines)
