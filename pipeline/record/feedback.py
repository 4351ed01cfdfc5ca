"""Adaptive sizing weights: rolling Sharpe of closed trades per signal type.

Every closed trade adds its R multiple (or return) to its signal type's window of the last
`feedback_window_trades`. Every `feedback_adjust_every_n_trades` recorded trades, each type's weight is
recomputed as `1 + sensitivity × sharpe`, clipped to [feedback_weight_min, feedback_weight_max]; a type with
fewer than `min_trades` in its window keeps weight 1.0. The tracker returns the adjustments so the caller
can log the figures that moved each weight, and round-trips through `to_dict()` / `from_dict()`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from config.settings import PipelineConfig

DEFAULT_SENSITIVITY = 0.5
DEFAULT_MIN_TRADES = 5
SHARPE_CAP = 10.0  # a window with no variance is "very good" or "very bad", not infinite


@dataclass(slots=True, frozen=True)
class FeedbackAdjustment:
    """One type's weight recomputation, for the log."""

    signal_type: str
    old_weight: float
    new_weight: float
    sharpe: float
    n_trades: int
    mean: float

    @property
    def changed(self) -> bool:
        return self.old_weight != self.new_weight

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rolling_sharpe(returns: deque[float] | list[float]) -> float:
    """Per-trade Sharpe: mean / sample standard deviation (capped at ±SHARPE_CAP; 0.0 for < 2 values)."""
    n = len(returns)
    if n < 2:
        return 0.0
    mean = math.fsum(returns) / n
    variance = math.fsum((r - mean) ** 2 for r in returns) / (n - 1)
    std = math.sqrt(variance)
    if std <= 1e-12:
        return 0.0 if abs(mean) <= 1e-12 else math.copysign(SHARPE_CAP, mean)
    return max(-SHARPE_CAP, min(SHARPE_CAP, mean / std))


