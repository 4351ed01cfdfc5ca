"""The one rule for a ticker symbol: what the brokers accept, normalised once at the boundary.

A symbol is ASCII letters and digits plus `.`, `-` and `/` (`BRK.B`, `BF-B`), upper case, at most 21
characters (an OCC option symbol's length). Unicode look-alikes — full-width `ＡＡＰＬ`, `株式`, accented or
zero-width characters — are refused: no broker lists them, and a look-alike must not pass for a symbol.
"""

from __future__ import annotations

MAX_SYMBOL_LEN = 21
SYMBOL_PUNCTUATION = ".-/"


def symbol_problem(symbol: str, extra: str = "") -> str | None:
    """Why `symbol` (already stripped and upper-cased) is not a broker symbol, or None when it is one.
    `extra` names further punctuation a caller accepts (the signal rules take a space, as IB writes `BRK B`)."""
    if not symbol:
        return "must be a non-empty symbol"
    shown = repr(symbol[:40])
    if len(symbol) > MAX_SYMBOL_LEN:
        return f"{shown} is longer than {MAX_SYMBOL_LEN} characters"
    allowed = SYMBOL_PUNCTUATION + extra
    if not all(c.isascii() and (c.isalnum() or c in allowed) for c in symbol):
        return f"{shown} is not a valid symbol (ASCII letters, digits and {' '.join(SYMBOL_PUNCTUATION)} only)"
    return None


def normalize_symbol(value: str) -> str:
    """The stripped, upper-case symbol, or ValueError saying what is wrong with it."""
    symbol = value.strip().upper()
    problem = symbol_problem(symbol)
    if problem is not None:
        raise ValueError(problem)
    return symbol
