"""The short chaos run inside `make test`: 5 SIGKILL crash points, every broker fault mix, a few hundred fuzz
cases; nothing may be lost. The long form is `make chaos CRASHES=200`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import FAULT_MIXES, Scoreboard, crash_points, fault_mixes, fuzz_all

pytestmark = pytest.mark.timeout(120)


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    board = Scoreboard()
    crash_points(5, tmp_path / "state", board, seed=3, max_delay=0.8)
    fault_mixes(board)
    fuzz_all(60, board)
    print(board.render())
    assert board.losses == []
    assert board.crash_points == 5
    assert board.fault_mixes == len(FAULT_MIXES)
    assert board.fuzz_cases >= 240
    verify = board.details["crash_verify"]
    assert verify["broker_fills"] > 0 and verify["positions_equal"]


def test_the_crash_judge_reports_each_kind_of_loss() -> None:
    from tests.chaos import _judge_crash

    clean = {"duplicate_client_order_ids": 0, "entries_with_two_orders": 0, "orders_unknown_to_journal": 0,
             "fills_missing_from_journal": 0, "fills_applied_twice": 0, "journal_fills_unknown_to_broker": 0,
             "positions_equal": True, "broker_positions": {}, "ledger_positions": {}, "kill_switch_active": True,
             "state_load_error": None, "broker_fills": 3}
    board = Scoreboard()
    _judge_crash(clean, True, board)
    assert board.losses == []
    for key, bad in (("fills_missing_from_journal", 1), ("fills_applied_twice", 2), ("positions_equal", False),
                     ("kill_switch_active", False), ("entries_with_two_orders", 1),
                     ("reservations_of_finished_orders", 2)):
        board = Scoreboard()
        _judge_crash({**clean, key: bad}, True, board)
        assert len(board.losses) == 1, key
