"""The short chaos run inside `make test`: 6 crash points of the real daemon (SIGKILL/SIGTERM, webhook fed),
every broker fault mix, a few hundred fuzz cases; nothing may be lost. The long form is `make chaos CRASHES=200`;
tests/process/test_chaos_breaks.py shows every counter of the scoreboard can move."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import FAULT_MIXES, Scoreboard, crash_points, fault_mixes, fuzz_all
from tests.chaos_daemon import COUNTERS

pytestmark = pytest.mark.timeout(300)


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    board = Scoreboard()
    crash_points(6, tmp_path / "state", board, seed=3, max_delay=1.5)
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
