"""The journal of record: SQLite (WAL mode for the daemon). Signals, decision records, orders, fills, closed trades.

One code path, two durability settings:

- `full` (the daemon): all database work runs on the journal's own thread (journal_thread.JournalThread), so the
  event loop never waits on disk. An order intent or a fill is committed — one transaction, one fsync with
  synchronous=FULL — before its call returns (intent before send, fill before position). Intents and fills that
  arrive while a commit is under way share the next one (group commit: one fsync for all of them, each caller
  still waits for its own row to be durable; the router starts an intent's write as the decision hands it over,
  `start_order_intent`, and its order task awaits it before the send). Everything else is buffered: signals and
  decision records ride along with the next intent or fill commit (an intent's decision record is on disk with
  it) or the writer task's `flush()`; order status events wait for the flush (every [journal] batch_interval_ms),
  off the path to the send. The WAL's checkpoints run mostly on a thread of their own (wal_checkpoint).
- `batched` (a simulated throwaway run: replay, bench): the same statements run on the caller's thread (nothing
  else waits on a simulated loop) inside one open transaction that is committed every `batch_rows` rows and at
  every flush, read and close, with synchronous=OFF and a rollback journal (PERSIST) instead of the WAL: a
  crash loses the run, which nobody keeps. (The daemon's next open of the file puts it back in WAL mode.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import structlog

from pipeline.core.calendar import TradingDayCache
from pipeline.core.models import (
    AssetClass,
    Direction,
    Fill,
    InstrumentType,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    TradeSignal,
)
from pipeline.positions.splits import JOURNAL_KEY as SPLITS_KEY
from pipeline.positions.splits import SplitRecord
from pipeline.record.decision import DecisionRecord, encode_detail
from pipeline.record.journal_check import journal_damage, move_aside
from pipeline.record.journal_thread import JournalThread
from pipeline.record.journaled_keys import JournaledKeys
from pipeline.record.wal_checkpoint import AUTOCHECKPOINT_PAGES, WalCheckpointer

T = TypeVar("T")
log = structlog.get_logger("ordergate.journal")
SCHEMA_VERSION = 2  # 2: the strategy columns (ADDED_COLUMNS)
Durability = Literal["full", "batched"]
BATCH_ROWS = 5_000  # batched: rows per commit; full: buffered rows that make the writer's flush due at once

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    signal_id TEXT PRIMARY KEY, ts TEXT, received_ts TEXT, ticker TEXT, direction TEXT, signal_type TEXT,
    timeframe TEXT, conviction REAL, entry_price REAL, stop_loss REAL, target_price REAL, source TEXT,
    payload TEXT
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, signal_id TEXT, stage TEXT, outcome TEXT, reason TEXT, ts TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS decisions_signal ON decisions(signal_id);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, signal_id TEXT, kind TEXT, broker TEXT, symbol TEXT, side TEXT,
    quantity REAL, order_type TEXT, status TEXT, broker_order_id TEXT, filled_qty REAL DEFAULT 0,
    filled_avg_price REAL, reason TEXT, created_ts TEXT, updated_ts TEXT, intent TEXT
);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT, status TEXT, broker TEXT, reason TEXT,
    filled_qty REAL, ts TEXT
);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT NOT NULL, broker TEXT NOT NULL,
    client_order_id TEXT, broker_order_id TEXT, symbol TEXT, side TEXT, quantity REAL, price REAL,
    commission REAL, ts TEXT, UNIQUE (broker, fill_id)
);
CREATE INDEX IF NOT EXISTS fills_order ON fills(client_order_id);
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER PRIMARY KEY AUTOINCREMENT, signal_id TEXT, ticker TEXT, symbol TEXT, direction TEXT,
    signal_type TEXT, timeframe TEXT, entry_time TEXT, exit_time TEXT, entry_price REAL, exit_price REAL,
    quantity REAL, pnl REAL, r_multiple REAL, exit_type TEXT, holding_minutes REAL, broker TEXT, day TEXT,
    exit_fill_id TEXT
);
CREATE INDEX IF NOT EXISTS trades_day ON trades(day);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, severity TEXT, message TEXT, fields TEXT, ts TEXT
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# One row per stage of every decision: a signal's decision record (its `stages` list, one row each) and the
# one-stage decision rows (external fills, fill issues, smart routing; the per-stage rows of older journals).
DECISION_STAGES_VIEW = """
CREATE VIEW IF NOT EXISTS decision_stages AS
SELECT d.id AS decision_id, d.signal_id, d.ts, d.day, CAST(j.key AS INTEGER) AS step,
       json_extract(j.value, '$.stage') AS stage, json_extract(j.value, '$.outcome') AS outcome,
       COALESCE(json_extract(j.value, '$.reason'), '') AS reason, json_extract(j.value, '$.detail') AS detail
  FROM decisions d, json_each(d.stages) j WHERE d.stages IS NOT NULL
