"""Stopping the daemon's background tasks at shutdown: cancelled, and cancelled again while one still runs.

A task can lose its cancellation: Python 3.11's `asyncio.wait_for` drops a cancel that arrives just as the future
it waits for completes (CPython gh-86296), and a loop around such a wait then goes on as if nothing had happened.
A shutdown that only awaits what it cancelled would wait for that task for ever (until systemd's SIGKILL, with the
state file and journal not closed). Here a task still running `grace` seconds after its cancel (time for its
own clean-up, such as the feed loop's last resume-point write, which a second cancel would cut short) is
cancelled again every `retry_seconds` until `timeout`; what is left then is returned, for the caller to name in
the log, and not waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], timeout: float = 5.0, grace: float = 2.0,
                          retry_seconds: float = 0.2) -> list[asyncio.Task[object]]:
    """Cancel `tasks` and wait until they end (each still running after `grace` s cancelled again every
    `retry_seconds`), at most `timeout` seconds; returns the tasks still running then. A task's own error is taken
    (not raised)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if pending:
        _done, pending = await asyncio.wait(pending, timeout=min(grace, timeout))
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            break
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=min(retry_seconds, left))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a task that failed before the shutdown was logged where it failed
    return [task for task in tasks if not task.done()]


__all__ = ["cancel_and_wait"]
