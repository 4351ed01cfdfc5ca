"""The OCC option symbol codec: the one place that reads and writes option symbols.

Our form (every symbol inside ordergate: intents, fills, the ledger, the journal) is the 21-character OCC symbol:
the root padded with spaces to 6, the expiry YYMMDD, the right C or P, the strike x 1000 in 8 digits —
`AAPL  240119C00100000`. `parse_occ` also reads the compact form without the padding (`AAPL240119C00100000`,
Alpaca's). Each broker adapter converts to its venue's own form: `OccContract.compact` for Alpaca, the fields
(root, `ib_expiry`, strike, right) of an IB `Contract(secType="OPT")`, whose localSymbol is our form.

Bad input raises `OccError` (a ValueError) with a one-line message naming what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

ROOT_WIDTH = 6
TAIL_LEN = 15  # YYMMDD + C/P + 8 strike digits
MAX_STRIKE = 99_999.999
RIGHTS = ("C", "P")
EXAMPLE = "AAPL  240119C00100000"
_MAX_SHOWN = 40


class OccError(ValueError):
    """An option symbol or one of its fields is not valid OCC (the message is one line naming the problem)."""


@dataclass(frozen=True, slots=True)
class OccContract:
    """One option contract as the OCC symbol names it."""

    root: str
    expiry: date
    right: str  # "C" or "P"
    strike: float

    @property
    def symbol(self) -> str:
        """Our form: the padded 21-character OCC symbol."""
        return f"{self.root:<{ROOT_WIDTH}}{self.expiry:%y%m%d}{self.right}{self.strike_code}"

    @property
    def compact(self) -> str:
        """The OCC symbol without the root's padding (Alpaca's form)."""
        return f"{self.root}{self.expiry:%y%m%d}{self.right}{self.strike_code}"

    @property
    def strike_code(self) -> str:
        """The strike x 1000 in 8 digits."""
        return f"{round(self.strike * 1000):08d}"

    @property
    def ib_expiry(self) -> str:
        """The expiry as IB's lastTradeDateOrContractMonth (YYYYMMDD)."""
        return f"{self.expiry:%Y%m%d}"

    @property
    def underlying(self) -> str:
        return self.root


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 4] + "...'"


def _check_root(root: str, source: object) -> str:
    if not 1 <= len(root) <= ROOT_WIDTH or not root[0].isalpha() or not all(
        c.isascii() and (c.isalnum() or c == ".") for c in root
    ):
        raise OccError(f"option root: {_shown(source)} is not 1-6 letters/digits starting with a letter")
    return root


def _check_right(right: object) -> str:
    side = str(right).strip().upper()
    side = {"CALL": "C", "PUT": "P"}.get(side, side)
    if side not in RIGHTS:
        raise OccError(f"option right: must be 'C' or 'P', got {_shown(right)}")
    return side


def _check_strike(strike: object) -> float:
    if isinstance(strike, bool) or not isinstance(strike, (int, float)) or not math.isfinite(strike) or not (
        0 < strike <= MAX_STRIKE
    ):
        raise OccError(f"option strike: must be a positive price up to {MAX_STRIKE}, got {_shown(strike)}")
    if abs(strike * 1000 - round(strike * 1000)) > 1e-6:
        raise OccError(f"option strike: {strike!r} has more than 3 decimals (OCC encodes strike x 1000)")
    return float(strike)


def occ_contract(root: str, expiry: date, right: str, strike: float) -> OccContract:
    """A validated contract from its fields (upper-cases the root; 'call'/'put' read as C/P)."""
    if not isinstance(expiry, date):
        raise OccError(f"option expiry: must be a date, got {_shown(expiry)}")
    if not 2000 <= expiry.year <= 2099:
        raise OccError(f"option expiry: {expiry.isoformat()} is outside the OCC years 2000-2099")
    return OccContract(_check_root(str(root).strip().upper(), root), expiry, _check_right(right),
                       _check_strike(strike))


def occ_symbol(root: str, expiry: date, right: str, strike: float) -> str:
    """Our (padded, 21-character) OCC symbol of a contract.

    >>> occ_symbol("AAPL", date(2024, 1, 19), "C", 190)
    'AAPL  240119C00190000'
    """
    return occ_contract(root, expiry, right, strike).symbol


def parse_occ(text: str) -> OccContract:
    """The contract an OCC symbol names, padded (`AAPL  240119C00100000`) or compact (`AAPL240119C00100000`)."""
    if not isinstance(text, str):
        raise OccError(f"option symbol: must be a string, got {type(text).__name__}")
    return _parse(text)


LAYOUT = f"ROOT (1-6) + YYMMDD + C/P + 8-digit strike x1000, like {EXAMPLE!r}"


@lru_cache(maxsize=8192)
def _parse(text: str) -> OccContract:
    value = text.strip().upper()

    def bad(problem: str) -> OccError:
        return OccError(f"option symbol {_shown(text)} is not OCC: {problem}")

    if len(value) <= TAIL_LEN or len(value) > ROOT_WIDTH + TAIL_LEN:
        raise bad(f"expected {LAYOUT}")
    head, tail = value[:-TAIL_LEN], value[-TAIL_LEN:]
    root = head.rstrip(" ")
    if " " in root:
        raise bad("the root has a space inside it")
    _check_root(root, head)
    ymd, right, digits = tail[:6], tail[6], tail[7:]
    if not (ymd.isascii() and ymd.isdigit()):
        raise bad(f"expiry {ymd!r} is not YYMMDD digits (expected {LAYOUT})")
    try:
        expiry = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))
    except ValueError:
        raise bad(f"expiry {ymd!r} is not a calendar date") from None
    if right not in RIGHTS:
        raise bad(f"right {right!r} is not C or P (expected {LAYOUT})")
    if not (digits.isascii() and digits.isdigit()):
        raise bad(f"strike {digits!r} is not 8 digits (expected {LAYOUT})")
    if int(digits) == 0:
        raise bad("strike is zero")
    return OccContract(root, expiry, right, int(digits) / 1000.0)


def try_parse_occ(text: str) -> OccContract | None:
    """The contract, or None when `text` is not an OCC symbol (a stock ticker, say)."""
    try:
        return parse_occ(text)
    except OccError:
        return None


def is_occ(text: str) -> bool:
    """True for an OCC option symbol in either form."""
    return isinstance(text, str) and len(text.strip()) > TAIL_LEN and try_parse_occ(text) is not None


def to_ours(text: str) -> str:
    """A venue's symbol in our form: an option symbol padded to 21 characters; anything else unchanged."""
    contract = try_parse_occ(text) if isinstance(text, str) and len(text.strip()) > TAIL_LEN else None
    return contract.symbol if contract is not None else text
