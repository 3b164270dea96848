"""The tamper-evident audit trail: an append-only hash chain over canonical JSON, with payloads
encrypted per record and checkpoints signed with Ed25519.

A record is a clear-text *header* (sequence number, time, kind, actor, team and a few
ids: models, cost, policy) and an encrypted *payload* (the content: prompt, response…)::

    header_text  = canonical_json({"v": 1, "seq", "ts", "kind", "actor", "team", "fields"})
    payload      = nonce || AES-256-GCM(data_key, json(content),
                                        aad="[" kind "," actor "," team "," fields "]")
    record_hash  = SHA-256(header_text || "\n" || SHA-256(payload))   (SHA-256 in hex)
    chain_hash   = SHA-256(prev_chain_hash || record_hash)       (hex strings; genesis: 64 zeros)

*Canonical* means sorted keys, no whitespace, UTF-8; the ``fields`` object is encoded by orjson
(sorted keys too; a float's shortest round-trip digits may be spelled differently from Python's
``json``, e.g. ``1e16`` for ``1e+16``). Nothing ever re-encodes a stored header: hashes are over
the stored text, and the AAD is assembled from the JSON texts of kind, actor and team and the
``fields`` text as it stands in the stored header.

The data key is wrapped (AES-KW) by the master key, whose id is stored beside it. The chain
commits to hashes only, so deleting a data key (crypto-shredding) leaves every hash intact and
the chain still verifies; :meth:`AuditLog.rotate` re-wraps data keys under a new master key.

Every ``checkpoint_every`` records, and on demand, a checkpoint signs ``(seq, chain_hash)``.
:meth:`AuditLog.verify` walks the chain and names the first record that does not add up: an
edited field, a missing (deleted) record, a swapped pair, or a tail removed behind a checkpoint.
A chain rewritten *consistently* (every later hash recomputed) is caught at the next checkpoint,
since the forger cannot sign; keep exported checkpoints elsewhere
(:meth:`AuditLog.export_checkpoints`) so that removing checkpoints with the tail is caught too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine, Row, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from podium.finops.ledger import SQLRunner, open_engine
from podium.governance.audit_rows import (
    CHECKPOINT_COLUMNS,
    PAGE,
    PG_RECORD_TYPES,
    RECORD_COLUMNS,
    Prepared,
    Sealed,
    aad_of,
    checkpoint_of,
    insert_many,
    prepare_entries,
    query_records,
    record_fields,
    record_of,
    seal_entries,
)
from podium.governance.chain import (
    FORMAT_VERSION,
    GENESIS,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    VerifyResult,
    _Memo,
    canonical_json,
)
from podium.governance.keys import (
    AuditKeyError,
    MasterKey,
    PayloadShredded,
    SigningKey,
    VerifyKey,
    unseal,
)
from podium.governance.verify import verify_chain
from podium.store import schema
from podium.types import JSON, Clock

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000
"""Default number of records between automatic checkpoints."""
PG_AUDIT_LOCK_KEY = 0x706F6469756D_0A
"""PostgreSQL advisory lock serialising audit appends across processes."""
_MAX_RETRIES = 5
_SEAL_SLICE = 100
"""Records sealed between two yields to the event loop (~2.5 ms of work)."""
APPEND_NOW_MAX = _SEAL_SLICE
"""Most records :meth:`AuditLog.append_now` takes (one slice: it never yields to the loop)."""


class Settles(Protocol):
    """What :meth:`AuditLog.attach` takes: something holding records not yet appended."""

    async def flush(self) -> None: ...


_R = schema.audit_records
_SHOWN = [c for c in _R.c if c.name != "wrapped_key"]
"""A record's columns as read back (the wrapped data key only where it is unwrapped)."""
_C = schema.audit_checkpoints
_J = schema.audit_journal_moves


