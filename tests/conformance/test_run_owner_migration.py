"""Revision 0004 gives runs an owner: runs recorded before it move into the default organisation
with no team, so org-wide principals of that organisation still see them and no team does."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, inspect, text

from podium.store.migrations import alembic_config
from podium.store.sql import SQLStore
from podium.types import DEFAULT_ORG


def _upgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


async def test_runs_before_0004_belong_to_the_default_org_and_no_team(
    engine: Engine, db_url: str
) -> None:
    _upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (run_id, workflow, status, created_at, updated_at, inputs, "
                "source, source_hash) VALUES ('old', 'wf', 'completed', 1.0, 2.0, '{}', '', '')"
            )
        )
    _upgrade(engine, "0004")
    columns = {c["name"]: c for c in inspect(engine).get_columns("runs")}
    assert columns["org"]["nullable"]
    assert columns["team"]["nullable"]
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("runs")}
    assert indexes["ix_runs_team_created_at"] == ["team", "created_at"]

    store = await SQLStore.open(db_url)
    try:
        old = await store.get_run("old")
        assert (old.org, old.team) == (DEFAULT_ORG, None)
        assert [r.run_id for r in await store.list_runs(org=DEFAULT_ORG)] == ["old"]
        assert await store.list_runs(org=DEFAULT_ORG, team="a") == []
    finally:
        await store.close()


def test_downgrading_0004_drops_the_owner(engine: Engine) -> None:
    _upgrade(engine, "0004")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    names = {c["name"] for c in inspect(engine).get_columns("runs")}
    assert "org" not in names
    assert "team" not in names
    assert "ix_runs_team_created_at" not in {i["name"] for i in inspect(engine).get_indexes("runs")}
