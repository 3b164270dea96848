"""The audit trail's encodings and rows: a header's fields as JSON text, a payload's plaintext,
an entry checked and encoded (:func:`prepare_entries`) then encrypted (:func:`seal_entries`),
the AAD that binds a ciphertext to its record, the append's inserts on the raw DBAPI connection
(binary ``COPY`` on PostgreSQL), and stored rows read back as records and checkpoints.

Part of :class:`podium.governance.audit.AuditLog`'s implementation, split out of that module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from sqlalchemy import ColumnElement, Connection, Row, select

from podium.governance.chain import (
    COLUMNS,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    _Memo,
    canonical_json,
    plain_json,
)
from podium.governance.keys import DATA_KEY_BYTES, NONCE_BYTES, MasterKey, seal_with
from podium.store import schema
from podium.types import JSON

FIELDS_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def fields_json(header: Mapping[str, Any]) -> tuple[Any, str]:
    """A header's fields as canonical JSON text (sorted keys, ``Decimal`` as its fixed-point
    string), with the plain JSON values it holds when they had to be made (``None``: orjson
    made the text, and :func:`record_fields` reads them back from it, when needed).

    orjson first (~1 µs); it refuses, and hands to the stdlib path, what that path treats
    specially (non-``str`` keys, ``str`` and ``int`` subclasses, datetimes, dataclasses, ints
    beyond 64 bits). Its output is also rejected when it holds ``null``, which is how orjson
    writes a NaN or an infinity: :func:`plain_json` then either agrees (a real ``None``) or
    raises the precise error."""
    try:
        data = orjson.dumps(header, default=payload_default, option=FIELDS_OPTIONS)
    except TypeError:
        data = b"null"
    if b"null" not in data:
        return None, data.decode()
    fields = plain_json(header if type(header) is dict else dict(header))  # Decimal → str
    try:  # plain values now: only an int beyond 64 bits fails here
        return fields, orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return fields, canonical_json(fields)


def payload_default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    raise TypeError  # orjson gives up; the stdlib encoder then names the problem


def payload_json(payload: JSON) -> bytes:
    """A payload's plaintext: JSON by orjson (any valid JSON would do: it is never hashed or
    re-encoded), the stdlib encoder for what orjson refuses, which raises the precise error.
    Non-finite floats become ``null`` (the stdlib encoder would fail the whole call)."""
    try:
        return orjson.dumps(payload, default=payload_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return canonical_json(payload).encode()


def aad_of(header_text: str) -> bytes:
    """A record's AAD, ``[kind,actor,team,fields]``, from its stored header: the ``fields``
    text exactly as it stands there (whatever encoder wrote it). The header is
    ``{"actor":A,"fields":F,"kind":K,...}`` with sorted keys; ``,"`` never occurs inside a JSON
    string, so ``F`` starts after the first ``,"fields":`` and ends at the last ``,"kind":``."""
    header = json.loads(header_text)
    kind, actor, team = (canonical_json(header[name]) for name in ("kind", "actor", "team"))
    start = header_text.find(',"fields":') + len(',"fields":')
    fields = header_text[start : header_text.rfind(',"kind":')]
    try:
        exact = json.loads(fields) == header["fields"]
    except ValueError:
        exact = False
    if not exact:  # not the layout above: a header this code did not write
        fields = canonical_json(header["fields"])
    return f"[{kind},{actor},{team},{fields}]".encode()


RECORD_COLUMNS = (*COLUMNS, "master_key_id", "wrapped_key")
"""The columns an append inserts: the chained ones, then the wrapped data key (revision 0007)."""
PG_RECORD_TYPES = ("int8", "float8", *["text"] * 4, "bytea", *["text"] * 4, "text", "bytea")
"""The binary ``COPY`` types of :data:`RECORD_COLUMNS` (``text`` is also ``varchar``'s wire
format)."""
CHECKPOINT_COLUMNS = ("seq", "chain_hash", "ts", "signer_key_id", "signature")


_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Prepared(NamedTuple):
    """An entry encoded for the chain (its header's fields as canonical JSON, its payload's
    plaintext) with the time it was recorded, before its encryption: what an append seals, and
    what the audit journal (:mod:`podium.governance.journal`) keeps until the append."""

    kind: str
    actor: str
    team: str | None
    fields: Mapping[str, Any] | None
    """The fields as plain JSON values; ``None`` until needed (see :func:`record_fields`)."""
    fields_text: str
    payload: bytes
    ts: float


def record_fields(entry: Prepared) -> Mapping[str, Any]:
    """A prepared entry's fields as plain JSON values: an audit record's, read back from their
    text when :func:`fields_json` did not keep them. Only the records an append returns need
    them: a call's record, journaled and moved into the chain later, never parses them."""
    return entry.fields if entry.fields is not None else orjson.loads(entry.fields_text)


class Sealed(NamedTuple):
    """A prepared entry encrypted and encoded, before it gets its place in the chain."""

    wrapped: bytes
    payload: bytes
    payload_hash: str
    kind_text: str
    actor_text: str
    team_text: str