class FeedbackTracker:
    """Rolling Sharpe per signal type and the sizing weight it implies."""

    def __init__(
        self, config: PipelineConfig, *, sensitivity: float = DEFAULT_SENSITIVITY,
        min_trades: int = DEFAULT_MIN_TRADES,
    ) -> None:
        if not sensitivity >= 0:
            raise ValueError(f"sensitivity: must be >= 0, got {sensitivity!r}")
        if min_trades < 2:
            raise ValueError(f"min_trades: must be at least 2, got {min_trades!r}")
        self.config = config
        self.sensitivity = sensitivity
        self.min_trades = min_trades
        self._returns: dict[str, deque[float]] = {}
        self._weights: dict[str, float] = {}
        self.total_trades = 0
        self.trades_since_adjust = 0
        self.adjustments_made = 0

    def reconfigure(self, config: PipelineConfig) -> None:
        """New cadence and weight bounds (a SIGHUP reload): the weights are clipped to the new bounds now; the
        window length, which sizes the kept returns, stays."""
        self.config = config
        self._weights = {kind: self._clip(weight) for kind, weight in self._weights.items()}

    # -- recording ------------------------------------------------------------------------------------
    def record_trade(self, signal_type: str, r_multiple_or_return: float) -> list[FeedbackAdjustment]:
        """Add one closed trade. Returns the adjustments when this trade completes a batch of N, else []."""
        kind = str(signal_type)
        if not kind:
            raise ValueError("signal_type: must be a non-empty string")
        value = r_multiple_or_return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"r_multiple_or_return: must be a finite number, got {value!r}")
        window = self._returns.get(kind)
        if window is None:
            window = self._returns[kind] = deque(maxlen=self.config.feedback_window_trades)
        window.append(float(value))
        self.total_trades += 1
        self.trades_since_adjust += 1
        if self.trades_since_adjust < self.config.feedback_adjust_every_n_trades:
            return []
        self.trades_since_adjust = 0
        return self.adjust()

    def adjust(self) -> list[FeedbackAdjustment]:
        """Recompute every type's weight now (called automatically every N trades)."""
        self.adjustments_made += 1
        records = []
        for kind in sorted(self._returns):
            records.append(self._adjust_one(kind))
        return records

    def _adjust_one(self, kind: str) -> FeedbackAdjustment:
        window = self._returns[kind]
        old = self._weights.get(kind, 1.0)
        n = len(window)
        sharpe = rolling_sharpe(window)
        mean = math.fsum(window) / n if n else 0.0
        if n < self.min_trades or not self.config.enable_feedback_loop:
            new = 1.0
        else:
            new = self._clip(1.0 + self.sensitivity * sharpe)
        self._weights[kind] = new
        return FeedbackAdjustment(kind, old, new, round(sharpe, 6), n, round(mean, 6))

    def _clip(self, weight: float) -> float:
        low, high = self.config.feedback_weight_min, self.config.feedback_weight_max
        return round(max(low, min(high, weight)), 6)

    # -- reading --------------------------------------------------------------------------------------
    def weight(self, signal_type: str) -> float:
        """The sizing multiplier for this signal type (1.0 until enough trades moved it)."""
        if not self.config.enable_feedback_loop:
            return 1.0
        return self._weights.get(str(signal_type), 1.0)

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def sharpe(self, signal_type: str) -> float:
        """The current rolling Sharpe of a type's window."""
        return rolling_sharpe(self._returns.get(str(signal_type), deque()))

    def trade_count(self, signal_type: str) -> int:
        return len(self._returns.get(str(signal_type), ()))

    # -- persistence ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (windows, weights, counters)."""
        return {
            "version": 1,
            "weights": dict(sorted(self._weights.items())),
            "returns": {k: list(v) for k, v in sorted(self._returns.items())},
            "total_trades": self.total_trades,
            "trades_since_adjust": self.trades_since_adjust,
            "adjustments_made": self.adjustments_made,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: PipelineConfig, **kwargs: Any) -> FeedbackTracker:
        """Rebuild from `to_dict()` output; windows are trimmed and weights re-clipped to the current config."""
        if not isinstance(data, dict):
            raise ValueError(f"feedback state: expected a mapping, got {type(data).__name__}")
        tracker = cls(config, **kwargs)
        returns = data.get("returns", {})
        weights = data.get("weights", {})
        if not isinstance(returns, dict):
            raise ValueError("feedback state.returns: expected a mapping of signal type to a list of numbers")
        if not isinstance(weights, dict):
            raise ValueError("feedback state.weights: expected a mapping of signal type to a number")
        for kind, values in returns.items():
            window = deque(maxlen=config.feedback_window_trades)
            for i, value in enumerate(values if isinstance(values, list) else [None]):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"feedback state.returns[{kind!r}][{i}]: must be a finite number, got {value!r}")
                window.append(float(value))
            tracker._returns[str(kind)] = window
        for kind, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"feedback state.weights[{kind!r}]: must be a finite number, got {value!r}")
            tracker._weights[str(kind)] = tracker._clip(float(value))
        tracker.total_trades = _count(data, "total_trades")
        tracker.trades_since_adjust = _count(data, "trades_since_adjust") % config.feedback_adjust_every_n_trades
        tracker.adjustments_made = _count(data, "adjustments_made")
        return tracker

    def restore(self, data: dict[str, Any]) -> None:
        """Take the state `to_dict()` saved (validated as `from_dict` does) in place, so that every component
        holding this tracker sees it."""
        saved = FeedbackTracker.from_dict(data, self.config, sensitivity=self.sensitivity, min_trades=self.min_trades)
        self._returns, self._weights = saved._returns, saved._weights
        self.total_trades, self.trades_since_adjust = saved.total_trades, saved.trades_since_adjust
        self.adjustments_made = saved.adjustments_made


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"feedback state.{key}: must be a non-negative integer, got {value!r}")
    return value
