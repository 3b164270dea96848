"""A circuit breaker per deployment: stop sending calls to a deployment that keeps failing, and
let a few probes find out when it is back.

The states::

    CLOSED ──(N consecutive failures, or failure rate ≥ r over the window)──► OPEN
    OPEN ──(cooldown elapsed, on the injected Clock)──► HALF_OPEN
    HALF_OPEN ──(a probe succeeds, ``successes_to_close`` times)──► CLOSED
    HALF_OPEN ──(a probe fails)──► OPEN (a fresh cooldown)

Only failures that say something about the deployment's health count: retryable
:class:`~podium.errors.ModelError`\\ s (429, 5xx, cut streams) and timeouts. A 400, a refused
prompt or a context overflow is the request's fault and leaves the breaker alone.

A call asks :meth:`CircuitBreaker.acquire` for a :class:`Ticket` and reports its outcome with the
ticket (:meth:`~CircuitBreaker.success`, :meth:`~CircuitBreaker.failure` or, for a call that
ended without a verdict such as a cancellation, :meth:`~CircuitBreaker.release`). A ticket carries
the *epoch* it was issued in; every state change starts a new epoch and outcomes from an older
epoch are ignored, so a slow call that started before the breaker opened cannot close it again,
and a half-open breaker is decided by its own probes only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from podium.errors import ConfigError, ModelError
from podium.types import Clock


class BreakerState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    """Calls flow; failures are counted."""
    OPEN = "open"
    """Calls are refused until the cooldown ends."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls may go through."""


def counts_as_failure(error: BaseException) -> bool:
    """Whether ``error`` says the deployment is unhealthy: a retryable ``ModelError`` or a
    timeout. Request errors (400, refusal, context overflow, bad key) do not count."""
    if isinstance(error, ModelError):
        return error.retryable
    return isinstance(error, TimeoutError)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers."""

    consecutive_failures: int = 5
    """Open after this many failures in a row."""
    failure_rate: float | None = None
    """Also open when failures / calls within ``window_s`` reach this fraction (``None``: off)."""
    window_s: float = 60.0
    """Seconds of history the failure rate looks at."""
    min_calls: int = 10
    """The failure rate applies only once the window holds at least this many calls."""
    cooldown_s: float = 30.0
    """Seconds an open breaker refuses calls before letting probes through."""
    half_open_probes: int = 1
    """Probe calls allowed in flight at once while half-open."""
    successes_to_close: int = 1
    """Successful probes needed to close again."""

    def __post_init__(self) -> None:
        problems = []
        if self.consecutive_failures < 1:
            problems.append("consecutive_failures must be at least 1")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            problems.append("failure_rate must be in (0, 1]")
        if self.window_s <= 0 or self.cooldown_s < 0:
            problems.append("window_s must be positive and cooldown_s not negative")
        if self.min_calls < 1 or self.half_open_probes < 1 or self.successes_to_close < 1:
            problems.append("min_calls, half_open_probes and successes_to_close must be ≥ 1")
        if problems:
            raise ConfigError("invalid breaker policy: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Ticket:
    """Permission for one call; hand it back with the call's outcome."""

    epoch: int
    probe: bool
    """Issued while half-open."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state, for metrics, health endpoints and routing explanations."""

    name: str
    state: BreakerState
    consecutive_failures: int
    window_calls: int
    window_failures: int
    retry_in_s: float | None
    """Seconds until an open breaker lets probes through (``None`` unless open)."""


Listener = Callable[[str, BreakerState, BreakerState], None]
"""Called with ``(name, old, new)`` on every state change (metrics, audit)."""


