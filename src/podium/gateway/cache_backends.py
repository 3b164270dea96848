"""Where the response cache keeps its entries: memory (LRU), a SQLite file, or Redis.

All three implement :class:`~podium.gateway.cache.CacheBackend` and pass one conformance suite
(``tests/conformance/test_cache.py``): exact get/put, TTL expiry by the cache's clock, namespace
isolation, semantic nearest-neighbour with a threshold.

**Semantic search is brute force** (:func:`~podium.gateway.cache.most_similar`) over the live
entries of one namespace's bucket (one model, one set of parameters, one conversation prefix),
which stays small in practice. Measured on a 2-core dev machine, a bucket of 1,000 entries of
384 dimensions costs per semantic lookup ~2 ms in memory, ~7 ms in SQLite (in its worker thread)
and ~45 ms in Redis (fetching the vectors dominates); without NumPy, add ~25 ms of pure-Python
dot products. Buckets far larger than that want a vector index (a later backend).

Vectors are stored as little-endian float32 bytes (1.5 KiB for 384 dimensions).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from podium.gateway.cache import StoredEntry, Vector, most_similar
from podium.store.sql import sqlite_wal

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")


def pack_vector(vector: Vector) -> bytes:
    """Little-endian float32 bytes of a vector."""
    if sys.byteorder == "big":  # pragma: no cover - no big-endian CI machine
        vector = array("f", vector)
        vector.byteswap()
    return vector.tobytes()


def unpack_vector(data: bytes) -> Vector:
    """The inverse of :func:`pack_vector`."""
    vector = array("f")
    vector.frombytes(data)
    if sys.byteorder == "big":  # pragma: no cover
        vector.byteswap()
    return vector


# -- memory ---------------------------------------------------------------------------------------


class MemoryCacheBackend:
    """An in-process LRU of at most ``max_entries`` entries (all namespaces together).

    Reads (exact and semantic hits) refresh an entry's recency; when full, the least recently
    used entry is evicted. For one process only: replicas do not share it.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], StoredEntry] = OrderedDict()
        self._buckets: dict[tuple[str, str], dict[str, None]] = {}
        self.evictions = 0
        """Entries evicted to respect ``max_entries`` (expired ones are not counted)."""

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, namespace: str, key: str) -> None:
        entry = self._entries.pop((namespace, key), None)
        if entry is not None and entry.bucket is not None:
            members = self._buckets.get((namespace, entry.bucket))
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._buckets[(namespace, entry.bucket)]

    async def get(self, namespace: str, key: str, now: float) -> StoredEntry | None:
        entry = self._entries.get((namespace, key))
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(namespace, key)
            return None
        self._entries.move_to_end((namespace, key))
        return entry

    async def put(self, namespace: str, entry: StoredEntry, now: float) -> None:
        self._drop(namespace, entry.key)
        self._entries[(namespace, entry.key)] = entry
        if entry.bucket is not None and entry.vector is not None:
            self._buckets.setdefault((namespace, entry.bucket), {})[entry.key] = None
        while len(self._entries) > self.max_entries:
            (old_namespace, old_key), _ = next(iter(self._entries.items()))
            self._drop(old_namespace, old_key)
            self.evictions += 1

    async def nearest(
        self, namespace: str, bucket: str, vector: Vector, threshold: float, now: float
    ) -> tuple[StoredEntry, float] | None:
        live: list[StoredEntry] = []
        expired: list[str] = []
        for key in self._buckets.get((namespace, bucket), {}):
            entry = self._entries[(namespace, key)]
            if entry.expires_at <= now:
                expired.append(key)
            elif entry.vector is not None:
                live.append(entry)
        for key in expired:
            self._drop(namespace, key)
        found = most_similar(vector, [e.vector for e in live if e.vector is not None])
        if found is None or found[1] < threshold:
            return None
        best = live[found[0]]
        self._entries.move_to_end((namespace, best.key))
        return best, found[1]

    async def clear(self, namespace: str) -> None:
        for ns, key in [k for k in self._entries if k[0] == namespace]:
            self._drop(ns, key)

    async def purge_namespace(self, namespace: str, before: float) -> int:
        old = [
            key
            for (ns, key), entry in self._entries.items()
            if ns == namespace and entry.created_at < before
        ]
        for key in old:
            self._drop(namespace, key)
        return len(old)

    async def namespaces(self) -> list[str]:
        return sorted({ns for ns, _ in self._entries})

    async def close(self) -> None:
        self._entries.clear()
        self._buckets.clear()


# -- SQLite ---------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS podium_cache (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    bucket TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    payload TEXT NOT NULL,
    vector BLOB,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS podium_cache_bucket ON podium_cache (namespace, bucket, expires_at);
