"""Budgets: one conformance suite over every backend (memory, SQLite, PostgreSQL, Redis), the
bank test (1,000 concurrent reservations against a small budget, from tasks and from threads),
and a Hypothesis state machine checked against a model across window boundaries."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine

from podium.errors import ConfigError, PodiumError
from podium.finops import (
    Attribution,
    Budget,
    BudgetBackend,
    BudgetExceeded,
    Budgets,
    Ledger,
    LedgerEntry,
    MemoryBudgetStore,
    MemoryLedger,
    RedisBudgetStore,
    Reservation,
    ReservationNotFound,
    ReservationRequest,
    SQLBudgetStore,
    SQLLedger,
    price,
    worst_case,
)
from podium.finops.budgets import Refusal, period_of, to_units
from podium.finops.ledger import open_engine
from podium.models.base import Usage
from podium.models.catalog import Catalog
from podium.testing import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"
START = datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()  # a Sunday, noon UTC
DAY = date(2025, 6, 1)
ML = Attribution(org="acme", team="ml", project="x", key_id="k1", use_case="chat")
TEAM = Budget("team-ml-daily", "team", "ml", Decimal("1.00"), "daily")
PROJECT = Budget("proj-x-weekly", "project", "x", Decimal("5"), "weekly")
ORG_SOFT = Budget(
    "org-acme-soft",
    "org",
    "acme",
    Decimal("2"),
    "monthly",
    hard=False,
    alert_at=(Decimal("0.5"), Decimal("1")),
)
D = Decimal


def truncate_finops(url: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE budget_alerts, budget_reservations, budget_counters, cost_ledger")


@dataclass
class Harness:
    """Opens backends (and ledgers) of one kind on one shared store."""

    kind: str
    url: str = ""
    prefix: str = ""
    memory: MemoryBudgetStore = field(default_factory=MemoryBudgetStore)
    memory_ledger: MemoryLedger = field(default_factory=MemoryLedger)
    engine: Engine | None = None
    prefixes: list[str] = field(default_factory=list)

    async def open(self, *, replica: bool = False) -> BudgetBackend:
        """A backend; ``replica``: with its own engine or client, as another process would."""
        if self.kind == "memory":
            return self.memory
        if self.kind == "redis":
            return RedisBudgetStore.from_url(REDIS_URL, prefix=self.prefix)
        if replica:
            return await SQLBudgetStore.open(self.url)
        if self.engine is None:
            self.engine = await open_engine(self.url)
        return SQLBudgetStore(self.engine)

    async def isolated(self, keep_finished_s: float) -> BudgetBackend:
        """A backend on emptied storage (each state machine example starts from nothing)."""
        if self.kind == "memory":
            return MemoryBudgetStore(keep_finished_s=keep_finished_s)
        if self.kind == "redis":
            self.prefixes.append(f"{{podium-test:{uuid.uuid4().hex}}}")
            return RedisBudgetStore.from_url(
                REDIS_URL, prefix=self.prefixes[-1], keep_finished_s=keep_finished_s
            )
        await self.open()
        assert self.engine is not None
        backend = SQLBudgetStore(self.engine, keep_finished_s=keep_finished_s)
        with self.engine.begin() as conn:
            for table in ("budget_alerts", "budget_reservations", "budget_counters"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        return backend

    async def ledger(self) -> Ledger:
        if self.kind in ("sqlite", "postgres"):
            return await SQLLedger.open(self.url)
        return self.memory_ledger


def redis_cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"]
)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    kind = request.param
    if kind == "sqlite":
        h = Harness(kind, url=f"sqlite:///{tmp_path / 'budgets.db'}")
    elif kind == "postgres":
        url = request.getfixturevalue("pg_url")
        truncate_finops(url)
        h = Harness(kind, url=url)
    elif kind == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis at 127.0.0.1:6379 is unreachable: {exc}")
        h = Harness(kind, prefix=f"{{podium-test:{uuid.uuid4().hex}}}")
    else:
        h = Harness(kind)
    try:
        yield h
    finally:
        if h.engine is not None:
            h.engine.dispose()
        for prefix in (h.prefix, *h.prefixes) if kind == "redis" else ():
            redis_cleanup(prefix)


@pytest.fixture
async def backend(harness: Harness) -> AsyncIterator[BudgetBackend]:
    b = await harness.open()
    yield b
    await b.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def ask(
    amount: str | Decimal, who: Attribution = ML, *, ttl_s: float | None = None
) -> ReservationRequest:
    return ReservationRequest(f"req-{uuid.uuid4().hex[:8]}", who, D(amount), ttl_s=ttl_s)


async def counters(budgets: Budgets) -> dict[str, tuple[Decimal, Decimal]]:
    return {s.budget.id: (s.spent, s.reserved) for s in await budgets.status()}


# -- conformance ----------------------------------------------------------------------------------


async def test_reserve_holds_on_every_matching_budget_then_settle_charges(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM, PROJECT, ORG_SOFT], clock=clock)
    r = await budgets.reserve(ask("0.30"))

    assert r.amount == D("0.30")
    assert r.expires_at == START + 900
    assert [(h.budget_id, h.period, h.limit) for h in r.holds] == [
        ("org-acme-soft", "2025-06-01", None),
        ("proj-x-weekly", "2025-05-26", to_units(D(5))),
        ("team-ml-daily", "2025-06-01", to_units(D(1))),
    ]
    held = (D(0), D("0.30"))
    assert await counters(budgets) == {b.id: held for b in (TEAM, PROJECT, ORG_SOFT)}

    settled = await budgets.settle(r, D("0.1234567890123"))

    assert (settled.applied, settled.late, settled.reserved) == (True, False, D("0.30"))
    assert settled.actual == D("0.1234567890123")
    spent = (D("0.123456789013"), D(0))  # counters hold whole picodollars, rounded up
    assert await counters(budgets) == {b.id: spent for b in (TEAM, PROJECT, ORG_SOFT)}


async def test_a_refusal_holds_nothing_and_says_why(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM, PROJECT], clock=clock)
    await budgets.reserve(ask("0.70"))

    with pytest.raises(BudgetExceeded) as caught:
        await budgets.reserve(ask("0.40"))

    e = caught.value
    assert isinstance(e, PodiumError)
    assert not e.retryable
    assert (e.budget_id, e.scope, e.value) == ("team-ml-daily", "team", "ml")
    assert (e.limit, e.spent, e.reserved, e.requested) == (D("1.00"), D(0), D("0.7"), D("0.40"))
    assert e.window_end == datetime(2025, 6, 2, tzinfo=UTC)
    assert str(e) == (
        "budget 'team-ml-daily' (team 'ml', daily) would be exceeded: this call may cost up to "
        "$0.4 and $0 is spent, $0.7 reserved by calls in flight, of a $1 limit; it resets "
        "at 2025-06-02T00:00:00Z"
    )
    # the project budget (checked first, it had room) holds nothing of the refused call
    assert await counters(budgets) == {TEAM.id: (0, D("0.7")), PROJECT.id: (0, D("0.7"))}


async def test_the_limit_is_exact_to_the_picodollar(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    await budgets.settle(await budgets.reserve(ask("0.4")), D("0.4"))
    fits = await budgets.reserve(ask("0.6"))  # exactly up to the limit
    await budgets.release(fits)
    for over in (
        "0.600000000001",
        "0.6000000000001",
    ):  # one picodollar over; a sub-picodollar rounds up
        with pytest.raises(BudgetExceeded):
            await budgets.reserve(ask(over))
    assert (await budgets.reserve(ask("0.6"))).amount == D("0.6")


async def test_large_amounts_stay_exact(backend: BudgetBackend, clock: FakeClock) -> None:
    """50,000 USD is 5 * 10^16 picodollars: past 2^53, where a double (Lua's number) rounds."""
    big = Budget("org-big", "org", "acme", D("50000"), "total")
    budgets = Budgets(backend, [big], clock=clock)
    first = await budgets.reserve(ask("30000.000000000001"))
    with pytest.raises(BudgetExceeded):
        await budgets.reserve(ask("20000"))  # one picodollar too many
    await budgets.reserve(ask("19999.999999999999"))
    assert await counters(budgets) == {big.id: (0, D(50000))}
    await budgets.settle(first, D("29999.999999999999"))
    assert await counters(budgets) == {big.id: (D("29999.999999999999"), D("19999.999999999999"))}


async def test_settle_and_release_are_idempotent(backend: BudgetBackend, clock: FakeClock) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    r = await budgets.reserve(ask("0.5"))
    assert (await budgets.settle(r, D("0.2"))).applied
    again = await budgets.settle(r, D("0.3"))
    assert (again.applied, again.reserved) == (False, D("0.5"))
    assert not await budgets.release(r)
    assert not (await budgets.settle(r.id, D("0.3"))).applied
    r2 = await budgets.reserve(ask("0.5"))
    assert await budgets.release(r2.id)
    assert not await budgets.release(r2)
    assert not (await budgets.settle(r2, D("0.1"))).applied
    assert await counters(budgets) == {TEAM.id: (D("0.2"), D(0))}
    with pytest.raises(ReservationNotFound):
        await budgets.settle("no-such-reservation", D(0))
    with pytest.raises(ReservationNotFound):
        await budgets.release("no-such-reservation")


async def test_a_call_no_budget_covers_holds_nothing(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    r = await budgets.reserve(ask("100", Attribution(team="research")))
    assert r.holds == ()
    assert (await budgets.settle(r, D("99"))).applied
    assert await counters(budgets) == {TEAM.id: (0, 0)}
    with pytest.raises(ReservationNotFound):  # nothing was stored
        await budgets.release(r.id)


async def test_every_scope_follows_its_attribution_field(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    key = Budget("key-k1", "key", "k1", D("1"), "total")
    use = Budget("use-chat", "use_case", "chat", D("1"), "total")
    budgets = Budgets(backend, [key, use], clock=clock)
    assert budgets.matching(ML) == [key, use]
    assert budgets.matching(Attribution(key_id="k2", use_case="chat")) == [use]
    r = await budgets.reserve(ask("0.25"))
    assert [h.period for h in r.holds] == ["total", "total"]


async def test_soft_budgets_never_refuse_and_alerts_are_recorded_once(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    hard = Budget("team-ml-alerting", "team", "ml", D("10"), "daily", alert_at=(D("0.8"),))
    budgets = Budgets(backend, [ORG_SOFT, hard], clock=clock)

    first = await budgets.settle(await budgets.reserve(ask("1.5")), D("1.5"))
    assert [(a.budget_id, a.threshold, a.spent) for a in first.alerts] == [
        ("org-acme-soft", D("0.5"), D("1.5"))
    ]
    clock.advance(1)
    second = await budgets.settle(await budgets.reserve(ask("8")), D("7"))  # soft: over its limit
    assert [(a.budget_id, a.threshold, a.spent) for a in second.alerts] == [
        ("org-acme-soft", D("1"), D("8.5")),
        ("team-ml-alerting", D("0.8"), D("8.5")),
    ]
    third = await budgets.settle(await budgets.reserve(ask("0.1")), D("0.1"))
    assert third.alerts == ()

    recorded = await budgets.alerts()
    assert [(a.budget_id, a.period, a.threshold, a.limit, a.spent) for a in recorded] == [
        ("org-acme-soft", "2025-06-01", D("0.5"), D("2"), D("1.5")),
        ("org-acme-soft", "2025-06-01", D("1"), D("2"), D("8.5")),
        ("team-ml-alerting", "2025-06-01", D("0.8"), D("10"), D("8.5")),
    ]
    assert recorded[0].ts == START
    assert recorded[1].ts == START + 1
    assert await backend.record_alerts(recorded) == []  # each threshold once per window


def test_windows_follow_the_utc_calendar() -> None:
    def at(*args: int) -> float:
        return datetime(*args, tzinfo=UTC).timestamp()

    sunday_late = at(2025, 6, 1, 23, 59, 59)
    assert period_of("daily", sunday_late).key == "2025-06-01"
    assert period_of("daily", at(2025, 6, 2)).key == "2025-06-02"
    assert period_of("weekly", sunday_late).key == "2025-05-26"
    assert period_of("weekly", at(2025, 6, 2)).key == "2025-06-02"
    assert period_of("weekly", sunday_late).end == datetime(2025, 6, 2, tzinfo=UTC)
    december = period_of("monthly", at(2025, 12, 31, 23))
    assert (december.key, december.end) == ("2025-12-01", datetime(2026, 1, 1, tzinfo=UTC))
    assert period_of("monthly", at(2024, 2, 29)).end == datetime(2024, 3, 1, tzinfo=UTC)
    assert (period_of("total", sunday_late).key, period_of("total", sunday_late).end) == (
        "total",
        None,
    )


async def test_a_new_window_starts_empty_and_late_settles_charge_their_own_window(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM, PROJECT], clock=clock)
    await budgets.settle(await budgets.reserve(ask("0.9")), D("0.9"))
    pending = await budgets.reserve(ask("0.1"))
    with pytest.raises(BudgetExceeded):
        await budgets.reserve(ask("0.01"))

    clock.advance(12 * 3600)  # Monday 00:00 UTC: a new day and a new week

    assert {s.budget.id: s.period.key for s in await budgets.status()} == {
        TEAM.id: "2025-06-02",
        PROJECT.id: "2025-06-02",
    }
    assert await counters(budgets) == {TEAM.id: (0, 0), PROJECT.id: (0, 0)}
    await budgets.reserve(ask("1.00"))
    await budgets.settle(pending, D("0.05"))  # charged to the window it was reserved in
    old = await backend.counters([(TEAM.id, "2025-06-01"), (PROJECT.id, "2025-05-26")])
    assert old == [(to_units(D("0.95")), 0)] * 2
    assert await counters(budgets) == {TEAM.id: (0, D(1)), PROJECT.id: (0, D(1))}


async def test_expired_holds_are_swept_and_a_late_settle_still_charges(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    stale = await budgets.reserve(ask("0.8", ttl_s=60))
    clock.advance(60)
    assert await budgets.sweep() == 1
    assert await budgets.sweep() == 0
    assert await counters(budgets) == {TEAM.id: (0, 0)}

    late = await budgets.settle(stale, D("0.3"))

    assert (late.applied, late.late) == (True, True)
    assert await counters(budgets) == {TEAM.id: (D("0.3"), 0)}
    # a refusal first sweeps expired holds, then tries again
    await budgets.reserve(ask("0.7", ttl_s=10))
    clock.advance(11)
    assert (await budgets.reserve(ask("0.5"))).amount == D("0.5")
    assert await counters(budgets) == {TEAM.id: (D("0.3"), D("0.5"))}


async def test_finished_reservations_are_forgotten_after_the_keep_period(
    harness: Harness, clock: FakeClock
) -> None:
    backend = await harness.isolated(keep_finished_s=3600)
    try:
        budgets = Budgets(backend, [TEAM], clock=clock, ttl_s=60)
        done = await budgets.reserve(ask("0.1"))
        await budgets.settle(done, D("0.1"))
        abandoned = await budgets.reserve(ask("0.2"))
        clock.advance(1800)
        assert await budgets.sweep() == 1  # the abandoned hold
        assert not (await budgets.settle(done, D("0.1"))).applied  # still remembered
        if harness.kind == "redis":  # Redis forgets by its own clock: a time to live
            client = redis.Redis.from_url(REDIS_URL)
            ttls = [client.ttl(f"{harness.prefixes[-1]}:r:{r.id}") for r in (done, abandoned)]
            client.close()
            assert all(0 < t <= 3600 for t in ttls)
            return
        clock.advance(3600)
        await budgets.sweep()
        for gone in (done, abandoned):
            with pytest.raises(ReservationNotFound):
                await budgets.settle(gone, D("0.1"))
        assert await counters(budgets) == {TEAM.id: (D("0.1"), 0)}
    finally:
        await backend.close()


async def test_an_overrun_is_charged_and_closes_the_budget(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    await budgets.settle(await budgets.reserve(ask("0.5")), D("1.2"))
    assert await counters(budgets) == {TEAM.id: (D("1.2"), 0)}
    with pytest.raises(BudgetExceeded):
        await budgets.reserve(ask("0"))


async def test_bad_inputs_are_refused(backend: BudgetBackend, clock: FakeClock) -> None:
    budgets = Budgets(backend, [TEAM], clock=clock)
    for bad in (D("-0.01"), 0.5, D("NaN")):
        with pytest.raises(ValueError, match="finite Decimal"):
            await budgets.reserve(ReservationRequest("r", ML, bad))  # type: ignore[arg-type]
    r = await budgets.reserve(ask("0.1"))
    with pytest.raises(ValueError, match="finite Decimal"):
        await budgets.settle(r, D(-1))
    with pytest.raises(ConfigError, match="two budgets"):
        Budgets(backend, [TEAM, TEAM], clock=clock)
    with pytest.raises(ConfigError, match="limit must be a Decimal"):
        Budget("b", "team", "ml", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scope must be one of"):
        Budget("b", "person", "ml", D(1))  # type: ignore[arg-type]


# -- the bank test --------------------------------------------------------------------------------

MINI = Catalog.builtin().get("openai/gpt-4o-mini")
SMALL = Budget("team-ml-small", "team", "ml", D("0.10"), "daily")
SMALL_PROJECT = Budget("proj-x-small", "project", "x", D("0.11"), "weekly")
BANK = [SMALL, SMALL_PROJECT]  # every request holds on both, in one atomic step


@dataclass
class Bank:
    """Acknowledged spend, refusals and provider calls of a run of concurrent requests."""

    acknowledged: list[Decimal] = field(default_factory=list)
    refused: int = 0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


async def requests(
    budgets: Budgets, ledger: Ledger, bank: Bank, n: int, tag: str, clock: FakeClock
) -> None:
    rng = random.Random(tag)
    plans = [(rng.randint(100, 4000), rng.randint(16, 1024), rng.random()) for _ in range(n)]

    async def one(i: int, prompt: int, max_out: int, luck: float) -> None:
        request_id = f"{tag}-{i}"
        worst = worst_case(MINI, prompt, max_out, DAY)
        try:
            reservation = await budgets.reserve(ReservationRequest(request_id, ML, worst))
        except BudgetExceeded:
            with bank.lock:
                bank.refused += 1
            return
        with bank.lock:
            bank.calls += 1  # the provider is reached only with a reservation in hand
        await asyncio.sleep(0)
        if luck < 0.1:  # the call failed: it cost nothing
            assert await budgets.release(reservation)
            return
        cached = int(prompt * luck) // 2
        usage = Usage(
            input_tokens=prompt - cached,
            cache_read_tokens=cached,
            output_tokens=int(max_out * luck),
        )
        cost = price(MINI, usage, DAY).total
        assert (await budgets.settle(reservation, cost)).applied
        entry = LedgerEntry(clock.now(), request_id, MINI.name, "openai", usage, cost, ML)
        assert await ledger.record(entry)
        with bank.lock:
            bank.acknowledged.append(cost)

    await asyncio.gather(*(one(i, *plan) for i, plan in enumerate(plans)))


async def check_bank(harness: Harness, bank: Bank, clock: FakeClock, n: int) -> None:
    backend = await harness.open()
    try:
        statuses = await Budgets(backend, BANK, clock=clock).status()
    finally:
        await backend.close()
    ledger = await harness.ledger()
    try:
        rows = await ledger.rollup(())
    finally:
        await ledger.close()
    acknowledged = sum(bank.acknowledged, D(0))
    for status in statuses:
        assert status.spent == acknowledged == rows[0].cost  # exact, to the last digit
        assert status.spent <= status.budget.limit
        assert status.reserved == 0
    assert rows[0].calls == len(bank.acknowledged)
    assert bank.calls + bank.refused == n  # every request was either admitted or refused
    assert bank.refused >= 100
    assert bank.calls >= 50
    print(f"{harness.kind}: {bank.calls} admitted, {bank.refused} refused, spent ${acknowledged}")


async def test_a_thousand_concurrent_requests_never_overspend(
    harness: Harness, backend: BudgetBackend, clock: FakeClock
) -> None:
    budgets = Budgets(backend, BANK, clock=clock)
    ledger = await harness.ledger()
    bank = Bank()
    try:
        await requests(budgets, ledger, bank, 1000, "tasks", clock)
    finally:
        await ledger.close()
    await check_bank(harness, bank, clock, 1000)


class CheckThenAct(MemoryBudgetStore):
    """The admission RELIABILITY.md measured overspending: read the counters, yield, then hold."""

    async def reserve(self, reservation: Reservation, amount: int, now: float) -> Refusal | None:
        keys = [(h.budget_id, h.period) for h in reservation.holds]
        for h, (spent, reserved) in zip(reservation.holds, await self.counters(keys), strict=True):
            if h.limit is not None and spent + reserved + amount > h.limit:
                return Refusal(h, spent, reserved)
        await asyncio.sleep(0)  # another request checks in between
        unguarded = tuple(dataclasses.replace(h, limit=None) for h in reservation.holds)
        return await super().reserve(dataclasses.replace(reservation, holds=unguarded), amount, now)


async def test_the_bank_test_catches_check_then_act(clock: FakeClock) -> None:
    """The same run against a non-atomic backend overspends: the bank test can fail."""
    budgets = Budgets(CheckThenAct(), BANK, clock=clock)
    bank = Bank()
    await requests(budgets, MemoryLedger(), bank, 1000, "racy", clock)
    assert all(s.spent > s.budget.limit for s in await budgets.status())


async def test_a_thousand_requests_from_four_replicas_never_overspend(
    harness: Harness, clock: FakeClock
) -> None:
    if harness.kind == "memory":
        pytest.skip("one process's memory is not shared by replicas")
    bank = Bank()
    errors: list[BaseException] = []

    async def replica(k: int) -> None:
        backend = await harness.open(replica=True)  # its own engine or client
        ledger = await harness.ledger()
        try:
            await requests(Budgets(backend, BANK, clock=clock), ledger, bank, 250, f"r{k}", clock)
        finally:
            await ledger.close()
            await backend.close()

    def run(k: int) -> None:
        try:
            asyncio.run(replica(k))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    await check_bank(harness, bank, clock, 1000)


# -- the state machine ----------------------------------------------------------------------------

WHO = [
    Attribution(team="a", project="p", org="o"),
    Attribution(team="a"),
    Attribution(project="p", org="o"),
    Attribution(org="o"),
    Attribution(team="z"),
]


@dataclass
class Held:
    amount: Decimal
    keys: list[tuple[str, str]]
    expires_at: float
    state: str = "held"


def machine(harness: Harness) -> type[RuleBasedStateMachine]:
    class BudgetMachine(RuleBasedStateMachine):
        """Reserve, settle, release, sweep and let time pass; compare with a model."""

        reservations = Bundle("reservations")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            tag = uuid.uuid4().hex[:8]
            self.defs = [
                Budget(f"{tag}-team", "team", "a", D("1"), "daily"),
                Budget(f"{tag}-proj", "project", "p", D("1.5"), "weekly"),
                Budget(f"{tag}-org", "org", "o", D("2"), "monthly", hard=False),
            ]
            self.clock = FakeClock(START - 3600)
            # finished reservations are kept longer than any run lasts (purging is tested apart)
            self.backend = self.run(harness.isolated(keep_finished_s=10 * 365 * 86400))
            self.budgets = Budgets(self.backend, self.defs, clock=self.clock, ttl_s=7200)
            self.spent: dict[tuple[str, str], Decimal] = {}
            self.held: dict[tuple[str, str], Decimal] = {}
            self.late: dict[tuple[str, str], Decimal] = {}
            self.model: dict[str, Held] = {}

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.run(self.backend.close())
            self.loop.close()

        def keys(self, who: Attribution) -> list[tuple[Budget, tuple[str, str]]]:
            now = self.clock.now()
            chosen = sorted((b for b in self.defs if b.applies_to(who)), key=lambda b: b.id)
            return [(b, (b.id, period_of(b.window, now).key)) for b in chosen]

        def refusing(self, amount: Decimal, who: Attribution) -> str | None:
            for b, key in self.keys(who):
                total = self.spent.get(key, D(0)) + self.held.get(key, D(0)) + amount
                if b.hard and total > b.limit:
                    return b.id
            return None

        def expire(self) -> int:
            count = 0
            for h in self.model.values():
                if h.state == "held" and h.expires_at <= self.clock.now():
                    h.state = "expired"
                    for key in h.keys:
                        self.held[key] -= h.amount
                    count += 1
            return count

        @rule(target=reservations, cents=st.integers(0, 120), who=st.sampled_from(WHO))
        def reserve(self, cents: int, who: Attribution) -> Any:
            amount = D(cents) / 100
            expected = self.refusing(amount, who)
            if expected is not None and self.expire():
                expected = self.refusing(amount, who)
            try:
                r = self.run(self.budgets.reserve(ReservationRequest("r", who, amount)))
            except BudgetExceeded as e:
                refused_by = e.budget_id
            else:
                refused_by = None
            assert refused_by == expected
            if refused_by is not None:
                return multiple()
            keys = [key for _, key in self.keys(who)]
            assert [(h.budget_id, h.period) for h in r.holds] == keys
            for key in keys:
                self.held[key] = self.held.get(key, D(0)) + amount
            if keys:  # a reservation no budget covers is not stored
                self.model[r.id] = Held(amount, keys, r.expires_at)
            return r

        @rule(r=reservations, percent=st.integers(0, 100))
        def settle(self, r: Reservation, percent: int) -> None:
            actual = r.amount * percent / 100
            s = self.run(self.budgets.settle(r, actual))
            h = self.model.get(r.id)
            if h is None:  # a reservation no budget covered
                assert s.applied
                assert not r.holds
                return
            assert (s.applied, s.late) == (h.state in ("held", "expired"), h.state == "expired")
            if s.applied:
                for key in h.keys:
                    self.spent[key] = self.spent.get(key, D(0)) + actual
                    if h.state == "held":
                        self.held[key] -= h.amount
                    else:  # its hold was swept: the spend is charged all the same
                        self.late[key] = self.late.get(key, D(0)) + actual
                h.state = "settled"

        @rule(r=reservations)
        def release(self, r: Reservation) -> None:
            released = self.run(self.budgets.release(r))
            h = self.model.get(r.id)
            if h is None:
                assert released
                return
            assert released == (h.state in ("held", "expired"))
            if h.state == "held":
                for key in h.keys:
                    self.held[key] -= h.amount
            if released:
                h.state = "released"

        @rule(seconds=st.sampled_from([60, 3600, 5 * 3600, 86400, 3 * 86400]))
        def advance(self, seconds: int) -> None:
            self.clock.advance(seconds)

        @rule()
        def sweep(self) -> None:
            assert self.run(self.budgets.sweep()) == self.expire()

        @invariant()
        def counters_match_the_model(self) -> None:
            touched = sorted(set(self.spent) | set(self.held))
            got = self.run(self.backend.counters(touched))
            for key, (spent, reserved) in zip(touched, got, strict=True):
                assert (spent, reserved) == (
                    to_units(self.spent.get(key, D(0))),
                    to_units(self.held.get(key, D(0))),
                ), key
                assert spent >= 0
                assert reserved >= 0
            for status in self.run(self.budgets.status()):
                assert status.spent >= 0
                assert status.reserved >= 0
                key = (status.budget.id, status.period.key)
                if status.budget.hard:
                    # only a call settled after its hold expired (a stalled caller) can push a
                    # hard budget past its limit, and by no more than it cost
                    late = self.late.get(key, D(0))
                    assert status.spent + status.reserved <= status.budget.limit + late
                # a window nothing touched yet starts at zero
                assert status.spent == self.spent.get(key, D(0))

    return BudgetMachine


def test_budget_state_machine(harness: Harness) -> None:
    examples = {"memory": 200, "sqlite": 80, "redis": 80, "postgres": 40}[harness.kind]
    run_state_machine_as_test(
        machine(harness),
        settings=settings(max_examples=examples, stateful_step_count=30, deadline=None),
    )
