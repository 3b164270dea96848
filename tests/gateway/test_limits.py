"""Rate limits: exact at the boundary, atomic across scopes, exact under concurrency, on the
memory limiter and on Redis (real server). The same behaviour tests run on both; Redis is given
the virtual clock (times passed into its Lua script), and separately runs on its own ``TIME``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from redis.asyncio import Redis

from podium.errors import ModelError, PodiumError, RateLimited
from podium.gateway.limits import (
    LimitRequest,
    LimitRule,
    MemoryLimiter,
    RateLimiter,
    RateLimitExceeded,
    RedisLimiter,
    Reservation,
    estimate_tokens,
)
from podium.models.base import ChatRequest, Message, Tool
from podium.testing import FakeClock
from tests.gateway.conftest import REDIS_URL, connect_redis, delete_prefix


@pytest.fixture
def clock() -> FakeClock:
    # Near 1e6 s a float still resolves nanoseconds (at the epoch's 1.7e9 s, ~0.2 µs), so
    # thousands of virtual steps add up to exact microseconds on both limiters.
    return FakeClock(start=1_000_000.0)


@pytest.fixture(params=["memory", "redis"])
async def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[MemoryLimiter | RedisLimiter]:
    """Each limiter on the virtual clock."""
    if request.param == "memory":
        yield MemoryLimiter(clock)
        return
    client = await connect_redis()
    try:
        yield RedisLimiter(client, clock=clock, prefix=redis_prefix)
    finally:
        await delete_prefix(client, redis_prefix)
        await client.aclose()


async def used(limiter: RateLimiter, rule: LimitRule) -> dict[str, int]:
    return dict(await limiter.used(rule))


async def refused(limiter: RateLimiter, request: LimitRequest) -> RateLimitExceeded:
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire(request)
    return info.value


# -- exactness at the boundary ----------------------------------------------------------------


async def test_n_allowed_n_plus_one_refused_then_allowed_exactly_when_the_window_frees(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    key = LimitRule("key:k1", rpm=5)
    for _ in range(5):  # at t = 0, 10, 20, 30, 40
        await limiter.acquire(LimitRequest([key]))
        clock.advance(10)
    error = await refused(limiter, LimitRequest([key]))  # t = 50: the one from t = 0 frees at 60
    assert (error.scope, error.dimension, error.limit, error.window_s) == (
        "key:k1",
        "requests",
        5,
        60,
    )
    assert error.retry_after == 10.0
    clock.advance(9.999999)
    assert (await refused(limiter, LimitRequest([key]))).retry_after == pytest.approx(1e-6)
    clock.advance(0.000001)  # t = 60 exactly
    await limiter.acquire(LimitRequest([key]))
    assert (await refused(limiter, LimitRequest([key]))).retry_after == 10.0  # t = 10 frees at 70


async def test_retry_after_is_when_enough_tokens_leave_the_window(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    team = LimitRule("team:t", tpm=1000)
    for tokens in (300, 300, 300):  # at t = 0, 1, 2
        await limiter.acquire(LimitRequest([team], tokens=tokens))
        clock.advance(1)
    error = await refused(limiter, LimitRequest([team], tokens=450))  # needs the first two gone
    assert (error.dimension, error.requested, error.retry_after) == ("tokens", 450, 58.0)
    clock.advance(58)
    await limiter.acquire(LimitRequest([team], tokens=450))


async def test_the_wait_walks_a_long_log(limiter: RateLimiter, clock: FakeClock) -> None:
    # 250 entries of one token (past the Redis script's page of 100), 1 ms apart.
    team = LimitRule("team:t", tpm=250, window_s=1.0)
    for _ in range(250):
        await limiter.acquire(LimitRequest([team], tokens=1))
        clock.advance(0.001)
    error = await refused(limiter, LimitRequest([team], tokens=150))
    # Now t = 0.25 s; the 150th entry (t = 0.149 s) frees at 1.149 s.
    assert error.retry_after == pytest.approx(0.899, abs=1e-9)
    clock.advance(0.899)
    await limiter.acquire(LimitRequest([team], tokens=150))


async def test_a_request_larger_than_the_limit_never_fits(limiter: RateLimiter) -> None:
    error = await refused(limiter, LimitRequest([LimitRule("model:m", tpm=100)], tokens=101))
    assert error.retry_after is None
    assert not error.retryable
    assert "more than the limit" in str(error)


async def test_an_expired_window_is_forgotten(limiter: RateLimiter, clock: FakeClock) -> None:
    key = LimitRule("key:k", rpm=2, tpm=100, window_s=5)
    for _ in range(2):
        await limiter.acquire(LimitRequest([key], tokens=50))
    assert await used(limiter, key) == {"requests": 2, "tokens": 100}
    clock.advance(5)
    assert await used(limiter, key) == {"requests": 0, "tokens": 0}
    for _ in range(2):
        await limiter.acquire(LimitRequest([key], tokens=50))
    assert await used(limiter, key) == {"requests": 2, "tokens": 100}


# -- tokens: reserve, then reconcile ------------------------------------------------------------


async def test_reconciling_frees_or_takes_tokens(limiter: RateLimiter, clock: FakeClock) -> None:
    team = LimitRule("team:t", tpm=1000)
    reservation = await limiter.acquire(LimitRequest([team], tokens=800))
    await refused(limiter, LimitRequest([team], tokens=300))
    await limiter.reconcile(reservation, 200)  # the answer was short
    await limiter.reconcile(reservation, 200)  # idempotent
    assert await used(limiter, team) == {"tokens": 200}
    second = await limiter.acquire(LimitRequest([team], tokens=300))
    await limiter.reconcile(second, 900)  # the estimate was too low: the truth is recorded
    assert await used(limiter, team) == {"tokens": 1100}
    error = await refused(limiter, LimitRequest([team], tokens=1))
    assert error.retry_after == 60.0  # both were admitted at t = 0
    clock.advance(60)
    await limiter.acquire(LimitRequest([team], tokens=1000))


async def test_reconcile_leaves_request_counts_alone(limiter: RateLimiter) -> None:
    rule = LimitRule("key:k", rpm=10, tpm=1000)
    reservation = await limiter.acquire(LimitRequest([rule], tokens=500))
    await limiter.reconcile(reservation, 0)
    assert await used(limiter, rule) == {"requests": 1, "tokens": 0}


async def test_release_refunds_every_counter(limiter: RateLimiter) -> None:
    key, team = LimitRule("key:k", rpm=1, tpm=100), LimitRule("team:t", rpm=1)
    reservation = await limiter.acquire(LimitRequest([key, team], tokens=100))
    await refused(limiter, LimitRequest([key, team], tokens=1))
    await limiter.release(reservation)
    await limiter.release(reservation)  # a second release takes nothing more
    assert await used(limiter, key) == {"requests": 0, "tokens": 0}
    await limiter.acquire(LimitRequest([key, team], tokens=100))


# -- several scopes, atomically ---------------------------------------------------------------


async def test_a_refusal_by_one_scope_consumes_no_other(limiter: RateLimiter) -> None:
    team = LimitRule("team:search", rpm=2, tpm=10_000)
    k1, k2 = LimitRule("key:k1", rpm=5, tpm=1000), LimitRule("key:k2", rpm=5, tpm=1000)
    model = LimitRule("model:gpt-4o", rpm=100)
    await limiter.acquire(LimitRequest([k1, team, model], tokens=100))
    await limiter.acquire(LimitRequest([k1, team, model], tokens=100))
    error = await refused(limiter, LimitRequest([k2, team, model], tokens=100))
    assert (error.scope, error.dimension) == ("team:search", "requests")
    assert await used(limiter, k2) == {"requests": 0, "tokens": 0}
    assert await used(limiter, model) == {"requests": 2}
    assert await used(limiter, team) == {"requests": 2, "tokens": 200}


async def test_the_longest_wait_is_reported(limiter: RateLimiter, clock: FakeClock) -> None:
    key = LimitRule("key:k", rpm=1, window_s=10)
    deployment = LimitRule("deployment:azure-east", rpm=1, window_s=30)
    await limiter.acquire(LimitRequest([key, deployment]))
    clock.advance(5)
    error = await refused(limiter, LimitRequest([key, deployment]))
    assert (error.scope, error.retry_after) == ("deployment:azure-east", 25.0)


async def test_a_reservation_id_is_used_once(limiter: RateLimiter) -> None:
    rule = LimitRule("key:k", rpm=10)
    first = await limiter.acquire(LimitRequest([rule], request_id="req-1"))
    assert isinstance(first, Reservation)
    assert first.id == "req-1"
    with pytest.raises(ValueError, match="already exists"):
        await limiter.acquire(LimitRequest([rule], request_id="req-1"))
    assert await used(limiter, rule) == {"requests": 1}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (LimitRequest([LimitRule("key:k", rpm=1), LimitRule("key:k", rpm=2)]), "same scope"),
        (LimitRequest([LimitRule("key:k", tpm=1)], tokens=-1), "negative"),
        (LimitRequest([LimitRule("key:k", rpm=1, window_s=0)]), "positive"),
        (LimitRequest([LimitRule("key:k", rpm=1)], request_id="#total"), "'#'"),
    ],
)
async def test_malformed_requests(
    limiter: RateLimiter, request_: LimitRequest, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await limiter.acquire(request_)


def test_our_refusal_is_not_the_providers() -> None:
    error = RateLimitExceeded(
        scope="key:k", dimension="requests", limit=1, window_s=60, requested=1, retry_after=3.5
    )
    assert isinstance(error, PodiumError)
    assert not isinstance(error, ModelError | RateLimited)
    assert error.retryable
    assert str(error) == "rate limit of 1 requests per 60 s for key:k exceeded; retry in 3.500 s"


def test_estimate_tokens_counts_input_and_the_output_allowance() -> None:
    request = ChatRequest("m", [Message("user", "x" * 400)], max_tokens=100)
    assert estimate_tokens(request) == 100 + 102  # (400 + len("user") + 4) / 4
    assert estimate_tokens(ChatRequest("m", [Message("user", "")]), default_output=7) == 2 + 7
    with_tools = ChatRequest("m", [Message("user", "")], tools=[Tool("f", "d" * 100)], max_tokens=0)
    assert estimate_tokens(with_tools) > estimate_tokens(
        ChatRequest("m", [Message("user", "")], max_tokens=0)
    )


# -- concurrency --------------------------------------------------------------------------------


async def gather_grants(limiter: RateLimiter, rules: list[LimitRule], n: int) -> int:
    results = await asyncio.gather(
        *(limiter.acquire(LimitRequest(rules, tokens=1)) for _ in range(n)), return_exceptions=True
    )
    errors = [r for r in results if not isinstance(r, Reservation)]
    assert all(isinstance(e, RateLimitExceeded) for e in errors)
    return len(results) - len(errors)


async def test_1000_concurrent_acquires_grant_exactly_the_limit(limiter: RateLimiter) -> None:
    rules = [LimitRule("key:k", rpm=100), LimitRule("team:t", tpm=10_000)]
    assert await gather_grants(limiter, rules, 1000) == 100


def test_memory_limiter_is_exact_across_threads() -> None:
    limiter = MemoryLimiter(FakeClock())
    rules = [LimitRule("key:k", rpm=100), LimitRule("team:t", rpm=1000)]
    barrier = threading.Barrier(8)
    granted: list[int] = []

    def worker() -> None:
        async def run() -> int:
            barrier.wait()
            return await gather_grants(limiter, rules, 125)

        granted.append(asyncio.run(run()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100
    assert limiter.used_now(rules[1]) == {"requests": 100}  # no refused request took from the team


def test_redis_limiter_is_exact_across_replicas(redis_prefix: str) -> None:
    """Four threads, each its own event loop and Redis client (as four gateway replicas), on
    the server's clock."""
    rules = [LimitRule("key:k", rpm=100), LimitRule("team:t", tpm=100_000)]
    barrier = threading.Barrier(4)
    granted: list[int] = []

    def replica() -> None:
        async def run() -> int:
            limiter = RedisLimiter.from_url(REDIS_URL, prefix=redis_prefix)
            try:
                await limiter.client.ping()
                barrier.wait()
                return await gather_grants(limiter, rules, 250)
            finally:
                await limiter.close()

        granted.append(asyncio.run(run()))

    async def cleanup() -> dict[str, int]:
        client = await connect_redis()
        try:
            usage = await RedisLimiter(client, prefix=redis_prefix).used(rules[1])
            async for name in client.scan_iter(match=redis_prefix + "*"):
                await client.unlink(name)
            return usage
        finally:
            await client.aclose()

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100
    assert asyncio.run(cleanup()) == {"tokens": 100}


