"""SyntheticFeed: deterministic seeded 1-minute bars over NYSE regular sessions (the embedded default data).

Each ticker has its own random stream (seeded by `seed` and the ticker), so the same seed always gives the
same bars and adding a ticker does not change the others. Prices follow a regime-switching walk: trending-up
and trending-down stretches and mean-reverting chop, with mean-reverting volatility that is higher at the
open and close; volume has the intraday U shape. Sessions come from the calendar, so holidays have no bars
and early closes end early. `write_csv` dumps the same data as a replay CSV; `generate_bars` streams any
number of bars for benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline.core.calendar import MarketCalendar, default_calendar
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import Bar

DEFAULT_START = date(2026, 11, 16)
BAR_SECONDS = 60
YIELD_EVERY_BATCHES = 256
_MAX_CLOSED_DAYS = 15

Session = tuple[datetime, datetime]
RawBar = tuple[str, float, float, float, float, float]


class _TickerWalk:
    """The price process of one ticker: regimes (up, down, chop), mean-reverting log volatility."""

    __slots__ = ("anchor", "base_log_vol", "base_volume", "drift", "log_vol", "price", "regime", "regime_left",
                 "revert", "rng", "symbol")

    def __init__(self, symbol: str, seed: int) -> None:
        self.symbol = symbol
        self.rng = random.Random(f"ordergate-synthetic:{seed}:{symbol}")
        self.price = round(self.rng.uniform(40.0, 400.0), 2)
        self.base_log_vol = math.log(self.rng.uniform(0.0005, 0.0010))
        self.log_vol = self.base_log_vol
        self.base_volume = self.rng.uniform(20_000.0, 200_000.0)
        self.regime = "chop"
        self.regime_left = 0
        self.drift = 0.0
        self.revert = 0.0
        self.anchor = self.price

    def start_session(self) -> None:
        """An overnight gap before the first bar of a session."""
        self.price = max(1.0, round(self.price * math.exp(self.rng.gauss(0.0, 0.006)), 2))

    def _next_regime(self) -> None:
        rng = self.rng
        roll = rng.random()
        self.regime = "up" if roll < 0.36 else "down" if roll < 0.72 else "chop"
        self.regime_left = rng.randint(25, 140)
        self.anchor = self.price
        if self.regime == "chop":
            self.drift, self.revert = 0.0, rng.uniform(0.03, 0.10)
        else:
            magnitude = rng.uniform(0.0001, 0.00035)
            self.drift, self.revert = (magnitude if self.regime == "up" else -magnitude), 0.0

    def step(self, frac: float) -> RawBar:
        """The next bar; `frac` is how far through the session it is (0 at the open, near 1 at the close)."""
        rng = self.rng
        if self.regime_left <= 0:
            self._next_regime()
        self.regime_left -= 1
        self.log_vol += 0.03 * (self.base_log_vol - self.log_vol) + 0.08 * rng.gauss(0.0, 1.0)
        edge = (2.0 * frac - 1.0) ** 2  # 1 at the open and the close, 0 at midday
        sigma = math.exp(self.log_vol) * (0.8 + 0.7 * edge)
        drift = self.drift - self.revert * math.log(self.price / self.anchor)
        open_ = self.price
        close = max(1.0, round(open_ * math.exp(drift + sigma * rng.gauss(0.0, 1.0)), 2))
        high = max(round(max(open_, close) * math.exp(abs(rng.gauss(0.0, 1.0)) * sigma * 0.6), 2), open_, close)
        low = min(round(min(open_, close) * math.exp(-abs(rng.gauss(0.0, 1.0)) * sigma * 0.6), 2), open_, close)
        low = max(low, 0.01)
        vol_factor = math.sqrt(math.exp(self.log_vol - self.base_log_vol))
        volume = float(int(self.base_volume * (0.5 + 2.0 * edge) * vol_factor * math.exp(0.3 * rng.gauss(0.0, 1.0))))
        self.price = close
        return self.symbol, open_, high, low, close, volume


def iter_sessions(calendar: MarketCalendar, start: date) -> Iterator[Session]:
    """NYSE regular sessions (open, close in UTC) from `start` on; stops at the end of the calendar."""
    day = start
    closed = 0
    while closed < _MAX_CLOSED_DAYS:
        session = calendar.session(day)
        day += timedelta(days=1)
        if session is None:
            closed += 1
            continue
        closed = 0
        yield session


def sessions_for(calendar: MarketCalendar, start: date, days: int) -> list[Session]:
    """The first `days` sessions on or after `start`."""
    sessions: list[Session] = []
    for session in iter_sessions(calendar, start):
        sessions.append(session)
        if len(sessions) >= days:
            return sessions
    raise ValueError(f"days: the calendar has only {len(sessions)} sessions from {start.isoformat()}, not {days}")


def _raw_stream(
    tickers: Sequence[str], sessions: Iterator[Session] | Sequence[Session], seed: int, n_bars: int | None = None
) -> Iterator[tuple[datetime, list[RawBar]]]:
    """(bar open time, one raw bar per ticker) for every minute of every session (up to n_bars per ticker)."""
    walks = [_TickerWalk(t, seed) for t in tickers]
    produced = 0
    step = timedelta(seconds=BAR_SECONDS)
    for open_, close in sessions:
        minutes = int((close - open_).total_seconds()) // BAR_SECONDS
        for walk in walks:
            walk.start_session()
        for i in range(minutes):
            if n_bars is not None and produced >= n_bars:
                return
            frac = i / minutes
            yield open_ + step * i, [walk.step(frac) for walk in walks]
            produced += 1
    if n_bars is not None and produced < n_bars:
        raise ValueError(f"n_bars: the calendar ran out of sessions after {produced} bars per ticker")


def _to_bars(ts: datetime, raw: list[RawBar]) -> list[Bar]:
    return [Bar(symbol, ts, o, h, low, c, v, "1m") for symbol, o, h, low, c, v in raw]


def _clean_tickers(tickers: Sequence[str]) -> list[str]:
    cleaned = [str(t).strip().upper() for t in tickers]
    if not cleaned or any(not t for t in cleaned):
        raise ValueError("tickers: must be a non-empty list of non-empty symbols")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError(f"tickers: duplicates in {cleaned}")
    return cleaned


class SyntheticFeed:
    """A MarketDataFeed of seeded synthetic 1-minute bars; advances the SimulatedClock to each bar's close."""

    def __init__(
        self,
        tickers: Sequence[str],
        clock: SimulatedClock | None,
        calendar: MarketCalendar | None = None,
        seed: int = 7,
        days: int = 5,
        start: date | None = None,
        pace_bars_per_s: float = 50.0,
    ) -> None:
        if days < 1:
            raise ValueError(f"days: must be at least 1, got {days}")
        if pace_bars_per_s < 0 or not math.isfinite(pace_bars_per_s):
            raise ValueError(f"pace_bars_per_s: must be >= 0, got {pace_bars_per_s!r}")
        if clock is not None and not hasattr(clock, "advance_to"):
            raise ValueError(f"clock: the synthetic feed needs a SimulatedClock (or None), got {type(clock).__name__}")
        self.tickers = _clean_tickers(tickers)
        self.clock = clock
        self.calendar = calendar or default_calendar()
        self.seed = seed
        self.start = start or DEFAULT_START
        self.sessions = sessions_for(self.calendar, self.start, days)
        self.pace_bars_per_s = pace_bars_per_s
        self.timeframe = "1m"
        self.batches_read = 0
        self.unpaced_until: datetime | None = None  # batches up to this time go without pacing (a resumed run)
        self._closed = False

    def bar_batches(self) -> Iterator[list[Bar]]:
        """The same batches, synchronously and without touching the clock."""
        for ts, raw in _raw_stream(self.tickers, self.sessions, self.seed):
            yield _to_bars(ts, raw)

    async def warm_up(self, start: datetime) -> list[list[Bar]]:
        """Nothing: the synthetic sessions start with the first bar."""
        return []

    async def batches(self) -> AsyncIterator[list[Bar]]:
        """Yield each minute's bars (all tickers); pace between batches (0 = as fast as possible)."""
        delay = 1.0 / self.pace_bars_per_s if self.pace_bars_per_s > 0 else 0.0
        step = timedelta(seconds=BAR_SECONDS)
        for ts, raw in _raw_stream(self.tickers, self.sessions, self.seed):
            if self._closed:
                break
            if self.clock is not None:
                self.clock.advance_to(ts + step)
            self.batches_read += 1
            yield _to_bars(ts, raw)
            if delay and (self.unpaced_until is None or ts > self.unpaced_until):
                await asyncio.sleep(delay)
            elif self.batches_read % YIELD_EVERY_BATCHES == 0:
                await asyncio.sleep(0)

    async def close(self) -> None:
        self._closed = True


