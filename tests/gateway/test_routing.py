"""Routing: every strategy, the exclusions every strategy sits behind, the cascade, and the
explanation each decision carries."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from podium.errors import ModelNotFound, ProviderOverloaded
from podium.gateway.breaker import BreakerPolicy, Breakers
from podium.gateway.cascade import agreement, agreement_key, heuristic_confidence, run_cascade
from podium.gateway.resilience import CallFailed, Outcome, Resilience, RetryPolicy
from podium.gateway.routing import (
    CascadeStrategy,
    Deployment,
    HeuristicScorer,
    LeastBusyStrategy,
    LeastCostStrategy,
    LeastLatencyStrategy,
    ModelGroup,
    NoDeploymentAvailable,
    PriorityStrategy,
    RouteDecision,
    Router,
    RouteRequest,
    RoutingStats,
    RoutingStrategy,
    Score,
    UsageBasedStrategy,
    WeightedStrategy,
    estimate_cost,
    estimate_tokens,
)
from podium.models.base import (
    Capability,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Tool,
    Usage,
)
from podium.models.catalog import ModelInfo, Price, PriceTier
from podium.testing import FakeClock

CHAT = frozenset({Capability.CHAT, Capability.STREAM, Capability.JSON, Capability.TOOLS})
EPOCH = date(2020, 1, 1)  # FakeClock starts in November 2023


def model(
    name: str,
    *,
    window: int | None = 128_000,
    price: tuple[str, str] | None = ("0.000001", "0.000002"),
    caps: frozenset[Capability] = CHAT,
    max_output: int | None = None,
    tiers: tuple[PriceTier, ...] = (),
    provider: str = "openai",
) -> ModelInfo:
    prices = (
        () if price is None else (Price(EPOCH, Decimal(price[0]), Decimal(price[1]), tiers=tiers),)
    )
    return ModelInfo(f"{provider}/{name}", provider, name, caps, window, max_output, prices)


def dep(name: str, info: ModelInfo | None = None, **kw: Any) -> Deployment:
    return Deployment(name, info or model(name), **kw)


def ask(
    text: str = "hello", *, group: str = "chat", max_tokens: int | None = None, **kw: Any
) -> RouteRequest:
    metadata = kw.pop("metadata", {})
    stream = kw.pop("stream", False)
    chat = ChatRequest(model=group, messages=[Message("user", text)], max_tokens=max_tokens, **kw)
    return RouteRequest(chat, stream=stream, metadata=metadata)


def router(
    clock: FakeClock, *deployments: Deployment, strategy: RoutingStrategy | None = None, **kw: Any
) -> Router:
    group = ModelGroup("chat", deployments, strategy or PriorityStrategy(), aliases=("default",))
    return Router([group], clock=clock, **kw)


# -- the decision and its explanation -------------------------------------------------------------


def test_priority_orders_by_priority_then_declaration_and_explains_itself(clock: FakeClock) -> None:
    a, b, c = dep("a", priority=2), dep("b", priority=1), dep("c", priority=1)
    decision = router(clock, a, b, c).route(ask("hi"))

    assert decision.chosen.id == "b"
    assert [d.id for d in decision.ranked] == ["b", "c", "a"]
    assert decision.strategy == "priority"
    assert decision.candidates == ("a", "b", "c")
    assert decision.reason == "lowest priority value (1)"
    record = decision.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["chosen"] == "b"
    assert record["excluded"] == []


def test_a_group_is_found_by_alias_and_an_unknown_name_gets_a_suggestion(clock: FakeClock) -> None:
    r = router(clock, dep("a"))
    assert r.route(ask(group="default")).group == "chat"
    with pytest.raises(ModelNotFound, match="did you mean 'chat'"):
        r.route(ask(group="chta"))
    with pytest.raises(ValueError, match="used twice"):
        Router(
            [ModelGroup("x", (dep("a"),)), ModelGroup("y", (dep("b"),), aliases=("x",))],
            clock=clock,
        )


# -- exclusions -----------------------------------------------------------------------------------


def test_a_deployment_whose_window_cannot_hold_prompt_plus_max_tokens_is_never_chosen(
    clock: FakeClock,
) -> None:
    small, large = (
        dep("small", model("small", window=1000), priority=0),
        dep("large", model("large", window=8000), priority=1),
    )
    r = router(clock, small, large)
    prompt = "x" * 3200  # (3200 + 4 characters of role) / 4 = 801 tokens

    assert r.route(ask(prompt, max_tokens=199)).chosen.id == "small"  # 1000: exactly fits
    decision = r.route(ask(prompt, max_tokens=200))
    assert decision.chosen.id == "large"
    assert decision.prompt_tokens == estimate_tokens(ask(prompt).chat)
    assert decision.needed_tokens == decision.prompt_tokens + 200
    (excluded,) = decision.excluded
    assert excluded.deployment == "small"
    assert (
        excluded.reason
        == f"context window 1000 < {decision.needed_tokens} tokens (prompt + max_tokens)"
    )


def test_the_token_estimate_is_about_four_characters_a_token_unless_a_counter_is_given(
    clock: FakeClock,
) -> None:
    request = ask("abcd" * 100)
    assert estimate_tokens(request.chat) == 101  # 400 characters of text + 4 of role
    with_tools = ChatRequest("chat", [Message("user", "hi")], tools=[Tool("f", "d" * 40)])
    assert estimate_tokens(with_tools) > estimate_tokens(
        ChatRequest("chat", [Message("user", "hi")])
    )

    small = dep("small", model("small", window=50))
    with pytest.raises(NoDeploymentAvailable):
        router(clock, small).route(request)
    counted = router(clock, small, count_tokens=lambda chat: 10).route(request)
    assert (counted.chosen.id, counted.prompt_tokens) == ("small", 10)


def test_capabilities_output_limits_and_open_breakers_exclude(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))
    broken = dep("broken")
    breakers["broken"].failure(breakers["broken"].acquire(), ProviderOverloaded("503"))  # type: ignore[arg-type]
    no_tools = dep("no-tools", model("no-tools", caps=frozenset({Capability.CHAT})))
    short = dep("short", model("short", max_output=100))
    ok = dep("ok", priority=9)
    r = router(clock, broken, no_tools, short, ok, breakers=breakers)
    decision = r.route(ask("hi", max_tokens=500, tools=[Tool("f")], stream=True))

    assert decision.chosen.id == "ok"
    assert {e.deployment: e.reason for e in decision.excluded} == {
        "broken": "circuit breaker open",
        "no-tools": "cannot stream, tools",
        "short": "max_tokens 500 > its max output 100",
    }


def test_when_everything_is_excluded_the_error_lists_why(clock: FakeClock) -> None:
    tiny = dep("tiny", model("tiny", window=10))
    text_only = dep("text-only", model("text-only", caps=frozenset({Capability.CHAT})))
    with pytest.raises(NoDeploymentAvailable) as caught:
        router(clock, tiny, text_only).route(
            ask("a long enough prompt " * 10, response_format="json")
        )

    error = caught.value
    assert "tiny: context window 10 <" in str(error)
    assert "text-only: cannot json" in str(error)
    assert [e.deployment for e in error.excluded] == ["tiny", "text-only"]
    assert not error.retryable  # nothing here passes by itself


def test_only_open_breakers_left_is_a_retryable_refusal(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))
    breakers["a"].failure(breakers["a"].acquire(), ProviderOverloaded("503"))  # type: ignore[arg-type]
    with pytest.raises(NoDeploymentAvailable) as caught:
        router(clock, dep("a"), breakers=breakers).route(ask())
    assert caught.value.retryable


# -- strategies -----------------------------------------------------------------------------------


def test_weighted_draws_follow_the_weights(clock: FakeClock) -> None:
    deployments = [
        dep("light", weight=1),
        dep("middle", weight=3),
        dep("heavy", weight=6),
        dep("off", weight=0),
    ]
    r = router(clock, *deployments, strategy=WeightedStrategy(random.Random(42)))
    draws = 20_000
    firsts = Counter(r.route(ask()).chosen.id for _ in range(draws))

    assert firsts["off"] == 0
    for name, share in (("light", 0.1), ("middle", 0.3), ("heavy", 0.6)):
        assert firsts[name] / draws == pytest.approx(share, abs=0.015)
    decision = r.route(ask())
    assert sorted(d.id for d in decision.ranked) == ["heavy", "light", "middle", "off"]
    assert decision.ranked[-1].id == "off"
    assert decision.reason.startswith("weighted draw (")


def test_the_same_seed_gives_the_same_draws(clock: FakeClock) -> None:
    deployments = [dep("a", weight=1), dep("b", weight=1), dep("c", weight=1)]

    def draws(seed: int) -> list[str]:
        r = router(clock, *deployments, strategy=WeightedStrategy(random.Random(seed)))
        return [r.route(ask()).chosen.id for _ in range(50)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_least_latency_tries_the_unmeasured_then_follows_the_moving_average(
    clock: FakeClock,
) -> None:
    stats = RoutingStats(clock, alpha=0.5)
    r = router(clock, dep("a"), dep("b"), strategy=LeastLatencyStrategy(), stats=stats)
    stats.observe_latency("a", 0.2)
    decision = r.route(ask())
    assert (decision.chosen.id, decision.reason) == ("b", "not measured yet")

    stats.observe_latency("b", 0.3)
    assert r.route(ask()).chosen.id == "a"
    stats.observe_latency("a", 1.0)  # a slows down: 0.5·1.0 + 0.5·0.2 = 0.6
    assert stats.latency("a") == pytest.approx(0.6)
    decision = r.route(ask())
    assert decision.chosen.id == "b"
    assert decision.scores == {"a": "0.6000 s", "b": "0.3000 s"}
    for _ in range(3):
        stats.observe_latency("a", 0.1)  # and recovers: 0.35, 0.225, 0.1625
    assert r.route(ask()).chosen.id == "a"


def test_least_latency_learns_from_tracked_calls(clock: FakeClock) -> None:
    stats = RoutingStats(clock)
    with stats.track("a"):
        assert stats.in_flight("a") == 1
        clock.advance(0.25)
    assert (stats.in_flight("a"), stats.latency("a")) == (0, 0.25)
    with pytest.raises(RuntimeError), stats.track("a"):
        raise RuntimeError("failed calls do not count as fast ones")
    assert (stats.in_flight("a"), stats.latency("a")) == (0, 0.25)


def test_least_cost_picks_the_cheapest_that_fits(clock: FakeClock) -> None:
    cheapest_but_small = dep("mini", model("mini", window=1000, price=("0.0000001", "0.0000002")))
    cheap = dep("cheap", model("cheap", price=("0.0000005", "0.000001")))
    pricey = dep("pricey", model("pricey", price=("0.00001", "0.00003")))
    unpriced = dep("mystery", model("mystery", price=None))
    r = router(clock, pricey, unpriced, cheapest_but_small, cheap, strategy=LeastCostStrategy())

    assert r.route(ask("x" * 400, max_tokens=100)).chosen.id == "mini"
    decision = r.route(ask("x" * 4000, max_tokens=100))  # ~1001 prompt tokens: mini cannot fit
    assert [d.id for d in decision.ranked] == ["cheap", "pricey", "mystery"]
    prompt = decision.prompt_tokens
    assert (
        decision.scores["cheap"] == f"${prompt * Decimal('0.0000005') + 100 * Decimal('0.000001')}"
    )
    assert decision.scores["mystery"] == "unknown price"
    assert decision.reason.startswith("cheapest estimate ($0.")


def test_least_cost_uses_the_long_context_tier_and_the_price_in_force(clock: FakeClock) -> None:
    tier = PriceTier(above_input_tokens=1000, input=Decimal("0.00001"), output=Decimal("0.00002"))
    tiered = model("tiered", price=("0.0000001", "0.0000001"), tiers=(tier,))
    assert estimate_cost(tiered, 1000, 0, clock.now()) == Decimal("0.0001")
    assert estimate_cost(tiered, 1001, 10, clock.now()) == Decimal("0.01001") + Decimal("0.0002")

    flat = model("flat", price=("0.000001", "0.000001"))
    r = router(
        clock,
        dep("tiered", tiered),
        dep("flat", flat),
        strategy=LeastCostStrategy(default_output=10),
    )
    assert r.route(ask("x" * 3000)).chosen.id == "tiered"
    assert r.route(ask("x" * 5000)).chosen.id == "flat"  # past the tier threshold

    dated = ModelInfo(
        "openai/dated",
        "openai",
        "dated",
        CHAT,
        128_000,
        prices=(
            Price(EPOCH, Decimal("0.000001"), Decimal("0.000001")),
            Price(date(2030, 1, 1), Decimal("0.000009"), Decimal("0.000009")),
        ),
    )
    assert estimate_cost(dated, 1000, 0, clock.now()) == Decimal("0.001")
    assert estimate_cost(dated, 1000, 0, 1_900_000_000.0) == Decimal("0.009")  # 2030


def test_least_busy_prefers_fewest_in_flight(clock: FakeClock) -> None:
    stats = RoutingStats(clock)
    r = router(clock, dep("a"), dep("b"), dep("c"), strategy=LeastBusyStrategy(), stats=stats)
    with stats.track("a"), stats.track("a"), stats.track("b"):
        decision = r.route(ask())
        assert [d.id for d in decision.ranked] == ["c", "b", "a"]
        assert decision.scores == {"a": "2 in flight", "b": "1 in flight", "c": "0 in flight"}
    assert r.route(ask()).chosen.id == "a"


def test_usage_based_routes_to_headroom_and_excludes_a_deployment_at_its_limit(
    clock: FakeClock,
) -> None:
    stats = RoutingStats(clock)
    limited = dep("limited", rpm=10, tpm=10_000)
    roomy = dep("roomy", rpm=100, tpm=100_000)
    r = router(clock, limited, roomy, strategy=UsageBasedStrategy(), stats=stats)
    decision = r.route(ask())
    assert decision.chosen.id == "roomy"  # after this request: 99% of its RPM left vs 90%
    assert decision.scores == {"limited": "90% headroom", "roomy": "99% headroom"}
    stats.record_usage("roomy", tokens=50_000, requests=40)
    assert r.route(ask()).chosen.id == "limited"  # 90% vs 50% (TPM) headroom

    stats.record_usage("limited", tokens=100, requests=9)
    assert r.route(ask()).chosen.id == "roomy"  # the last request of the minute is left: 0%
    stats.record_usage("limited", tokens=100, requests=1)  # 10 of 10 requests this minute
    decision = r.route(ask())
    assert [d.id for d in decision.ranked] == ["roomy"]
    (excluded,) = decision.excluded
    assert (excluded.deployment, excluded.reason, excluded.transient) == (
        "limited",
        "RPM limit reached (10/10)",
        True,
    )

    stats.record_usage("roomy", tokens=49_999, requests=0)
    with pytest.raises(NoDeploymentAvailable, match="TPM headroom 1 < 3 tokens needed") as caught:
        r.route(ask())
    assert caught.value.retryable

    clock.advance(60)  # a new minute: both are fresh again
    decision = r.route(ask())
    assert ([d.id for d in decision.ranked], decision.excluded) == (["roomy", "limited"], ())


# -- cascade --------------------------------------------------------------------------------------


def ladder() -> tuple[Deployment, ...]:
    return (
        dep("local-small", tier=0),
        dep("mid-a", tier=1),
        dep("mid-b", tier=1, priority=1),
        dep("frontier", tier=2),
    )


@pytest.mark.parametrize(
    ("text", "metadata", "hard"),
    [
        ("What is the capital of France?", {}, False),
        ("Fix this:\n```python\ndef f(x):\n    return x +\n```", {}, False),  # code alone: 0.4
        ("Prove the theorem and write code:\n```\ndef f(): pass\n```", {}, True),
        ("Explain why, step by step, the integral of x^2 is x^3/3", {}, True),
        ("word " * 2500, {}, False),  # length alone: 0.4
        ("Compare and analyze these: " + "word " * 2500, {}, True),
        ("What is the capital of France?", {"complexity": "hard"}, True),
        (
            "Prove the theorem and write code:\n```\ndef f(): pass\n```",
            {"complexity": "easy"},
            False,
        ),
    ],
    ids=[
        "plain",
        "code",
        "math+code",
        "math+steps",
        "long",
        "long+steps",
        "tagged-hard",
        "tagged-easy",
    ],
)
def test_cascade_starts_cheap_unless_the_scorer_says_hard(
    clock: FakeClock, text: str, metadata: dict[str, str], hard: bool
) -> None:
    decision = router(clock, *ladder(), strategy=CascadeStrategy(threshold=0.5)).route(
        ask(text, metadata=metadata)
    )
    order = [d.id for d in decision.ranked]
    if hard:
        assert order == ["mid-a", "mid-b", "frontier", "local-small"]
        assert decision.reason.startswith("hard request: complexity")
    else:
        assert order == ["local-small", "mid-a", "mid-b", "frontier"]
        assert decision.reason.startswith("cheapest tier 0 first")


def test_a_pluggable_scorer_decides(clock: FakeClock) -> None:
    seen: list[int] = []

    def learned(request: RouteRequest, prompt_tokens: int) -> Score:
        seen.append(prompt_tokens)
        return Score(0.91, ("classifier says hard",))

    decision = router(clock, *ladder(), strategy=CascadeStrategy(learned, threshold=0.9)).route(
        ask("hi")
    )
    assert decision.chosen.id == "mid-a"
    assert "classifier says hard" in decision.reason
    assert seen == [decision.prompt_tokens]
    assert HeuristicScorer()(ask("hi"), 1).value < 0.5


def answer(text: str, **kw: Any) -> ChatResponse:
    return ChatResponse(text, "m", "m", "p", Usage(), **kw)


@pytest.mark.parametrize(
    ("response", "request_format", "sure"),
    [
        (answer("Paris."), "text", True),
        (answer(""), "text", False),
        (answer("I can't help with that."), "text", False),
        (answer("Paris", finish_reason="content_filter"), "text", False),
        (answer('{"city": "Paris"'), "json", False),
        (answer('{"city": "Paris"}'), "json", True),
        (answer("Paris is the capital and", finish_reason="length"), "text", False),
        (answer("I'm not sure, but it might be Lyon."), "text", False),
        (answer("I think it is Paris."), "text", True),  # one hedge: 0.7
    ],
)
def test_heuristic_confidence(response: ChatResponse, request_format: Any, sure: bool) -> None:
    request = ChatRequest(
        "chat", [Message("user", "capital of France?")], response_format=request_format
    )
    score = heuristic_confidence(request, response)
    assert (score.value >= 0.5) == sure
    assert sure or score.reasons


class Tiers:
    """Answers per deployment id, and the calls made."""

    def __init__(self, answers: dict[str, ChatResponse | Exception]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    async def __call__(self, deployments: Sequence[Deployment]) -> Outcome[ChatResponse]:
        self.calls.append([d.id for d in deployments])
        reply = self.answers[deployments[0].id]
        if isinstance(reply, Exception):
            raise reply
        return Outcome(reply, deployments[0].id, ())


def decide(clock: FakeClock, text: str = "What is 2 + 2?") -> RouteDecision:
    return router(clock, *ladder(), strategy=CascadeStrategy()).route(ask(text))


async def test_the_cascade_keeps_a_confident_cheap_answer(clock: FakeClock) -> None:
    tiers = Tiers({"local-small": answer("4.")})
    result = await run_cascade(decide(clock), tiers, ask().chat)

    assert (result.outcome.value.text, result.escalated, result.unsure) == ("4.", False, False)
    assert tiers.calls == [["local-small"]]


async def test_the_cascade_escalates_an_unsure_answer_tier_by_tier(clock: FakeClock) -> None:
    tiers = Tiers(
        {
            "local-small": answer("I'm not sure, possibly 5?"),
            "mid-a": answer(""),
            "frontier": answer("4."),
        }
    )
    result = await run_cascade(decide(clock), tiers, ask().chat)

    assert result.outcome.value.text == "4."
    assert tiers.calls == [["local-small"], ["mid-a", "mid-b"], ["frontier"]]
    assert [s.tier for s in result.steps] == [0, 1, 2]
    assert [s.confidence.reasons[0] for s in result.steps[:2] if s.confidence] == [
        'hedging: "i\'m not sure"',
        "empty answer",
    ]
    assert not result.unsure


async def test_the_top_tier_answer_is_kept_even_when_unsure(clock: FakeClock) -> None:
    tiers = Tiers({"local-small": answer(""), "mid-a": answer(""), "frontier": answer("")})
    result = await run_cascade(decide(clock), tiers, ask().chat)
    assert (result.outcome.deployment, result.unsure, len(result.steps)) == ("frontier", True, 3)


async def test_a_hard_request_never_escalates_downwards(clock: FakeClock) -> None:
    decision = decide(clock, "Prove the theorem step by step: the integral of x^2")
    tiers = Tiers({"mid-a": answer(""), "frontier": answer(""), "local-small": answer("never")})
    result = await run_cascade(decision, tiers, ask().chat)
    assert tiers.calls == [["mid-a", "mid-b"], ["frontier"]]
    assert result.unsure


async def test_a_failed_tier_escalates_and_a_failed_top_tier_raises(clock: FakeClock) -> None:
    failure = CallFailed("down", last_error=ProviderOverloaded("503"), attempts=())
    tiers = Tiers({"local-small": failure, "mid-a": answer("4.")})
    result = await run_cascade(decide(clock), tiers, ask().chat)
    assert result.outcome.value.text == "4."
    assert result.steps[0].error is failure

    tiers = Tiers({"local-small": failure, "mid-a": failure, "frontier": failure})
    with pytest.raises(CallFailed):
        await run_cascade(decide(clock), tiers, ask().chat)


async def test_an_unsure_answer_is_kept_when_the_stronger_tiers_are_down(clock: FakeClock) -> None:
    failure = CallFailed("down", last_error=ProviderOverloaded("503"), attempts=())
    hedged = answer("I'm not sure, possibly 5?")
    tiers = Tiers({"local-small": hedged, "mid-a": failure, "frontier": failure})
    result = await run_cascade(decide(clock), tiers, ask().chat)
    assert (result.outcome.deployment, result.unsure) == ("local-small", True)
    assert [s.error is failure for s in result.steps] == [False, True, True]


@pytest.mark.parametrize(
    ("mid_b", "kept", "calls"),
    [
        ("(A) 4", "mid-a", [["local-small"], ["mid-a"], ["mid-b"]]),
        ("B) 5", "frontier", [["local-small"], ["mid-a"], ["mid-b"], ["frontier"]]),
    ],
)
async def test_an_agreement_cascade_asks_two_of_a_tier_and_escalates_on_disagreement(
    clock: FakeClock, mid_b: str, kept: str, calls: list[list[str]]
) -> None:
    tiers = Tiers(
        {
            "local-small": answer("I'm not sure, possibly 5?"),  # tier 0 has one deployment
            "mid-a": answer("A. 4"),
            "mid-b": answer(mid_b),
            "frontier": answer("A"),
        }
    )
    result = await run_cascade(decide(clock), tiers, ask().chat, judge="agreement")
    assert result.outcome.deployment == kept
    assert tiers.calls == calls  # the lone tier 0 is judged by its confidence
    middle = result.steps[1]
    assert [o.deployment for o in middle.others] == ["mid-b"]  # billed, not kept
    assert middle.confidence is not None
    assert middle.confidence.reasons == (
        ("answers agree",) if kept == "mid-a" else ("answers disagree",)
    )


async def test_route_then_resilience_then_cascade_compose(clock: FakeClock) -> None:
    """The stages as the pipeline will chain them: route → cascade over tiers → resilient call
    within a tier (falling back from mid-a to mid-b)."""
    resilience = Resilience(clock, RetryPolicy(attempts_per_deployment=1), rng=random.Random(1))
    served: list[str] = []

    async def chat(d: Deployment) -> ChatResponse:
        served.append(d.id)
        if d.id == "mid-a":
            raise ProviderOverloaded("503")
        return answer("I don't know, maybe 5?" if d.tier == 0 else "4.")

    async def tier(deployments: Sequence[Deployment]) -> Outcome[ChatResponse]:
        return await resilience.call(deployments, chat)

    result = await run_cascade(decide(clock), tier, ask().chat)
    assert served == ["local-small", "mid-a", "mid-b"]
    assert result.outcome.deployment == "mid-b"
    assert [a.outcome for a in result.outcome.attempts] == ["failed", "ok"]


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("B", "(B) Paris", True),
        ("Answer: B.", "b", True),
        ("The correct answer is C", "C) 42", True),
        ("[2] the second", "2.", True),
        ("A) Lyon", "B) Paris", False),
        ("Paris.", "  paris ", True),
        ("Paris", "Lyon", False),
        ("Because it is older.", "because it is older", True),
        ("Apples are red.", "A) apples", False),  # a sentence is no option letter
    ],
)
def test_answers_agree_on_the_same_option_or_the_same_text(a: str, b: str, agree: bool) -> None:
    assert (agreement_key(a) == agreement_key(b)) is agree


def test_agreement_needs_a_confident_first_answer() -> None:
    request = ChatRequest(model="m", messages=[Message("user", "A or B?")])

    def answer(text: str, finish: FinishReason = "stop") -> ChatResponse:
        return ChatResponse(text, "m", "m", "p", Usage(1, 1), finish_reason=finish)

    assert agreement(request, answer("B"), answer("(B)")).value == 1.0
    assert agreement(request, answer("B"), answer("A")).reasons == ("answers disagree",)
    assert agreement(request, answer(""), answer("")).value == 0.0  # empty answers never agree
    assert agreement(request, answer("B", "length"), answer("B")).value == 0.0  # cut short
