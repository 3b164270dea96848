"""The migrations build exactly the schema ``podium.store.schema`` declares."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect

from podium.store.migrations import alembic_config, upgrade_to_head
from podium.store.schema import metadata
from podium.store.sql import create_store_engine, store_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database."""
    if request.param == "sqlite":
        engine = create_store_engine(store_url(f"sqlite:///{tmp_path / 'm.db'}"))
    else:
        create: Callable[[], str] = request.getfixturevalue("pg_database")
        engine = create_engine(store_url(create()))
    try:
        yield engine
    finally:
        engine.dispose()


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_upgrade_head_matches_the_declared_schema(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    assert schema_diff(empty_engine) == []
    tables = set(inspect(empty_engine).get_table_names())
    assert tables == {
        "runs",
        "events",
        "signals",
        "cost_ledger",
        "budget_counters",
        "budget_reservations",
        "budget_alerts",
        "audit_records",
        "audit_checkpoints",
        "audit_journal_moves",
        "orgs",
        "teams",
        "projects",
        "users",
        "api_keys",
        "alembic_version",
    }


def test_upgrade_is_idempotent(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    upgrade_to_head(empty_engine)
    assert schema_diff(empty_engine) == []


def test_downgrade_to_base_and_back(empty_engine: Engine) -> None:
    upgrade_to_head(empty_engine)
    with empty_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    upgrade_to_head(empty_engine)
    assert schema_diff(empty_engine) == []


def test_concurrent_upgrades_are_serialised(empty_engine: Engine) -> None:
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            upgrade_to_head(empty_engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert schema_diff(empty_engine) == []


def test_single_head_and_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == ["0008"]
    assert [rev.revision for rev in script.walk_revisions()] == [
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]
