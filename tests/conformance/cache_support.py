"""The cache backends of the conformance specs (``test_cache.py``, ``test_cache_purge.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from podium.gateway.cache import CacheBackend
from podium.gateway.cache_backends import (
    MemoryCacheBackend,
    RedisCacheBackend,
    SQLiteCacheBackend,
)
from tests.gateway.conftest import connect_redis, delete_prefix

KINDS = ["memory", "sqlite", "redis"]


@asynccontextmanager
async def cache_backend(kind: str, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    """An empty backend of ``kind``; Redis keys live under a prefix deleted afterwards."""
    if kind == "memory":
        yield MemoryCacheBackend(max_entries=1000)
    elif kind == "sqlite":
        sqlite = SQLiteCacheBackend(tmp_path / "cache" / "podium-cache.db")
        try:
            yield sqlite
        finally:
            await sqlite.close()
    else:
        client = await connect_redis()
        prefix = f"podium-test:{uuid.uuid4().hex}:"
        try:
            yield RedisCacheBackend(client, prefix=prefix)
        finally:
            await delete_prefix(client, prefix)
            await client.aclose()
