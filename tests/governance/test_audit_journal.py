"""The audit journal: records written before the answer, moved into the chain in batches, never
lost and never appended twice — across a crash of the writing process, a torn last write, a
crash between the move's commit and the file's removal, and a failing store."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Table, create_engine, func, select

from podium.governance import AuditEntry, AuditLog, MasterKey
from podium.governance import journal as journal_module
from podium.governance.journal import AuditJournal, JournalError, read_orphan, recover
from podium.store import schema
from podium.store.sql import store_url
from podium.testing import FakeClock
from tests.governance.conftest import OpenLog

R = schema.audit_records
J = schema.audit_journal_moves


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        kind="model_call",
        actor=f"key_{i % 3}",
        team=("ml", None)[i % 2],
        header={"request_id": f"req_{i}", "cost": Decimal("0.0001") * i},
        payload={"prompt": f"secret prompt {i}", "response": f"answer {i}"},
    )


def count(db_url: str, table: Table = R) -> int:
    """How many rows another connection sees in ``table`` (default: the chain's records)."""
    engine = create_engine(store_url(db_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.journal"))


async def prompts(log: AuditLog) -> list[str]:
    out = []
    for record in await log.records():
        content = await log.decrypt(record.seq)
        assert isinstance(content, dict)
        out.append(content["prompt"])
    return out


async def test_a_written_record_is_in_the_chain_for_this_process_at_once_and_for_others_soon(
    open_log: OpenLog, db_url: str, tmp_path: Path
) -> None:
    log = await open_log()
    clock = FakeClock(start=1_000.0)
    journal = await AuditJournal.open(log, tmp_path / "j", clock=clock, delay=0.05)
    journal.write([entry(0), entry(1)])
    assert journal.pending == 2
    assert count(db_url) == 0  # written, not yet moved
    journal.write([entry(2)])
    [written] = files(tmp_path / "j")
    for _ in range(200):  # moved within the delay, with no read to prompt it
        if not journal.pending:
            break
        await asyncio.sleep(0.01)
    assert journal.pending == 0
    assert count(db_url) == 3
    # The moved file is destroyed; the next one is made ahead, off any call's path, and holds
    # nothing yet.
    [ahead] = files(tmp_path / "j")
    assert ahead != written
    assert not written.exists()
    assert read_orphan(ahead, log).items == []
    assert count(db_url, J) == 1  # its id, deleted with the next move
    journal.write([entry(3)])
    assert files(tmp_path / "j") == [ahead]  # the write took the file made ahead
    records = await log.records()  # a read flushes the journal first
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert await prompts(log) == [f"secret prompt {i}" for i in range(4)]
    assert [r.fields["request_id"] for r in records] == [f"req_{i}" for i in range(4)]
    assert records[0].fields["cost"] == "0.0000"
    assert records[3].fields["cost"] == "0.0003"
    assert count(db_url, J) == 0
    assert (await log.verify()).ok
    await journal.close()
    assert files(tmp_path / "j") == []  # a file made ahead and never written is destroyed


async def test_a_file_made_ahead_and_never_written_leaves_nothing_behind(
    open_log: OpenLog, db_url: str, tmp_path: Path
) -> None:
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=0.01)
    journal.write([entry(0)])
    for _ in range(200):
        if not journal.pending:
            break
        await asyncio.sleep(0.01)
    [ahead] = files(tmp_path / "j")
    assert read_orphan(ahead, log).items == []
    await journal.close()
    assert files(tmp_path / "j") == []
    assert count(db_url) == 1
    assert (await log.verify()).ok


async def test_records_take_the_time_they_were_written_not_moved(
    open_log: OpenLog, tmp_path: Path
) -> None:
    clock = FakeClock(start=5_000.0)
    log = await open_log(clock=clock)
    journal = await AuditJournal.open(log, tmp_path / "j", clock=clock, delay=3600)
    journal.write([entry(0)])
    clock.advance(30)
    journal.write([entry(1)])
    clock.advance(30)
    await journal.flush()
    assert [r.ts for r in await log.records()] == [5_000.0, 5_030.0]
    await journal.close()


async def test_the_journal_holds_no_plaintext(open_log: OpenLog, tmp_path: Path) -> None:
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=3600)
    journal.write([entry(i) for i in range(5)])
    (path,) = files(tmp_path / "j")
    data = path.read_bytes()
    assert data.startswith(journal_module.MAGIC)
    for text in (b"secret prompt", b"answer", b"req_", b'"key_'):
        assert text not in data
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "j").stat().st_mode & 0o777) == "0o700"
    await journal.close()


