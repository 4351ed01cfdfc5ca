"""The one clock every stage reads: live wall-clock time, or simulated time that follows replayed bars."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Injected into every stage instead of calling datetime.now()."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    @property
    def simulated(self) -> bool: ...


class LiveClock:
    """Wall-clock UTC time."""

    simulated = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """Time that moves only when told (by the replay feed). `sleep` wakes when simulated time passes."""

    simulated = True

    def __init__(self, start: datetime | None = None) -> None:
        # without a start, the first advance_to() sets the time wherever the data begins
        self._started = start is not None
        self._now = start or datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
        self._waiters: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def advance_to(self, when: datetime) -> None:
        """Move time forward (never back, except to set a clock built without a start) and wake sleepers."""
        if when > self._now or not self._started:
            self._now = when
            self._started = True
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + timedelta(seconds=seconds))

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self._now + timedelta(seconds=seconds), next(self._seq), fut))
        await fut


# Monotonic seconds for measuring durations (never for market time): time.monotonic itself, without a frame of
# ours around it (it is read twice per decision)
monotonic: Callable[[], float] = time.monotonic
