"""The Store contract, run against every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from podium.errors import ConfigError, JournalConflict, RunNotFound, StoreError
from podium.store import MemoryStore, open_store
from podium.store.sql import SQLITE_BUSY_TIMEOUT_MS, SQLStore, create_store_engine, store_url
from podium.types import Event, RunRecord, RunStatus, RunUpdate, Store


def make_run(
    run_id: str = "run-1",
    *,
    workflow: str = "wf",
    status: RunStatus = "running",
    created_at: float = 1_700_000_000.25,
    **fields: str | None,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        status=status,
        created_at=created_at,
        updated_at=created_at,
        **fields,  # type: ignore[arg-type]
    )


def make_events(run_id: str, seqs: range | list[int], *, data: str | None = None) -> list[Event]:
    return [
        Event(
            run_id=run_id,
            seq=seq,
            kind="step_completed",
            step=f"step.{seq}",
            attempt=seq % 3,
            ts=1_700_000_000.0 + seq / 1000,
            data=data if data is not None else json.dumps({"seq": seq}),
        )
        for seq in seqs
    ]


async def test_implements_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.group_commit, bool)


# Runs: create, get, list


async def test_create_and_get_round_trips_every_field(store: Store) -> None:
    run = RunRecord(
        run_id="run-full",
        workflow="billing.monthly",
        status="completed",
        created_at=1_700_000_000.123456,
        updated_at=1_700_000_001.654321,
        inputs='{"customer": "c-1"}',
        source="steps: []\n",
        source_hash="ab" * 32,
        result='{"ok": true}',
        error='{"type": "X", "message": "m", "step": "s"}',
        parent_id="run-parent",
    )
    await store.create_run(run)
    assert await store.get_run("run-full") == run
    assert await store.events("run-full") == []
    assert await store.signals("run-full") == {}


async def test_create_run_with_first_events(store: Store) -> None:
    events = make_events("run-1", [1, 2])
    await store.create_run(make_run(), events)
    assert await store.events("run-1") == events


async def test_get_unknown_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound) as info:
        await store.get_run("missing")
    assert info.value.run_id == "missing"


async def test_duplicate_run_id_is_refused_and_keeps_the_original(store: Store) -> None:
    await store.create_run(make_run(workflow="first"), make_events("run-1", [1]))
    with pytest.raises(StoreError) as info:
        await store.create_run(make_run(workflow="second"), make_events("run-1", [2]))
    assert not isinstance(info.value, RunNotFound | JournalConflict)
    assert (await store.get_run("run-1")).workflow == "first"
    assert [e.seq for e in await store.events("run-1")] == [1]


async def test_create_run_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(JournalConflict):
        await store.create_run(make_run(), make_events("run-1", [1, 1]))
    with pytest.raises(RunNotFound):
        await store.get_run("run-1")


async def test_list_runs_newest_first_with_run_id_breaking_ties(store: Store) -> None:
    await store.create_run(make_run("a", created_at=10.0))
    await store.create_run(make_run("c", created_at=20.0))
    await store.create_run(make_run("b", created_at=20.0))
    await store.create_run(make_run("d", created_at=5.0))
    assert [r.run_id for r in await store.list_runs()] == ["c", "b", "a", "d"]


async def test_list_runs_breaks_ties_by_code_point_whatever_the_locale(store: Store) -> None:
    run_ids = ["run-10", "run_1", "Run-2", "run-2", "rün", "ruo"]
    for run_id in run_ids:
        await store.create_run(make_run(run_id, created_at=7.0))
    assert [r.run_id for r in await store.list_runs()] == sorted(run_ids, reverse=True)


async def test_list_runs_filters_and_limits(store: Store) -> None:
    specs: list[tuple[str, str, RunStatus]] = [
        ("r1", "etl", "running"),
        ("r2", "etl", "completed"),
        ("r3", "report", "completed"),
        ("r4", "etl", "completed"),
        ("r5", "report", "failed"),
    ]
    for i, (run_id, workflow, status) in enumerate(specs):
        await store.create_run(make_run(run_id, workflow=workflow, status=status, created_at=i))

    async def ids(**kwargs: object) -> list[str]:
        return [r.run_id for r in await store.list_runs(**kwargs)]  # type: ignore[arg-type]

    assert await ids(status="completed") == ["r4", "r3", "r2"]
    assert await ids(workflow="etl") == ["r4", "r2", "r1"]
    assert await ids(workflow="etl", status="completed") == ["r4", "r2"]
    assert await ids(status="cancelled") == []
    assert await ids(workflow="nope") == []
    assert await ids(limit=2) == ["r5", "r4"]
    assert await ids(status="completed", limit=1) == ["r4"]
    assert await ids(limit=0) == []
    assert len(await store.list_runs()) == 5


async def test_owner_columns_round_trip_survive_updates_and_filter_the_list(
    store: Store,
) -> None:
    owners = [("a1", "acme", "a"), ("b1", "acme", "b"), ("a2", "acme", "a"), ("x1", "globex", "a")]
    owners += [("o1", "acme", None), ("n1", None, None)]
    for i, (run_id, org, team) in enumerate(owners):
        await store.create_run(make_run(run_id, created_at=i, org=org, team=team))
    assert (await store.get_run("x1")).org == "globex"
    assert (await store.get_run("x1")).team == "a"
    assert (await store.get_run("n1")).org is None
    # a status change keeps the owner
    await store.append(make_events("a1", [1]), RunUpdate("completed", 99.0, result="1"))
    done = await store.get_run("a1")
    assert (done.status, done.org, done.team) == ("completed", "acme", "a")

    async def ids(**kwargs: object) -> list[str]:
        return [r.run_id for r in await store.list_runs(**kwargs)]  # type: ignore[arg-type]

    assert await ids(org="acme", team="a") == ["a2", "a1"]  # not globex's team "a"
    assert await ids(team="a") == ["x1", "a2", "a1"]
    assert await ids(org="acme") == ["o1", "a2", "b1", "a1"]
    assert await ids(org="acme", team="b", status="completed") == []
    assert await ids(org="acme", team="a", status="completed") == ["a1"]
    assert await ids(org="acme", team="a", limit=1) == ["a2"]
    assert await ids(org="nobody") == []
    assert len(await store.list_runs()) == 6


async def test_list_runs_default_limit_is_fifty(store: Store) -> None:
    for i in range(55):
        await store.create_run(make_run(f"run-{i:02d}", created_at=i))
    runs = await store.list_runs()
    assert len(runs) == 50
    assert runs[0].run_id == "run-54"
    assert runs[-1].run_id == "run-05"


# The journal: append and read


async def test_append_then_read_in_order_and_after(store: Store) -> None:
    await store.create_run(make_run())
    first, second = make_events("run-1", [1, 2, 3]), make_events("run-1", [4, 5])
    await store.append(first)
    await store.append(second)
    assert await store.events("run-1") == first + second
    assert await store.events("run-1", after=3) == second
    assert await store.events("run-1", after=4) == second[1:]
    assert await store.events("run-1", after=5) == []


async def test_events_are_per_run(store: Store) -> None:
    await store.create_run(make_run("a"))
    await store.create_run(make_run("b"))
    await store.append(make_events("a", [1, 2]))
    await store.append(make_events("b", [1]))
    assert [e.run_id for e in await store.events("a")] == ["a", "a"]
    assert await store.events("b") == make_events("b", [1])


async def test_append_applies_the_update_in_the_same_call(store: Store) -> None:
    await store.create_run(make_run())
    await store.append(make_events("run-1", [1]), RunUpdate("waiting", updated_at=5.0))
    run = await store.get_run("run-1")
    assert (run.status, run.updated_at, run.result, run.error) == ("waiting", 5.0, None, None)

    error = '{"type": "StepFailed", "message": "boom", "step": "s"}'
    await store.append(make_events("run-1", [2]), RunUpdate("failed", 6.0, error=error))
    run = await store.get_run("run-1")
    assert (run.status, run.updated_at, run.result, run.error) == ("failed", 6.0, None, error)

    await store.append(make_events("run-1", [3]), RunUpdate("completed", 7.0, result='{"n": 1}'))
    run = await store.get_run("run-1")
    assert (run.status, run.result, run.error) == ("completed", '{"n": 1}', None)
    assert run.created_at == make_run().created_at


async def test_update_without_result_keeps_the_stored_result(store: Store) -> None:
    await store.create_run(make_run())
    await store.append(make_events("run-1", [1]), RunUpdate("completed", 2.0, result='"r"'))
    await store.append(make_events("run-1", [2]), RunUpdate("running", 3.0))
    assert (await store.get_run("run-1")).result == '"r"'


async def test_empty_append_is_a_no_op_and_a_bare_update_is_refused(store: Store) -> None:
    await store.create_run(make_run())
    await store.append([])
    with pytest.raises(StoreError):
        await store.append([], RunUpdate("completed", 2.0))
    assert (await store.get_run("run-1")).status == "running"


async def test_duplicate_seq_conflicts_and_persists_nothing_of_the_batch(store: Store) -> None:
    await store.create_run(make_run())
    await store.append(make_events("run-1", [1, 2]))
    with pytest.raises(JournalConflict):
        await store.append(make_events("run-1", [3, 4, 2]), RunUpdate("completed", 9.0, '"x"'))
    with pytest.raises(JournalConflict):
        await store.append(make_events("run-1", [5, 5]))
    assert [e.seq for e in await store.events("run-1")] == [1, 2]
    run = await store.get_run("run-1")
    assert (run.status, run.result) == ("running", None)
    await store.append(make_events("run-1", [3]))  # the store is still usable
    assert [e.seq for e in await store.events("run-1")] == [1, 2, 3]


async def test_append_to_unknown_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.append(make_events("missing", [1]))
    with pytest.raises(RunNotFound):
        await store.append(make_events("missing", [1]), RunUpdate("completed", 1.0))
    with pytest.raises(RunNotFound):
        await store.events("missing")
    await store.create_run(make_run("missing"))
    assert await store.events("missing") == []


async def test_large_batch_in_one_append(store: Store) -> None:
    await store.create_run(make_run())
    events = make_events("run-1", range(1, 5001))
    await store.append(events, RunUpdate("completed", 2.0, result="5000"))
    assert await store.events("run-1") == events
    assert await store.events("run-1", after=4990) == events[4990:]
    assert (await store.get_run("run-1")).result == "5000"


async def test_unicode_and_large_payloads(store: Store) -> None:
    run_id = "run-ünïcødé-日本-🚀"
    big = json.dumps({"text": "é漢🙂\u2028" * 100_000, "pad": "x" * 1_000_000}, ensure_ascii=False)
    assert len(big.encode()) > 2_000_000
    await store.create_run(make_run(run_id, workflow="flüsse/流れ", inputs=big))
    event = Event(run_id, 1, "step_completed", step="шаг/ステップ", data=big)
    await store.append([event], RunUpdate("completed", 2.0, result=big))
    assert await store.events(run_id) == [event]
    run = await store.get_run(run_id)
    assert (run.inputs, run.result, run.workflow) == (big, big, "flüsse/流れ")
    await store.put_signal(run_id, "révision ✓", big)
    assert await store.signals(run_id) == {"révision ✓": big}


async def test_concurrent_appends_from_many_tasks(store: Store) -> None:
    await store.create_run(make_run())
    batches = [make_events("run-1", range(10 * i + 1, 10 * i + 11)) for i in range(50)]
    await asyncio.gather(*(store.append(batch) for batch in batches))
    assert [e.seq for e in await store.events("run-1")] == list(range(1, 501))


async def test_concurrent_appends_to_many_runs(store: Store) -> None:
    run_ids = [f"run-{i}" for i in range(20)]
    await asyncio.gather(*(store.create_run(make_run(r)) for r in run_ids))

    async def drive(run_id: str) -> None:
        for seq in range(1, 11):
            await store.append(make_events(run_id, [seq]), RunUpdate("running", float(seq)))
        await store.append(make_events(run_id, [11]), RunUpdate("completed", 11.0, result="1"))

    await asyncio.gather(*(drive(r) for r in run_ids))
    for run_id in run_ids:
        assert [e.seq for e in await store.events(run_id)] == list(range(1, 12))
        assert (await store.get_run(run_id)).status == "completed"
    assert len(await store.list_runs(status="completed")) == 20


# Signals


async def test_signals_first_write_wins(store: Store) -> None:
    await store.create_run(make_run())
    await store.put_signal("run-1", "review", '{"approved": true}')
    await store.put_signal("run-1", "review", '{"approved": false}')
    await store.put_signal("run-1", "other", "1")
    assert await store.signals("run-1") == {"review": '{"approved": true}', "other": "1"}


async def test_signals_are_per_run(store: Store) -> None:
    await store.create_run(make_run("a"))
    await store.create_run(make_run("b"))
    await store.put_signal("a", "review", "a")
    assert await store.signals("b") == {}


async def test_signals_of_unknown_run_raise_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.put_signal("missing", "review", "{}")
    with pytest.raises(RunNotFound):
        await store.signals("missing")


# Durability


async def test_data_survives_close_and_reopen(
    open_durable_store: Callable[[], Awaitable[Store]],
) -> None:
    store = await open_durable_store()
    await store.create_run(make_run())
    await store.append(make_events("run-1", [1, 2]), RunUpdate("waiting", 2.0))
    await store.put_signal("run-1", "review", "ok")
    await store.close()

    reopened = await open_durable_store()
    try:
        assert (await reopened.get_run("run-1")).status == "waiting"
        assert await reopened.events("run-1") == make_events("run-1", [1, 2])
        assert await reopened.signals("run-1") == {"review": "ok"}
        await reopened.append(make_events("run-1", [3]))
        assert len(await reopened.events("run-1")) == 3
    finally:
        await reopened.close()


# SQL specifics: threads on SQLite, settings, URLs


async def test_sqlite_offloaded_to_threads_serialises_writers(tmp_path: Path) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'p.db'}", offload=True)
    try:
        run_ids = [f"run-{i}" for i in range(8)]
        await asyncio.gather(*(store.create_run(make_run(r)) for r in run_ids))
        await asyncio.gather(
            *(
                store.append(make_events(r, range(10 * i + 1, 10 * i + 11)))
                for r in run_ids
                for i in range(10)
            )
        )
        for run_id in run_ids:
            assert [e.seq for e in await store.events(run_id)] == list(range(1, 101))
    finally:
        await store.close()


@pytest.mark.parametrize("level", ["OFF", "normal", "FULL", "EXTRA"])
async def test_sqlite_synchronous_levels(tmp_path: Path, level: str) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'p.db'}", sqlite_synchronous=level)
    try:
        await store.create_run(make_run(), make_events("run-1", [1]))
        assert len(await store.events("run-1")) == 1
    finally:
        await store.close()


async def test_invalid_sqlite_synchronous_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        await open_store(f"sqlite:///{tmp_path / 'p.db'}", sqlite_synchronous="NORMAL; DROP")


async def test_closed_sql_store_refuses_work(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'p.db'}")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("run-1")


async def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    memory = await open_store("memory://")
    assert isinstance(memory, MemoryStore)
    sqlite = await open_store(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'p.db'}")
    try:
        assert isinstance(sqlite, SQLStore)
        assert sqlite.group_commit is True
        assert (tmp_path / "nested" / "dir" / "p.db").exists()
    finally:
        await sqlite.close()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
async def test_open_store_accepts_postgres_aliases(pg_url: str, scheme: str) -> None:
    url = pg_url.replace("postgresql+psycopg", scheme, 1)
    store = await open_store(url)
    try:
        assert isinstance(store, SQLStore)
        await store.list_runs()
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["mysql://root:hunter2@db/podium", "redis://localhost", "sqlite+aiosqlite:///x.db", ""]
)
async def test_open_store_refuses_other_schemes_without_leaking_the_url(url: str) -> None:
    with pytest.raises(ConfigError, match="memory://") as info:
        await open_store(url)
    assert "hunter2" not in str(info.value)
    assert "postgresql://" in str(info.value)


async def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        await open_store("postgresql://user:s3cret@127.0.0.1:1/podium?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert info.value.retryable


@pytest.mark.parametrize(("level", "code"), [("NORMAL", 1), ("FULL", 2)])
def test_sqlite_connections_get_wal_and_pragmas(tmp_path: Path, level: str, code: int) -> None:
    engine = create_store_engine(
        store_url(f"sqlite:///{tmp_path / 'p.db'}"), sqlite_synchronous=level
    )
    try:
        with engine.connect() as conn:

            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == code
            assert pragma("busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()
