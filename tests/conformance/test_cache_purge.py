"""Retention's part of the cache spec, on every backend: ``purge_namespace`` drops the entries of
one namespace stored before a time (exact boundary, expired or live, semantic index included)
and nothing else; ``namespaces`` lists who has entries."""

from __future__ import annotations

from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podium.gateway.cache import CacheBackend, StoredEntry, unit_vector
from tests.conformance.cache_support import KINDS, cache_backend

NOW = 1_700_000_000.0
NS_A, NS_B = "org:acme/team:search", "org:acme/team:ads"
NS_ORG = "org:acme"
BUCKET = "b" * 64


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    """Each backend in turn, empty."""
    async with cache_backend(request.param, tmp_path) as opened:
        yield opened


def key(i: int) -> str:
    return f"{i:064x}"


def entry(
    i: int, created_at: float, *, ttl: float = 10 * 86400.0, vector: array[float] | None = None
) -> StoredEntry:
    bucket = BUCKET if vector is not None else None
    return StoredEntry(key(i), f'{{"answer": {i}}}', created_at, created_at + ttl, bucket, vector)


async def test_purge_drops_exactly_the_entries_stored_before(backend: CacheBackend) -> None:
    before = NOW - 86400
    await backend.put(NS_A, entry(1, before - 3600), NOW)  # well inside the purge
    await backend.put(NS_A, entry(2, before - 0.001), NOW)  # just before: purged
    await backend.put(NS_A, entry(3, before), NOW)  # exactly at the boundary: kept
    await backend.put(NS_A, entry(4, before + 0.001), NOW)  # just after: kept
    await backend.put(NS_B, entry(5, before - 3600), NOW)  # old, but another namespace
    assert await backend.purge_namespace(NS_A, before) == 2
    assert await backend.get(NS_A, key(1), NOW) is None
    assert await backend.get(NS_A, key(2), NOW) is None
    assert await backend.get(NS_A, key(3), NOW) is not None
    assert await backend.get(NS_A, key(4), NOW) is not None
    assert await backend.get(NS_B, key(5), NOW) is not None
    assert await backend.purge_namespace(NS_A, before) == 0  # nothing left to purge


async def test_purged_entries_leave_the_semantic_index(backend: CacheBackend) -> None:
    before = NOW - 86400
    await backend.put(NS_A, entry(1, before - 10, vector=unit_vector([1.0, 0.0])), NOW)
    await backend.put(NS_A, entry(2, before + 10, vector=unit_vector([0.9, 0.1])), NOW)
    hit = await backend.nearest(NS_A, BUCKET, unit_vector([1.0, 0.0]), 0.5, NOW)
    assert hit is not None
    assert hit[0].key == key(1)  # the closest, before the purge
    assert await backend.purge_namespace(NS_A, before) == 1
    hit = await backend.nearest(NS_A, BUCKET, unit_vector([1.0, 0.0]), 0.5, NOW)
    assert hit is not None
    assert hit[0].key == key(2)


async def test_an_organisation_namespace_is_not_its_teams(backend: CacheBackend) -> None:
    """``org:acme`` is a prefix of ``org:acme/team:search``; purging it spares the team."""
    await backend.put(NS_ORG, entry(1, NOW - 100), NOW)
    await backend.put(NS_A, entry(2, NOW - 100), NOW)
    assert await backend.purge_namespace(NS_ORG, NOW) == 1
    assert await backend.get(NS_A, key(2), NOW) is not None


async def test_namespaces_lists_who_has_entries(backend: CacheBackend) -> None:
    assert await backend.namespaces() == []
    for i, ns in enumerate((NS_A, NS_B, NS_ORG, NS_A)):
        await backend.put(ns, entry(i, NOW - 10, vector=unit_vector([1.0, float(i)])), NOW)
    assert await backend.namespaces() == sorted({NS_A, NS_B, NS_ORG})
    await backend.purge_namespace(NS_B, NOW)
    assert await backend.namespaces() == sorted({NS_A, NS_ORG})
