"""A real PostgreSQL server for the test run (the `pgserver` wheel ships the server binaries), and the journal
fixture that runs a test on each backend: a SQLite file and an instance schema on that server.

Loaded as a pytest plugin by tests/conftest.py. The server starts once per session, on first use, listening on a
unix socket in its own data directory only; `PgServer.stop()/start()` take it down and up again (the journal's
server-restart tests).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

BACKENDS = ("sqlite", "postgresql")
_names = itertools.count(1)


class PgServer:
    """One PostgreSQL server (pgserver's binaries) and its admin DSN."""

    def __init__(self, pgdata: Path) -> None:
        import pgserver

        self.pgdata = pgdata
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.admin_dsn: str = self._server.get_uri()
        self.socket_dir = parse_qs(urlsplit(self.admin_dsn).query)["host"][0]

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        _commands.pg_ctl(["-w", *args], pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def stop(self) -> None:
        """Immediate shutdown: every session is cut and the server stops without a checkpoint, as in a crash (what
        was committed must come back from the WAL at the next start)."""
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        self._pg_ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start")

    def create_database(self, name: str) -> str:
        """A new empty database; its DSN."""
        self._server.psql(f'CREATE DATABASE "{name}";')
        return self.dsn(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip("pgserver")
    # not under pytest's basetemp: run as root, the server runs as the `pgserver` user, and every pytest session
    # resets /tmp/pytest-of-root to 0700 (and prunes old runs' directories) under a server still using them
    root = Path(tempfile.mkdtemp(prefix="ordergate-pg-"))
    os.chmod(root, 0o755)
    server = PgServer(root / "data")
    yield server
    server._server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PgServer) -> str:
    """A database for the journal tests (each test its own instance schema in it)."""
    return pg_server.create_database("ordergate_tests")


def instance_name(prefix: str = "t") -> str:
    """A fresh instance (schema) name for one test."""
    return f"{prefix}{os.getpid()}-{next(_names)}"


def make_journal(backend: str, tmp_path: Path, request: pytest.FixtureRequest, **kwargs: Any) -> Any:
    """A not-yet-opened journal on `backend`: a SQLite file in tmp_path, or a fresh instance on the test server."""
    if backend == "sqlite":
        from pipeline.record.journal import Journal

        return Journal(tmp_path / "journal.db", **kwargs)
    from adapters.journal_pg import PgJournal

    dsn = request.getfixturevalue("pg_dsn")
    return PgJournal(dsn, instance_name())


@pytest.fixture(params=BACKENDS)
def journal_backend(request: pytest.FixtureRequest) -> str:
    """Each journal test once per backend."""
    return str(request.param)


@pytest.fixture
async def any_journal(journal_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An open journal on each backend."""
    journal = make_journal(journal_backend, tmp_path, request)
    await journal.open()
    yield journal
    await journal.close()


def backend_settings(backend: str, request: pytest.FixtureRequest, instance: str | None = None) -> dict[str, Any]:
    """load_settings overrides that put a Core's journal on `backend` (PostgreSQL: a fresh instance, or `instance`)."""
    if backend == "sqlite":
        return {}
    dsn = request.getfixturevalue("pg_dsn")
    return {"journal": {"backend": "postgresql", "dsn": dsn}, "instance": {"name": instance or instance_name()}}


@pytest.fixture(autouse=True)
def _journal_backend_from_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORDERGATE_TEST_JOURNAL=postgresql: every Core a test builds from settings journals into a fresh database on
    the test server (a whole-suite check of the PostgreSQL backend; tests that open journal.db themselves fail)."""
    if os.environ.get("ORDERGATE_TEST_JOURNAL") != "postgresql":
        return
    server: PgServer = request.getfixturevalue("pg_server")
    dsn = server.create_database(f"t_{os.getpid()}_{next(_names)}")
    monkeypatch.setenv("ORDERGATE_JOURNAL__BACKEND", "postgresql")
    monkeypatch.setenv("ORDERGATE_JOURNAL__DSN", dsn)
