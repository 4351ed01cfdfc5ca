"""The reconcile interval's chores (day rollover, reconciliation, pruning, the marks, the journal's flush) each run
whatever another raised: a reconciliation that fails for an hour must not stop the pruning or the desk's marks."""

from __future__ import annotations

import pytest

from daemon.process import Daemon


async def test_a_failing_reconciliation_does_not_stop_the_other_chores(
    paper_daemon: Daemon, monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = paper_daemon.core
    done: list[str] = []

    async def failing_reconcile() -> None:
        done.append("reconcile")
        raise RuntimeError("positions endpoint down")

    async def marks() -> None:
        done.append("marks")

    monkeypatch.setattr(core, "reconcile", failing_reconcile)
    monkeypatch.setattr(core.engine, "prune", lambda: done.append("prune"))
    monkeypatch.setattr(core, "save_marks", marks)
    await paper_daemon.housekeep()
    assert done == ["reconcile", "prune", "marks"]
