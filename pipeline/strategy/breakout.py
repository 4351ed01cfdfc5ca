"""Daily breakout strategy: a close beyond the N-bar high/low channel, with a stop N x ATR away.

Per (symbol, timeframe), on each completed bar (daily by default; smaller feed bars are aggregated by the
session-aligned `BarAggregator`):

- the channel is the highest high and lowest low of the previous `channel` bars (the current bar excluded);
- the ATR is Wilder's average true range over `atr_period` bars;
- a close above the channel high is a BREAKOUT_LONG (stop: close - atr_stop x ATR), a close below the low a
  BREAKOUT_SHORT (stop: close + atr_stop x ATR); `target_r` (optional) puts a target that many risks away;
- one signal per breakout: the next one in the same direction needs the close back inside the channel first;
- conviction: 60 plus up to 40 for how far beyond the channel the close is, in ATRs (one ATR or more: 100).

Nothing is emitted before `channel` + 1 bars and a full ATR (warm-up). Bad bars are refused and counted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.settings import StrategySpec, format_validation_error
from pipeline.core.calendar import MarketCalendar
from pipeline.core.models import TIMEFRAME_SECONDS, Bar, Direction, SignalType, TradeSignal
from pipeline.strategy.ema_cloud import BarAggregator, bar_problem
from pipeline.strategy.rescale import check_ratio, divide_values

log = structlog.get_logger(__name__)
BASE_CONVICTION = 60.0
EXTRA_CONVICTION = 40.0


class BreakoutParams(BaseModel):
    """The `params` of a daily_breakout strategy."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    channel: int = Field(20, ge=2, le=1000, description="bars in the high/low channel")
    atr_period: int = Field(14, ge=1, le=1000)
    atr_stop: float = Field(2.0, gt=0, le=50, description="stop distance in ATRs")
    target_r: float | None = Field(None, gt=0, le=100, description="target in multiples of the risk; none: no target")
    min_conviction: float = Field(0.0, ge=0, le=100)


class _Channel:
    """Channel, ATR and breakout state of one (symbol, timeframe)."""

    __slots__ = ("atr", "count", "highs", "lows", "prev_close", "side", "tr_sum")

    def __init__(self, channel: int) -> None:
        self.highs: deque[float] = deque(maxlen=channel)
        self.lows: deque[float] = deque(maxlen=channel)
        self.prev_close: float | None = None
        self.atr: float | None = None
        self.tr_sum = 0.0
        self.count = 0
        self.side = 0          # +1 after a long breakout until the close is back inside, -1 for a short

    def rescale(self, ratio: float) -> None:
        """Every price it holds divided by `ratio` (a split): the channel's highs and lows, the previous close,
        the ATR and the true-range sum of its warm-up. The count and the breakout side stay."""
        divide_values(self.highs, ratio)
        divide_values(self.lows, ratio)
        if self.prev_close is not None:
            self.prev_close /= ratio
        if self.atr is not None:
            self.atr /= ratio
        self.tr_sum /= ratio


