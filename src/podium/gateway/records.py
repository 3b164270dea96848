"""The typed inputs and outputs of the call path's stages: who calls (:class:`Caller`), how
(:class:`CallOptions`), what an admission stage sees (:class:`Admission`), what a record sink
receives (:class:`CallRecord`), a response with its receipt (:class:`Served`), and the prompt
bound budgets reserve on."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from podium.finops.budgets import Reservation
from podium.finops.ledger import Attribution
from podium.gateway.cache import namespace
from podium.gateway.limits import Reservation as LimitReservation
from podium.gateway.resilience import Attempt
from podium.gateway.routing import RouteDecision
from podium.models.base import ChatRequest, Usage
from podium.types import ordered_id

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and on whose account: what admission, limits, budgets, the cache namespace
    and the ledger all key on."""

    attribution: Attribution = field(default_factory=Attribution)
    subject: str = "anonymous"
    """Who authenticated (a key id, ``admin``, ``workflow``), for audit."""

    @property
    def cache_namespace(self) -> str:
        """The cache namespace: the caller's team inside its organisation."""
        return namespace(self.attribution.org or "default", self.attribution.team)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call switches."""

    request_id: str | None = None
    """The gateway's id for this call (a new one when ``None``)."""
    cache: bool = True
    """Look up and store in the response cache."""
    semantic_cache: bool = True
    """Allow a semantic (similar-question) cache hit."""
    cache_sampled: bool = False
    """Cache even a sampled request (``temperature > 0`` without a seed)."""
    cache_ttl_s: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    """Routing hints from the caller (e.g. ``complexity: hard``)."""
    classification: str | None = None
    """The data class of the request (``public``, ``internal``, ``confidential``,
    ``restricted``); ``None``: the policy's default class."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What an admission stage sees. A stage refuses by raising a :class:`PodiumError`."""

    request_id: str
    caller: Caller
    kind: Literal["chat", "stream", "embed", "moderate", "classify", "translate", "ocr"]
    model: str
    """The model or group the caller asked for."""
    request: Any
    """The typed request (``ChatRequest``, ``EmbedRequest``…)."""


AdmissionStage = Callable[[Admission], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What happened to one call: the input of every record sink (audit, metrics, lineage)."""

    request_id: str
    caller: Caller
    kind: str
    requested: str
    served: str | None
    """The catalog model that answered (``None``: nothing answered)."""
    deployment: str | None
    provider: str | None
    usage: Usage
    cost: Decimal
    outcome: Literal["ok", "cache_hit", "degraded", "error", "refused"]
    error: str | None = None
    """The error's class name, when the call failed or was refused."""
    cache: Literal["exact", "semantic"] | None = None
    route: RouteDecision | None = None
    attempts: tuple[Attempt, ...] = ()
    baseline_cost: Decimal | None = None
    latency_s: float = 0.0
    ts: float = 0.0


RecordSink = Callable[[CallRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Served(Generic[R]):
    """A response with its receipt."""

    response: R
    record: CallRecord

    @property
    def cost(self) -> Decimal:
        return self.record.cost


@dataclass(slots=True)
class CallContext:
    """One call's state as it moves through the stages."""

    request_id: str
    caller: Caller
    kind: str
    requested: str
    started: float
    limit: LimitReservation | None = None
    hold: Reservation | None = None
    route: RouteDecision | None = None
    options: CallOptions | None = None
    governed: Any = None
    """The call's :class:`~podium.governance.gate.Governed` state, when governance is on."""


@dataclass(frozen=True, slots=True)
class ModelListing:
    """One entry of ``/v1/models``: a configured group or a reachable catalog model."""

    id: str
    kind: Literal["group", "model"]
    owned_by: str
    capabilities: tuple[str, ...]
    context_window: int | None = None


MESSAGE_OVERHEAD_TOKENS = 8
"""Tokens a provider may add per message (role markers, separators) beyond its text."""


def prompt_token_bound(request: ChatRequest) -> int:
    """An upper bound on the prompt's tokens, whatever the tokenizer: a byte-level BPE token
    covers at least one byte of UTF-8, so a text has at most as many tokens as bytes; each
    message and tool adds a fixed overhead. Budgets reserve on this bound so that a prompt the
    character estimate undercounts (digits, code, non-Latin scripts) can never overspend; the
    hold is settled to the real count a moment later."""
    total = MESSAGE_OVERHEAD_TOKENS
    for m in request.messages:
        total += MESSAGE_OVERHEAD_TOKENS + len(m.text.encode("utf-8"))
        if not isinstance(m.content, str):
            total += sum(1 for p in m.content if p.get("type") != "text") * 2_000  # images
        for call in m.tool_calls:
            total += len(call.name.encode()) + len(call.arguments.encode()) + 8
    for tool in request.tools:
        total += len(str(tool.parameters).encode()) + len(tool.description.encode()) + 16
    if request.response_format != "text":
        total += len(str(request.response_format).encode())
    return total


def new_request_id(now: float | None = None) -> str:
    """A request id, ``req_`` and 32 hex digits ordered by ``now`` (see
    :func:`~podium.types.ordered_id`). ``None``: the wall clock, for the ids of answers given
    before a request reaches the gateway (its clock)."""
    return "req_" + ordered_id(time.time() if now is None else now)
