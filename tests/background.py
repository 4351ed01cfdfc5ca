"""Campaigns that mostly wait (the chaos breaks' crash runs and the short chaos run's crash points: daemons
sleeping between their crash points; the kill switch burst: entries queued in a rate limiter) start on their own
thread pools when the session starts, so that they overlap the rest of the suite instead of adding to it; their
tests are run last, each waiting for its own campaign's result and asserting on it as before.

A module takes part by being named in BACKGROUND_MODULES and defining `campaigns(mktemp)`: a context manager that
starts its runs (each in a fresh directory from `mktemp(name)`) and yields {key: Future}; leaving it waits for
the runs still going. The session fixture `background` (tests/conftest.py) maps module name -> what it yielded,
for the modules with a test selected in this session (none with `-m "not slow"`: those modules are all slow).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BACKGROUND_MODULES = frozenset({"test_chaos_breaks", "test_chaos_short", "test_kill_switch_burst"})


def module_stem(item: pytest.Item) -> str:
    return Path(str(item.fspath)).stem


def last_if_background(items: list[pytest.Item]) -> None:
    """Reorder in place (stable): the background modules' tests after every other test."""
    items.sort(key=lambda item: module_stem(item) in BACKGROUND_MODULES)


@contextmanager
def started(items: list[pytest.Item], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the campaigns of every background module among `items`; {module name: its futures}."""
    modules: dict[str, ModuleType] = {}
    for item in items:
        name = module_stem(item)
        if name in BACKGROUND_MODULES and isinstance(item, pytest.Function):
            modules.setdefault(name, item.module)
    with ExitStack() as stack:
        yield {name: stack.enter_context(module.campaigns(tmp_path_factory.mktemp))
               for name, module in modules.items()}


def result(futures: dict[str, Future[Any]], key: str, timeout: float = 600) -> Any:
    """The campaign `key`'s outcome (its exception re-raised in the test that waits for it)."""
    return futures[key].result(timeout=timeout)
