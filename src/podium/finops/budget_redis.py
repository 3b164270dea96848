"""Budgets on Redis, shared by gateway replicas: Lua scripts make every reservation atomic.
Re-exported by :mod:`podium.finops.budgets`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from redis.asyncio import Redis

from podium.finops.budgets import (
    KEEP_FINISHED_S,
    BudgetAlert,
    Charge,
    Outcome,
    Refusal,
    Reservation,
    ReservationNotFound,
    alert_order,
    holds_json,
    threshold_key,
)

# Amounts are decimal strings of whole picodollars. Lua numbers are doubles, exact only to 2^53,
# so the scripts add and compare amounts as two limbs: whole dollars and the 12-digit picodollar
# remainder (exact up to about 9 * 10^15 USD).
_LUA_MONEY = """
local B = 1000000000000
local function N(s)
  s = tostring(s or '0')
  local n = #s
  if n <= 12 then return {0, tonumber(s)} end
  return {tonumber(string.sub(s, 1, n - 12)), tonumber(string.sub(s, n - 11))}
end
local function S(x)
  if x[1] == 0 then return string.format('%.0f', x[2]) end
  return string.format('%.0f', x[1]) .. string.format('%012.0f', x[2])
end
local function add(a, b)
  local hi, lo = a[1] + b[1], a[2] + b[2]
  if lo >= B then return {hi + 1, lo - B} end
  return {hi, lo}
end
local function sub(a, b)
  local hi, lo = a[1] - b[1], a[2] - b[2]
  if lo < 0 then return {hi - 1, lo + B} end
  return {hi, lo}
end
local function le(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] <= b[2]) end
"""

# KEYS: reservation, expiry index, counters... ARGV: amount, id, expires_at, holds json,
# then per counter its limit ('' = soft) and its time to live in seconds ('' = none).
_LUA_RESERVE = (
    _LUA_MONEY
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('reservation exists') end
local amount, n = N(ARGV[1]), #KEYS - 2
for i = 1, n do
  local limit = ARGV[4 + 2 * i - 1]
  if limit ~= '' then
    local c = redis.call('HMGET', KEYS[2 + i], 'spent', 'reserved')
    local spent, reserved = N(c[1]), N(c[2])
    if not le(add(add(spent, reserved), amount), N(limit)) then
      return {i, S(spent), S(reserved)}
    end
  end
end
for i = 1, n do
  local key = KEYS[2 + i]
  local reserved = N(redis.call('HGET', key, 'reserved'))
  redis.call('HSET', key, 'reserved', S(add(reserved, amount)))
  redis.call('HSETNX', key, 'spent', '0')
  local expire = ARGV[4 + 2 * i]
  if expire ~= '' then redis.call('EXPIRE', key, expire) end
end
redis.call('HSET', KEYS[1], 'state', 'held', 'amount', ARGV[1], 'holds', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return {0}
"""
)

# KEYS: reservation, expiry index. ARGV: actual ('' = release), id, counter key prefix, keep_s.
_LUA_FINISH = (
    _LUA_MONEY
    + """
local r = redis.call('HMGET', KEYS[1], 'state', 'amount', 'holds')
if not r[1] then return {'missing'} end
if r[1] == 'settled' or r[1] == 'released' then return {'duplicate', r[2]} end
local late = r[1] == 'expired'
local amount = N(r[2])
local out = {late and 'late' or 'applied', r[2]}
for _, h in ipairs(cjson.decode(r[3])) do
  local key = ARGV[3] .. h[1] .. ':' .. h[2]
  local c = redis.call('HMGET', key, 'spent', 'reserved')
  local spent, reserved = N(c[1]), N(c[2])
  if not late then reserved = sub(reserved, amount) end
  local after = spent
  if ARGV[1] ~= '' then after = add(spent, N(ARGV[1])) end
  redis.call('HSET', key, 'spent', S(after), 'reserved', S(reserved))
  table.insert(out, h[1])
  table.insert(out, h[2])
  table.insert(out, S(after))
end
local state = 'settled'
if ARGV[1] == '' then state = 'released' end
redis.call('HSET', KEYS[1], 'state', state)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return out
"""
)

