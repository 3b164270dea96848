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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import SecretStr

from podium.errors import CapabilityUnsupported, ModelNotFound
from podium.finops.budgets import Budgets, ReservationRequest
from podium.finops.ledger import Ledger, LedgerEntry, utc_day
from podium.finops.pricing import UnknownPrice, price, worst_case
from podium.gateway.breaker import Breakers
from podium.gateway.cache import CacheHit, CacheMiss, CacheQuery, ResponseCache
from podium.gateway.cascade import run_cascade
from podium.gateway.limits import LimitRequest, LimitRule, RateLimiter
from podium.gateway.recorder import Recorder
from podium.gateway.records import (
    Admission,
    AdmissionStage,
    CallContext,
    Caller,
    CallOptions,
    CallRecord,
    ModelListing,
    RecordSink,
    Served,
    new_request_id,
    prompt_token_bound,
)
from podium.gateway.resilience import (
    Attempt,
    CallFailed,
    Fallback,
    Outcome,
    Resilience,
    fallback_answer,
)
from podium.gateway.routing import (
    Deployment,
    Exclusion,
    ModelGroup,
    NoDeploymentAvailable,
    RouteDecision,
    Router,
    RouteRequest,
)
from podium.gateway.stream import ChatStream, replay_chunks
from podium.models.base import (
    Capability,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Model,
    ModerationRequest,
    ModerationResponse,
    Usage,
)
from podium.models.catalog import ModelInfo
from podium.models.hub import ModelHub
from podium.types import Clock, SystemClock

if TYPE_CHECKING:
    from podium.governance.gate import Governance

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "Admission",
    "AdmissionStage",
    "CallOptions",
    "CallRecord",
    "Caller",
    "ChatStream",
    "Gateway",
    "ModelListing",
    "RecordSink",
    "Recorder",
    "Served",
    "new_request_id",
    "prompt_token_bound",
    "replay_chunks",
]

log = logging.getLogger("podium.gateway")

R = TypeVar("R")

DEFAULT_MAX_OUTPUT = 4096
"""The output bound reserved (and sent as ``max_tokens``) for a budgeted call to a model whose
catalog entry gives no maximum output, when the request sets none."""


def _restored(ctx: CallContext, response: ChatResponse) -> ChatResponse:
    """The answer for the caller: redacted PII put back when the policy allows."""
    return response if ctx.governed is None else ctx.governed.restore_response(response)