class CircuitBreaker:
    """One deployment's breaker. Not thread-safe; meant for one event loop."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        policy: BreakerPolicy | None = None,
        *,
        is_failure: Callable[[BaseException], bool] = counts_as_failure,
        on_change: Listener | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._is_failure = is_failure
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0

    # -- reading ----------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cooldown ended reads as half-open)."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def available(self) -> bool:
        """Whether :meth:`acquire` would grant a ticket now (takes nothing)."""
        state = self.state
        if state is BreakerState.HALF_OPEN:
            return self._probes_in_flight < self.policy.half_open_probes
        return state is BreakerState.CLOSED

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        now = self._clock.monotonic()
        self._prune(now)
        retry_in = None
        if state is BreakerState.OPEN:
            retry_in = max(0.0, self._opened_at + self.policy.cooldown_s - now)
        return BreakerSnapshot(
            self.name,
            state,
            self._consecutive,
            len(self._window),
            sum(1 for _, failed in self._window if failed),
            retry_in,
        )

    # -- calls ------------------------------------------------------------------------------------

    def acquire(self) -> Ticket | None:
        """A ticket for one call, or ``None`` when the breaker refuses it."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Ticket(self._epoch, probe=False)
        if (
            state is BreakerState.HALF_OPEN
            and self._probes_in_flight < self.policy.half_open_probes
        ):
            self._probes_in_flight += 1
            return Ticket(self._epoch, probe=True)
        return None

    def success(self, ticket: Ticket) -> None:
        """The call succeeded."""
        if not self._current(ticket):
            return
        if ticket.probe:
            self._probes_in_flight -= 1
            self._probe_successes += 1
            if self._probe_successes >= self.policy.successes_to_close:
                self._move(BreakerState.CLOSED)
            return
        self._consecutive = 0
        self._observe(failed=False)

    def failure(self, ticket: Ticket, error: BaseException) -> bool:
        """The call failed with ``error``; returns whether the failure counted."""
        if not self._is_failure(error):
            self.release(ticket)
            return False
        if not self._current(ticket):
            return True
        if ticket.probe:
            self._probes_in_flight -= 1
            self._move(BreakerState.OPEN)
            return True
        self._consecutive += 1
        self._observe(failed=True)
        if self._consecutive >= self.policy.consecutive_failures or self._rate_exceeded():
            self._move(BreakerState.OPEN)
        return True

    def release(self, ticket: Ticket) -> None:
        """The call ended without a verdict on the deployment's health (cancelled, or an
        error that does not count): give back its probe slot."""
        if ticket.probe and self._current(ticket):
            self._probes_in_flight -= 1

    # -- machinery --------------------------------------------------------------------------------

    def _current(self, ticket: Ticket) -> bool:
        return ticket.epoch == self._epoch and self.state is not BreakerState.OPEN

    def _cooled_down(self) -> bool:
        return self._clock.monotonic() >= self._opened_at + self.policy.cooldown_s

    def _observe(self, *, failed: bool) -> None:
        now = self._clock.monotonic()
        self._window.append((now, failed))
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.policy.window_s
        while self._window and not self._window[0][0] > horizon:
            self._window.popleft()

    def _rate_exceeded(self) -> bool:
        rate = self.policy.failure_rate
        if rate is None or len(self._window) < self.policy.min_calls:
            return False
        failures = sum(1 for _, failed in self._window if failed)
        return failures >= rate * len(self._window)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._epoch += 1
        self._consecutive = 0
        self._window.clear()
        self._probes_in_flight = 0
        self._probe_successes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock.monotonic()
        if self._on_change is not None and old is not new:
            self._on_change(self.name, old, new)


@dataclass
class Breakers:
    """The breakers of every deployment, made on first use with the default policy or the
    deployment's override. One instance per gateway (no module state)."""

    clock: Clock
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    overrides: Mapping[str, BreakerPolicy] = field(default_factory=dict)
    """Policy per deployment id, where it differs from ``policy``."""
    is_failure: Callable[[BaseException], bool] = counts_as_failure
    on_change: Listener | None = None
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict, init=False, repr=False)

    def __getitem__(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                name,
                self.clock,
                self.overrides.get(name, self.policy),
                is_failure=self.is_failure,
                on_change=self.on_change,
            )
            self._breakers[name] = breaker
        return breaker

    def available(self, name: str) -> bool:
        """Whether a call to ``name`` would be let through now."""
        breaker = self._breakers.get(name)
        return breaker is None or breaker.available()

    def snapshots(self) -> list[BreakerSnapshot]:
        """Every breaker made so far, by name."""
        return [self._breakers[n].snapshot() for n in sorted(self._breakers)]
