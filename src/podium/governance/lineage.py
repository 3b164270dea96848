"""Lineage: what produced an output — its inputs, template version, model, policy version and the
upstream steps it read.

An output is named two ways:

- a **gateway request id** (``req_…``): one model call. It is found in the audit trail (the
  ``model_call`` record whose header ``request_id`` is that id: model requested and served,
  deployment, policy id/version/rule, data class, cost); when the call was made by a workflow
  step (header ``run_id``/``step``), the step's lineage is added;
- a **workflow step** ``RUN_ID/step/path`` (a step path as the journal keys it:
  ``claims/verify``, ``docs[2]/ocr``). It is found in the run's journal: the step's completion
  and the SHA-256 of what it journaled (the same hash as the ``data_sha256`` of its
  ``workflow_step`` audit record, checked when the trail has it), the run's definition hash, the
  step's spec in that definition — for a model step its ``prompt``/``system``/``messages``
  template, hashed: the *template version* — the upstream steps whose outputs its expressions
  read (found as the planner finds references: :func:`podium.workflows.expressions.compile_value`)
  with their output hashes, and the model calls it made (``model_call`` records with its run id
  and step path).

Everything is reported by hash, never by content, so lineage survives retention: a purged run's
placeholders keep the hashes of what they replaced (:mod:`podium.store.purge`), and shredded
audit records keep their headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from podium.errors import DefinitionError, PodiumError, RunNotFound
from podium.governance.audit import AuditLog
from podium.governance.chain import AuditRecord, canonical_json
from podium.store.purge import purged_hash
from podium.types import Event, RunRecord, Store
from podium.workflows import spec
from podium.workflows.expressions import ExpressionError, compile_value
from podium.workflows.loader import parse_yaml, validate_source

__all__ = [
    "Lineage",
    "LineageNotFound",
    "ModelCallRef",
    "Template",
    "UpstreamStep",
    "lineage",
    "step_id_of",
]


class LineageNotFound(PodiumError):
    """No output has that id (no such request in the audit trail, run or step in the store)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class ModelCallRef:
    """One model call, as its audit record's clear header tells it."""

    seq: int
    """The audit record."""
    ts: float
    kind: str
    """``model_call``, or ``policy_violation`` for a call the policy refused."""
    request_id: str | None
    model_requested: str | None
    model_served: str | None
    deployment: str | None
    provider: str | None
    policy: Mapping[str, Any] | None
    """``{"id", "version", "rule"}`` of the policy that admitted (or refused) it."""
    classification: str | None
    cost: str | None
    outcome: str | None
    chain_hash: str
    shredded: bool

    @classmethod
    def of(cls, record: AuditRecord) -> ModelCallRef:
        f = record.fields
        policy = f.get("policy")
        cost = f.get("cost")
        return cls(
            seq=record.seq,
            ts=record.ts,
            kind=record.kind,
            request_id=_str(f.get("request_id")),
            model_requested=_str(f.get("model_requested")),
            model_served=_str(f.get("model_served")),
            deployment=_str(f.get("deployment")),
            provider=_str(f.get("provider")),
            policy=dict(policy) if isinstance(policy, Mapping) else None,
            classification=_str(f.get("classification")),
            cost=None if cost is None else str(cost),
            outcome=_str(f.get("outcome")),
            chain_hash=record.chain_hash,
            shredded=record.shredded,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "request_id": self.request_id,
            "model_requested": self.model_requested,
            "model_served": self.model_served,
            "deployment": self.deployment,
            "provider": self.provider,
            "policy": None if self.policy is None else dict(self.policy),
            "classification": self.classification,
            "cost": self.cost,
            "outcome": self.outcome,
            "chain_hash": self.chain_hash,
            "payload_shredded": self.shredded,
        }


@dataclass(frozen=True, slots=True)
class UpstreamStep:
    """A step whose output the step's expressions read (``steps.<id>…``)."""

    id: str
    """The step id the expressions name."""
    path: str | None
    """The journaled step that provided it (``None``: it never completed in this run)."""
    output_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "output_sha256": self.output_sha256}


