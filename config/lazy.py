"""Lazy package exports (PEP 562): a package's public names resolve to their modules on first use.

Every package `__init__` (config, pipeline, adapters, daemon) sets `__getattr__ = lazy_getattr(__name__, EXPORTS)`,
so `from pipeline import RiskGate` works while `import pipeline` stays cheap (no SDK import, no cycle).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `exports` maps each public name to the module that holds it."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # cached: the next lookup does not come here
        return value

    return __getattr__
