"""A systemd unit file as the tests read it: its directives, and whether systemd-analyze is here to verify it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


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
