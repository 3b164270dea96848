"""Verification across processes gives the single walk's verdict: the same first bad record and
the same message for an edit, a deletion or a swap placed in any ``seq`` range or on a range
boundary, and the same counts for an intact log."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from podium.governance import AuditLog, VerifyResult, audit, verify
from tests.governance.conftest import OpenLog
from tests.governance.test_audit import R, entry, execute, row

N = 60  # checkpoints every 10; with 3 workers the ranges are (0, 20], (20, 40], (40, …)
WORKERS = 3
# first and last of each range, and both sides of each boundary
PLACES = [1, 2, 19, 20, 21, 39, 40, 41, 59, 60]


async def _filled(open_log: OpenLog) -> AuditLog:
    log = await open_log()
    await log.append_many([entry(i) for i in range(N)])
    return log


async def _both(log: AuditLog) -> tuple[VerifyResult, VerifyResult]:
    """The single walk's result and the parallel one's, which must agree: workers from the
    fork server (a walk in a worker thread, as a server runs it) and forked at once (a
    blocking walk, as the command line runs it)."""
    serial = await log.verify(workers=1)
    parallel = await log.verify(workers=WORKERS)
    forked = await log.verify(workers=WORKERS, blocking=True)
    assert parallel == serial, f"parallel: {parallel}; serial: {serial}"
    assert forked == serial, f"forked: {forked}; serial: {serial}"
    return serial, parallel


def _swap(db_url: str, a: int, b: int) -> None:
    first, second = row(db_url, a), row(db_url, b)
    body = [c for c in first if c != "seq"]
    execute(
        db_url,
        update(R).where(R.c.seq == a).values({c: second[c] for c in body}),
        update(R).where(R.c.seq == b).values({c: first[c] for c in body}),
    )


async def test_an_intact_log_gives_the_same_result(open_log: OpenLog) -> None:
    log = await _filled(open_log)
    serial, _ = await _both(log)
    assert serial.ok
    assert serial.records == N
    assert serial.checkpoints == N // 10
    await log.append_many([entry(i) for i in range(N, N + 7)])  # a tail past the last range
    serial, _ = await _both(log)
    assert serial.ok
    assert serial.records == N + 7


@pytest.mark.parametrize("seq", PLACES)
@pytest.mark.parametrize("column", ["actor", "payload_sha256", "prev_hash"])
async def test_an_edit_in_any_range_is_named_alike(
    open_log: OpenLog, db_url: str, seq: int, column: str
) -> None:
    log = await _filled(open_log)
    value: Any = "mallory" if column == "actor" else "f" * 64
    execute(db_url, update(R).where(R.c.seq == seq).values({column: value}))
    serial, _ = await _both(log)
    assert (serial.ok, serial.first_bad) == (False, seq), str(serial)


@pytest.mark.parametrize("seq", PLACES)
async def test_a_deletion_in_any_range_is_named_alike(
    open_log: OpenLog, db_url: str, seq: int
) -> None:
    log = await _filled(open_log)
    execute(db_url, delete(R).where(R.c.seq == seq))
    serial, _ = await _both(log)
    assert (serial.ok, serial.first_bad) == (False, seq), str(serial)
    assert "missing" in (serial.problem or "")


@pytest.mark.parametrize("pair", [(3, 45), (19, 21), (20, 21), (40, 41), (2, 59)])
async def test_a_swap_across_ranges_is_named_alike(
    open_log: OpenLog, db_url: str, pair: tuple[int, int]
) -> None:
    log = await _filled(open_log)
    _swap(db_url, *pair)
    serial, _ = await _both(log)
    assert (serial.ok, serial.first_bad) == (False, pair[0]), str(serial)


async def test_the_first_of_several_problems_wins(open_log: OpenLog, db_url: str) -> None:
    log = await _filled(open_log)
    execute(
        db_url,
        update(R).where(R.c.seq == 50).values(actor="mallory"),
        delete(R).where(R.c.seq == 33),
        update(R).where(R.c.seq == 12).values(kind="approval"),
    )
    serial, _ = await _both(log)
    assert (serial.first_bad, serial.problem) == (
        12,
        "column 'kind' differs from the hashed header (edited or moved)",
    )


async def test_truncation_and_a_bad_checkpoint_are_named_alike(
    open_log: OpenLog, db_url: str
) -> None:
    log = await _filled(open_log)
    execute(db_url, delete(R).where(R.c.seq > 44))
    serial, _ = await _both(log)
    assert serial.first_bad == 45
    assert "truncated" in (serial.problem or "")
    execute(
        db_url,
        update(audit._C).where(audit._C.c.seq == 20).values(signature=b"\0" * 64),
        update(R).where(R.c.seq == 30).values(actor="mallory"),  # after the bad checkpoint
    )
    serial, _ = await _both(log)
    assert (serial.first_bad, serial.problem) == (20, "checkpoint signature does not verify")


async def test_large_logs_go_parallel_by_default(
    open_log: OpenLog, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await _filled(open_log)
    execute(db_url, update(R).where(R.c.seq == 37).values(team="other"))
    monkeypatch.setattr(verify, "PARALLEL_VERIFY_MIN", 10)  # "large": more than 10 records
    automatic = await log.verify()
    assert automatic == await log.verify(workers=1)
    assert automatic.first_bad == 37


async def test_an_in_memory_log_is_walked_in_process(open_log: OpenLog) -> None:
    log = await open_log()
    memory = await AuditLog.open(
        "sqlite:///:memory:", clock=log._clock, master=log._master, signer=log._signer
    )
    try:
        await memory.append_many([entry(i) for i in range(25)])
        result = await memory.verify(workers=4)  # no other process can see this database
        assert result.ok
        assert result.records == 25
    finally:
        await memory.close()
    with pytest.raises(ValueError, match="at least 1"):
        await log.verify(workers=0)


@pytest.mark.parametrize("gone", [(5, 12), (18, 23), (41, 50)])
async def test_runs_of_deleted_records_longer_than_a_page_are_named_alike(
    open_log: OpenLog, db_url: str, gone: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 3 records (the workers are given the module's page size): a run of deleted
    records wider than a page, inside a range or across a boundary, is the same "missing" as
    in the single walk, at its first record."""
    monkeypatch.setattr(verify, "_VERIFY_PAGE", 3)
    log = await _filled(open_log)
    first, last = gone
    execute(db_url, delete(R).where(R.c.seq >= first, R.c.seq <= last))
    serial, _ = await _both(log)
    assert (serial.ok, serial.first_bad) == (False, first), str(serial)
    assert f"the next record present is seq {last + 1}" in (serial.problem or "")


