"""The app's lifespan: it opens the store, recovers interrupted runs, and lets go cleanly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from podium import Engine, MemoryStore, load_workflow, open_store
from podium.api import create_app
from podium.api.state import ApiState
from podium.config import Settings
from podium.errors import ConfigError, WorkflowError
from tests.api.support import TOKEN, serving, wait_for, wait_for_gate


async def test_runs_a_stopped_server_left_running_are_recovered_at_start_up(
    tmp_path: Path, workflows_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podium.api")
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    settings = Settings(home=tmp_path / ".podium", database_url=url)
    flag = tmp_path / "flag"

    first = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(first) as client:
        started = await client.post(
            "/api/workflows/gated/runs", json={"inputs": {"flag": str(flag)}}
        )
        run_id = started.json()["run_id"]
        await wait_for_gate(flag)
    # the server went away mid-run: the run is left running in the database
    store = await open_store(url)
    assert (await store.get_run(run_id)).status == "running"
    await store.close()

    flag.touch()
    second = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    message = "recovery: resumed 1 run(s) a crash left running (1 completed)"
    async with serving(second) as client:
        done = await wait_for(client, run_id, "completed", "failed")
        # The run's status is durable before its last audit record and before recover() returns
        # and logs: wait for the log line while the server is up.
        for _ in range(100):
            if message in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert done["status"] == "completed"
    assert done["output"] == "opened"
    assert message in caplog.text


async def test_recovery_with_injected_engines(tmp_path: Path, workflows_dir: Path) -> None:
    store = MemoryStore()
    settings = Settings(database_url="memory://")
    flag = tmp_path / "flag"
    crashed = Engine(store)
    first = create_app(settings, engine=crashed, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(first) as client:
        started = await client.post(
            "/api/workflows/gated/runs", json={"inputs": {"flag": str(flag)}}
        )
        run_id = started.json()["run_id"]
        await wait_for_gate(flag)
    await crashed.close()  # the process dies: the run stays "running"
    assert (await store.get_run(run_id)).status == "running"

    flag.touch()
    engine = Engine(store)
    second = create_app(settings, engine=engine, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(second) as client:
        done = await wait_for(client, run_id, "completed", "failed")
    assert done["output"] == "opened"
    await engine.close()


async def test_an_injected_engine_is_left_open(workflows_dir: Path) -> None:
    store = MemoryStore()
    engine = Engine(store)
    app = create_app(
        Settings(database_url="memory://"),
        engine=engine,
        workflows_dir=workflows_dir,
        admin_token=TOKEN,
    )
    async with serving(app) as client:
        assert (await client.get("/api/workflows/hello")).status_code == 200
    result = await engine.run(load_workflow(workflows_dir / "hello.yaml"), {"name": "Bo"})
    assert result.output["greeting"] == "Hello, Bo!"
    await engine.close()
    await store.close()


@pytest.mark.parametrize("settings", ["memory", "sqlite"], indirect=True)
async def test_nothing_to_recover_is_logged_too(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podium.api")
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app) as client:
        await client.get("/healthz")
        async with asyncio.timeout(5):
            while "recovery:" not in caplog.text:
                await asyncio.sleep(0.01)
    assert "recovery: no runs were left running" in caplog.text


async def test_a_bad_store_url_fails_start_up_without_leaking_it() -> None:
    app = create_app(Settings(database_url="mysql://root:hunter2@db/x"), admin_token=TOKEN)
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'") as caught:
        async with serving(app):
            pass
    assert "hunter2" not in str(caught.value)


def test_an_empty_admin_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="admin token must not be empty"):
        create_app(Settings(database_url="memory://"), admin_token="")


async def test_background_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    state = ApiState()

    async def refused() -> None:
        raise WorkflowError("the definition changed", run_id="r1")

    async def broken() -> None:
        raise RuntimeError("bug")

    async def forever() -> None:
        await asyncio.Event().wait()

    first = state.spawn(refused(), what="resuming run r1")
    second = state.spawn(broken(), what="resuming run r2")
    await asyncio.gather(first, second, return_exceptions=True)
    assert "resuming run r1 failed: the definition changed" in caplog.text
    crash = next(r for r in caplog.records if "resuming run r2 crashed" in r.getMessage())
    assert crash.exc_info is not None
    assert state.tasks == set()

    pending = state.spawn(forever(), what="a long wait")
    never_started = state.spawn(forever(), what="cancelled before it ran")
    await asyncio.sleep(0)
    await state.stop()
    assert pending.cancelled()
    assert never_started.cancelled()
    assert state.tasks == set()


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_ready_once_the_store_and_the_gateway_are_open(settings: Settings) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app) as client:
        ready = await client.get("/readyz")  # no token: probes carry none
    assert ready.status_code == 200
    assert ready.json() == {"store": True, "gateway": True}
    state = app.state.podium
    assert state.engine is None  # after shutdown
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://podium.test"
    ) as raw:  # no lifespan: nothing is open
        starting = await raw.get("/readyz")
    assert starting.status_code == 503
    assert starting.json() == {"store": False, "gateway": False}
