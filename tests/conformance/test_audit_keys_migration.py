"""Revision 0007: the wrapped data keys move from ``audit_keys`` into ``audit_records``. A trail
written before it — with a shredded record — decrypts, stays shredded, verifies and grows after
it; the downgrade gives every unshredded key back its ``audit_keys`` row, byte for byte."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from podium.governance.audit import AuditLog
from podium.governance.chain import AuditEntry
from podium.governance.keys import MasterKey, PayloadShredded, SigningKey
from podium.store.migrations import alembic_config
from podium.testing import FakeClock


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        kind="model_call",
        actor=f"key-{i % 2}",
        header={"request_id": f"req_{i:032x}"},
        payload={"messages": [{"role": "user", "content": f"question {i}"}]},
    )


async def _open(url: str, master: MasterKey) -> AuditLog:
    return await AuditLog.open(
        url, clock=FakeClock(1_764_000_000.0), master=master, signer=SigningKey.generate()
    )


def _keys(engine: Engine, table: str) -> dict[int, tuple[str, bytes]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT seq, master_key_id, wrapped_key FROM {table} ORDER BY seq")
        ).all()
    return {int(r[0]): (r[1], bytes(r[2])) for r in rows if r[2] is not None}


async def test_keys_written_before_0007_move_into_the_records(engine: Engine, db_url: str) -> None:
    master = MasterKey.generate()
    log = await _open(db_url, master)
    try:
        written = [await log.append(_entry(i)) for i in range(6)]
        assert await log.shred([2]) == 1
        assert await log.shred([2]) == 0  # already gone
    finally:
        await log.close()
    at_head = _keys(engine, "audit_records")
    assert sorted(at_head) == [1, 3, 4, 5, 6]

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0006")  # the trail as revision 0006 kept it
    assert _keys(engine, "audit_keys") == at_head
    columns = {c["name"] for c in inspect(engine).get_columns("audit_records")}
    assert not {"master_key_id", "wrapped_key"} & columns

    log = await _open(db_url, master)  # opening migrates to the head revision
    try:
        assert "audit_keys" not in inspect(engine).get_table_names()
        assert _keys(engine, "audit_records") == at_head
        assert await log.decrypt(3) == _entry(2).payload
        with pytest.raises(PayloadShredded):  # shredded before the migration, still gone
            await log.decrypt(2)
        more = await log.append(_entry(6))
        assert (more.seq, more.prev_hash) == (7, written[-1].chain_hash)
        assert await log.shred([3]) == 1
        shown = {r.seq: r.shredded for r in await log.records()}
        assert [seq for seq, gone in shown.items() if gone] == [2, 3]
        assert (await log.verify(workers=1)).ok
        new = MasterKey.generate()
        assert await log.rotate(new) == 5  # 1, 4, 5, 6, 7
        assert await log.decrypt(7) == _entry(6).payload
    finally:
        await log.close()
