"""Self-healing calls. Virtual time (FakeClock) for backoff and deadlines, so these take
microseconds; then the real OpenAI-compatible adapter against the OpenAI simulator with
injected faults (429 + Retry-After, 5xx, hangs, cut streams)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    ContentRefused,
    ContextLengthExceeded,
    ModelError,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
)
from podium.gateway.breaker import BreakerPolicy, Breakers, BreakerState
from podium.gateway.resilience import (
    CallFailed,
    Resilience,
    RetryPolicy,
    fallback_answer,
    fallback_stream,
    is_final_chunk,
)
from podium.gateway.routing import Deployment
from podium.models.base import Capability, ChatChunk, ChatRequest, ChatResponse, Message
from podium.models.catalog import ModelInfo
from podium.models.providers.openai_compat import PROVIDERS, OpenAICompatModel
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.testing.simulators.server import Fault

# the simulator fixtures of the provider tests, shared rather than copied

HANG = object()
ALL = frozenset(Capability)


def dep(name: str, provider: str = "openai", window: int | None = None) -> Deployment:
    info = ModelInfo(f"{provider}/{name}", provider, name, ALL, context_window=window)
    return Deployment(name, info)


class Upstream:
    """Scripted provider behaviour per deployment: each call takes the next outcome (the last
    one repeats): a value, an exception to raise, or ``HANG``."""

    def __init__(self, clock: FakeClock, **script: list[Any]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[tuple[str, float]] = []

    def _next(self, d: Deployment) -> Any:
        self.calls.append((d.id, self.clock.monotonic()))
        outcomes = self.script[d.id]
        return outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]

    async def __call__(self, d: Deployment) -> str:
        outcome = self._next(d)
        if outcome is HANG:
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)

    def stream(self, d: Deployment) -> AsyncIterator[ChatChunk]:
        """Outcomes are lists of chunks (an exception or ``HANG`` inside one breaks the stream)."""
        items = self._next(d)

        async def chunks() -> AsyncIterator[ChatChunk]:
            if isinstance(items, BaseException):
                raise items
            for item in items:
                if item is HANG:
                    await asyncio.Event().wait()
                if isinstance(item, BaseException):
                    raise item
                yield item

        return chunks()

    @property
    def order(self) -> list[str]:
        return [name for name, _ in self.calls]


def resilience(clock: FakeClock, breakers: Breakers | None = None, **kw: Any) -> Resilience:
    kw.setdefault("attempt_timeout_s", 5.0)
    return Resilience(clock, RetryPolicy(**kw), breakers=breakers, rng=random.Random(7))


def overloaded() -> ProviderOverloaded:
    return ProviderOverloaded("503 overloaded", provider="openai")


A, B, C = dep("a"), dep("b"), dep("c")


# -- retries and backoff --------------------------------------------------------------------------


async def test_retries_a_retryable_error_with_full_jitter_backoff(clock: FakeClock) -> None:
    up = Upstream(clock, a=[overloaded(), overloaded(), "ok"])
    outcome = await resilience(clock, base_delay_s=1.0).call([A, B], up)

    assert outcome.value == "ok"
    assert outcome.deployment == "a"
    assert up.order == ["a", "a", "a"]
    assert [a.outcome for a in outcome.attempts] == ["failed", "failed", "ok"]
    assert [a.number for a in outcome.attempts] == [1, 2, 3]
    first, second = clock.sleeps
    assert 0 <= first <= 1.0  # uniform in [0, base]
    assert 0 <= second <= 2.0  # uniform in [0, 2·base]
    assert [a.delay_s for a in outcome.attempts] == [0.0, first, second]
    assert outcome.attempts[0].error == "ProviderOverloaded"


@given(
    retry=st.integers(1, 12),
    seed=st.integers(0, 2**32),
    asked=st.one_of(st.none(), st.floats(0, 100)),
)
def test_backoff_is_full_jitter_capped_and_never_sooner_than_asked(
    retry: int, seed: int, asked: float | None
) -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0)
    delay = policy.backoff(retry, random.Random(seed), asked)
    cap = min(8.0, 0.5 * 2 ** (retry - 1))
    assert delay >= (asked or 0.0)
    assert delay <= max(cap, asked or 0.0)


def test_jitter_spreads_the_delays_over_the_whole_range() -> None:
    policy, rng = RetryPolicy(base_delay_s=1.0), random.Random(1)
    draws = [policy.backoff(3, rng) for _ in range(4000)]  # uniform in [0, 4]
    assert min(draws) < 0.05
    assert max(draws) > 3.95
    assert sum(draws) / len(draws) == pytest.approx(2.0, abs=0.1)


async def test_a_rate_limit_is_never_retried_sooner_than_retry_after(clock: FakeClock) -> None:
    up = Upstream(
        clock, a=[RateLimited("429", retry_after=7.0), RateLimited("429", retry_after=3.0), "ok"]
    )
    outcome = await resilience(clock, base_delay_s=0.1).call([A], up)

    assert outcome.value == "ok"
    (t1, t2, t3) = (t for _, t in up.calls)
    assert t2 - t1 >= 7.0
    assert t3 - t2 >= 3.0
    assert [a.retry_after_s for a in outcome.attempts] == [7.0, 3.0, None]


async def test_a_long_retry_after_moves_on_to_the_next_deployment_at_once(clock: FakeClock) -> None:
    up = Upstream(clock, a=[RateLimited("429", retry_after=600)], b=["from b"])
    outcome = await resilience(clock, max_retry_after_s=30).call([A, B], up)

    assert (outcome.value, up.order, clock.sleeps) == ("from b", ["a", "b"], [])


async def test_a_wait_beyond_the_deadline_moves_on_instead_of_sleeping(clock: FakeClock) -> None:
    up = Upstream(clock, a=[RateLimited("429", retry_after=20)], b=["from b"])
    outcome = await resilience(clock, deadline_s=10).call([A, B], up)

    assert (outcome.value, up.order, clock.sleeps) == ("from b", ["a", "b"], [])


async def test_the_deadline_bounds_the_whole_call(clock: FakeClock) -> None:
    up = Upstream(clock, a=[overloaded()], b=[overloaded()])
    policy = {
        "deadline_s": 10.0,
        "base_delay_s": 4.0,
        "max_delay_s": 4.0,
        "attempts_per_deployment": 100,
        "max_attempts": 100,
    }
    with pytest.raises(CallFailed, match=r"deadline of 10\.0 s") as caught:
        await resilience(clock, **policy).call([A, B], up)

    assert clock.monotonic() <= 10.0
    assert isinstance(caught.value.last_error, ProviderOverloaded)
    assert len(up.calls) >= 3


async def test_max_attempts_caps_the_tries_over_all_deployments(clock: FakeClock) -> None:
    up = Upstream(clock, a=[overloaded()], b=[overloaded()], c=["never"])
    with pytest.raises(CallFailed, match="limit of 4 attempts") as caught:
        await resilience(clock, attempts_per_deployment=3, max_attempts=4).call([A, B, C], up)

    assert up.order == ["a", "a", "a", "b"]
    assert len(caught.value.attempts) == 4


async def test_each_attempt_times_out_then_the_next_deployment_answers(clock: FakeClock) -> None:
    up = Upstream(clock, a=[HANG], b=["from b"])
    outcome = await resilience(clock, attempt_timeout_s=0.05, attempts_per_deployment=2).call(
        [A, B], up
    )

    assert outcome.value == "from b"
    assert up.order == ["a", "a", "b"]
    assert [a.error for a in outcome.attempts[:2]] == ["ProviderTimeout", "ProviderTimeout"]
    assert "no answer within 0.05 s" in (outcome.attempts[0].message or "")


# -- fallback chains ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [AuthenticationFailed("401"), ModelError("unknown model")], ids=["auth", "other"]
)
async def test_a_deployment_specific_error_falls_back_without_retrying(
    clock: FakeClock, error: ModelError
) -> None:
    up = Upstream(clock, a=[error], b=["from b"])
    outcome = await resilience(clock).call([A, B], up)

    assert (outcome.value, outcome.deployment, up.order, clock.sleeps) == (
        "from b",
        "b",
        ["a", "b"],
        [],
    )


async def test_a_bad_request_stops_at_once(clock: FakeClock) -> None:
    up = Upstream(clock, a=[BadModelRequest("400: bad tool schema")], b=["never"])
    with pytest.raises(CallFailed) as caught:
        await resilience(clock).call([A, B], up, fallback=lambda _: "degraded")

    assert up.order == ["a"]
    assert isinstance(caught.value.last_error, BadModelRequest)
    assert not caught.value.retryable


async def test_context_overflow_goes_to_a_larger_window_skipping_those_that_cannot_fit(
    clock: FakeClock,
) -> None:
    small, same, unknown, big = (
        dep("small", window=8000),
        dep("same", window=8000),
        dep("unknown"),
        dep("big", window=128000),
    )
    up = Upstream(
        clock,
        small=[ContextLengthExceeded("too long")],
        same=["never"],
        unknown=["never"],
        big=["from big"],
    )
    outcome = await resilience(clock).call([small, same, unknown, big], up)

    assert (outcome.value, up.order) == ("from big", ["small", "big"])
    skipped = [
        (a.deployment, a.outcome, a.error) for a in outcome.attempts if a.outcome == "skipped"
    ]
    assert skipped == [
        ("same", "skipped", "ContextLengthExceeded"),
        ("unknown", "skipped", "ContextLengthExceeded"),
    ]


async def test_needed_tokens_skip_windows_too_small(clock: FakeClock) -> None:
    small, big = dep("small", window=4000), dep("big", window=32000)
    up = Upstream(clock, small=["never"], big=["from big"])
    outcome = await resilience(clock).call([small, big], up, needed_tokens=5000)

    assert (outcome.value, up.order) == ("from big", ["big"])
    assert outcome.attempts[0].message == "context window 4000 < 5000 tokens"


async def test_a_content_refusal_goes_to_another_provider(clock: FakeClock) -> None:
    a1, a2, other = dep("a1", "openai"), dep("a2", "openai"), dep("claude", "anthropic")
    up = Upstream(clock, a1=[ContentRefused("policy")], a2=["never"], claude=["from claude"])
    outcome = await resilience(clock).call([a1, a2, other], up)

    assert (outcome.value, up.order) == ("from claude", ["a1", "claude"])
    assert outcome.attempts[1].message == "provider openai already refused the content"


async def test_when_everything_fails_the_declared_answer_is_returned_marked_degraded(
    clock: FakeClock,
) -> None:
    up = Upstream(clock, a=[overloaded()], b=[RateLimited("429", retry_after=1)])
    outcome = await resilience(clock, attempts_per_deployment=2).call(
        [A, B], up, fallback=fallback_answer("Try again later.")
    )

    assert outcome.degraded
    assert outcome.deployment is None
    assert isinstance(outcome.value, ChatResponse)
    assert outcome.value.text == "Try again later."
    assert outcome.value.usage.requests == 0
    assert outcome.error is not None
    assert [a.deployment for a in outcome.attempts] == ["a", "a", "b", "b"]


async def test_without_a_fallback_the_failure_carries_every_attempt_and_the_retry_hint(
    clock: FakeClock,
) -> None:
    up = Upstream(clock, a=[overloaded()], b=[RateLimited("429", retry_after=2.5, provider="groq")])
    with pytest.raises(CallFailed) as caught:
        await resilience(clock, attempts_per_deployment=1).call([A, B], up)

    failure = caught.value
    assert failure.retryable
    assert failure.retry_after == 2.5
    assert failure.provider == "groq"
    assert [a.to_dict()["error"] for a in failure.attempts] == ["ProviderOverloaded", "RateLimited"]
    assert "after 2 attempt(s)" in str(failure)


async def test_a_bug_is_never_hidden_behind_a_fallback(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1, cooldown_s=1))
    up = Upstream(clock, a=[overloaded(), KeyError("choices")], b=["never"])
    with pytest.raises(CallFailed):
        await resilience(clock, breakers, attempts_per_deployment=1).call([A], up)
    clock.advance(1)  # half-open: the next call is a probe
    with pytest.raises(KeyError):
        await resilience(clock, breakers).call([A, B], up, fallback=lambda _: "degraded")

    assert up.order == ["a", "a"]
    assert breakers["a"].state is BreakerState.HALF_OPEN
    assert breakers.available("a")  # the probe slot was given back


async def test_cancellation_propagates_and_frees_the_probe(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1, cooldown_s=1))
    breakers["a"].failure(breakers["a"].acquire(), overloaded())  # type: ignore[arg-type]
    clock.advance(1)
    up = Upstream(clock, a=[HANG])
    task = asyncio.create_task(resilience(clock, breakers).call([A], up))
    await asyncio.sleep(0.01)
    assert not breakers.available("a")  # the probe is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breakers.available("a")


# -- circuit breakers -----------------------------------------------------------------------------


async def test_an_open_breaker_is_skipped_and_recovers_after_its_cooldown(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=3, cooldown_s=30))
    up = Upstream(clock, a=[overloaded()], b=["from b"])
    r = resilience(clock, breakers, attempts_per_deployment=1)
    for _ in range(3):
        assert (await r.call([A, B], up)).deployment == "b"
    assert breakers["a"].state is BreakerState.OPEN

    up.calls.clear()
    outcome = await r.call([A, B], up)
    assert up.order == ["b"]
    assert (outcome.attempts[0].outcome, outcome.attempts[0].error) == ("skipped", "CircuitOpen")

    clock.advance(30)
    up.script["a"] = ["healed"]
    outcome = await r.call([A, B], up)
    assert (outcome.value, outcome.deployment) == ("healed", "a")
    assert breakers["a"].state is BreakerState.CLOSED


# -- streams --------------------------------------------------------------------------------------


def chunks(text: str) -> list[ChatChunk]:
    return [ChatChunk(delta=w) for w in text.split(" ")] + [ChatChunk(finish_reason="stop")]


async def drain(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


async def test_a_stream_broken_before_its_first_chunk_restarts_transparently(
    clock: FakeClock,
) -> None:
    up = Upstream(clock, a=[overloaded()], b=[[ProviderTimeout("cut")]], c=[chunks("hello there")])
    stream = resilience(clock, attempts_per_deployment=1).stream(
        [A, B, C], up.stream, is_final=is_final_chunk
    )
    got = await drain(stream)

    assert [c.delta for c in got] == ["hello", "there", ""]
    assert stream.deployment == "c"
    assert [(a.deployment, a.outcome) for a in stream.attempts] == [
        ("a", "failed"),
        ("b", "failed"),
        ("c", "ok"),
    ]


async def test_a_stream_broken_after_chunks_were_delivered_ends_with_an_explicit_error(
    clock: FakeClock,
) -> None:
    up = Upstream(
        clock, a=[[ChatChunk(delta="half"), ProviderOverloaded("reset")]], b=[chunks("never")]
    )
    stream = resilience(clock).stream([A, B], up.stream, is_final=is_final_chunk)
    got: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            got.append(chunk.delta)

    with pytest.raises(ProviderTimeout, match="broke after it started"):
        await consume()

    assert got == ["half"]
    assert up.order == ["a"]  # never restarted: the caller already has bytes
    assert stream.attempts[-1].outcome == "cut"


async def test_a_stream_that_ends_without_its_final_chunk_is_not_a_success(
    clock: FakeClock,
) -> None:
    up = Upstream(clock, a=[[ChatChunk(delta="trunc"), ChatChunk(delta="ated")]])
    with pytest.raises(ProviderTimeout, match="ended before its final chunk"):
        await drain(resilience(clock).stream([A], up.stream, is_final=is_final_chunk))


async def test_a_stream_silent_too_long_times_out(clock: FakeClock) -> None:
    up = Upstream(clock, a=[[HANG]], b=[[ChatChunk(delta="go"), HANG]])
    r = resilience(
        clock, attempt_timeout_s=0.05, stream_idle_timeout_s=0.05, attempts_per_deployment=1
    )
    stream = r.stream([A, B], up.stream, is_final=is_final_chunk)
    with pytest.raises(ProviderTimeout):
        await drain(stream)
    assert [(a.deployment, a.outcome, a.error) for a in stream.attempts] == [
        ("a", "failed", "ProviderTimeout"),
        ("b", "cut", "ProviderTimeout"),
    ]


async def test_a_stream_degrades_to_the_declared_answer(clock: FakeClock) -> None:
    up = Upstream(clock, a=[overloaded()])
    r = resilience(clock, attempts_per_deployment=1)
    stream = r.stream([A], up.stream, is_final=is_final_chunk, fallback=fallback_stream("Busy."))
    got = await drain(stream)

    assert [(c.delta, c.finish_reason) for c in got] == [("Busy.", None), ("", "stop")]
    assert stream.degraded
    assert stream.error is not None


async def test_a_caller_leaving_mid_stream_frees_the_probe(clock: FakeClock) -> None:
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1, cooldown_s=1))
    breakers["a"].failure(breakers["a"].acquire(), overloaded())  # type: ignore[arg-type]
    clock.advance(1)
    up = Upstream(clock, a=[chunks("one two three")])
    stream = resilience(clock, breakers).stream([A], up.stream, is_final=is_final_chunk)
    async for _ in stream:
        break
    await stream.aclose()

    assert breakers["a"].state is BreakerState.HALF_OPEN
    assert breakers.available("a")


# -- against the real adapter and the OpenAI simulator, with injected faults -----------------------


FAULTS: dict[str, Callable[[], Fault]] = {
    "429": lambda: Fault(status=429, retry_after=2),
    "500": lambda: Fault(status=500),
    "503": lambda: Fault(status=503),
    "hang": lambda: Fault(hang=True),
}
STREAM_FAULTS: dict[str, Callable[[], Fault]] = {
    **FAULTS,
    "cut-before-text": lambda: Fault(after_chunks=1),  # after the role chunk: nothing delivered yet
    "cut-mid-text": lambda: Fault(after_chunks=3),  # two words delivered
    "hang-mid-text": lambda: Fault(after_chunks=3, hang=True),
}


Fleet = tuple[list[Deployment], dict[str, OpenAICompatModel], list[OpenAISimulator]]


@pytest.fixture
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    """Three deployments of one model, each on its own simulator (faults hit one at a time)."""
    use = request.getfixturevalue("use_simulator")
    spec = next(s for s in PROVIDERS if s.name == "openai")
    deployments, models, sims = [], {}, []
    for name in ("east", "west", "north"):
        key = f"sk-{name}-0123456789abcdef"
        sim = use(OpenAISimulator, api_key=key)
        d = dep(name)
        url, secret = f"{sim.url}/v1", SecretStr(key)
        models[name] = OpenAICompatModel(d.info, spec, base_url=url, api_key=secret, timeout=30)
        deployments.append(d)
        sims.append(sim)
    yield deployments, models, sims
    await asyncio.gather(*(m.close() for m in models.values()))


def inject_random_faults(
    sims: list[OpenAISimulator],
    faults: dict[str, Callable[[], Fault]],
    seed: int,
    rate: float = 0.3,
) -> None:
    """A seeded schedule: each request a simulator receives draws a fault with probability
    ``rate`` (``Fault()`` serves the request normally)."""
    rng = random.Random(seed)
    kinds = sorted(faults)
    for sim in sims:
        schedule = [
            faults[rng.choice(kinds)]() if rng.random() < rate else Fault() for _ in range(400)
        ]
        sim.inject(*schedule)


def ask(text: str) -> ChatRequest:
    return ChatRequest(model="openai/gpt-4o-mini", messages=[Message("user", text)])


def sim_resilience(clock: FakeClock) -> Resilience:
    policy = RetryPolicy(
        attempt_timeout_s=0.3,
        stream_idle_timeout_s=0.3,
        attempts_per_deployment=3,
        deadline_s=300.0,
    )
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=6, cooldown_s=5))
    return Resilience(clock, policy, breakers=breakers, rng=random.Random(3))


async def test_at_30_percent_faults_every_request_is_answered_correctly(
    clock: FakeClock, fleet: Fleet
) -> None:
    deployments, models, sims = fleet
    inject_random_faults(sims, FAULTS, seed=2024)
    r = sim_resilience(clock)
    outcomes = []
    for i in range(200):
        request = ask(f"please echo request number {i}")
        outcome = await r.call(deployments, lambda d, q=request: models[d.id].chat(q))
        assert outcome.value.text == f"You said: please echo request number {i}"
        assert not outcome.degraded
        outcomes.append(outcome)

    faults = [
        q.fault for s in sims for q in s.requests if q.fault is not None and q.fault != Fault()
    ]
    failed = [a for o in outcomes for a in o.attempts if a.outcome == "failed"]
    # every injected fault was met, recorded and overcome (a slow machine may add a timeout)
    assert len(faults) > 60
    errors = Counter(a.error for a in failed)
    assert errors["RateLimited"] == sum(1 for f in faults if f.status == 429)
    assert errors["ProviderOverloaded"] == sum(1 for f in faults if f.status in (500, 503))
    assert errors["ProviderTimeout"] >= sum(1 for f in faults if f.hang)
    assert {a.error for a in failed} == {"RateLimited", "ProviderOverloaded", "ProviderTimeout"}
    assert sum(len(s.requests) for s in sims) == sum(
        1 for o in outcomes for a in o.attempts if a.number
    )
    assert all(a.retry_after_s == 2.0 for a in failed if a.error == "RateLimited")
    assert all(
        b.delay_s >= 2.0  # the next try of a rate-limited deployment waited as asked
        for o in outcomes
        for a, b in itertools.pairwise(o.attempts)
        if a.error == "RateLimited" and b.deployment == a.deployment
    )


async def test_at_30_percent_faults_no_truncated_stream_counts_as_success(
    clock: FakeClock, fleet: Fleet
) -> None:
    deployments, models, sims = fleet
    inject_random_faults(sims, STREAM_FAULTS, seed=7)
    r = sim_resilience(clock)
    answered, restarted, explicit_errors = 0, 0, 0
    for i in range(200):
        request, expected = (
            ask(f"stream request number {i} please"),
            f"You said: stream request number {i} please",
        )
        for _client_retry in range(5):  # a client retries a stream that ended with an error
            stream = r.stream(
                deployments, lambda d, q=request: models[d.id].stream(q), is_final=is_final_chunk
            )
            text = ""
            try:
                async for chunk in stream:
                    text += chunk.delta
            except ProviderTimeout:
                explicit_errors += 1
                assert stream.attempts[-1].outcome == "cut"
                assert expected.startswith(text)
                assert text != expected
                continue
            assert text == expected  # a stream that ends normally is complete, never truncated
            restarted += any(a.outcome == "failed" for a in stream.attempts)
            answered += 1
            break

    assert answered == 200
    assert explicit_errors > 5
    assert restarted > 20


async def test_the_breaker_opens_on_a_dead_deployment_and_recovers_after_cooldown(
    clock: FakeClock, fleet: Fleet
) -> None:
    deployments, models, sims = fleet
    dead, healthy = sims[0], sims[1]
    dead.inject(Fault(status=503, times=None))
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=3, cooldown_s=60))
    r = Resilience(
        clock, RetryPolicy(attempts_per_deployment=1, attempt_timeout_s=5), breakers=breakers
    )
    pair = deployments[:2]

    async def send(text: str) -> Any:
        request = ask(text)
        return await r.call(pair, lambda d: models[d.id].chat(request))

    for i in range(10):
        outcome = await send(f"hello {i}")
        assert (outcome.deployment, outcome.value.text) == ("west", f"You said: hello {i}")
    assert len(dead.requests) == 3  # then the breaker kept every call away from it
    assert breakers["east"].state is BreakerState.OPEN

    clock.advance(30)
    await send("still dead?")
    assert len(dead.requests) == 3

    clock.advance(30)  # cooldown over: one probe; the deployment is still dead
    await send("probe")
    assert len(dead.requests) == 4
    assert breakers["east"].state is BreakerState.OPEN

    dead.reset()  # healed
    clock.advance(60)
    outcome = await send("back?")
    assert (outcome.deployment, outcome.value.text) == ("east", "You said: back?")
    assert breakers["east"].state is BreakerState.CLOSED
    assert len(healthy.requests) == 12
