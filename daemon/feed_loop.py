"""The bar loop: the feed's batches through the engine; a live feed warms the strategy first, a simulated one
resumes where an earlier run on the same state dir left off (the journal remembers the last bar it traded)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from daemon.wiring import make_feed
from pipeline.core.clock import Clock
from pipeline.core.models import Bar
from pipeline.core.ports import MarketDataFeed

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
SESSION_MINUTES = 390
WARM_UP_MAX_SESSIONS = 10  # 1m history for the clouds at start: enough for 5m-1h; a daily timeframe warms partly
RESUME_KEY = "simulated_feed_position"  # journal kv: the last bar time a simulated run traded
RESUME_EVERY_BATCHES = 50
RESUME_WARM_BATCHES = 400  # bars before the resume point that warm the strategy again (its slowest cloud: 50x5m)


class FeedLoop:
    """Feeds a Core's engine from the configured bar source; `done` once the feed has ended."""

    def __init__(self, core: Core, clock: Clock, *, stop_requested: Callable[[], bool],
                 on_bars: Callable[[int], None]) -> None:
        self.core = core
        self.clock = clock
        self.stop_requested = stop_requested
        self.on_bars = on_bars  # the bars metric
        self.done = False

    async def run(self) -> None:
        """Trade the feed's bars until it ends or a stop is requested (a simulated run resumes where it left off)."""
        feed = make_feed(self.core.settings, self.clock, self.core.calendar)
        engine = self.core.engine
        first = True
        last_log = 0
        resume = await self._resume_point(feed)
        skipped: deque[list[Bar]] = deque(maxlen=RESUME_WARM_BATCHES)
        last_traded: datetime | None = None
        try:
            if not self.clock.simulated:
                try:
                    await self._warm_up(feed)
                except Exception:  # the strategy then warms up on live bars
                    log.exception("warm_up_failed")
            async for batch in feed.batches():
                if self.stop_requested():
                    break
                if resume is not None:
                    if batch[0].timestamp <= resume:
                        skipped.append(batch)  # traded by an earlier run of this state dir
                        continue
                    self._resumed(resume, skipped)
                    resume = None
                await engine.on_batch(batch)
                last_traded = batch[0].timestamp
                if self.clock.simulated and engine.batches % RESUME_EVERY_BATCHES == 0:
                    await self._save_resume_point(last_traded)
                self.on_bars(len(batch))
                if first:
                    log.info("bars_flowing", symbols=len(batch), bar_time=batch[0].timestamp.isoformat())
                    first = False
                if engine.batches - last_log >= 200:
                    last_log = engine.batches
                    log.info("bars", batches=engine.batches, bars=engine.bars, last=batch[0].timestamp.isoformat(),
                             signals=engine.signals, entries=engine.entries, exits=engine.exits,
                             positions=self.core.ledger.count(), equity=round(self.core.ledger.equity(), 2))
                if self.stop_requested():  # asked during the step: end now, not after the next bar (live: a minute)
                    break
        except Exception:
            log.exception("feed_failed")
        finally:
            await feed.close()
            if self.clock.simulated and last_traded is not None:
                await self._save_resume_point(last_traded)
        self.done = True
        log.info("feed_finished", batches=engine.batches, bars=engine.bars, signals=engine.signals,
                 entries=engine.entries, exits=engine.exits)

    async def _resume_point(self, feed: MarketDataFeed) -> datetime | None:
        """Where a simulated run on this state dir left off (the journal remembers it): the bars up to there were
        traded already, so a restart continues the sessions instead of trading them again."""
        journal = self.core.journal
        if not self.clock.simulated or journal is None:
            return None
        stored = await journal.get_kv(RESUME_KEY)
        if not isinstance(stored, str):
            return None
        try:
            resume = datetime.fromisoformat(stored)
        except ValueError:
            log.error("simulated_feed_position_unreadable", value=stored[:100])
            return None
        feed.unpaced_until = resume  # type: ignore[attr-defined]  # simulated feeds: no pacing while skipping
        return resume

    def _resumed(self, resume: datetime, skipped: deque[list[Bar]]) -> None:
        for batch in skipped:
            self.core.engine.warm_up(batch)
        log.info("simulated_feed_resumed", after=resume.isoformat(), warmed_batches=len(skipped))
        skipped.clear()

    async def _save_resume_point(self, timestamp: datetime) -> None:
        if self.core.journal is not None:
            try:
                await self.core.journal.set_kv(RESUME_KEY, timestamp.isoformat())
            except Exception as exc:  # a full disk: the run goes on, a restart re-trades a few more bars
                log.warning("simulated_feed_position_not_saved", error=str(exc))

    async def _warm_up(self, feed: MarketDataFeed) -> None:
        """A live feed's history before now goes through the strategy's clouds (no signals, no exits), so it
        can trade from the first live bar instead of after warmup_bars bars of its largest timeframe."""
        strategy = self.core.strategy
        sessions = min(WARM_UP_MAX_SESSIONS, math.ceil(strategy.warm_up_minutes() / SESSION_MINUTES) + 1)
        start = self.core.calendar.open_sessions_back(self.clock.now(), sessions)
        batches = await feed.warm_up(start)
        for batch in batches:
            self.core.engine.warm_up(batch)
        warm = sum(strategy.is_warm(s, tf) for s in self.core.settings.data.tickers for tf in strategy.timeframes)
        log.info("strategy_warmed_up", batches=len(batches), start=start.isoformat(), sessions=sessions,
                 warm=warm, of=len(self.core.settings.data.tickers) * len(strategy.timeframes))

