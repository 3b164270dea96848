"""The record stage's writer: ledger rows and record sinks, in the background, in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from podium.finops.ledger import Ledger, LedgerEntry
from podium.gateway.records import CallRecord, RecordSink

log = logging.getLogger("podium.gateway")


class Recorder:
    """Writes ledger rows and feeds record sinks in the background, in batches.

    The response path only appends to a queue; one task drains it, waiting up to ``linger``
    seconds for more rows unless ``batch`` are queued, so steady traffic costs one ledger
    transaction per batch rather than per call (on SQLite a transaction runs on the event loop:
    per call it was ~0.3 ms of the gateway's CPU). Budgets are settled inline, not here, so the
    delay never lets spend outrun a budget; a crash loses at most ``linger`` of ledger rows
    more than it already could. :meth:`flush` writes at once and waits until everything queued
    is written.
    """

    def __init__(
        self,
        ledger: Ledger | None,
        sinks: Sequence[RecordSink],
        *,
        batch: int = 256,
        linger: float = 0.05,
    ) -> None:
        self.ledger = ledger
        self.sinks = tuple(sinks)
        self.batch = batch
        self.linger = linger
        self._queue: list[tuple[LedgerEntry | None, CallRecord | None]] = []
        self._now = asyncio.Event()
        """Set when waiting for more rows must stop (a full batch, a flush)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.ledger is not None or bool(self.sinks)

    def submit(self, entry: LedgerEntry | None, record: CallRecord | None) -> None:
        if not self.active:
            return
        self._queue.append((entry, record))
        self._idle.clear()
        self._wake.set()
        if len(self._queue) >= self.batch:
            self._now.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger > 0 and not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.linger)
            self._now.clear()
            while self._queue:
                batch, self._queue = self._queue[: self.batch], self._queue[self.batch :]
                await self._write(batch)
            if not self._queue:
                self._idle.set()

    async def _write(self, batch: Sequence[tuple[LedgerEntry | None, CallRecord | None]]) -> None:
        entries = [e for e, _ in batch if e is not None]
        if entries and self.ledger is not None:
            try:
                await self.ledger.record_many(entries)
            except Exception:
                self.failures += len(entries)
                log.exception("could not write %d ledger row(s)", len(entries))
        for sink in self.sinks:
            for _, record in batch:
                if record is None:
                    continue
                try:
                    await sink(record)
                except Exception:
                    self.failures += 1
                    log.exception("record sink %r failed", sink)

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._queue or not self._idle.is_set():
            self._now.set()
            await self._idle.wait()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
