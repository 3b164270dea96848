"""Revision 0006: on SQLite the audit tables' ``seq`` is the rowid (no second copy in an automatic
index), and no dialect keeps an index on the wrapped keys' master key id. A trail written before
it reads, decrypts and verifies the same after it, and appends go on from where it ended."""

from __future__ import annotations

from decimal import Decimal

from alembic import command
from sqlalchemy import Engine, inspect, text

from podium.governance.audit import AuditLog
from podium.governance.chain import AuditEntry
from podium.governance.keys import MasterKey, SigningKey
from podium.store.migrations import alembic_config
from podium.testing import FakeClock

TABLES = ("audit_records", "audit_keys", "audit_checkpoints")
"""The audit tables at revision 0005 (0007 moved the keys into ``audit_records``)."""


def _migrate(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        config = alembic_config(conn)
        if revision == "0005":
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _seq_stored_twice(engine: Engine) -> set[str]:
    """The audit tables whose ``seq`` SQLite keeps in an automatic index besides the table."""
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT tbl_name FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_audit%'")
        ).scalars()
        return set(names) & set(TABLES)  # revision 0008's table is keyed by a text id


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        kind="model_call",
        actor=f"key-{i % 3}",
        team="risk" if i % 2 else None,
        header={"request_id": f"req_{i:032x}", "cost": Decimal("0.0001") * i},
        payload={"messages": [{"role": "user", "content": f"question {i}"}]},
    )


async def _open(url: str, master: MasterKey, signer: SigningKey) -> AuditLog:
    return await AuditLog.open(
        url, clock=FakeClock(1_764_000_000.0), master=master, signer=signer, checkpoint_every=4
    )


async def test_a_trail_written_before_0006_verifies_and_grows_after_it(
    engine: Engine, db_url: str
) -> None:
    master, signer = MasterKey.generate(), SigningKey.generate()
    log = await _open(db_url, master, signer)
    try:
        written = [await log.append(_entry(i)) for i in range(10)]
    finally:
        await log.close()
    _migrate(engine, "0005")  # the trail as revision 0005 stored it
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        assert _seq_stored_twice(engine) == set(TABLES)
    key_indexes = {i["name"] for i in inspect(engine).get_indexes("audit_keys")}
    assert "ix_audit_keys_master_key_id" in key_indexes

    log = await _open(db_url, master, signer)  # opening migrates to the head revision
    try:
        assert [r.chain_hash for r in await log.records()] == [r.chain_hash for r in written]
        assert await log.decrypt(7) == _entry(6).payload
        more = await log.append(_entry(10))
        assert (more.seq, more.prev_hash) == (11, written[-1].chain_hash)
        result = await log.verify(workers=1)
        assert (result.ok, result.records, result.checkpoints) == (True, 11, 2), str(result)
        assert [r.seq for r in await log.query(team="risk", kind="model_call")] == [2, 4, 6, 8, 10]
    finally:
        await log.close()
    if sqlite:
        assert _seq_stored_twice(engine) == set()
        with engine.connect() as conn:  # the rowid is seq itself
            rows = conn.execute(text("SELECT rowid, seq FROM audit_records")).all()
        assert [tuple(r) for r in rows] == [(s, s) for s in range(1, 12)]
    assert "audit_keys" not in inspect(engine).get_table_names()  # revision 0007
    record_indexes = {i["name"] for i in inspect(engine).get_indexes("audit_records")}
    assert record_indexes == {"ix_audit_records_kind", "ix_audit_records_team"}