CREATE INDEX IF NOT EXISTS podium_cache_expiry ON podium_cache (expires_at);
"""


class SQLiteCacheBackend:
    """A cache in its own small SQLite file (WAL), shared by the processes of one machine.

    The table is created if missing. Entries leave by TTL only: expired rows are deleted every
    ``purge_every`` writes (and by :meth:`purge`); there is no size bound. All SQLite work runs
    on one worker thread, never on the event loop. ``synchronous=NORMAL``: a cache may lose its
    last writes on a power cut, never its consistency.
    """

    def __init__(self, path: str | Path, *, purge_every: int = 1000) -> None:
        self.path = Path(path)
        self.purge_every = purge_every
        self._writes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="podium-cache-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            sqlite_wal(conn.execute, 5.0)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._db()))

    @staticmethod
    def _entry(row: tuple[str, str | None, float, float, str, bytes | None]) -> StoredEntry:
        key, bucket, created_at, expires_at, payload, blob = row
        vector = unpack_vector(blob) if blob is not None else None
        return StoredEntry(key, payload, created_at, expires_at, bucket, vector)

    async def get(self, namespace: str, key: str, now: float) -> StoredEntry | None:
        def read(db: sqlite3.Connection) -> StoredEntry | None:
            row = db.execute(
                "SELECT key, bucket, created_at, expires_at, payload, vector FROM podium_cache"
                " WHERE namespace = ? AND key = ? AND expires_at > ?",
                (namespace, key, now),
            ).fetchone()
            return None if row is None else self._entry(row)

        return await self._run(read)

    async def put(self, namespace: str, entry: StoredEntry, now: float) -> None:
        self._writes += 1
        purge = self.purge_every > 0 and self._writes % self.purge_every == 0
        blob = pack_vector(entry.vector) if entry.vector is not None else None
        bucket = entry.bucket if blob is not None else None

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO podium_cache"
                " (namespace, key, bucket, created_at, expires_at, payload, vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    namespace,
                    entry.key,
                    bucket,
                    entry.created_at,
                    entry.expires_at,
                    entry.payload,
                    blob,
                ),
            )
            if purge:
                db.execute("DELETE FROM podium_cache WHERE expires_at <= ?", (now,))

        await self._run(write)

    async def nearest(
        self, namespace: str, bucket: str, vector: Vector, threshold: float, now: float
    ) -> tuple[StoredEntry, float] | None:
        def search(db: sqlite3.Connection) -> tuple[StoredEntry, float] | None:
            rows = db.execute(
                "SELECT key, vector FROM podium_cache"
                " WHERE namespace = ? AND bucket = ? AND expires_at > ?",
                (namespace, bucket, now),
            )
            keys, vectors = [], []
            for key, blob in rows:
                keys.append(key)
                vectors.append(unpack_vector(blob))
            found = most_similar(vector, vectors)
            if found is None or found[1] < threshold:
                return None
            best_key, best_score = keys[found[0]], found[1]
            row = db.execute(
                "SELECT key, bucket, created_at, expires_at, payload, vector FROM podium_cache"
                " WHERE namespace = ? AND key = ?",
                (namespace, best_key),
            ).fetchone()
            return None if row is None else (self._entry(row), best_score)

        return await self._run(search)

    async def purge(self, now: float) -> int:
        """Delete expired entries now; how many were deleted."""
        return await self._run(
            lambda db: db.execute("DELETE FROM podium_cache WHERE expires_at <= ?", (now,)).rowcount
        )

    async def clear(self, namespace: str) -> None:
        await self._run(
            lambda db: db.execute("DELETE FROM podium_cache WHERE namespace = ?", (namespace,))
        )

    async def purge_namespace(self, namespace: str, before: float) -> int:
        return await self._run(
            lambda db: (
                db.execute(
                    "DELETE FROM podium_cache WHERE namespace = ? AND created_at < ?",
                    (namespace, before),
                ).rowcount
            )
        )

    async def namespaces(self) -> list[str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT DISTINCT namespace FROM podium_cache ORDER BY namespace"
            ).fetchall()
        )
        return [str(row[0]) for row in rows]

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._conn = None

        if self._conn is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)


# -- Redis ----------------------------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCacheBackend:
    """A cache shared by every gateway replica, in Redis.

    Each entry is a hash ``{prefix}{namespace}:e:{key}`` (payload, times, bucket, vector as
    float32 bytes) with a Redis TTL; each semantic bucket is a sorted set
    ``{prefix}{namespace}:b:{bucket}`` of entry keys scored by expiry, scanned by brute force.
    Expiry is also checked against the cache clock's ``now`` on every read, so the cache's clock
    decides, and Redis's own TTL reclaims the memory. Key names end in fixed-length hashes, so
    no namespace's keys can be mistaken for another's.

    Args:
        client: A ``redis.asyncio.Redis`` (``decode_responses=False``).
        prefix: Prepended to every key.
        owns_client: Close the client on :meth:`close`.
    """

    def __init__(
        self, client: Redis, *, prefix: str = "podium:cache:", owns_client: bool = False
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.owns_client = owns_client

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "podium:cache:", max_connections: int = 50
    ) -> RedisCacheBackend:
        """A backend with its own client (``redis://host:port/db``) whose pool of
        ``max_connections`` makes bursts queue for a connection rather than fail."""
        from redis.asyncio import BlockingConnectionPool, Redis

        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections)
        return cls(Redis.from_pool(pool), prefix=prefix, owns_client=True)

    def _entry_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}{namespace}:e:{key}"

    def _bucket_key(self, namespace: str, bucket: str) -> str:
        return f"{self.prefix}{namespace}:b:{bucket}"

    @staticmethod
    def _decode(key: str, fields: dict[bytes, bytes]) -> StoredEntry:
        blob = fields.get(b"v")
        bucket = fields.get(b"b")
        return StoredEntry(
            key=key,
            payload=fields[b"p"].decode(),
            created_at=float(fields[b"c"]),
            expires_at=float(fields[b"x"]),
            bucket=bucket.decode() if bucket is not None else None,
            vector=unpack_vector(blob) if blob is not None else None,
        )

    async def get(self, namespace: str, key: str, now: float) -> StoredEntry | None:
        raw = await self.client.hgetall(self._entry_key(namespace, key))
        fields = cast(dict[bytes, bytes], raw)  # the client does not decode responses
        if not fields or float(fields[b"x"]) <= now:
            return None
        return self._decode(key, fields)

    async def put(self, namespace: str, entry: StoredEntry, now: float) -> None:
        ttl_ms = max(1, math.ceil((entry.expires_at - now) * 1000))
        name = self._entry_key(namespace, entry.key)
        mapping: dict[str, str | bytes] = {
            "p": entry.payload,
            "c": repr(entry.created_at),
            "x": repr(entry.expires_at),
        }
        if entry.bucket is not None and entry.vector is not None:
            mapping["b"] = entry.bucket
            mapping["v"] = pack_vector(entry.vector)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(name)
            pipe.hset(name, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(name, ttl_ms)
            if "v" in mapping:
                assert entry.bucket is not None
                bucket = self._bucket_key(namespace, entry.bucket)
                pipe.zadd(bucket, {entry.key: entry.expires_at})
                pipe.pexpire(bucket, ttl_ms, nx=True)  # a new set: give it a TTL
                pipe.pexpire(bucket, ttl_ms, gt=True)  # else only ever lengthen it
            await pipe.execute()

    async def nearest(
        self, namespace: str, bucket: str, vector: Vector, threshold: float, now: float
    ) -> tuple[StoredEntry, float] | None:
        bucket_key = self._bucket_key(namespace, bucket)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(bucket_key, "-inf", now)
            pipe.zrangebyscore(bucket_key, f"({now!r}", "+inf")
            _, members = await pipe.execute()
        keys = [m.decode() for m in members]
        live: list[str] = []
        vectors: list[Vector] = []
        for start in range(0, len(keys), 256):
            chunk = keys[start : start + 256]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hmget(self._entry_key(namespace, key), ["v", "x", "b"])
                rows = await pipe.execute()
            for key, (blob, expires, entry_bucket) in zip(chunk, rows, strict=True):
                if blob is None or float(expires) <= now or entry_bucket != bucket.encode():
                    continue
                live.append(key)
                vectors.append(unpack_vector(blob))
        found = most_similar(vector, vectors)
        if found is None or found[1] < threshold:
            return None
        best_key, best_score = live[found[0]], found[1]
        entry = await self.get(namespace, best_key, now)
        return None if entry is None else (entry, best_score)

    async def clear(self, namespace: str) -> None:
        pattern = _glob_escape(f"{self.prefix}{namespace}") + ":[eb]:" + "?" * 64
        batch: list[bytes] = []
        async for name in self.client.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) >= 500:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    async def _entry_names(self, namespace: str | None) -> AsyncIterator[list[bytes]]:
        """Entry hash names (of one namespace, or all), in batches of up to 500."""
        if namespace is None:
            head = _glob_escape(self.prefix) + "*"
        else:
            head = _glob_escape(f"{self.prefix}{namespace}")
        batch: list[bytes] = []
        async for name in self.client.scan_iter(match=head + ":e:" + "?" * 64, count=500):
            batch.append(name)
            if len(batch) >= 500:
                yield batch
                batch = []
        if batch:
            yield batch

    async def purge_namespace(self, namespace: str, before: float) -> int:
        """Scans the namespace's entries (``SCAN``, then their creation times in pipelines):
        a retention job's pace, not a request's."""
        purged = 0
        async for names in self._entry_names(namespace):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(name, ["c", "b"])
                found = await pipe.execute()
            old = [
                (name, bucket)
                for name, (created, bucket) in zip(names, found, strict=True)
                if created is not None and float(created) < before
            ]
            if not old:
                continue
            async with self.client.pipeline(transaction=False) as pipe:
                for name, bucket in old:
                    pipe.unlink(name)
                    if bucket is not None:  # the entry's key: the name's last 64 characters
                        pipe.zrem(self._bucket_key(namespace, bucket.decode()), name[-64:])
                results = await pipe.execute()
            # UNLINK answers 1 per entry removed (0: it expired meanwhile); a ZREM follows
            # each entry that had a bucket
            at = 0
            for _, bucket in old:
                purged += int(results[at])
                at += 1 if bucket is None else 2
        return purged

    async def namespaces(self) -> list[str]:
        found: set[str] = set()
        start, end = len(self.prefix), len(":e:") + 64
        async for names in self._entry_names(None):
            found.update(name.decode()[start:-end] for name in names)
        return sorted(found)

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()
