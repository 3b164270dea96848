"""In-memory store: fast, for tests and for runs that need not survive the process."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from podium.errors import JournalConflict, RunNotFound, StoreError
from podium.store.purge import purge_event_data, purge_run_fields
from podium.types import Event, RunRecord, RunStatus, RunUpdate


class MemoryStore:
    """Keeps everything in dicts. Same semantics as the SQL stores (see the conformance suite)."""

    group_commit = False

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._signals: dict[str, dict[str, str]] = {}

    async def create_run(self, run: RunRecord, events: Sequence[Event] = ()) -> None:
        if run.run_id in self._runs:
            raise StoreError(f"run {run.run_id!r} already exists")
        self._check_seqs([], events)
        self._runs[run.run_id] = run
        self._events[run.run_id] = list(events)
        self._signals[run.run_id] = {}

    async def get_run(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 50,
        org: str | None = None,
        team: str | None = None,
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (status is None or r.status == status)
            and (workflow is None or r.workflow == workflow)
            and (org is None or r.org == org)
            and (team is None or r.team == team)
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[:limit]

    async def append(self, events: Sequence[Event], update: RunUpdate | None = None) -> None:
        if not events and update is None:
            return
        run_id = events[0].run_id if events else None
        if update is not None and run_id is None:
            raise StoreError("a run update needs at least one event to name the run")
        assert run_id is not None
        journal = self._events.get(run_id)
        if journal is None:
            raise RunNotFound(run_id)
        self._check_seqs(journal, events)
        journal.extend(events)
        if update is not None:
            self._runs[run_id] = dataclasses.replace(
                self._runs[run_id],
                status=update.status,
                updated_at=update.updated_at,
                result=update.result if update.result is not None else self._runs[run_id].result,
                error=update.error,
            )

    async def events(self, run_id: str, *, after: int = 0) -> list[Event]:
        journal = self._events.get(run_id)
        if journal is None:
            raise RunNotFound(run_id)
        return [e for e in journal if e.seq > after]

    async def put_signal(self, run_id: str, name: str, payload: str) -> None:
        signals = self._signals.get(run_id)
        if signals is None:
            raise RunNotFound(run_id)
        signals.setdefault(name, payload)

    async def signals(self, run_id: str) -> dict[str, str]:
        signals = self._signals.get(run_id)
        if signals is None:
            raise RunNotFound(run_id)
        return dict(signals)

    async def purge_run_content(self, run_id: str, *, keep_hash: bool = True) -> bool:
        run = await self.get_run(run_id)
        changed = False
        fields = purge_run_fields(run, keep_hash=keep_hash)
        if fields is not None:
            self._runs[run_id] = dataclasses.replace(run, inputs=fields[0], result=fields[1])
            changed = True
        journal = self._events[run_id]
        for i, event in enumerate(journal):
            data = purge_event_data(event, keep_hash=keep_hash)
            if data is not None:
                journal[i] = dataclasses.replace(event, data=data)
                changed = True
        return changed

    async def close(self) -> None:
        return None

    @staticmethod
    def _check_seqs(journal: Sequence[Event], events: Sequence[Event]) -> None:
        last = journal[-1].seq if journal else 0
        for event in events:
            if event.seq <= last:
                raise JournalConflict(
                    f"run {event.run_id!r}: sequence {event.seq} is already taken"
                )
            last = event.seq
