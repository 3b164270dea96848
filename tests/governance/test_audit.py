"""The audit trail: an untouched log verifies; every kind of tampering is caught and named;
crypto-shredding, key rotation and concurrent writers keep the chain intact."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import random
import sqlite3
import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, select, update

from podium.errors import ConfigError, StoreError
from podium.governance import (
    AuditChainBroken,
    AuditEntry,
    AuditKeyError,
    AuditLog,
    Checkpoint,
    MasterKey,
    PayloadShredded,
    SigningKey,
    canonical_json,
)
from podium.governance.audit_rows import aad_of
from podium.governance.chain import chain_hash, record_hash
from podium.store import schema
from podium.store.sql import store_url
from tests.governance.conftest import OpenLog

R = schema.audit_records
N = 35  # records per test log: checkpoints at 10, 20, 30


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        kind=("model_call", "workflow_step", "approval", "admin_change")[i % 4],
        actor=f"key_{i % 3}",
        team=("ml", "search", None)[i % 3],
        header={"request_id": f"req_{i}", "model_requested": "gpt", "cost": Decimal("0.0001") * i},
        payload={"prompt": f"secret prompt {i}", "response": f"answer {i}"},
    )


async def filled(open_log: OpenLog, n: int = N, **kwargs: Any) -> AuditLog:
    log = await open_log(**kwargs)
    await log.append_many([entry(i) for i in range(n // 2)])
    for i in range(n // 2, n):
        await log.append(entry(i))
    return log


def engine(db_url: str) -> Engine:
    return create_engine(store_url(db_url))


def execute(db_url: str, *statements: Any) -> None:
    e = engine(db_url)
    try:
        with e.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        e.dispose()


def row(db_url: str, seq: int) -> dict[str, Any]:
    e = engine(db_url)
    try:
        with e.connect() as conn:
            return dict(conn.execute(select(R).where(R.c.seq == seq)).one()._mapping)
    finally:
        e.dispose()


async def test_untouched_log_verifies_and_reads_back(open_log: OpenLog) -> None:
    log = await filled(open_log)
    result = await log.verify()
    assert result.ok, str(result)
    assert (result.records, result.checkpoints) == (N, 3)
    records = await log.records()
    assert [r.seq for r in records] == list(range(1, N + 1))
    assert records[4].fields["cost"] == "0.0004"  # Decimal as its exact string
    assert records[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.chain_hash for a, b in itertools.pairwise(records))
    assert await log.decrypt(5) == {"prompt": "secret prompt 4", "response": "answer 4"}
    assert [c.seq for c in await log.export_checkpoints()] == [10, 20, 30]
    on_demand = await log.checkpoint()
    assert on_demand is not None
    assert on_demand.seq == N
    assert (await log.verify()).checkpoints == 4


def _mutations(value: dict[str, Any]) -> dict[str, Any]:
    header = json.loads(value["header"])
    header["fields"]["cost"] = "0"
    payload = bytearray(value["payload"])
    payload[-1] ^= 1
    return {
        "ts": value["ts"] + 1,
        "kind": "tampered",
        "actor": "mallory",
        "team": "other-team",
        "header": canonical_json(header),
        "payload": bytes(payload),
        "payload_sha256": "f" * 64,
        "record_hash": "e" * 64,
        "prev_hash": "d" * 64,
        "chain_hash": "c" * 64,
    }


@pytest.mark.parametrize(
    "column",
    [
        "ts",
        "kind",
        "actor",
        "team",
        "header",
        "payload",
        "payload_sha256",
        "record_hash",
        "prev_hash",
        "chain_hash",
    ],
)
async def test_editing_any_field_of_a_random_record_is_named(
    open_log: OpenLog, db_url: str, column: str
) -> None:
    log = await filled(open_log)
    rng = random.Random(column)
    for seq in rng.sample(range(1, N + 1), 2):
        original = row(db_url, seq)
        new = _mutations(original)[column]
        execute(db_url, update(R).where(R.c.seq == seq).values({column: new}))
        result = await log.verify()
        assert not result.ok
        assert result.first_bad == seq, str(result)
        assert result.problem
        execute(db_url, update(R).where(R.c.seq == seq).values({column: original[column]}))
        assert (await log.verify()).ok


async def test_a_deleted_record_is_named(open_log: OpenLog, db_url: str) -> None:
    log = await filled(open_log)
    execute(db_url, delete(R).where(R.c.seq == 17))
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 17)
    with pytest.raises(AuditChainBroken, match=r"^record 17: missing"):
        result.raise_for_failure()
    assert "missing" in (result.problem or "")


async def test_two_swapped_records_are_named(open_log: OpenLog, db_url: str) -> None:
    log = await filled(open_log)
    a, b = row(db_url, 8), row(db_url, 23)
    body = [c for c in a if c != "seq"]
    execute(
        db_url,
        update(R).where(R.c.seq == 8).values({c: b[c] for c in body}),
        update(R).where(R.c.seq == 23).values({c: a[c] for c in body}),
    )
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 8), str(result)


async def test_a_truncated_tail_is_caught_against_the_last_checkpoint(
    open_log: OpenLog, db_url: str
) -> None:
    log = await filled(open_log)
    execute(db_url, delete(R).where(R.c.seq > 25))
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 26), str(result)
    assert "truncated" in (result.problem or "")


async def test_a_tail_removed_with_its_checkpoints_is_caught_by_exported_ones(
    open_log: OpenLog, db_url: str
) -> None:
    log = await filled(open_log)
    exported = await log.export_checkpoints()
    execute(
        db_url,
        delete(R).where(R.c.seq > 25),
        delete(schema.audit_checkpoints).where(schema.audit_checkpoints.c.seq > 25),
    )
    assert (await log.verify()).ok  # nothing inside the database shows it…
    result = await log.verify(exported)  # …the checkpoints kept elsewhere do
    assert (result.ok, result.first_bad) == (False, 26)


async def test_a_consistently_rehashed_chain_is_caught_at_the_next_checkpoint(
    open_log: OpenLog, db_url: str
) -> None:
    log = await filled(open_log)
    e = engine(db_url)
    try:
        with e.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(R).order_by(R.c.seq))]
            prev = rows[12]["chain_hash"]
            for r in rows[13:]:
                header = json.loads(r["header"])
                if r["seq"] == 14:
                    header["actor"] = r["actor"] = "mallory"
                rec = record_hash(canonical_json(header), r["payload_sha256"])
                link = chain_hash(prev, rec)
                conn.execute(
                    update(R)
                    .where(R.c.seq == r["seq"])
                    .values(
                        header=canonical_json(header),
                        actor=r["actor"],
                        record_hash=rec,
                        prev_hash=prev,
                        chain_hash=link,
                    )
                )
                prev = link
    finally:
        e.dispose()
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 20), str(result)
    assert "signed checkpoint" in (result.problem or "")


async def test_a_forged_or_foreign_checkpoint_is_refused(open_log: OpenLog, db_url: str) -> None:
    log = await filled(open_log)
    cp = schema.audit_checkpoints
    execute(db_url, update(cp).where(cp.c.seq == 20).values(signature=b"\x00" * 64))
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 20)
    assert "signature" in (result.problem or "")
    other = SigningKey.generate()
    forged = Checkpoint(
        35, "a" * 64, 0.0, other.key_id, other.sign(Checkpoint.message(35, "a" * 64))
    )
    result = await (await open_log()).verify([forged])
    assert result.first_bad == 20  # still the first problem
    execute(db_url, delete(cp).where(cp.c.seq == 20))
    result = await log.verify([forged])
    assert result.first_bad == 35
    assert f"checkpoint signed by unknown key {other.key_id}" in (result.problem or "")


async def test_shredded_records_still_verify_and_are_unreadable(open_log: OpenLog) -> None:
    log = await filled(open_log)
    assert await log.shred([3, 4, 30]) == 3
    assert (await log.verify()).ok
    with pytest.raises(PayloadShredded, match="record 4"):
        await log.decrypt(4)
    shown = {r.seq: r.shredded for r in await log.records()}
    assert [s for s, gone in shown.items() if gone] == [3, 4, 30]
    assert await log.decrypt(5) == {"prompt": "secret prompt 4", "response": "answer 4"}


async def test_a_shredded_key_leaves_no_bytes_in_the_sqlite_files(
    open_log: OpenLog, db_url: str, tmp_path: Any
) -> None:
    """Crypto-shredding must destroy the key, not unlink it: no copy of the wrapped key may stay
    in the page's free space or in the write-ahead log."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps old row versions until VACUUM (see docs/audit.md)")
    log = await filled(open_log, 12)
    e = engine(db_url)
    try:
        with e.connect() as conn:
            keys = {r.seq: bytes(r.wrapped_key) for r in conn.execute(select(R))}
    finally:
        e.dispose()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.db")]

    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in files if p.exists())

    assert keys[3] in stored()
    assert await log.shred([3, 7]) == 2
    after = stored()
    assert keys[3] not in after
    assert keys[7] not in after
    assert keys[4] in after  # the others are intact
    assert await log.decrypt(4) == {"prompt": "secret prompt 3", "response": "answer 3"}
    assert (await log.verify()).ok