# -- Redis on its own clock -----------------------------------------------------------------------


async def test_redis_server_time_small_window(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RedisLimiter(redis_client, prefix=redis_prefix)  # no clock: Redis TIME
    rule = LimitRule("key:k", rpm=3, window_s=0.5)
    first = await limiter.acquire(LimitRequest([rule]))
    for _ in range(2):
        await limiter.acquire(LimitRequest([rule]))
    error = await refused(limiter, LimitRequest([rule]))
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 0.5
    await asyncio.sleep(error.retry_after)
    second = await limiter.acquire(LimitRequest([rule]))
    assert second.at - first.at >= 0.5  # admitted no earlier than the window allows
    names = [n async for n in redis_client.scan_iter(match=redis_prefix + "*")]
    assert len(names) == 2
    for name in names:
        assert 0 < await redis_client.pttl(name) <= 1500  # idle counters leave Redis


async def test_redis_prunes_a_large_window(
    redis_client: Redis, redis_prefix: str, clock: FakeClock
) -> None:
    limiter = RedisLimiter(redis_client, clock=clock, prefix=redis_prefix)
    rule = LimitRule("key:k", rpm=5000, window_s=1)
    assert await gather_grants(limiter, [rule], 1200) == 1200
    clock.advance(1)
    await limiter.acquire(LimitRequest([rule]))  # prunes 1,200 entries, 500 at a time
    assert await limiter.used(rule) == {"requests": 1}
    assert await redis_client.zcard(f"{redis_prefix}key:k|requests|1000000:z") == 1
    assert await redis_client.hlen(f"{redis_prefix}key:k|requests|1000000:h") == 2  # + #total


# -- the memory limiter against a reference model -------------------------------------------------

MODEL_RULES = (
    LimitRule("key:a", rpm=3, tpm=40, window_s=5),
    LimitRule("team:t", rpm=5, window_s=3),
    LimitRule("model:m", tpm=60, window_s=7),
)
US = 1_000_000


@dataclass
class Admitted:
    reservation: Reservation
    at: int
    amounts: dict[tuple[str, str], int]
    """(scope, dimension) -> amount now counted."""


def limits_of(rule: LimitRule) -> list[tuple[str, int, int]]:
    """(dimension, limit, window in µs) of a rule, in the order the limiter checks them."""
    window = round(rule.window_s * US)
    out = [("requests", rule.rpm, window)] if rule.rpm is not None else []
    return out + ([("tokens", rule.tpm, window)] if rule.tpm is not None else [])


class LimiterMachine(RuleBasedStateMachine):
    """Random acquires, clock moves (some landing exactly on a freeing instant), reconciles and
    releases; every outcome, refusal scope and ``retry_after`` must match a plain model that
    sums the amounts admitted in each window."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(start=0.0)
        self.limiter = MemoryLimiter(self.clock, sweep_every=7)
        self.admitted: list[Admitted] = []
        self.count = 0

    def now(self) -> int:
        return round(self.clock.monotonic() * US)

    def live(self, key: tuple[str, str], window: int) -> list[tuple[int, int]]:
        cutoff = self.now() - window
        return sorted(
            (a.at, a.amounts[key]) for a in self.admitted if key in a.amounts and a.at > cutoff
        )

    @rule(
        which=st.sets(st.sampled_from(range(len(MODEL_RULES))), min_size=1),
        tokens=st.integers(0, 70),
    )
    def acquire(self, which: set[int], tokens: int) -> None:
        rules = [MODEL_RULES[i] for i in sorted(which)]
        now = self.now()
        impossible: tuple[str, str] | None = None
        worst: tuple[tuple[str, str], int] | None = None
        for rule_ in rules:
            for dimension, limit, window in limits_of(rule_):
                key = (rule_.scope, dimension)
                amount = 1 if dimension == "requests" else tokens
                entries = self.live(key, window)
                total = sum(a for _, a in entries)
                if total + amount <= limit:
                    continue
                if amount > limit:
                    impossible = impossible or key
                    continue
                freed, wait = 0, None
                for at, a in entries:
                    freed += a
                    if freed >= total + amount - limit:
                        wait = at + window - now
                        break
                assert wait is not None
                assert wait > 0
                if worst is None or wait > worst[1]:
                    worst = (key, wait)
            if impossible:
                break
        self.count += 1
        request = LimitRequest(rules, tokens=tokens, request_id=f"r{self.count}")
        error: RateLimitExceeded | None = None
        try:
            reservation = self.limiter.try_acquire(request)
        except RateLimitExceeded as exc:
            error = exc
        event("admitted" if error is None else "refused")
        if error is None:
            assert impossible is None, "admitted a request larger than a limit"
            assert worst is None, "admitted a request that does not fit"
        elif impossible is not None:
            assert (error.scope, error.dimension, error.retry_after) == (*impossible, None)
            return
        else:
            assert worst is not None, "refused a request that fits"
            assert (error.scope, error.dimension) == worst[0]
            assert error.retry_after is not None
            assert round(error.retry_after * US) == worst[1]
            return
        amounts = {}
        for rule_ in rules:
            for dimension, _, _ in limits_of(rule_):
                amounts[(rule_.scope, dimension)] = 1 if dimension == "requests" else tokens
        self.admitted.append(Admitted(reservation, now, amounts))
        for rule_ in rules:  # admitting never takes a counter over its limit
            used = self.limiter.used_now(rule_)
            assert all(used[d] <= limit for d, limit, _ in limits_of(rule_))

    @rule(micros=st.integers(0, 4 * US))
    def advance(self, micros: int) -> None:
        self.clock.advance(micros / US)

    @precondition(lambda self: self.admitted)
    @rule(data=st.data())
    def advance_to_a_freeing_instant(self, data: st.DataObject) -> None:
        admitted = data.draw(st.sampled_from(self.admitted))
        window = data.draw(st.sampled_from([round(r.window_s * US) for r in MODEL_RULES]))
        target = admitted.at + window
        if target > self.now():
            self.clock.advance((target - self.now()) / US)
            assert self.now() == target
            event("moved to a freeing instant")

    @precondition(lambda self: self.admitted)
    @rule(data=st.data(), tokens=st.integers(0, 90))
    def reconcile(self, data: st.DataObject, tokens: int) -> None:
        admitted = data.draw(st.sampled_from(self.admitted))
        self.limiter.settle(admitted.reservation, tokens)
        for key in admitted.amounts:
            if key[1] == "tokens":
                admitted.amounts[key] = tokens

    @precondition(lambda self: self.admitted)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        admitted = data.draw(st.sampled_from(self.admitted))
        self.limiter.refund(admitted.reservation)
        self.admitted.remove(admitted)

    @invariant()
    def usage_matches_the_model(self) -> None:
        for rule_ in MODEL_RULES:
            used = self.limiter.used_now(rule_)
            for dimension, _, window in limits_of(rule_):
                key = (rule_.scope, dimension)
                assert used[dimension] == sum(a for _, a in self.live(key, window))


TestMemoryLimiterAgainstModel = LimiterMachine.TestCase
TestMemoryLimiterAgainstModel.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


async def test_no_rules_admit_everything(limiter: RateLimiter, clock: FakeClock) -> None:
    reservation = await limiter.acquire(LimitRequest([], tokens=10**9))
    assert reservation.counters == ()
    assert reservation.at in (clock.now(), clock.monotonic())
    await limiter.reconcile(reservation, 5)
    await limiter.release(reservation)
