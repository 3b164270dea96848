"""Rate limits: requests and tokens per minute, per key, team, model and deployment — exact.

A :class:`LimitRule` caps one *scope* (``key:…``, ``team:…``, ``model:…``, ``deployment:…``) at
``rpm`` requests and/or ``tpm`` tokens per window (60 s). One :meth:`RateLimiter.acquire` checks
every rule that applies to a request **atomically, all or nothing**: if any counter refuses,
none is consumed, and :class:`RateLimitExceeded` says which scope refused and when the request
would fit (``retry_after``, the largest wait among the refusing counters).

**Algorithm: sliding-window log.** Each counter keeps the admitted amounts with their time (the
request's ``1``, or its reserved tokens), and a running total. A request of amount ``a`` is
admitted at time ``t`` iff the sum of amounts admitted in ``(t - W, t]`` plus ``a`` is at most
the limit. Why this is exact:

- *never over the limit*: by induction every window ``(t - W, t]`` holds at most ``limit``
  (reconciliation aside: tokens used beyond the estimate are recorded, and later requests wait);
- *no early lock-out*: the only refusal is when admitting would break that bound, so a request
  that fits is never refused (a fixed window, or a token bucket holding ``limit``, lets twice
  the limit through some window; a smaller bucket refuses bursts that fit);
- *exact wait*: walking the log oldest first until enough would have left gives the instant the
  request fits, ``retry_after = t_k + W - t``; retried then, it is admitted (absent other
  traffic).

Times are integer microseconds, so the boundary is exact: an entry admitted at ``t0`` frees its
amount at ``t0 + W`` precisely. Memory is one entry per admitted request per counter still in the
window (e.g. a 10,000-RPM scope holds at most 10,000 entries); idle counters are dropped.

**Tokens** are reserved from an estimate (:func:`estimate_tokens`) and reconciled with the
provider's usage after the call (:meth:`RateLimiter.reconcile`, idempotent); a request that never
reached a provider is :meth:`RateLimiter.release`\\ d, refunding all its counters.

Backends: :class:`MemoryLimiter` (one process, thread-safe) and :class:`RedisLimiter` (one Lua
script per operation, so every gateway replica shares the counters atomically).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from podium.errors import RateLimitExceeded
from podium.models.base import ChatRequest
from podium.types import Clock

if TYPE_CHECKING:
    from redis.asyncio import Redis

Dimension = Literal["requests", "tokens"]
US = 1_000_000


@dataclass(frozen=True, slots=True)
class LimitRule:
    """The limits of one scope. ``None`` means no limit on that dimension."""

    scope: str
    """What is limited: ``key:<id>``, ``team:<id>``, ``model:<name>``, ``deployment:<id>``."""
    rpm: int | None = None
    """Requests per window."""
    tpm: int | None = None
    """Tokens (input + output, estimated then reconciled) per window."""
    window_s: float = 60.0
    """The sliding window, in seconds (a minute for RPM/TPM)."""


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """What the limit stage is asked: admit one request under all these rules."""

    rules: Sequence[LimitRule]
    tokens: int = 0
    """The request's estimated tokens (:func:`estimate_tokens`), reserved on every TPM rule."""
    request_id: str | None = None
    """Identifies the reservation (a new one is made when ``None``)."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One (scope, dimension) counter of a request, and the amount the request takes from it."""

    scope: str
    dimension: Dimension
    limit: int
    window_us: int
    amount: int

    @property
    def name(self) -> str:
        return f"{self.scope}|{self.dimension}|{self.window_us}"

    def refusal(self, retry_after_us: int | None) -> RateLimitExceeded:
        return RateLimitExceeded(
            scope=self.scope,
            dimension=self.dimension,
            limit=self.limit,
            window_s=self.window_us / US,
            requested=self.amount,
            retry_after=None if retry_after_us is None else retry_after_us / US,
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """An admitted request: what it took from which counters, and when."""

    id: str
    counters: tuple[Counter, ...]
    at: float
    """When it was admitted, in seconds on the limiter's clock."""


def counters(request: LimitRequest) -> tuple[Counter, ...]:
    """The counters a request takes from (one per rule and dimension)."""
    if request.tokens < 0:
        raise ValueError("estimated tokens cannot be negative")
    out: list[Counter] = []
    for rule in request.rules:
        window_us = round(rule.window_s * US)
        if window_us <= 0:
            raise ValueError(f"the window of {rule.scope} must be positive")
        if rule.rpm is not None:
            out.append(Counter(rule.scope, "requests", rule.rpm, window_us, 1))
        if rule.tpm is not None:
            out.append(Counter(rule.scope, "tokens", rule.tpm, window_us, request.tokens))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError("a request names the same scope twice")
    return tuple(out)


def _reservation_id(request: LimitRequest) -> str:
    rid = request.request_id or uuid.uuid4().hex
    if rid.startswith("#"):
        raise ValueError("a reservation id cannot start with '#'")
    return rid


def estimate_tokens(
    request: ChatRequest, *, default_output: int = 1024, chars_per_token: float = 4.0
) -> int:
    """A token estimate to reserve before the call: input text at ``chars_per_token``, plus
    ``max_tokens`` (or ``default_output``) for the answer. Reconciled after the call."""
    chars = sum(len(m.text) + len(m.role) + 4 for m in request.messages)
    chars += sum(len(t.name) + len(t.description) + len(str(t.parameters)) for t in request.tools)
    output = request.max_tokens if request.max_tokens is not None else default_output
    return math.ceil(chars / chars_per_token) + output


class RateLimiter(Protocol):
    """The limit stage. Both backends behave identically (``tests/gateway/test_limits.py``)."""

    async def acquire(self, request: LimitRequest) -> Reservation:
        """Admit the request on every counter, or raise :class:`RateLimitExceeded` (none taken)."""
        ...

    async def reconcile(self, reservation: Reservation, tokens: int) -> None:
        """Set the reservation's tokens to the ``tokens`` actually used (idempotent)."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give back everything the reservation took (the request never reached a provider)."""
        ...

    async def used(self, rule: LimitRule) -> dict[Dimension, int]:
        """What a scope has used in its current window, per limited dimension (for routing by
        headroom, and for operators)."""
        ...

    async def close(self) -> None: ...


# -- memory ---------------------------------------------------------------------------------------


class _Window:
    """One counter's log: ``[time_us, amount, id]`` entries oldest first, and their total."""

    __slots__ = ("by_id", "entries", "total", "window_us")

    def __init__(self, window_us: int) -> None:
        self.window_us = window_us
        self.entries: deque[list[Any]] = deque()
        self.by_id: dict[str, list[Any]] = {}
        self.total = 0

    def prune(self, cutoff: int) -> None:
        """Drop the entries admitted at or before ``cutoff`` (= now - window)."""
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, amount, rid = entries.popleft()
            self.total -= amount
            del self.by_id[rid]

    def wait(self, now: int, counter: Counter) -> int | None:
        """Microseconds until ``counter.amount`` fits (0: it fits now; None: never)."""
        need = self.total + counter.amount - counter.limit
        if need <= 0:
            return 0
        if counter.amount > counter.limit:
            return None
        freed = 0
        for at, amount, _ in self.entries:
            freed += amount
            if freed >= need:
                return int(at) + counter.window_us - now
        raise AssertionError("unreachable: the entries hold the whole total")


class MemoryLimiter:
    """Sliding-window-log limits in this process; safe from many threads and event loops.

    Args:
        clock: Its ``monotonic()`` time is used (one process: no shared wall time needed).
        sweep_every: Operations between sweeps that drop idle counters.
    """

    def __init__(self, clock: Clock, *, sweep_every: int = 4096) -> None:
        self.clock = clock
        self.sweep_every = sweep_every
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._ops = 0

    def _now(self) -> int:
        return round(self.clock.monotonic() * US)

    def _sweep(self, now: int) -> None:
        self._ops += 1
        if self._ops % self.sweep_every:
            return
        for name, window in list(self._windows.items()):
            window.prune(now - window.window_us)
            if not window.entries:
                del self._windows[name]

    def try_acquire(self, request: LimitRequest) -> Reservation:
        """:meth:`acquire`, synchronously (it never blocks beyond a short lock)."""
        wanted = counters(request)
        rid = _reservation_id(request)
        with self._lock:
            now = self._now()
            windows = []
            refused: tuple[Counter, int | None] | None = None
            for counter in wanted:
                window = self._windows.get(counter.name) or _Window(counter.window_us)
                window.prune(now - counter.window_us)
                if rid in window.by_id:
                    raise ValueError(f"reservation {rid!r} already exists")
                wait = window.wait(now, counter)
                if wait is None:
                    raise counter.refusal(None)
                if wait > 0 and (refused is None or wait > (refused[1] or 0)):
                    refused = (counter, wait)
                windows.append(window)
            if refused is not None:
                raise refused[0].refusal(refused[1])
            for counter, window in zip(wanted, windows, strict=True):
                entry = [now, counter.amount, rid]
                window.entries.append(entry)
                window.by_id[rid] = entry
                window.total += counter.amount
                self._windows[counter.name] = window
            self._sweep(now)
        return Reservation(rid, wanted, now / US)

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """:meth:`reconcile`, synchronously."""
        if tokens < 0:
            raise ValueError("used tokens cannot be negative")
        with self._lock:
            for counter in reservation.counters:
                window = self._windows.get(counter.name)
                entry = None if window is None else window.by_id.get(reservation.id)
                if counter.dimension == "tokens" and window is not None and entry is not None:
                    window.total += tokens - entry[1]
                    entry[1] = tokens

    def refund(self, reservation: Reservation) -> None:
        """:meth:`release`, synchronously."""
        with self._lock:
            for counter in reservation.counters:
                window = self._windows.get(counter.name)
                entry = None if window is None else window.by_id.pop(reservation.id, None)
                if window is not None and entry is not None:
                    window.entries.remove(entry)
                    window.total -= entry[1]

    def used_now(self, rule: LimitRule) -> dict[Dimension, int]:
        """:meth:`used`, synchronously."""
        with self._lock:
            now = self._now()
            out: dict[Dimension, int] = {}
            for counter in counters(LimitRequest([rule])):
                window = self._windows.get(counter.name)
                if window is not None:
                    window.prune(now - counter.window_us)
                out[counter.dimension] = 0 if window is None else window.total
            return out

    async def acquire(self, request: LimitRequest) -> Reservation:
        return self.try_acquire(request)

    async def reconcile(self, reservation: Reservation, tokens: int) -> None:
        self.settle(reservation, tokens)

    async def release(self, reservation: Reservation) -> None:
        self.refund(reservation)

    async def used(self, rule: LimitRule) -> dict[Dimension, int]:
        return self.used_now(rule)

    async def close(self) -> None:
        with self._lock:
            self._windows.clear()


# -- Redis ----------------------------------------------------------------------------------------

# Numbers cross into redis.call as strings made with %d: Lua would print them with %.14g, and
# microsecond timestamps have 16 digits.
_PRELUDE = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = #KEYS / 2
local function d(x) return string.format('%d', x) end

local function prune(z, h, cutoff)
  while true do
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', d(cutoff), 'LIMIT', 0, 500)
    if #old == 0 then return end
    local amounts = redis.call('HMGET', h, unpack(old))
    local freed = 0
    for i = 1, #amounts do freed = freed + (tonumber(amounts[i]) or 0) end
    redis.call('HINCRBY', h, '#total', d(-freed))
    redis.call('HDEL', h, unpack(old))
    redis.call('ZREM', z, unpack(old))
  end
end
"""

_ACQUIRE = (
    _PRELUDE
    + """
local rid = ARGV[2]

local function wait_for(z, h, need, window)
  local freed, offset = 0, 0
  while true do
    local page = redis.call('ZRANGE', z, offset, offset + 99, 'WITHSCORES')
    if #page == 0 then return window end
    local ids = {}
    for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
    local amounts = redis.call('HMGET', h, unpack(ids))
    for j = 1, #ids do
      freed = freed + (tonumber(amounts[j]) or 0)
      if freed >= need then return tonumber(page[2 * j]) + window - now end
    end
    offset = offset + 100
  end
end

local worst, worst_wait = 0, 0
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[3 * i])
  local window = tonumber(ARGV[3 * i + 1])
  local amount = tonumber(ARGV[3 * i + 2])
  prune(z, h, now - window)
  if redis.call('HEXISTS', h, rid) == 1 then return {-1, i, 0, now} end
  local total = tonumber(redis.call('HGET', h, '#total') or '0')
  if total + amount > limit then
    if amount > limit then return {0, i, -1, now} end
    local wait = wait_for(z, h, total + amount - limit, window)
    if wait > worst_wait then worst, worst_wait = i, wait end
  end
