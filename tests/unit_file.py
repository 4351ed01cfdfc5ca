"""A systemd unit file as the tests read it: its directives, key -> every value given (in order)."""

from __future__ import annotations

from pathlib import Path


def directives(path: Path) -> dict[str, list[str]]:
    """The `Key=value` lines of the unit at `path` (sections, comments and blank lines skipped), each key's values
    in the order the file gives them."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found
