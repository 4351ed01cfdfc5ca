"""The one token bucket (pipeline.core.rate_limit): the webhook's per-source buckets and Alpaca's pacing."""

from __future__ import annotations

import pytest

from pipeline.core.rate_limit import KeyedBuckets, TokenBucket


def test_keyed_buckets_budget_per_source_refill_and_reload() -> None:
    now = [0.0]
    buckets = KeyedBuckets(6, lambda: now[0], max_keys=100)
    assert [buckets.acquire("a") for _ in range(6)] == [0.0] * 6
    assert buckets.acquire("a") == pytest.approx(10.0)   # 6 a minute: one token every 10 s
    assert buckets.acquire("b") == 0.0                   # another source has its own budget
    now[0] += 10.0
    assert buckets.acquire("a") == 0.0
    assert buckets.acquire("a") > 0
    buckets.reconfigure(2)                               # a SIGHUP: every bucket capped at the new burst
    now[0] += 3600.0
    assert [buckets.acquire("b") == 0.0 for _ in range(3)] == [True, True, False]


def test_keyed_buckets_evict_idle_sources_first() -> None:
    now = [0.0]
    buckets = KeyedBuckets(60, lambda: now[0], max_keys=2)
    buckets.acquire("busy")
    for _ in range(59):
        buckets.acquire("busy")
    buckets.acquire("idle")
    now[0] += 1.0                                        # "idle" is full again, "busy" is not
    buckets.acquire("new")
    assert len(buckets) == 2
    assert buckets.acquire("busy") == 0.0                # one token refilled in 1 s
    assert buckets.acquire("busy") > 0                   # still throttled: its bucket was kept


def test_pause_empties_the_bucket_until_the_reset() -> None:
    now = [0.0]
    bucket = TokenBucket.per_minute(200, now=lambda: now[0])
    assert bucket.take() == 0.0
    bucket.pause_for(5.0)
    assert bucket.take() == pytest.approx(5.0)
    now[0] += 4.9
    assert bucket.take() == pytest.approx(0.1)          # nothing leaves before the reset
    now[0] += 0.1
    assert bucket.take() == 0.0
