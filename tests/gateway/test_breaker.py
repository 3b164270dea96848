"""The circuit breaker: a Hypothesis state machine against a plain reference model, and the
transitions one by one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    ConfigError,
    ContentRefused,
    ContextLengthExceeded,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
)
from podium.gateway.breaker import (
    BreakerPolicy,
    Breakers,
    BreakerState,
    CircuitBreaker,
    Ticket,
    counts_as_failure,
)
from podium.testing import FakeClock

COUNTED = [
    ProviderOverloaded("503"),
    RateLimited("429", retry_after=1),
    ProviderTimeout("cut"),
    TimeoutError(),
]
NOT_COUNTED = [
    BadModelRequest("400"),
    ContentRefused("policy"),
    ContextLengthExceeded("too long"),
    AuthenticationFailed("401"),
    ValueError("bug"),
]


# -- the reference model --------------------------------------------------------------------------


@dataclass
class RefTicket:
    epoch: int
    probe: bool


class Reference:
    """The breaker's rules written as plainly as possible: the whole history is kept and the
    failure rate recomputed from it; the cooldown is checked on every step."""

    def __init__(self, p: BreakerPolicy) -> None:
        self.p = p
        self.state = "closed"
        self.epoch = 0
        self.history: list[tuple[float, bool]] = []
        self.consecutive = 0
        self.opened_at = 0.0
        self.probes_out = 0
        self.probe_ok = 0

    def enter(self, state: str, now: float) -> None:
        self.state, self.epoch = state, self.epoch + 1
        self.history, self.consecutive, self.probes_out, self.probe_ok = [], 0, 0, 0
        if state == "open":
            self.opened_at = now

    def refresh(self, now: float) -> None:
        if self.state == "open" and now >= self.opened_at + self.p.cooldown_s:
            self.enter("half_open", now)

    def acquire(self, now: float) -> RefTicket | None:
        self.refresh(now)
        if self.state == "closed":
            return RefTicket(self.epoch, False)
        if self.state == "half_open" and self.probes_out < self.p.half_open_probes:
            self.probes_out += 1
            return RefTicket(self.epoch, True)
        return None

    def report(self, ticket: RefTicket, verdict: str, now: float) -> None:
        self.refresh(now)
        if ticket.epoch != self.epoch or self.state == "open":
            return
        if ticket.probe:
            self.probes_out -= 1
            if verdict == "ok":
                self.probe_ok += 1
                if self.probe_ok >= self.p.successes_to_close:
                    self.enter("closed", now)
            elif verdict == "fail":
                self.enter("open", now)
            return
        if verdict == "neutral":
            return
        failed = verdict == "fail"
        self.consecutive = self.consecutive + 1 if failed else 0
        self.history.append((now, failed))
        recent = [f for t, f in self.history if t > now - self.p.window_s]
        rate_hit = (
            self.p.failure_rate is not None
            and len(recent) >= self.p.min_calls
            and sum(recent) >= self.p.failure_rate * len(recent)
        )
        if failed and (self.consecutive >= self.p.consecutive_failures or rate_hit):
            self.enter("open", now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.outstanding: list[tuple[Ticket, RefTicket]] = []

    @initialize(
        n=st.integers(1, 5),
        rate=st.one_of(st.none(), st.sampled_from([0.25, 0.5, 1.0])),
        window=st.sampled_from([5.0, 30.0]),
        min_calls=st.integers(1, 6),
        cooldown=st.sampled_from([0.0, 3.0, 10.0]),
        probes=st.integers(1, 3),
        to_close=st.integers(1, 3),
    )
    def setup(
        self,
        n: int,
        rate: float | None,
        window: float,
        min_calls: int,
        cooldown: float,
        probes: int,
        to_close: int,
    ) -> None:
        policy = BreakerPolicy(n, rate, window, min_calls, cooldown, probes, to_close)
        self.breaker = CircuitBreaker("d", self.clock, policy)
        self.ref = Reference(policy)

    @rule()
    def acquire(self) -> None:
        got, want = self.breaker.acquire(), self.ref.acquire(self.clock.monotonic())
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.probe == want.probe
            self.outstanding.append((got, want))

    @precondition(lambda self: bool(self.outstanding))
    @rule(
        data=st.data(), verdict=st.sampled_from(["ok", "fail", "neutral"]), which=st.integers(0, 3)
    )
    def report(self, data: st.DataObject, verdict: str, which: int) -> None:
        index = data.draw(st.integers(0, len(self.outstanding) - 1))
        ticket, ref_ticket = self.outstanding.pop(index)
        if verdict == "ok":
            self.breaker.success(ticket)
        elif verdict == "fail":
            assert self.breaker.failure(ticket, COUNTED[which])
        else:
            assert not self.breaker.failure(ticket, NOT_COUNTED[which])
        self.ref.report(ref_ticket, verdict, self.clock.monotonic())

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 3.0, 7.0, 10.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "ref"):
            return
        self.ref.refresh(self.clock.monotonic())
        snap = self.breaker.snapshot()
        assert snap.state.value == self.ref.state
        assert snap.consecutive_failures == self.ref.consecutive
        now = self.clock.monotonic()
        recent = [f for t, f in self.ref.history if t > now - self.ref.p.window_s]
        assert (snap.window_calls, snap.window_failures) == (len(recent), sum(recent))
        assert self.breaker.available() == (
            self.ref.state == "closed"
            or (self.ref.state == "half_open" and self.ref.probes_out < self.ref.p.half_open_probes)
        )
        assert (snap.retry_in_s is not None) == (self.ref.state == "open")


TestBreakerMatchesReference = BreakerMachine.TestCase
TestBreakerMatchesReference.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- targeted -------------------------------------------------------------------------------------


def breaker(clock: FakeClock, **kw: float | int | None) -> CircuitBreaker:
    return CircuitBreaker("dep", clock, BreakerPolicy(**kw))  # type: ignore[arg-type]


def fail(b: CircuitBreaker, error: BaseException | None = None) -> None:
    ticket = b.acquire()
    assert ticket is not None
    b.failure(ticket, error or ProviderOverloaded("503"))


def succeed(b: CircuitBreaker) -> None:
    ticket = b.acquire()
    assert ticket is not None
    b.success(ticket)


def play(b: CircuitBreaker, calls: str) -> None:
    """``f``: a call that fails (503), ``s``: one that succeeds."""
    for call in calls:
        fail(b) if call == "f" else succeed(b)


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count(
    clock: FakeClock,
) -> None:
    b = breaker(clock, consecutive_failures=3)
    play(b, "ffsff")
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN
    assert b.acquire() is None
    assert not b.available()


@pytest.mark.parametrize("error", NOT_COUNTED, ids=lambda e: type(e).__name__)
def test_request_errors_never_open_it(clock: FakeClock, error: BaseException) -> None:
    b = breaker(clock, consecutive_failures=1)
    for _ in range(50):
        fail(b, error)
    assert b.state is BreakerState.CLOSED
    assert not counts_as_failure(error)


@pytest.mark.parametrize("error", COUNTED, ids=lambda e: type(e).__name__)
def test_retryable_errors_and_timeouts_count(clock: FakeClock, error: BaseException) -> None:
    b = breaker(clock, consecutive_failures=1)
    fail(b, error)
    assert b.state is BreakerState.OPEN


def test_failure_rate_over_the_window_opens_it_once_enough_calls_were_seen(
    clock: FakeClock,
) -> None:
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, window_s=10, min_calls=6)
    for _ in range(2):
        play(b, "fs")
    fail(b)
    assert b.state is BreakerState.CLOSED  # 3 of 5: too few calls to judge
    fail(b)
    assert b.state is BreakerState.OPEN  # 4 of 6


def test_old_calls_leave_the_window(clock: FakeClock) -> None:
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, window_s=10, min_calls=4)
    play(b, "fss")
    clock.advance(10)  # these three are now out of the window (exactly 10 s old)
    assert b.snapshot().window_calls == 0
    play(b, "fss")
    snap = b.snapshot()
    assert (snap.window_calls, snap.window_failures) == (3, 1)
    fail(b)  # 2 of the last 4 (it would be 3 of 7 with the old calls)
    assert b.state is BreakerState.OPEN


def test_half_open_after_the_cooldown_lets_a_limited_number_of_probes_through(
    clock: FakeClock,
) -> None:
    b = breaker(clock, consecutive_failures=1, cooldown_s=30, half_open_probes=2)
    fail(b)
    clock.advance(29.9)
    assert b.state is BreakerState.OPEN
    assert b.snapshot().retry_in_s == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    first, second = b.acquire(), b.acquire()
    assert first is not None
    assert second is not None
    assert first.probe
    assert second.probe
    assert b.acquire() is None
    b.release(first)  # e.g. cancelled: its slot comes back
    third = b.acquire()
    assert third is not None
    b.success(second)
    assert b.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_it_with_a_fresh_cooldown(clock: FakeClock) -> None:
    b = breaker(clock, consecutive_failures=1, cooldown_s=30)
    fail(b)
    clock.advance(30)
    fail(b)
    assert b.state is BreakerState.OPEN
    clock.advance(29)
    assert b.state is BreakerState.OPEN
    clock.advance(1)
    assert b.state is BreakerState.HALF_OPEN


def test_closing_may_need_several_successful_probes(clock: FakeClock) -> None:
    b = breaker(clock, consecutive_failures=1, cooldown_s=1, successes_to_close=3)
    fail(b)
    clock.advance(1)
    play(b, "ss")
    assert b.state is BreakerState.HALF_OPEN
    succeed(b)
    assert b.state is BreakerState.CLOSED


def test_a_400_during_half_open_frees_the_probe_without_deciding(clock: FakeClock) -> None:
    b = breaker(clock, consecutive_failures=1, cooldown_s=1)
    fail(b)
    clock.advance(1)
    ticket = b.acquire()
    assert ticket is not None
    assert b.acquire() is None
    assert not b.failure(ticket, BadModelRequest("400"))
    assert b.state is BreakerState.HALF_OPEN
    assert b.available()


def test_outcomes_of_calls_started_before_a_state_change_are_ignored(clock: FakeClock) -> None:
    b = breaker(clock, consecutive_failures=2, cooldown_s=5)
    slow = b.acquire()  # a call that started while closed, and is still running
    assert slow is not None
    play(b, "ff")
    clock.advance(5)
    assert b.state is BreakerState.HALF_OPEN
    b.success(slow)  # its late success must not close the breaker: only probes decide
    assert b.state is BreakerState.HALF_OPEN
    probe = b.acquire()
    assert probe is not None
    assert probe.probe
    b.failure(slow, ProviderOverloaded("late"))  # nor may a late failure reopen it
    assert b.state is BreakerState.HALF_OPEN


def test_transitions_are_reported(clock: FakeClock) -> None:
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    board = Breakers(
        clock,
        BreakerPolicy(consecutive_failures=1, cooldown_s=2),
        on_change=lambda *e: seen.append(e),
    )
    fail(board["a"])
    clock.advance(2)
    succeed(board["a"])
    assert seen == [
        ("a", BreakerState.CLOSED, BreakerState.OPEN),
        ("a", BreakerState.OPEN, BreakerState.HALF_OPEN),
        ("a", BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_breakers_are_made_per_deployment_with_overrides(clock: FakeClock) -> None:
    board = Breakers(
        clock,
        BreakerPolicy(consecutive_failures=5),
        overrides={"fragile": BreakerPolicy(consecutive_failures=1)},
    )
    assert board.available("never-called")
    fail(board["fragile"])
    fail(board["sturdy"])
    assert not board.available("fragile")
    assert board.available("sturdy")
    assert board["sturdy"] is board["sturdy"]
    assert [(s.name, s.state) for s in board.snapshots()] == [
        ("fragile", BreakerState.OPEN),
        ("sturdy", BreakerState.CLOSED),
    ]


@pytest.mark.parametrize(
    "kw",
    [
        {"consecutive_failures": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"window_s": 0},
        {"cooldown_s": -1},
        {"half_open_probes": 0},
    ],
)
def test_nonsense_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="invalid breaker policy"):
        BreakerPolicy(**kw)  # type: ignore[arg-type]
