"""SignalGuard: the first stage after the kill switch — well-formed, fresh, and not a duplicate.

Checks in order: the signal rules of `models.signal_problems()` (every problem named by its field), freshness
(older than `max_signal_age_seconds` or dated in the future -> rejected; a daily signal's age is measured from
the NYSE close of its session, so no stamp hour and no DST change puts it in the future, and it is fresh until
the next session's bar is complete: Friday's until Monday's close) and dedup (the same
ticker, direction, type and timeframe within `dedup_window_seconds` -> rejected). Only a signal that passes is
remembered for dedup; the memory is bounded (entries older than the window are evicted, and a hard cap holds
in any case).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from config.settings import PipelineConfig
from pipeline.core.calendar import NEW_YORK, MarketCalendar, default_calendar, is_date_stamp
from pipeline.core.clock import Clock, LiveClock
from pipeline.core.models import TIMEFRAME_SECONDS, RiskDecision, TradeSignal, signal_problems

FUTURE_TOLERANCE_SECONDS = 5.0
DAILY = "1d"
MAX_DEDUP_ENTRIES = 100_000
TEXT_FIELDS = ("signal_type", "direction", "ticker", "timeframe")
FRESH = "fresh and not a duplicate"

DedupKey = tuple[str, str, str, str, str]  # ticker, direction, signal type, timeframe, strategy


def type_problems(signal: TradeSignal) -> list[str]:
    """Text fields that are not strings at all (signal_problems() assumes they are hashable)."""
    try:
        if isinstance(signal.signal_type, str) and isinstance(signal.direction, str) \
                and isinstance(signal.ticker, str) and isinstance(signal.timeframe, str):
            return []
    except AttributeError:  # not a TradeSignal: each missing field is named below
        pass
    return [
        f"{name}: must be a string, got {type(getattr(signal, name, None)).__name__}"
        for name in TEXT_FIELDS
        if not isinstance(getattr(signal, name, None), str)
    ]


def validation_failure(signal: TradeSignal) -> str | None:
    """All rule violations of `signal` joined in one line, or None when it is well formed."""
    try:
        try:  # type_problems()'s own first test, without its frame: all four text fields are strings
            texts = isinstance(signal.signal_type, str) and isinstance(signal.direction, str) \
                and isinstance(signal.ticker, str) and isinstance(signal.timeframe, str)
        except AttributeError:  # not a TradeSignal: type_problems() names each missing field
            texts = False
        problems = signal_problems(signal) if texts else (type_problems(signal) or signal_problems(signal))
    except Exception as exc:  # a hostile object must not crash the guard
        problems = [f"signal: unreadable ({type(exc).__name__}: {exc})"]
    return "; ".join(problems) if problems else None


def freshness_failure(
    signal_time: datetime, now: datetime, max_age_seconds: float, future_tolerance_seconds: float
) -> str | None:
    """Why a signal dated `signal_time` is not fresh at `now`, or None."""
    age = (now - signal_time).total_seconds()
    if age > max_age_seconds:
        return (
            f"freshness: timestamp {signal_time.isoformat()} is {age:.1f}s old > "
            f"max_signal_age_seconds {max_age_seconds:g}"
        )
    if -age > future_tolerance_seconds:
        return (
            f"freshness: timestamp {signal_time.isoformat()} is {-age:.1f}s in the future "
            f"(tolerance {future_tolerance_seconds:g}s)"
        )
    return None


class SignalGuard:
    """Freshness + dedup gate in front of the pipeline (the spec's SignalGuard)."""

    def __init__(
        self,
        config: PipelineConfig,
        future_tolerance_seconds: float = FUTURE_TOLERANCE_SECONDS,
        max_entries: int = MAX_DEDUP_ENTRIES,
        calendar: MarketCalendar | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`calendar` defaults to the NYSE one (on first use), `clock` to the live clock (for `check` without now)."""
        self.clock = clock if clock is not None else LiveClock()
        self._calendar = calendar
        self.future_tolerance_seconds = future_tolerance_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[DedupKey, datetime] = OrderedDict()
        self._evicted_at: datetime | None = None  # the last eviction's time: nothing more expires until it moves
        self.reconfigure(config)

    def reconfigure(self, config: PipelineConfig) -> None:
        """New freshness and dedup windows from now on (a SIGHUP reload); signals seen so far stay remembered."""
        self.config = config
        self._evicted_at = None  # a new window: evict afresh
        self._max_age = config.max_signal_age_seconds
        self._window = config.dedup_window_seconds
        self._window_delta = timedelta(seconds=config.dedup_window_seconds)

    def check(self, signal: TradeSignal, now: datetime | None = None) -> RiskDecision:
        """Approve or reject `signal` at `now` (tz-aware, default: the clock); a passing one is recorded for dedup."""
        if now is None:
            now = self.clock.now()
        problem = validation_failure(signal)
        if problem is not None:
            return RiskDecision(False, f"invalid signal: {problem}", check="validation")
        signal_time = signal.timestamp or now
        if signal.timeframe == DAILY:
            daily = self._daily_time(signal_time, now)
            if isinstance(daily, str):
                return RiskDecision(False, daily, check="freshness")
            signal_time, next_close = daily
            age = (now - signal_time).total_seconds()
            if now > next_close and age > self.max_age_for(DAILY):
                return RiskDecision(False, f"freshness: daily signal of the session that closed "
                                           f"{signal_time.isoformat()} is {age:.1f}s old: the next session's bar "
                                           f"({next_close.astimezone(NEW_YORK).date()}) closed at "
                                           f"{next_close.isoformat()}", check="freshness")
        else:
            max_age = self._max_age
            age = (now - signal_time).total_seconds()
            if age > max_age or -age > self.future_tolerance_seconds:
                return RiskDecision(False, freshness_failure(signal_time, now, max_age, self.future_tolerance_seconds)
                                    or "freshness", check="freshness")
        seen = self._seen
        if seen and now != self._evicted_at:
            self._evict(now)
        key = signal.dedup_key()
        last = seen.get(key)
        if last is not None and (now - last).total_seconds() < self._window:
            return RiskDecision(False, self._duplicate_failure(key, now) or "dedup", check="dedup")
        self._remember(key, now)
        return RiskDecision(True, FRESH, {"signal_age_seconds": age})

    def _daily_time(self, signal_time: datetime, now: datetime) -> tuple[datetime, datetime] | str:
        """The instant a daily signal's age counts from (its session's close, or now while the session forms) and
        the close of the session after it (until then no newer daily bar is complete: the signal is acted on
        across a weekend or a holiday), or why it is not fresh."""
        session = self.calendar.daily_session(signal_time)
        if session is None:
            return (f"freshness: daily signal {signal_time.isoformat()}: no NYSE session on "
                    "or before it in the calendar")
        # any stamp after its session's close means that close (20:00Z all year, an early close)
        stamp = session[0] if is_date_stamp(signal_time) else min(signal_time, session[1])
        ahead = max((session[0] - now).total_seconds(), (stamp - now).total_seconds())
        if ahead > self.future_tolerance_seconds:
            return (f"freshness: daily signal {signal_time.isoformat()} of the "
                    f"{session[0].astimezone(NEW_YORK).date()} session is {ahead:.1f}s in the future")
        # during its session the daily bar is forming (age 0); after it, age counts from that session's close
        return min(session[1], now), self._next_close(session[1])

    def _next_close(self, close: datetime) -> datetime:
        """The close of the first session opening after `close` (the next daily bar's); a day after `close`
        beyond the calendar."""
        try:
            following = self.calendar.session_for(self.calendar.next_open(close))
        except ValueError:
            following = None
        return following[1] if following is not None else close + timedelta(seconds=TIMEFRAME_SECONDS[DAILY])

    @property
    def calendar(self) -> MarketCalendar:
        """The NYSE calendar daily signals are dated by (the process-wide one unless given)."""
        if self._calendar is None:
            self._calendar = default_calendar()
        return self._calendar

    def max_age_for(self, timeframe: str) -> float:
        """How old a signal may be: max_signal_age_seconds, but a daily-bar signal (stamped at the session close
        and acted on until the next bar) stays fresh for one day at least, and until the next session's close
        (over a weekend or a holiday, longer: see `check`)."""
        if timeframe == "1d":
            return max(self.config.max_signal_age_seconds, float(TIMEFRAME_SECONDS["1d"]))
        return self.config.max_signal_age_seconds

    def _duplicate_failure(self, key: DedupKey, now: datetime) -> str | None:
        seen = self._seen.get(key)
        window = self.config.dedup_window_seconds
        if seen is None or (now - seen).total_seconds() >= window:
            return None
        ticker, direction, signal_type, timeframe, strategy = key
        of = f" of strategy {strategy}" if strategy else ""
        return (
            f"dedup: {ticker} {direction} {signal_type} {timeframe}{of} already seen "
            f"{(now - seen).total_seconds():.1f}s "
            f"ago, within dedup_window_seconds {window:g}"
        )

    def _remember(self, key: DedupKey, now: datetime) -> None:
        seen = self._seen
        if key in seen:
            seen.move_to_end(key)
        seen[key] = now
        while len(seen) > self.max_entries:
            seen.popitem(last=False)

    def _evict(self, now: datetime) -> None:
        """Drop entries older than the window (oldest first; insertion order is time order)."""
        cutoff = now - self._window_delta
        self._evicted_at = now
        seen = self._seen
        while seen:
            if next(iter(seen.values())) > cutoff:
                break
            seen.popitem(last=False)

    def forget(self, signal: TradeSignal) -> None:
        """Drop `signal`'s dedup entry (e.g. a later stage failed for a transient reason)."""
        self._seen.pop(signal.dedup_key(), None)

    def clear(self) -> None:
        """Forget every remembered signal."""
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)
