"""The governed call path: every model call goes admit → cache → route → call → record.

One :class:`Gateway` serves the HTTP gateway (``/v1/*``), the workflows' model steps (it is their
:class:`~podium.types.ModelGateway`, in-process) and the Python API. The stages, in order:

1. **Admit** — the :class:`Caller` (who, for whom: an :class:`~podium.finops.ledger.Attribution`)
   passes each admission stage (governance plugs identity checks, RBAC, policy and PII redaction
   in here; a stage refuses by raising). The model name resolves to a model group (configured, or
   the implicit one-deployment group of a catalog model: any catalog model works unconfigured).
2. **Limit** — the rate limits of the caller's key, team and org and of the requested model are
   taken atomically (all or none); a refusal is :class:`~podium.errors.RateLimitExceeded`.
3. **Cache** — an exact or semantic hit in the caller's namespace answers at zero cost and is
   recorded as a saving.
4. **Route** — the group's strategy ranks the deployments that can take the request (context
   window, capabilities, breakers, a price in force) and explains why.
5. **Budget** — the worst-case cost over every deployment the call may fall back to is reserved
   atomically on each matching budget (:class:`~podium.finops.budgets.BudgetExceeded` otherwise).
   Every refusal so far happens before any provider is contacted.
6. **Call** — :class:`~podium.gateway.resilience.Resilience` tries the ranked deployments with
   retries, backoff, breakers and timeouts; a declared fallback answer degrades gracefully.
7. **Record** — the call is priced exactly (``Decimal``) from the deployment that served; the
   budget hold is settled to that cost (released when nothing was billed), the rate-limit tokens
   reconciled, the routing statistics updated, the response cached, and a ledger row plus a
   :class:`CallRecord` for every record sink (audit, metrics) written — whatever the outcome.

Ledger rows and sink calls are written by a background :class:`Recorder` in batches, so the
response never waits for a database; :meth:`Gateway.flush` waits for them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import SecretStr

from podium.errors import CapabilityUnsupported, ModelNotFound
from podium.finops.budgets import Budgets, Reservation, ReservationRequest
from podium.finops.ledger import Attribution, Ledger, LedgerEntry, utc_day
from podium.finops.pricing import UnknownPrice, price, worst_case
from podium.gateway.breaker import Breakers
from podium.gateway.cache import CacheHit, CacheMiss, CacheQuery, ResponseCache, namespace
from podium.gateway.limits import LimitRequest, LimitRule, RateLimiter
from podium.gateway.limits import Reservation as LimitReservation
from podium.gateway.resilience import (
    Attempt,
    CallFailed,
    Fallback,
    Outcome,
    Resilience,
    fallback_answer,
    fallback_stream,
    is_final_chunk,
)
from podium.gateway.routing import (
    Deployment,
    Exclusion,
    ModelGroup,
    NoDeploymentAvailable,
    RouteDecision,
    Router,
    RouteRequest,
    run_cascade,
)
from podium.models.base import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModerationRequest,
    ModerationResponse,
    ToolCall,
    Usage,
)
from podium.models.hub import ModelHub
from podium.types import Clock, SystemClock

log = logging.getLogger("podium.gateway")

R = TypeVar("R")

DEFAULT_MAX_OUTPUT = 4096
"""The output bound reserved (and sent as ``max_tokens``) for a budgeted call to a model whose
catalog entry gives no maximum output, when the request sets none."""


# -- typed stage inputs and outputs ---------------------------------------------------------------


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


# -- the recorder ---------------------------------------------------------------------------------


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


# -- the gateway ----------------------------------------------------------------------------------


class Unbudgetable(Protocol):
    def __call__(self, deployment: Deployment) -> str | None: ...


@dataclass(slots=True)
class _Context:
    """One call's state as it moves through the stages."""

    request_id: str
    caller: Caller
    kind: str
    requested: str
    started: float
    limit: LimitReservation | None = None
    hold: Reservation | None = None
    route: RouteDecision | None = None


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


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class Gateway:
    """The one call path. Build it with :meth:`from_config` or from its parts.

    Args:
        hub: Models by name (catalog + registry + settings).
        clock: Injected time (cost days, budgets, cache TTLs, limits).
        groups: Configured model groups; any catalog model is also callable by name.
        resilience: Retries, fallbacks, breakers, timeouts.
        cache: The response cache (``None``: no caching).
        limiter: Rate-limit backend; ``limit_rules`` say which scopes are limited.
        budgets: Budgets enforced by reservation (``None``: none).
        ledger: Where priced calls are recorded (``None``: not recorded).
        record_sinks: Further consumers of every :class:`CallRecord` (audit, metrics).
        admission: Stages that may refuse a call before anything else happens.
        fallbacks: Group name → the declared answer when every deployment fails.
        deployment_keys: Deployment id → its API key (resolved from the environment at the edge).
        allow_unpriced: Let calls go to deployments with no price in force (recorded at zero).
        cascade_confidence: Cascade group → the confidence below which a non-streamed answer
            escalates to the next (stronger) tier.
    """

    def __init__(
        self,
        hub: ModelHub,
        *,
        clock: Clock | None = None,
        groups: Sequence[ModelGroup] = (),
        resilience: Resilience | None = None,
        cache: ResponseCache | None = None,
        limiter: RateLimiter | None = None,
        limit_rules: Sequence[LimitRule] = (),
        budgets: Budgets | None = None,
        ledger: Ledger | None = None,
        record_sinks: Sequence[RecordSink] = (),
        admission: Sequence[AdmissionStage] = (),
        fallbacks: Mapping[str, str] | None = None,
        deployment_keys: Mapping[str, SecretStr] | None = None,
        allow_unpriced: bool = False,
        cascade_confidence: Mapping[str, float] | None = None,
    ) -> None:
        self.hub = hub
        self.clock = clock or SystemClock()
        self.resilience = resilience or Resilience(self.clock, breakers=Breakers(self.clock))
        self.router = Router(groups, clock=self.clock, breakers=self.resilience.breakers)
        self.cache = cache
        self.limiter = limiter
        self.limit_rules = {rule.scope: rule for rule in limit_rules}
        self._deployment_rules = any(s.startswith("deployment:") for s in self.limit_rules)
        self.budgets = budgets
        self.ledger = ledger
        self.recorder = Recorder(ledger, record_sinks)
        self.admission = tuple(admission)
        self.fallbacks = dict(fallbacks or {})
        self.deployment_keys = dict(deployment_keys or {})
        self.allow_unpriced = allow_unpriced
        self.cascade_confidence = dict(cascade_confidence or {})
        self._adapters: dict[str, Model] = {}
        self._implicit: dict[str, ModelGroup] = {}
        self.on_close: list[Callable[[], Awaitable[Any]]] = []
        """Closed after the gateway (backends it was built with and owns)."""

    # -- resolution -------------------------------------------------------------------------------

    def group(self, name: str) -> ModelGroup:
        """The configured group called ``name``, else the implicit group of a catalog model."""
        try:
            return self.router.group(name)
        except ModelNotFound:
            pass
        group = self._implicit.get(name)
        if group is None:
            try:
                info = self.hub.info(name)
            except ModelNotFound as exc:
                raise self._not_found(name) from exc
            group = ModelGroup(name, (Deployment(info.name, info),))
            self.router.add(group)
            self._implicit[name] = group
        return group

    def _not_found(self, name: str) -> ModelNotFound:
        import difflib

        known = [*self.router.names(), *(m.name for m in self.hub.catalog)]
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
        return ModelNotFound(
            f"no model or model group {name!r}{hint} (see GET /v1/models or `podium models`)",
            model=name,
        )

    def adapter(self, deployment: Deployment) -> Model:
        """The adapter serving a deployment (its own base URL and key when it declares them)."""
        model = self._adapters.get(deployment.id)
        if model is not None:
            return model
        base_url = deployment.params.get("base_url")
        key = self.deployment_keys.get(deployment.id)
        if base_url is None and key is None:
            model = self.hub.model(deployment.model)
        else:
            settings = self.hub.settings
            urls = dict(settings.provider_urls)
            keys = dict(settings.provider_keys)
            if base_url is not None:
                urls[deployment.provider] = str(base_url)
            if key is not None:
                keys[deployment.provider] = key
            own = settings.model_copy(update={"provider_urls": urls, "provider_keys": keys})
            model = self.hub.registry.provider_factory(deployment.provider)(deployment.info, own)
        self._adapters[deployment.id] = model
        return model

    def listing(self) -> list[ModelListing]:
        """What ``/v1/models`` shows: configured groups, local models, and hosted models whose
        provider has a key."""
        out: list[ModelListing] = []
        seen: set[str] = set()
        for group in self.router.groups():
            if group.name in self._implicit:
                continue
            caps = set[str]()
            for d in group.deployments:
                caps |= {str(c) for c in d.info.capabilities}
            windows = [d.context_window for d in group.deployments if d.context_window]
            out.append(
                ModelListing(
                    group.name, "group", "podium", tuple(sorted(caps)), max(windows, default=None)
                )
            )
            seen.add(group.name)
        keys = self.hub.settings.provider_keys
        for info in self.hub.catalog:
            if info.name in seen:
                continue
            if info.provider != "local" and info.provider not in keys:
                continue
            out.append(
                ModelListing(
                    info.name,
                    "model",
                    info.provider,
                    tuple(sorted(str(c) for c in info.capabilities)),
                    info.context_window,
                )
            )
        return out

    # -- stages shared by every kind of call ------------------------------------------------------

    async def _admit(self, ctx: _Context, request: Any, tokens: int) -> None:
        if self.admission:
            kind: Any = ctx.kind
            admission = Admission(ctx.request_id, ctx.caller, kind, ctx.requested, request)
            for stage in self.admission:
                await stage(admission)
        if self.limiter is not None and self.limit_rules:
            rules = self._rules(ctx.caller, ctx.requested)
            if rules:
                ctx.limit = await self.limiter.acquire(
                    LimitRequest(rules, tokens=tokens, request_id=ctx.request_id)
                )

    def _rules(self, caller: Caller, model: str) -> list[LimitRule]:
        a = caller.attribution
        scopes = (
            f"key:{a.key_id}" if a.key_id else None,
            f"team:{a.team}" if a.team else None,
            f"org:{a.org}" if a.org else None,
            f"project:{a.project}" if a.project else None,
            f"model:{model}",
        )
        return [self.limit_rules[s] for s in scopes if s is not None and s in self.limit_rules]

    def _priced(self, ranked: Sequence[Deployment]) -> tuple[list[Deployment], list[Exclusion]]:
        """Deployments with a price in force today (all of them when unpriced calls are
        allowed)."""
        if self.allow_unpriced:
            return list(ranked), []
        today = utc_day(self.clock.now())
        keep: list[Deployment] = []
        dropped: list[Exclusion] = []
        for d in ranked:
            try:
                worst_case(d.info, 0, 0, today)
            except UnknownPrice as exc:
                dropped.append(Exclusion(d.id, f"no price in force ({exc})", kind="config"))
                continue
            keep.append(d)
        return keep, dropped

    async def _reserve(
        self,
        ctx: _Context,
        deployments: Sequence[Deployment],
        prompt_tokens: int,
        max_output: Callable[[Deployment], int],
        units: Usage | None = None,
    ) -> None:
        if self.budgets is None or not self.budgets.matching(ctx.caller.attribution):
            return
        today = utc_day(self.clock.now())
        amount = Decimal(0)
        for d in deployments:
            try:
                cost = worst_case(d.info, prompt_tokens, max_output(d), today, units=units)
            except UnknownPrice:
                continue  # only reachable with allow_unpriced: recorded at zero
            amount = max(amount, cost)
        ctx.hold = await self.budgets.reserve(
            ReservationRequest(ctx.request_id, ctx.caller.attribution, amount)
        )

    def _cost(self, deployment: Deployment | None, usage: Usage) -> Decimal:
        if deployment is None:
            return Decimal(0)
        try:
            return price(deployment.info, usage, utc_day(self.clock.now())).total
        except UnknownPrice:
            return Decimal(0)

    def _find(self, ctx: _Context, deployment_id: str | None) -> Deployment | None:
        if deployment_id is None or ctx.route is None:
            return None
        for d in ctx.route.ranked:
            if d.id == deployment_id:
                return d
        return None

    async def _finish(
        self,
        ctx: _Context,
        *,
        deployment: Deployment | None,
        usage: Usage,
        outcome: Literal["ok", "cache_hit", "degraded", "error", "refused"],
        error: BaseException | None = None,
        cache: Literal["exact", "semantic"] | None = None,
        attempts: Sequence[Attempt] = (),
        baseline: Decimal | None = None,
        served: str | None = None,
        provider: str | None = None,
        escalations: Sequence[tuple[Deployment, Usage]] = (),
    ) -> CallRecord:
        """The record stage: price, settle, reconcile, learn, and queue the ledger rows."""
        cost = self._cost(deployment, usage) if outcome in ("ok", "error") else Decimal(0)
        earlier = [(d, u, self._cost(d, u)) for d, u in escalations]
        billed = cost + sum((c for _, _, c in earlier), Decimal(0))
        if ctx.hold is not None and self.budgets is not None:
            hold, ctx.hold = ctx.hold, None
            try:
                if billed > 0:
                    settled = await self.budgets.settle(hold, billed)
                    for alert in settled.alerts:  # each threshold is reported once per window
                        log.warning(
                            "budget %s crossed %s%% of its $%s limit in %s: $%s spent",
                            alert.budget_id,
                            alert.threshold * 100,
                            alert.limit,
                            alert.period,
                            alert.spent,
                        )
                else:
                    await self.budgets.release(hold)
            except Exception:
                # The hold stays until its TTL: over-reserving is safe, overspending is not.
                log.exception("could not settle budget reservation %s", hold.id)
        if ctx.limit is not None and self.limiter is not None:
            limit, ctx.limit = ctx.limit, None
            try:
                if outcome in ("ok", "degraded") or usage.total_tokens:
                    await self.limiter.reconcile(limit, usage.total_tokens)
                elif outcome in ("refused",) or not attempts:
                    await self.limiter.release(limit)
                else:
                    await self.limiter.reconcile(limit, usage.total_tokens)
            except Exception:
                log.exception("could not reconcile rate-limit reservation %s", limit.id)
        if deployment is not None and outcome == "ok":
            self.router.stats.record_usage(deployment.id, usage.total_tokens)
        now = self.clock.now()
        record = CallRecord(
            request_id=ctx.request_id,
            caller=ctx.caller,
            kind=ctx.kind,
            requested=ctx.requested,
            served=served or (deployment.model if deployment is not None else None),
            deployment=deployment.id if deployment is not None else None,
            provider=provider or (deployment.provider if deployment is not None else None),
            usage=usage,
            cost=billed,
            outcome=outcome,
            error=type(error).__name__ if error is not None else None,
            cache=cache,
            route=ctx.route,
            attempts=tuple(attempts),
            baseline_cost=baseline,
            latency_s=time.perf_counter() - ctx.started,
            ts=now,
        )
        entry: LedgerEntry | None = None
        if record.served is not None and (usage.requests or usage.total_tokens or cost):
            routed_from = ctx.requested if ctx.requested != record.served else None
            entry = LedgerEntry(
                ts=now,
                request_id=ctx.request_id,
                model=record.served,
                provider=record.provider or "unknown",
                usage=usage,
                cost=cost,
                attribution=ctx.caller.attribution,
                cache_hit=outcome == "cache_hit",
                routed_from=routed_from,
                baseline_cost=baseline,
            )
        for attempt, (d, u, c) in enumerate(earlier, start=1):
            # Cheaper tiers whose answers were judged unsure: billed, so recorded too.
            self.recorder.submit(
                LedgerEntry(
                    ts=now,
                    request_id=ctx.request_id,
                    model=d.model,
                    provider=d.provider,
                    usage=u,
                    cost=c,
                    attribution=ctx.caller.attribution,
                    routed_from=ctx.requested if ctx.requested != d.model else None,
                    attempt=attempt,
                ),
                None,
            )
        self.recorder.submit(entry, record)
        return record

    async def _failed(self, ctx: _Context, error: BaseException) -> None:
        """Record a call that reached the call stage and failed (nothing billed)."""
        attempts = error.attempts if isinstance(error, CallFailed) else ()
        await self._finish(
            ctx,
            deployment=None,
            usage=Usage(requests=0),
            outcome="error",
            error=error,
            attempts=attempts,
        )

    async def _refused(self, ctx: _Context, error: BaseException) -> None:
        await self._finish(
            ctx, deployment=None, usage=Usage(requests=0), outcome="refused", error=error
        )

    def _context(self, caller: Caller, options: CallOptions, kind: str, model: str) -> _Context:
        return _Context(
            options.request_id or new_request_id(), caller, kind, model, time.perf_counter()
        )

    # -- chat -------------------------------------------------------------------------------------

    def _route(
        self, ctx: _Context, request: ChatRequest, stream: bool, tags: Mapping[str, str]
    ) -> RouteDecision:
        self.group(request.model)
        decision = self.router.route(RouteRequest(request, stream, tags))
        ranked, dropped = self._priced(decision.ranked)
        if not ranked:
            raise NoDeploymentAvailable(decision.group, (*decision.excluded, *dropped))
        if dropped:
            decision = dataclasses.replace(
                decision, ranked=tuple(ranked), excluded=(*decision.excluded, *dropped)
            )
        ctx.route = decision
        return decision

    async def _plan(
        self, ctx: _Context, request: ChatRequest, stream: bool, tags: Mapping[str, str]
    ) -> tuple[RouteDecision, ChatRequest]:
        """Route, bound the output when a budget needs it, and reserve the worst case: the
        request as it will be sent, and where it may go."""
        decision = self._route(ctx, request, stream, tags)
        request = self._bounded(request, decision)
        await self._reserve(
            ctx,
            decision.ranked,
            prompt_token_bound(request),
            self._max_output(request, decision.prompt_tokens),
        )
        return decision, request

    def _bounded(self, request: ChatRequest, decision: RouteDecision) -> ChatRequest:
        """Set ``max_tokens`` when a budget must bound a call the request leaves unbounded."""
        if request.max_tokens is not None or self.budgets is None:
            return request
        outputs = [d.info.max_output for d in decision.ranked]
        if all(o is not None for o in outputs):
            return request
        return dataclasses.replace(request, max_tokens=DEFAULT_MAX_OUTPUT)

    def _max_output(self, request: ChatRequest, prompt: int) -> Callable[[Deployment], int]:
        def bound(d: Deployment) -> int:
            if request.max_tokens is not None:
                return request.max_tokens
            candidates = [d.info.max_output or DEFAULT_MAX_OUTPUT]
            if d.context_window:
                candidates.append(max(0, d.context_window - prompt))
            return min(candidates)

        return bound

    async def chat(
        self, request: ChatRequest, caller: Caller, options: CallOptions | None = None
    ) -> Served[ChatResponse]:
        """One chat completion through every stage."""
        options = options or CallOptions()
        ctx = self._context(caller, options, "chat", request.model)
        from podium.gateway.limits import estimate_tokens

        try:
            await self._admit(ctx, request, estimate_tokens(request))
            miss: CacheMiss | None = None
            if self.cache is not None and options.cache:
                found = await self.cache.lookup(self._cache_query(caller, request, options))
                if isinstance(found, CacheHit):
                    record = await self._cache_hit(ctx, found)
                    return Served(found.response, record)
                miss = found
            decision, request = await self._plan(ctx, request, False, options.tags)
        except BaseException as exc:
            await self._refused(ctx, exc)
            raise
        fallback_text = self.fallbacks.get(decision.group)
        fallback = fallback_answer(fallback_text) if fallback_text is not None else None
        escalations: list[tuple[Deployment, Usage]] = []
        try:
            if decision.group in self.cascade_confidence and len(decision.ranked) > 1:
                outcome = await self._cascade(ctx, decision, request, escalations, fallback)
            else:
                outcome = await self.resilience.call(
                    decision.ranked,
                    lambda d: self._chat_on(d, request),
                    needed_tokens=decision.needed_tokens,
                    fallback=fallback,
                )
        except BaseException as exc:
            await self._failed(ctx, exc)
            raise
        response = outcome.value
        deployment = self._find(ctx, outcome.deployment)
        record = await self._finish(
            ctx,
            deployment=deployment,
            usage=response.usage,
            outcome="degraded" if outcome.degraded else "ok",
            error=outcome.error,
            attempts=outcome.attempts,
            baseline=self._baseline(request.model, deployment, response.usage),
            served=response.model_served if outcome.degraded else None,
            provider=response.provider,
            escalations=escalations,
        )
        if miss is not None and self.cache is not None and not outcome.degraded:
            await self.cache.store(miss, response)
        return Served(response, record)

    async def _cascade(
        self,
        ctx: _Context,
        decision: RouteDecision,
        request: ChatRequest,
        escalations: list[tuple[Deployment, Usage]],
        fallback: Fallback[ChatResponse] | None,
    ) -> Outcome[ChatResponse]:
        """Cheapest tier first; escalate while the answer looks unsure. Every tier that answered
        was billed, so each is recorded (``escalations``), not only the one kept."""

        async def tier(deployments: Sequence[Deployment]) -> Outcome[ChatResponse]:
            return await self.resilience.call(
                deployments,
                lambda d: self._chat_on(d, request),
                needed_tokens=decision.needed_tokens,
            )

        try:
            result = await run_cascade(
                decision, tier, request, threshold=self.cascade_confidence[decision.group]
            )
        except CallFailed as failure:
            if fallback is None:
                raise
            return Outcome(fallback(failure), None, failure.attempts, True, failure)
        kept: Outcome[ChatResponse] = result.outcome
        for step in result.steps[:-1]:
            if step.outcome is not None and step.outcome.deployment is not None:
                d = self._find(ctx, step.outcome.deployment)
                if d is not None:
                    escalations.append((d, step.outcome.value.usage))
        return kept

    def _baseline(
        self, requested: str, deployment: Deployment | None, usage: Usage
    ) -> Decimal | None:
        """What the call would have cost on the model asked for, when routing served another
        catalog model."""
        if deployment is None or requested == deployment.model:
            return None
        info = self.hub.catalog.lookup(requested)  # a group name is no catalog model
        if info is None:
            return None
        try:
            return price(info, usage, utc_day(self.clock.now())).total
        except UnknownPrice:
            return None

    async def _chat_on(self, deployment: Deployment, request: ChatRequest) -> ChatResponse:
        model = self.adapter(deployment)
        await self._deployment_limit(deployment, request)
        with self.router.stats.track(deployment.id):
            return await model.chat(request)

    async def _deployment_limit(self, deployment: Deployment, request: Any) -> None:
        """A deployment's own RPM/TPM (``deployment:<id>`` rules): a refusal looks like the
        provider's 429, so resilience moves on to the next deployment."""
        if not self._deployment_rules or self.limiter is None:
            return
        rule = self.limit_rules.get(f"deployment:{deployment.id}")
        if rule is None:
            return
        from podium.errors import RateLimited, RateLimitExceeded
        from podium.gateway.limits import estimate_tokens

        tokens = estimate_tokens(request) if isinstance(request, ChatRequest) else 0
        try:
            await self.limiter.acquire(LimitRequest([rule], tokens=tokens))
        except RateLimitExceeded as exc:
            raise RateLimited(
                str(exc),
                retry_after=exc.retry_after,
                provider=deployment.provider,
                model=deployment.model,
            ) from None

    def _cache_query(
        self, caller: Caller, request: ChatRequest, options: CallOptions
    ) -> CacheQuery:
        return CacheQuery(
            caller.cache_namespace,
            request,
            allow_sampled=options.cache_sampled,
            semantic=options.semantic_cache,
            ttl_s=options.cache_ttl_s,
        )

    async def _cache_hit(self, ctx: _Context, hit: CacheHit) -> CallRecord:
        response = hit.response
        baseline: Decimal | None = None
        served = response.model_served
        try:
            # The provider names a snapshot (``gpt-4o-mini``); the ledger keys on the catalog's
            # name (``openai/gpt-4o-mini``), as for a miss.
            info = self.hub.info(response.model_served)
            served = info.name
            baseline = price(info, hit.saved_usage, utc_day(self.clock.now())).total
        except (ModelNotFound, UnknownPrice):
            baseline = None
        usage = dataclasses.replace(hit.saved_usage)
        return await self._finish(
            ctx,
            deployment=None,
            usage=usage,
            outcome="cache_hit",
            cache=hit.kind,
            baseline=baseline,
            served=served,
            provider=response.provider,
        )

    # -- streaming --------------------------------------------------------------------------------

    def stream(
        self, request: ChatRequest, caller: Caller, options: CallOptions | None = None
    ) -> ChatStream:
        """A streamed chat completion. Call :meth:`ChatStream.start` to run the stages up to the
        first chunk (refusals and failover happen there, before any byte is sent), then iterate.
        """
        return ChatStream(self, request, caller, options or CallOptions())

    # -- embeddings and moderation ----------------------------------------------------------------

    def _task_deployments(
        self, ctx: _Context, name: str, capability: Capability
    ) -> list[Deployment]:
        group = self.group(name)
        usable = [d for d in group.deployments if capability in d.info.capabilities]
        if not usable:
            raise CapabilityUnsupported(f"model {name!r} cannot {capability.value}", model=name)
        if self.resilience.breakers is not None:
            open_ = [d for d in usable if not self.resilience.breakers.available(d.id)]
            usable = [d for d in usable if d not in open_] or usable
        ranked, dropped = self._priced(usable)
        if not ranked:
            raise NoDeploymentAvailable(group.name, dropped)
        return ranked

    async def _unary(
        self,
        ctx: _Context,
        request: Any,
        capability: Capability,
        tokens: int,
        invoke: Callable[[Model, Any], Awaitable[R]],
        usage_of: Callable[[R], Usage],
        units: Usage | None = None,
    ) -> Served[R]:
        try:
            await self._admit(ctx, request, tokens)
            ranked = self._task_deployments(ctx, ctx.requested, capability)
            ctx.route = RouteDecision(
                ctx.requested,
                "priority",
                tuple(d.id for d in ranked),
                (),
                tuple(ranked),
                "first deployment able to " + capability.value,
                {},
                tokens,
                tokens,
            )
            await self._reserve(ctx, ranked, tokens, lambda d: 0, units)
        except BaseException as exc:
            await self._refused(ctx, exc)
            raise

        async def on(d: Deployment) -> R:
            model = self.adapter(d)
            with self.router.stats.track(d.id):
                return await invoke(model, dataclasses.replace(request, model=d.model))

        try:
            outcome = await self.resilience.call(ranked, on)
        except BaseException as exc:
            await self._failed(ctx, exc)
            raise
        deployment = self._find(ctx, outcome.deployment)
        record = await self._finish(
            ctx,
            deployment=deployment,
            usage=usage_of(outcome.value),
            outcome="ok",
            attempts=outcome.attempts,
        )
        return Served(outcome.value, record)

    async def embed(
        self, request: EmbedRequest, caller: Caller, options: CallOptions | None = None
    ) -> Served[EmbedResponse]:
        """Embeddings through admit → route → call → record (not cached)."""
        options = options or CallOptions()
        ctx = self._context(caller, options, "embed", request.model)
        tokens = sum(math.ceil(len(t) / 4) for t in request.inputs)
        return await self._unary(
            ctx, request, Capability.EMBED, tokens, lambda m, r: m.embed(r), lambda r: r.usage
        )

    async def moderate(
        self, request: ModerationRequest, caller: Caller, options: CallOptions | None = None
    ) -> Served[ModerationResponse]:
        """Moderation through admit → route → call → record."""
        options = options or CallOptions()
        ctx = self._context(caller, options, "moderate", request.model)
        tokens = sum(math.ceil(len(t) / 4) for t in request.texts)
        units = Usage(characters=sum(len(t) for t in request.texts), images=len(request.images))
        needs = Capability.MODERATE_TEXT if request.texts else Capability.MODERATE_IMAGE
        return await self._unary(
            ctx,
            request,
            needs,
            tokens,
            lambda m, r: m.moderate(r),
            lambda r: r.usage,
            units,
        )

    async def task(
        self,
        kind: Literal["classify", "translate", "ocr"],
        request: Any,
        caller: Caller,
        options: CallOptions | None = None,
    ) -> Served[Any]:
        """A task model call (classification, language id, translation, OCR)."""
        options = options or CallOptions()
        ctx = self._context(caller, options, kind, request.model)
        texts: Sequence[str] = getattr(request, "inputs", ())
        tokens = sum(math.ceil(len(t) / 4) for t in texts)
        capability, invoke = {
            "classify": (Capability.CLASSIFY, lambda m, r: m.classify(r)),
            "translate": (Capability.TRANSLATE, lambda m, r: m.translate(r)),
            "ocr": (Capability.OCR, lambda m, r: m.ocr(r)),
        }[kind]
        if kind == "classify":
            info_caps = self.group(request.model).deployments[0].info.capabilities
            if Capability.CLASSIFY not in info_caps and Capability.LANGID in info_caps:
                capability = Capability.LANGID
        units = Usage(characters=sum(len(t) for t in texts), images=1 if kind == "ocr" else 0)
        return await self._unary(ctx, request, capability, tokens, invoke, lambda r: r.usage, units)

    # -- the workflows' boundary ------------------------------------------------------------------

    async def call(self, request: Any) -> Any:
        """:class:`~podium.types.ModelGateway`: a workflow step's model call, in-process."""
        from podium.gateway.steps import call_from_step

        return await call_from_step(self, request)

    # -- lifecycle --------------------------------------------------------------------------------

    async def warm(self, names: Sequence[str] = ()) -> None:
        """Load these models (local weights, connections) before the first call."""
        for name in names:
            for d in self.group(name).deployments:
                await self.adapter(d).warm()

    async def warm_local(self) -> list[str]:
        """Load the local models of the configured groups now (the warm pool), so the first
        call does not pay for loading weights; the names of those loaded."""
        local = {
            d.id: d
            for g in self.router.groups()
            if g.name not in self._implicit
            for d in g.deployments
            if d.provider == "local"
        }
        await asyncio.gather(*(self.adapter(d).warm() for d in local.values()))
        return sorted(local)

    async def flush(self) -> None:
        """Wait until every call's ledger row and records are written."""
        await self.recorder.flush()

    async def close(self) -> None:
        """Flush, then close adapters and backends the gateway owns."""
        await self.recorder.close()
        adapters, self._adapters = list(self._adapters.values()), {}
        await asyncio.gather(*(a.close() for a in adapters), return_exceptions=True)
        await self.hub.close()
        closers, self.on_close = self.on_close, []
        for close in reversed(closers):
            try:
                await close()
            except Exception:
                log.exception("closing %r failed", close)


