"""Shared helpers for tests that trade through alpaca-py against FakeAlpaca (tests/fakes/alpaca_server.py).

A Core on the alpaca broker at SESSION (`alpaca_core`), an entry signal at SESSION, what the ledger holds, the
journal's order rows and fills, and the CLI driven off the event loop (the fake runs on it) for daemon tests.
The `fake` fixture (a started FakeAlpaca) is in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.alpaca import AlpacaBroker
from config.settings import Settings, load_settings
from daemon.core import Core
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import TradeSignal
from tests.conftest import make_signal, until
from tests.daemon_proc import cli, status_async
from tests.fakes.alpaca_server import FINAL, FakeAlpaca
from tests.market import set_market

SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a regular session: the risk gate is open
BARS_START = datetime(2026, 11, 24, 14, 31, tzinfo=UTC)  # 09:31 ET

__all__ = ["BARS_START", "SESSION", "alert_kinds", "alpaca_core", "alpaca_settings", "cli_async", "daemon_status",
           "entry_signal", "held_quantity", "held_with_stop", "journal_fills", "live_stops", "order_row",
           "order_status_is", "resting_stops", "stops_core", "until"]


def alpaca_settings(tmp_path: Path, fake: FakeAlpaca, **overrides: Any) -> Settings:
    """Settings of a Core whose primary broker is alpaca at `fake` (no broker stops unless `exits` says so)."""
    alpaca = {"api_key": fake.api_key, "secret_key": fake.secret_key, "paper": True, "base_url": fake.base_url,
              "trading_stream_url": fake.trading_stream_url, "data_stream_url": fake.data_stream_url("iex"),
              "feed": "iex", "request_timeout_seconds": 3.0}
    # the order counts here are of entries; tests/process/test_protective_stops_alpaca.py covers the protective stops
    overrides.setdefault("exits", {"broker_stop": False})
    return load_settings(
        state_dir=tmp_path / "state", broker={"primary": "alpaca"}, alpaca=alpaca,
        pipeline={"retry_backoff_base": 0.01, "enable_unified_risk": False, **overrides.pop("pipeline", {})},
        **overrides,
    )


async def alpaca_core(tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock | None = None,
                      **overrides: Any) -> Core:
    """A started Core on alpaca at `fake`, AAPL/MSFT/NVDA marked at 100 (the price of `entry_signal`)."""
    core = Core(alpaca_settings(tmp_path, fake, **overrides), clock or SimulatedClock(SESSION))
    broker = core.brokers["alpaca"]
    assert isinstance(broker, AlpacaBroker)
    broker.stream_backoff = (0.05, 0.3)  # reconnect quickly after a drop (the default waits a second or more)
    await core.start()
    set_market(core, dict.fromkeys(("AAPL", "MSFT", "NVDA"), 100.0))  # the feed's last bars: entry_signal's price
    return core


def entry_signal(ticker: str, entry: float = 100.0, stop: float = 98.0) -> TradeSignal:
    """A long entry signal at SESSION."""
    return make_signal(ticker, entry, stop, at=SESSION)


async def order_row(core: Core, coid: str) -> dict[str, Any] | None:
    """The journal's orders row of `coid` (after a flush)."""
    assert core.journal is not None
    await core.journal.flush()
    return await core.journal.get_order(coid)


async def journal_fills(core: Core, coid: str) -> list[dict[str, Any]]:
    """The journal's fills of `coid`, in order."""
    assert core.journal is not None
    return await core.journal.query("SELECT * FROM fills WHERE client_order_id = ? ORDER BY seq", (coid,))


async def order_status_is(core: Core, coid: str, status: str) -> bool:
    row = await order_row(core, coid)
    return row is not None and row["status"] == status


def alert_kinds(core: Core) -> list[str]:
    """The kinds of the alerts the Core raises from now on, in order (a list that grows as they come)."""
    kinds: list[str] = []

    async def hook(kind: str, message: str, severity: str = "warning", **_fields: Any) -> None:
        kinds.append(kind)

    core.alerts.attach(hook)
    return kinds


def held_quantity(core: Core, symbol: str) -> float:
    """The quantity of `symbol` in the Core's ledger (0 when none)."""
    holding = core.ledger.holding(symbol)
    return holding.quantity if holding else 0.0


async def cli_async(state_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`ordergate <args>` in a thread (the fake keeps serving on the loop meanwhile)."""
    return await asyncio.to_thread(cli, state_dir, *args, env=env, timeout=60)


async def daemon_status(state_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """`ordergate status --json` of the daemon at `state_dir` (see `tests.daemon_proc.status`)."""
    return await status_async(state_dir, env)


def live_stops(fake: FakeAlpaca, symbol: str = "AAPL") -> list[dict[str, Any]]:
    """The stop orders on `symbol` open at the fake."""
    return [o for o in fake.orders.values() if o["symbol"] == symbol and o["type"] == "stop"
            and o["status"] not in FINAL]


def resting_stops(fake: FakeAlpaca, symbol: str = "AAPL") -> list[tuple[float, float]]:
    """(quantity, stop price) of each stop on `symbol` resting at the fake."""
    return [(float(o["qty"]), float(o["stop_price"])) for o in live_stops(fake, symbol)]


async def stops_core(tmp_path: Path, fake: FakeAlpaca, clock: SimulatedClock) -> Core:
    """A started Core on alpaca at `fake` with protective stops at the broker, no reconciliation grace."""
    return await alpaca_core(tmp_path, fake, clock=clock, exits={"broker_stop": True},
                             reconcile={"grace_seconds": 0.0})


async def held_with_stop(core: Core, fake: FakeAlpaca) -> float:
    """A long AAPL entry filled at 100 with its protective stop resting at 98; the quantity."""
    fake.next_submit_fills(100.0)
    result = await core.orchestrator.process_signal(entry_signal("AAPL", 100.0, 98.0))
    assert result.success and result.intent is not None, result
    qty = result.intent.quantity
    await until(lambda: held_quantity(core, "AAPL") == qty, what="entry filled")
    await until(lambda: resting_stops(fake) == [(qty, 98.0)], what="the stop resting")
    return qty
