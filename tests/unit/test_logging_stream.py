"""A logger used first while sys.stdout was one stream keeps writing to sys.stdout as it is now (structlog caches
a logger's output on its first use: a closed capture stream of an earlier test broke a later one's daemon)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from daemon.logging import configure_logging, reset_logging


@pytest.fixture
def restored() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    yield
    sys.stdout, sys.stderr = saved
    reset_logging()


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_a_cached_logger_follows_the_stream_swapped_after_its_first_use(restored: None, name: str) -> None:
    first, later = io.StringIO(), io.StringIO()
    setattr(sys, name, first)
    configure_logging("INFO", "json", stream=first if name == "stderr" else None)
    log = structlog.get_logger("ordergate.test")
    log.info("first_use")
    first.close()  # as pytest closes a test's capture
    setattr(sys, name, later)
    log.info("after_the_swap")
    assert json.loads(later.getvalue())["event"] == "after_the_swap"


def test_an_explicit_stream_is_kept(restored: None) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    sys.stdout = io.StringIO()
    structlog.get_logger("ordergate.test").info("to_the_given_stream")
    assert json.loads(out.getvalue())["event"] == "to_the_given_stream"
