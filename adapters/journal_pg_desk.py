"""The desk view: every instance's open positions and P&L, read from the shared PostgreSQL journal.

Each instance registered in `public.ordergate_instances` has its schema; positions are rebuilt from its fills
(average cost, as the ledger books them: adding to a side averages the price, reducing keeps it, crossing zero
starts over at the fill's price), realised P&L comes from its closed trades (the day's and all time), unrealised
P&L from the marks its daemon last journaled (pipeline.record.marks: as of `marked_at`, none without a mark), and
every row names its instance. Read-only: it takes no instance's lock, so it runs beside the daemons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from adapters.journal_pg import JournalUnavailable, describe_dsn
from adapters.journal_pg_schema import REGISTRY, quote_ident
from pipeline.record.marks import MARKS_KEY, unrealized

FLAT = 1e-9


@dataclass
class DeskView:
    """What `ordergate desk` shows."""

    day: str
    instances: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        total = {"realized_today": round(sum(i["realized_today"] for i in self.instances), 2),
                 "realized_total": round(sum(i["realized_total"] for i in self.instances), 2),
                 "unrealized": round(sum(i["unrealized"] for i in self.instances), 2),
                 "unmarked_positions": sum(i["unmarked_positions"] for i in self.instances),
                 "open_positions": len(self.positions)}
        return {"day": self.day, "instances": self.instances, "positions": self.positions, "desk": total}


def open_positions(fills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open positions per (strategy, symbol) from fills in journal order (average cost): each strategy's position
    in a symbol is its own, as in the daemon's ledger."""
    book: dict[tuple[str, str], list[float]] = {}  # (strategy, symbol) -> [signed quantity, average price]
    for f in fills:
        signed = float(f["quantity"]) * (1.0 if f["side"] == "buy" else -1.0)
        key = (str(f.get("strategy") or ""), str(f["symbol"]))
        qty, avg = book.get(key, [0.0, 0.0])
        new = qty + signed
        if abs(qty) <= FLAT or ((qty > 0) != (signed > 0) and abs(signed) > abs(qty) + FLAT):
            avg = float(f["price"])  # opened, or crossed through zero: the rest is at this fill's price
        elif (qty > 0) == (signed > 0):
            avg = (abs(qty) * avg + abs(signed) * float(f["price"])) / abs(new)
        book[key] = [new, avg]
    return [{"symbol": s, "strategy": strategy, "direction": "long" if q > 0 else "short", "shares": abs(q),
             "avg_price": round(a, 6)}
            for (strategy, s), (q, a) in sorted(book.items(), key=lambda kv: (kv[0][1], kv[0][0])) if abs(q) > FLAT]


async def read_desk(dsn: str, day: date, *, timeout: float = 10.0) -> DeskView:
    """Every registered instance's positions and realised P&L on `day` (a New York trading day) and in total."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout * 3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise JournalUnavailable(f"desk journal {describe_dsn(dsn)}: cannot connect: {type(exc).__name__}: "
                                 f"{exc}") from exc
    view = DeskView(day=day.isoformat())
    try:
        if await conn.fetchval("SELECT to_regclass($1)", REGISTRY) is None:
            return view  # no instance has written here yet
        for reg in await conn.fetch(f"SELECT instance, schema_name, last_seen FROM {REGISTRY} ORDER BY instance"):
            schema = quote_ident(reg["schema_name"])
            fills = await conn.fetch(f"SELECT symbol, side, quantity, price, strategy FROM {schema}.fills ORDER BY seq")
            pnl = await conn.fetchrow(
                f"SELECT COALESCE(SUM(pnl) FILTER (WHERE day = $1), 0) AS today, COALESCE(SUM(pnl), 0) AS total,"
                f" COUNT(*) FILTER (WHERE day = $1) AS trades_today, COUNT(*) AS trades FROM {schema}.trades",
                day.isoformat())
            working = await conn.fetchval(
                f"SELECT COUNT(*) FROM {schema}.orders WHERE status IN ('pending','new','partially_filled')")
            positions = open_positions([dict(f) for f in fills])
            marks = await _marks(conn, schema)
            for p in positions:
                mark = marks["prices"].get(p["symbol"])
                p["mark"] = float(mark[0]) if unrealized(p["direction"], 1.0, 0.0, mark) is not None else None
                p["unrealized"] = unrealized(p["direction"], p["shares"], p["avg_price"], mark)
                view.positions.append({"instance": reg["instance"], **p})
            valued = [p["unrealized"] for p in positions if p["unrealized"] is not None]
            view.instances.append({
                "instance": reg["instance"], "open_positions": len(positions), "working_orders": int(working),
                "trades_today": int(pnl["trades_today"]), "trades": int(pnl["trades"]),
                "realized_today": round(float(pnl["today"]), 2), "realized_total": round(float(pnl["total"]), 2),
                "unrealized": round(sum(valued), 2), "unmarked_positions": len(positions) - len(valued),
                "marked_at": marks["at"],
                "last_seen": reg["last_seen"].isoformat(),
            })
    finally:
        await conn.close()
    return view


async def _marks(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """The instance's last journaled marks ({"at": None, "prices": {}} when it wrote none or they are unreadable)."""
    raw = await conn.fetchval(f"SELECT value FROM {schema}.kv WHERE key = $1", MARKS_KEY)
    try:
        marks = json.loads(raw) if raw is not None else {}
    except ValueError:
        marks = {}
    prices = marks.get("prices") if isinstance(marks, dict) else None
    at = marks.get("at") if isinstance(marks, dict) else None
    return {"at": at if isinstance(at, str) else None, "prices": prices if isinstance(prices, dict) else {}}


async def read_instance(dsn: str, instance: str, day: date, *, timeout: float = 10.0) -> dict[str, Any]:
    """One instance's open positions (a count) and the day's closed trades, for `status` / `journal` with its
    daemon down (read-only: no lock taken)."""
    from adapters.journal_pg_schema import schema_name

    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout * 3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise JournalUnavailable(f"journal {describe_dsn(dsn)}: cannot connect: {type(exc).__name__}: "
                                 f"{exc}") from exc
    schema = quote_ident(schema_name(instance))
    try:
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.fills") is None:
            return {"open_positions": 0, "trades": [], "decisions": []}
        fills = await conn.fetch(f"SELECT symbol, side, quantity, price, strategy FROM {schema}.fills ORDER BY seq")
        trades = await conn.fetch(f"SELECT * FROM {schema}.trades WHERE day = $1 ORDER BY exit_time", day.isoformat())
        decided = await conn.fetch(f"SELECT stage, outcome, COUNT(*) AS n FROM {schema}.decisions WHERE stages IS"
                                   " NOT NULL AND day = $1 GROUP BY stage, outcome", day.isoformat())
    finally:
        await conn.close()
    return {"open_positions": len(open_positions([dict(f) for f in fills])), "trades": [dict(t) for t in trades],
            "decisions": [dict(d) for d in decided]}