class DailyBreakoutStrategy:
    """N-bar channel breakout with an ATR stop (the second example of the Strategy port)."""

    # its positions get only the exits every position gets (stop, target, time stop, EOD, trailing): the EMA
    # clouds' momentum exhaustion and cloud flip are not this strategy's reading of the market
    exits: tuple[str, ...] = ()

    def __init__(self, params: BreakoutParams, *, name: str = "daily_breakout",
                 timeframes: Sequence[str] = ("1d",), tickers: Sequence[str] | None = None,
                 calendar: MarketCalendar | None = None) -> None:
        self.name = name
        self.params = params
        self.timeframes: tuple[str, ...] = tuple(dict.fromkeys(timeframes))
        self.tickers: tuple[str, ...] | None = tuple(tickers) if tickers is not None else None
        self._aggregators = tuple(BarAggregator(tf, calendar) for tf in self.timeframes)
        self.warmup_bars = max(params.channel, params.atr_period) + 1
        self._tracks: dict[tuple[str, str], _Channel] = {}
        self.rejected_bars = 0

    @classmethod
    def from_spec(cls, spec: StrategySpec, *, calendar: MarketCalendar | None = None) -> DailyBreakoutStrategy:
        """Build from a `[[strategies]]` table; bad `params` raise ValueError naming the field."""
        try:
            params = BreakoutParams.model_validate(spec.params)
        except ValidationError as exc:
            raise ValueError(f"strategies.{spec.name}.params: {format_validation_error(exc)}") from None
        return cls(params, name=spec.name, timeframes=spec.timeframes, tickers=spec.tickers, calendar=calendar)

    def on_bar(self, bar: Bar) -> list[TradeSignal]:
        """Feed one bar; returns the breakout signals of the bars it completed."""
        problem = bar_problem(bar)
        if problem is not None:
            self.rejected_bars += 1
            if self.rejected_bars == 1 or self.rejected_bars % 1000 == 0:
                log.warning("bar_rejected", strategy=self.name, symbol=str(getattr(bar, "symbol", ""))[:32],
                            problem=problem, count=self.rejected_bars)
            return []
        signals: list[TradeSignal] = []
        for agg in self._aggregators:
            for done in agg.update(bar):
                signal = self._on_completed(done, agg)
                if signal is not None:
                    signals.append(signal)
        return signals

    def _on_completed(self, bar: Bar, agg: BarAggregator) -> TradeSignal | None:
        key = (bar.symbol, agg.timeframe)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Channel(self.params.channel)
        full = len(track.highs) == self.params.channel
        high = max(track.highs) if full else math.inf
        low = min(track.lows) if full else -math.inf
        self._update_atr(track, bar)
        track.highs.append(bar.high)
        track.lows.append(bar.low)
        track.count += 1
        close = bar.close
        direction = 1 if close > high else (-1 if close < low else 0)
        if direction == 0:
            track.side = 0
            return None
        if direction == track.side or track.atr is None or track.count <= self.warmup_bars:
            track.side = direction if track.atr is not None else track.side
            return None
        track.side = direction
        return self._signal(bar, agg, direction, high if direction > 0 else low, track.atr)

    def _update_atr(self, track: _Channel, bar: Bar) -> None:
        pc = track.prev_close
        tr = bar.high - bar.low if pc is None else max(bar.high - bar.low, abs(bar.high - pc), abs(bar.low - pc))
        track.prev_close = bar.close
        n = self.params.atr_period
        if track.atr is not None:
            track.atr += (tr - track.atr) / n
            return
        track.tr_sum += tr
        if track.count + 1 >= n:
            track.atr = track.tr_sum / n

    def _signal(self, bar: Bar, agg: BarAggregator, direction: int, edge: float, atr: float) -> TradeSignal | None:
        close = bar.close
        distance = self.params.atr_stop * atr
        stop = close - distance if direction > 0 else close + distance
        if not (distance > 0 and 0 < stop and math.isfinite(stop)):
            return None
        beyond = (close - edge) / atr * direction if atr > 0 else 1.0
        conviction = round(BASE_CONVICTION + EXTRA_CONVICTION * min(1.0, max(0.0, beyond)), 2)
        if conviction < self.params.min_conviction:
            return None
        target = None
        if self.params.target_r is not None:
            target = close + direction * self.params.target_r * distance
            if not target > 0:
                target = None
        return TradeSignal(
            signal_type=SignalType.BREAKOUT_LONG if direction > 0 else SignalType.BREAKOUT_SHORT,
            direction=Direction.LONG if direction > 0 else Direction.SHORT,
            ticker=bar.symbol,
            timeframe=agg.timeframe,
            conviction=conviction,
            entry_price=close,
            stop_loss=stop,
            target_price=target,
            timestamp=agg.bar_close_time(bar),
            source="strategy",
            metadata={"channel_edge": round(edge, 6), "atr": round(atr, 6)},
            strategy=self.name,
        )

    def rescale(self, symbol: str, ratio: float) -> bool:
        """Rescale `symbol`'s state after a split of `ratio` new shares per old one, as if its history had been
        split-adjusted: each timeframe's channel and ATR (`_Channel.rescale`) and the bucket being built (prices
        divided by `ratio`, volume multiplied). False when it holds nothing for `symbol`; ValueError for a bad
        `ratio`."""
        ratio = check_ratio(ratio)
        held = False
        for agg in self._aggregators:
            held = agg.rescale(symbol, ratio) or held
            track = self._tracks.get((symbol, agg.timeframe))
            if track is not None:
                track.rescale(ratio)
                held = True
        return held

    # -- the port's read side ---------------------------------------------------------------------------------
    def bars_seen(self, symbol: str, timeframe: str) -> int:
        track = self._tracks.get((symbol, timeframe))
        return track.count if track is not None else 0

    def is_warm(self, symbol: str, timeframe: str) -> bool:
        track = self._tracks.get((symbol, timeframe))
        return track is not None and track.atr is not None and track.count > self.warmup_bars

    def warm_up_minutes(self) -> int:
        return max(TIMEFRAME_SECONDS[tf] for tf in self.timeframes) // 60 * (self.warmup_bars + 2)

    def channel(self, symbol: str, timeframe: str = "1d") -> tuple[float, float] | None:
        """(low, high) of the current channel of (symbol, timeframe), None before it is full."""
        track = self._tracks.get((symbol, timeframe))
        if track is None or len(track.highs) < self.params.channel:
            return None
        return min(track.lows), max(track.highs)

    def state(self) -> dict[str, Any]:
        return {"kind": "daily_breakout", "params": self.params.model_dump(), "warmup_bars": self.warmup_bars,
                "tracks": {f"{s}/{tf}": {"bars": t.count, "atr": t.atr, "side": t.side}
                           for (s, tf), t in self._tracks.items()},
                "rejected_bars": self.rejected_bars}