def generate_bars(
    tickers: Sequence[str], n_bars: int, seed: int = 7, start: date | None = None,
    calendar: MarketCalendar | None = None,
) -> Iterator[list[Bar]]:
    """Stream `n_bars` one-minute bars per ticker over consecutive sessions, one list per minute (benchmarks)."""
    if n_bars < 0:
        raise ValueError(f"n_bars: must be >= 0, got {n_bars}")
    sessions = iter_sessions(calendar or default_calendar(), start or DEFAULT_START)
    for ts, raw in _raw_stream(_clean_tickers(tickers), sessions, seed, n_bars):
        yield _to_bars(ts, raw)


def write_csv(
    path: str | Path,
    tickers: Sequence[str],
    seed: int = 7,
    days: int = 5,
    start: date | None = None,
    calendar: MarketCalendar | None = None,
    n_bars: int | None = None,
) -> int:
    """Write the synthetic data as a replay CSV (ISO timestamps in UTC); returns the number of bars written.

    With `n_bars`, writes that many bars per ticker over as many sessions as needed (ignoring `days`);
    otherwise the same bars as `SyntheticFeed(tickers, ..., seed=seed, days=days, start=start)`.
    """
    calendar = calendar or default_calendar()
    start = start or DEFAULT_START
    names = _clean_tickers(tickers)
    sessions: Iterator[Session] | list[Session]
    sessions = iter_sessions(calendar, start) if n_bars is not None else sessions_for(calendar, start, days)
    rows = 0
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        fh.write("timestamp,symbol,open,high,low,close,volume\n")
        for ts, raw in _raw_stream(names, sessions, seed, n_bars):
            stamp = ts.isoformat()
            fh.writelines(f"{stamp},{s},{o:.2f},{h:.2f},{low:.2f},{c:.2f},{v:.0f}\n" for s, o, h, low, c, v in raw)
            rows += len(raw)
    return rows


__all__ = [
    "DEFAULT_START",
    "SyntheticFeed",
    "generate_bars",
    "iter_sessions",
    "sessions_for",
    "write_csv",
]