end
if worst > 0 then return {0, worst, worst_wait, now} end
for i = 1, n do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local window = tonumber(ARGV[3 * i + 1])
  local amount = tonumber(ARGV[3 * i + 2])
  local ttl = d(math.ceil(window / 1000) + 1000)
  redis.call('ZADD', z, d(now), rid)
  redis.call('HSET', h, rid, d(amount))
  redis.call('HINCRBY', h, '#total', d(amount))
  redis.call('PEXPIRE', z, ttl)
  redis.call('PEXPIRE', h, ttl)
end
return {1, 0, 0, now}
"""
)

_USED = (
    _PRELUDE
    + """
local totals = {}
for i = 1, n do
  prune(KEYS[2 * i - 1], KEYS[2 * i], now - tonumber(ARGV[i + 1]))
  totals[i] = tonumber(redis.call('HGET', KEYS[2 * i], '#total') or '0')
end
return totals
"""
)

_RECONCILE = """
for i = 1, #KEYS / 2 do
  local h = KEYS[2 * i]
  local old = redis.call('HGET', h, ARGV[1])
  if old then
    redis.call('HSET', h, ARGV[1], ARGV[2])
    redis.call('HINCRBY', h, '#total', string.format('%d', tonumber(ARGV[2]) - tonumber(old)))
  end
