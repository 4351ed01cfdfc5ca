"""cancel_and_wait: a shutdown ends the background tasks even when one loses its first cancellation."""

from __future__ import annotations

import asyncio

from daemon.task_stop import cancel_and_wait


async def _loses_one_cancel(started: asyncio.Event) -> None:
    """What a loop around 3.11's `asyncio.wait_for` can do: the cancel that races a completion is dropped."""
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # lost (gh-86296): the loop goes on
    await asyncio.sleep(3600)


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_loses_one_cancel(started))
    await started.wait()
    # the plain cancel-and-await the shutdown used would wait for ever
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    left = await cancel_and_wait([task], timeout=2.0, grace=0.1, retry_seconds=0.05)
    assert left == [] and task.cancelled()


async def test_a_task_cleaning_up_after_its_cancel_is_not_cut_short() -> None:
    saved: list[str] = []

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.3)  # its last write, longer than one retry
            saved.append("resume point")

    task = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout=2.0, grace=1.0, retry_seconds=0.05) == []
    assert saved == ["resume point"]


async def test_failed_and_finished_tasks_are_taken_and_a_stubborn_one_is_returned() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    released = False

    async def stubborn() -> None:
        while not released:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                continue

    failed = asyncio.create_task(fails())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    never = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    left = await cancel_and_wait([failed, finished, never], timeout=0.3, grace=0.1, retry_seconds=0.05)
    assert left == [never] and loop.time() - start < 1.0
    released = True
    await never
