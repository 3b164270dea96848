"""Self-healing calls: retries with backoff, timeouts, fallback chains, circuit breakers and
graceful degradation, for one call or one stream over a ranked list of deployments.

:class:`Resilience` is a stage with a small contract: give it the deployments the router ranked
(best first) and a function that performs the call on one of them; it returns an
:class:`Outcome` — the value, the deployment that served it and every :class:`Attempt` (which
deployment, what failed, how long it waited) — or raises :class:`CallFailed` carrying the same
record. What it does, in order:

- **Retries** a retryable error (:attr:`~podium.errors.ModelError.retryable`, a timeout) on the
  same deployment, up to :attr:`RetryPolicy.attempts_per_deployment`, after an exponential
  backoff with *full jitter* (a uniform draw in ``[0, min(cap, base·2ⁿ)]``); a
  :class:`~podium.errors.RateLimited` error is never retried sooner than its ``retry_after``.
  A wait that would overrun the deadline, or a ``retry_after`` beyond
  :attr:`RetryPolicy.max_retry_after_s`, moves on to the next deployment instead.
- **Falls back** along the list: after retries run out or on a deployment-specific error
  (bad key, unknown model); after :class:`~podium.errors.ContextLengthExceeded` only to a
  deployment with a *larger* context window; after :class:`~podium.errors.ContentRefused` only
  to *another provider*. A request error (:class:`~podium.errors.BadModelRequest`) stops at once:
  no other deployment would take it.
- **Skips** deployments whose circuit breaker is open (recorded as skipped).
- **Times out** each attempt (``attempt_timeout_s``) and the whole call (``deadline_s``).
- **Degrades**: when every deployment failed, a declared fallback answer is returned with
  ``Outcome.degraded`` set, instead of an error.

Streams (:meth:`Resilience.stream`) follow the same rules until the first chunk reaches the
caller: a stream that breaks before then restarts transparently on the next attempt. After
that, a break ends the iteration with :class:`~podium.errors.ProviderTimeout` — a truncated
answer is never passed off as a complete one.

Time: backoff waits and the deadline run on the injected :class:`~podium.types.Clock` (virtual
in tests); the per-attempt timeout is the event loop's timer, because it bounds a real wait on
the network.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from podium.errors import (
    BadModelRequest,
    ContentRefused,
    ContextLengthExceeded,
    ModelError,
    ProviderTimeout,
    RateLimited,
)
from podium.gateway.breaker import Breakers, Ticket
from podium.models.base import ChatChunk, ChatResponse, Usage
from podium.types import Clock


class Target(Protocol):
    """What resilience needs to know of a deployment (``routing.Deployment`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def context_window(self) -> int | None: ...


D = TypeVar("D", bound=Target)
T = TypeVar("T")


class Action(StrEnum):
    """What to do after an error."""

    RETRY = "retry"
    """Try the same deployment again (after a backoff), then the next one."""
    NEXT = "next"
    """Go to the next deployment."""
    LARGER_CONTEXT = "larger_context"
    """Go to the next deployment with a larger context window."""
    OTHER_PROVIDER = "other_provider"
    """Go to the next deployment of a provider that has not refused."""
    STOP = "stop"
    """Give up: no deployment can fix this."""


def classify(error: BaseException) -> Action:
    """The default reaction to an error."""
    if isinstance(error, ContextLengthExceeded):
        return Action.LARGER_CONTEXT
    if isinstance(error, ContentRefused):
        return Action.OTHER_PROVIDER
    if isinstance(error, BadModelRequest):
        return Action.STOP
    if isinstance(error, ModelError):
        return Action.RETRY if error.retryable else Action.NEXT
    return Action.RETRY if isinstance(error, TimeoutError) else Action.STOP


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Durations in seconds."""

    attempts_per_deployment: int = 3
    """Tries of one deployment on retryable errors (1: no retry)."""
    max_attempts: int = 10
    """Tries over all deployments together."""
    base_delay_s: float = 0.5
    """Backoff before the first retry is drawn from ``[0, base_delay_s]``; it doubles after."""
    max_delay_s: float = 20.0
    """Cap of the backoff draw (a ``retry_after`` may exceed it)."""
    max_retry_after_s: float = 30.0
    """A provider asking for a longer wait than this is skipped rather than waited on."""
    attempt_timeout_s: float | None = 60.0
    """One attempt, or one stream until its first chunk; ``None``: no limit."""
    stream_idle_timeout_s: float | None = 60.0
    """Longest silence between two chunks of a stream once it has started."""
    deadline_s: float | None = 120.0
    """The whole call, waits included, until an answer (or a stream's first chunk)."""

    def backoff(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The wait before retry number ``retry`` (1-based): full jitter, never less than
        ``retry_after``."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return max(rng.uniform(0.0, cap), retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try (or skip) of one deployment, for logs and audit."""

    deployment: str
    outcome: Literal["ok", "failed", "skipped", "cut"]
    """``cut``: a stream that failed after chunks reached the caller."""
    number: int = 0
    """1 for the first real try of the call, then 2, …; 0 for a skip."""
    delay_s: float = 0.0
    """Waited before this try (backoff, ``Retry-After``)."""
    duration_s: float = 0.0
    error: str | None = None
    """The error's class name (``CircuitOpen`` etc. for a skip)."""
    message: str | None = None
    retry_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies field by field, ~25 µs on every audited call
        return {
            "deployment": self.deployment,
            "outcome": self.outcome,
            "number": self.number,
            "delay_s": self.delay_s,
            "duration_s": self.duration_s,
            "error": self.error,
            "message": self.message,
            "retry_after_s": self.retry_after_s,
        }


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """The result of a resilient call."""

    value: T
    deployment: str | None
    """Who served it (``None`` when degraded)."""
    attempts: tuple[Attempt, ...]
    degraded: bool = False
    """``value`` is the declared fallback answer: every deployment failed."""
    error: CallFailed | None = None
    """Why it degraded."""


class CallFailed(ModelError):
    """A call failed after its retries and fallbacks, or on an error no deployment can fix.

    ``last_error`` is the final underlying error (map it to the client's status code);
    ``attempts`` is the full record.
    """

    def __init__(self, message: str, *, last_error: ModelError, attempts: Sequence[Attempt]):
        super().__init__(
            message,
            provider=last_error.provider,
            model=last_error.model,
            request_id=last_error.request_id,
            retryable=last_error.retryable,
        )
        self.last_error = last_error
        self.attempts = tuple(attempts)

    @property
    def retry_after(self) -> float | None:
        """The provider's ``retry_after`` when the last error was a rate limit."""
        return self.last_error.retry_after if isinstance(self.last_error, RateLimited) else None


Fallback = Callable[[CallFailed], T]
"""Makes the declared answer from the failure (called only when every deployment failed)."""


def fallback_answer(text: str, *, model: str = "podium/fallback") -> Fallback[ChatResponse]:
    """A declared fallback chat answer."""

    def answer(failure: CallFailed) -> ChatResponse:
        return ChatResponse(text, model, model, "podium", Usage(requests=0))

    return answer


def fallback_stream(text: str, *, model: str = "podium/fallback") -> Fallback[list[ChatChunk]]:
    """A declared fallback answer as stream chunks."""

    def chunks(failure: CallFailed) -> list[ChatChunk]:
        end = ChatChunk(finish_reason="stop", usage=Usage(requests=0), model_served=model)
        return [ChatChunk(delta=text, model_served=model), end]

    return chunks


def is_final_chunk(chunk: ChatChunk) -> bool:
    """A chat stream is complete once a chunk carries its finish reason."""
    return chunk.finish_reason is not None


class Resilience:
    """The call stage: retries, timeouts, fallback chain, breakers, degradation."""

    def __init__(
        self,
        clock: Clock,
        policy: RetryPolicy | None = None,
        *,
        breakers: Breakers | None = None,
        rng: random.Random | None = None,
        classify: Callable[[BaseException], Action] = classify,
    ) -> None:
        """
        Args:
            clock: Paces backoff and the deadline.
            policy: Retry and timeout settings.
            breakers: Circuit breakers by deployment id (``None``: no breakers).
            rng: Draws the jitter (seed it for reproducible schedules).
            classify: Maps an error to an :class:`Action`.
        """
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self.breakers = breakers
        self.rng = rng or random.Random()
        self.classify = classify

    async def call(
        self,
        deployments: Sequence[D],
        fn: Callable[[D], Awaitable[T]],
        *,
        needed_tokens: int | None = None,
        fallback: Fallback[T] | None = None,
    ) -> Outcome[T]:
        """Call ``fn`` on the deployments in order until one answers.

        Args:
            deployments: Ranked, best first.
            fn: Performs the call on one deployment.
            needed_tokens: Prompt + output tokens; deployments whose window is smaller are
                skipped.
            fallback: The declared answer when all fail (``None``: raise :class:`CallFailed`).
        """
        run = _Run(self, deployments, needed_tokens)
        while (attempt := await run.next()) is not None:
            try:
                async with asyncio.timeout(attempt.timeout) as scope:
                    value = await fn(attempt.deployment)
            except asyncio.CancelledError:
                run.abandon(attempt)
                raise
            except Exception as exc:
                error = _as_model_error(exc, attempt, scope.expired())
                if error is None:  # a bug, not a provider failure: never hide it
                    run.abandon(attempt)
                    raise
                run.failed(attempt, error)
                continue
            run.succeeded(attempt)
            return Outcome(value, attempt.deployment.id, tuple(run.attempts))
        failure = run.failure()
        if fallback is None:
            raise failure
        return Outcome(fallback(failure), None, failure.attempts, degraded=True, error=failure)

    def stream(
        self,
        deployments: Sequence[D],
        open_stream: Callable[[D], AsyncIterator[T]],
        *,
        is_final: Callable[[T], bool],
        needed_tokens: int | None = None,
        fallback: Fallback[Iterable[T]] | None = None,
    ) -> ResilientStream[T]:
        """Stream from the deployments in order; see the module docstring for the rules.

        Args:
            open_stream: Starts the stream on one deployment.
            is_final: Whether a chunk completes the stream (e.g. :func:`is_final_chunk`); a
                stream ending without one counts as cut.
        """
        return ResilientStream(
            _Run(self, deployments, needed_tokens), open_stream, is_final, fallback
        )


class ResilientStream(AsyncIterator[T]):
    """An async iterator of chunks; ``attempts``, ``deployment`` and ``degraded`` tell how it
    went (complete once the iteration ends)."""

    def __init__(
        self,
        run: _Run[Any],
        open_stream: Callable[[Any], AsyncIterator[T]],
        is_final: Callable[[T], bool],
        fallback: Fallback[Iterable[T]] | None,
    ) -> None:
        self._run = run
        self._open = open_stream
        self._is_final = is_final
        self._fallback = fallback
        self.deployment: str | None = None
        self.degraded = False
        self.error: CallFailed | None = None
        self._iterator = self._chunks()

    @property
    def attempts(self) -> list[Attempt]:
        return self._run.attempts

    def __aiter__(self) -> ResilientStream[T]:
        return self

    async def __anext__(self) -> T:
        return await anext(self._iterator)

    async def aclose(self) -> None:
        await self._iterator.aclose()

    async def _chunks(self) -> AsyncGenerator[T, None]:
        run, policy = self._run, self._run.policy
        while (attempt := await run.next()) is not None:
            source: AsyncIterator[T] | None = None
            delivered = False
            scope: asyncio.Timeout | None = None
            try:
                try:
                    async with asyncio.timeout(attempt.timeout) as scope:
                        source = self._open(attempt.deployment)
                        chunk = await anext(source)
                except StopAsyncIteration:
                    raise _cut(attempt, "the stream ended before its first chunk") from None
                while True:
                    final = self._is_final(chunk)
                    if final:  # complete: settled before the caller sees the last chunk
                        run.succeeded(attempt)
                    delivered = True
                    self.deployment = attempt.deployment.id
                    yield chunk
                    if final:
                        return
                    try:
                        async with asyncio.timeout(policy.stream_idle_timeout_s) as scope:
                            chunk = await anext(source)
                    except StopAsyncIteration:
                        raise _cut(attempt, "the stream ended before its final chunk") from None
            except (asyncio.CancelledError, GeneratorExit):
                run.abandon(attempt)
                raise
            except Exception as exc:
                error = _as_model_error(exc, attempt, scope is not None and scope.expired())
                if error is None:
                    run.abandon(attempt)
                    raise
                if not delivered:
                    run.failed(attempt, error)
                    continue
                run.failed(attempt, error, cut=True)
                raise _cut(attempt, f"the stream broke after it started ({error})") from exc
            finally:
                if source is not None:
                    await _close(source)
        self.error = run.failure()
        if self._fallback is None:
            raise self.error
        self.degraded = True
        for chunk in self._fallback(self.error):
            yield chunk


# -- the retry/fallback schedule ------------------------------------------------------------------


@dataclass(slots=True)
class _Try(Generic[D]):
    deployment: D
    number: int
    delay: float
    timeout: float | None
    started: float
    ticket: Ticket | None
    settled: bool = False
    """Its outcome was reported (to the breaker and the record) once."""


class _Run(Generic[D]):
    """The schedule of one call: which deployment to try next, and when."""

    def __init__(self, owner: Resilience, deployments: Sequence[D], needed: int | None) -> None:
        self.policy = owner.policy
        self._owner = owner
        self._deployments = deployments
        self._needed = needed
        self._start = owner.clock.monotonic()
        self._index = 0
        self._tries = 0  # of the current deployment
        self._number = 0  # of the whole call
        self._wait = 0.0  # before the next try of the current deployment
        self._window_overflowed: int | None = None
        self._refused: set[str] = set()
        self._last: ModelError | None = None
        self._why = "every deployment was tried"
        self.attempts: list[Attempt] = []

    def _remaining(self) -> float | None:
        if self.policy.deadline_s is None:
            return None
        return self.policy.deadline_s - (self._owner.clock.monotonic() - self._start)

    async def next(self) -> _Try[D] | None:
        """The next try (after sleeping its backoff), or ``None`` when the schedule is spent."""
        while self._index < len(self._deployments):
            deployment = self._deployments[self._index]
            if self._tries == 0 and (why := self._unfit(deployment)):
                self._skip(deployment, *why)
                continue
            if self._number >= self.policy.max_attempts:
                self._why = f"the limit of {self.policy.max_attempts} attempts was reached"
                return None
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._deadline()
                return None
            wait, self._wait = self._wait, 0.0
            if wait and remaining is not None and wait >= remaining:
                # cannot wait that long here: try the next deployment now
                self._advance(f"the deadline of {self.policy.deadline_s} s left no time to retry")
                continue
            if wait:
                await self._owner.clock.sleep(wait)
                remaining = self._remaining()
            ticket = None
            if self._owner.breakers is not None:
                ticket = self._owner.breakers[deployment.id].acquire()
                if ticket is None:
                    self._skip(
                        deployment, "CircuitOpen", "its circuit breaker is open (or probing)"
                    )
                    continue
            self._number += 1
            self._tries += 1
            timeout = self.policy.attempt_timeout_s
            if remaining is not None:
                timeout = remaining if timeout is None else min(timeout, remaining)
            now = self._owner.clock.monotonic()
            return _Try(deployment, self._number, wait, timeout, now, ticket)
        return None

    def succeeded(self, attempt: _Try[D]) -> None:
        if attempt.settled:
            return
        attempt.settled = True
        if attempt.ticket is not None and self._owner.breakers is not None:
            self._owner.breakers[attempt.deployment.id].success(attempt.ticket)
        self._record(attempt, "ok")

    def abandon(self, attempt: _Try[D]) -> None:
        """The caller went away mid-try: no verdict on the deployment."""
        if attempt.settled:
            return
        attempt.settled = True
        if attempt.ticket is not None and self._owner.breakers is not None:
            self._owner.breakers[attempt.deployment.id].release(attempt.ticket)

    def failed(self, attempt: _Try[D], error: ModelError, *, cut: bool = False) -> None:
        """Record a failed try and decide what comes next (raises ``CallFailed`` on STOP)."""
        deployment = attempt.deployment
        attempt.settled = True
        if attempt.ticket is not None and self._owner.breakers is not None:
            self._owner.breakers[deployment.id].failure(attempt.ticket, error)
        self._record(attempt, "cut" if cut else "failed", error)
        self._last = error
        action = self._owner.classify(error)
        if cut:
            return
        if action is Action.STOP:
            raise CallFailed(f"{deployment.id}: {error}", last_error=error, attempts=self.attempts)
        if action is Action.RETRY and self._tries < self.policy.attempts_per_deployment:
            asked = error.retry_after if isinstance(error, RateLimited) else None
            if asked is None or asked <= self.policy.max_retry_after_s:
                self._wait = self.policy.backoff(self._tries, self._owner.rng, asked)
                return
        if action is Action.LARGER_CONTEXT:
            window = deployment.context_window or 0
            self._window_overflowed = max(self._window_overflowed or 0, window)
        if action is Action.OTHER_PROVIDER:
            self._refused.add(deployment.provider)
        self._advance()

    def failure(self) -> CallFailed:
        """The error of a spent schedule."""
        last = self._last
        if last is None:
            why = "; ".join(f"{a.deployment}: {a.message}" for a in self.attempts) or "none given"
            last = ModelError(f"no deployment could take the call ({why})")
        tried = sum(1 for a in self.attempts if a.number)
        message = f"the call failed after {tried} attempt(s) ({self._why}); last error: {last}"
        return CallFailed(message, last_error=last, attempts=self.attempts)

    def _unfit(self, deployment: D) -> tuple[str, str] | None:
        window = deployment.context_window
        if deployment.provider in self._refused:
            return "ContentRefused", f"provider {deployment.provider} already refused the content"
        if self._window_overflowed is not None and (window or 0) <= self._window_overflowed:
            return "ContextLengthExceeded", (
                f"context window {window} is not larger than {self._window_overflowed}, "
                "which overflowed"
            )
        if self._needed is not None and window is not None and window < self._needed:
            return "ContextLengthExceeded", f"context window {window} < {self._needed} tokens"
        return None

    def _skip(self, deployment: D, error: str, message: str) -> None:
        self.attempts.append(Attempt(deployment.id, "skipped", error=error, message=message))
        self._advance()

    def _advance(self, why: str = "every deployment was tried") -> None:
        self._why = why
        self._index += 1
        self._tries = 0
        self._wait = 0.0

    def _deadline(self) -> None:
        self._why = f"the deadline of {self.policy.deadline_s} s passed"
        if self._last is None:
            self._last = ProviderTimeout(self._why)
        self._index = len(self._deployments)

    def _record(self, attempt: _Try[D], outcome: Any, error: ModelError | None = None) -> None:
        self.attempts.append(
            Attempt(
                attempt.deployment.id,
                outcome,
                attempt.number,
                attempt.delay,
                self._owner.clock.monotonic() - attempt.started,
                type(error).__name__ if error is not None else None,
                str(error) if error is not None else None,
                error.retry_after if isinstance(error, RateLimited) else None,
            )
        )


def _as_model_error(exc: Exception, attempt: _Try[Any], timed_out: bool) -> ModelError | None:
    """The provider failure ``exc`` stands for; ``None`` for anything else (a bug)."""
    deployment = attempt.deployment
    if isinstance(exc, ModelError):
        return exc
    if timed_out or isinstance(exc, TimeoutError):
        return ProviderTimeout(
            f"{deployment.id}: no answer within {attempt.timeout} s",
            provider=deployment.provider,
            model=deployment.id,
        )
    return None


def _cut(attempt: _Try[Any], why: str) -> ProviderTimeout:
    deployment = attempt.deployment
    return ProviderTimeout(
        f"{deployment.id}: {why}", provider=deployment.provider, model=deployment.id
    )


async def _close(source: AsyncIterator[Any]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