end
return 0
"""

_RELEASE = """
for i = 1, #KEYS / 2 do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local old = redis.call('HGET', h, ARGV[1])
  if old then
    redis.call('HDEL', h, ARGV[1])
    redis.call('ZREM', z, ARGV[1])
    redis.call('HINCRBY', h, '#total', string.format('%d', -tonumber(old)))
  end
end
return 0
"""


class RedisLimiter:
    """Sliding-window-log limits in Redis, shared by every gateway replica.

    Each counter is a sorted set (reservation ids by time) and a hash (their amounts and the
    ``#total``), both expiring a window after their last write. Each operation is one Lua script
    over all of a request's counters, so acquire-all-or-nothing is atomic across replicas. On a
    Redis Cluster every counter must hash to one slot: give ``prefix`` a hash tag, e.g.
    ``"{podium-limits}:"``.

    Args:
        client: A ``redis.asyncio.Redis``.
        clock: Whose ``now()`` stamps requests; ``None`` (the default for production) uses the
            Redis server's ``TIME``, so replicas with skewed clocks still agree.
        prefix: Prepended to every key.
        owns_client: Close the client on :meth:`close`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        clock: Clock | None = None,
        prefix: str = "podium:limits:",
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.clock = clock
        self.prefix = prefix
        self.owns_client = owns_client
        self._acquire = client.register_script(_ACQUIRE)
        self._reconcile = client.register_script(_RECONCILE)
        self._release = client.register_script(_RELEASE)
        self._used = client.register_script(_USED)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "podium:limits:",
        max_connections: int = 50,
    ) -> RedisLimiter:
        """A limiter with its own client (``redis://host:port/db``) whose pool of
        ``max_connections`` makes bursts queue for a connection rather than fail."""
        from redis.asyncio import BlockingConnectionPool, Redis

        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections)
        return cls(Redis.from_pool(pool), clock=clock, prefix=prefix, owns_client=True)

    def _keys(self, wanted: Sequence[Counter]) -> list[str]:
        keys = []
        for counter in wanted:
            keys += [f"{self.prefix}{counter.name}:z", f"{self.prefix}{counter.name}:h"]
        return keys

    async def acquire(self, request: LimitRequest) -> Reservation:
        wanted = counters(request)
        rid = _reservation_id(request)
        now = -1 if self.clock is None else round(self.clock.now() * US)
        args: list[str | int] = [now, rid]
        for counter in wanted:
            args += [counter.limit, counter.window_us, counter.amount]
        status, index, wait, at = await self._acquire(keys=self._keys(wanted), args=args)
        if status == -1:
            raise ValueError(f"reservation {rid!r} already exists")
        if status == 0:
            raise wanted[index - 1].refusal(None if wait < 0 else int(wait))
        return Reservation(rid, wanted, int(at) / US)

    async def reconcile(self, reservation: Reservation, tokens: int) -> None:
        if tokens < 0:
            raise ValueError("used tokens cannot be negative")
        tokens_counters = [c for c in reservation.counters if c.dimension == "tokens"]
        if tokens_counters:
            keys = self._keys(tokens_counters)
            await self._reconcile(keys=keys, args=[reservation.id, tokens])

    async def release(self, reservation: Reservation) -> None:
        if reservation.counters:
            await self._release(keys=self._keys(reservation.counters), args=[reservation.id])

    async def used(self, rule: LimitRule) -> dict[Dimension, int]:
        """What a scope has used in its current window, per limited dimension."""
        wanted = counters(LimitRequest([rule]))
        now = -1 if self.clock is None else round(self.clock.now() * US)
        args: list[str | int] = [now]
        for counter in wanted:
            args.append(counter.window_us)
        totals = await self._used(keys=self._keys(wanted), args=args)
        return {c.dimension: int(t) for c, t in zip(wanted, totals, strict=True)}

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()
