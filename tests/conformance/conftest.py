"""Backends for the conformance suite: memory, a SQLite file, and a fresh PostgreSQL database.

PostgreSQL tests need the server at 127.0.0.1:5432 (trust auth, user ``postgres``, database
``test``). Each test session creates its own uniquely named databases and drops them at the end.
An unreachable server fails those tests: it never skips them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from podium.store import open_store
from podium.store.sql import create_store_engine, store_url
from podium.types import Store
from tests.conftest import truncate as _truncate


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


# -- migration tests: one new database per test, at the revision the test migrates it to ---------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    create: Callable[[], str] = request.getfixturevalue("pg_database")
    return create()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on :func:`db_url`, with the store's SQLite settings on SQLite."""
    url = store_url(db_url)
    made = create_store_engine(url) if url.get_backend_name() == "sqlite" else create_engine(url)
    try:
        yield made
    finally:
        made.dispose()
