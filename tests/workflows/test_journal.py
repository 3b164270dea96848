"""The journal's writer: long steps become visible while they run, and a store failure fails
the run closed instead of losing or hanging."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from podium import Engine, MemoryStore
from podium.dsl import call, parallel, workflow
from podium.errors import StoreError
from podium.types import Event, RunUpdate, Store


async def test_a_long_step_is_visible_while_it_runs(store: Store) -> None:
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    engine = Engine(store)
    run_id = await engine.start(workflow("w", call("quick", lambda: 1), call("slow", slow)))
    for _ in range(200):
        events = await store.events(run_id)
        if any(e.kind == "step_started" and e.step == "slow" for e in events):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the running step never showed up in the journal")
    assert not any(e.kind == "step_completed" and e.step == "slow" for e in events)
    release.set()
    assert (await engine.wait(run_id)).output == "done"
    await engine.close()


class BrokenStore(MemoryStore):
    """A memory store whose appends start failing after ``ok`` successful ones, batching like a
    disk-backed store does."""

    group_commit = True

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    async def append(self, events: Sequence[Event], update: RunUpdate | None = None) -> None:
        if self.ok <= 0:
            raise StoreError("disk full")
        self.ok -= 1
        await super().append(events, update)


@pytest.mark.parametrize(("ok", "ran"), [(0, 1), (1, 6), (3, 7)])
async def test_a_failed_journal_write_fails_closed(ok: int, ran: int) -> None:
    store = BrokenStore(ok)
    engine = Engine(store)
    calls: list[str] = []

    def step(name: str) -> Any:
        async def run() -> str:  # async: branches start in the same loop turn, deterministically
            calls.append(name)
            return name

        return run

    wf = workflow(
        "w",
        call("a", step("a")),
        parallel("p", *(call(f"b{i}", step(f"b{i}")) for i in range(5))),
        call("c", step("c")),
    )
    with pytest.raises(StoreError):
        await asyncio.wait_for(engine.run(wf), 5)  # never hangs
    # nothing runs after a step whose completion could not be made durable
    assert len(calls) == ran, calls
    [run] = await store.list_runs()
    assert run.status == "running"  # left for resume, not reported as finished
    await engine.close()
