"""The short chaos run inside `make test`: 6 crash points of the real daemon (SIGKILL/SIGTERM, webhook fed),
every broker fault mix, a few hundred fuzz cases; nothing may be lost. The long form is `make chaos CRASHES=200`;
tests/process/test_chaos_breaks.py shows every counter of the scoreboard can move.

The crash points start with the session and overlap the rest of the suite (tests/background.py); the test runs
last, adding the fault mixes and the fuzz cases to their scoreboard."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.background import result
from tests.chaos import FAULT_MIXES, Scoreboard, crash_points, fault_mixes, fuzz_all
from tests.chaos_daemon import COUNTERS

pytestmark = pytest.mark.timeout(300)

RUN = "short_chaos_run"


def _crash_points(root: Path) -> Scoreboard:
    board = Scoreboard()
    crash_points(6, root / "state", board, seed=3, max_delay=1.5)
    return board


@contextmanager
def campaigns(mktemp: Callable[[str], Path]) -> Iterator[dict[str, Future[Scoreboard]]]:
    """The run's crash points (real daemon subprocesses: it waits on them most of the time), started when the
    session starts; the fault mixes and the fuzz cases (in this process) run in the test, after them."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos")
    runs = {RUN: pool.submit(_crash_points, mktemp(RUN))}
    try:
        yield runs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_short_chaos_run_loses_nothing(background: dict[str, dict[str, Future[Any]]]) -> None:
    board: Scoreboard = result(background[__name__.rpartition(".")[2]], RUN, timeout=300)
    fault_mixes(board)
    fuzz_all(60, board)
    print(board.render())
    assert board.losses == []
    assert board.crash_points == 6
    assert board.fault_mixes == len(FAULT_MIXES)
    assert board.fuzz_cases >= 240
    verify = board.details["crash_verify"]
    assert verify["fills"] > 0 and verify["orders"] > 0 and board.details["crash_run"]["webhook_signals"] > 0
    assert set(board.counters) == set(COUNTERS) and not any(board.counters.values())
