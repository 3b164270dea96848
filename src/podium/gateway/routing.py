"""Routing: a model group (an alias clients call) over deployments, and the strategy that ranks
them for each request — with the reasons, so every decision can be audited.

A :class:`Deployment` is one way to reach a catalog model: provider parameters, a *reference* to
its key (never the key), a weight, RPM/TPM limits, a priority and a cascade tier. A
:class:`ModelGroup` names a set of them and a :class:`RoutingStrategy`. :meth:`Router.route`
takes one :class:`RouteRequest` and returns a :class:`RouteDecision`: the chosen deployment, the
ranked fallback order, every candidate considered, every deployment excluded and why, and the
strategy's reason. Exclusions come first and are strategy-independent: a deployment that cannot
fit the prompt + ``max_tokens`` in its context window (tokens estimated as characters / 4 unless a
counter is given), lacks a needed capability, or has an open circuit breaker is never chosen.

Strategies: :class:`PriorityStrategy`, :class:`WeightedStrategy` (seeded RNG),
:class:`LeastLatencyStrategy` (EWMA), :class:`LeastCostStrategy` (catalog price, ``Decimal``),
:class:`LeastBusyStrategy` (in flight), :class:`UsageBasedStrategy` (RPM/TPM headroom this minute)
and :class:`CascadeStrategy` — the cheapest tier first unless a :class:`ComplexityScorer` says
the request is hard. :func:`run_cascade` then escalates tier by tier while a
:class:`ConfidenceFn` finds the answer unsure. Scorers and confidence functions are Protocols, so
a learned router plugs in beside the heuristics here.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from random import Random
from typing import Any, Literal, Protocol

from podium.errors import ModelError, ModelNotFound
from podium.gateway.breaker import Breakers
from podium.models.base import Capability, ChatRequest
from podium.models.catalog import ModelInfo
from podium.types import Clock

# -- what is routed -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to reach a catalog model."""

    id: str
    """Unique name, e.g. ``gpt-4o@azure-eu``."""
    info: ModelInfo
    """The catalog entry (provider, context window, prices)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Provider parameters (base URL, API version…); never secrets."""
    key_ref: str | None = None
    """Where the key lives (an environment variable's name), never the key itself."""
    weight: float = 1.0
    rpm: int | None = None
    """Requests per minute this deployment may take (``None``: unlimited)."""
    tpm: int | None = None
    """Tokens per minute."""
    priority: int = 0
    """Lower goes first."""
    tier: int = 0
    """Cascade rung: 0 is the cheapest; higher tiers are stronger."""
    max_context: int | None = None
    """A smaller context window than the catalog's (e.g. a vLLM ``max_model_len``)."""

    @property
    def model(self) -> str:
        return self.info.name

    @property
    def provider(self) -> str:
        return self.info.provider

    @property
    def context_window(self) -> int | None:
        return self.max_context or self.info.context_window


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What routing looks at."""

    chat: ChatRequest
    """``chat.model`` names the group (or one of its aliases)."""
    stream: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Tags from the caller (e.g. ``complexity: hard``), team, use case."""


