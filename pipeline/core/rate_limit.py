"""The one token bucket: a burst of `capacity` requests, refilled at a steady rate.

Every rate limit of ordergate is this rule: the webhook's per-source 429s (`KeyedBuckets`) and the Alpaca
adapter's client-side pacing of REST calls (`TokenBucket.per_minute`), both on the wall clock (monotonic).
Time is whatever the `now` callable returns, in seconds, so a test drives it by hand.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.clock import monotonic


class TokenBucket:
    """At most `capacity` tokens, refilled at `per_second`; a request spends one."""

    __slots__ = ("_now", "_paused_until", "_updated", "capacity", "per_second", "tokens")

    def __init__(self, capacity: float, per_second: float, now: Callable[[], float]) -> None:
        self.capacity = float(capacity)
        self.per_second = float(per_second)
        self.tokens = self.capacity
        self._now = now
        self._updated = now()
        self._paused_until = 0.0

    @classmethod
    def per_minute(cls, per_minute: int, burst: int | None = None,
                   now: Callable[[], float] | None = None) -> TokenBucket:
        """A small burst (a quarter of the budget, at most 20, unless given) refilled so that no 60 s window
        sees more than `per_minute` requests."""
        capacity = float(burst if burst is not None else max(1, min(20, per_minute // 4)))
        return cls(capacity, max(per_minute - capacity, 1.0) / 60.0, now if now is not None else monotonic)

    def level(self) -> float:
        """Tokens available now (refilled up to the capacity)."""
        now = self._now()
        if now > self._updated:
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.per_second)
        self._updated = max(self._updated, now)
        return self.tokens

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        tokens = self.level()
        pause = max(0.0, self._paused_until - self._now())
        return max(pause, 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_second)

    def take(self) -> float:
        """Spend a token: 0.0 when one was there, else the seconds until one is (nothing spent)."""
        wait = self.wait_time()
        if wait == 0.0:
            self.tokens -= 1.0
        return wait

    def pause_for(self, seconds: float) -> None:
        """No token before `seconds` from now (a server's 429 reset); the bucket is emptied."""
        self._paused_until = max(self._paused_until, self._now() + seconds)
        self.tokens = 0.0

    def reconfigure(self, capacity: float, per_second: float) -> None:
        """A new rate from now on: the level is capped at the new capacity at once."""
        self.level()
        self.capacity = float(capacity)
        self.per_second = float(per_second)
        self.tokens = min(self.tokens, self.capacity)

    @property
    def full(self) -> bool:
        """True when the bucket has refilled to its capacity (an idle key)."""
        return self.level() >= self.capacity


class KeyedBuckets:
    """One `TokenBucket` per key (per request source), `per_minute` a minute with bursts of the same size;
    at most `max_keys` kept (idle, full buckets are dropped first, then the oldest)."""

    def __init__(self, per_minute: int, now: Callable[[], float], max_keys: int) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self.max_keys = max_keys
        self._now = now
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def reconfigure(self, per_minute: int) -> None:
        """A new rate from now on (a SIGHUP reload): every bucket is capped at the new burst at once."""
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        for bucket in self._buckets.values():
            bucket.reconfigure(self.capacity, self.per_second)

    def acquire(self, key: str) -> float:
        """Take one token of `key`: 0.0 when allowed, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict()
            bucket = self._buckets[key] = TokenBucket(self.capacity, self.per_second, self._now)
        return bucket.take()

    def _evict(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.full]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]
