"""The journal of record on PostgreSQL (asyncpg): the SQLite Journal's public methods and guarantees, desk-wide.

One database holds the whole desk; each instance writes its own schema (`ordergate_<instance>`, tables from the
SQLite journal's SCHEMA, see journal_pg_schema) and every row carries its instance's name. The guarantees are the
SQLite journal's: an order intent is committed (synchronous_commit=on: WAL flushed) before `record_order_intent`
returns, a fill before `record_fill` returns; signals and decisions are buffered and committed by `flush()` or
with the next intent, in causal order. One daemon per instance: a session advisory lock on the instance's name
(held for the connection's life) refuses a second daemon — on this host or another — writing the same schema.

A lost connection (server restart, network) fails the call in hand and the next call connects again. A durable
write whose commit reply was lost is settled on a new connection by the row's write token: committed (ours), not
there (written again), or someone else's (a duplicate) — so an intent is never reported durable unless it is,
and a fill is never counted twice or dropped because the reply was lost. A call that does not finish (its task
cancelled, as the daemon's shutdown cancels its loops) ends the session: asyncpg keeps a transaction whose BEGIN
was cancelled as the connection's outer one, and every later `transaction()` would only be a savepoint in it,
reported committed and rolled back when the session ends (an intent "durable" and sent, then gone).
"""

from __future__ import annotations

import asyncio
import decimal
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import structlog

from adapters.journal_pg_schema import REGISTRY, REGISTRY_DDL, pg_statements, quote_ident, schema_name, to_pg
from pipeline.core.calendar import TradingDayCache
from pipeline.core.models import Fill, OrderIntent, OrderStatus, TradeSignal
from pipeline.record.decision import DecisionRecord, encode_detail
from pipeline.record.journal import (
    SCHEMA_VERSION,
    STATUS_RANK,
    UPDATE_ORDER_SQL,
    Journal,
    JournalCondition,
    dumps,
    insert_row,
    insert_sql,
)

# (STATUS_RANK, UPDATE_ORDER_SQL: the rule that an order's status never moves backwards has one home, the SQLite
# journal's statement; it is translated, not copied)

T = TypeVar("T")
log = structlog.get_logger("ordergate.journal")
_DDL_LOCK = 0x6F72_6467_6174  # serialises schema creation across instances starting together ("ordgat")
_CONNECTION_LOST = (OSError, ConnectionError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.ConnectionDoesNotExistError,
                    asyncpg.InterfaceError)  # a connection lost inside a transaction: its __aexit__ finds it closed
_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext($1))"
_SESSION_SQL = "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
_SIGNAL_SQL = (
    "INSERT INTO signals(signal_id, ts, received_ts, ticker, direction, signal_type, timeframe, conviction,"
    " entry_price, stop_loss, target_price, source, payload, strategy)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
    " ON CONFLICT DO NOTHING"
)
_DECISION_SQL = ("INSERT INTO decisions(signal_id, stage, outcome, reason, ts, detail, stages, client_order_id, day)"
                 " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)")
_INTENT_SQL = (
    "INSERT INTO orders(client_order_id, signal_id, kind, broker, symbol, side, quantity, order_type, status,"
    " created_ts, updated_ts, intent, strategy, og_token) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
    " ON CONFLICT DO NOTHING"
)
_FILL_SQL = (
    "INSERT INTO fills(fill_id, broker, client_order_id, broker_order_id, symbol, side, quantity, price, commission,"
    " ts, strategy, og_token) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING"
)
_EVENT_SQL = ("INSERT INTO order_events(client_order_id, status, broker, reason, filled_qty, ts)"
              " VALUES ($1,$2,$3,$4,$5,$6)")


class JournalError(OSError):
    """The PostgreSQL journal refused a statement (a full disk, a constraint): an OSError, as a failed write of the
    SQLite journal's file is, so the daemon holds the broker event and applies it again later, in order."""


class JournalUnavailable(JournalError):
    """The PostgreSQL journal cannot be reached (or lost its connection mid-call): nothing was acted on."""


class JournalInUse(JournalError):
    """Another daemon holds this instance's journal (at start, or taken while our connection was down: then this
    daemon writes nothing more to it, its broker events are held, its entries refused)."""


def describe_dsn(dsn: str) -> str:
    """The DSN without its password: where the journal is, for logs and errors."""
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    if parts.hostname:
        return f"postgresql://{user}{parts.hostname}{port}{parts.path or '/'}"
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    return f"postgresql://{user}{port}{parts.path or '/'}" + (f"?host={socket_dir}" if socket_dir else "")


