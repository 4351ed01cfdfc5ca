"""The reconcile interval's chores (day rollover, reconciliation, pruning, the marks, the journal's flush) each run
whatever another raised: a reconciliation that fails for an hour must not stop the pruning or the desk's marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_settings
from daemon.process import Daemon


async def test_a_failing_reconciliation_does_not_stop_the_other_chores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(state_dir=tmp_path / "state", broker={"primary": "paper"}, paper={"persistent": False})
    daemon = Daemon(settings)
    core = daemon.core
    await core.start()
    done: list[str] = []

    async def failing_reconcile() -> None:
        done.append("reconcile")
        raise RuntimeError("positions endpoint down")

    async def marks() -> None:
        done.append("marks")

    monkeypatch.setattr(core, "reconcile", failing_reconcile)
    monkeypatch.setattr(core.engine, "prune", lambda: done.append("prune"))
    monkeypatch.setattr(core, "save_marks", marks)
    try:
        await daemon.housekeep()
        assert done == ["reconcile", "prune", "marks"]
    finally:
        await core.stop()
