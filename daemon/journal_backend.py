"""Which journal the daemon keeps: the SQLite file in its state directory, or its instance's schema in the desk's
PostgreSQL database (`[journal] backend`). A replay's throwaway journal is always SQLite (nothing to keep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.settings import Settings
from pipeline.record.journal import Journal


def make_journal(settings: Settings, state_dir: Path, *, durability: str = "full", replay: bool = False) -> Any:
    """The configured journal, not yet opened (None when [journal] enabled = false). PostgreSQL commits every
    durable write in full whatever `durability` says (a batched journal is for simulated time only)."""
    cfg = settings.journal
    if not cfg.enabled:
        return None
    if cfg.backend == "postgresql" and not replay:
        from adapters.journal_pg import PgJournal

        assert cfg.dsn is not None  # the settings refuse postgresql without a dsn
        return PgJournal(cfg.dsn.get_secret_value().strip(), settings.instance.name,
                         connect_timeout=cfg.connect_timeout_seconds)
    return Journal(state_dir / "journal.db", synchronous=cfg.synchronous, durability=durability)
