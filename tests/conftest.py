"""Shared fixtures: every store backend, an engine factory, virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from podium import Engine, MemoryStore, open_store
from podium.testing import FakeClock
from podium.types import Store


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
