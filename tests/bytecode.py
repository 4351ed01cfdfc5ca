"""Bytecode for the project's own packages, written once when a test session starts.

The suite starts hundreds of Python subprocesses (`ordergate run`, `ordergate status`, the chaos breaks). With
PYTHONDONTWRITEBYTECODE set (as on the CI and development machines) no interpreter ever writes a `__pycache__`
for the repo's sources, so each of those processes compiled every module it imports from source again (~0.1-0.2 s
of each start). Compiling them here once lets every subprocess load the cached bytecode; Python still checks each
.pyc against its source's mtime and size, so an edited file is compiled afresh as before.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "pipeline", "adapters", "daemon", "tests")


def compile_sources() -> None:
    """Write (or refresh) the __pycache__ of PACKAGES; quietly, and never failing the session (a read-only checkout
    just runs as before)."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=2, workers=1)
