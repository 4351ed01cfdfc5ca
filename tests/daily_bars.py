"""The real daily bars of tests/data/daily (Stooq: Date,Open,High,Low,Close,Volume) in the replay's canonical layout."""

from __future__ import annotations

import csv
from pathlib import Path

DAILY = Path(__file__).resolve().parent / "data" / "daily"
CANONICAL_HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def canonical_daily(symbol: str, path: Path, stamp: str = "") -> Path:
    """`symbol`'s real daily bars written to `path` in the canonical layout, each date as it is or with `stamp`
    appended (`"T16:00:00-05:00"`: the close in New York); the path."""
    with (DAILY / f"{symbol}.csv").open() as fh, path.open("w") as out:
        out.write(CANONICAL_HEADER)
        for row in csv.DictReader(fh):
            out.write(f"{row['Date']}{stamp},{symbol},{row['Open']},{row['High']},{row['Low']},{row['Close']},"
                      f"{row['Volume']}\n")
    return path
