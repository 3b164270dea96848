"""The audit trail on SQLite (a file) and PostgreSQL (the session's database, emptied per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from podium.governance import AuditLog, MasterKey, SigningKey
from podium.testing import FakeClock

OpenLog = Callable[..., Awaitable[AuditLog]]


def _empty_audit_tables(url: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE audit_records, audit_checkpoints, audit_journal_moves")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("pg_url")
    _empty_audit_tables(url)
    return url


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def signer() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def open_log(db_url: str, master: MasterKey, signer: SigningKey) -> AsyncIterator[OpenLog]:
    """Open logs on the test database (defaults: the test's keys, a checkpoint every 10)."""
    opened: list[AuditLog] = []

    async def open_(**kwargs: object) -> AuditLog:
        options: dict[str, object] = {
            "clock": FakeClock(),
            "master": master,
            "signer": signer,
            "checkpoint_every": 10,
        }
        options.update(kwargs)
        log = await AuditLog.open(db_url, **options)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield open_
    for log in opened:
        await log.close()
