"""A run's journal: the append-only event history, written with group commit, read for replay.

The journal is the single source of truth of a run. ``record`` buffers an event; ``commit``
returns once every event recorded so far is durable. When the store is costly to write
(``store.group_commit``), concurrent commits share one transaction: a 1,000-way fan-out costs a
handful of transactions, not a thousand.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_jsonable_python

from podium.errors import StoreError
from podium.types import Clock, Event, EventKind, RunUpdate, Store


def dumps(value: Any) -> str:
    """Canonical compact JSON (pydantic models, dataclasses, Decimals and sets included)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=to_jsonable_python)


class Journal:
    """Writes one run's events in order, batching concurrent commits."""

    __slots__ = (
        "_background",
        "_clock",
        "_durable",
        "_failed",
        "_group",
        "_inflight",
        "_pending",
        "_seq",
        "_store",
        "_timer",
        "concurrent",
        "run_id",
    )

    VISIBLE_AFTER = 0.05
    """A step still running after this many seconds has its ``step_started`` written, so
    watchers (``podium show``, the API) see it; quick steps share one commit with their end."""

    def __init__(self, store: Store, run_id: str, clock: Clock, last_seq: int = 0) -> None:
        self._store = store
        self._clock = clock
        self.run_id = run_id
        self._seq = last_seq
        self._durable = last_seq
        self._pending: list[Event] = []
        self._inflight: asyncio.Future[None] | None = None
        self._group = store.group_commit
        self.concurrent = 0
        """Fan-outs in progress; while any is, a commit waits one loop turn to batch."""
        self._failed: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._background: asyncio.Future[None] | None = None

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest recorded event."""
        return self._seq

    def record(
        self, kind: EventKind, step: str = "", attempt: int = 0, data: str | None = None
    ) -> None:
        """Buffer an event (not yet durable: call ``commit``)."""
        self._seq += 1
        self._pending.append(
            Event(self.run_id, self._seq, kind, step, attempt, self._clock.now(), data)
        )
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.VISIBLE_AFTER, self._surface)

    def _surface(self) -> None:
        """Write what is pending in the background (a long step becomes visible)."""
        self._timer = None
        if self._pending and self._failed is None and self._background is None:
            self._background = task = asyncio.ensure_future(self.commit())
            task.add_done_callback(self._surfaced)

    def _surfaced(self, task: asyncio.Future[None]) -> None:
        self._background = None
        if not task.cancelled():
            task.exception()  # recorded in self._failed; the run's own commit raises it

    def close(self) -> None:
        """Stop the background writer (the run is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def commit(self) -> None:
        """Return once every event recorded so far is durable."""
        if self._failed is not None:
            raise StoreError(f"run {self.run_id}: the journal could not be written") from (
                self._failed
            )
        target = self._seq
        if not self._group:
            if self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._store.append(batch)
                except BaseException as exc:
                    self._failed = exc
                    raise
                self._durable = batch[-1].seq
            return
        while self._durable < target:
            inflight = self._inflight
            if inflight is not None:
                # another task is writing; our events are in its batch or in the next one
                await asyncio.shield(inflight)
                continue
            await self._flush()

    async def _flush(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight = done
        try:
            if self.concurrent:
                # Let every branch that is ready now record its events: they share this commit.
                await asyncio.sleep(0)
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self._store.append(batch)
                except asyncio.CancelledError:
                    # Written or not, we cannot tell: write it again later. If it was written,
                    # the store reports a conflict and the journal fails closed.
                    self._pending[:0] = batch
                    raise
                self._durable = batch[-1].seq
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._failed = exc  # that batch is lost: fail closed from now on
            done.set_exception(exc)
            done.exception()  # retrieved here; waiters re-raise it
            raise
        else:
            done.set_result(None)
        finally:
            self._inflight = None

    async def finish(self, kind: EventKind, update: RunUpdate, data: str | None = None) -> None:
        """Record a run-level event and apply ``update`` in the same transaction."""
        self.close()
        await self.commit()
        self.record(kind, "", 0, data)
        batch, self._pending = self._pending, []
        await self._store.append(batch, update)
        self._durable = batch[-1].seq


@dataclass
class Replay:
    """What a run's history says has already happened, for resume."""

    completed: dict[str, Any] = field(default_factory=dict)
    """Step path → recorded ``step_completed`` payload (``{"o": output, ...}``)."""
    terminal: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Step path → final failure payload (the step failed for good)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Step path → failed attempts so far."""
    review_requested: set[str] = field(default_factory=set)
    last_seq: int = 0
    inputs: Any = None
    file: str | None = None
    """The definition file the run was started from, if any."""

    @classmethod
    def from_events(cls, events: list[Event]) -> Replay:
        """Fold a history into replay state."""
        replay = cls()
        for event in events:
            kind = event.kind
            if kind == "step_completed":
                replay.completed[event.step] = json.loads(event.data) if event.data else {}
            elif kind == "step_failed":
                replay.failures[event.step] = replay.failures.get(event.step, 0) + 1
                payload = json.loads(event.data) if event.data else {}
                if payload.get("final"):
                    replay.terminal[event.step] = payload
            elif kind == "review_requested":
                replay.review_requested.add(event.step)
            elif kind == "run_started" and event.data:
                started = json.loads(event.data)
                replay.inputs = started.get("inputs")
                replay.file = started.get("file")
            replay.last_seq = event.seq
        return replay