# -- the gateway ----------------------------------------------------------------------------------


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
        cascade_agreement: Cascade groups whose answers below the top tier are judged by two
            deployments' agreement rather than one answer's confidence.
        governance: Policy, PII redaction and the audit trail
            (:class:`~podium.governance.gate.Governance`); ``None``: ungoverned (tests, tools).
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
        cascade_agreement: Iterable[str] = (),
        governance: Governance | None = None,
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
        self._price_gaps: dict[tuple[int, date], tuple[ModelInfo, str | None]] = {}
        """Per deployment and UTC day: why it has no price in force (``None``: it has one)."""
        self.cascade_confidence = dict(cascade_confidence or {})
        self.cascade_agreement = frozenset(cascade_agreement)
        self.governance = governance
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

    def chain(self, model: str, fallbacks: Sequence[str]) -> str:
        """The name of a group that tries ``model``'s deployments, then each fallback's, in that
        order (created on first use): a workflow step's "hosted preferred, local fallback".
        Its baseline is ``model``: what a call served by a fallback would have cost there."""
        if not fallbacks:
            return model
        name = " > ".join((model, *fallbacks))
        if name in self._implicit:
            return name
        seen: dict[str, Deployment] = {}
        for position, member in enumerate((model, *fallbacks)):
            for d in self.group(member).deployments:
                seen.setdefault(d.id, dataclasses.replace(d, priority=position))
        first = self.group(model)
        baseline = first.baseline or (model if self.hub.catalog.lookup(model) else None)
        group = ModelGroup(name, tuple(seen.values()), baseline=baseline)
        self.router.add(group)
        self._implicit[name] = group
        return name

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

    async def _admit(self, ctx: CallContext, request: R, tokens: int) -> R:
        """Admission stages, governance (policy, ceilings, PII) and rate limits; returns the
        request as it travels on (PII redacted when the policy says so)."""
        if self.governance is not None:
            group = self.group(ctx.requested)
            is_model = ctx.requested in self._implicit and len(group.deployments) == 1
            # A catalog alias is judged by its canonical name (what the policy's globs name).
            name = group.deployments[0].model if is_model else ctx.requested
            ctx.governed, request = self.governance.admit(
                ctx.caller,
                name,
                request,
                classification=ctx.options.classification if ctx.options else None,
                group_is_model=is_model,
                # A hosted deployment without a key is never called: it does not make the
                # call's PII handling stricter for the local models that will serve it.
                reachable=[
                    d
                    for d in group.deployments
                    if d.provider == "local" or self.adapter(d).unavailable() is None
                ],
            )
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
        return request

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

    def _usable(self, ranked: Sequence[Deployment]) -> tuple[list[Deployment], list[Exclusion]]:
        """The deployments a call may go to: those with a price in force today (all of them
        when unpriced calls are allowed) and, when the group has another, those configured
        (a hosted model with no API key is skipped, not tried and failed; alone, it is tried,
        so the caller gets the precise error naming the variable to set)."""
        today = utc_day(self.clock.now())
        keep: list[Deployment] = []
        dropped: list[Exclusion] = []
        for d in ranked:
            if not self.allow_unpriced:
                gap = self._price_gap(d, today)
                if gap is not None:
                    dropped.append(Exclusion(d.id, f"no price in force ({gap})", kind="config"))
                    continue
            keep.append(d)
        if len(keep) > 1:
            configured: list[Deployment] = []
            for d in keep:
                reason = self.adapter(d).unavailable()
                if reason is None:
                    configured.append(d)
                else:
                    dropped.append(Exclusion(d.id, reason, kind="config"))
            if configured:
                keep = configured
            else:
                dropped = dropped[: len(dropped) - len(keep)]
        return keep, dropped

    def _price_gap(self, d: Deployment, today: date) -> str | None:
        """Why ``d`` has no price in force on ``today`` (``None``: it has one); remembered per
        catalog entry and day (entries are immutable)."""
        key = (id(d.info), today)
        known = self._price_gaps.get(key)
        if known is not None and known[0] is d.info:
            return known[1]
        try:
            worst_case(d.info, 0, 0, today)
            gap = None
        except UnknownPrice as exc:
            gap = str(exc)
        if len(self._price_gaps) > 4096:  # other days' answers
            self._price_gaps.clear()
        self._price_gaps[key] = (d.info, gap)
        return gap

    async def _reserve(
        self,
        ctx: CallContext,
        deployments: Sequence[Deployment],
        prompt_tokens: int,
        max_output: Callable[[Deployment], int],
        units: Usage | None = None,
    ) -> None:
        governed = ctx.governed
        capped = governed is not None and governed.decision.max_cost_per_call is not None
        budgeted = self.budgets is not None and self.budgets.matching(ctx.caller.attribution)
        if not (capped or budgeted):
            return
        today = utc_day(self.clock.now())
        amount = Decimal(0)
        for d in deployments:
            try:
                cost = worst_case(d.info, prompt_tokens, max_output(d), today, units=units)
            except UnknownPrice:
                continue  # only reachable with allow_unpriced: recorded at zero
            amount = max(amount, cost)
        if capped and self.governance is not None:
            self.governance.check_cost(governed, amount)
        if not budgeted or self.budgets is None:
            return
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

    def _find(self, ctx: CallContext, deployment_id: str | None) -> Deployment | None:
        if deployment_id is None or ctx.route is None:
            return None
        for d in ctx.route.ranked:
            if d.id == deployment_id:
                return d
        return None

    async def _finish(
        self,
        ctx: CallContext,
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
        response: Any = None,
    ) -> CallRecord:
        """The record stage: price, settle, reconcile, learn, queue the ledger rows, and (when
        governed) append the audit record, waiting for it: a failed audit write fails the call."""
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
        if self.governance is not None:
            await self.governance.record(record, ctx.governed, response, error)
        return record

    async def _failed(self, ctx: CallContext, error: BaseException) -> None:
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

    async def _refused(self, ctx: CallContext, error: BaseException) -> None:
        await self._finish(
            ctx, deployment=None, usage=Usage(requests=0), outcome="refused", error=error
        )

    def _context(self, caller: Caller, options: CallOptions, kind: str, model: str) -> CallContext:
        return CallContext(
            options.request_id or new_request_id(self.clock.now()),
            caller,
            kind,
            model,
            time.perf_counter(),
            options=options,
        )

    def _screen(
        self, ctx: CallContext, ranked: Sequence[Deployment]
    ) -> tuple[list[Deployment], list[Exclusion]]:
        """The policy's exclusions (data class destinations, model and provider rules)."""
        if self.governance is None or ctx.governed is None:
            return list(ranked), []
        return self.governance.screen(ctx.governed, ranked)

    # -- chat -------------------------------------------------------------------------------------

    def _route(
        self, ctx: CallContext, request: ChatRequest, stream: bool, tags: Mapping[str, str]
    ) -> RouteDecision:
        self.group(request.model)
        decision = self.router.route(RouteRequest(request, stream, tags))
        allowed, forbidden = self._screen(ctx, decision.ranked)
        ranked, dropped = self._usable(allowed)
        dropped = [*forbidden, *dropped]
        if not ranked:
            raise NoDeploymentAvailable(decision.group, (*decision.excluded, *dropped))
        if dropped:
            decision = dataclasses.replace(
                decision, ranked=tuple(ranked), excluded=(*decision.excluded, *dropped)
            )
        ctx.route = decision
        return decision

    async def _plan(
        self, ctx: CallContext, request: ChatRequest, stream: bool, tags: Mapping[str, str]
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
            request = await self._admit(ctx, request, estimate_tokens(request))
            miss: CacheMiss | None = None
            if self.cache is not None and options.cache:
                found = await self.cache.lookup(self._cache_query(caller, request, options))
                if isinstance(found, CacheHit):
                    record = await self._cache_hit(ctx, found)
                    return Served(_restored(ctx, found.response), record)
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
            response=response,
        )
        if miss is not None and self.cache is not None and not outcome.degraded:
            await self.cache.store(miss, response)
        return Served(_restored(ctx, response), record)

    async def _cascade(
        self,
        ctx: CallContext,
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
                decision,
                tier,
                request,
                threshold=self.cascade_confidence[decision.group],
                judge="agreement" if decision.group in self.cascade_agreement else "confidence",
            )
        except CallFailed as failure:
            if fallback is None:
                raise
            return Outcome(fallback(failure), None, failure.attempts, True, failure)
        kept: Outcome[ChatResponse] = result.outcome
        for step in result.steps:
            # every answer was billed: the unsure tiers' and those asked only to judge another
            for outcome in (step.outcome, *step.others):
                if outcome is not None and outcome is not kept and outcome.deployment is not None:
                    d = self._find(ctx, outcome.deployment)
                    if d is not None:
                        escalations.append((d, outcome.value.usage))
        return kept

    def _baseline(
        self, requested: str, deployment: Deployment | None, usage: Usage
    ) -> Decimal | None:
        """What the call would have cost on the model asked for (a group's declared baseline),
        when routing served another catalog model."""
        if deployment is None:
            return None
        group = self.router.find(requested)
        name = group.baseline if group is not None and group.baseline else requested
        if name == deployment.model:
            return None
        info = self.hub.catalog.lookup(name)  # a group name is no catalog model
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

    async def _cache_hit(self, ctx: CallContext, hit: CacheHit) -> CallRecord:
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
            response=response,
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
        self, ctx: CallContext, name: str, capability: Capability
    ) -> tuple[list[Deployment], list[Exclusion]]:
        group = self.group(name)
        usable = [d for d in group.deployments if capability in d.info.capabilities]
        if usable:
            usable, forbidden = self._screen(ctx, usable)
        else:
            forbidden = []
        if not usable:
            raise CapabilityUnsupported(f"model {name!r} cannot {capability.value}", model=name)
        if self.resilience.breakers is not None:
            open_ = [d for d in usable if not self.resilience.breakers.available(d.id)]
            usable = [d for d in usable if d not in open_] or usable
        ranked, dropped = self._usable(usable)
        dropped = [*forbidden, *dropped]
        if not ranked:
            raise NoDeploymentAvailable(group.name, dropped)
        return ranked, dropped

    async def _unary(
        self,
        ctx: CallContext,
        request: Any,
        capability: Capability,
        tokens: int,
        invoke: Callable[[Model, Any], Awaitable[R]],
        usage_of: Callable[[R], Usage],
        units: Usage | None = None,
    ) -> Served[R]:
        try:
            request = await self._admit(ctx, request, tokens)
            ranked, dropped = self._task_deployments(ctx, ctx.requested, capability)
            ctx.route = RouteDecision(
                ctx.requested,
                "priority",
                tuple(d.id for d in self.group(ctx.requested).deployments),
                tuple(dropped),
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
        usage = usage_of(outcome.value)
        record = await self._finish(
            ctx,
            deployment=deployment,
            usage=usage,
            outcome="ok",
            attempts=outcome.attempts,
            baseline=self._baseline(ctx.requested, deployment, usage),
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
        """Wait until every call's ledger row and records are written, and its audit record
        is in the chain."""
        await self.recorder.flush()
        if self.governance is not None:
            await self.governance.flush()

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