@dataclass(frozen=True, slots=True)
class Template:
    """A model step's prompt template, as the run's definition states it."""

    sha256: str
    """SHA-256 of the canonical JSON of the template parts (``system``/``prompt`` or
    ``messages``): the template version."""
    parts: Mapping[str, Any]
    model: str
    """The model (or group) the definition asks for."""

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "parts": dict(self.parts), "model": self.model}


@dataclass(frozen=True, slots=True)
class Lineage:
    """What produced one output. Every content is named by its SHA-256, never shown."""

    id: str
    """The id asked about."""
    kind: Literal["model_call", "workflow_step"]
    org: str | None = None
    team: str | None = None
    run_id: str | None = None
    step: str | None = None
    """The step path."""
    step_kind: str | None = None
    """``model``, ``call``, ``parallel``… (``None``: the definition could not be read)."""
    status: str | None = None
    """The step's state in the journal: ``completed``, ``failed``, ``running``."""
    workflow: str | None = None
    source_sha256: str | None = None
    """The hash of the definition the run was started from."""
    template: Template | None = None
    inputs_sha256: str | None = None
    """SHA-256 of the run's inputs (JSON text as stored)."""
    reads_inputs: tuple[str, ...] = ()
    """The run inputs the step's expressions read (``inputs.<name>``)."""
    output_sha256: str | None = None
    """SHA-256 of the step's journaled completion (equal to its audit record's
    ``data_sha256``)."""
    output_audited: bool | None = None
    """Whether the trail's ``workflow_step`` record carries that same hash (``None``: no record
    of the completion was found)."""
    upstream: tuple[UpstreamStep, ...] = ()
    model_calls: tuple[ModelCallRef, ...] = ()
    purged: bool = False
    """The run's content was purged by retention (the hashes are the originals')."""
    notes: tuple[str, ...] = field(default=())
    """What could not be determined, and why."""

    @property
    def models(self) -> tuple[str, ...]:
        """The models that served the output, in call order, without repeats."""
        seen: dict[str, None] = {}
        for call in self.model_calls:
            if call.model_served:
                seen.setdefault(call.model_served, None)
        return tuple(seen)

    @property
    def policy(self) -> Mapping[str, Any] | None:
        """The policy (id, version, rule) of the last call, if any call recorded one."""
        for call in reversed(self.model_calls):
            if call.policy is not None:
                return call.policy
        return None

    @property
    def classification(self) -> str | None:
        for call in reversed(self.model_calls):
            if call.classification is not None:
                return call.classification
        return None

    def to_dict(self) -> dict[str, Any]:
        policy = self.policy
        return {
            "id": self.id,
            "kind": self.kind,
            "org": self.org,
            "team": self.team,
            "run_id": self.run_id,
            "step": self.step,
            "step_kind": self.step_kind,
            "status": self.status,
            "workflow": self.workflow,
            "source_sha256": self.source_sha256,
            "template": None if self.template is None else self.template.to_dict(),
            "inputs": {"sha256": self.inputs_sha256, "reads": list(self.reads_inputs)},
            "output_sha256": self.output_sha256,
            "output_audited": self.output_audited,
            "models": list(self.models),
            "policy": None if policy is None else dict(policy),
            "classification": self.classification,
            "upstream": [u.to_dict() for u in self.upstream],
            "model_calls": [c.to_dict() for c in self.model_calls],
            "purged": self.purged,
            "notes": list(self.notes),
        }


# -- finding things -------------------------------------------------------------------------------

_INDEX = re.compile(r"\[\d+\]$")


def step_id_of(path: str) -> str:
    """The step id a journal path ends with: ``claims/verify`` → ``verify``, ``docs[2]/ocr`` →
    ``ocr``, ``docs[2]`` → ``docs``, ``recs/1:similar`` → ``similar``, ``a#fallback`` → ``a``."""
    last = path.rsplit("/", 1)[-1].split("#", 1)[0]
    return _INDEX.sub("", last).rsplit(":", 1)[-1]