async def test_a_shred_does_not_wait_for_a_reader_holding_an_old_snapshot(
    open_log: OpenLog, db_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint after a shred runs on the event loop: with a reader in the way it gives up
    at once (the store's busy timeout is 30 s) and says so; the shred itself stands."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the checkpoint is SQLite's")
    log = await filled(open_log, 4)
    reader = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM audit_records").fetchone() == (4,)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="podium.governance.audit"):
            assert await log.shred([2]) == 1
        assert time.monotonic() - began < 10
        assert "write-ahead log still holds their old pages" in caplog.text
    finally:
        reader.close()
    with pytest.raises(PayloadShredded):
        await log.decrypt(2)
    assert (await log.verify()).ok


async def test_rotation_rewraps_every_data_key(open_log: OpenLog, master: MasterKey) -> None:
    log = await filled(open_log)
    await log.shred([2])
    new = MasterKey.generate()
    assert await log.rotate(new) == N - 1
    assert log.master_key_id == new.key_id
    assert await log.decrypt(7) == {"prompt": "secret prompt 6", "response": "answer 6"}
    await log.append(entry(99))
    assert await log.decrypt(N + 1) == {"prompt": "secret prompt 99", "response": "answer 99"}
    assert (await log.verify()).ok
    stale = await open_log(master=master)
    with pytest.raises(AuditKeyError) as info:
        await stale.decrypt(7)
    message = str(info.value)
    assert master.key_id in message or new.key_id in message
    assert "wrapped by master key " + new.key_id in message
    assert master.to_base64() not in message
    assert new.to_base64() not in message


async def test_a_wrong_master_key_gives_a_clear_error(open_log: OpenLog) -> None:
    await filled(open_log, 3)
    wrong = MasterKey.generate()
    log = await open_log(master=wrong)
    with pytest.raises(AuditKeyError, match=f"configured master key is {wrong.key_id}"):
        await log.decrypt(1)
    assert (await log.verify()).ok  # verifying needs no master key
    keyless = await open_log(master=None)
    assert (await keyless.verify()).ok
    with pytest.raises(AuditKeyError, match="PODIUM_AUDIT_MASTER_KEY"):
        await keyless.append(entry(1))


async def test_an_append_after_another_writers_follows_the_stored_chain(open_log: OpenLog) -> None:
    """A log remembers the last record it appended; another writer's append since then makes
    that stale, and the next append still lands after the stored chain, not beside it."""
    first, second = await open_log(), await open_log()
    a = await first.append(entry(0))
    b = await second.append(entry(1))
    c = await first.append(entry(2))  # first's head (seq 1) is stale
    d = await first.append(entry(3))
    assert [r.seq for r in (a, b, c, d)] == [1, 2, 3, 4]
    assert c.prev_hash == b.chain_hash
    assert d.prev_hash == c.chain_hash
    assert (await first.verify()).ok


async def test_concurrent_appends_never_fork_the_chain(open_log: OpenLog) -> None:
    first, second = await open_log(), await open_log()  # two writers, two connection pools
    logs = [first, second]
    records = await asyncio.gather(*(logs[i % 2].append(entry(i)) for i in range(200)))
    assert sorted(r.seq for r in records) == list(range(1, 201))
    assert len({r.chain_hash for r in records}) == 200
    result = await first.verify()
    assert result.ok, str(result)
    assert (result.records, result.checkpoints) == (200, 20)


async def test_an_append_on_a_broken_connection_fails_and_the_next_one_recovers(
    open_log: OpenLog, db_url: str
) -> None:
    log = await open_log()
    await log.append(entry(1))
    held = log._held  # on SQLite, the connection appends keep between transactions
    if held is None:
        pytest.skip("only SQLite keeps its append connection")
    held.dbapi_connection.close()  # as if the database went away under it
    with pytest.raises(StoreError):
        await log.append(entry(2))
    assert (await log.append(entry(3))).seq == 2  # a fresh connection; nothing half-written
    result = await log.verify()
    assert result.ok, str(result)
    assert result.records == 2


async def test_secrets_never_reach_reprs_errors_or_logs(
    open_log: OpenLog, master: MasterKey, signer: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        log = await filled(open_log, 12)
        await log.decrypt(3)
        await log.rotate(MasterKey.generate())
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    secrets = [master.to_base64(), signer.to_base64()]
    texts = [repr(master), repr(signer), repr(signer.public), repr(log), caplog.text]
    for secret in secrets:
        assert all(secret not in t for t in texts)
    assert "secret prompt" not in caplog.text  # payloads are encrypted before any SQL
    assert master.key_id in repr(master)


def test_keys_from_env_and_files(tmp_path: Any) -> None:
    key = MasterKey.generate()
    loaded = MasterKey.from_env({"PODIUM_AUDIT_MASTER_KEY": key.to_base64()})
    assert loaded is not None
    assert loaded.key_id == key.key_id
    path = tmp_path / "master.key"
    path.write_text(key.to_base64() + "\n")
    from_file = MasterKey.from_env({"PODIUM_AUDIT_MASTER_KEY_FILE": str(path)})
    assert from_file is not None
    assert from_file.key_id == key.key_id
    assert MasterKey.from_env({}) is None
    with pytest.raises(ConfigError, match="not valid base64"):
        MasterKey.from_env({"PODIUM_AUDIT_MASTER_KEY": "not base64!"})
    with pytest.raises(ConfigError, match="must be 32 bytes"):
        MasterKey.from_env({"PODIUM_AUDIT_MASTER_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(ConfigError, match="cannot read"):
        SigningKey.from_env({"PODIUM_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "missing")})
    signer = SigningKey.generate()
    signer_loaded = SigningKey.from_env({"PODIUM_AUDIT_SIGNING_KEY": signer.to_base64()})
    assert signer_loaded is not None
    assert signer_loaded.key_id == signer.key_id


def test_canonical_json() -> None:
    assert canonical_json({"b": Decimal("1E-7"), "a": [1, "é"]}) == '{"a":[1,"é"],"b":"0.0000001"}'
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"x": Decimal("NaN")})
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"x": float("nan")})


async def test_unusual_values_round_trip_and_verify(open_log: OpenLog) -> None:
    """Fields and payloads beyond the usual shapes: floats orjson spells differently from
    Python's ``json`` (1e16), nested and unsorted keys, ``None``, non-ASCII, a ``str`` subclass
    and an int beyond 64 bits (both taken by the stdlib path), integer payload keys."""

    class Label(str):
        pass

    log = await open_log()
    fields = {"z": 1e16, "a": {"y": 1e-7, "b": [1.5, None]}, "é": "ünï", "n": None}
    await log.append_many(
        [
            AuditEntry(
                "model_call", "k", "ml", fields, {"p": 1e16, 3: "three", "d": Decimal("2.50")}
            ),
            AuditEntry("model_call", "k", None, {"label": Label("x"), "big": 2**70}, [2**70]),
            AuditEntry("model_call", "k", "ml", {}, None),
        ]
    )
    records = await log.records()
    assert records[0].fields == {
        "z": 1e16,
        "a": {"y": 1e-7, "b": [1.5, None]},
        "é": "ünï",
        "n": None,
    }
    assert records[1].fields == {"label": "x", "big": 2**70}
    assert await log.decrypt(1) == {"p": 1e16, "3": "three", "d": "2.50"}
    assert await log.decrypt(2) == [2**70]
    assert await log.decrypt(3) is None
    assert (await log.verify()).ok


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"x": float("nan")}, ValueError),
        ({"x": [float("inf")]}, ValueError),
        ({"x": Decimal("NaN")}, ValueError),
        ({"x": object()}, TypeError),
    ],
)
async def test_header_values_json_cannot_carry_faithfully_are_refused(
    open_log: OpenLog, header: dict[Any, Any], error: type[Exception]
) -> None:
    log = await open_log()
    with pytest.raises(error):
        await log.append(AuditEntry("model_call", "k", None, header, "p"))
    assert await log.records() == []


