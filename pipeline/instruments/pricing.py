"""The one option pricing model: Black-Scholes price and delta of a European call or put, and the time convention.

Used by the synthetic option chain (pipeline.instruments.options) and by the paper broker's option marks
(adapters.paper), so a quote and a mark of the same contract agree.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

_NEW_YORK = ZoneInfo("America/New_York")


def norm_cdf(x: float) -> float:
    """Standard normal cumulative distribution."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def years_from_days(days: int) -> float:
    """Calendar days to expiry over 365, floored at a quarter day; 0 once expired (days < 0)."""
    if days < 0:
        return 0.0
    return max(days, 0.25) / 365.0


def years_to_expiry(expiry: date, now: datetime) -> float:
    """`years_from_days` of the New York calendar days from `now` to `expiry`."""
    return years_from_days((expiry - now.astimezone(_NEW_YORK).date()).days)


def _d1_d2(spot: float, strike: float, years: float, rate: float, vol: float) -> tuple[float, float]:
    sigma_t = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sigma_t
    return d1, d1 - sigma_t


def _is_call(right: str) -> bool:
    return str(right).upper().startswith("C")


def bs_price(spot: float, strike: float, years: float, rate: float, vol: float, right: str) -> float:
    """Black-Scholes price of a European call ('C') or put ('P'); intrinsic value at expiry."""
    call = _is_call(right)
    if years <= 0 or vol <= 0:
        return max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
    d1, d2 = _d1_d2(spot, strike, years, rate, vol)
    discount = math.exp(-rate * years)
    if call:
        return spot * norm_cdf(d1) - strike * discount * norm_cdf(d2)
    return strike * discount * norm_cdf(-d2) - spot * norm_cdf(-d1)


def bs_delta(spot: float, strike: float, years: float, rate: float, vol: float, right: str) -> float:
    """Black-Scholes delta: in (0, 1) for calls, (-1, 0) for puts."""
    call = _is_call(right)
    if years <= 0 or vol <= 0:
        itm = spot > strike if call else spot < strike
        return (1.0 if call else -1.0) if itm else 0.0
    d1, _ = _d1_d2(spot, strike, years, rate, vol)
    return norm_cdf(d1) if call else norm_cdf(d1) - 1.0
