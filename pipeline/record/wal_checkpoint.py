"""WalCheckpointer: the journal's WAL checkpoints, on a connection and a thread of their own.

SQLite in WAL mode appends every commit to the -wal file; a checkpoint copies those pages back into the database
file (and fsyncs it). By default the connection whose commit takes the WAL past 1 000 pages runs that checkpoint
inside the commit: with ~11 pages per order intent, about one intent in 90 paid for a checkpoint (megabytes
written and a second fsync) between its decision and its send — the tail of signal -> order. Here the journal's
own connection checkpoints only as a fallback (`FALLBACK_PAGES`, should this thread fall behind), and after every
`every` commits a PASSIVE checkpoint runs on this thread: it never blocks the journal's writers, and what it does
not finish (a reader holding an old snapshot) the next one picks up. A checkpoint is housekeeping, not
durability: a commit is durable in the WAL before any of this runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import structlog

from pipeline.record.journal_thread import JournalThread

log = structlog.get_logger("ordergate.journal")
FALLBACK_PAGES = 20_000  # the journal connection's own auto-checkpoint (~80 MB of WAL): only if this falls behind
EVERY_COMMITS = 50  # commits between two checkpoints (~550 pages of intents: a few ms of background writing)


class WalCheckpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on the database at `path` every `every` commits, off the committing
    thread. `committed()` may be called from any thread; `close()` waits for a checkpoint under way."""

    def __init__(self, path: Path, synchronous: str, every: int = EVERY_COMMITS) -> None:
        self.path = path
        self.synchronous = synchronous
        self.every = every
        self.checkpoints = 0  # checkpoints run (a diagnostic: tests)
        self._thread = JournalThread("journal-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._since = 0
        self._running = False
        self._closed = False

    def committed(self) -> None:
        """One more commit on the journal's connection; every `every`-th starts a checkpoint unless one runs."""
        self._since += 1
        if self._since < self.every or self._running or self._closed:
            return
        self._since = 0
        self._running = True
        self._thread.post(self._checkpoint)

    def close(self) -> None:
        """No more checkpoints; waits for one under way and closes the connection (before the journal's own, so
        the last connection to close is the journal's and folds the WAL back as usual)."""
        if self._closed:
            return
        self._closed = True
        self._thread.post(self._close)
        self._thread.shutdown(wait=True)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # housekeeping: the next one (or the fallback) catches up
            log.warning("journal_checkpoint_failed", path=str(self.path), error=str(exc))
        finally:
            self._running = False

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