async def test_many_writes_keep_their_order_across_batches(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=0.001)
    for i in range(300):
        journal.write([entry(i)])
        if i % 7 == 0:
            await asyncio.sleep(0.002)  # let batches move in between
    assert [r.fields["request_id"] for r in await log.records()] == [f"req_{i}" for i in range(300)]
    assert (await log.verify()).ok
    await journal.close()


async def test_a_full_batch_moves_without_waiting(
    open_log: OpenLog, db_url: str, tmp_path: Path
) -> None:
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=3600)
    journal.write([entry(i) for i in range(journal_module.DRAIN_AT)])
    for _ in range(500):
        if not journal.pending:
            break
        await asyncio.sleep(0.01)
    assert count(db_url) == journal_module.DRAIN_AT
    await journal.close()


async def test_a_failing_store_keeps_the_records_then_refuses_past_the_backlog(
    open_log: OpenLog,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the table is renamed through SQLite's own driver")
    import sqlite3

    monkeypatch.setattr(journal_module, "MAX_BACKLOG", 5)
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=0.01)
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE audit_records RENAME TO gone")
    journal.write([entry(0), entry(1), entry(2)])
    await asyncio.sleep(0.1)  # the move fails, and is retried later
    assert journal.pending == 3
    assert "could not move 3 records" in caplog.text
    journal.write([entry(3), entry(4)])
    with pytest.raises(JournalError, match="5 records behind: its store keeps failing"):
        journal.write([entry(5)])
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE gone RENAME TO audit_records")
    assert await prompts(log) == [f"secret prompt {i}" for i in range(5)]
    journal.write([entry(5)])  # caught up: accepted again
    await journal.close()
    assert [r.seq for r in await log.records()] == [1, 2, 3, 4, 5, 6]


# -- crashes -----------------------------------------------------------------------------------

CRASH = """
import asyncio, os, sys
from pathlib import Path
from decimal import Decimal
from podium.governance import AuditEntry, AuditLog, MasterKey
from podium.governance import journal as journal_module
from podium.governance.journal import AuditJournal
from podium.testing import FakeClock

url, directory, key, count, where = sys.argv[1:6]

def entry(i):
    return AuditEntry(kind="model_call", actor=f"key_{i % 3}", team=("ml", None)[i % 2],
                      header={"request_id": f"req_{i}", "cost": Decimal("0.0001") * i},
                      payload={"prompt": f"secret prompt {i}", "response": f"answer {i}"})

async def main():
    log = await AuditLog.open(url, clock=FakeClock(), master=MasterKey.from_base64(key))
    delay = 0.01 if where == "made-ahead" else 3600
    journal = await AuditJournal.open(log, Path(directory), clock=FakeClock(), delay=delay)
    for i in range(int(count)):
        journal.write([entry(i)])
    while where == "made-ahead" and journal.pending:  # moved, and the next file made ahead
        await asyncio.sleep(0.01)
    if where == "after-commit":  # the move commits, then the process dies before the removal
        journal_module._destroy = lambda file: os._exit(0)
        await journal.flush()
    os._exit(0)  # dies: no flush, no close

asyncio.run(main())
"""


