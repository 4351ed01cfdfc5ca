"""Campaigns that mostly wait (the chaos breaks' crash runs and the short chaos run's crash points: daemons
sleeping between their crash points; the kill switch burst: entries queued in a rate limiter) start on their own
thread pools when the session starts, so that they overlap the rest of the suite instead of adding to it; their
tests are run last, each waiting for its own campaign's result and asserting on it as before.

A module takes part by being named in BACKGROUND_MODULES and defining `campaigns(mktemp)`: a context manager that
starts its runs (each in a fresh directory from `mktemp(name)`) and yields {key: Future}; leaving it waits for
the runs still going. The session fixture `background` (tests/conftest.py) maps module name -> what it yielded,
for the modules with a test selected in this session (none with `-m "not slow"`: those modules are all slow).

Under pytest-xdist (`make test` runs two workers) every worker collects every test but runs only some, so one
worker (gw0) runs the campaigns, as the single process does, and writes each outcome (its value or its error) to a
file in the run's shared temporary directory; a test of a background module on any other worker waits for that
file instead of a Future of its own process (`OutcomeFile`).
"""

from __future__ import annotations

import os
import pickle
import time
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


RUNNER = "gw0"  # the xdist worker that runs the campaigns


class OutcomeFile:
    """A campaign's outcome as another worker sees it: `result(timeout)` waits for the file RUNNER writes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def result(self, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self.path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {RUNNER} wrote no outcome to {self.path} within {timeout} s")
            time.sleep(0.2)
        ok, value = pickle.loads(self.path.read_bytes())
        if ok:
            return value
        if isinstance(value, BaseException):
            raise value
        raise RuntimeError(value)


def _write_outcome(path: Path, future: Future[Any]) -> None:
    """Atomically write (True, value) or (False, error) for `future`, done; an error that will not pickle goes as
    its text."""
    error = future.exception() if not future.cancelled() else RuntimeError("campaign cancelled")
    outcome: tuple[bool, Any] = (False, error) if error is not None else (True, future.result())
    try:
        data = pickle.dumps(outcome)
    except Exception as exc:  # an outcome that will not pickle fails its test with its text, not silently
        data = pickle.dumps((False, f"outcome of {path.name} could not be pickled ({exc!r}): {outcome[1]!r}"))
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)


@contextmanager
def started(items: list[pytest.Item], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the campaigns of every background module among `items`; {module name: its futures}."""
    modules: dict[str, ModuleType] = {}
    for item in items:
        name = module_stem(item)
        if name in BACKGROUND_MODULES and isinstance(item, pytest.Function):
            modules.setdefault(name, item.module)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        with ExitStack() as stack:
            yield {name: stack.enter_context(module.campaigns(tmp_path_factory.mktemp))
                   for name, module in modules.items()}
        return
    shared = tmp_path_factory.getbasetemp().parent / "background"  # the run's directory, above each worker's own
    shared.mkdir(exist_ok=True)
    if worker != RUNNER:
        yield {name: _OutcomeFiles(shared, name) for name in modules}
        return
    with ExitStack() as stack:
        campaigns = {name: stack.enter_context(module.campaigns(tmp_path_factory.mktemp))
                     for name, module in modules.items()}
        for name, futures in campaigns.items():
            for key, future in futures.items():
                future.add_done_callback(lambda f, path=shared / f"{name}.{key}.outcome": _write_outcome(path, f))
        yield campaigns


class _OutcomeFiles(dict):  # type: ignore[type-arg]
    """{key: OutcomeFile} for one module's campaigns, built on first lookup (the keys are the module's own)."""

    def __init__(self, shared: Path, module: str) -> None:
        super().__init__()
        self.shared, self.module = shared, module

    def __missing__(self, key: str) -> OutcomeFile:
        self[key] = OutcomeFile(self.shared / f"{self.module}.{key}.outcome")
        return self[key]


def result(futures: dict[str, Future[Any]], key: str, timeout: float = 600) -> Any:
    """The campaign `key`'s outcome (its exception re-raised in the test that waits for it)."""
    return futures[key].result(timeout=timeout)