class AuditLog:
    """The audit trail in a SQL store (SQLite or PostgreSQL).

    Appends are serialised: an in-process lock, then one transaction holding the database's
    write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), which reads the last
    record and inserts the next; the primary key on ``seq`` refuses a fork, and a writer that
    loses such a race retries.

    Args:
        engine: An engine on a database migrated to revision ``0003`` or later.
        clock: Where record and checkpoint times come from.
        master: The master key; needed to append and to decrypt, not to verify.
        signer: The checkpoint signing key; without one no checkpoint is written.
        verify_keys: Further public keys whose checkpoints are accepted (former signers).
        checkpoint_every: Sign a checkpoint at every multiple of this many records.
        offload: Run database work in a worker thread (default: PostgreSQL yes, SQLite no).
        owned: Dispose of the engine on :meth:`close`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        master: MasterKey | None = None,
        signer: SigningKey | None = None,
        verify_keys: Sequence[VerifyKey] = (),
        checkpoint_every: int = CHECKPOINT_EVERY,
        offload: bool | None = None,
        owned: bool = False,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self._db = SQLRunner(engine, offload=offload, owned=owned)
        self._clock = clock
        self._master = master
        self._signer = signer
        self._verify_keys = {k.key_id: k for k in verify_keys}
        if signer is not None:
            self._verify_keys[signer.key_id] = signer.public
        self._every = checkpoint_every
        self._lock = asyncio.Lock()
        self._held: Any = None
        """On SQLite, the pool connection appends keep between transactions (checking one out
        and back cost ~0.1 ms a call); dropped on any error."""
        self._head: tuple[int, str] | None = None
        """On SQLite, the last record this log appended, ``(seq, chain_hash)``: the next append
        skips reading it back. Another writer's append makes it stale, and the primary key on
        ``seq`` then refuses ours (a lost race, retried after a fresh read); dropped on any
        error."""
        self._texts: _Memo[str] = _Memo(canonical_json)
        """Canonical JSON texts of kinds, actors and teams (they repeat across records)."""
        self._journal: Settles | None = None
        """The audit journal feeding this log, if any: flushed before every read, so that a
        record journaled in this process is visible to it (see :meth:`attach`)."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock,
        master: MasterKey | None = None,
        signer: SigningKey | None = None,
        verify_keys: Sequence[VerifyKey] = (),
        checkpoint_every: int = CHECKPOINT_EVERY,
        sqlite_synchronous: str = "NORMAL",
    ) -> AuditLog:
        """Open (and migrate) the store at ``url``; the log owns its engine."""
        engine = await open_engine(url, sqlite_synchronous=sqlite_synchronous)
        return cls(
            engine,
            clock=clock,
            master=master,
            signer=signer,
            verify_keys=verify_keys,
            checkpoint_every=checkpoint_every,
            owned=True,
        )

    @property
    def master_key_id(self) -> str | None:
        return None if self._master is None else self._master.key_id

    @property
    def master(self) -> MasterKey | None:
        return self._master

    def attach(self, journal: Settles | None) -> None:
        """Flush ``journal`` before every read and every checkpoint, shred and rotation, so
        they see every record journaled in this process (``None``: detach)."""
        self._journal = journal

    async def _settle(self) -> None:
        if self._journal is not None:
            await self._journal.flush()

    def __repr__(self) -> str:
        return (
            f"AuditLog(dialect={self._db.dialect!r}, master_key_id={self.master_key_id!r}, "
            f"signer={None if self._signer is None else self._signer.key_id!r})"
        )

    async def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()
        await self._db.close()

    # -- writing ----------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> AuditRecord:
        """Append one record (and a checkpoint when its ``seq`` is due)."""
        return (await self.append_many([entry]))[0]

    async def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append records in one transaction, in order."""
        return await self.append_prepared(self.prepare(entries))

    async def append_prepared(
        self,
        prepared: Sequence[Prepared],
        *,
        journal: str | None = None,
        forget: Sequence[str] = (),
    ) -> list[AuditRecord]:
        """Append prepared entries in one transaction, in order.

        Args:
            prepared: From :meth:`prepare`.
            journal: The audit journal file they come from: its id is stored in the same
                transaction (``audit_journal_moves``), so that a crash between this commit and
                the file's removal never appends them twice.
            forget: Ids of journal files removed since: their rows go, in the same transaction.
        """
        # Encrypt outside the lock: only the chain needs serialising. In slices, yielding to the
        # event loop between them: ~25 µs a record of JSON and AES would stall the loop for
        # ~25 ms per thousand records. (A worker thread measured no faster: the GIL.)
        sealed: list[Sealed] = []
        for start in range(0, len(prepared), _SEAL_SLICE):
            if start:
                await asyncio.sleep(0)
            sealed += self._seal_all(prepared[start : start + _SEAL_SLICE])
        async with self._lock:
            return await self._db.run(self._append_sync, prepared, sealed, journal, forget)

    @property
    def appends_now(self) -> bool:
        """Whether :meth:`append_now` may be called: the store runs on the event loop's thread
        (SQLite), it is open, and no other append, checkpoint or key operation holds the log."""
        return not (self._db.offloaded or self._db.closed or self._lock.locked())

    def append_now(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """:meth:`append_many` without yielding to the event loop, for a few records while
        :attr:`appends_now` holds: nothing can interleave, so no caller can be cancelled
        between the records' encryption and their commit."""
        if not self.appends_now:
            raise RuntimeError("append_now needs an idle log on the event loop's thread")
        if len(entries) > APPEND_NOW_MAX:
            raise ValueError(f"append_now takes at most {APPEND_NOW_MAX} records")
        prepared = self.prepare(entries)
        return self._append_sync(prepared, self._seal_all(prepared), None, ())

    def prepare(self, entries: Sequence[AuditEntry], ts: float | None = None) -> list[Prepared]:
        """Check and encode entries for an append, all recorded at ``ts`` (default: now).

        Raises:
            AuditKeyError: No master key (nothing could be sealed).
            ValueError: An invalid kind, no actor, or fields or a payload that is not JSON.
        """
        if self._master is None:
            raise AuditKeyError(
                "no audit master key: set PODIUM_AUDIT_MASTER_KEY (base64 of 32 bytes) "
                "or PODIUM_AUDIT_MASTER_KEY_FILE"
            )
        return prepare_entries(entries, self._clock.now() if ts is None else ts)

    def _seal_all(self, prepared: Sequence[Prepared]) -> list[Sealed]:
        assert self._master is not None
        return seal_entries(prepared, self._master, self._texts)

    def _append_sync(
        self,
        prepared: Sequence[Prepared],
        sealed: Sequence[Sealed],
        journal: str | None,
        forget: Sequence[str],
    ) -> list[AuditRecord]:
        """One transaction on the raw DBAPI connection (SQLAlchemy's transaction, statement
        compilation and result rows cost ~3x the SQL of a one-record append on SQLite); a
        writer that lost a race for ``seq`` (another process appended first) tries again."""
        dbapi = self._db.engine.dialect.loaded_dbapi
        hold = self._db.dialect == "sqlite"
        for attempt in range(_MAX_RETRIES):
            connection = None
            head, self._head = self._head, None
            try:
                connection = self._held or self._db.engine.raw_connection()
                self._held = None
                raw = connection.dbapi_connection
                assert raw is not None
                try:
                    out = self._append_in(raw, prepared, sealed, head)
                    if journal is not None or forget:
                        self._journal_rows(raw, journal, forget)
                    raw.commit()
                except BaseException:
                    raw.rollback()
                    raise
                if hold:
                    self._held, connection = connection, None
                    self._head = (out[-1].seq, out[-1].chain_hash) if out else head
                return out
            except dbapi.IntegrityError as exc:
                if attempt == _MAX_RETRIES - 1:
                    raise self._db.store_error(exc) from exc
            except dbapi.Error as exc:
                if connection is not None:
                    connection.invalidate()  # it may be broken: never reused
                raise self._db.store_error(exc) from exc
            except SQLAlchemyError as exc:  # checking a connection out of the pool
                raise self._db.store_error(exc) from exc
            finally:
                if connection is not None:
                    connection.close()  # back to the pool (a no-op once invalidated)
        raise AssertionError("unreachable")  # pragma: no cover

    def _journal_rows(self, raw: Any, journal: str | None, forget: Sequence[str]) -> None:
        mark = "%s" if self._db.dialect == "postgresql" else "?"
        cursor = raw.cursor()
        try:
            if forget:
                cursor.executemany(
                    f"DELETE FROM {_J.name} WHERE journal_id = {mark}", [(i,) for i in forget]
                )
            if journal is not None:
                cursor.execute(
                    f"INSERT INTO {_J.name} (journal_id, ts) VALUES ({mark}, {mark})",
                    (journal, self._clock.now()),
                )
        finally:
            cursor.close()

    async def moved(self, journals: Sequence[str]) -> set[str]:
        """Which of these audit journal files were already moved into the chain."""
        if not journals:
            return set()
        return await self._db.run(self._moved_sync, list(journals))

    def _moved_sync(self, journals: list[str]) -> set[str]:
        query = select(_J.c.journal_id).where(_J.c.journal_id.in_(journals))
        with self._db.errors(), self._db.engine.connect() as conn:
            return {str(row[0]) for row in conn.execute(query)}

    async def forget(self, journals: Sequence[str]) -> None:
        """Drop the rows of removed audit journal files (see :meth:`append_prepared`)."""
        if journals:
            async with self._lock:
                await self._db.run(self._forget_sync, list(journals))

    def _forget_sync(self, journals: list[str]) -> None:
        with self._db.transaction() as conn:
            conn.execute(_J.delete().where(_J.c.journal_id.in_(journals)))

    def _append_in(
        self,
        raw: Any,
        prepared: Sequence[Prepared],
        sealed: Sequence[Sealed],
        head: tuple[int, str] | None,
    ) -> list[AuditRecord]:
        """The inserts of one append, after ``head`` (or the last record, read under the write
        lock, when ``head`` is unknown). A stale ``head`` makes the first insert collide with
        the record already at its ``seq``: ``seq`` has no gaps, so a later append by anyone
        always sits there."""
        assert self._master is not None
        postgres = self._db.dialect == "postgresql"
        mark = "%s" if postgres else "?"
        if head is None:
            cursor = raw.cursor()
            try:
                if postgres:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (PG_AUDIT_LOCK_KEY,))
                else:  # the write lock now: the read below must see the last committed record
                    cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(f"SELECT seq, chain_hash FROM {_R.name} ORDER BY seq DESC LIMIT 1")
                last = cursor.fetchone()
            finally:
                cursor.close()
            head = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
        seq, prev = head
        rows: list[tuple[Any, ...]] = []
        out: list[AuditRecord] = []
        checkpoints: list[tuple[Any, ...]] = []
        ts_texts: dict[float, str] = {}
        key_id = self._master.key_id
        sha = hashlib.sha256
        every = self._every if self._signer is not None else 0
        for entry, sealed_entry in zip(prepared, sealed, strict=True):
            seq += 1
            payload_hash = sealed_entry.payload_hash
            ts = entry.ts
            ts_text = ts_texts.get(ts)
            if ts_text is None:
                ts_text = ts_texts[ts] = canonical_json(ts)
            # header_text(), inlined: canonical JSON with sorted keys, from encoded parts
            header = (
                f'{{"actor":{sealed_entry.actor_text},"fields":{entry.fields_text},'
                f'"kind":{sealed_entry.kind_text},"seq":{seq},"team":{sealed_entry.team_text},'
                f'"ts":{ts_text},"v":{FORMAT_VERSION}}}'
            )
            rec = sha((header + "\n" + payload_hash).encode()).hexdigest()  # record_hash()
            link = sha((prev + rec).encode()).hexdigest()  # chain_hash()
            rows.append(
                (
                    seq,
                    ts,
                    entry.kind,
                    entry.actor,
                    entry.team,
                    header,
                    sealed_entry.payload,
                    payload_hash,
                    rec,
                    prev,
                    link,
                    key_id,
                    sealed_entry.wrapped,
                )
            )  # fmt: skip (in RECORD_COLUMNS order)
            out.append(
                AuditRecord(
                    seq, ts, entry.kind, entry.actor, entry.team, record_fields(entry),
                    payload_hash, rec, prev, link, key_id,
                )
            )  # fmt: skip
            if every and seq % every == 0:
                signed = self._sign(seq, link, ts)
                checkpoints.append(tuple(signed[name] for name in CHECKPOINT_COLUMNS))
            prev = link
        insert_many(raw, mark, _R.name, RECORD_COLUMNS, rows, PG_RECORD_TYPES)
        if checkpoints:
            insert_many(raw, mark, _C.name, CHECKPOINT_COLUMNS, checkpoints, ())
        return out

    def _sign(self, seq: int, chain: str, ts: float) -> dict[str, Any]:
        assert self._signer is not None
        return {
            "seq": seq,
            "chain_hash": chain,
            "ts": ts,
            "signer_key_id": self._signer.key_id,
            "signature": self._signer.sign(Checkpoint.message(seq, chain)),
        }

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's current head now (``None`` on an empty log)."""
        if self._signer is None:
            raise AuditKeyError(
                "no audit signing key: set PODIUM_AUDIT_SIGNING_KEY (base64 of a 32-byte "
                "Ed25519 seed) or PODIUM_AUDIT_SIGNING_KEY_FILE"
            )
        await self._settle()
        async with self._lock:
            return await self._db.run(self._checkpoint_sync)

    def _checkpoint_sync(self) -> Checkpoint | None:
        with self._db.transaction() as conn:
            last = conn.execute(
                select(_R.c.seq, _R.c.chain_hash).order_by(_R.c.seq.desc()).limit(1)
            ).first()
            if last is None:
                return None
            existing = conn.execute(select(_C).where(_C.c.seq == last.seq)).first()
            if existing is not None:
                return checkpoint_of(existing)
            row = self._sign(int(last.seq), str(last.chain_hash), self._clock.now())
            conn.execute(insert(_C), row)
            return Checkpoint(**row)

    async def shred(self, seqs: Sequence[int]) -> int:
        """Destroy the data keys of these records (their payload becomes unreadable; the chain
        still verifies). Returns how many keys were destroyed."""
        await self._settle()
        return await self._db.run(self._shred_sync, list(seqs))

    def _shred_sync(self, seqs: list[int]) -> int:
        """On SQLite, with ``secure_delete`` on for the update (the freed bytes of the old rows
        are zeroed, not left in the page's free space), then a ``TRUNCATE`` checkpoint, which
        copies the zeroed pages into the database file and empties the write-ahead log that
        still held the old ones. It never waits: a reader holding an old snapshot makes it give
        up, which is logged; the background checkpoints then copy the pages, and the log's old
        frames are overwritten as it is reused."""
        sqlite = self._db.dialect == "sqlite"
        with self._db.transaction() as conn:
            if sqlite:
                was = conn.exec_driver_sql("PRAGMA secure_delete").scalar_one()
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            try:
                count = conn.execute(
                    update(_R)
                    .where(_R.c.seq.in_(seqs), _R.c.wrapped_key.is_not(None))
                    .values(master_key_id=None, wrapped_key=None)
                ).rowcount
            finally:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA secure_delete = {int(was)}")
        if sqlite and count:
            with self._db.errors(), self._db.engine.connect() as conn:
                # never wait for readers (this runs on the event loop): give up, and say so
                waits = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
                conn.exec_driver_sql("PRAGMA busy_timeout = 0")
                try:
                    busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(waits)}")
            if busy is not None and busy[0]:
                log.warning(
                    "shredded %d audit data keys; the write-ahead log still holds their old "
                    "pages until a checkpoint can finish (a reader holds an old snapshot)",
                    count,
                )
        return count

    async def rotate(self, new_master: MasterKey) -> int:
        """Re-wrap every data key held by the current master key under ``new_master``, in one
        transaction, then use ``new_master``. Returns how many keys were re-wrapped."""
        if self._master is None:
            raise AuditKeyError("rotation needs the current audit master key")
        await self._settle()
        async with self._lock:
            count = await self._db.run(self._rotate_sync, self._master, new_master)
            self._master = new_master
            return count

    def _rotate_sync(self, old: MasterKey, new: MasterKey) -> int:
        count = 0
        with self._db.transaction() as conn:
            after = 0
            while True:
                page = conn.execute(
                    select(_R.c.seq, _R.c.wrapped_key)
                    .where(_R.c.master_key_id == old.key_id, _R.c.seq > after)
                    .order_by(_R.c.seq)
                    .limit(PAGE)
                ).all()
                if not page:
                    return count
                for row in page:
                    rewrapped = new.wrap(old.unwrap(bytes(row.wrapped_key)))
                    conn.execute(
                        update(_R)
                        .where(_R.c.seq == row.seq)
                        .values(master_key_id=new.key_id, wrapped_key=rewrapped)
                    )
                count += len(page)
                after = int(page[-1].seq)

    # -- reading ----------------------------------------------------------------------------------

    async def records(self, *, after: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records with ``seq > after``, oldest first."""
        await self._settle()
        return await self._db.run(self._records_sync, after, limit)

    async def tail(self, limit: int) -> list[AuditRecord]:
        """The newest ``limit`` records, oldest first."""
        await self._settle()
        last = await self._db.run(self._last_seq_sync)
        return await self.records(after=max(0, last - limit), limit=limit)

    def _last_seq_sync(self) -> int:
        with self._db.errors(), self._db.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(_R.c.seq), 0))).scalar_one())

    def _records_sync(self, after: int, limit: int | None) -> list[AuditRecord]:
        query = select(*_SHOWN).where(_R.c.seq > after).order_by(_R.c.seq).limit(limit)
        with self._db.errors(), self._db.engine.connect() as conn:
            return [record_of(row) for row in conn.execute(query)]

    async def query(
        self,
        *,
        kind: str | None = None,
        team: str | None = None,
        fields: Mapping[str, Any] | None = None,
        after: int = 0,
        before: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
        where: Callable[[AuditRecord], bool] | None = None,
    ) -> list[AuditRecord]:
        """Records matching every filter given, by ``seq`` (oldest first, or newest first).

        Args:
            kind: Only records of this kind.
            team: Only records of this team.
            fields: Only records whose header fields hold exactly these values (top-level
                fields: ``{"request_id": "req_…"}``, ``{"run_id": …, "step": …}``). The
                database pre-selects headers containing the canonical ``"name":value`` text, so
                no JSON index is needed; each candidate is then checked exactly.
            after: Only records with ``seq > after`` (a cursor: the last ``seq`` seen).
            before: Only records with ``seq < before``.
            limit: At most this many records.
            newest_first: Walk from the newest record back.
            where: A further test of each record (e.g. a tenant's scope), applied before
                ``limit`` counts it.
        """
        if limit <= 0:
            return []
        await self._settle()
        return await self._db.run(
            self._query_sync,
            kind,
            team,
            dict(fields or {}),
            after,
            before,
            limit,
            newest_first,
            where,
        )

    def _query_sync(
        self,
        kind: str | None,
        team: str | None,
        fields: dict[str, Any],
        after: int,
        before: int | None,
        limit: int,
        newest_first: bool,
        test: Callable[[AuditRecord], bool] | None,
    ) -> list[AuditRecord]:
        with self._db.errors(), self._db.engine.connect() as conn:
            return query_records(
                conn, _SHOWN, kind, team, fields, after, before, limit, newest_first, test
            )

    async def readable_before(
        self, before: float, *, after: int = 0, limit: int = PAGE
    ) -> list[AuditRecord]:
        """Records older than ``before`` (their ``ts``) whose payload is still readable (data
        key not shredded), oldest first from ``seq > after``: what retention looks at."""
        await self._settle()
        return await self._db.run(self._readable_before_sync, before, after, limit)

    def _readable_before_sync(self, before: float, after: int, limit: int) -> list[AuditRecord]:
        query = (
            select(*_SHOWN)
            .where(_R.c.seq > after, _R.c.ts < before, _R.c.wrapped_key.is_not(None))
            .order_by(_R.c.seq)
            .limit(limit)
        )
        with self._db.errors(), self._db.engine.connect() as conn:
            return [record_of(row) for row in conn.execute(query)]

    async def decrypt(self, seq: int) -> JSON:
        """The content of record ``seq``.

        Raises:
            PayloadShredded: Its data key was destroyed.
            AuditKeyError: No master key, or not the one that wraps this record's data key.
            KeyError: No such record.
        """
        await self._settle()
        row = await self._db.run(self._payload_sync, seq)
        if row is None:
            raise KeyError(f"no audit record {seq}")
        if row.master_key_id is None:
            raise PayloadShredded(f"audit record {seq}'s payload was crypto-shredded")
        if self._master is None:
            raise AuditKeyError(f"audit record {seq} is encrypted and no master key is configured")
        if row.master_key_id != self._master.key_id:
            raise AuditKeyError(
                f"audit record {seq}'s data key is wrapped by master key {row.master_key_id}, "
                f"but the configured master key is {self._master.key_id}"
            )
        aad = aad_of(row.header)
        data_key = self._master.unwrap(bytes(row.wrapped_key))
        return json.loads(unseal(data_key, bytes(row.payload), aad))

    def _payload_sync(self, seq: int) -> Row[Any, Any, Any, Any] | None:
        query = select(_R.c.header, _R.c.payload, _R.c.master_key_id, _R.c.wrapped_key).where(
            _R.c.seq == seq
        )
        with self._db.errors(), self._db.engine.connect() as conn:
            return conn.execute(query).first()

    async def export_checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint, oldest first: keep them outside the database."""
        await self._settle()
        return await self._db.run(self._checkpoints_sync)

    def _checkpoints_sync(self) -> list[Checkpoint]:
        with self._db.errors(), self._db.engine.connect() as conn:
            return [checkpoint_of(r) for r in conn.execute(select(_C).order_by(_C.c.seq))]

    async def export(self) -> AsyncIterator[dict[str, Any]]:
        """Every record (payload as base64 ciphertext) then every checkpoint, as JSON-ready
        dicts tagged ``type``: enough for an offline verification."""
        await self._settle()
        after = 0
        while True:
            page = await self._db.run(self._raw_page_sync, after)
            if not page:
                break
            for row in page:
                yield {
                    "type": "record",
                    "seq": row.seq,
                    "header": row.header,
                    "payload": base64.b64encode(row.payload).decode(),
                    "payload_sha256": row.payload_sha256,
                    "record_hash": row.record_hash,
                    "prev_hash": row.prev_hash,
                    "chain_hash": row.chain_hash,
                }
            after = int(page[-1].seq)
        for cp in await self.export_checkpoints():
            yield {"type": "checkpoint", **cp.to_dict()}

    def _raw_page_sync(self, after: int) -> list[Row[Any]]:
        query = select(_R).where(_R.c.seq > after).order_by(_R.c.seq).limit(PAGE)
        with self._db.errors(), self._db.engine.connect() as conn:
            return list(conn.execute(query).all())

    # -- verifying (the walk itself: podium.governance.verify) ------------------------------------

    async def verify(
        self,
        trusted: Sequence[Checkpoint] = (),
        *,
        workers: int | None = None,
        blocking: bool = False,
    ) -> VerifyResult:
        """Walk the whole chain; check every record's hashes and links and every checkpoint's
        signature (stored ones and ``trusted`` ones exported earlier). Needs no master key.

        Args:
            trusted: Checkpoints exported earlier and kept outside the database.
            workers: Processes walking ``seq`` ranges side by side. ``None`` (the default):
                when the log holds more than
                :data:`~podium.governance.verify.PARALLEL_VERIFY_MIN` records, one per CPU,
                else one; ``1``: the single-process walk. An in-memory SQLite database, or a
                platform without ``fork``, is always walked in this process.
            blocking: Walk in the calling thread, blocking the event loop: for a command
                line tool with nothing else running, whose workers may then be forked at
                once rather than through a fork server
                (:func:`~podium.governance.verify.start_method`). Otherwise the walk runs in
                a worker thread, so a server goes on answering.

        Returns:
            The result, naming the first bad record when the log is not intact (the same
            verdict, whatever the number of workers).
        """
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        checkpoints = await self.export_checkpoints()
        every = [*checkpoints, *trusted]
        if isinstance(self._db.engine.pool, StaticPool):
            # one connection shared by every caller (an in-memory SQLite database): no thread
            # may use it while the event loop does
            return await self._db.run(self._verify_sync, every, 1)
        if blocking:
            return self._verify_sync(every, workers, quiet=True)
        # Otherwise in a worker thread, SQLite included: a walk takes seconds on a large log
        # and must not stall the event loop (an API server answering other requests).
        return await asyncio.to_thread(self._verify_sync, every, workers)

    def _verify_sync(
        self, checkpoints: Sequence[Checkpoint], workers: int | None, *, quiet: bool = False
    ) -> VerifyResult:
        return verify_chain(
            self._db, checkpoints, self._verify_keys, workers, self._last_seq_sync, quiet
        )
