"""Recovery at start-up never drives a run that is being started at the same moment.

A server recovers interrupted runs in the background while it already accepts new ones. A new
run is stored as ``running`` before the engine starts driving it, and the store may yield to the
event loop in between (an audited store appends to the audit trail; a remote database waits on
the network): recovery must not mistake it for a crashed run and drive it a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from podium import Engine, MemoryStore
from podium.dsl import call, workflow
from podium.testing import FakeClock
from podium.types import Event, RunRecord


class SlowCreateStore(MemoryStore):
    """A memory store whose ``create_run`` yields to the loop after writing, until released."""

    def __init__(self) -> None:
        super().__init__()
        self.created = asyncio.Event()
        self.release = asyncio.Event()

    async def create_run(self, run: RunRecord, events: Sequence[Event] = ()) -> None:
        await super().create_run(run, events)
        self.created.set()
        await self.release.wait()


async def test_recovery_skips_a_run_that_is_being_started() -> None:
    calls: list[int] = []

    def step() -> int:
        calls.append(1)
        return len(calls)

    wf = workflow("once", call("step", step))
    store = SlowCreateStore()
    engine = Engine(store, clock=FakeClock())
    try:
        starting = asyncio.ensure_future(engine.start(wf))
        await store.created.wait()
        [stored] = await store.list_runs(status="running")  # stored, not yet driven
        assert await engine.recover(wf) == []
        store.release.set()
        run_id = await starting
        assert run_id == stored.run_id
        result = await engine.wait(run_id)
    finally:
        await engine.close()
    assert result.ok, result.error
    assert calls == [1]
    seqs = [e.seq for e in await store.events(run_id)]
    assert seqs == sorted(set(seqs))
    # Once it is being driven, a later recovery finds it finished, not running.
    assert await store.list_runs(status="running") == []
