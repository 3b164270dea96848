"""The governance gate: where the call path asks policy, PII redaction and the audit trail.

One :class:`Governance` object plugs into :class:`~podium.gateway.pipeline.Gateway` at three
points of every model call:

1. **Admission** (:meth:`Governance.admit`): the central :class:`~podium.governance.policy.Policy`
   decides for the caller (org, team, project, use case, key), the model asked for and the
   request's data class. A denial raises :class:`~podium.governance.policy.PolicyDenied` before
   anything else happens. Otherwise the decision travels with the call as a :class:`Governed`:
   the output-token ceiling is applied to the request, and PII is handled for the destinations
   the call may reach — redacted into reversible placeholders (``<EMAIL_1>``), or the call is
   refused (``block``) — *before* the cache, the router or any provider sees the text, so
   nothing downstream (cache entries, ledger rows, audit payloads, provider logs) ever holds it.
2. **Routing** (:meth:`Governance.screen`): each deployment the router ranked is checked
   against the policy (its provider and model for this caller) and the data class's
   destinations (``confidential`` → local models only). Excluded deployments are explained like
   any other exclusion (kind ``policy``); when none is left the call is refused by the policy,
   so a confidential request never reaches a hosted provider.
3. **Record** (:meth:`Governance.record`): one audit record per call — ``model_call``, or
   ``policy_violation`` when the policy refused it — with the policy id, version and rule, the
   data class, the PII counts and the route in the clear header, and the (redacted) prompt and
   the response in the encrypted payload. The caller waits for the record to be recorded: if
   the audit write fails, the call fails (**fail closed**). With an audit journal (the gateway's
   default on SQLite) the wait is one ``write`` to the journal file, whose records move into the
   chain in batches (:mod:`podium.governance.journal`); without one, appends from concurrent
   calls are committed together (:class:`AuditWriter`), so the wait is one transaction.

Restoring placeholders in the answer (when the policy allows) happens after the response was
cached and audited: what is stored keeps the placeholders.

Why PII is redacted for the whole call rather than per deployment: the cache, the budget
reservation and the audit trail all see the request before the deployment that serves it is
known, and a fallback may move a call from a local model to a hosted one mid-way. Redacting once
at admission, for the strictest destination the call may reach, is the only point where one
decision covers all of them. A call that can only reach local models (their action is usually
``allow``) is not redacted at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from podium.governance.audit import APPEND_NOW_MAX
from podium.governance.chain import AuditEntry, AuditRecord
from podium.governance.keys import AuditError
from podium.governance.pii import Finding, PiiDetector, PlaceholderVault
from podium.governance.policy import Policy, PolicyDecision, PolicyDenied, Subject
from podium.governance.sink import call_fields
from podium.models.base import ChatChunk, ChatRequest, ChatResponse, Message

if TYPE_CHECKING:
    from podium.gateway.records import Caller, CallRecord
    from podium.gateway.routing import Deployment, Exclusion
    from podium.governance.audit import AuditLog
    from podium.governance.journal import AuditJournal

log = logging.getLogger("podium.governance")

__all__ = ["AuditWriter", "Governance", "Governed", "PiiBlocked", "StreamRestorer"]


class PiiBlocked(PolicyDenied):
    """The policy blocks personal data for a destination the call may reach."""


def _subject(caller: Caller) -> Subject:
    a = caller.attribution
    return Subject(org=a.org, team=a.team, project=a.project, use_case=a.use_case, key_id=a.key_id)


def _is_local(deployment: Deployment) -> bool:
    return deployment.provider == "local"


@dataclass(slots=True)
class Governed:
    """The governance state of one call, from admission to record."""

    decision: PolicyDecision
    subject: Subject
    vault: PlaceholderVault | None = None
    """Originals of the redacted PII (``None``: nothing was redacted)."""
    pii_found: dict[str, int] = field(default_factory=dict)
    """Entity → how many were found (counts only: never the values)."""
    prompt: Any = None
    """What the audit payload keeps of the request (after redaction)."""
    permitted: dict[str, str] = field(default_factory=dict)
    """Deployment id → the rule that allows it (a group's deployments are judged one by one)."""

    @property
    def restores(self) -> bool:
        return self.vault is not None and bool(self.vault) and self.decision.pii_restore

    def restore(self, text: str) -> str:
        if self.vault is None or not self.restores:
            return text
        return self.vault.restore(text)

    def restore_response(self, response: ChatResponse) -> ChatResponse:
        """The answer with the caller's originals back in place of placeholders (if allowed)."""
        if not self.restores:
            return response
        calls = tuple(
            dataclasses.replace(c, arguments=self.restore(c.arguments)) for c in response.tool_calls
        )
        return dataclasses.replace(response, text=self.restore(response.text), tool_calls=calls)

    def policy_fields(self, deployment: str | None = None) -> dict[str, str]:
        """The policy's id, version and the rule that allowed the call (the served
        deployment's, for a group)."""
        d = self.decision
        rule = self.permitted.get(deployment or "", d.rule_id)
        return {"id": d.policy_id, "version": d.policy_version, "rule": rule}


LEAD_MAX = APPEND_NOW_MAX
"""Most records a leading caller commits itself (see :class:`AuditWriter`): what
:meth:`AuditLog.append_now` takes."""


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future nobody awaits as seen (no "exception was never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


class AuditWriter:
    """Group commit for audit appends: callers await their own record; every append queued
    while a transaction runs goes into the next one. Under load a transaction carries many
    calls; unloaded, a call waits for exactly one.

    When the log appends on the event loop's thread (SQLite) and nothing is queued or being
    written, the caller *leads*: it yields once, so that calls finishing in the same loop turn
    queue their records behind its own, then commits them all itself, in one transaction. An
    unloaded call so skips the drain task, its futures and the loop turns between them (~3% of
    a governed gateway call); under load the drain task still carries the batches."""

    def __init__(
        self, log_: AuditLog, *, batch: int = 512, journal: AuditJournal | None = None
    ) -> None:
        self.log = log_
        self.batch = batch
        self.journal = journal
        self._queue: list[tuple[AuditEntry, asyncio.Future[AuditRecord]]] = []
        self._task: asyncio.Task[None] | None = None
        self._leading = False

    async def append(self, entry: AuditEntry) -> AuditRecord:
        """Append one record; return once it is committed."""
        return (await self.append_many([entry]))[0]

    async def submit(self, entries: Sequence[AuditEntry]) -> None:
        """Record entries, in order: written to the audit journal when there is one (see
        :mod:`podium.governance.journal`), else committed into the chain. Returns once they
        are recorded; raises (and records nothing more) when they cannot be."""
        if self.journal is not None:
            self.journal.write(entries)
        else:
            await self.append_many(entries)

    async def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append records (in this order, in one transaction unless the batch is full)."""
        if not entries:
            return []
        if (
            self._leading
            or self._queue
            or (self._task is not None and not self._task.done())
            or len(entries) > LEAD_MAX
            or not self.log.appends_now
        ):
            return await self._queued(entries)
        self._leading = True
        try:
            led = await self._lead(entries)
        finally:
            self._leading = False
            self._start()
        return led if led is not None else await self._queued(entries)

    async def _lead(self, entries: Sequence[AuditEntry]) -> list[AuditRecord] | None:
        """Commit ``entries`` and what queued behind them in one loop turn; ``None`` when the
        log was taken meanwhile (the caller then queues)."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:  # the call happened: its records go in all the same
            for future in self._enqueue(entries, front=True):
                future.add_done_callback(_retrieved)
            raise
        if not self.log.appends_now:
            return None
        batch, self._queue = (
            self._queue[: LEAD_MAX - len(entries)],
            self._queue[LEAD_MAX - len(entries) :],
        )
        try:
            records = self.log.append_now([*entries, *(e for e, _ in batch)])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, future), record in zip(batch, records[len(entries) :], strict=True):
            if not future.done():
                future.set_result(record)
        return records[: len(entries)]

    async def _queued(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        futures = self._enqueue(entries)
        self._start()
        return [await asyncio.shield(f) for f in futures]

    def _enqueue(
        self, entries: Sequence[AuditEntry], *, front: bool = False
    ) -> list[asyncio.Future[AuditRecord]]:
        loop = asyncio.get_running_loop()
        queued = [(entry, loop.create_future()) for entry in entries]
        self._queue = [*queued, *self._queue] if front else [*self._queue, *queued]
        return [future for _, future in queued]

    def _start(self) -> None:
        """Start the drain task if records wait and nobody (task or leader) is writing."""
        if self._queue and not self._leading and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            try:
                records = await self.log.append_many([e for e, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), record in zip(batch, records, strict=True):
                if not future.done():
                    future.set_result(record)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class Governance:
    """Policy, PII redaction and the audit trail, for the gateway's call path.

    Args:
        policy: The central policy (``Policy.default()`` when the operator configured none).
        audit: The audit trail (``None``: calls are governed but not audited).
        journal: Where the audit records are written first, moved into ``audit`` in batches
            (``None``: every call waits for its record's transaction).
        detector: The PII detector (``None``: one for the policy's entities, built lazily).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        audit: AuditLog | None = None,
        journal: AuditJournal | None = None,
        detector: PiiDetector | None = None,
    ) -> None:
        self.policy = policy or Policy.default()
        self.audit = audit
        self.writer = AuditWriter(audit, journal=journal) if audit is not None else None
        self._given = detector
        self._detectors: dict[tuple[str, ...], PiiDetector] = {}

    def __repr__(self) -> str:
        return (
            f"Governance(policy={self.policy.id!r} {self.policy.version}, "
            f"audit={'on' if self.audit is not None else 'off'})"
        )

    def detector(self, entities: Sequence[str]) -> PiiDetector:
        """The detector of these entities (one per entity set; spaCy loads once per process)."""
        if self._given is not None:
            return self._given
        key = tuple(sorted(entities))
        found = self._detectors.get(key)
        if found is None:
            found = self._detectors[key] = PiiDetector(key)
        return found

    # -- admission --------------------------------------------------------------------------------

    def admit(
        self,
        caller: Caller,
        requested: str,
        request: Any,
        *,
        classification: str | None,
        group_is_model: bool,
        reachable: Sequence[Deployment],
    ) -> tuple[Governed, Any]:
        """Decide; apply the output ceiling; redact or block PII. Returns the governed state
        and the request as it will travel on.

        Args:
            requested: The model or group asked for.
            group_is_model: ``requested`` is a catalog model (not a configured group): the
                policy's model rules apply to the name itself. For a group they apply to each
                deployment, at routing.
            reachable: Every deployment of the group (where the call may end up).
        Raises:
            PolicyDenied: The policy refuses the call (model, data class, ceiling, PII).
        """
        subject = _subject(caller)
        decision = self.policy.decide(subject, requested, classification=classification)
        if not decision.allowed and (group_is_model or decision.rule_id != "default-deny"):
            raise self._denied(decision, decision.reason)
        governed = Governed(decision, subject)
        if isinstance(request, ChatRequest):
            request = self._ceiling(governed, request)
        destinations = {
            "local" if _is_local(d) else "hosted"
            for d in reachable
            if ("local" if _is_local(d) else "hosted") in decision.destinations
        }
        actions = {decision.pii_action.get(dest, "allow") for dest in destinations}
        if actions - {"allow"}:
            request = self._pii(governed, request, "block" if "block" in actions else "redact")
        governed.prompt = _prompt_of(request)
        return governed, request

    def _denied(
        self, decision: PolicyDecision, reason: str, *, rule: str | None = None
    ) -> PolicyDenied:
        return PolicyDenied(
            reason,
            policy_id=decision.policy_id,
            policy_version=decision.policy_version,
            rule_id=rule or decision.rule_id,
            reason=reason,
        )

    def _ceiling(self, governed: Governed, request: ChatRequest) -> ChatRequest:
        ceiling = governed.decision.max_output_tokens
        if ceiling is None:
            return request
        if request.max_tokens is None:
            return dataclasses.replace(request, max_tokens=ceiling)
        if request.max_tokens > ceiling:
            d = governed.decision
            raise self._denied(
                d,
                f"policy {d.policy_id} ({d.policy_version}) rule {d.ceiling_id} caps output at "
                f"{ceiling} tokens; the request asks for max_tokens={request.max_tokens}",
                rule=d.ceiling_id,
            )
        return request

    def check_cost(self, governed: Governed, worst_case: Decimal) -> None:
        """Refuse a call whose worst-case cost exceeds the policy's per-call ceiling."""
        d = governed.decision
        if d.max_cost_per_call is not None and worst_case > d.max_cost_per_call:
            raise self._denied(
                d,
                f"policy {d.policy_id} ({d.policy_version}) rule {d.ceiling_id} caps a call at "
                f"${d.max_cost_per_call}; this one may cost up to ${worst_case}",
                rule=d.ceiling_id,
            )

    def _pii(self, governed: Governed, request: Any, action: str) -> Any:
        detector = self.detector(governed.decision.pii_entities)
        texts = _texts_of(request)
        findings: list[list[Finding]] = [detector.detect(t) for t in texts]
        counts: dict[str, int] = {}
        for found in findings:
            for f in found:
                counts[str(f.entity)] = counts.get(str(f.entity), 0) + 1
        governed.pii_found = counts
        if not counts:
            return request
        d = governed.decision
        if action == "block":
            kinds = ", ".join(f"{n} {e}" for e, n in sorted(counts.items()))
            raise PiiBlocked(
                f"policy {d.policy_id} ({d.policy_version}) blocks personal data for a "
                f"destination this call may reach (found {kinds}); remove it, or send the "
                "request with a data class whose destinations allow it",
                policy_id=d.policy_id,
                policy_version=d.policy_version,
                rule_id="pii-block",
                reason=f"personal data found: {kinds}",
            )
        vault = PlaceholderVault()
        redacted = [vault.redact(t, f) if f else t for t, f in zip(texts, findings, strict=True)]
        governed.vault = vault
        return _with_texts(request, redacted)

    # -- routing ----------------------------------------------------------------------------------

    def screen(
        self, governed: Governed, ranked: Sequence[Deployment]
    ) -> tuple[list[Deployment], list[Exclusion]]:
        """Drop the deployments the policy forbids this call, each with its reason."""
        from podium.gateway.routing import Exclusion

        d = governed.decision
        keep: list[Deployment] = []
        dropped: list[Exclusion] = []
        for dep in ranked:
            destination = "local" if _is_local(dep) else "hosted"
            if destination not in d.destinations:
                dropped.append(
                    Exclusion(
                        dep.id,
                        f"policy {d.policy_id}: {d.classification} data may not go to "
                        f"{destination} models",
                        kind="policy",
                    )
                )
                continue
            ok, rule, reason = self.policy.permits(governed.subject, dep.model, dep.provider)
            if not ok:
                dropped.append(
                    Exclusion(dep.id, f"policy {d.policy_id} rule {rule}: {reason}", kind="policy")
                )
                continue
            governed.permitted[dep.id] = rule
            keep.append(dep)
        if not keep:
            reasons = "; ".join(x.reason for x in dropped) or "no deployment"
            rule = (
                "classification"
                if dropped and "data may not go" in dropped[0].reason
                else d.rule_id
            )
            raise self._denied(d, f"no deployment of this model is allowed: {reasons}", rule=rule)
        return keep, dropped

    # -- record -----------------------------------------------------------------------------------

    async def record(
        self,
        record: CallRecord,
        governed: Governed | None,
        response: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Record the call's audit record: return once it is committed into the chain, or
        written to the audit journal when there is one.

        Raises:
            AuditError: The append failed: the call must fail (fail closed).
        """
        if self.writer is None:
            return
        entry = self.entry(record, governed, response, error)
        try:
            await self.writer.submit([entry])
        except AuditError:
            raise
        except Exception as exc:
            raise AuditError(
                f"the audit trail refused the record of call {record.request_id} "
                f"({type(exc).__name__}); the call is failed closed"
            ) from exc

    def entry(
        self,
        record: CallRecord,
        governed: Governed | None,
        response: Any = None,
        error: BaseException | None = None,
    ) -> AuditEntry:
        """The audit entry of one call (``policy_violation`` when the policy refused it)."""
        header, payload = call_fields(record)
        kind = "model_call"
        if governed is not None:
            header["policy"] = governed.policy_fields(record.deployment)
            header["classification"] = governed.decision.classification
            if governed.pii_found:
                header["pii"] = dict(sorted(governed.pii_found.items()))
                header["pii_redacted"] = governed.vault is not None
            payload["prompt"] = governed.prompt
        if response is not None:
            payload["response"] = _response_of(response)
        if isinstance(error, PolicyDenied):
            kind = "policy_violation"
            header["policy"] = {
                "id": error.policy_id,
                "version": error.policy_version,
                "rule": error.rule_id,
                "reason": error.reason,
            }
        return AuditEntry(
            kind=kind,
            actor=record.caller.subject,
            team=record.caller.attribution.team,
            header=header,
            payload=payload,
        )

    async def flush(self) -> None:
        """Move every journaled audit record into the chain (a no-op without a journal)."""
        if self.writer is not None and self.writer.journal is not None:
            await self.writer.journal.flush()

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()


# -- request/response helpers -----------------------------------------------------------------


def _texts_of(request: Any) -> list[str]:
    if isinstance(request, ChatRequest):
        out: list[str] = []
        for m in request.messages:
            if isinstance(m.content, str):
                out.append(m.content)
            else:
                out.extend(str(p.get("text", "")) for p in m.content if p.get("type") == "text")
        return out
    for attr in ("inputs", "texts"):
        value = getattr(request, attr, None)
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
    return []


def _with_texts(request: Any, texts: Sequence[str]) -> Any:
    if isinstance(request, ChatRequest):
        it = iter(texts)
        messages: list[Message] = []
        for m in request.messages:
            if isinstance(m.content, str):
                messages.append(dataclasses.replace(m, content=next(it)))
            else:
                parts = [
                    {**p, "text": next(it)} if p.get("type") == "text" else p for p in m.content
                ]
                messages.append(dataclasses.replace(m, content=parts))
        return dataclasses.replace(request, messages=tuple(messages))
    for attr in ("inputs", "texts"):
        value = getattr(request, attr, None)
        if isinstance(value, (list, tuple)):
            return dataclasses.replace(request, **{attr: type(value)(texts)})
    return request


def _prompt_of(request: Any) -> Any:
    if isinstance(request, ChatRequest):
        return [{"role": m.role, "content": m.text} for m in request.messages]
    texts = _texts_of(request)
    return texts or None


def _response_of(response: Any) -> Any:
    if isinstance(response, ChatResponse):
        out: dict[str, Any] = {"text": response.text, "finish_reason": response.finish_reason}
        if response.tool_calls:
            out["tool_calls"] = [
                {"name": c.name, "arguments": c.arguments} for c in response.tool_calls
            ]
        return out
    if isinstance(response, str):
        return {"text": response}
    return None


class StreamRestorer:
    """Restores placeholders in a stream of deltas, where one may be split across chunks
    (``"<EMA"``, ``"IL_1> thanks"``): text from an unclosed ``<`` is held back until it closes
    or cannot be a placeholder, then released."""

    MAX_PLACEHOLDER = 40

    def __init__(self, governed: Governed) -> None:
        self.governed = governed
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:] and len(text) - cut <= self.MAX_PLACEHOLDER:
            self._held, text = text[cut:], text[:cut]
        else:
            self._held = ""
        return self.governed.restore(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self.governed.restore(held)

    async def wrap(self, chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[ChatChunk]:
        async for chunk in chunks:
            delta = self.feed(chunk.delta)
            if chunk.finish_reason is not None:
                delta += self.flush()
            yield dataclasses.replace(chunk, delta=delta)
