""":class:`AuditSink`: a gateway record sink (:data:`podium.gateway.records.RecordSink`) that
appends one ``model_call`` record per call, for users' own gateways; Podium's gateway audits through
:class:`~podium.governance.gate.Governance`, which builds on :func:`call_entry`."""

from __future__ import annotations

from typing import Any

from podium.gateway.records import CallRecord
from podium.governance.audit import AuditLog
from podium.governance.chain import AuditEntry, AuditRecord


class AuditSink:
    """Appends each :class:`CallRecord` to an :class:`AuditLog`.

    The clear header holds the ids, models, deployment, cost, outcome and the routing decision;
    the encrypted payload holds the rest of the record (usage, attempts, latency). A failed
    append raises, so a caller that awaits the sink fails closed.
    """

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def __call__(self, record: CallRecord) -> None:
        await self.append(record)

    async def append(self, record: CallRecord) -> AuditRecord:
        return await self._log.append(call_entry(record))


def call_entry(record: CallRecord) -> AuditEntry:
    """The audit entry of one model call."""
    header, payload = call_fields(record)
    return AuditEntry(
        kind="model_call",
        actor=record.caller.subject,
        team=record.caller.attribution.team,
        header=header,
        payload=payload,
    )


def call_fields(record: CallRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload of a model call's audit entry (new dicts, for the caller to add
    to)."""
    who = record.caller.attribution
    header: dict[str, Any] = {
        "request_id": record.request_id,
        "call_kind": record.kind,
        "org": who.org,
        "project": who.project,
        "key_id": who.key_id,
        "run_id": who.run_id,
        "step": who.step,
        "model_requested": record.requested,
        "model_served": record.served,
        "deployment": record.deployment,
        "provider": record.provider,
        "cost": record.cost,
        "outcome": record.outcome,
        "error": record.error,
        "cache": record.cache,
    }
    if record.baseline_cost is not None:
        header["baseline_cost"] = record.baseline_cost
    route = None if record.route is None else record.route.to_dict()
    if route is not None:
        header["route"] = {k: route[k] for k in ("group", "strategy", "chosen", "reason")}
    usage = record.usage
    payload: dict[str, Any] = {
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "characters": usage.characters,
            "images": usage.images,
            "seconds": usage.seconds,
            "requests": usage.requests,
        },
        "attempts": [a.to_dict() for a in record.attempts],
        "route": route,
        "use_case": who.use_case,
        "latency_s": record.latency_s,
        "call_ts": record.ts,
    }
    return {k: v for k, v in header.items() if v is not None}, payload