UNION ALL
SELECT id, signal_id, ts, day, 0, stage, outcome, reason, detail FROM decisions WHERE stages IS NULL
"""

# Columns added since the first schema, (table, column, type), in the order they came; `_migrate` adds whichever a
# journal lacks, so any older journal opens. Schema version 1: up to the decision records; 2: the strategy columns.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("trades", "exit_fill_id", "TEXT"),   # one trade row per closing fill
    ("decisions", "stages", "TEXT"),      # one decision record per signal: its stage outcomes (JSON)
    ("decisions", "client_order_id", "TEXT"),
    ("decisions", "day", "TEXT"),         # the New York trading day of the decision
    ("signals", "strategy", "TEXT"),      # the strategy of a signal, its orders, fills and trades
    ("orders", "strategy", "TEXT"),
    ("fills", "strategy", "TEXT"),
    ("trades", "strategy", "TEXT"),
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a journal created before them lacks (ADDED_COLUMNS), their indexes and the decision_stages
    view, then record the schema version."""
    for table, column, kind in ADDED_COLUMNS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS trades_exit_fill ON trades(exit_fill_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS decisions_day ON decisions(day)")
    conn.execute(DECISION_STAGES_VIEW)
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _iso(ts: datetime | None) -> str | None:
    return iso_of(ts) if ts is not None else None


_recent_iso: list[tuple[datetime | None, str]] = [(None, ""), (None, "")]


def iso_of(ts: datetime) -> str:
    """`ts.isoformat()`, remembered for the last two datetimes (by identity: a datetime never changes): a decision
    writes the same few stamps (the signal's, the clock's) into several rows, and a zone-aware isoformat is ~1.5 µs."""
    first, second = _recent_iso
    if first[0] is ts:
        return first[1]
    if second[0] is ts:
        return second[1]
    text = ts.isoformat()
    _recent_iso[1] = first
    _recent_iso[0] = (ts, text)
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _record_json(obj: Any) -> str:
    """A signal or an intent (a slots dataclass) as a JSON object of its fields, encoded by msgspec: no dict
    copy on the hot path. Datetimes as RFC 3339 (read back by datetime.fromisoformat), enums as their values."""
    return _record_encoder.encode(obj).decode()


_record_encoder = msgspec.json.Encoder(enc_hook=_json_default)


@dataclass(frozen=True, slots=True)
class JournalCondition:
    """What `Journal.open()` found on disk.

    intact: it holds orders. missing: there was no file. empty: a file without a single order. damaged: it
    could not be opened or failed its check; its files were moved aside to `preserved` and a new one begun.
    Anything but intact means the ledger cannot be rebuilt from it.
    """

    state: Literal["intact", "missing", "empty", "damaged"]
    detail: str = ""
    preserved: tuple[str, ...] = ()

    @property
    def lost(self) -> bool:
        return self.state != "intact"


class Journal:
    """The journal of one SQLite file (see the module docstring for its two durability settings)."""

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", inline: bool = False,
        durability: Durability | None = None, batch_rows: int = BATCH_ROWS,
    ) -> None:
        """`durability` (default "full"); `inline=True` is the older name of "batched". `synchronous` is the
        PRAGMA of the full setting (FULL: every commit fsync'd)."""
        self.path = Path(path)
        self.synchronous = synchronous
        self.durability: Durability = durability or ("batched" if inline else "full")
        if self.durability not in ("full", "batched"):
            raise ValueError(f"durability: must be 'full' or 'batched', got {self.durability!r}")
        # batched: SQL runs on the caller's thread. Only for simulated time (replay, bench), where nothing else
        # waits on the loop; full: every call goes to the journal's own thread so the loop never blocks on disk.
        self.inline = self.durability == "batched"
        self.batch_rows = batch_rows
        self._executor = JournalThread("journal")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: WalCheckpointer | None = None  # full: the WAL's checkpoints, off the commits
        # rows committed with the next transaction (lists are only ever touched on the event loop's thread)
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        # order status events: committed by flushes and reads only, never carried by a group commit
        self._events: list[tuple[str, tuple[Any, ...]]] = []
        # the orders rows' status changes waiting for that flush, one merged UPDATE per order (see update_order)
        self._updates: dict[str, list[Any]] = {}
        # full: durable statements waiting for the next group commit, each with the future its caller awaits
        self._durable: list[tuple[str, tuple[Any, ...], asyncio.Future[bool]]] = []
        self._committing = False
        self._flushing: asyncio.Task[None] | None = None
        self._flush_at = batch_rows  # buffered rows that start a flush of their own (full) / a commit (batched)
        self._in_txn = 0  # batched: statements in the open transaction
        # batched: the client order ids and (broker, fill id)s it may hold, so intents and fills join the bulk rows
        self._journaled: JournaledKeys | None = JournaledKeys() if self.inline else None
        self._order_rows: dict[str, int] = {}  # batched: client order id -> index in _pending of its buffered INSERT
        self._next_ids: dict[str, int] = {}  # batched: the id the next buffered row of an AUTOINCREMENT table gets
        self._kv: dict[str, Any] = {}  # batched: key -> the value set_kv stored last, in the order of those stores
        self.commits = 0  # transactions committed (a diagnostic: bench, tests)
        self.condition = JournalCondition("missing")

    @property
    def checkpoints(self) -> int:
        """WAL checkpoints run off the commits so far (full; a diagnostic: tests)."""
        return self._checkpointer.checkpoints if self._checkpointer is not None else 0

    # -- plumbing -------------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` on the journal thread (batched: on the caller's thread, in the open
        transaction, after the buffered rows)."""
        if self.inline:
            self._flush_into_txn()
            self._next_ids.clear()  # fn may add rows of its own: the next buffered row's id is asked again
            return self._call(fn, args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """`run` for a function that only writes rows of its own and reads nothing back: batched, it joins the open
        transaction without committing the buffered rows first (they follow in bulk; a commit always takes them
        along; rows buffered under ids of their own go in before it); full, exactly `run`."""
        if not self.inline:
            return await self.run(fn, *args)
        if self._next_ids:  # rows buffered under ids of their own go in first: fn's own rows get ids after them
            self._flush_into_txn()
            self._next_ids.clear()
        self._begin_txn()
        result = self._call(fn, args)
        self._in_txn += 1
        if self._in_txn >= self.batch_rows:
            self._flush_into_txn()
            self._commit_txn()
        return result

    def append_row(self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> Awaitable[int]:
        """Add one row to an AUTOINCREMENT `table` (a closed trade), its columns named; the awaitable gives its id.
        Full: `write` (on the journal thread, committed before it answers). Batched: buffered with the other rows
        under an id of its own, the one SQLite would give it (one above the table's sqlite_sequence, asked after
        the buffered rows), so it joins the bulk rows instead of one INSERT on cold caches."""
        if not self.inline:
            return self.write(insert_row, insert_sql(table, columns), values)
        try:
            row_id = self._next_ids.get(table)
            if row_id is None:
                self._flush_into_txn()  # every row before it is in the table: its sequence is the last id given
                assert self._conn is not None
                found = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
                row_id = (found[0] if found else 0) + 1
            elif self.pending_count() + 1 >= self._flush_at:
                self._flush_into_txn()
        except Exception as exc:
            return _Answered(0, exc)
        self._next_ids[table] = row_id + 1
        self._pending.append((insert_sql(table, ("id", *columns)), (row_id, *values)))
        return _Answered(row_id)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            raise RuntimeError(f"journal {self.path} is not open")
        return fn(self._conn, *args)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        damage = journal_damage(self.path) if existed else None
        preserved: tuple[str, ...] = ()
        if damage is not None:
            preserved = move_aside(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # batched is a throwaway simulated run: a crash loses nothing anyone keeps. It keeps a rollback journal
        # (the original of each page a transaction changes; new pages need none): with WAL every page was written
        # twice (to the WAL, then by its checkpoints into the file), a fifth of the replay's SQLite time, for
        # readers beside the writer that a replay does not have. On disk, not in memory: an in-memory journal
        # left the process's heap 1.7 MB larger in a replay's second half
        conn.execute(f"PRAGMA journal_mode={BATCHED_JOURNAL_MODE if self.inline else 'WAL'}")
        conn.execute(f"PRAGMA synchronous={'OFF' if self.inline else self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        if not self.inline:  # the WAL's checkpoints mostly off the commits: a thread of their own (wal_checkpoint)
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            self._checkpointer = WalCheckpointer(self.path, self.synchronous)
        conn.executescript(SCHEMA)
        _migrate(conn)
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        if self._journaled is not None:  # a replay on a journal that holds orders already: every key it has
            for (client_order_id,) in conn.execute("SELECT client_order_id FROM orders"):
                self._journaled.add_if_new(client_order_id)
            for broker, fill_id in conn.execute("SELECT broker, fill_id FROM fills"):
                self._journaled.add_if_new((broker, fill_id))
        self._conn = conn
        if damage is not None:
            self.condition = JournalCondition("damaged", damage, preserved)
        elif not existed:
            self.condition = JournalCondition("missing", f"{self.path.name} not found")
        elif conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is None:
            self.condition = JournalCondition("empty", f"{self.path.name} holds no orders")
        else:
            self.condition = JournalCondition("intact")

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_sync)

    async def close(self) -> None:
        if self._conn is None:
            return
        while self._committing or self._durable:  # a group commit under way finishes first
            await asyncio.sleep(0.001)
        await self.flush()

        def _close(conn: sqlite3.Connection) -> None:
            conn.close()

        loop = asyncio.get_running_loop()
        if self._checkpointer is not None:  # closed first: the journal's connection is the last to close
            await asyncio.to_thread(self._checkpointer.close)
            self._checkpointer = None
        await loop.run_in_executor(self._executor, self._call, _close, ())
        self._conn = None
        self._executor.shutdown(wait=True)

    # -- batched: signals, decision records, order events ---------------------------------------------
    def record_signal(self, signal: TradeSignal, received: datetime | None = None) -> None:
        """Buffer a signal row (committed by the next flush)."""
        self._buffer(
            "INSERT OR IGNORE INTO signals(signal_id, ts, received_ts, ticker, direction, signal_type, timeframe,"
            " conviction, entry_price, stop_loss, target_price, source, payload, strategy)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                signal.signal_id, _iso(signal.timestamp) if isinstance(signal.timestamp, datetime) else None,
                _iso(received), str(signal.ticker), signal.direction, str(signal.signal_type),
                str(signal.timeframe), _num(signal.conviction), _num(signal.entry_price),
                _num(signal.stop_loss), _num(signal.target_price), str(signal.source), _record_json(signal),
                str(signal.strategy or ""),
            ),
        )

    def record_decision(
        self, signal_id: str | None, stage: str, outcome: str, reason: str = "",
        ts: datetime | None = None, detail: dict[str, Any] | None = None,
    ) -> None:
        """Buffer a decision of one stage (an external fill, a fill issue, a smart-routing choice)."""
        self._buffer(_INSERT_DECISION, (signal_id, stage, outcome, reason, _iso(ts), dumps(detail) if detail else None,
                                        None, None, _day(ts)))

    def record_signal_decision(self, record: DecisionRecord) -> None:
        """Buffer a signal's decision record: one row holding every stage outcome (`stages`), the stage it ended
        at with its outcome and reason, and the intent's client order id when approved."""
        self._buffer(_INSERT_DECISION, (
            record.signal_id, record.stage, record.outcome, record.reason, _iso(record.ts),
            encode_detail(record.detail), record.stages_json(), record.client_order_id, _day(record.ts),
        ))

    def pending_count(self) -> int:
        return len(self._pending) + len(self._events) + len(self._updates) + len(self._kv)

    def _take_all(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every buffered row, signals and decisions first, then the order events and the orders' merged
        status updates (loop thread only). Batched: an order whose INSERT is still buffered is inserted as its
        merged update leaves it (`_whole_order`), not inserted and then updated; the kv rows come last, the last
        value of each key only (see set_kv)."""
        if self._order_rows:
            self._fold_updates()
        rows = self._pending
        if self._events or self._updates:
            rows = rows + self._events
            rows.extend(zip(itertools.repeat(_UPDATE_ORDER), map(tuple, self._updates.values())))
            self._events, self._updates = [], {}
        if self._kv:
            rows.extend((_SET_KV, (key, dumps(value))) for key, value in self._kv.items())
            self._kv = {}
        self._pending = []
        return rows

    def _fold_updates(self) -> None:
        pending, updates = self._pending, self._updates
        for client_order_id, at in self._order_rows.items():
            pending[at] = (_INSERT_WHOLE_ORDER, _whole_order(pending[at][1], updates.pop(client_order_id, None)))
        self._order_rows = {}

    def _buffer(self, sql: str, params: tuple[Any, ...],
                into: list[tuple[str, tuple[Any, ...]]] | None = None) -> None:
        (self._pending if into is None else into).append((sql, params))
        if len(self._pending) + len(self._events) + len(self._updates) >= self._flush_at:
            if self.inline:
                self._flush_into_txn()
            elif self._flushing is None:  # full, and no writer task came by: committed now, in the background
                self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await self.flush()
            self._flush_at = self.batch_rows
        except Exception as exc:  # a full disk: the rows stay buffered; tried again a batch later, not per row
            self._flush_at = self.pending_count() + self.batch_rows
            log.warning("journal_flush_failed", pending=self.pending_count(), error=str(exc))
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Commit every buffered row (batched: and the open transaction)."""
        if self._conn is None:
            return
        if self.inline:
            self._flush_into_txn()
            self._commit_txn()
            return
        if not self.pending_count():
            return
        rows = self._take_all()

        def _write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                _insert_rows(conn, rows)
            self._committed()

        try:
            await self.run(_write)
        except BaseException:
            self._pending[:0] = rows  # nothing is lost: the next flush tries them again, first
            raise

    # -- durable: orders and fills --------------------------------------------------------------------
    async def record_order_intent(self, intent: OrderIntent, broker: str, ts: datetime) -> bool:
        """Commit the intent before it is sent (full: fsync'd, in a group commit with the intents and fills that
        arrive together). False when this client order id is already journaled."""
        return await self.start_order_intent(intent, broker, ts)

    def start_order_intent(self, intent: OrderIntent, broker: str, ts: datetime) -> Awaitable[bool]:
        """`record_order_intent`, its write started now (on the loop thread, before the caller awaits): the
        router starts the intent's commit as the decision hands it over, and its order task awaits the answer.
        Nothing may be sent before that awaitable answers True."""
        stamp = iso_of(ts)
        row = (
            intent.client_order_id, intent.signal_id, str(intent.kind), broker, intent.symbol,
            str(intent.side), intent.quantity, str(intent.order_type), _PENDING,
            stamp, stamp, _record_json(intent), intent.strategy,
        )
        return self._durable_write(_INSERT_ORDER, row, intent.client_order_id)

    async def record_fill(self, fill: Fill, strategy: str = "") -> bool:
        """Commit a fill of `strategy`'s order (full: fsync'd, grouped like intents). False when this
        (broker, fill_id) was already journaled: apply it only once."""
        row = (fill.fill_id, fill.broker, fill.client_order_id, fill.broker_order_id, fill.symbol,
               str(fill.side), fill.quantity, fill.price, fill.commission, iso_of(fill.timestamp), strategy)
        return await self._durable_write(_INSERT_FILL, row, (fill.broker, fill.fill_id))

    async def update_order(
        self, client_order_id: str, status: OrderStatus | str, *, ts: datetime, broker: str | None = None,
        broker_order_id: str | None = None, reason: str | None = None, filled_qty: float | None = None,
        filled_avg_price: float | None = None,
    ) -> None:
        """Record a status change of an order and its event row (buffered: committed by the writer's flush or
        the next read; a crash before then is caught up by asking the broker for the order at the start).

        Every change is an event row of its own; the order's row takes the changes buffered since the last
        flush as one UPDATE, merged here exactly as the statements would apply one after the other: the status
        of the highest rank (the later one on a tie: an order never moves backwards), the latest time, and
        for each other field its latest non-null value."""
        stamp = iso_of(ts)
        status = str(status)  # an OrderStatus (a StrEnum) is its value: str() is .value without its descriptor
        rank = _STATUS_RANK.get(status, 0)
        update = self._updates.get(client_order_id)
        if update is None:
            self._updates[client_order_id] = [rank, status, stamp, broker, broker_order_id, reason, filled_qty,
                                              filled_avg_price, client_order_id]
        else:
            if rank >= update[0]:
                update[0], update[1] = rank, status
            update[2] = stamp
            if broker is not None:
                update[3] = broker
            if broker_order_id is not None:
                update[4] = broker_order_id
            if reason is not None:
                update[5] = reason
            if filled_qty is not None:
                update[6] = filled_qty
            if filled_avg_price is not None:
                update[7] = filled_avg_price
        self._buffer(_INSERT_EVENT, (client_order_id, status, broker, reason, filled_qty, stamp), self._events)

    def _durable_write(self, sql: str, params: tuple[Any, ...], key: Hashable) -> Awaitable[bool]:
        """Execute one INSERT OR IGNORE of an order (`key`: its client order id) or a fill (its (broker, fill id))
        durably (see the module docstring); the awaitable says whether it wrote its row (False: the row was there).
        Started at once: the caller awaits the answer."""
        if self.inline:
            return self._batched_write(sql, params, key)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._durable.append((sql, params, done))
        self._start_group(loop)
        return done

    def _batched_write(self, sql: str, params: tuple[Any, ...], key: Hashable) -> Awaitable[bool]:
        """Batched: a key the journal certainly lacks (`_journaled`) is buffered with the other rows and answered
        "written" now (the buffered rows join the open transaction in bulk every batch_rows and before any read
        or commit; a commit always takes them along, so what is committed never holds an intent without its
        decision record). A key it may hold (a repeat) is asked of the table itself, after the buffered rows. A
        failed write answers with its error and buffers nothing of this row."""
        assert self._journaled is not None
        try:
            if not self._journaled.add_if_new(key):
                self._flush_into_txn()
                count = self._txn_execute(sql, params)
                if self._in_txn >= self.batch_rows:
                    self._commit_txn()
                return _WROTE if count == 1 else _FOUND
            if self.pending_count() + 1 >= self._flush_at:
                self._flush_into_txn()  # before this row joins them: a failure leaves it unwritten (and unsent)
        except Exception as exc:
            return _Answered(False, exc)
        if sql is _INSERT_ORDER:
            self._order_rows[key] = len(self._pending)  # type: ignore[index]
        self._pending.append((sql, params))
        return _WROTE

    def _start_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand everything waiting to the journal thread as one transaction, unless one is under way (its
        completion starts the next group: whatever arrived meanwhile shares that commit)."""
        if self._committing or not self._durable or self._conn is None:
            return
        group, self._durable = self._durable, []
        # the buffered signals and decision records go first (the journal reads in causal order: an intent's
        # decision record is on disk with it); order status events (self._events) stay for the writer's flush,
        # off the path to the send (each concerns an order journaled before)
        rows, self._pending = self._pending, []
        self._committing = True
        statements = [(sql, params) for sql, params, _ in group]
        try:
            # the journal thread answers the loop itself (one call_soon_threadsafe): no concurrent future
            # wrapped in an asyncio one and its callback chain between the commit and the send
            self._executor.post(self._commit_and_answer, loop, group, rows, statements)
        except RuntimeError as exc:  # the executor is shut down: every waiter hears it, nothing is lost
            loop.call_soon(self._group_committed, loop, group, rows, None, exc)

    def _commit_and_answer(self, loop: asyncio.AbstractEventLoop,
                           group: list[tuple[str, tuple[Any, ...], asyncio.Future[bool]]],
                           rows: list[tuple[str, tuple[Any, ...]]],
                           statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """On the journal thread: commit the group, then hand its row counts (or the error) to the loop."""
        try:
            counts: list[int] | None = self._commit_group(rows, statements)
            error: BaseException | None = None
        except BaseException as exc:  # a failed write (full disk): every waiter gets it
            counts, error = None, exc
        try:
            loop.call_soon_threadsafe(self._group_committed, loop, group, rows, counts, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
        if counts is not None and self._checkpointer is not None:  # after the answer: off the path to the send
            self._checkpointer.committed()

    def _commit_group(self, rows: list[tuple[str, tuple[Any, ...]]],
                      statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"journal {self.path} is not open")
        with _transaction(conn):
            _insert_rows(conn, rows)
            counts = [conn.execute(sql, params).rowcount for sql, params in statements]
        self.commits += 1
        return counts

    def _group_committed(self, loop: asyncio.AbstractEventLoop,
                         group: list[tuple[str, tuple[Any, ...], asyncio.Future[bool]]],
                         rows: list[tuple[str, tuple[Any, ...]]], counts: list[int] | None,
                         error: BaseException | None) -> None:
        self._committing = False
        if error is not None or counts is None:
            self._pending[:0] = rows  # a failed write (full disk) keeps the buffered rows for the next one
            failure = error if error is not None else RuntimeError("journal group commit returned nothing")
            for _, _, done in group:
                if not done.done():
                    done.set_exception(failure)
        else:
            for (_, _, done), count in zip(group, counts, strict=True):
                if not done.done():
                    done.set_result(count == 1)
        self._start_group(loop)

    # batched: one open transaction on the caller's thread
    def _flush_into_txn(self) -> None:
        if not self.pending_count() or self._conn is None:
            return
        rows = self._take_all()
        try:
            self._begin_txn()
            _insert_rows(self._conn, rows)
        except BaseException:
            self._pending[:0] = rows
            raise
        self._in_txn += len(rows)
        if self._in_txn >= self.batch_rows:
            self._commit_txn()

    def _txn_execute(self, sql: str, params: tuple[Any, ...]) -> int:
        self._begin_txn()
        assert self._conn is not None
        count = self._conn.execute(sql, params).rowcount
        self._in_txn += 1
        return count

    def _committed(self) -> None:
        """A transaction committed on the journal thread (full): counted, and the checkpointer told."""
        self.commits += 1
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _begin_txn(self) -> None:
        assert self._conn is not None
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")

    def _commit_txn(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("COMMIT")
            self.commits += 1
        self._in_txn = 0

    # -- reads ----------------------------------------------------------------------------------------
    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows as dicts. Reads see every row recorded so far: buffered rows are committed first, in the same
        trip to the journal thread."""
        if self._conn is None:
            raise RuntimeError(f"journal {self.path} is not open")
        if self.inline:
            with contextlib.suppress(sqlite3.Error, OSError):  # a write that fails (full disk) never fails a read
                self._flush_into_txn()
            return _read(self._conn, sql, params)
        rows = self._take_all()
        written = not rows

        def _flush_and_read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            nonlocal written
            if rows:
                try:
                    with _transaction(conn):
                        _insert_rows(conn, rows)
                except (sqlite3.Error, OSError):
                    pass  # a full disk: the rows stay buffered, and the read still answers with what is on disk
                else:
                    self._committed()
                    written = True
            return _read(conn, sql, params)

        try:
            return await self.run(_flush_and_read)
        finally:
            if not written:
                self._pending[:0] = rows  # rows not written stay buffered for the next commit

    async def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        rows = await self.query("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,))
        return rows[0] if rows else None

    async def open_orders(self) -> list[dict[str, Any]]:
        """Orders not yet in a final state (pending, new, partially filled)."""
        return await self.query(
            "SELECT * FROM orders WHERE status IN ('pending','new','partially_filled') ORDER BY created_ts"
        )

    async def fills(self) -> list[dict[str, Any]]:
        """Every fill in the order it was journaled (the ledger is rebuilt from these)."""
        return await self.query("SELECT * FROM fills ORDER BY seq")

    async def decision_stages(self, signal_id: str) -> list[dict[str, Any]]:
        """Every stage outcome journaled for `signal_id`, in order (its decision records' stages)."""
        return await self.query("SELECT decision_id, step, stage, outcome, reason, detail FROM decision_stages"
                                " WHERE signal_id=? ORDER BY decision_id, step", (signal_id,))

    async def decision_counts(self, day: str | None = None) -> dict[str, dict[str, int]]:
        """Signals by the stage their decision ended at and its outcome ({stage: {outcome: n}}), for one New York
        day or for the whole journal."""
        where = "WHERE stages IS NOT NULL" + (" AND day = ?" if day else "")
        rows = await self.query(f"SELECT stage, outcome, COUNT(*) AS n FROM decisions {where}"
                                " GROUP BY stage, outcome ORDER BY stage, outcome", (day,) if day else ())
        return decision_counts(rows)

    async def set_kv(self, key: str, value: Any) -> None:
        """Store `value` (JSON) under `key`: full, committed before it returns. Batched, buffered like the other
        rows (a read flushes them first), and only the last value of a key stored before the rows go in is
        written (and encoded), when they go in: the table ends the same, key by key and in the order of the keys'
        last stores, as with one INSERT OR REPLACE per call. So a batched caller hands over a value it no longer
        changes (every caller builds a fresh one)."""
        if self.inline:
            kv = self._kv
            kv.pop(key, None)  # a key stored again moves to the end: its row goes in after the others'
            kv[key] = value
            if self.pending_count() >= self._flush_at:
                self._flush_into_txn()
            return
        await self.write(insert_row, _SET_KV, (key, dumps(value)))

    async def get_kv(self, key: str, default: Any = None) -> Any:
        rows = await self.query("SELECT value FROM kv WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    # -- typed reads for recovery and reconciliation (the daemon holds no SQL) ------------------------------
    async def order_records(self) -> list[tuple[OrderIntent, OrderStatus | None, str | None]]:
        """Every journaled order as (intent, status, broker), oldest first; an unreadable intent is logged and
        left out."""
        rows = await self.query("SELECT intent, status, broker FROM orders ORDER BY rowid")
        out = []
        for row in rows:
            intent = intent_from_json(row["intent"])
            if intent is not None:
                out.append((intent, _status_of(row["status"]), row["broker"]))
        return out

    async def unfinished_orders(self) -> list[UnfinishedOrder]:
        """Orders not in a final state, each with what its journaled fills add up to."""
        rows = await self.query(
            "SELECT o.client_order_id, o.broker, o.symbol, o.side, o.created_ts,"
            " COALESCE(SUM(f.quantity), 0) AS qty, COALESCE(SUM(f.quantity * f.price), 0) AS notional"
            " FROM orders o LEFT JOIN fills f ON f.client_order_id = o.client_order_id"
            " WHERE o.status IN ('pending','new','partially_filled') GROUP BY o.client_order_id")
        return [UnfinishedOrder(r["client_order_id"], r["broker"], r["symbol"], Side(r["side"]),
                                datetime.fromisoformat(r["created_ts"]) if r["created_ts"] else None,
                                r["qty"], r["notional"]) for r in rows]

    async def fill_records(self) -> list[Fill]:
        """Every journaled fill as a Fill, in the order it was journaled (the ledger is rebuilt from these)."""
        return [Fill(r["fill_id"], r["client_order_id"], r["symbol"], Side(r["side"]), r["quantity"], r["price"],
                     datetime.fromisoformat(r["ts"]), r["broker"], r["broker_order_id"], r["commission"] or 0.0)
                for r in await self.fills()]

    async def fill_count(self, symbol: str) -> int:
        """How many fills of `symbol` the journal holds (a split's place among them: `SplitRecord.fills_before`)."""
        rows = await self.query("SELECT COUNT(*) AS n FROM fills WHERE symbol=?", (symbol,))
        return int(rows[0]["n"]) if rows else 0

    async def split_records(self) -> list[SplitRecord]:
        """The stock splits applied to the book, oldest first (kv `splits`); an unreadable one is logged and left
        out."""
        out = []
        for item in await self.get_kv(SPLITS_KEY, []) or []:
            try:
                out.append(SplitRecord.from_json(item))
            except (ValueError, TypeError, AttributeError) as exc:
                log.error("journal_split_unreadable", record=str(item)[:200], error=str(exc))
        return out

    async def record_split(self, record: SplitRecord) -> None:
        """Add a split to the journal's splits (committed before it returns, with the journal FULL)."""
        items = list(await self.get_kv(SPLITS_KEY, []) or [])
        items.append(record.to_json())
        await self.set_kv(SPLITS_KEY, items)

    async def journaled(self, client_order_ids: list[str]) -> set[str]:
        """Which of these client order ids have an order row."""
        if not client_order_ids:
            return set()
        marks = ",".join("?" * len(client_order_ids))
        rows = await self.query(f"SELECT client_order_id FROM orders WHERE client_order_id IN ({marks})",
                                tuple(client_order_ids))
        return {r["client_order_id"] for r in rows}

    async def has_unsettled_order(self, symbol: str, *, except_kind: str) -> bool:
        """Whether an order on `symbol` (not of `except_kind`) is unfinished, or filled more than the journal has
        fills for."""
        rows = await self.query(
            "SELECT o.client_order_id FROM orders o WHERE o.symbol = ? AND o.kind != ? AND (o.status IN"
            " ('pending','new','partially_filled') OR COALESCE(o.filled_qty, 0) > 1e-9 + (SELECT"
            " COALESCE(SUM(f.quantity), 0) FROM fills f WHERE f.client_order_id = o.client_order_id)) LIMIT 1",
            (symbol, except_kind))
        return bool(rows)

    async def recent_orders(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest orders, newest first (`ordergate orders`)."""
        return await self.query(
            "SELECT client_order_id, signal_id, kind, broker, symbol, side, quantity, status, filled_qty,"
            " filled_avg_price, reason, created_ts FROM orders ORDER BY created_ts DESC LIMIT ?", (limit,))


class _Answered:
    """The answer of a write already made on the caller's thread (batched): awaited like the future of a group
    commit, it gives the row count's verdict or raises the write's error."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def __await__(self) -> Generator[Any, None, Any]:
        if self.error is not None:
            raise self.error
        return self.value
        yield  # pragma: no cover - makes this a generator: the await answers without suspending


_WROTE, _FOUND = _Answered(True), _Answered(False)


@dataclass(slots=True, frozen=True)
class UnfinishedOrder:
    """A journaled order not final yet, with the quantity and notional of its journaled fills."""

    client_order_id: str
    broker: str | None
    symbol: str
    side: Side
    created_at: datetime | None
    filled_qty: float
    filled_notional: float


def intent_from_json(text: str | None) -> OrderIntent | None:
    """The OrderIntent journaled as JSON (its enums and time restored); None, logged, when it cannot be read."""
    if not text:
        return None
    data = json.loads(text)  # a row that is not JSON at all is damage: the start stops (journal_check)
    try:
        data["side"] = Side(data["side"])
        data["order_type"] = OrderType(data["order_type"])
        data["asset_class"] = AssetClass(data["asset_class"])
        data["direction"] = Direction(data["direction"])
        data["instrument_type"] = InstrumentType(data["instrument_type"])
        data["created_at"] = datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None
        return OrderIntent(**data)
    except (KeyError, ValueError, TypeError) as exc:
        log.error("journal_intent_unreadable", error=str(exc))
        return None


def _status_of(text: str | None) -> OrderStatus | None:
    try:
        return OrderStatus(text) if text else None
    except ValueError:
        return None


def decision_counts(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """(stage, outcome, n) rows as {stage: {outcome: n}}."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(str(row["stage"]), {})[str(row["outcome"])] = int(row["n"])
    return out


def _read(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _day(ts: datetime | None) -> str | None:
    return _days(ts) if isinstance(ts, datetime) and ts.tzinfo is not None else None


_days = TradingDayCache()
_INSERT_DECISION = ("INSERT INTO decisions(signal_id, stage, outcome, reason, ts, detail, stages, client_order_id, day)"
                    " VALUES (?,?,?,?,?,?,?,?,?)")
_INSERT_ORDER = ("INSERT OR IGNORE INTO orders(client_order_id, signal_id, kind, broker, symbol, side, quantity,"
                 " order_type, status, created_ts, updated_ts, intent, strategy) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
# batched: a new order's row with what its status updates buffered since made of it (see _whole_order)
_INSERT_WHOLE_ORDER = ("INSERT INTO orders(client_order_id, signal_id, kind, broker, symbol, side, quantity,"
                       " order_type, status, created_ts, updated_ts, intent, strategy, broker_order_id, reason,"
                       " filled_qty, filled_avg_price) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_INSERT_FILL = ("INSERT OR IGNORE INTO fills(fill_id, broker, client_order_id, broker_order_id, symbol,"
                " side, quantity, price, commission, ts, strategy) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
_SET_KV = "INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)"
_INSERT_EVENT = ("INSERT INTO order_events(client_order_id, status, broker, reason, filled_qty, ts)"
                 " VALUES (?,?,?,?,?,?)")


_PENDING = OrderStatus.PENDING.value  # a new order's status
_STATUS_RANK = {"pending": 0, "new": 1, "partially_filled": 2, "filled": 3, "canceled": 3, "rejected": 3,
                "expired": 3, "replaced": 3, "never_reached": 3}
# An order never moves backwards (a late submit reply after its fill event, say): the stored status stays when
# its rank is above the new one's. Parameters: the new status's rank, the new status, updated_ts, broker,
# broker_order_id, reason, filled_qty, filled_avg_price, client_order_id.
_UPDATE_ORDER = (
    "UPDATE orders SET status=CASE WHEN (CASE status "
    + " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in _STATUS_RANK.items())
    + " ELSE 0 END) > ? THEN status ELSE ? END, updated_ts=?, broker=COALESCE(?, broker),"
    " broker_order_id=COALESCE(?, broker_order_id), reason=COALESCE(?, reason),"
    " filled_qty=COALESCE(?, filled_qty), filled_avg_price=COALESCE(?, filled_avg_price)"
    " WHERE client_order_id=?"
)
# the rule's public names, for another backend of the journal (adapters/journal_pg.py translates the statement)
STATUS_RANK = _STATUS_RANK
UPDATE_ORDER_SQL = _UPDATE_ORDER


def _whole_order(row: tuple[Any, ...], update: list[Any] | None) -> tuple[Any, ...]:
    """An _INSERT_ORDER row (a new order: status pending) as _INSERT_WHOLE_ORDER's, `update` (update_order's
    merged change, or None) applied exactly as _UPDATE_ORDER would apply it to the inserted row: every status
    outranks or ties pending, so the status is the update's; the update's time; broker and filled_qty where it
    gives them; its broker order id, reason and average price."""
    if update is None:
        return (*row, None, None, 0.0, None)
    _, status, stamp, broker, broker_order_id, reason, filled_qty, filled_avg_price, _ = update
    return (row[0], row[1], row[2], row[3] if broker is None else broker, row[4], row[5], row[6], row[7], status,
            row[9], stamp, row[11], row[12], broker_order_id, reason, 0.0 if filled_qty is None else filled_qty,
            filled_avg_price)


@functools.cache
def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """INSERT INTO table(columns) VALUES (?, ...), made once per table and columns."""
    return f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def insert_row(conn: sqlite3.Connection, sql: str, values: tuple[Any, ...]) -> int:
    """A `run` callback: one INSERT, the new row's id."""
    return int(conn.execute(sql, values).lastrowid or 0)


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Execute buffered rows, one executemany per statement. Each statement inserts into its own table, so rows
    keep their order within a table (the decisions' ids stay causal). Many rows of one INSERT go in
    MULTI_ROWS at a time, as one statement of that many VALUES rows (each row still its own insert, in order,
    with the statement's conflict clause): one step of the statement instead of one per row."""
    by_sql: dict[str, list[tuple[Any, ...]]] = {}
    for sql, params in rows:
        by_sql.setdefault(sql, []).append(params)
    for sql, params_list in by_sql.items():
        whole = len(params_list) - len(params_list) % MULTI_ROWS
        if whole and sql.startswith("INSERT"):
            chain = itertools.chain.from_iterable
            conn.executemany(_multi_row(sql), [tuple(chain(params_list[i:i + MULTI_ROWS]))
                                               for i in range(0, whole, MULTI_ROWS)])
            if whole < len(params_list):
                conn.executemany(sql, params_list[whole:])
        else:
            conn.executemany(sql, params_list)


BATCHED_JOURNAL_MODE = "PERSIST"  # batched: a rollback journal, kept between transactions (see the module docstring)
MULTI_ROWS = 64  # VALUES rows per bulk INSERT: 64 x 17 columns at most, far below SQLite's 32 766 variables


@functools.lru_cache(maxsize=64)
def _multi_row(sql: str) -> str:
    """`INSERT ... VALUES (?,...)` with MULTI_ROWS rows of VALUES."""
    cut = sql.rindex(" VALUES ") + len(" VALUES ")
    return sql[:cut] + ",".join([sql[cut:]] * MULTI_ROWS)


def _shallow(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict without asdict()'s deep copy (this runs for every signal and order)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _num(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