class ChatStream:
    """A streamed chat completion through the call path.

    ``await start()`` runs admit, cache, route and budget, then opens the stream and waits for
    its first chunk — failing over to the next deployment while nothing has been sent. Iterating
    then yields every chunk; the last one carries ``finish_reason`` and usage. A stream that
    breaks after its start raises :class:`~podium.errors.ProviderTimeout` (never a truncated
    success). The record stage runs when the stream ends, however it ends.
    """

    def __init__(
        self, gateway: Gateway, request: ChatRequest, caller: Caller, options: CallOptions
    ) -> None:
        self.gateway = gateway
        self.request = request
        self.caller = caller
        self.options = options
        self.ctx = gateway._context(caller, options, "stream", request.model)
        self.record: CallRecord | None = None
        self.model_served: str | None = None
        self._first: ChatChunk | None = None
        self._source: AsyncIterator[ChatChunk] | None = None
        self._replay: list[ChatChunk] | None = None
        self._miss: CacheMiss | None = None
        self._started = False
        self._text: list[str] = []
        self._tools: list[ToolCall] = []
        self._last: ChatChunk | None = None

    @property
    def request_id(self) -> str:
        return self.ctx.request_id

    @property
    def deployment(self) -> Deployment | None:
        """The deployment serving the stream once started (``None``: a cache hit or a
        declared fallback answer)."""
        served = getattr(self._source, "deployment", None)
        return self.gateway._find(self.ctx, served)

    async def start(self) -> None:
        """Run the stages up to the first chunk. Raises what the non-streamed call would."""
        if self._started:
            return
        self._started = True
        gw, ctx, request = self.gateway, self.ctx, self.request
        from podium.gateway.limits import estimate_tokens

        try:
            await gw._admit(ctx, request, estimate_tokens(request))
            if gw.cache is not None and self.options.cache:
                found = await gw.cache.lookup(gw._cache_query(self.caller, request, self.options))
                if isinstance(found, CacheHit):
                    self.record = await gw._cache_hit(ctx, found)
                    self.model_served = found.response.model_served
                    self._replay = replay_chunks(found.response)
                    return
                self._miss = found
            decision, request = await gw._plan(ctx, request, True, self.options.tags)
            self.request = request
        except BaseException as exc:
            await gw._refused(ctx, exc)
            raise
        text = gw.fallbacks.get(decision.group)
        self._source = gw.resilience.stream(
            decision.ranked,
            lambda d: self._open(d),
            is_final=is_final_chunk,
            needed_tokens=decision.needed_tokens,
            fallback=fallback_stream(text) if text is not None else None,
        )
        try:
            self._first = await anext(self._source)
        except BaseException as exc:
            await self._done(None, exc)
            raise
        self.model_served = self._first.model_served

    def _open(self, deployment: Deployment) -> AsyncIterator[ChatChunk]:
        model = self.gateway.adapter(deployment)

        async def chunks() -> AsyncIterator[ChatChunk]:
            await self.gateway._deployment_limit(deployment, self.request)
            with self.gateway.router.stats.track(deployment.id):
                async for chunk in model.stream(self.request):
                    yield chunk

        return chunks()

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatChunk]:
        await self.start()
        if self._replay is not None:
            for chunk in self._replay:
                yield chunk
            return
        assert self._source is not None
        assert self._first is not None
        text, tools = self._text, self._tools
        try:
            chunk = self._first
            while True:
                text.append(chunk.delta)
                tools.extend(chunk.tool_calls)
                self._last = chunk
                yield chunk
                if is_final_chunk(chunk):
                    break
                chunk = await anext(self._source)
        except StopAsyncIteration:
            pass
        except BaseException as exc:
            # Shielded: a cancelled client must not cut the record stage (settle, ledger).
            await asyncio.shield(self._done(self._last, exc, "".join(text)))
            raise
        await asyncio.shield(self._done(self._last, None, "".join(text), tools))

    async def _done(
        self,
        last: ChatChunk | None,
        error: BaseException | None,
        text: str = "",
        tools: Sequence[ToolCall] = (),
    ) -> None:
        if self.record is not None:
            return
        gw, ctx = self.gateway, self.ctx
        source = self._source
        deployment = gw._find(ctx, getattr(source, "deployment", None))
        degraded = bool(getattr(source, "degraded", False))
        attempts: Sequence[Attempt] = source.attempts if source is not None else ()  # type: ignore[attr-defined]
        usage = last.usage if last is not None and last.usage is not None else None
        if error is not None:
            if usage is None and deployment is not None and text:
                # Billed by the provider up to the cut: charge what was produced.
                usage = Usage(
                    input_tokens=ctx.route.prompt_tokens if ctx.route else 0,
                    output_tokens=math.ceil(len(text) / 4),
                )
            self.record = await gw._finish(
                ctx,
                deployment=deployment,
                usage=usage or Usage(requests=0),
                outcome="error",
                error=error,
                attempts=attempts,
            )
            return
        usage = usage or Usage()
        self.record = await gw._finish(
            ctx,
            deployment=deployment,
            usage=usage,
            outcome="degraded" if degraded else "ok",
            attempts=attempts,
            baseline=gw._baseline(self.request.model, deployment, usage),
            served=last.model_served if degraded and last is not None else None,
        )
        if self._miss is not None and gw.cache is not None and not degraded and last is not None:
            response = ChatResponse(
                text,
                self.request.model,
                (last.model_served or (deployment.model if deployment else self.request.model)),
                deployment.provider if deployment else "unknown",
                usage,
                finish_reason=last.finish_reason or "stop",
                tool_calls=tuple(tools),
            )
            await gw.cache.store(self._miss, response)

    async def aclose(self) -> None:
        """Stop early (the client went away): the record stage still runs."""
        if self._source is not None:
            await self._source.aclose()  # type: ignore[attr-defined]
        if self.record is None and self._started:
            error = asyncio.CancelledError("the client stopped reading the stream")
            await asyncio.shield(self._done(self._last, error, "".join(self._text)))


def replay_chunks(response: ChatResponse) -> list[ChatChunk]:
    """A stored response as a stream: its text, then the final chunk with usage."""
    return [
        ChatChunk(
            delta=response.text,
            tool_calls=tuple(response.tool_calls),
            model_served=response.model_served,
        ),
        ChatChunk(
            finish_reason=response.finish_reason,
            usage=response.usage,
            model_served=response.model_served,
        ),
    ]