def insert_many(
    raw: Any,
    mark: str,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    pg_types: Sequence[str],
) -> None:
    """The append's inserts on the raw DBAPI connection, inside its transaction (plain types
    only): binary ``COPY`` on PostgreSQL when ``pg_types`` are given (one stream instead of a
    statement per row: ~3x faster here; binary, so the payloads travel as bytes, not hex text
    the server parses), ``executemany`` otherwise (``execute`` for one row)."""
    names = ", ".join(columns)  # names from our own schema, never input
    cursor = raw.cursor()
    try:
        if mark == "%s" and pg_types and len(rows) > 1:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(pg_types)
                for row in rows:
                    copy.write_row(row)
            return
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(columns))})"
        if len(rows) == 1:  # an unloaded call's append: no executemany machinery
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    finally:
        cursor.close()


def record_of(row: Row[Any]) -> AuditRecord:
    header = json.loads(row.header)
    return AuditRecord(
        seq=int(row.seq),
        ts=float(row.ts),
        kind=row.kind,
        actor=row.actor,
        team=row.team,
        fields=header.get("fields", {}),
        payload_sha256=row.payload_sha256,
        record_hash=row.record_hash,
        prev_hash=row.prev_hash,
        chain_hash=row.chain_hash,
        master_key_id=row.master_key_id,
    )


def checkpoint_of(row: Row[Any]) -> Checkpoint:
    return Checkpoint(
        seq=int(row.seq),
        chain_hash=row.chain_hash,
        ts=float(row.ts),
        signer_key_id=row.signer_key_id,
        signature=bytes(row.signature),
    )


def prepare_entries(entries: Sequence[AuditEntry], ts: float) -> list[Prepared]:
    """Check and encode entries for an append, all recorded at ``ts``.

    Raises:
        ValueError: An invalid kind, no actor, or fields or a payload that is not JSON.
    """
    out: list[Prepared] = []
    for entry in entries:
        if not _KIND.match(entry.kind):
            raise ValueError(f"invalid audit kind {entry.kind!r}: use a lower-case identifier")
        if not entry.actor:
            raise ValueError("an audit record needs an actor")
        fields, fields_text = fields_json(entry.header)
        out.append(
            Prepared(
                entry.kind,
                entry.actor,
                entry.team,
                fields,
                fields_text,
                payload_json(entry.payload),
                ts,
            )
        )
    return out


def seal_entries(
    prepared: Sequence[Prepared], master: MasterKey, texts: _Memo[str]
) -> list[Sealed]:
    """Encrypt prepared entries: one fresh random data key and nonce each (sliced from one
    ``os.urandom`` call), the key wrapped by ``master``; ``texts`` remembers the canonical
    JSON of kinds, actors and teams (they repeat across records)."""
    wrap = master.wrap
    sha = hashlib.sha256
    step = DATA_KEY_BYTES + NONCE_BYTES
    material = os.urandom(step * len(prepared))
    out: list[Sealed] = []
    for i, entry in enumerate(prepared):
        kind, actor, team = entry.kind, entry.actor, entry.team
        # memoised for strings only: as dict keys, 1 and True (say) would collide
        kind_text = texts[kind] if type(kind) is str else canonical_json(kind)
        actor_text = texts[actor] if type(actor) is str else canonical_json(actor)
        team_text = texts[team] if type(team) is str or team is None else canonical_json(team)
        # The AAD binds the ciphertext to the record's kind, actor and fields (seq/ts come
        # later: a payload moved to another record fails its hash check anyway). It is
        # canonical_json([kind, actor, team, fields]), assembled from the texts made.
        aad = f"[{kind_text},{actor_text},{team_text},{entry.fields_text}]".encode()
        start = i * step
        data_key = material[start : start + DATA_KEY_BYTES]
        sealed = seal_with(
            data_key, material[start + DATA_KEY_BYTES : start + step], entry.payload, aad
        )
        out.append(
            Sealed(
                wrap(data_key), sealed, sha(sealed).hexdigest(), kind_text, actor_text, team_text
            )
        )
    return out


PAGE = 5000
"""Rows read per query when walking the trail."""


def query_records(
    conn: Connection,
    shown: Sequence[ColumnElement[Any]],
    kind: str | None,
    team: str | None,
    fields: Mapping[str, Any],
    after: int,
    before: int | None,
    limit: int,
    newest_first: bool,
    test: Callable[[AuditRecord], bool] | None,
) -> list[AuditRecord]:
    """:meth:`~podium.governance.audit.AuditLog.query` on ``conn``, reading the ``shown``
    columns: the database pre-selects headers holding each field's canonical ``"name":value``
    text, then every candidate is checked exactly, page by page."""
    table = schema.audit_records
    where = []
    if kind is not None:
        where.append(table.c.kind == kind)
    if team is not None:
        where.append(table.c.team == team)
    for name, value in fields.items():
        where.append(
            table.c.header.contains(
                canonical_json(name) + ":" + canonical_json(plain_json(value)),
                autoescape=True,
            )
        )
    base = select(*shown).where(*where)
    wanted = {name: plain_json(value) for name, value in fields.items()}
    out: list[AuditRecord] = []
    low, high = after, before
    while len(out) < limit:
        query = base.where(table.c.seq > low)
        if high is not None:
            query = query.where(table.c.seq < high)
        order = table.c.seq.desc() if newest_first else table.c.seq
        page = conn.execute(query.order_by(order).limit(PAGE)).all()
        for row in page:
            record = record_of(row)
            if all(record.fields.get(k) == v for k, v in wanted.items()) and (
                test is None or test(record)
            ):
                out.append(record)
                if len(out) == limit:
                    break
        if len(page) < PAGE:
            break
        if newest_first:
            high = int(page[-1].seq)
        else:
            low = int(page[-1].seq)
    return out
