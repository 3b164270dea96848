"""The call path end to end: admit → limit → cache → route → budget → call → record, against the
OpenAI simulator on loopback (the real adapter, real HTTP), with exact Decimal accounting."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from podium.config import Settings
from podium.errors import (
    AuthenticationFailed,
    ModelNotFound,
    ProviderTimeout,
    RateLimitExceeded,
)
from podium.finops.budget_redis import RedisBudgetStore
from podium.finops.budget_sql import SQLBudgetStore
from podium.finops.budgets import Budget, BudgetExceeded, Budgets, MemoryBudgetStore
from podium.finops.ledger import Attribution, MemoryLedger, utc_day
from podium.finops.pricing import price
from podium.gateway.breaker import BreakerPolicy, Breakers, BreakerState
from podium.gateway.cache import CachePolicy, ResponseCache
from podium.gateway.cache_backends import MemoryCacheBackend
from podium.gateway.limits import LimitRule, MemoryLimiter
from podium.gateway.pipeline import Caller, CallOptions, CallRecord, Gateway
from podium.gateway.resilience import Resilience, RetryPolicy
from podium.gateway.routing import CascadeStrategy, Deployment, ModelGroup
from podium.models.base import ChatRequest, Message, Usage
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.testing.simulators.server import Fault, Reply

KEY = "sk-sim-test"
MINI = "openai/gpt-4o-mini"
TEAM = Caller(Attribution(org="acme", team="ml"), subject="test")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_795_000_000.0)  # 2026-11-18: the catalog's prices are in force


@pytest.fixture
def sim(use_simulator: Callable[..., Any]) -> OpenAISimulator:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key=KEY)
    return sim


def _hub(tmp_path: Path, sim: OpenAISimulator) -> ModelHub:
    settings = Settings(
        home=tmp_path,
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr(KEY)},
    )
    return ModelHub(settings, catalog=Catalog.builtin())


def _retry(**kw: Any) -> RetryPolicy:
    base = dict(base_delay_s=0.0, max_delay_s=0.0, attempt_timeout_s=2.0, deadline_s=10.0)
    base.update(kw)
    return RetryPolicy(**base)  # type: ignore[arg-type]


@pytest.fixture
async def make_gateway(
    tmp_path: Path, sim: OpenAISimulator, clock: FakeClock
) -> AsyncIterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(**kw: Any) -> Gateway:
        policy = kw.pop("retry", _retry())
        breakers = kw.pop("breakers", Breakers(clock))
        kw.setdefault("ledger", MemoryLedger())
        gw = Gateway(
            _hub(tmp_path, sim),
            clock=clock,
            resilience=Resilience(clock, policy, breakers=breakers, rng=random.Random(7)),
            **kw,
        )
        made.append(gw)
        return gw

    yield make
    for gw in made:
        await gw.close()


def ask(text: str = "What is the capital of France?", model: str = MINI, **kw: Any) -> ChatRequest:
    return ChatRequest(model, [Message("user", text)], temperature=0.0, **kw)


async def test_a_chat_is_priced_exactly_and_recorded_in_the_ledger(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    gw = make_gateway(ledger=ledger)
    sim.script(Reply(text="Paris.", input_tokens=14, output_tokens=3))

    served = await gw.chat(ask(), TEAM)

    assert served.response.text == "Paris."
    info = gw.hub.info(MINI)
    expected = price(info, served.response.usage, utc_day(clock.now())).total
    assert (
        served.cost == expected == Decimal("14") * Decimal("0.00000015") + 3 * Decimal("0.0000006")
    )
    assert served.record.outcome == "ok"
    assert served.record.deployment == MINI
    assert served.record.route is not None
    assert served.record.route.chosen.id == MINI
    await gw.flush()
    (row,) = await ledger.entries()
    assert row.cost == expected
    assert row.attribution.team == "ml"
    assert not row.cache_hit
    assert row.request_id == served.record.request_id


async def test_an_unknown_model_is_refused_with_a_suggestion(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator
) -> None:
    gw = make_gateway()
    with pytest.raises(ModelNotFound, match=r"gpt-4o-mini"):
        await gw.chat(ask(model="openai/gpt-4o-mni"), TEAM)
    assert sim.requests == []


async def test_a_cache_hit_costs_nothing_and_records_what_it_saved(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, policy=CachePolicy(semantic=False))
    gw = make_gateway(ledger=ledger, cache=cache)
    sim.script(Reply(text="Paris.", input_tokens=14, output_tokens=3))

    first = await gw.chat(ask(), TEAM)
    second = await gw.chat(ask("What is  the capital\n of France? "), TEAM)  # normalises equal
    other_team = await gw.chat(ask(), Caller(Attribution(org="acme", team="ops")))

    assert len(sim.requests) == 2  # the other team never sees ml's answers
    assert second.response.text == "Paris."
    assert second.record.cache == "exact"
    assert second.cost == 0
    assert second.record.baseline_cost == first.cost
    assert other_team.record.cache is None
    await gw.flush()
    hits = [e for e in await ledger.entries() if e.cache_hit]
    assert [h.baseline_cost for h in hits] == [first.cost]


async def test_fallback_to_the_next_deployment_when_one_fails(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, tmp_path: Path
) -> None:
    hub_info = Catalog.builtin()
    primary = Deployment("mini@bad-key", hub_info.get(MINI), params={"base_url": f"{sim.url}/v1"})
    backup = Deployment("mini@good", hub_info.get(MINI), priority=1)
    group = ModelGroup("chat", (primary, backup))
    gw = make_gateway(groups=[group], deployment_keys={"mini@bad-key": SecretStr("sk-wrong")})
    sim.script(Reply(text="Paris."))

    served = await gw.chat(ask(model="chat"), TEAM)

    assert served.response.text == "Paris."
    assert served.record.deployment == "mini@good"
    assert [(a.deployment, a.outcome) for a in served.record.attempts] == [
        ("mini@bad-key", "failed"),
        ("mini@good", "ok"),
    ]
    assert served.record.attempts[0].error == AuthenticationFailed.__name__


@pytest.mark.parametrize(
    "budget_backend", ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]
)
async def test_concurrent_calls_never_overspend_a_budget_and_refusals_never_reach_a_provider(
    make_gateway: Callable[..., Gateway],
    sim: OpenAISimulator,
    clock: FakeClock,
    budget_backend: str,
    tmp_path: Path,
) -> None:
    # Each call reserves its prompt's byte bound + max_tokens 20 at gpt-4o-mini prices.
    limit = Decimal("0.0005")
    backend: Any
    if budget_backend == "memory":
        backend = MemoryBudgetStore()
    elif budget_backend == "sqlite":
        backend = await SQLBudgetStore.open(f"sqlite:///{tmp_path / 'budgets.db'}")
    else:
        backend = RedisBudgetStore.from_url(
            "redis://127.0.0.1:6379/0", prefix="{podium:test:pipeline:" + uuid.uuid4().hex + "}"
        )
    budgets = Budgets(backend, [Budget("ml-daily", "team", "ml", limit, "daily")], clock=clock)
    ledger = MemoryLedger()
    # 1,000 calls at once on a loaded 2-core machine: time is not what this test is about.
    patient = _retry(attempts_per_deployment=1, attempt_timeout_s=60.0, deadline_s=120.0)
    gw = make_gateway(budgets=budgets, ledger=ledger, retry=patient)
    sim.script(*[Reply(text="ok " * 10, input_tokens=12, output_tokens=20)] * 1000)

    async def one(i: int) -> Decimal | None:
        try:
            served = await gw.chat(
                ask(f"question number {i} please answer it", max_tokens=20), TEAM
            )
        except BudgetExceeded:
            return None
        return served.cost

    results = await asyncio.gather(*(one(i) for i in range(1000)))
    await gw.flush()

    paid = [c for c in results if c is not None]
    refused = results.count(None)
    assert refused > 0, "the budget must refuse some calls"
    assert paid, "the budget must admit some calls"
    assert sum(paid, Decimal(0)) <= limit
    assert len(sim.requests) == len(paid)  # refused calls never reached the provider
    assert sum((e.cost for e in await ledger.entries()), Decimal(0)) == sum(paid, Decimal(0))
    (status,) = await budgets.status(TEAM.attribution)
    await backend.close()
    assert status.reserved == 0
    assert status.spent == sum(paid, Decimal(0))


async def test_rate_limits_are_exact_and_refuse_before_the_provider(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    gw = make_gateway(limiter=MemoryLimiter(clock), limit_rules=[LimitRule("team:ml", rpm=5)])
    sim.script(*[Reply(text="ok")] * 10)

    for _ in range(5):
        await gw.chat(ask(), TEAM, CallOptions(cache=False))
    with pytest.raises(RateLimitExceeded) as refused:
        await gw.chat(ask(), TEAM)
    assert len(sim.requests) == 5
    assert refused.value.retry_after is not None
    assert 0 < refused.value.retry_after <= 60
    clock.advance(refused.value.retry_after)
    await gw.chat(ask(), TEAM)  # fits again exactly when it said it would
    assert len(sim.requests) == 6


async def test_a_stream_is_recorded_and_a_cut_stream_is_never_a_success(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator
) -> None:
    ledger = MemoryLedger()
    gw = make_gateway(ledger=ledger)
    sim.script(Reply(text="one two three four five six", input_tokens=5, output_tokens=6))
    stream = gw.stream(ask(), TEAM)
    await stream.start()
    text = "".join([c.delta async for c in stream])
    assert text == "one two three four five six"
    assert stream.record is not None
    assert stream.record.outcome == "ok"
    assert stream.record.usage.output_tokens == 6
    assert stream.record.cost > 0

    sim.script(Reply(text="one two three four five six seven eight"))
    sim.inject(Fault(after_chunks=2))
    cut = gw.stream(ask("again"), TEAM)
    await cut.start()
    got: list[str] = []

    async def drain() -> None:
        async for chunk in cut:
            got.append(chunk.delta)

    with pytest.raises(ProviderTimeout):
        await drain()
    assert cut.record is not None
    assert cut.record.outcome == "error"
    assert "".join(got) != "one two three four five six seven eight"


async def test_fault_injection_at_30_percent_every_request_is_answered(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    """429s, 500s, 503s and slow answers on 30% of requests, across two deployments of the same
    model: retries and fallback answer every request; streams are complete or fail loudly."""
    catalog = Catalog.builtin()
    a = Deployment("mini@a", catalog.get(MINI))
    b = Deployment("mini@b", catalog.get(MINI), priority=1)
    gw = make_gateway(
        groups=[ModelGroup("chat", (a, b))],
        retry=_retry(attempts_per_deployment=3, max_attempts=8, attempt_timeout_s=0.5),
        breakers=Breakers(clock),
    )
    # Four kinds of fault, each on ~8.5% of attempts (retries included): ~30% fail.
    every = {"times": None, "chance": 0.085}
    sim.inject(
        Fault(status=429, retry_after=0, **every),  # type: ignore[arg-type]
        Fault(status=500, **every),  # type: ignore[arg-type]
        Fault(status=503, **every),  # type: ignore[arg-type]
        Fault(delay=1.0, **every),  # type: ignore[arg-type]  # an attempt timeout
    )
    n = 60
    answered = 0
    for i in range(n):
        served = await gw.chat(ask(f"q{i}", model="chat"), TEAM, CallOptions(cache=False))
        assert served.response.text == f"You said: q{i}"  # this request's own answer
        answered += 1
    assert answered == n
    faulted = sum(1 for r in sim.requests if r.fault is not None)
    assert 0.2 < faulted / len(sim.requests) < 0.4, (faulted, len(sim.requests))


async def test_the_breaker_opens_on_a_failing_deployment_and_recovers(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    catalog = Catalog.builtin()
    a = Deployment("mini@a", catalog.get(MINI), params={"base_url": f"{sim.url}/a/v1"})
    b = Deployment("mini@b", catalog.get(MINI), priority=1)
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=3, cooldown_s=30))
    gw = make_gateway(
        groups=[ModelGroup("chat", (a, b))],
        retry=_retry(attempts_per_deployment=1),
        breakers=breakers,
        deployment_keys={"mini@a": SecretStr(KEY)},
    )
    sim.script(*[Reply(text="fine")] * 20)
    sim.inject(Fault(status=500, times=3, path="/a/"))
    for _ in range(3):  # a fails three times (b answers each time)
        served = await gw.chat(ask(model="chat"), TEAM, CallOptions(cache=False))
        assert served.record.deployment == "mini@b"
    assert breakers["mini@a"].state == BreakerState.OPEN
    before = len(sim.requests)
    served = await gw.chat(ask(model="chat"), TEAM, CallOptions(cache=False))
    assert served.record.deployment == "mini@b"
    assert len(sim.requests) == before + 1
    assert any(e.deployment == "mini@a" for e in served.record.route.excluded)  # type: ignore[union-attr]
    clock.advance(31)
    served = await gw.chat(ask(model="chat"), TEAM, CallOptions(cache=False))  # the probe succeeds
    assert served.record.deployment == "mini@a"
    assert breakers["mini@a"].state == BreakerState.CLOSED


async def test_a_declared_fallback_answer_degrades_gracefully(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator
) -> None:
    catalog = Catalog.builtin()
    group = ModelGroup("chat", (Deployment("mini", catalog.get(MINI)),))
    gw = make_gateway(
        groups=[group],
        fallbacks={"chat": "Sorry, try later."},
        retry=_retry(attempts_per_deployment=2),
    )
    sim.inject(Fault(status=500, times=None))
    served = await gw.chat(ask(model="chat"), TEAM)
    assert served.response.text == "Sorry, try later."
    assert served.record.outcome == "degraded"
    assert served.cost == 0


async def test_record_sinks_see_refusals_and_successes(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator
) -> None:
    seen: list[CallRecord] = []

    async def sink(record: CallRecord) -> None:
        seen.append(record)

    gw = make_gateway(record_sinks=[sink])
    sim.script(Reply(text="x"))
    await gw.chat(ask(), TEAM)
    with pytest.raises(ModelNotFound):
        await gw.chat(ask(model="nope/nothing"), TEAM)
    await gw.flush()
    assert [r.outcome for r in seen] == ["ok", "refused"]
    assert seen[1].error == "ModelNotFound"


async def test_a_cascade_escalates_an_unsure_answer_and_bills_both_tiers(
    make_gateway: Callable[..., Gateway], sim: OpenAISimulator, clock: FakeClock
) -> None:
    catalog = Catalog.builtin()
    cheap = Deployment("mini", catalog.get(MINI), tier=0)
    strong = Deployment("big", catalog.get("openai/gpt-4.1"), tier=1)
    ledger = MemoryLedger()
    gw = make_gateway(
        groups=[ModelGroup("smart", (cheap, strong), strategy=CascadeStrategy())],
        cascade_confidence={"smart": 0.5},
        ledger=ledger,
    )
    sim.script(
        Reply(text="I'm not sure, maybe Lyon?", input_tokens=10, output_tokens=7),
        Reply(text="Paris.", input_tokens=10, output_tokens=2),
    )
    served = await gw.chat(ask(model="smart"), TEAM)

    assert served.response.text == "Paris."
    assert served.record.deployment == "big"
    day = utc_day(clock.now())
    cheap_cost = price(catalog.get(MINI), Usage(10, 7), day).total
    strong_cost = price(catalog.get("openai/gpt-4.1"), Usage(10, 2), day).total
    assert served.cost == cheap_cost + strong_cost  # both answers were billed
    await gw.flush()
    rows = sorted(await ledger.entries(), key=lambda e: e.attempt)
    assert [(r.model, r.attempt, r.cost) for r in rows] == [
        ("openai/gpt-4.1", 0, strong_cost),
        (MINI, 1, cheap_cost),
    ]


@pytest.mark.parametrize(
    ("cheap_answers", "escalated"),
    [
        (("(B) Paris", "B."), False),  # the same option: kept, both billed
        (("A) Lyon", "B) Paris"), True),  # different options: the strong tier answers
    ],
)
async def test_an_agreement_cascade_keeps_an_answer_two_cheap_models_agree_on(
    make_gateway: Callable[..., Gateway],
    sim: OpenAISimulator,
    clock: FakeClock,
    cheap_answers: tuple[str, str],
    escalated: bool,
) -> None:
    catalog = Catalog.builtin()
    first = Deployment("mini", catalog.get(MINI), tier=0)
    second = Deployment("nano", catalog.get("openai/gpt-4.1-nano"), tier=0)
    strong = Deployment("big", catalog.get("openai/gpt-4.1"), tier=1)
    ledger = MemoryLedger()
    gw = make_gateway(
        groups=[ModelGroup("smart", (first, second, strong), strategy=CascadeStrategy())],
        cascade_confidence={"smart": 0.5},
        cascade_agreement=["smart"],
        ledger=ledger,
    )
    sim.script(
        *(Reply(text=a, input_tokens=10, output_tokens=3) for a in cheap_answers),
        Reply(text="B) Paris", input_tokens=10, output_tokens=3),
    )
    served = await gw.chat(ask("Capital of France? A) Lyon B) Paris", model="smart"), TEAM)

    day = utc_day(clock.now())
    cost = {d.id: price(d.info, Usage(10, 3), day).total for d in (first, second, strong)}
    await gw.flush()
    rows = await ledger.entries()
    if escalated:
        assert (served.response.text, served.record.deployment) == ("B) Paris", "big")
        assert sorted(r.model for r in rows) == sorted([MINI, "openai/gpt-4.1-nano", strong.model])
        assert served.cost == cost["mini"] + cost["nano"] + cost["big"]
        assert len(sim.requests) == 3
    else:
        assert served.record.deployment == "mini"
        assert served.response.text in cheap_answers
        assert sorted(r.model for r in rows) == sorted([MINI, "openai/gpt-4.1-nano"])
        assert served.cost == cost["mini"] + cost["nano"]  # the judge's answer is billed too
        assert len(sim.requests) == 2
    assert sum((r.cost for r in rows), Decimal(0)) == served.cost
