"""Backends for the conformance suite: memory, a SQLite file, and a fresh PostgreSQL database.

PostgreSQL tests need the server at 127.0.0.1:5432 (trust auth, user ``postgres``, database
``test``). Each test session creates its own uniquely named databases and drops them at the end.
An unreachable server fails those tests: it never skips them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine

from podium.store import open_store
from podium.store.migrations import upgrade_to_head
from podium.store.sql import store_url
from podium.types import Store

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

CreateDatabase = Callable[[], str]
"""Makes a new empty PostgreSQL database for this session and returns its URL."""


@pytest.fixture(scope="session")
def pg_database() -> Iterator[CreateDatabase]:
    """A factory of fresh PostgreSQL databases, all dropped when the session ends."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
    prefix = f"podium_test_{uuid.uuid4().hex[:10]}"
    created: list[str] = []

    def create() -> str:
        name = f"{prefix}_{len(created)}"
        # A non-C collation (ICU en-US) catches results that depend on the server's locale.
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'"
                " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            ).format(sql.Identifier(name))
        )
        created.append(name)
        return PG_URL.format(name=name)

    try:
        yield create
    finally:
        for name in created:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


@pytest.fixture(scope="session")
def pg_url(pg_database: CreateDatabase) -> str:
    """The session's migrated PostgreSQL database, shared by the suite (emptied per test)."""
    url = pg_database()
    engine = create_engine(store_url(url))
    try:
        upgrade_to_head(engine)
    finally:
        engine.dispose()
    return url


def _truncate(url: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, signals, runs")


@dataclass(frozen=True)
class Backend:
    """One store backend under test, and how to open it."""

    name: str
    url: str

    async def open(self) -> Store:
        return await open_store(self.url)


BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def _backend(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Backend:
    if name == "memory":
        return Backend(name, "memory://")
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path / 'data' / 'podium.db'}")
    url: str = request.getfixturevalue("pg_url")
    _truncate(url)
    return Backend(name, url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn, empty."""
    return _backend(request, request.param, tmp_path)


@pytest.fixture(params=[p for p in BACKENDS if p.values[0] != "memory"])
def open_durable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], Awaitable[Store]]:
    """Opens (again and again) the same empty database of each backend that outlives ``close()``."""
    return _backend(request, request.param, tmp_path).open


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open, empty store of each backend, closed after the test."""
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
