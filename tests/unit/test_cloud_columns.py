"""Issue 17: CloudColumns advances many tracks at once with the scalar path's arithmetic, value for value.

The reference is the scalar path itself: `ema_cloud._Track.update` and `EmaCloudStrategy._advance_alignment`,
one bar at a time; every row of history, relative volume, count and alignment must be equal (floats to the bit),
and every bar on which `_setups` finds a set-up must be among `advance`'s candidates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.strategy.cloud_columns import CloudColumns, Completed
from pipeline.strategy.ema_cloud import EmaCloudStrategy, _setups, _Track

SPANS = (5, 12, 8, 9, 34, 50)
START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def _run(seed: int, n_tracks: int, steps: int, lookback: int, warmup: int, drop: float, repeat_p: float) -> None:
    rng = random.Random(seed)
    columns = CloudColumns("5m", SPANS, lookback, 64)
    col_tracks = [columns.add(f"S{k}") for k in range(n_tracks)]
    ref = [_Track(f"S{k}", "5m", SPANS, 64, lookback) for k in range(n_tracks)]
    price = [rng.uniform(20, 200) for _ in range(n_tracks)]
    for step in range(steps):
        when = START + timedelta(minutes=5 * step)
        present = [k for k in range(n_tracks) if rng.random() >= drop]
        if not present:
            continue
        o, h, lo, c, v = [], [], [], [], []
        for k in present:
            price[k] *= 1.0 + rng.gauss(0, 0.004)
            close = price[k]
            o.append(close * (1 + rng.gauss(0, 0.001)))
            c.append(close)
            h.append(max(o[-1], close) * (1 + abs(rng.gauss(0, 0.001))))
            lo.append(min(o[-1], close) * (1 - abs(rng.gauss(0, 0.001))))
            v.append(0.0 if rng.random() < 0.05 else rng.uniform(100, 5000))
        rows = np.array(present, dtype=np.intp)
        stamp_ns = int(when.timestamp()) * 1_000_000_000
        stamps: datetime | list[datetime] = when
        ns: int | np.ndarray = stamp_ns
        if rng.random() < repeat_p:  # some bars not after their track's last one (a repeated time): dropped
            back = [rng.random() < 0.5 for _ in present]
            stamps = [when - timedelta(minutes=5) if b else when for b in back]
            ns = np.array([stamp_ns - 300_000_000_000 if b else stamp_ns for b in back], dtype=np.int64)
        bars = Completed(np.arange(len(present), dtype=np.intp), ns, stamps, np.array(o), np.array(h), np.array(lo),
                         np.array(c), np.array(v))
        done = columns.advance(rows, bars, warmup)
        candidates = {at for at, *_ in done.candidates} if done is not None else set()
        kept = done.kept.positions.tolist() if done is not None else []
        for idx, k in enumerate(present):
            track = ref[k]
            stamp = stamps if isinstance(stamps, datetime) else stamps[idx]
            if track.last_ts is not None and stamp <= track.last_ts:
                assert idx not in kept
                continue
            prev = track.rows[-1] if track.rows else None
            cur = track.update(stamp, o[idx], h[idx], lo[idx], c[idx], v[idx])
            fresh = EmaCloudStrategy._advance_alignment(track, cur)
            at = kept.index(idx)
            assert done is not None and done.rows[at] == cur
            if prev is not None and track.count > warmup and _setups(track, prev, cur, fresh):
                assert at in candidates, (step, k)
            for at_c, prev_c, fresh_c, rel_c in done.candidates:
                if at_c == at:
                    assert (prev_c, fresh_c, rel_c) == (prev, fresh, track.rel_volume)
        for k in range(n_tracks):
            mine, theirs = col_tracks[k], ref[k]
            assert list(mine.rows) == list(theirs.rows)
            assert (mine.count, mine.last_ts, mine.align_dir, mine.prev_align, mine.align_fired) == \
                (theirs.count, theirs.last_ts, theirs.align_dir, theirs.prev_align, theirs.align_fired)
            assert mine.rel_volume == theirs.rel_volume
            assert columns.vol_sum[k] == theirs.vol_sum


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_tracks=st.integers(1, 9), lookback=st.integers(1, 25),
       warmup=st.integers(0, 60), drop=st.sampled_from([0.0, 0.2, 0.6]), repeat_p=st.sampled_from([0.0, 0.1]))
def test_advance_equals_the_scalar_track(seed: int, n_tracks: int, lookback: int, warmup: int, drop: float,
                                         repeat_p: float) -> None:
    _run(seed, n_tracks, 160, lookback, warmup, drop, repeat_p)


def test_long_run_with_the_exact_sum_every_1024_bars() -> None:
    """Past 1024 and 2048 bars the volume sum is wiped to math.fsum of the window, on both paths."""
    _run(5, 3, 2_200, 7, 50, 0.1, 0.02)


def test_no_set_ups_when_the_strategy_is_off() -> None:
    columns = CloudColumns("5m", SPANS, 20, 64)
    columns.add("A")
    for step in range(200):
        close = 100.0 + (step % 17) - 8.0
        bars = Completed(np.array([0], dtype=np.intp), step * 300_000_000_000, START + timedelta(minutes=5 * step),
                         np.array([close]), np.array([close + 1]), np.array([close - 1]), np.array([close]),
                         np.array([1000.0]))
        done = columns.advance(np.array([0], dtype=np.intp), bars, None)
        assert done is not None and done.candidates == []
    assert columns.tracks[0].count == 200
