"""JournalThread: the one thread a journal's database work runs on, in the order it was handed over.

An Executor (the loop's `run_in_executor` takes it) with a leaner hand-over of its own, `post(fn, *args)`: no
Future, no pool bookkeeping (ThreadPoolExecutor's submit takes two locks, builds a Future with its Condition and
checks an idle semaphore), one queue put. The journal posts its group commits with it: the commit's answer goes
back to the loop by `call_soon_threadsafe` from the job itself, so nothing waits on a Future.

Work handed over is done before the interpreter exits: the thread is a daemon (a journal never closed cannot
hold the process up), and an `atexit` hook shuts it down and waits for what was handed over before that.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import structlog

log = structlog.get_logger("ordergate.journal")
_STOP = object()


class JournalThread(Executor):
    """A single worker thread, started on first use, running handed-over jobs one at a time in order."""

    def __init__(self, name: str = "journal") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._shutdown = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the thread after everything handed over before; nothing comes back (the job answers
        for itself). An exception it lets out is logged. RuntimeError once shut down."""
        if self._shutdown:
            raise RuntimeError(f"{self.name}: cannot take work after shutdown")
        if self._thread is None:
            self._start()
        self._jobs.put((fn, args, None, None))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Executor.submit: `fn(*args, **kwargs)` on the thread, its outcome in the returned Future."""
        if self._shutdown:
            raise RuntimeError(f"{self.name}: cannot schedule new futures after shutdown")
        if self._thread is None:
            self._start()
        future: Future[Any] = Future()
        self._jobs.put((fn, args, kwargs, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more work; the thread ends once what was handed over is done (`wait`: wait for that)."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._jobs.put(_STOP)
        atexit.unregister(self._at_exit)
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._shutdown:
                return
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            thread.start()
            self._thread = thread
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        self.shutdown(wait=True)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args, kwargs, future = job
            if future is None:
                try:
                    fn(*args)
                except BaseException:  # a posted job answers for itself; one that cannot is logged, never lost
                    log.exception("journal_job_failed", job=getattr(fn, "__qualname__", repr(fn)))
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del job, fn, args, kwargs, future
