"""The process: the core plus its feed loop, control socket, OS signals, systemd notifications, the background
loops (housekeeping, gauges, journal writer) and the services around it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import structlog

from config.settings import ConfigError, Settings
from daemon import heap
from daemon.control import ControlServer, socket_path
from daemon.control_handlers import ControlHandlers
from daemon.core import Core
from daemon.feed_loop import FeedLoop
from daemon.journal_guard import fail_closed_if_journal_lost
from daemon.live_rule import live_rule_problem
from daemon.os_signals import OsSignals
from daemon.ready import ready_summary
from daemon.services import Services
from daemon.systemd import SystemdNotifier, watchdog_interval, watchdog_loop
from daemon.task_stop import cancel_and_wait
from pipeline.core.clock import Clock, LiveClock, SimulatedClock

log = structlog.get_logger("ordergate.daemon")


class Daemon:
    """The process: core + feed + control socket + OS signals + systemd + metrics + webhook."""

    def __init__(self, settings: Settings, config_file: str | None = None, *,
                 overrides: dict[str, Any] | None = None) -> None:
        problem = live_rule_problem(settings)  # `ordergate run` refuses it earlier; nothing may build it anyway
        if problem:
            raise ConfigError(problem)
        self.settings = settings
        self.config_file = config_file
        self.overrides = dict(overrides or {})  # the CLI's settings: a reload applies them again
        self.interval_changed = asyncio.Event()  # a reload changed [reconcile] interval_seconds
        live_data = settings.data.source == "alpaca"
        self.clock: Clock = LiveClock() if live_data else SimulatedClock()
        self.core = Core(settings, self.clock)
        self.notifier = SystemdNotifier()
        self.handlers = ControlHandlers(self)
        self.control = ControlServer(socket_path(self.core.state_dir), self.handlers.table())
        self._stop = asyncio.Event()
        self.core.stop_requested = self._stop.is_set
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = False
        self._heartbeat = 0.0
        self.services = Services(self)
        self.feed = FeedLoop(self.core, self.clock, stop_requested=self._stop.is_set, on_bars=self.services.bars)
        self.signals = OsSignals(self)

    # -- run ------------------------------------------------------------------------------------------
    async def run(self) -> int:
        """Start everything, trade until a stop is requested, shut down; the exit status (0)."""
        self.signals.install()
        log.info("daemon_starting", pid=os.getpid(), state_dir=str(self.core.state_dir),
                 broker=self.settings.broker.primary, data=self.settings.data.source)
        await self.control.start()
        try:
            await self.services.start_before_core()
            await self.core.start()
            await fail_closed_if_journal_lost(self.core)
            await self.core.reconcile_at_start()
            await self.services.start_after_core()
            frozen = heap.freeze_start_up()  # start-up's objects out of every later collection (the send's p99)
            self.ready = True
            active = self.core.kill_switch.is_active()
            self.notifier.ready(status="kill switch active" if active else "trading")
            log.info("daemon_ready", kill_switch=active,
                     positions=self.core.ledger.count(), gc_frozen=frozen,
                     **await ready_summary(self.core, self.clock))
            interval = watchdog_interval()
            if interval:
                self._tasks.append(asyncio.create_task(watchdog_loop(self.notifier, interval), name="watchdog"))
            self._tasks.append(asyncio.create_task(self.feed.run(), name="bars"))
            self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
            self._tasks.append(asyncio.create_task(self.core.consume_signals(), name="signals"))
            self._tasks.extend(self.start_periodic_checks())
            self._tasks.append(asyncio.create_task(self._journal_writer(), name="journal-writer"))
            await self._stop.wait()
        finally:
            await self._shutdown()
            self.signals.hand_over()
            heap.defaults()  # the process's collector as it was (a daemon run inside another process: tests)
        return 0

    def request_stop(self) -> None:
        """Stop as SIGTERM would."""
        log.info("shutdown_requested")
        self._stop.set()

    # -- background loops -------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            await self._reconcile_wait()
            await self.housekeep()

    async def housekeep(self) -> None:
        """One pass of the reconcile interval's chores, in order; each runs whatever an earlier one raised (a
        failing reconciliation must not stop the pruning, the marks or the journal's flush)."""
        core = self.core
        chores = (("day_rollover", self._day_rollover), ("reconcile", core.reconcile), ("prune", self._prune),
                  ("marks", core.save_marks), ("flush", self._flush_journal))
        for name, chore in chores:
            try:
                await chore()
            except Exception:
                log.exception("housekeeping_failed", chore=name)

    async def _day_rollover(self) -> None:
        if self.core.state.check_day_rollover():
            log.info("day_rollover", day=str(self.core.calendar.trading_day(self.clock.now())))
        self.core.account.renew_day()  # the daily loss limit is a share of the new day's starting equity

    async def _prune(self) -> None:
        self.core.engine.prune()

    async def _flush_journal(self) -> None:
        if self.core.journal is not None:
            await self.core.journal.flush()

    async def _reconcile_wait(self) -> None:
        """Sleep `[reconcile] interval_seconds`; a reload that changes it starts the wait over at the new value."""
        while True:
            self.interval_changed.clear()
            try:
                await asyncio.wait_for(self.interval_changed.wait(), self.settings.reconcile.interval_seconds)
            except TimeoutError:
                return

    def start_periodic_checks(self) -> list[asyncio.Task[None]]:
        """The once-a-second gauges and the five-second order checks, as two tasks: an order check that runs long
        (a held fill waits out its settle) never stalls the heartbeat or the kill switch's retried write."""
        return [asyncio.create_task(self._gauges(), name="gauges"),
                asyncio.create_task(self._order_checks(), name="order-checks")]

    async def _gauges(self) -> None:
        """Once a second: loop heartbeat (for /healthz), the kill switch's retried write, gauges, broker-down
        alerts."""
        while True:
            self._heartbeat = asyncio.get_running_loop().time()
            self.core.kill_switch.retry()  # a trip whose write failed is written again until it lands
            await self.services.refresh()
            await asyncio.sleep(1.0)

    async def _order_checks(self) -> None:
        """Every 5 s: brokers not yet connected are tried again, a broker down past its breaker's cool-down is
        probed, and accepted orders overdue a fill looked up."""
        while True:
            await asyncio.sleep(5.0)
            try:
                if self.core.router.unstarted_brokers():
                    await self.core.connect_unstarted()
                await self.core.router.probe_down_brokers()
                await self.core.check_overdue()
            except Exception:  # one failed pass must not end the checks
                log.exception("order_checks_failed")

    async def _journal_writer(self) -> None:
        """Commit buffered signal and decision rows every [journal] batch_interval_ms (off the decision path)."""
        journal = self.core.journal
        if journal is None:
            return
        interval = self.settings.journal.batch_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            if journal.pending_count():
                try:
                    await journal.flush()
                except Exception:
                    log.exception("journal_flush_failed", pending=journal.pending_count())

    def healthy(self) -> tuple[bool, str]:
        """For /healthz: the loop answers and the primary broker is connected."""
        lag = asyncio.get_running_loop().time() - self._heartbeat
        if self._heartbeat and lag > 5.0:
            return False, f"event loop unresponsive for {lag:.1f}s"
        primary = self.settings.broker.primary
        broker = self.core.brokers[primary]
        state = self.core.router.broker_state(primary)
        if not broker.is_connected() or state == "down":
            return False, f"primary broker {primary} is {'down' if state == 'down' else 'disconnected'}"
        return True, "ok"

    def reconfigure(self, settings: Settings) -> None:
        """Run with `settings` from now on (validated; restart-only fields equal to the running ones)."""
        self.settings = settings
        self.core.reconfigure(settings)
        self.services.reconfigure(settings)


    async def _shutdown(self) -> None:
        self.signals.stopping()  # OS signals stay handled to the end
        self.notifier.stopping(status="shutting down")
        log.info("daemon_stopping")
        await self.services.stop_intake()
        running_on = await cancel_and_wait(self._tasks)
        if running_on:
            log.error("tasks_left_running_at_shutdown", tasks=[task.get_name() for task in running_on])
        with contextlib.suppress(Exception):
            await self.core.stop()
        await self.services.stop()
        await self.control.stop()
        log.info("daemon_stopped")
