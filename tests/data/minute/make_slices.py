"""Regenerate the real minute-bar slices under tests/data/minute/ from the PyPI package they come from.

    pip download --no-deps --no-binary :all: -d /tmp/mp market-prices==0.12.14
    python tests/data/minute/make_slices.py /tmp/mp/market_prices-0.12.14.tar.gz

Rows are copied byte for byte (header and every row of the chosen sessions, nothing edited, nothing added);
the script checks the archive's sha256 first and prints each slice's sessions, rows and first/last stamp.
Standard library only.
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDIST_SHA256 = "3a45da206f7dbe237f8723a10d830d5bc368daea4352d4f68274f5055cf9a5f1"  # market_prices-0.12.14.tar.gz
MEMBER = "market_prices-0.12.14/docs/tutorials/resources/MSFT_T1.csv"
# (output file, UTC date prefixes of the rows kept): the sessions either side of Memorial Day 2022 (Mon May 30)
SLICES = {
    "memorial-day-2022/MSFT.csv": ("2022-05-25", "2022-05-26", "2022-05-27", "2022-05-31", "2022-06-01"),
}


def main(sdist: str) -> int:
    data = Path(sdist).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        print(f"{sdist}: sha256 {digest} is not market_prices-0.12.14.tar.gz's {SDIST_SHA256}", file=sys.stderr)
        return 1
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            print(f"{sdist}: no {MEMBER}", file=sys.stderr)
            return 1
        lines = member.read().decode("utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    for name, days in SLICES.items():
        kept = [row for row in rows if row[:10] in days]
        out = HERE / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + "".join(kept), encoding="utf-8")
        print(f"{name}: {len(days)} sessions, {len(kept)} rows, {kept[0][:25]} .. {kept[-1][:25]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
