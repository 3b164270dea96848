"""The record stage's writer: ledger rows and record sinks, in the background, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from podium.finops.ledger import Ledger, LedgerEntry
from podium.gateway.records import CallRecord, RecordSink

log = logging.getLogger("podium.gateway")


class Recorder:
    """Writes ledger rows and feeds record sinks in the background, in batches.

    The response path only appends to a queue; one task drains it, so a burst of calls costs
    one ledger transaction per batch. :meth:`flush` waits until everything queued is written.
    """

    def __init__(
        self, ledger: Ledger | None, sinks: Sequence[RecordSink], *, batch: int = 256
    ) -> None:
        self.ledger = ledger
        self.sinks = tuple(sinks)
        self.batch = batch
        self._queue: list[tuple[LedgerEntry | None, CallRecord | None]] = []
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
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
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
            await self._idle.wait()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