def _find_step(node: Any, step_id: str) -> spec._StepBase | None:
    """The step of the definition whose ``id`` is ``step_id`` (depth first)."""
    if isinstance(node, spec._StepBase) and node.id == step_id:
        return node
    if isinstance(node, BaseModel):
        children: Any = [getattr(node, name) for name in type(node).model_fields]
    elif isinstance(node, Mapping):
        children = list(node.values())
    elif isinstance(node, list | tuple):
        children = node
    else:
        return None
    for child in children:
        found = _find_step(child, step_id)
        if found is not None:
            return found
    return None


def _expressions_of(step: spec._StepBase) -> Any:
    """The values of a step whose expressions feed *this* step (not its fallback's)."""
    if isinstance(step, spec.ModelStep):
        return [step.prompt, step.system, step.messages, step.params, step.when]
    if isinstance(step, spec.CallStep | spec.WorkflowStep):
        return [step.input, step.when]
    return step.model_dump(mode="json", exclude={"fallback", "compensate"})


def _template(step: spec.ModelStep) -> Template:
    if step.messages is not None:
        parts: dict[str, Any] = {"messages": step.messages}
    else:
        parts = {k: v for k, v in (("system", step.system), ("prompt", step.prompt)) if v}
    return Template(_sha256(canonical_json(parts)), parts, step.model)


def _output_hash(event: Event) -> str | None:
    """SHA-256 of the journaled completion, or the hash a purge kept."""
    if event.data is None:
        return None
    try:
        data = json.loads(event.data)
    except ValueError:
        return _sha256(event.data)
    if isinstance(data, dict):
        kept = purged_hash(data.get("o"))
        if kept is not None:
            return kept
    return _sha256(event.data)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


async def _calls(audit: AuditLog | None, fields: Mapping[str, Any]) -> list[AuditRecord]:
    if audit is None:
        return []
    return await audit.query(fields=fields, limit=1000)