async def test_small_pages_walk_an_intact_log(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "_VERIFY_PAGE", 7)
    log = await _filled(open_log)
    serial, _ = await _both(log)
    assert (serial.ok, serial.records) == (True, N)


def test_workers_come_from_a_fork_server_unless_the_caller_is_alone() -> None:
    assert verify.start_method(quiet=True) == "fork"
    assert verify.start_method(quiet=False) == "forkserver"


@pytest.mark.timeout(180)
async def test_a_server_busy_with_sqlite_can_verify_in_parallel(
    open_log: OpenLog, tmp_path: Path
) -> None:
    """The API server's event loop writes SQLite (audit records, ledger rows) while a request
    verifies in a worker thread. Children forked from that thread could inherit one of
    SQLite's mutexes locked and hang on their first connect; from the fork server they cannot.
    Here a thread commits to another database without pause while 20 parallel verifies (40
    worker processes) run, and every verdict must come back. (The hang is a race: forking
    from the worker thread did not hit it in two runs of this test; the WAL checkpoint
    thread's version of it hung 3 runs in 3, see tests/conformance/test_wal_checkpoint.py.)"""
    log = await _filled(open_log)
    stop = threading.Event()

    def write() -> None:
        with contextlib.closing(sqlite3.connect(tmp_path / "busy.db")) as db:
            db.execute("CREATE TABLE t (x)")
            while not stop.is_set():
                with db:
                    db.execute("INSERT INTO t VALUES (randomblob(512))")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        for _ in range(20):
            result = await log.verify(workers=2)
            assert (result.ok, result.records) == (True, N)
    finally:
        stop.set()
        writer.join()
