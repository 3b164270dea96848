"""Budgets: spend limits enforced by atomic reservation, so concurrent calls can never overspend.

A :class:`Budget` caps the spend of one scope (an org, team, project, API key or use case) over a
window aligned to the UTC calendar (``daily``; ``weekly`` from Monday; ``monthly``; ``total``).
A *hard* budget refuses a call that could take it over its limit; a *soft* one never refuses but
raises alerts at the fractions of its limit listed in ``alert_at`` (hard budgets may alert too).

The call path uses :class:`Budgets` in two steps:

1. **Reserve** before the call: the worst-case cost (:func:`podium.finops.pricing.worst_case`) is
   held on every budget whose scope matches the call's attribution, all or none, in one atomic
   step per backend — a guarded ``UPDATE … SET reserved = reserved + :x WHERE spent + reserved +
   :x <= limit`` whose row count decides (SQL), a Lua script (Redis), a lock (memory). If any hard
   budget cannot take it, nothing is held and :class:`BudgetExceeded` is raised before any
   provider is contacted.
2. **Settle** after the call, whatever the outcome: :meth:`Budgets.settle` replaces the hold with
   the real cost, :meth:`Budgets.release` drops it (the call failed and cost nothing). Both are
   idempotent per reservation: the first finish wins, later ones change nothing. A reservation
   not finished by ``expires_at`` is released by :meth:`Budgets.sweep` (also run before a refusal
   is final); if its call settles later, the spend is still charged (``late``).

Spend counts in the window its reservation was taken in. Counters are kept in whole picodollars
(10^-12 USD) so that databases and Lua add them exactly: a reservation is rounded up to the next
picodollar and a limit down, so rounding can only refuse, never overspend.

A hard budget's ``spent + reserved`` stays within its limit except in two cases, both charged
truthfully rather than hidden: a call that cost more than its reservation (a worst case computed
too low), and a call settled after its expired hold was swept (a caller stalled past ``ttl_s``;
the state machine test found this one). Keep ``ttl_s`` above the call path's total timeout so
that only a crashed or frozen caller's hold is ever swept.

Backends: :class:`MemoryBudgetStore`, :class:`SQLBudgetStore` (SQLite, PostgreSQL) and
:class:`RedisBudgetStore` (shared by gateway replicas); all pass one conformance suite.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal, Protocol, get_args

from podium.errors import ConfigError, PodiumError
from podium.finops.ledger import Attribution
from podium.models.catalog import money
from podium.types import Clock, ordered_id

Window = Literal["daily", "weekly", "monthly", "total"]
ScopeKind = Literal["org", "team", "project", "key", "use_case"]
SCOPES: tuple[ScopeKind, ...] = get_args(ScopeKind)
WINDOWS: tuple[Window, ...] = get_args(Window)

DEFAULT_TTL_S = 900.0
"""How long a reservation holds before the sweeper may release it (longer than any call)."""
KEEP_FINISHED_S = 7 * 86400
"""How long finished reservations are kept after they expire (so a repeated settle is
recognised); Redis counts from the finish."""
_SCALE = 12


def to_units(amount: Decimal, *, up: bool = True) -> int:
    """``amount`` (USD) in whole picodollars, rounded up (``up``) or down."""
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    return int(amount.scaleb(_SCALE).to_integral_value(rounding=rounding))


def from_units(units: int) -> Decimal:
    """Picodollars back to USD, without trailing zeros (``700000000000`` → ``Decimal('0.7')``)."""
    amount = Decimal(units).scaleb(-_SCALE)
    return amount.quantize(_ONE) if amount == amount.to_integral_value() else amount.normalize()


_ONE = Decimal(1)


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend limit on one scope over one window.

    Attributes:
        id: Unique name; counters are keyed by it, so keep it stable.
        scope: What the budget follows: ``org``, ``team``, ``project``, ``key`` or ``use_case``.
        value: The scope's value a call must carry (e.g. the team ``ml``).
        limit: USD per window.
        window: ``daily``, ``weekly``, ``monthly`` or ``total``, aligned to the UTC calendar.
        hard: Refuse calls that could exceed the limit (``False``: only alert).
        alert_at: Fractions of the limit whose crossing by spend raises an alert, e.g.
            ``(Decimal("0.8"), Decimal("1"))``.
    """

    id: str
    scope: ScopeKind
    value: str
    limit: Decimal
    window: Window = "monthly"
    hard: bool = True
    alert_at: tuple[Decimal, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 200:
            raise ConfigError("a budget id must have 1 to 200 characters")
        if self.scope not in SCOPES:
            raise ConfigError(f"budget {self.id!r}: scope must be one of {', '.join(SCOPES)}")
        if self.window not in WINDOWS:
            raise ConfigError(f"budget {self.id!r}: window must be one of {', '.join(WINDOWS)}")
        if not isinstance(self.limit, Decimal) or not self.limit.is_finite() or self.limit < 0:
            raise ConfigError(f"budget {self.id!r}: the limit must be a Decimal ≥ 0")
        for fraction in self.alert_at:
            if not isinstance(fraction, Decimal) or not fraction > 0:
                raise ConfigError(f"budget {self.id!r}: alert_at holds Decimals > 0")

    def applies_to(self, attribution: Attribution) -> bool:
        """Whether a call with this attribution counts against the budget."""
        name = "key_id" if self.scope == "key" else self.scope
        value: str | None = getattr(attribution, name)
        return value == self.value


@dataclass(frozen=True, slots=True)
class Period:
    """One window of a budget: its key in the counters, start and end (``None``: never)."""

    key: str
    start: datetime
    end: datetime | None


def period_of(window: Window, now: float) -> Period:
    """The window containing ``now`` (seconds since the epoch), on the UTC calendar."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "total":
        return Period("total", datetime(1970, 1, 1, tzinfo=UTC), None)
    if window == "daily":
        start, end = day, day + timedelta(days=1)
    elif window == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return Period(start.date().isoformat(), start, end)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation's claim on one budget counter. ``limit`` in picodollars; ``None``: soft."""

    budget_id: str
    period: str
    limit: int | None


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    """What the admit stage asks to hold.

    Attributes:
        request_id: The gateway's request id (kept with the reservation).
        attribution: Who the call is charged to; picks the budgets.
        amount: The worst-case cost, USD.
        ttl_s: Seconds until the sweeper may release the hold (default: the Budgets' ``ttl_s``).
    """

    request_id: str
    attribution: Attribution
    amount: Decimal
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted hold. Pass it to :meth:`Budgets.settle` or :meth:`Budgets.release`."""

    id: str
    request_id: str
    amount: Decimal
    """As held: the requested amount rounded up to the picodollar."""
    holds: tuple[Hold, ...]
    """The counters held; empty when no budget applies (then nothing was stored)."""
    expires_at: float


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """Spend crossed ``threshold * limit`` of a budget in a window (recorded once)."""

    budget_id: str
    period: str
    threshold: Decimal
    limit: Decimal
    spent: Decimal
    ts: float


@dataclass(frozen=True, slots=True)
class Settlement:
    """What finishing a reservation did.

    Attributes:
        applied: ``False`` when it had already been settled or released (nothing changed).
        late: Settled after the sweeper had released its expired hold.
        alerts: Alert thresholds this spend crossed (recorded, each once).
    """

    reservation_id: str
    reserved: Decimal
    actual: Decimal
    applied: bool
    late: bool = False
    alerts: tuple[BudgetAlert, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget's current window."""

    budget: Budget
    period: Period
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.budget.limit - self.spent - self.reserved


class BudgetExceeded(PodiumError):
    """A hard budget cannot take a call's worst-case cost; the call was not made.

    Attributes:
        budget_id, scope, value: Which budget refused.
        limit, spent, reserved, requested: USD, at the moment of refusal.
        window_end: When the window resets (``None`` for a ``total`` budget).
    """

    def __init__(
        self,
        budget: Budget,
        *,
        spent: Decimal,
        reserved: Decimal,
        requested: Decimal,
        window_end: datetime | None,
    ) -> None:
        self.budget_id = budget.id
        self.scope = budget.scope
        self.value = budget.value
        self.limit = budget.limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.window_end = window_end
        resets = (
            f"; it resets at {window_end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            if window_end is not None
            else "; it never resets"
        )
        super().__init__(
            f"budget {budget.id!r} ({budget.scope} {budget.value!r}, {budget.window}) would be "
            f"exceeded: this call may cost up to ${money(requested)} and ${money(spent)} is spent, "
            f"${money(reserved)} reserved by calls in flight, of a ${money(budget.limit)} "
            f"limit{resets}"
        )


class ReservationNotFound(PodiumError):
    """No reservation with this id is known (never made, or finished long ago and purged)."""


# -- the backend seam (amounts in picodollars) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """The hold a backend could not take, with its counter at that moment."""

    hold: Hold
    spent: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Charge:
    """A settled spend on one counter: its ``spent`` before and after."""

    budget_id: str
    period: str
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`BudgetBackend.finish` did: ``applied``, ``late`` or ``duplicate``."""

    state: Literal["applied", "late", "duplicate"]
    amount: int
    charges: tuple[Charge, ...] = ()


class BudgetBackend(Protocol):
    """Counters and reservations, each operation atomic (across processes for SQL and Redis)."""

    async def reserve(self, reservation: Reservation, amount: int, now: float) -> Refusal | None:
        """Hold ``amount`` on every counter of ``reservation.holds`` and store the reservation,
        or hold nothing and return the first hard hold that cannot take it."""
        ...

    async def finish(self, reservation_id: str, actual: int | None, now: float) -> Outcome:
        """Settle (``actual`` spent) or release (``None``) a reservation, once.

        Raises:
            ReservationNotFound: The id is unknown.
        """
        ...

    async def sweep(self, now: float) -> int:
        """Release the holds of reservations expired by ``now``; return how many."""
        ...

    async def counters(self, keys: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        """``(spent, reserved)`` of each ``(budget_id, period)`` counter (zeros if absent)."""
        ...

    async def record_alerts(self, alerts: Sequence[BudgetAlert]) -> list[BudgetAlert]:
        """Record alerts not recorded before (by budget, period, threshold); return those."""
        ...

    async def alerts(self) -> list[BudgetAlert]:
        """Every recorded alert, oldest first."""
        ...

    async def close(self) -> None: ...


# -- the facade -----------------------------------------------------------------------------------


class Budgets:
    """The budgets the call path enforces, over one backend.

    Args:
        backend: Where counters and reservations live.
        budgets: The configured budgets (ids unique).
        clock: Injected time.
        ttl_s: Default seconds before an unfinished reservation may be swept.
    """

    def __init__(
        self,
        backend: BudgetBackend,
        budgets: Sequence[Budget],
        *,
        clock: Clock,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self._by_id: dict[str, Budget] = {}
        for budget in budgets:
            if budget.id in self._by_id:
                raise ConfigError(f"two budgets are called {budget.id!r}")
            self._by_id[budget.id] = budget
        self.backend = backend
        self._clock = clock
        self._ttl_s = ttl_s

    @property
    def budgets(self) -> list[Budget]:
        return list(self._by_id.values())

    def matching(self, attribution: Attribution) -> list[Budget]:
        """The budgets a call with this attribution counts against."""
        return [b for b in self._by_id.values() if b.applies_to(attribution)]

    async def reserve(self, request: ReservationRequest) -> Reservation:
        """Hold the request's worst-case cost on every matching budget, all or none.

        Raises:
            BudgetExceeded: A hard budget cannot take it; nothing is held.
        """
        _check_amount(request.amount)
        now = self._clock.now()
        holds = sorted(
            (
                Hold(
                    b.id,
                    period_of(b.window, now).key,
                    to_units(b.limit, up=False) if b.hard else None,
                )
                for b in self.matching(request.attribution)
            ),
            key=lambda h: (h.budget_id, h.period),
        )
        units = to_units(request.amount)
        ttl = self._ttl_s if request.ttl_s is None else request.ttl_s
        reservation = Reservation(
            ordered_id(now), request.request_id, from_units(units), tuple(holds), now + ttl
        )
        if not holds:
            return reservation
        refusal = await self.backend.reserve(reservation, units, now)
        if refusal is not None and await self.backend.sweep(now) > 0:
            refusal = await self.backend.reserve(reservation, units, now)
        if refusal is not None:
            budget = self._by_id[refusal.hold.budget_id]
            raise BudgetExceeded(
                budget,
                spent=from_units(refusal.spent),
                reserved=from_units(refusal.reserved),
                requested=request.amount,
                window_end=period_of(budget.window, now).end,
            )
        return reservation

    async def settle(self, reservation: Reservation | str, actual: Decimal) -> Settlement:
        """Charge the call's real cost in place of its hold (once; repeats change nothing).

        Raises:
            ReservationNotFound: The id is unknown.
        """
        _check_amount(actual)
        if isinstance(reservation, Reservation) and not reservation.holds:
            return Settlement(reservation.id, reservation.amount, actual, applied=True)
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        now = self._clock.now()
        outcome = await self.backend.finish(rid, to_units(actual), now)
        if outcome.state == "duplicate":
            return Settlement(rid, from_units(outcome.amount), actual, applied=False)
        alerts = await self._alerts(outcome.charges, now)
        late = outcome.state == "late"
        return Settlement(rid, from_units(outcome.amount), actual, True, late, tuple(alerts))

    async def release(self, reservation: Reservation | str) -> bool:
        """Drop the hold of a call that cost nothing. Returns ``False`` if already finished.

        Raises:
            ReservationNotFound: The id is unknown.
        """
        if isinstance(reservation, Reservation) and not reservation.holds:
            return True
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        outcome = await self.backend.finish(rid, None, self._clock.now())
        return outcome.state != "duplicate"

    async def sweep(self) -> int:
        """Release the holds of expired reservations; returns how many."""
        return await self.backend.sweep(self._clock.now())

    async def status(self, attribution: Attribution | None = None) -> list[BudgetStatus]:
        """The current window of every budget (or of those matching ``attribution``)."""
        now = self._clock.now()
        chosen = self.budgets if attribution is None else self.matching(attribution)
        periods = [period_of(b.window, now) for b in chosen]
        counts = await self.backend.counters(
            [(b.id, p.key) for b, p in zip(chosen, periods, strict=True)]
        )
        return [
            BudgetStatus(b, p, from_units(spent), from_units(reserved))
            for b, p, (spent, reserved) in zip(chosen, periods, counts, strict=True)
        ]

    async def alerts(self) -> list[BudgetAlert]:
        """Every alert recorded so far, oldest first."""
        return await self.backend.alerts()

    async def _alerts(self, charges: Sequence[Charge], now: float) -> list[BudgetAlert]:
        crossed = []
        for charge in charges:
            budget = self._by_id.get(charge.budget_id)
            if budget is None:  # removed from the configuration since the reservation
                continue
            before, after = from_units(charge.before), from_units(charge.after)
            for fraction in sorted(budget.alert_at):
                if before < budget.limit * fraction <= after:
                    crossed.append(
                        BudgetAlert(budget.id, charge.period, fraction, budget.limit, after, now)
                    )
        return await self.backend.record_alerts(crossed) if crossed else []


def _check_amount(amount: Decimal) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ValueError(f"an amount must be a finite Decimal ≥ 0, not {amount!r}")


def threshold_key(fraction: Decimal) -> str:
    """A threshold's canonical text (``Decimal('0.80')`` → ``'0.8'``)."""
    return format(fraction.normalize(), "f")


def holds_json(holds: Sequence[Hold]) -> str:
    return json.dumps([[h.budget_id, h.period] for h in holds], separators=(",", ":"))


# -- memory ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Record:
    amount: int
    holds: tuple[Hold, ...]
    expires_at: float
    state: str = "held"


class MemoryBudgetStore:
    """A :class:`BudgetBackend` in this process. A lock makes each operation atomic for asyncio
    tasks and threads alike (nothing inside it awaits)."""

    def __init__(self, *, keep_finished_s: float = KEEP_FINISHED_S) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], list[int]] = {}
        self._records: dict[str, _Record] = {}
        self._alerts: dict[tuple[str, str, str], BudgetAlert] = {}
        self._keep = keep_finished_s

    async def reserve(self, reservation: Reservation, amount: int, now: float) -> Refusal | None:
        with self._lock:
            if reservation.id in self._records:
                raise ValueError(f"reservation {reservation.id!r} exists")
            for h in reservation.holds:
                spent, reserved = self._counters.get((h.budget_id, h.period), (0, 0))
                if h.limit is not None and spent + reserved + amount > h.limit:
                    return Refusal(h, spent, reserved)
            for h in reservation.holds:
                self._counters.setdefault((h.budget_id, h.period), [0, 0])[1] += amount
            self._records[reservation.id] = _Record(
                amount, reservation.holds, reservation.expires_at
            )
        return None

    async def finish(self, reservation_id: str, actual: int | None, now: float) -> Outcome:
        with self._lock:
            record = self._records.get(reservation_id)
            if record is None:
                raise ReservationNotFound(f"no reservation {reservation_id!r}")
            if record.state in ("settled", "released"):
                return Outcome("duplicate", record.amount)
            late = record.state == "expired"
            charges = []
            for h in record.holds:
                counter = self._counters[(h.budget_id, h.period)]
                if not late:
                    counter[1] -= record.amount
                if actual is not None:
                    counter[0] += actual
                    charges.append(Charge(h.budget_id, h.period, counter[0] - actual, counter[0]))
            record.state = "released" if actual is None else "settled"
            return Outcome("late" if late else "applied", record.amount, tuple(charges))

    async def sweep(self, now: float) -> int:
        swept = 0
        with self._lock:
            for rid, record in list(self._records.items()):
                if record.state == "held" and record.expires_at <= now:
                    for h in record.holds:
                        self._counters[(h.budget_id, h.period)][1] -= record.amount
                    record.state = "expired"
                    swept += 1
                elif record.state != "held" and record.expires_at < now - self._keep:
                    del self._records[rid]
        return swept

    async def counters(self, keys: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        with self._lock:
            found = [self._counters.get(k, [0, 0]) for k in keys]
            return [(spent, reserved) for spent, reserved in found]

    async def record_alerts(self, alerts: Sequence[BudgetAlert]) -> list[BudgetAlert]:
        new = []
        with self._lock:
            for alert in alerts:
                key = (alert.budget_id, alert.period, threshold_key(alert.threshold))
                if key not in self._alerts:
                    self._alerts[key] = alert
                    new.append(alert)
        return new

    async def alerts(self) -> list[BudgetAlert]:
        with self._lock:
            return sorted(self._alerts.values(), key=alert_order)

    async def close(self) -> None:
        return None


def alert_order(alert: BudgetAlert) -> tuple[float, str, str, Decimal]:
    return (alert.ts, alert.budget_id, alert.period, alert.threshold)


# The SQL and Redis backends live in their own modules and are part of this module's API.
from podium.finops.budget_redis import RedisBudgetStore as RedisBudgetStore  # noqa: E402
from podium.finops.budget_sql import SQLBudgetStore as SQLBudgetStore  # noqa: E402