async def _step_lineage(
    id_: str,
    run_id: str,
    path: str,
    *,
    audit: AuditLog | None,
    store: Store,
    kind: Literal["model_call", "workflow_step"] = "workflow_step",
) -> Lineage:
    try:
        run: RunRecord = await store.get_run(run_id)
    except RunNotFound:
        raise LineageNotFound(f"no run {run_id!r}") from None
    events = await store.events(run_id)
    completed: dict[str, Event] = {}
    status: str | None = None
    last: Event | None = None
    for event in events:
        if event.kind == "step_completed":
            completed[event.step] = event
        if event.step == path:
            last = event
    if last is None:
        known = sorted(completed)[:10]
        raise LineageNotFound(
            f"run {run_id} has no step {path!r}"
            + (f" (steps that completed: {', '.join(known)})" if known else "")
        )
    mine = completed.get(path)
    if mine is not None:
        status = "completed"
    elif last.kind == "step_failed":
        status = "failed"
    elif last.kind == "review_requested":
        status = "waiting"
    else:
        status = "running"
    notes: list[str] = []
    purged = purged_hash(_json(run.inputs)) is not None
    if purged:
        notes.append("the run's content was purged by retention; its hashes are the originals'")
    inputs_sha = purged_hash(_json(run.inputs)) or _sha256(run.inputs)

    step_kind: str | None = None
    template: Template | None = None
    upstream: list[UpstreamStep] = []
    reads: tuple[str, ...] = ()
    definition = _definition(run, notes)
    step_id = step_id_of(path)
    step = _find_step(definition, step_id) if definition is not None else None
    if definition is not None and step is None:
        notes.append(f"step id {step_id!r} is not named in the run's definition")
    if step is not None:
        step_kind = spec.step_kind(step)
        if isinstance(step, spec.ModelStep):
            template = _template(step)
        try:
            refs = compile_value(_expressions_of(step)).refs
        except ExpressionError as exc:
            notes.append(f"the step's expressions do not compile: {exc}")
        else:
            reads = tuple(sorted(refs.inputs))
            for ref in sorted(refs.steps):
                candidates = [p for p in completed if step_id_of(p) == ref and p != path]
                best = max(candidates, key=lambda p: (_common_prefix(p, path), p), default=None)
                upstream.append(
                    UpstreamStep(ref, best, None if best is None else _output_hash(completed[best]))
                )

    output_sha = None if mine is None else _output_hash(mine)
    calls = await _calls(audit, {"run_id": run_id, "step": path})
    model_calls = tuple(ModelCallRef.of(r) for r in calls if r.kind != "workflow_step")
    audited: bool | None = None
    for record in calls:
        if record.kind == "workflow_step" and record.fields.get("event") == "step_completed":
            audited = record.fields.get("data_sha256") == output_sha
    if audit is None:
        notes.append("no audit trail: model calls and policy are not known")
    return Lineage(
        id=id_,
        kind=kind,
        org=run.org,
        team=run.team,
        run_id=run_id,
        step=path,
        step_kind=step_kind,
        status=status,
        workflow=run.workflow,
        source_sha256=run.source_hash or None,
        template=template,
        inputs_sha256=inputs_sha,
        reads_inputs=reads,
        output_sha256=output_sha,
        output_audited=audited,
        upstream=tuple(upstream),
        model_calls=model_calls,
        purged=purged,
        notes=tuple(notes),
    )


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _definition(run: RunRecord, notes: list[str]) -> spec.Workflow | None:
    source = run.source
    if not source:
        notes.append("the run has no stored definition")
        return None
    if source.startswith("python:"):
        notes.append(f"the definition is Python code ({source}); its steps are not inspected")
        return None
    try:
        return validate_source(parse_yaml(source, f"<run {run.run_id}>"))
    except DefinitionError as exc:
        notes.append(f"the stored definition does not parse: {exc}")
        return None


async def lineage(id: str, *, audit: AuditLog | None, store: Store | None) -> Lineage:
    """The lineage of a gateway request id (``req_…``) or a workflow step (``RUN_ID/path``).

    Raises:
        LineageNotFound: Nothing has that id (or where it would be is not configured).
    """
    id = id.strip()
    if "/" in id:
        run_id, _, path = id.partition("/")
        if not run_id or not path:
            raise LineageNotFound(f"a step reference is RUN_ID/step/path, not {id!r}")
        if store is None:
            raise LineageNotFound("no run store is configured")
        return await _step_lineage(id, run_id, path, audit=audit, store=store)
    if audit is None:
        raise LineageNotFound("no audit trail is configured: request ids are found there")
    records = await audit.query(fields={"request_id": id}, limit=10)
    calls = [r for r in records if r.kind != "workflow_step"]
    if not calls:
        raise LineageNotFound(f"no model call {id!r} in the audit trail")
    refs = tuple(ModelCallRef.of(r) for r in calls)
    first = calls[0]
    call_run, call_step = _str(first.fields.get("run_id")), _str(first.fields.get("step"))
    notes: tuple[str, ...] = ()
    if call_run and call_step and store is not None:
        try:
            found = await _step_lineage(id, call_run, call_step, audit=audit, store=store)
        except LineageNotFound as exc:
            notes = (f"the step that made the call is gone: {exc}",)
        else:
            # the step seen from one of its calls: that call first, then the step's others
            seqs = {c.seq for c in refs}
            others = tuple(c for c in found.model_calls if c.seq not in seqs)
            return dataclasses.replace(found, kind="model_call", model_calls=refs + others)
    return Lineage(
        id=id,
        kind="model_call",
        org=_str(first.fields.get("org")),
        team=first.team,
        run_id=call_run,
        step=call_step,
        model_calls=refs,
        notes=notes,
    )
