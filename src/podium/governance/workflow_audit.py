"""Audit records for the workflow path: every step, every run transition, every approval.

:class:`AuditedStore` wraps the engine's :class:`~podium.types.Store`. When a batch of journal
events is durable, the matching audit records are appended before the engine goes on: a
``workflow_step`` record per finished or finally failed step (the output's SHA-256 in the clear
header, the output itself in the encrypted payload), a ``workflow_run`` record per run start and
end, and an ``approval`` record per review decision. If the audit append fails, the store call
raises, so the journal fails closed and the run stops rather than running unaudited. (The events
of that batch are already durable; an operator sees the failed run, and its audit gap, at once.)

Wrapping the store, rather than the engine, audits every producer of journal events — the engine,
``resume`` in another process, a decision delivered through the API — with one mechanism.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, cast

from podium.governance.chain import AuditEntry
from podium.governance.gate import AuditWriter
from podium.types import Event, RunRecord, RunUpdate, Store

AUDITED_STEP_EVENTS = frozenset({"step_completed", "step_failed", "review_requested"})
AUDITED_RUN_EVENTS = frozenset(
    {"run_started", "run_completed", "run_failed", "run_cancelled", "run_suspended"}
)


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class AuditedStore:
    """A :class:`~podium.types.Store` that appends audit records for what it journals."""

    def __init__(self, inner: Store, writer: AuditWriter) -> None:
        self.inner = inner
        self.writer = writer
        self._owners: dict[str, tuple[str | None, str | None, str]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _owner(self, run_id: str) -> tuple[str | None, str | None, str]:
        """The run's org, team and workflow (cached: they never change)."""
        found = self._owners.get(run_id)
        if found is None:
            run = await self.inner.get_run(run_id)
            found = (run.org, run.team, run.workflow)
            if len(self._owners) > 10_000:
                self._owners.clear()
            self._owners[run_id] = found
        return found

    async def create_run(self, run: RunRecord, events: Sequence[Event] = ()) -> None:
        await self.inner.create_run(run, events)
        self._owners[run.run_id] = (run.org, run.team, run.workflow)
        await self._audit(events)

    async def append(self, events: Sequence[Event], update: RunUpdate | None = None) -> None:
        await self.inner.append(events, update)
        await self._audit(events)

    async def put_signal(self, run_id: str, name: str, payload: str) -> None:
        await self.inner.put_signal(run_id, name, payload)
        if not name.startswith("review:"):
            return
        org, team, workflow = await self._owner(run_id)
        data = _json(payload)
        decision = data if isinstance(data, dict) else {}
        entry = AuditEntry(
            kind="approval",
            actor=str(decision.get("by") or "unknown"),
            team=team,
            header={
                k: v
                for k, v in {
                    "run_id": run_id,
                    "org": org,
                    "workflow": workflow,
                    "step": name.removeprefix("review:"),
                    "decision": str(decision.get("decision", decision.get("approved", ""))),
                }.items()
                if v is not None
            },
            payload=data,
        )
        await self.writer.submit([entry])

    async def _audit(self, events: Sequence[Event]) -> None:
        entries: list[AuditEntry] = []
        for e in events:
            if e.kind in AUDITED_STEP_EVENTS:
                kind = "workflow_step"
            elif e.kind in AUDITED_RUN_EVENTS:
                kind = "workflow_run"
            else:
                continue
            org, team, workflow = await self._owner(e.run_id)
            header: dict[str, Any] = {
                "run_id": e.run_id,
                "org": org,
                "workflow": workflow,
                "event": e.kind,
                "seq": e.seq,
            }
            if e.step:
                header["step"] = e.step
                header["attempt"] = e.attempt
            digest = _sha256(e.data)
            if digest is not None:
                header["data_sha256"] = digest
            entries.append(
                AuditEntry(
                    kind=kind,
                    actor="workflow",
                    team=team,
                    header={k: v for k, v in header.items() if v is not None},
                    payload=_json(e.data),
                )
            )
        if entries:
            # recorded together: one journal write, or one group commit without a journal
            await self.writer.submit(entries)


def audited(store: Store, gateway: Any) -> Store:
    """``store`` wrapped so the workflow path is audited, when ``gateway`` audits its calls."""
    governance = getattr(gateway, "governance", None)
    writer = getattr(governance, "writer", None)
    if writer is None:
        return store
    return cast(Store, AuditedStore(store, writer))  # a Store by delegation
