"""Bad-input fuzz (hypothesis): signals, config values, replay CSV rows, a state file of random bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import Scoreboard, fuzz_config, fuzz_replay_rows, fuzz_signals, fuzz_state_file

pytestmark = pytest.mark.timeout(120)
EXAMPLES = 80


@pytest.mark.parametrize("target", [fuzz_signals, fuzz_config, fuzz_replay_rows, fuzz_state_file],
                         ids=["signals", "config", "replay_rows", "state_file"])
def test_fuzz_target_finds_no_loss(target) -> None:  # type: ignore[no-untyped-def]
    board = Scoreboard()
    target(EXAMPLES, board)
    assert board.losses == []
    assert board.fuzz_cases >= EXAMPLES


def test_corrupt_state_file_fails_closed_and_a_valid_one_is_clean(tmp_path: Path) -> None:
    """The two cases the state fuzz judges, pinned: garbage -> kill switch active; a real file -> as written."""
    from pipeline.core.clock import SimulatedClock
    from pipeline.safety.state_manager import PersistentStateManager
    from tests.chaos import SESSION

    (tmp_path / "state.json").write_bytes(b"\x00\xffnot json")
    bad = PersistentStateManager(tmp_path, SimulatedClock(SESSION))
    assert bad.load_error and bad.is_kill_switch_active()

    good_dir = tmp_path / "good"
    writer = PersistentStateManager(good_dir, SimulatedClock(SESSION))
    writer.record_pnl(5.0)
    reader = PersistentStateManager(good_dir, SimulatedClock(SESSION))
    assert reader.load_error is None and not reader.is_kill_switch_active()


def test_the_fuzz_judge_reports_a_rejection_without_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge can fail: an orchestrator that rejects silently is reported."""
    from pipeline.core.models import PipelineResult
    from pipeline.orchestrator import BotOrchestrator

    async def silent(self, signal):  # type: ignore[no-untyped-def]
        return PipelineResult(False, None, "somewhere", None)

    monkeypatch.setattr(BotOrchestrator, "process_signal", silent)
    board = Scoreboard()
    fuzz_signals(5, board)
    assert board.losses and "without a reason" in board.losses[0]
