"""Shared fixtures: every store backend, an engine factory, virtual time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine

from podium import Engine, MemoryStore, open_store
from podium.store.migrations import upgrade_to_head
from podium.store.sql import store_url
from podium.testing import FakeClock
from podium.testing.simulators.server import Simulator
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


def truncate(url: str) -> None:
    """Empty every table of a migrated PostgreSQL test database."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, signals, runs")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each engine test runs on the in-memory and the SQLite store."""
    s: Store = (
        MemoryStore()
        if request.param == "memory"
        else await open_store(f"sqlite:///{tmp_path / 'podium.db'}")
    )
    yield s
    await s.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Durability tests run on every backend, PostgreSQL included."""
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = await open_store(f"sqlite:///{tmp_path / 'podium.db'}")
    else:
        url: str = request.getfixturevalue("pg_url")
        truncate(url)
        s = await open_store(url)
    yield s
    await s.close()


@pytest.fixture
async def make_engine(store: Store, clock: FakeClock) -> AsyncIterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(**kw: Any) -> Engine:
        kw.setdefault("clock", clock)
        kw.setdefault("seed", 7)
        engine = Engine(store, **kw)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


# -- API simulators on loopback, started once per session, reset per test ---------------------

SimT = TypeVar("SimT", bound=Simulator)


@pytest.fixture(scope="session")
def _simulator_pool() -> Iterator[dict[tuple[type[Simulator], str], Simulator]]:
    pool: dict[tuple[type[Simulator], str], Simulator] = {}
    yield pool
    for sim in pool.values():
        sim.stop()


@pytest.fixture
def use_simulator(
    _simulator_pool: dict[tuple[type[Simulator], str], Simulator],
) -> Callable[..., Simulator]:
    """A running, freshly reset simulator of a class, with constructor options."""

    def use(cls: type[SimT], **options: Any) -> SimT:
        key = (cls, repr(sorted(options.items())))
        sim = _simulator_pool.get(key)
        if sim is None:
            sim = cls(**options)
            sim.start()
            _simulator_pool[key] = sim
        sim.reset()
        return cast(SimT, sim)

    return use