def _affected(status: str) -> int:
    """The row count of a command status ('INSERT 0 1', 'UPDATE 3')."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def num(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def shallow(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict (no deep copy)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, decimal.Decimal) else value


class _Cursor:
    """What `conn.execute` returns to a `Journal.run` callback: rowcount and lastrowid, as sqlite3's cursor."""

    def __init__(self, rowcount: int, lastrowid: int | None) -> None:
        self.rowcount = rowcount
        self.lastrowid = lastrowid


class _SyncConnection:
    """A sqlite3-like connection for `Journal.run(fn)` callbacks (they run on a worker thread; each statement is
    executed on the event loop's asyncpg connection, in SQLite's autocommit manner)."""

    def __init__(self, journal: PgJournal, loop: asyncio.AbstractEventLoop) -> None:
        self.journal = journal
        self.loop = loop

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> _Cursor:
        return asyncio.run_coroutine_threadsafe(self.journal.execute_sqlite(sql, tuple(params)), self.loop).result()

    def executemany(self, sql: str, seq: list[tuple[Any, ...]]) -> _Cursor:
        total = 0
        for params in seq:
            total += self.execute(sql, params).rowcount
        return _Cursor(total, None)


class PgJournal:
    """The Journal's public interface over one instance's schema in a PostgreSQL database."""

    def __init__(self, dsn: str, instance: str, *, connect_timeout: float = 10.0,
                 command_timeout: float = 30.0) -> None:
        self.dsn = dsn
        self.instance = instance
        self.schema = schema_name(instance)
        self.path = f"{describe_dsn(dsn)} schema {self.schema}"  # shown where the SQLite journal shows its file
        self.synchronous = "FULL"
        self.inline = False
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.condition = JournalCondition("missing")
        self._conn: asyncpg.Connection | None = None
        # (server pid, backend start) of our connection's session, and of the one last given up on our side
        self._session: tuple[int, Any] | None = None
        self._lost_session: tuple[int, Any] | None = None
        self._lock = asyncio.Lock()  # one statement (or transaction) at a time on the connection, in call order
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._opened = False
        self.connect_kwargs: dict[str, Any] = {}  # more asyncpg.connect arguments (ssl=..., a connection_class)
        self.durability = "full"  # every durable write committed before it returns, whatever the setting
        self.commits = 0  # transactions committed (a diagnostic, as the SQLite journal's)
        self._days = TradingDayCache()

    # -- connection -----------------------------------------------------------------------------------
    async def _connect(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed() and not self._conn.is_in_transaction():
            return self._conn
        self._drop()  # closed, or left inside a transaction by a call that did not finish: never continue it
        try:
            conn = await asyncpg.connect(
                self.dsn, timeout=self.connect_timeout, command_timeout=self.command_timeout,
                server_settings={"search_path": f"{quote_ident(self.schema)}, public", "synchronous_commit": "on",
                                 "application_name": f"ordergate:{self.instance}"[:63]},
                **self.connect_kwargs)
        except (*_CONNECTION_LOST, asyncpg.PostgresError) as exc:
            raise JournalUnavailable(f"journal {self.path}: cannot connect: {type(exc).__name__}: {exc}") from exc
        try:
            held = await conn.fetchval(_LOCK_SQL, f"ordergate:{self.instance}")
            if not held and self._lost_session is not None:
                held = await self._end_lost_session(conn)
            session = await conn.fetchrow(_SESSION_SQL) if held else None
        except BaseException:
            conn.terminate()
            raise
        if not held or session is None:
            await conn.close()
            raise JournalInUse(f"journal {self.path}: instance {self.instance!r} is in use by another ordergate "
                               "(its advisory lock is held); one daemon per instance")
        self._session, self._lost_session = (session["pid"], session["backend_start"]), None
        self._conn = conn
        return conn

    async def _end_lost_session(self, conn: asyncpg.Connection) -> bool:
        """The lock is held, and we gave a connection up on our side: if the server still keeps that session (the
        same pid and start time: ours, not a later one with its pid), end it and take the lock as it goes (within
        connect_timeout). A session that is not our lost one is never ended: False."""
        assert self._lost_session is not None
        pid, started = self._lost_session
        try:
            ended = await conn.fetchval("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                        " WHERE pid = $1 AND backend_start = $2", pid, started)
        except asyncpg.PostgresError as exc:  # a role without the right to end it: refused, as before, and said
            log.warning("journal_lost_session_not_ended", instance=self.instance, pid=pid, error=str(exc))
            return False
        if not ended:
            return False
        log.warning("journal_lost_session_ended", instance=self.instance, pid=pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        while not await conn.fetchval(_LOCK_SQL, f"ordergate:{self.instance}"):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
            # the server may keep its session (and the instance's lock) until it notices: the next connect ends it
            self._lost_session, self._session = self._session, None

    async def _call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, retry_read: bool = False) -> T:
        """Run `fn(conn)` under the lock; a lost connection is dropped (the next call connects again) and raised
        as JournalUnavailable, or — for a read — retried once on a new connection."""
        if not self._opened:
            raise RuntimeError(f"journal {self.path} is not open")
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connect()
                try:
                    return await fn(conn)
                except _CONNECTION_LOST as exc:
                    self._drop()
                    if not retry_read or attempt == 2:
                        raise JournalUnavailable(f"journal {self.path}: connection lost: {type(exc).__name__}: "
                                                 f"{exc}") from exc
                except asyncpg.PostgresError as exc:
                    raise JournalError(f"journal {self.path}: {type(exc).__name__}: {exc}") from exc
                except BaseException:
                    self._drop()  # cancelled mid-call: the session's state is unknown, it ends here
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _durable(self, write: Callable[[asyncpg.Connection], Awaitable[T]],
                       settle: Callable[[asyncpg.Connection], Awaitable[T | None]]) -> T:
        """A durable write. Its reply lost with the connection, `settle` on a new connection says what happened
        (None: nothing committed, so write it again there)."""
        if not self._opened:
            raise RuntimeError(f"journal {self.path} is not open")
        async with self._lock:
            conn = await self._connect()
            try:
                return await write(conn)
            except _CONNECTION_LOST as exc:
                self._drop()
                lost = exc
            except asyncpg.PostgresError as exc:
                raise JournalError(f"journal {self.path}: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                self._drop()  # cancelled mid-write: nothing reported durable, the session ends here
                raise
            conn = await self._connect()  # JournalUnavailable when the server is still away: nothing acted on
            try:
                settled = await settle(conn)
                return settled if settled is not None else await write(conn)
            except _CONNECTION_LOST as exc:
                self._drop()
                raise JournalUnavailable(f"journal {self.path}: connection lost: {type(exc).__name__}: {exc} "
                                         f"(after {type(lost).__name__})") from exc
            except asyncpg.PostgresError as exc:
                raise JournalError(f"journal {self.path}: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                self._drop()
                raise

    # -- open / close ---------------------------------------------------------------------------------
    async def open(self) -> None:
        self._opened = True
        try:
            await self._open()
        except BaseException:
            self._opened = False
            self._drop()
            raise

    async def _open(self) -> None:
        async with self._lock:
            conn = await self._connect()
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
                existed = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema)
                await conn.execute(REGISTRY_DDL)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
                for stmt in pg_statements(self.instance):
                    await conn.execute(stmt)
                await conn.execute(
                    f"INSERT INTO {REGISTRY}(instance, schema_name, schema_version) VALUES ($1, $2, $3)"
                    " ON CONFLICT (instance) DO UPDATE SET last_seen = now(), schema_version = EXCLUDED.schema_version",
                    self.instance, self.schema, SCHEMA_VERSION)
                has_orders = await conn.fetchval("SELECT 1 FROM orders LIMIT 1")
            # planner statistics at every start (autovacuum keeps them later): a correlated lookup planned on a
            # table without any turns quadratic (the dashboard's page of signals took 20 s on 10 000 rows)
            for table in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", self.schema):
                await conn.execute(f"ANALYZE {quote_ident(self.schema)}.{quote_ident(table['tablename'])}")
        if not existed:
            self.condition = JournalCondition("missing", f"schema {self.schema} not found")
        elif has_orders is None:
            self.condition = JournalCondition("empty", f"schema {self.schema} holds no orders")
        else:
            self.condition = JournalCondition("intact")

    async def close(self) -> None:
        if not self._opened:
            return
        try:
            await self.flush()
        finally:
            async with self._lock:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.close()  # ends the session: the instance's advisory lock goes with it
                self._conn = None
            self._opened = False

    # -- batched: signals and decisions ---------------------------------------------------------------
    def record_signal(self, signal: TradeSignal, received: datetime | None = None) -> None:
        """Buffer a signal row (committed by the next flush)."""
        self._pending.append((_SIGNAL_SQL, (
            signal.signal_id, iso(signal.timestamp) if isinstance(signal.timestamp, datetime) else None,
            iso(received), str(signal.ticker), str(signal.direction), str(signal.signal_type),
            str(signal.timeframe), num(signal.conviction), num(signal.entry_price), num(signal.stop_loss),
            num(signal.target_price), str(signal.source), dumps(shallow(signal)), str(signal.strategy or ""),
        )))

    def record_decision(
        self, signal_id: str | None, stage: str, outcome: str, reason: str = "",
        ts: datetime | None = None, detail: dict[str, Any] | None = None,
    ) -> None:
        """Buffer a decision of one stage (an external fill, a fill issue, a smart-routing choice)."""
        self._pending.append((_DECISION_SQL, (signal_id, stage, outcome, reason, iso(ts),
                                              dumps(detail) if detail else None, None, None, self._day(ts))))

    def record_signal_decision(self, record: DecisionRecord) -> None:
        """Buffer a signal's decision record: one row with every stage outcome (`stages`), the stage it ended at,
        and the intent's client order id when approved (committed with the next intent, or the next flush)."""
        self._pending.append((_DECISION_SQL, (
            record.signal_id, record.stage, record.outcome, record.reason, iso(record.ts),
            encode_detail(record.detail), record.stages_json(), record.client_order_id, self._day(record.ts),
        )))

    def _day(self, ts: datetime | None) -> str | None:
        return self._days(ts) if isinstance(ts, datetime) and ts.tzinfo is not None else None

    def pending_count(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Commit every buffered row in one transaction (kept for the next flush when it fails)."""
        if not self._pending or not self._opened:
            return
        rows, self._pending = self._pending, []

        async def write(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await _insert_rows(conn, rows)
            self.commits += 1

        try:
            await self._call(write)
        except BaseException:
            self._pending[:0] = rows  # nothing is lost: the next flush tries them again, first
            raise

    # -- durable now: orders and fills ----------------------------------------------------------------
    async def record_order_intent(self, intent: OrderIntent, broker: str, ts: datetime) -> bool:
        """Commit the intent before it is sent. False when this client order id is already journaled."""
        rows, self._pending = self._pending, []
        token = uuid.uuid4().hex
        params = (intent.client_order_id, intent.signal_id, intent.kind, broker, intent.symbol, str(intent.side),
                  num(intent.quantity), str(intent.order_type), OrderStatus.PENDING.value, ts.isoformat(),
                  ts.isoformat(), dumps(shallow(intent)), intent.strategy, token)

        async def write(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                await _insert_rows(conn, rows)
                return _affected(await conn.execute(_INTENT_SQL, *params)) == 1

        async def settle(conn: asyncpg.Connection) -> bool | None:
            owner = await conn.fetchval("SELECT og_token FROM orders WHERE client_order_id = $1",
                                        intent.client_order_id)
            return None if owner is None else owner == token

        try:
            return await self._durable(write, settle)
        except BaseException:
            self._pending[:0] = rows  # the buffered rows go with the next write
            raise

    def start_order_intent(self, intent: OrderIntent, broker: str, ts: datetime) -> Awaitable[bool]:
        """`record_order_intent` as the router starts it (the SQLite journal's begins at once; this one when its
        caller awaits it)."""
        return self.record_order_intent(intent, broker, ts)

    async def update_order(
        self, client_order_id: str, status: OrderStatus | str, *, ts: datetime, broker: str | None = None,
        broker_order_id: str | None = None, reason: str | None = None, filled_qty: float | None = None,
        filled_avg_price: float | None = None,
    ) -> None:
        """Record a status change of an order (and keep its event history); an order never moves backwards."""
        stamp, status = ts.isoformat(), str(status)
        update = (STATUS_RANK.get(status, 0), status, stamp, broker, broker_order_id, reason, num(filled_qty),
                  num(filled_avg_price), client_order_id)
        event = (client_order_id, status, broker, reason, num(filled_qty), stamp)

        async def write(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(to_pg(UPDATE_ORDER_SQL), *update)
                await conn.execute(_EVENT_SQL, *event)

        await self._call(write)

    async def record_fill(self, fill: Fill, strategy: str = "") -> bool:
        """Commit a fill of `strategy`'s order. False when this (broker, fill_id) was already journaled: apply it
        only once."""
        token = uuid.uuid4().hex
        params = (fill.fill_id, fill.broker, fill.client_order_id, fill.broker_order_id, fill.symbol, str(fill.side),
                  num(fill.quantity), num(fill.price), num(fill.commission), fill.timestamp.isoformat(), strategy,
                  token)

        async def write(conn: asyncpg.Connection) -> bool:
            return _affected(await conn.execute(_FILL_SQL, *params)) == 1

        async def settle(conn: asyncpg.Connection) -> bool | None:
            owner = await conn.fetchval("SELECT og_token FROM fills WHERE broker = $1 AND fill_id = $2",
                                        fill.broker, fill.fill_id)
            return None if owner is None else owner == token

        return await self._durable(write, settle)

    # -- reads and the run() escape hatch -------------------------------------------------------------
    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows as dicts; `sql` in the SQLite journal's dialect (`?` parameters). Reads see every row recorded so
        far: buffered rows are committed first, on the same connection (a write that fails keeps them buffered and
        the read still answers)."""
        text = to_pg(sql)
        buffered, self._pending = self._pending, []

        async def read(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            nonlocal buffered
            if buffered:
                try:
                    async with conn.transaction():
                        await _insert_rows(conn, buffered)
                except asyncpg.PostgresError:
                    pass
                else:
                    buffered = []
                    self.commits += 1
            return [{k: _plain(v) for k, v in r.items()} for r in await conn.fetch(text, *params)]

        try:
            return await self._call(read, retry_read=True)
        finally:
            if buffered:
                self._pending[:0] = buffered  # rows not written stay buffered for the next commit

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` as the SQLite journal does: `conn.execute(sql, params)` (SQLite dialect) returns
        a cursor with rowcount and lastrowid. fn runs on a worker thread; its statements on this loop."""
        loop = asyncio.get_running_loop()

        async def call(_conn: asyncpg.Connection) -> T:
            return await asyncio.to_thread(fn, _SyncConnection(self, loop), *args)

        return await self._call(call)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """`run` for a function that only writes (the SQLite journal's `write`): here exactly `run`."""
        return await self.run(fn, *args)

    async def append_row(self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> int:
        """The SQLite journal's `append_row` (a closed trade): one INSERT through `write`, its id."""
        return int(await self.write(insert_row, insert_sql(table, columns), values))

    async def execute_sqlite(self, sql: str, params: tuple[Any, ...]) -> _Cursor:
        """One statement of a run() callback, in the SQLite dialect (only from within run(), which holds the
        connection)."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ConnectionError(f"journal {self.path}: connection lost")
        text = to_pg(sql)
        if text.lstrip()[:6].upper() == "INSERT" and "RETURNING" not in text.upper():
            rows = await conn.fetch(text + " RETURNING rowid", *params)
            return _Cursor(len(rows), rows[-1]["rowid"] if rows else None)
        return _Cursor(_affected(await conn.execute(text, *params)), None)

    # the SQLite journal's typed reads, shared (not copied): each is SQL through `query`, translated here
    decision_stages = Journal.decision_stages
    decision_counts = Journal.decision_counts
    order_records = Journal.order_records
    unfinished_orders = Journal.unfinished_orders
    fill_records = Journal.fill_records
    fill_count = Journal.fill_count
    split_records = Journal.split_records
    record_split = Journal.record_split
    journaled = Journal.journaled
    has_unsettled_order = Journal.has_unsettled_order
    recent_orders = Journal.recent_orders

    async def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        rows = await self.query("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,))
        return rows[0] if rows else None

    async def open_orders(self) -> list[dict[str, Any]]:
        """Orders not yet in a final state (pending, new, partially filled)."""
        return await self.query(
            "SELECT * FROM orders WHERE status IN ('pending','new','partially_filled') ORDER BY created_ts")

    async def fills(self) -> list[dict[str, Any]]:
        """Every fill in the order it was journaled (the ledger is rebuilt from these)."""
        return await self.query("SELECT * FROM fills ORDER BY seq")

    async def set_kv(self, key: str, value: Any) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute("INSERT INTO kv(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE"
                               " SET value = EXCLUDED.value", key, dumps(value))

        await self._call(write)

    async def get_kv(self, key: str, default: Any = None) -> Any:
        rows = await self.query("SELECT value FROM kv WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default


async def _insert_rows(conn: asyncpg.Connection, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Buffered rows, one executemany per statement, in order within each table (the decisions stay causal)."""
    by_sql: dict[str, list[tuple[Any, ...]]] = {}
    for sql, params in rows:
        by_sql.setdefault(sql, []).append(params)
    for sql, params_list in by_sql.items():
        await conn.executemany(sql, params_list)
