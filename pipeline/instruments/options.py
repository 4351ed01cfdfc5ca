"""Option contracts: quotes, a deterministic synthetic chain and contract selection (prices from pricing.py, symbols
from occ.py).

The synthetic chain stands in for a real option chain in paper trading and tests: weekly Friday expiries out
to about 60 days, strikes around spot, an IV smile near 30 %, and spreads and open interest that vary from
contract to contract (deterministically, from a hash of the OCC symbol) so the selection filters matter.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from config.settings import OptionsSettings
from pipeline.core.models import Direction
from pipeline.instruments.occ import OccContract, occ_symbol
from pipeline.instruments.pricing import bs_delta, bs_price, years_from_days

NEW_YORK = ZoneInfo("America/New_York")
Right = Literal["C", "P"]
CHAIN_HORIZON_DAYS = 63
STRIKES_EACH_SIDE = 20
BASE_IV = 0.30
MIN_TICK = 0.01


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """One listed option contract with its quote and greeks. `occ_symbol` is our (padded) OCC form; a field the
    venue does not give is None (never filled in): delta, open interest, implied vol and the other greeks."""

    occ_symbol: str
    underlying: str
    expiry: date
    strike: float
    right: str
    bid: float
    ask: float
    mid: float
    delta: float | None
    open_interest: int | None
    iv: float | None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    quoted_at: datetime | None = None  # the venue's time of the bid/ask, when it gives one

    def dte(self, as_of: datetime | date) -> int:
        """Calendar days to expiry from `as_of` (its New York date when it is a datetime)."""
        return (self.expiry - _ny_date(as_of)).days

    @property
    def spread_pct(self) -> float:
        """(ask - bid) / mid; infinite when there is no mid."""
        return (self.ask - self.bid) / self.mid if self.mid > 0 else math.inf


def _ny_date(as_of: datetime | date) -> date:
    if isinstance(as_of, datetime):
        return as_of.astimezone(NEW_YORK).date() if as_of.tzinfo else as_of.date()
    return as_of




def strike_step(spot: float) -> float:
    """The listed strike increment for an underlying at `spot`."""
    for limit, step in ((25.0, 0.5), (100.0, 1.0), (250.0, 2.5), (1000.0, 5.0)):
        if spot < limit:
            return step
    return 10.0


def weekly_expiries(as_of: date, horizon_days: int = CHAIN_HORIZON_DAYS) -> list[date]:
    """Every Friday after `as_of` up to `horizon_days` away."""
    first = as_of + timedelta(days=(4 - as_of.weekday()) % 7 or 7)
    return [first + timedelta(weeks=k) for k in range((horizon_days - (first - as_of).days) // 7 + 1)]


def _noise(key: str) -> float:
    """A deterministic number in [0, 1) derived from `key`."""
    return (zlib.crc32(key.encode()) & 0xFFFFFF) / float(0x1000000)


def _quote(underlying: str, spot: float, expiry: date, strike: float, right: str, dte: int, rate: float) -> OptionQuote:
    symbol = occ_symbol(underlying, expiry, right, strike)
    moneyness = math.log(strike / spot)
    iv = BASE_IV + 0.4 * moneyness * moneyness - 0.02 * moneyness + 0.01 * (_noise(symbol + "iv") - 0.5)
    years = years_from_days(dte)
    fair = max(bs_price(spot, strike, years, rate, iv, right), MIN_TICK)
    delta = bs_delta(spot, strike, years, rate, iv, right)
    noise = _noise(symbol)
    # Spreads widen away from the money, for cheap contracts and at random; some exceed any sane filter.
    spread_pct = 0.015 + 0.35 * abs(moneyness) + 0.02 / math.sqrt(fair) + 0.10 * noise * noise
    half = max(fair * spread_pct / 2.0, MIN_TICK / 2.0)
    bid = max(round(fair - half, 2), 0.0)
    ask = max(round(fair + half, 2), bid + MIN_TICK)
    # Open interest: highest at the money and in the nearer expiries; a share of strikes is thin.
    depth = math.exp(-((moneyness / 0.08) ** 2)) * math.exp(-dte / 60.0)
    open_interest = int(5_000 * depth * (0.2 + 1.6 * _noise(symbol + "oi")))
    return OptionQuote(
        occ_symbol=symbol, underlying=underlying, expiry=expiry, strike=strike, right=right,
        bid=bid, ask=round(ask, 2), mid=round((bid + ask) / 2.0, 4), delta=round(delta, 4),
        open_interest=open_interest, iv=round(iv, 4),
    )


def synthetic_chain(underlying: str, spot: float, as_of: datetime, settings: OptionsSettings) -> list[OptionQuote]:
    """A deterministic option chain around `spot`: weekly Friday expiries, calls and puts at listed strikes."""
    if not (math.isfinite(spot) and spot > 0):
        raise ValueError(f"spot: must be a finite positive price, got {spot!r}")
    today = _ny_date(as_of)
    step = strike_step(spot)
    atm = round(spot / step) * step
    strikes = [atm + k * step for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1) if atm + k * step > 0]
    chain: list[OptionQuote] = []
    for expiry in weekly_expiries(today):
        dte = (expiry - today).days
        for strike in strikes:
            for right in ("C", "P"):
                chain.append(_quote(underlying.upper(), spot, expiry, round(strike, 3), right, dte,
                                    settings.risk_free_rate))
    return chain


def synthetic_quote(contract: OccContract, spot: float, as_of: datetime,
                    settings: OptionsSettings) -> OptionQuote | None:
    """The quote `synthetic_chain(contract.underlying, spot, as_of, settings)` holds for `contract`, or None when
    that chain lists no such contract; computed alone (one contract, not the chain's ~800)."""
    if not (math.isfinite(spot) and spot > 0) or contract.right not in ("C", "P"):
        return None
    today = _ny_date(as_of)
    step = strike_step(spot)
    atm = round(spot / step) * step
    k = round((contract.strike - atm) / step)
    strike = atm + k * step  # the chain's own arithmetic for its k-th strike, so the same float
    if abs(k) > STRIKES_EACH_SIDE or strike <= 0 or contract.expiry not in weekly_expiries(today):
        return None
    quote = _quote(contract.underlying.upper(), spot, contract.expiry, round(strike, 3), contract.right,
                   (contract.expiry - today).days, settings.risk_free_rate)
    return quote if quote.occ_symbol == occ_symbol(contract.underlying.upper(), contract.expiry, contract.right,
                                                   contract.strike) else None


SYNTHETIC_LABEL = "synthetic chain (paper broker)"


class OptionChainUnavailable(RuntimeError):
    """There is no real option chain to route to."""


class NoOptionChain:
    """The chain port of a venue that provides no real option chain: every request says so. Invented
    contracts are never sent to a real broker: the synthetic chain serves the paper broker only."""

    chain_label = "no option chain"

    def __init__(self, source: str) -> None:
        self.source = source

    def chain(self, underlying: str, spot: float, as_of: datetime) -> list[OptionQuote]:
        raise OptionChainUnavailable(
            f"no option chain from {self.source} (its adapter fetches no real chain); the synthetic chain only on "
            "the paper broker"
        )


class SyntheticChainProvider:
    """An OptionChainProvider backed by `synthetic_chain` (paper trading, tests)."""

    chain_label = SYNTHETIC_LABEL

    def __init__(self, settings: OptionsSettings | None = None) -> None:
        self.settings = settings or OptionsSettings()

    def chain(self, underlying: str, spot: float, as_of: datetime) -> list[OptionQuote]:
        return synthetic_chain(underlying, spot, as_of, self.settings)


def option_stop_price(quote: OptionQuote, underlying_risk: float) -> float:
    """The premium at which a bought option's trade is invalidated: the ask less what the premium loses when the
    underlying moves its stop distance (`underlying_risk`), to first order (|delta| x distance), floored at one
    tick. Without a delta the whole premium is the risk: the floor."""
    delta = abs(quote.delta) if quote.delta is not None else None
    if delta is None or not math.isfinite(underlying_risk) or underlying_risk <= 0:
        return MIN_TICK
    return max(MIN_TICK, round(quote.ask - delta * underlying_risk, 2))


def contract_problems(quote: OptionQuote, right: str, as_of: datetime, settings: OptionsSettings) -> list[str]:
    """Why `quote` fails the selection windows and filters; empty when it qualifies."""
    problems: list[str] = []
    if quote.right != right:
        problems.append(f"right {quote.right} != {right}")
    dte = quote.dte(as_of)
    if not settings.dte_min <= dte <= settings.dte_max:
        problems.append(f"dte {dte} outside [{settings.dte_min}, {settings.dte_max}]")
    if quote.delta is None:
        problems.append("no delta from the venue")
    elif not settings.delta_min <= abs(quote.delta) <= settings.delta_max:
        problems.append(f"|delta| {abs(quote.delta):.2f} outside [{settings.delta_min}, {settings.delta_max}]")
    if quote.open_interest is None:
        if settings.min_open_interest > 0:
            problems.append("no open interest from the venue")
    elif quote.open_interest < settings.min_open_interest:
        problems.append(f"open_interest {quote.open_interest} < {settings.min_open_interest}")
    if quote.bid <= 0 or quote.ask <= 0 or quote.spread_pct > settings.max_spread_pct:
        problems.append(f"spread {quote.spread_pct:.1%} > {settings.max_spread_pct:.1%} or no bid")
    return problems


def select_contract(
    chain: list[OptionQuote], direction: str, as_of: datetime, settings: OptionsSettings
) -> OptionQuote | None:
    """The best contract for a signal: calls for long, puts for short, inside the DTE and delta windows, with
    enough open interest and a tight enough spread; best = |delta| closest to the window's middle, then the
    tightest spread. None when nothing qualifies."""
    right = "C" if direction == Direction.LONG else "P"
    target = (settings.delta_min + settings.delta_max) / 2.0
    eligible = [q for q in chain if not contract_problems(q, right, as_of, settings)]
    if not eligible:
        return None
    return min(eligible, key=lambda q: (abs(abs(q.delta or 0.0) - target), q.spread_pct, q.dte(as_of), q.strike))
