"""The record stage's writer batches ledger rows: it waits a little for more, never past a
full batch or a flush, and loses nothing on close."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from podium.finops.ledger import Attribution, LedgerEntry, MemoryLedger
from podium.gateway.recorder import Recorder
from podium.models.base import Usage


def entry(n: int) -> LedgerEntry:
    return LedgerEntry(
        1_795_000_000.0 + n,
        f"req-{n}",
        "openai/gpt-4o-mini",
        "openai",
        Usage(10, 2),
        Decimal("0.000003"),
        Attribution(team="ml"),
    )


async def test_rows_wait_for_company_then_a_flush_writes_them_at_once() -> None:
    ledger = MemoryLedger()
    recorder = Recorder(ledger, (), linger=30.0)
    for n in range(3):
        recorder.submit(entry(n), None)
    await asyncio.sleep(0.05)
    assert await ledger.entries() == []  # lingering: no transaction per call
    await asyncio.wait_for(recorder.flush(), 1.0)  # does not wait out the 30 s
    assert [e.request_id for e in await ledger.entries()] == ["req-0", "req-1", "req-2"]
    await recorder.close()


async def test_a_full_batch_is_written_without_waiting() -> None:
    ledger = MemoryLedger()
    recorder = Recorder(ledger, (), batch=4, linger=30.0)
    for n in range(4):
        recorder.submit(entry(n), None)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(await ledger.entries()) == 4:
            break
    assert len(await ledger.entries()) == 4
    await recorder.close()


async def test_rows_are_written_after_the_linger_and_close_loses_nothing() -> None:
    ledger = MemoryLedger()
    recorder = Recorder(ledger, (), linger=0.05)
    recorder.submit(entry(1), None)
    await asyncio.sleep(0.3)
    assert len(await ledger.entries()) == 1
    recorder.submit(entry(2), None)
    await recorder.close()
    assert len(await ledger.entries()) == 2
