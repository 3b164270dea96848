"""The audit trail's encodings and rows: a header's fields as JSON text, a payload's plaintext,
the AAD that binds a ciphertext to its record, the append's inserts on the raw DBAPI connection
(binary ``COPY`` on PostgreSQL), and stored rows read back as records and checkpoints.

Part of :class:`podium.governance.audit.AuditLog`'s implementation, split out of that module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Row

from podium.governance.chain import (
    COLUMNS,
    AuditRecord,
    Checkpoint,
    canonical_json,
    plain_json,
)
from podium.types import JSON

FIELDS_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def fields_json(header: Mapping[str, Any]) -> tuple[Any, str]:
    """A header's fields as plain JSON values (``Decimal`` as its fixed-point string) and their
    text, sorted keys. orjson first (~1 µs); it refuses, and hands to the stdlib path, what that
    path treats specially (non-``str`` keys, ``str`` and ``int`` subclasses, datetimes,
    dataclasses, ints beyond 64 bits). Its output is also rejected when it holds ``null``,
    which is how orjson writes a NaN or an infinity: :func:`plain_json` then either agrees
    (a real ``None``) or raises the precise error."""
    try:
        data = orjson.dumps(header, default=payload_default, option=FIELDS_OPTIONS)
    except TypeError:
        data = b"null"
    if b"null" not in data:
        return orjson.loads(data), data.decode()
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