@dataclass(frozen=True, slots=True)
class Exclusion:
    deployment: str
    reason: str
    transient: bool = False
    """Will pass by itself (open breaker, RPM used up), so retrying later may succeed."""
    kind: Literal["capacity", "request", "config", "policy"] = "capacity"
    """Why, for the caller: ``request`` — this request cannot fit the deployment (context
    window, a capability, ``max_tokens``), so the client must change it; ``config`` — the
    operator must (no price, no key); ``capacity`` — the deployment is busy or unhealthy;
    ``policy`` — the central policy forbids it this caller or this data class."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """A strategy's answer: the order (best first), why, and any deployments it ruled out."""

    order: tuple[Deployment, ...]
    reason: str
    scores: Mapping[str, str] = field(default_factory=dict)
    """Per deployment id, what the strategy measured (latency, cost, headroom…)."""
    excluded: tuple[Exclusion, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Why this deployment: everything needed to audit a routing decision."""

    group: str
    strategy: str
    candidates: tuple[str, ...]
    """Every deployment of the group, considered in declaration order."""
    excluded: tuple[Exclusion, ...]
    ranked: tuple[Deployment, ...]
    """The chosen one first, then the fallback order."""
    reason: str
    scores: Mapping[str, str]
    prompt_tokens: int
    needed_tokens: int
    """Prompt + ``max_tokens``: what a context window must hold."""

    @property
    def chosen(self) -> Deployment:
        return self.ranked[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record for the audit trail."""
        return {
            "group": self.group,
            "strategy": self.strategy,
            "chosen": self.chosen.id,
            "reason": self.reason,
            "ranked": [d.id for d in self.ranked],
            "candidates": list(self.candidates),
            "excluded": [{"deployment": e.deployment, "reason": e.reason} for e in self.excluded],
            "scores": dict(self.scores),
            "prompt_tokens": self.prompt_tokens,
            "needed_tokens": self.needed_tokens,
        }


class NoDeploymentAvailable(ModelError):
    """Every deployment of a group was excluded; ``excluded`` says why, one by one."""

    def __init__(self, group: str, excluded: Sequence[Exclusion]) -> None:
        self.group = group
        self.excluded = tuple(excluded)
        why = "; ".join(f"{e.deployment}: {e.reason}" for e in excluded) or "it has none"
        transient = bool(excluded) and any(e.transient for e in excluded)
        super().__init__(
            f"no deployment of {group!r} can take this request ({why})",
            model=group,
            retryable=transient,
        )


# -- observations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinuteUsage:
    requests: int = 0
    tokens: int = 0


class RoutingStats:
    """What the router has observed, per deployment id: latency (EWMA), calls in flight and
    usage in the current minute. In-process; a shared (Redis) view can replace it."""

    def __init__(self, clock: Clock, *, alpha: float = 0.3) -> None:
        """``alpha``: weight of the newest latency in the moving average (0 < alpha ≤ 1)."""
        self._clock = clock
        self.alpha = alpha
        self._latency: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}
        self._usage: dict[str, tuple[int, MinuteUsage]] = {}

    def latency(self, deployment: str) -> float | None:
        return self._latency.get(deployment)

    def observe_latency(self, deployment: str, seconds: float) -> None:
        old = self._latency.get(deployment)
        new = seconds if old is None else self.alpha * seconds + (1 - self.alpha) * old
        self._latency[deployment] = new

    def in_flight(self, deployment: str) -> int:
        return self._in_flight.get(deployment, 0)

    def track(self, deployment: str) -> _Tracked:
        """Count a call in flight while the ``with`` block runs; observe its latency if it
        succeeds."""
        return _Tracked(self, deployment)

    def _minute(self) -> int:
        return int(self._clock.now() // 60)

    def usage(self, deployment: str) -> MinuteUsage:
        minute, used = self._usage.get(deployment, (0, MinuteUsage()))
        return used if minute == self._minute() else MinuteUsage()

    def record_usage(self, deployment: str, tokens: int, requests: int = 1) -> None:
        used = self.usage(deployment)
        self._usage[deployment] = (
            self._minute(),
            MinuteUsage(used.requests + requests, used.tokens + tokens),
        )


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a strategy may consult."""

    request: RouteRequest
    prompt_tokens: int
    needed_tokens: int
    stats: RoutingStats
    now: float
    """Wall-clock seconds (which catalog price is in force)."""


class RoutingStrategy(Protocol):
    """Ranks the deployments that passed the exclusions (at least one)."""

    name: str

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking: ...


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _by_priority(candidates: Sequence[Deployment]) -> list[Deployment]:
    return sorted(candidates, key=lambda d: d.priority)  # stable: declaration order breaks ties


# -- strategies -----------------------------------------------------------------------------------


class PriorityStrategy:
    """Lowest ``priority`` first; declaration order breaks ties."""

    name = "priority"

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        order = _by_priority(candidates)
        scores = {d.id: f"priority {d.priority}" for d in order}
        return Ranking(tuple(order), f"lowest priority value ({order[0].priority})", scores)


class WeightedStrategy:
    """A random draw proportional to ``weight``; the fallback order is drawn the same way."""

    name = "weighted"

    def __init__(self, rng: Random) -> None:
        self.rng = rng

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        pool = [d for d in candidates if d.weight > 0]
        total = sum(d.weight for d in pool)
        order: list[Deployment] = []
        while pool:
            pick = self.rng.uniform(0, sum(d.weight for d in pool))
            for i, d in enumerate(pool):
                pick -= d.weight
                if pick <= 0 or i == len(pool) - 1:
                    order.append(pool.pop(i))
                    break
        order += [d for d in candidates if d.weight <= 0]
        scores = {d.id: f"weight {d.weight}" for d in candidates}
        first = order[0]
        share = first.weight / total if total else 0.0
        return Ranking(tuple(order), f"weighted draw ({share:.0%} chance)", scores)


class LeastLatencyStrategy:
    """Lowest moving-average latency first; a deployment never measured goes first, once, to
    get a measurement."""

    name = "least-latency"

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        latency = {d.id: ctx.stats.latency(d.id) for d in candidates}
        order = sorted(_by_priority(candidates), key=lambda d: _or(latency[d.id], -1.0))
        first = latency[order[0].id]
        scores = {k: "unmeasured" if v is None else f"{v:.4f} s" for k, v in latency.items()}
        why = "not measured yet" if first is None else f"lowest EWMA latency ({first:.4f} s)"
        return Ranking(tuple(order), why, scores)


def estimate_cost(
    info: ModelInfo, input_tokens: int, output_tokens: int, when: float
) -> Decimal | None:
    """Worst-case price of a call (``None`` when the catalog has no price for that date); the
    long-context tier applies when the input exceeds its threshold."""
    price = info.price_at(datetime.fromtimestamp(when, UTC).date())
    if price is None:
        return None
    rates = (price.input, price.output)
    for tier in price.tiers:
        if input_tokens > tier.above_input_tokens:
            rates = (tier.input, tier.output)
    return input_tokens * rates[0] + output_tokens * rates[1] + (price.per_request or 0)


class LeastCostStrategy:
    """Cheapest estimated call first (prompt tokens + ``max_tokens``, or ``default_output``,
    at the catalog price in force); deployments without a known price go last."""

    name = "least-cost"

    def __init__(self, default_output: int = 256) -> None:
        self.default_output = default_output

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        output = ctx.request.chat.max_tokens or self.default_output
        costs = {
            d.id: estimate_cost(d.info, ctx.prompt_tokens, output, ctx.now) for d in candidates
        }
        order = sorted(
            _by_priority(candidates),
            key=lambda d: (costs[d.id] is None, costs[d.id] or Decimal(0)),
        )
        scores = {k: "unknown price" if v is None else f"${v}" for k, v in costs.items()}
        cost = costs[order[0].id]
        why = "no deployment has a known price" if cost is None else f"cheapest estimate (${cost})"
        return Ranking(tuple(order), why, scores)


class LeastBusyStrategy:
    """Fewest calls in flight first."""

    name = "least-busy"

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        busy = {d.id: ctx.stats.in_flight(d.id) for d in candidates}
        order = sorted(_by_priority(candidates), key=lambda d: busy[d.id])
        scores = {k: f"{v} in flight" for k, v in busy.items()}
        return Ranking(tuple(order), f"fewest calls in flight ({busy[order[0].id]})", scores)


class UsageBasedStrategy:
    """Most RPM/TPM headroom left this minute first; a deployment whose limit this request would
    exceed is excluded (until the minute turns)."""

    name = "usage-based"

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        headroom: dict[str, float] = {}
        excluded: list[Exclusion] = []
        for d in candidates:
            used = ctx.stats.usage(d.id)
            room = 1.0
            if d.rpm is not None:
                if used.requests + 1 > d.rpm:
                    excluded.append(
                        Exclusion(d.id, f"RPM limit reached ({used.requests}/{d.rpm})", True)
                    )
                    continue
                room = min(room, (d.rpm - used.requests - 1) / d.rpm)
            if d.tpm is not None:
                if used.tokens + ctx.needed_tokens > d.tpm:
                    why = f"TPM headroom {d.tpm - used.tokens} < {ctx.needed_tokens} tokens needed"
                    excluded.append(Exclusion(d.id, why, True))
                    continue
                room = min(room, (d.tpm - used.tokens - ctx.needed_tokens) / d.tpm)
            headroom[d.id] = room
        order = sorted(
            (d for d in _by_priority(candidates) if d.id in headroom), key=lambda d: -headroom[d.id]
        )
        scores = {k: f"{v:.0%} headroom" for k, v in headroom.items()}
        why = (
            f"most headroom this minute ({headroom[order[0].id]:.0%})"
            if order
            else "all at their limits"
        )
        return Ranking(tuple(order), why, scores, tuple(excluded))


# -- complexity / confidence ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """A score in [0, 1] and the reasons behind it."""

    value: float
    reasons: tuple[str, ...] = ()


class ComplexityScorer(Protocol):
    """How hard a request is (0 easy … 1 hard)."""

    def __call__(self, request: RouteRequest, prompt_tokens: int) -> Score: ...


_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+[:(]|\bfunction\b|#include|=>|\bSELECT\b.+\bFROM\b|;\s*$",
    re.M | re.I,
)
_MATH = re.compile(
    r"\\(frac|int|sum|sqrt)|[∑∫√∂]|\b(prove|theorem|integral|derivative|equation|lemma)\b|\d\s*[\^*/]\s*\d",
    re.I,
)
_STEPS = re.compile(r"\b(step by step|analy[sz]e|compare|explain why|trade-?offs?|design)\b", re.I)
_TAGS = {"hard": 1.0, "high": 1.0, "easy": 0.0, "low": 0.0}


@dataclass(frozen=True, slots=True)
class HeuristicScorer:
    """Request features: an explicit ``complexity`` tag wins; otherwise length, code and math
    markers, multi-step wording and tools add up."""

    long_prompt_tokens: int = 2000
    """A prompt this long scores the full length weight."""
    length_weight: float = 0.4
    code_weight: float = 0.4
    math_weight: float = 0.4
    steps_weight: float = 0.2
    tools_weight: float = 0.2

    def __call__(self, request: RouteRequest, prompt_tokens: int) -> Score:
        tag = request.metadata.get("complexity", "").lower()
        if tag in _TAGS:
            return Score(_TAGS[tag], (f"tagged complexity={tag}",))
        text = "\n".join(m.text for m in request.chat.messages)
        parts = [
            (
                min(1.0, prompt_tokens / self.long_prompt_tokens) * self.length_weight,
                f"{prompt_tokens} prompt tokens",
            ),
            (self.code_weight if _CODE.search(text) else 0.0, "code markers"),
            (self.math_weight if _MATH.search(text) else 0.0, "math markers"),
            (self.steps_weight if _STEPS.search(text) else 0.0, "multi-step wording"),
            (self.tools_weight if request.chat.tools else 0.0, "tools offered"),
        ]
        reasons = tuple(why for value, why in parts if value >= 0.05)
        return Score(min(1.0, sum(value for value, _ in parts)), reasons)


class CascadeStrategy:
    """The cheapest tier first; a request the scorer finds hard (score ≥ ``threshold``) starts
    one tier up, with the cheapest tier kept as the last fallback."""

    name = "cascade"

    def __init__(self, scorer: ComplexityScorer | None = None, threshold: float = 0.5) -> None:
        self.scorer: ComplexityScorer = scorer or HeuristicScorer()
        self.threshold = threshold

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        score = self.scorer(ctx.request, ctx.prompt_tokens)
        order = sorted(_by_priority(candidates), key=lambda d: d.tier)
        detail = f"complexity {score.value:.2f}" + (
            f" ({', '.join(score.reasons)})" if score.reasons else ""
        )
        cheapest = order[0].tier
        if score.value >= self.threshold and order[-1].tier > cheapest:
            order = [d for d in order if d.tier > cheapest] + [
                d for d in order if d.tier == cheapest
            ]
            why = f"hard request: {detail} ≥ {self.threshold} → tier {order[0].tier}"
        else:
            why = f"cheapest tier {cheapest} first: {detail}" + (
                f" < {self.threshold}" if score.value < self.threshold else ", no stronger tier"
            )
        scores = {d.id: f"tier {d.tier}" for d in order}
        return Ranking(tuple(order), why, scores)


# -- the router -----------------------------------------------------------------------------------


TokenCounter = Callable[[ChatRequest], int]
"""Counts a request's prompt tokens."""


def estimate_tokens(request: ChatRequest) -> int:
    """About four characters per token, over the messages, tool calls and tool schemas."""
    chars = sum(
        len(m.text) + len(m.role) + sum(len(c.arguments) for c in m.tool_calls)
        for m in request.messages
    )
    chars += sum(
        len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in request.tools
    )
    return math.ceil(chars / 4)


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """An alias clients call, over deployments, with the strategy that ranks them."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: RoutingStrategy = field(default_factory=PriorityStrategy)
    aliases: tuple[str, ...] = ()
    baseline: str | None = None
    """The catalog model a call is compared with ("would have cost", savings); ``None``: the
    name the caller asked for, when that is a catalog model."""


def _needs(request: RouteRequest) -> set[Capability]:
    chat = request.chat
    needs = {Capability.CHAT}
    if request.stream:
        needs.add(Capability.STREAM)
    if chat.tools:
        needs.add(Capability.TOOLS)
    if chat.response_format != "text":
        needs.add(Capability.JSON)
    if any(
        not isinstance(m.content, str) and any(p.get("type") == "image_url" for p in m.content)
        for m in chat.messages
    ):
        needs.add(Capability.VISION)
    return needs


class _Tracked:
    """:meth:`RoutingStats.track`'s context manager (a class: a generator-based one costs a
    few µs a call on the gateway's hot path)."""

    __slots__ = ("_deployment", "_started", "_stats")

    def __init__(self, stats: RoutingStats, deployment: str) -> None:
        self._stats = stats
        self._deployment = deployment
        self._started = 0.0

    def __enter__(self) -> None:
        stats, deployment = self._stats, self._deployment
        stats._in_flight[deployment] = stats.in_flight(deployment) + 1
        self._started = stats._clock.monotonic()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        stats, deployment = self._stats, self._deployment
        try:
            if kind is None:
                stats.observe_latency(deployment, stats._clock.monotonic() - self._started)
        finally:
            stats._in_flight[deployment] -= 1


class Router:
    """Groups by name and alias; :meth:`route` explains every decision.

    Routing only reads ``stats``: the caller wraps each call in :meth:`RoutingStats.track`
    (latency, in flight) and reports its tokens with :meth:`RoutingStats.record_usage`.
    """

    def __init__(
        self,
        groups: Iterable[ModelGroup],
        *,
        clock: Clock,
        stats: RoutingStats | None = None,
        breakers: Breakers | None = None,
        count_tokens: TokenCounter = estimate_tokens,
    ) -> None:
        self._groups: dict[str, ModelGroup] = {}
        for group in groups:
            for name in (group.name, *group.aliases):
                if name in self._groups:
                    raise ValueError(f"model group name {name!r} is used twice")
                self._groups[name] = group
        self.clock = clock
        self.stats = stats or RoutingStats(clock)
        self.breakers = breakers
        self.count_tokens = count_tokens

    def add(self, group: ModelGroup) -> None:
        """Add a group after construction (e.g. the implicit group of a catalog model)."""
        for name in (group.name, *group.aliases):
            if name in self._groups:
                raise ValueError(f"model group name {name!r} is used twice")
        for name in (group.name, *group.aliases):
            self._groups[name] = group

    def names(self) -> list[str]:
        """Every group name and alias."""
        return list(self._groups)

    def groups(self) -> list[ModelGroup]:
        """Every group once, in the order added."""
        return list({id(g): g for g in self._groups.values()}.values())

    def find(self, name: str) -> ModelGroup | None:
        """The group called (or aliased) ``name``, or ``None``."""
        return self._groups.get(name)

    def group(self, name: str) -> ModelGroup:
        group = self._groups.get(name)
        if group is None:
            near = difflib.get_close_matches(name, self._groups, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise ModelNotFound(f"no model group {name!r}{hint}", model=name)
        return group

    def route(self, request: RouteRequest) -> RouteDecision:
        """Rank the group's deployments for this request (``NoDeploymentAvailable`` when none
        can take it)."""
        group = self.group(request.chat.model)
        prompt = self.count_tokens(request.chat)
        needed = prompt + (request.chat.max_tokens or 0)
        needs = _needs(request)
        excluded: list[Exclusion] = []
        candidates: list[Deployment] = []
        for d in group.deployments:
            reason = self._unfit(d, needs, needed, request.chat.max_tokens)
            if reason is not None:
                excluded.append(reason)
            else:
                candidates.append(d)
        if not candidates:
            raise NoDeploymentAvailable(group.name, excluded)
        ctx = RouteContext(request, prompt, needed, self.stats, self.clock.now())
        ranking = group.strategy.rank(candidates, ctx)
        excluded += ranking.excluded
        if not ranking.order:
            raise NoDeploymentAvailable(group.name, excluded)
        return RouteDecision(
            group.name,
            group.strategy.name,
            tuple(d.id for d in group.deployments),
            tuple(excluded),
            ranking.order,
            ranking.reason,
            ranking.scores,
            prompt,
            needed,
        )

    def _unfit(
        self, d: Deployment, needs: set[Capability], needed: int, max_tokens: int | None
    ) -> Exclusion | None:
        missing = needs - d.info.capabilities
        if missing:
            return Exclusion(d.id, f"cannot {', '.join(sorted(missing))}", kind="request")
        window = d.context_window
        if window is not None and needed > window:
            return Exclusion(
                d.id,
                f"context window {window} < {needed} tokens (prompt + max_tokens)",
                kind="request",
            )
        if (
            max_tokens is not None
            and d.info.max_output is not None
            and max_tokens > d.info.max_output
        ):
            return Exclusion(
                d.id,
                f"max_tokens {max_tokens} > its max output {d.info.max_output}",
                kind="request",
            )
        if self.breakers is not None and not self.breakers.available(d.id):
            return Exclusion(d.id, "circuit breaker open", transient=True)
        return None
