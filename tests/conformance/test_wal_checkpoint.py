"""SQLite WAL checkpoints happen in the background thread, not inside a commit: a commit never
copies the log into the database file, the thread does (and never re-creates a deleted
database, and forgets a database once its engines are gone)."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from podium.store import checkpoint
from podium.store.sql import create_store_engine, store_url

ROWS = 3000  # ~1,500 pages of WAL: past SQLite's default autocheckpoint of 1,000 pages


def _engine(path: Path) -> Engine:
    return create_store_engine(store_url(f"sqlite:///{path}"))


def _fill(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)"))
    for i in range(ROWS):  # one commit each, as the gateway's audit records are written
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": f"{i:04d}" + "x" * 2000})


def test_commits_leave_the_log_to_the_background_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "podium.db"
    engine = _engine(db)
    run = checkpoint._checkpoint
    monkeypatch.setattr(checkpoint, "_checkpoint", lambda path: None)  # the thread, paused
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        assert str(db.resolve()) in checkpoint.registered()
        _fill(engine)
        assert db.stat().st_size < 1_000_000, "a commit checkpointed the log itself"
        assert os.stat(f"{db}-wal").st_size > ROWS * 2000
        monkeypatch.setattr(checkpoint, "_checkpoint", run)
        checkpoint.checkpoint_now()
        assert db.stat().st_size > ROWS * 2000  # the rows are in the database file now
        with engine.connect() as conn:  # and still read back, once each
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == ROWS
    finally:
        engine.dispose()


def test_the_thread_checkpoints_on_its_own(tmp_path: Path) -> None:
    db = tmp_path / "podium.db"
    engine = _engine(db)
    try:
        _fill(engine)
        deadline = time.monotonic() + 10
        while db.stat().st_size < ROWS * 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stat().st_size > ROWS * 2000
    finally:
        engine.dispose()


def test_a_deleted_database_is_not_recreated_and_a_dead_engine_is_forgotten(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gone.db"
    engine = _engine(db)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    checkpoint.checkpoint_now()
    assert not db.exists()
    key = str(db.resolve())
    assert key in checkpoint.registered()
    del engine, conn
    gc.collect()
    assert key not in checkpoint.registered()


def test_in_memory_and_uri_databases_keep_sqlite_checkpoints(tmp_path: Path) -> None:
    engine = create_store_engine(store_url("sqlite://"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        engine.dispose()
    assert not any(p.startswith(":memory:") for p in checkpoint.registered())
    # a database opened by another program with defaults is untouched by ours
    other = sqlite3.connect(tmp_path / "plain.db")
    try:
        assert other.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        other.close()


def test_a_fork_never_inherits_sqlite_locked_by_the_checkpoint_thread(tmp_path: Path) -> None:
    """The audit trail forks its verify workers; a child forked while the checkpoint thread was
    inside SQLite (holding its allocator's mutex) used to hang on its first connect. Checkpoint
    passes run back to back in a thread while this test forks children that connect."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    db = tmp_path / "busy.db"
    engine = _engine(db)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    # Another process writes, so every checkpoint pass has work (this process's threads stay
    # out of SQLite but for the checkpoints: the test is about the checkpoint thread).
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA wal_autocheckpoint=0')\n"
            "while True: c.execute('INSERT INTO t (body) VALUES (?)', ('x' * 3000,))\n",
            str(db),
        ]
    )
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            checkpoint.checkpoint_now()

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    hung = 0
    try:
        for _ in range(60):
            pid = os.fork()
            if pid == 0:  # the child: connect, then leave at once
                try:
                    sqlite3.connect(":memory:").close()
                finally:
                    os._exit(0)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                done, _status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.005)
            else:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        stop.set()
        worker.join()
        writer.kill()
        writer.wait()
        engine.dispose()
    assert hung == 0, f"{hung} forked children hung in sqlite3.connect"
