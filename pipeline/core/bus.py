"""The in-process event bus: typed topics over bounded queues. Publish waits when full; nothing is dropped."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Topic(Generic[T]):
    """One topic: every subscriber gets every message, in order, through its own bounded queue."""

    def __init__(self, name: str, maxsize: int = 1024) -> None:
        self.name = name
        self.maxsize = maxsize
        self._queues: list[asyncio.Queue[T]] = []
        self.published = 0

    def subscribe(self) -> asyncio.Queue[T]:
        queue: asyncio.Queue[T] = asyncio.Queue(self.maxsize)
        self._queues.append(queue)
        return queue

    async def publish(self, message: T) -> None:
        """Deliver to every subscriber, waiting for room (back-pressure) rather than dropping."""
        self.published += 1
        for queue in self._queues:
            if queue.full():
                await queue.put(message)
            else:
                queue.put_nowait(message)

    def depth(self) -> int:
        """The deepest subscriber queue."""
        return max((q.qsize() for q in self._queues), default=0)


class Bus:
    """The daemon's topics: bars (batches per time step), signals, orders, broker events, and each signal's
    decision outcome (`decisions`, StageOutcome)."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.bars: Topic = Topic("bars", maxsize)
        self.signals: Topic = Topic("signals", maxsize)
        self.orders: Topic = Topic("orders", maxsize)
        self.broker_events: Topic = Topic("broker_events", maxsize * 4)
        self.decisions: Topic = Topic("decisions", maxsize)

    def topics(self) -> list[Topic]:
        return [self.bars, self.signals, self.orders, self.broker_events, self.decisions]

    def depths(self) -> dict[str, int]:
        return {t.name: t.depth() for t in self.topics()}