def crash(db_url: str, directory: Path, master: MasterKey, count: int, where: str = "") -> None:
    """Journal ``count`` records in another process, which then dies (``os._exit``)."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CRASH),
            db_url,
            str(directory),
            master.to_base64(),
            str(count),
            where,
        ],
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


async def test_records_journaled_by_a_process_that_died_are_recovered_at_the_next_start(
    open_log: OpenLog, db_url: str, master: MasterKey, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    crash(db_url, directory, master, 4)
    assert len(files(directory)) == 1
    assert count(db_url) == 0
    log = await open_log()
    journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert files(directory) == []
    assert count(db_url) == 4
    assert await prompts(log) == [f"secret prompt {i}" for i in range(4)]
    assert count(db_url, J) == 0
    assert (await log.verify()).ok
    await journal.close()


async def test_a_file_made_ahead_by_a_process_that_died_is_removed_quietly(
    open_log: OpenLog,
    db_url: str,
    master: MasterKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "j"
    crash(db_url, directory, master, 3, "made-ahead")
    assert count(db_url) == 3
    assert len(files(directory)) == 1  # made ahead, never written
    log = await open_log()
    with caplog.at_level(logging.WARNING, logger="podium.governance.journal"):
        journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert files(directory) == []
    assert count(db_url) == 3
    assert not [r for r in caplog.records if r.name == "podium.governance.journal"]
    await journal.close()


async def test_a_torn_last_write_is_dropped_and_the_rest_recovered(
    open_log: OpenLog,
    db_url: str,
    master: MasterKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "j"
    crash(db_url, directory, master, 3)
    (path,) = files(directory)
    with path.open("ab") as f:  # the process died inside a write: a frame's first 30 bytes
        f.write((500).to_bytes(4, "big") + os.urandom(26))
    log = await open_log()
    caplog.set_level(logging.WARNING, logger="podium.governance.journal")
    journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert await prompts(log) == [f"secret prompt {i}" for i in range(3)]
    assert "a torn last record was dropped" in caplog.text
    await journal.close()


async def test_a_crash_after_the_move_committed_never_appends_twice(
    open_log: OpenLog, db_url: str, master: MasterKey, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    crash(db_url, directory, master, 3, "after-commit")
    assert count(db_url) == 3  # moved, but the file is still there
    assert len(files(directory)) == 1
    assert count(db_url, J) == 1
    log = await open_log()
    journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert count(db_url) == 3
    assert files(directory) == []
    assert count(db_url, J) == 0
    assert (await log.verify()).ok
    await journal.close()


async def test_a_live_writer_s_file_is_left_alone(open_log: OpenLog, tmp_path: Path) -> None:
    directory = tmp_path / "j"
    log = await open_log()
    live = await AuditJournal.open(log, directory, clock=FakeClock(), delay=3600)
    live.write([entry(0)])
    other = await open_log()
    assert await recover(other, directory) == 0  # its lock is held: not an orphan
    assert len(files(directory)) == 1
    await live.close()
    assert files(directory) == []
    assert [r.seq for r in await other.records()] == [1]


async def test_a_file_for_another_master_key_is_kept_and_named(
    open_log: OpenLog,
    db_url: str,
    master: MasterKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "j"
    crash(db_url, directory, master, 2)
    log = await open_log(master=MasterKey.generate())
    journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert count(db_url) == 0
    assert len(files(directory)) == 1
    assert f"encrypted for master key {master.key_id}" in caplog.text
    await journal.close()
    right = await open_log()
    journal = await AuditJournal.open(right, directory, clock=FakeClock())
    assert await prompts(right) == ["secret prompt 0", "secret prompt 1"]
    await journal.close()


async def test_a_closed_journal_refuses_and_close_moves_everything(
    open_log: OpenLog, db_url: str, tmp_path: Path
) -> None:
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), delay=3600)
    journal.write([entry(0), entry(1)])
    await journal.close()
    assert count(db_url) == 2
    with pytest.raises(JournalError, match="closed"):
        journal.write([entry(2)])


async def test_a_synchronous_journal_syncs_every_write(
    open_log: OpenLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    log = await open_log()
    journal = await AuditJournal.open(log, tmp_path / "j", clock=FakeClock(), sync=True)
    journal.write([entry(0)])
    journal.write([entry(1)])
    assert len(synced) == 2
    await journal.close()
    assert [r.seq for r in await log.records()] == [1, 2]


async def test_leftovers_of_a_crash_are_cleared_without_a_record(
    open_log: OpenLog, db_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    # destroyed after its move (header zeroed) but not unlinked; and one its maker never locked
    (directory / f"0001-1{journal_module.SUFFIX}").write_bytes(bytes(200))
    (directory / f"0002-1{journal_module.MAKING}").write_bytes(b"")
    log = await open_log()
    journal = await AuditJournal.open(log, directory, clock=FakeClock())
    assert list(directory.iterdir()) == []
    assert count(db_url) == 0
    await journal.close()


async def test_a_new_file_is_never_seen_by_recovery_before_it_is_locked(
    open_log: OpenLog, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    log = await open_log()
    journal = await AuditJournal.open(log, directory, clock=FakeClock(), delay=3600)
    journal.write([entry(0)])
    (path,) = list(directory.iterdir())  # made as *.journal-new, renamed once locked
    assert path.name.endswith(journal_module.SUFFIX)
    assert await recover(await open_log(), directory) == 0
    await journal.close()


async def test_after_a_key_rotation_new_records_go_to_a_file_wrapped_by_the_new_key(
    open_log: OpenLog, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    log = await open_log()
    journal = await AuditJournal.open(log, directory, clock=FakeClock(), delay=3600)
    journal.write([entry(0)])
    new = MasterKey.generate()
    assert await log.rotate(new) == 1  # the journal is moved first: its record is rotated too
    journal.write([entry(1)])
    (path,) = files(directory)
    assert f'"master_key_id":"{new.key_id}"'.encode() in path.read_bytes()
    assert await prompts(log) == ["secret prompt 0", "secret prompt 1"]
    await journal.close()
