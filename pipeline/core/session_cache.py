"""The NYSE session table of a date range, kept in a cache file so a process start need not import pandas.

A table is (day ordinal, open, close) rows in UTC epoch seconds, worked out by `xnys_rules.session_rows`. Its
file is named after the range and carries the versions of exchange_calendars and pandas that made it (a new
holiday rule comes with a new release): a file of other versions, of another range, cut short or unreadable is
ignored and the table built again. The directory is systemd's CacheDirectory ($CACHE_DIRECTORY), else
$XDG_CACHE_HOME/ordergate, else ~/.cache/ordergate; one that cannot be written only means no cache.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from importlib import metadata
from pathlib import Path

FORMAT = 1
MAGIC = b"ordergate-xnys\n"
Rows = list[tuple[int, int, int]]


def cache_dir() -> Path:
    """Where session tables are kept (see the module docstring)."""
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ordergate"


def _key(start: str, end: str) -> dict[str, object]:
    versions = {}
    for package in ("exchange_calendars", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {"format": FORMAT, "start": start, "end": end, **versions}


def _path(directory: Path, start: str, end: str) -> Path:
    return directory / f"xnys-{start}-{end}.bin"


def read(start: str, end: str, directory: Path | None = None) -> Rows | None:
    """The cached table of [start, end], or None when there is none this process may trust."""
    path = _path(directory or cache_dir(), start, end)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if not data.startswith(MAGIC):
            return None
        header_end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC):header_end])
        if not isinstance(header, dict) or header.get("key") != _key(start, end):
            return None
        values = array("q")
        values.frombytes(data[header_end + 1:])
    except (ValueError, TypeError):
        return None
    count = header.get("rows")
    if not isinstance(count, int) or count <= 0 or len(values) != 3 * count:
        return None
    return [(values[i], values[i + 1], values[i + 2]) for i in range(0, len(values), 3)]


def write(start: str, end: str, rows: Rows, directory: Path | None = None) -> bool:
    """Keep `rows` as the table of [start, end] (replaced whole: a reader never sees half a file). False when
    the directory cannot take it."""
    directory = directory or cache_dir()
    values = array("q", [value for row in rows for value in row])
    header = json.dumps({"key": _key(start, end), "rows": len(rows)}, sort_keys=True).encode()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".xnys-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + header + b"\n" + values.tobytes())
            os.replace(tmp, _path(directory, start, end))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True
