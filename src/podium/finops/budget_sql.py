"""Budgets on SQL (SQLite, PostgreSQL): a guarded ``UPDATE`` whose row count decides, in the
same transaction as the reservation row. Re-exported by :mod:`podium.finops.budgets`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from podium.errors import ConfigError
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
from podium.finops.ledger import SQLRunner, open_engine
from podium.store import schema

_C = schema.budget_counters
_R = schema.budget_reservations
_A = schema.budget_alerts
_UNITS = _C.c.reserved.type
_KEY = (_C.c.budget_id == bindparam("b"), _C.c.period == bindparam("p"))
_X = bindparam("x", type_=_UNITS)
_HOLD_SOFT = update(_C).where(*_KEY).values(reserved=_C.c.reserved + _X)
_HOLD_HARD = _HOLD_SOFT.where(_C.c.spent + _C.c.reserved + _X <= bindparam("lim", type_=_UNITS))
_SPEND = (
    update(_C)
    .where(*_KEY)
    .values(
        reserved=_C.c.reserved - bindparam("held", type_=_UNITS),
        spent=_C.c.spent + bindparam("spend", type_=_UNITS),
    )
    .returning(_C.c.spent)
)
_COUNTER = select(_C.c.spent, _C.c.reserved).where(*_KEY)
_RECORD = select(_R.c.amount, _R.c.holds, _R.c.state).where(_R.c.reservation_id == bindparam("rid"))
_SQLITE_MAX_UNITS = 2**62
"""SQLite integers are 64-bit: limits and amounts stay below this (about 4.6 million USD)."""


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class SQLBudgetStore:
    """A :class:`BudgetBackend` in SQLite or PostgreSQL, atomic across processes.

    A reservation is one transaction: per counter (in ``(budget_id, period)`` order, so
    concurrent transactions never deadlock) a guarded ``UPDATE`` whose row count says whether the
    hold fits, then the reservation row. Finishing one locks its row (``SELECT … FOR UPDATE``;
    SQLite's ``BEGIN IMMEDIATE`` locks the database) and moves the amounts in the same transaction.

    Args:
        engine: An engine on a database migrated to revision ``0002`` or later.
        offload: Run database work in a worker thread (default: PostgreSQL yes, SQLite no).
        keep_finished_s: How long finished reservations are kept before the sweeper drops them.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        offload: bool | None = None,
        owned: bool = False,
        keep_finished_s: float = KEEP_FINISHED_S,
    ) -> None:
        self._db = SQLRunner(engine, offload=offload, owned=owned)
        insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        self._new_counter = insert(_C).on_conflict_do_nothing(
            index_elements=[_C.c.budget_id, _C.c.period]
        )
        # RETURNING says whether a row went in (psycopg reports no row count for INSERTs here)
        self._new_alert = (
            insert(_A)
            .on_conflict_do_nothing(index_elements=[_A.c.budget_id, _A.c.period, _A.c.threshold])
            .returning(_A.c.budget_id)
        )
        self._keep = keep_finished_s

    @classmethod
    async def open(cls, url: str, *, sqlite_synchronous: str = "NORMAL") -> SQLBudgetStore:
        """A store on its own engine to ``url``, with the schema migrated."""
        return cls(await open_engine(url, sqlite_synchronous=sqlite_synchronous), owned=True)

    async def reserve(self, reservation: Reservation, amount: int, now: float) -> Refusal | None:
        if self._db.dialect == "sqlite":
            for units in (amount, *(h.limit or 0 for h in reservation.holds)):
                if units >= _SQLITE_MAX_UNITS:
                    raise ConfigError("amounts over 4.6 million USD need PostgreSQL budgets")
        try:
            await self._db.run(self._reserve, reservation, amount, now)
        except _Refused as refused:
            return refused.refusal
        return None

    async def finish(self, reservation_id: str, actual: int | None, now: float) -> Outcome:
        return await self._db.run(self._finish, reservation_id, actual, now)

    async def sweep(self, now: float) -> int:
        return await self._db.run(self._sweep, now)

    async def counters(self, keys: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        return await self._db.run(self._counters, list(keys))

    async def record_alerts(self, alerts: Sequence[BudgetAlert]) -> list[BudgetAlert]:
        return await self._db.run(self._record_alerts, list(alerts))

    async def alerts(self) -> list[BudgetAlert]:
        return await self._db.run(self._alerts)

    async def close(self) -> None:
        await self._db.close()

    def _reserve(self, reservation: Reservation, amount: int, now: float) -> None:
        with self._db.transaction() as conn:
            for h in reservation.holds:
                key: dict[str, Any] = {"b": h.budget_id, "p": h.period, "x": amount}
                statement = _HOLD_SOFT
                if h.limit is not None:
                    key["lim"] = h.limit
                    statement = _HOLD_HARD
                if conn.execute(statement, key).rowcount == 0:
                    conn.execute(self._new_counter, _zero(h.budget_id, h.period))
                    if conn.execute(statement, key).rowcount == 0:
                        spent, reserved = conn.execute(_COUNTER, key).one()
                        raise _Refused(Refusal(h, int(spent), int(reserved)))
            conn.execute(
                _R.insert(),
                {
                    "reservation_id": reservation.id,
                    "request_id": reservation.request_id,
                    "amount": amount,
                    "holds": holds_json(reservation.holds),
                    "state": "held",
                    "created_at": now,
                    "expires_at": reservation.expires_at,
                },
            )

    def _finish(self, reservation_id: str, actual: int | None, now: float) -> Outcome:
        with self._db.transaction() as conn:
            row = conn.execute(_RECORD.with_for_update(), {"rid": reservation_id}).first()
            if row is None:
                raise ReservationNotFound(f"no reservation {reservation_id!r}")
            amount, holds, state = int(row.amount), json.loads(row.holds), row.state
            if state in ("settled", "released"):
                return Outcome("duplicate", amount)
            late = state == "expired"
            conn.execute(
                update(_R)
                .where(_R.c.reservation_id == reservation_id)
                .values(
                    state="released" if actual is None else "settled",
                    actual=actual,
                    finished_at=now,
                )
            )
            charges = []
            for budget_id, period in holds:
                params = {
                    "b": budget_id,
                    "p": period,
                    "held": 0 if late else amount,
                    "spend": actual or 0,
                }
                after = int(conn.execute(_SPEND, params).scalar_one())
                if actual is not None:
                    charges.append(Charge(budget_id, period, after - actual, after))
            return Outcome("late" if late else "applied", amount, tuple(charges))

    def _sweep(self, now: float) -> int:
        expired = select(_R.c.reservation_id).where(_R.c.state == "held", _R.c.expires_at <= now)
        with self._db.errors(), self._db.engine.connect() as conn:
            ids = list(conn.execute(expired.limit(1000)).scalars())
        swept = 0
        for rid in ids:  # one short transaction each, locking as _finish does
            with self._db.transaction() as conn:
                row = conn.execute(_RECORD.with_for_update(), {"rid": rid}).first()
                if row is None or row.state != "held":
                    continue
                conn.execute(update(_R).where(_R.c.reservation_id == rid).values(state="expired"))
                for budget_id, period in json.loads(row.holds):
                    params = {"b": budget_id, "p": period, "held": int(row.amount), "spend": 0}
                    conn.execute(_SPEND, params)
                swept += 1
        finished = _R.c.state.in_(("settled", "released", "expired"))
        with self._db.transaction() as conn:
            conn.execute(delete(_R).where(finished, _R.c.expires_at < now - self._keep))
        return swept

    def _counters(self, keys: list[tuple[str, str]]) -> list[tuple[int, int]]:
        found: dict[tuple[str, str], tuple[int, int]] = {}
        with self._db.errors(), self._db.engine.connect() as conn:
            for b, p in set(keys):
                row = conn.execute(_COUNTER, {"b": b, "p": p}).first()
                if row is not None:
                    found[(b, p)] = (int(row.spent), int(row.reserved))
        return [found.get(k, (0, 0)) for k in keys]

    def _record_alerts(self, alerts: list[BudgetAlert]) -> list[BudgetAlert]:
        new = []
        with self._db.transaction() as conn:
            for a in alerts:
                row = {
                    "budget_id": a.budget_id,
                    "period": a.period,
                    "threshold": threshold_key(a.threshold),
                    "limit_amount": a.limit,
                    "spent": a.spent,
                    "ts": a.ts,
                }
                if conn.execute(self._new_alert, row).first() is not None:
                    new.append(a)
        return new

    def _alerts(self) -> list[BudgetAlert]:
        with self._db.errors(), self._db.engine.connect() as conn:
            rows = conn.execute(select(_A)).all()
        alerts = [
            BudgetAlert(r.budget_id, r.period, Decimal(r.threshold), r.limit_amount, r.spent, r.ts)
            for r in rows
        ]
        return sorted(alerts, key=alert_order)


def _zero(budget_id: str, period: str) -> dict[str, Any]:
    return {"budget_id": budget_id, "period": period, "spent": 0, "reserved": 0}