# KEYS: expiry index. ARGV: now, reservation key prefix, counter key prefix, keep_s.
_LUA_SWEEP = (
    _LUA_MONEY
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
local swept = 0
for _, rid in ipairs(ids) do
  local key = ARGV[2] .. rid
  local r = redis.call('HMGET', key, 'state', 'amount', 'holds')
  if r[1] == 'held' then
    local amount = N(r[2])
    for _, h in ipairs(cjson.decode(r[3])) do
      local counter = ARGV[3] .. h[1] .. ':' .. h[2]
      local reserved = N(redis.call('HGET', counter, 'reserved'))
      redis.call('HSET', counter, 'reserved', S(sub(reserved, amount)))
    end
    redis.call('HSET', key, 'state', 'expired')
    redis.call('EXPIRE', key, ARGV[4])
    swept = swept + 1
  end
  redis.call('ZREM', KEYS[1], rid)
end
return swept
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBudgetStore:
    """A :class:`BudgetBackend` in Redis, shared by gateway replicas: each operation is one Lua
    script, so it is atomic across every client.

    Keys start with ``prefix``; the default is a hash tag (``{…}``), so in Redis Cluster every
    key of the budgets lands in one slot, as multi-key scripts need. A counter of a calendar window
    lives 31 days plus ``keep_finished_s`` after its last reservation; a finished reservation
    ``keep_finished_s``. Times to live are relative, so Redis's clock never meets the injected one.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        prefix: Namespace of every key.
        keep_finished_s: How long finished reservations and past windows' counters are kept.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "{podium:budgets}",
        keep_finished_s: float = KEEP_FINISHED_S,
    ) -> None:
        self._redis = client
        self._owned = False
        self._prefix = prefix
        self._keep = int(keep_finished_s)
        # a month is the longest calendar window: a counter outlives its last use by that much
        self._counter_ttl = 31 * 86400 + self._keep
        self._reserve = client.register_script(_LUA_RESERVE)
        self._finish = client.register_script(_LUA_FINISH)
        self._sweep = client.register_script(_LUA_SWEEP)
        self._expiry = f"{prefix}:expiry"
        self._alerts_key = f"{prefix}:alerts"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "{podium:budgets}",
        keep_finished_s: float = KEEP_FINISHED_S,
        max_connections: int = 50,
    ) -> RedisBudgetStore:
        """A store on its own client to ``url`` (``redis://host:port/db``), closed with it.

        The client's pool makes callers wait for a free connection rather than fail (redis-py's
        default pool raises past 100 connections in use).
        """
        from redis.asyncio import BlockingConnectionPool, Redis

        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10)
        store = cls(Redis.from_pool(pool), prefix=prefix, keep_finished_s=keep_finished_s)
        store._owned = True
        return store

    def _counter(self, budget_id: str, period: str) -> str:
        return f"{self._prefix}:c:{budget_id}:{period}"

    def _record(self, reservation_id: str) -> str:
        return f"{self._prefix}:r:{reservation_id}"

    async def reserve(self, reservation: Reservation, amount: int, now: float) -> Refusal | None:
        holds = reservation.holds
        args: list[str] = [str(amount), reservation.id, repr(reservation.expires_at)]
        args.append(holds_json(holds))
        for h in holds:
            args.append("" if h.limit is None else str(h.limit))
            args.append("" if h.period == "total" else str(self._counter_ttl))
        keys = [self._record(reservation.id), self._expiry]
        keys += [self._counter(h.budget_id, h.period) for h in holds]
        result = await self._reserve(keys=keys, args=args)
        if int(result[0]) == 0:
            return None
        return Refusal(holds[int(result[0]) - 1], int(_text(result[1])), int(_text(result[2])))

    async def finish(self, reservation_id: str, actual: int | None, now: float) -> Outcome:
        keys = [self._record(reservation_id), self._expiry]
        args = ["" if actual is None else str(actual), reservation_id]
        args += [f"{self._prefix}:c:", str(self._keep)]
        result = [_text(v) for v in await self._finish(keys=keys, args=args)]
        if result[0] == "missing":
            raise ReservationNotFound(f"no reservation {reservation_id!r}")
        amount = int(result[1])
        if result[0] == "duplicate":
            return Outcome("duplicate", amount)
        charges = []
        if actual is not None:
            for i in range(2, len(result), 3):
                budget_id, period, after = result[i], result[i + 1], int(result[i + 2])
                charges.append(Charge(budget_id, period, after - actual, after))
        state: Literal["applied", "late"] = "late" if result[0] == "late" else "applied"
        return Outcome(state, amount, tuple(charges))

    async def sweep(self, now: float) -> int:
        args = [repr(now), f"{self._prefix}:r:", f"{self._prefix}:c:", str(self._keep)]
        return int(await self._sweep(keys=[self._expiry], args=args))

    async def counters(self, keys: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for b, p in keys:
                pipe.hmget(self._counter(b, p), ["spent", "reserved"])
            rows = await pipe.execute()
        return [(int(_text(s or 0)), int(_text(r or 0))) for s, r in rows]

    async def record_alerts(self, alerts: Sequence[BudgetAlert]) -> list[BudgetAlert]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for a in alerts:
                field_ = "\x1f".join((a.budget_id, a.period, threshold_key(a.threshold)))
                value = json.dumps([str(a.limit), str(a.spent), a.ts])
                pipe.hsetnx(self._alerts_key, field_, value)
            added = await pipe.execute()
        return [a for a, new in zip(alerts, added, strict=True) if int(new) == 1]

    async def alerts(self) -> list[BudgetAlert]:
        stored = await self._redis.hgetall(self._alerts_key)
        alerts = []
        for field_, value in stored.items():
            budget_id, period, threshold = _text(field_).split("\x1f")
            limit, spent, ts = json.loads(_text(value))
            alerts.append(
                BudgetAlert(
                    budget_id, period, Decimal(threshold), Decimal(limit), Decimal(spent), ts
                )
            )
        return sorted(alerts, key=alert_order)

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()
