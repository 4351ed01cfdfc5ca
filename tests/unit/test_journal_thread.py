"""JournalThread: jobs run one at a time in the order handed over (posted or submitted), a posted job that raises
does not stop the thread, the loop's run_in_executor takes it, and nothing is accepted after shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipeline.record.journal_thread import JournalThread


async def test_jobs_run_in_order_on_one_thread_and_a_failing_post_is_survived() -> None:
    worker = JournalThread("journal-test")
    seen: list[tuple[int, str]] = []
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def note(i: int) -> None:
        seen.append((i, threading.current_thread().name))

    def boom() -> None:
        raise ValueError("a broken job")

    try:
        worker.post(note, 0)
        worker.post(boom)
        assert await loop.run_in_executor(worker, lambda: 41 + 1) == 42
        worker.post(note, 1)
        worker.post(lambda: loop.call_soon_threadsafe(done.set_result, True))
        assert await done
        assert seen == [(0, "journal-test"), (1, "journal-test")]
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(worker, lambda: 1 / 0)
    finally:
        worker.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        worker.post(note, 2)
    with pytest.raises(RuntimeError):
        worker.submit(note, 3)