def test_the_aad_of_a_header_written_by_the_stdlib_encoder_is_unchanged() -> None:
    """Records appended before orjson wrote the fields: their AAD was
    ``canonical_json([kind, actor, team, fields])``, and reading it from the stored header
    gives exactly that (so they still decrypt)."""
    for fields in ({}, {"kind": "x", "fields": {"kind": 1}}, {"a": [1e16, {"b": None}]}):
        for actor, team in (("key_1", None), ('"quoted", "kind":', "ml")):
            header = canonical_json(
                {"v": 1, "seq": 7, "ts": 1.5, "kind": "model_call", "actor": actor,
                 "team": team, "fields": fields}
            )  # fmt: skip
            legacy = canonical_json(["model_call", actor, team, fields]).encode()
            assert aad_of(header) == legacy


def test_the_public_api_is_pinned() -> None:
    import podium.governance as governance

    assert sorted(governance.__all__) == [
        "AuditChainBroken", "AuditEntry", "AuditError", "AuditKeyError", "AuditLog",
        "AuditRecord", "AuditSink", "Checkpoint", "Entity", "Finding", "MasterKey",
        "PayloadShredded", "PiiDetector", "PiiError", "PiiModelUnavailable", "PlaceholderVault",
        "Policy", "PolicyDecision", "PolicyDenied", "RetentionJob", "RetentionReport",
        "RetentionScheduler", "SigningKey", "Subject", "VerifyKey", "VerifyResult", "call_entry",
        "canonical_json", "contains_pii", "default_detector", "redact_text",
    ]  # fmt: skip
    assert all(hasattr(governance, name) for name in governance.__all__)
