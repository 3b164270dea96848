"""The cost ledger: one append-only, lean row per priced model call.

A row holds what cannot be looked up later — when, which request, the model that served and the
one asked for, the usage counts, the exact cost and who to charge — and nothing the catalog
already knows (prices, context windows). Rows are never updated; recording the same
``(request_id, attempt)`` twice keeps the first row, so the record stage can be retried safely.

Two backends behind :class:`Ledger`: :class:`MemoryLedger` and :class:`SQLLedger` (SQLite or
PostgreSQL through a SQLAlchemy engine — the store's, or one it opens). Both answer
:meth:`Ledger.rollup`, a GROUP BY over any dimensions with exact ``Decimal`` sums: PostgreSQL sums
its NUMERIC column; SQLite, which has no decimal type, sums the fixed-point text with an exact
aggregate registered on the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, get_args

from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from podium.errors import StoreError
from podium.models.base import Usage
from podium.store import schema
from podium.store.migrations import upgrade_to_head
from podium.store.sql import create_store_engine, store_url

_P = ParamSpec("_P")
_T = TypeVar("_T")

EXACT = Context(prec=80)
"""Arithmetic context for sums of money: wide enough that no realistic sum rounds."""

Dimension = Literal[
    "org", "team", "project", "key", "use_case", "model", "provider", "routed_from", "day", "month"
]
"""What spend can be grouped or filtered by (``key`` is the API key id; ``month`` is
``YYYY-MM`` of the UTC day)."""
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)


def utc_day(ts: float) -> date:
    """The UTC calendar day of a timestamp (seconds since the epoch)."""
    global _last_day
    lo, hi, day = _last_day
    if lo <= ts < hi:  # every call of the day asks for the same one (~3 µs saved per ask)
        return day
    day = datetime.fromtimestamp(ts, UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    _last_day = (start, start + 86400.0, day)
    return day


_last_day: tuple[float, float, date] = (0.0, 0.0, date.min)
"""The day :func:`utc_day` answered last: its first second, the next day's first, the date."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a call is charged to, and what it was for. Every field is optional."""

    org: str | None = None
    team: str | None = None
    project: str | None = None
    key_id: str | None = None
    """The API key's id (never the key)."""
    use_case: str | None = None
    run_id: str | None = None
    """The workflow run that made the call, if any."""
    step: str | None = None
    """The step's path inside the run."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One priced model call.

    Attributes:
        ts: When the call finished (seconds since the epoch); its UTC day is the row's ``day``.
        request_id: The gateway's request id.
        model: The catalog name of the model that served (or would have served a cache hit).
        provider: The provider that served.
        usage: What the call consumed.
        cost: What it cost (zero for a cache hit).
        attribution: Who is charged.
        cache_hit: Answered from Podium's cache, without calling a model.
        routed_from: The model or alias the client asked for, when routing served another.
        baseline_cost: What the call would have cost without routing or caching (the requested
            model's price, or the cached call's price), when the pipeline knows it; reports
            re-price the usage when it is ``None``.
        attempt: Distinguishes several billed calls for one request (e.g. a stream the provider
            billed before it broke, then its fallback).
    """

    ts: float
    request_id: str
    model: str
    provider: str
    usage: Usage
    cost: Decimal
    attribution: Attribution = field(default_factory=Attribution)
    cache_hit: bool = False
    routed_from: str | None = None
    baseline_cost: Decimal | None = None
    attempt: int = 0

    @property
    def day(self) -> date:
        """The UTC day of the call."""
        return utc_day(self.ts)

    def value(self, dimension: Dimension) -> str | None:
        """This row's value for a dimension."""
        a = self.attribution
        values: dict[str, str | None] = {
            "org": a.org,
            "team": a.team,
            "project": a.project,
            "key": a.key_id,
            "use_case": a.use_case,
            "model": self.model,
            "provider": self.provider,
            "routed_from": self.routed_from,
        }
        if dimension == "day":
            return self.day.isoformat()
        if dimension == "month":
            return self.day.isoformat()[:7]
        return values[dimension]


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """Which rows: a half-open range of UTC days and equality filters.

    Attributes:
        start: First day included (``None``: from the beginning).
        end: First day excluded (``None``: to the end).
        where: Dimension → value every selected row must have.
    """

    start: date | None = None
    end: date | None = None
    where: Mapping[Dimension, str] = field(default_factory=dict)

    def matches(self, entry: LedgerEntry) -> bool:
        day = entry.day
        if self.start is not None and day < self.start:
            return False
        if self.end is not None and day >= self.end:
            return False
        return all(entry.value(d) == v for d, v in self.where.items())


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend of one group.

    Attributes:
        group: The group's value of each dimension asked for, in order.
        cost: Exact sum of the rows' costs.
        calls: Number of ledger rows.
        cache_hits: Rows answered from the cache.
    """

    group: tuple[str | None, ...]
    cost: Decimal
    calls: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hits: int = 0


_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def _group_order(row: SpendRow) -> tuple[tuple[bool, str], ...]:
    """Groups sorted by code point, ``None`` first, whatever the database's collation."""
    return tuple((v is not None, v or "") for v in row.group)


class Ledger(Protocol):
    """Where priced calls are recorded and summed. Every backend passes the same tests."""

    async def record(self, entry: LedgerEntry) -> bool:
        """Append a row. Returns ``False`` (and keeps the first) when this
        ``(request_id, attempt)`` is already recorded."""
        ...

    async def record_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Append rows in one transaction (the call path's batches); how many went in."""
        ...

    async def entries(self, query: LedgerQuery | None = None) -> list[LedgerEntry]:
        """Rows matching ``query``, oldest first."""
        ...

    async def rollup(
        self, by: Sequence[Dimension], query: LedgerQuery | None = None
    ) -> list[SpendRow]:
        """Spend grouped by ``by`` (one row per group, sorted), over rows matching ``query``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryLedger:
    """A :class:`Ledger` in a list: for tests and single-process experiments."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], LedgerEntry] = {}

    async def record(self, entry: LedgerEntry) -> bool:
        _check(entry)
        key = (entry.request_id, entry.attempt)
        if key in self._rows:
            return False
        self._rows[key] = entry
        return True

    async def record_many(self, entries: Sequence[LedgerEntry]) -> int:
        return sum([await self.record(e) for e in entries])

    async def entries(self, query: LedgerQuery | None = None) -> list[LedgerEntry]:
        q = query or LedgerQuery()
        rows = [e for e in self._rows.values() if q.matches(e)]
        return sorted(rows, key=lambda e: (e.ts, e.request_id, e.attempt))

    async def rollup(
        self, by: Sequence[Dimension], query: LedgerQuery | None = None
    ) -> list[SpendRow]:
        _check_dimensions(by)
        groups: dict[tuple[str | None, ...], list[LedgerEntry]] = {}
        for entry in await self.entries(query):
            groups.setdefault(tuple(entry.value(d) for d in by), []).append(entry)
        rows = []
        for group, entries in groups.items():
            cost = Decimal(0)
            for e in entries:
                cost = EXACT.add(cost, e.cost)
            tokens = {f: sum(getattr(e.usage, f) for e in entries) for f in _TOKEN_FIELDS}
            hits = sum(e.cache_hit for e in entries)
            rows.append(SpendRow(group, cost, len(entries), **tokens, cache_hits=hits))
        return sorted(rows, key=_group_order)

    async def close(self) -> None:
        return None


def _check(entry: LedgerEntry) -> None:
    if not isinstance(entry.cost, Decimal) or not entry.cost.is_finite():
        raise TypeError(f"a ledger cost must be a finite Decimal, not {entry.cost!r}")
    if entry.baseline_cost is not None and not isinstance(entry.baseline_cost, Decimal):
        raise TypeError(f"a baseline cost must be a Decimal, not {entry.baseline_cost!r}")


def _check_dimensions(by: Sequence[Dimension]) -> None:
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension {unknown[0]!r}; use one of {', '.join(DIMENSIONS)}")


# -- SQL ------------------------------------------------------------------------------------------


class SQLRunner:
    """An engine plus the rule the SQL store follows: SQLite work runs inline on the event loop
    (it is local and fast), PostgreSQL work in a worker thread. Database errors become
    :class:`~podium.errors.StoreError` (``retryable`` for lost connections and lock timeouts)."""

    def __init__(self, engine: Engine, *, offload: bool | None = None, owned: bool = False) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._offload = offload if offload is not None else self.dialect != "sqlite"
        self._owned = owned
        self._closed = False

    @property
    def offloaded(self) -> bool:
        """Whether database work runs in a worker thread (else inline, on the event loop)."""
        return self._offload

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._closed:
            raise StoreError("the store is closed")
        if self._offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock first (``BEGIN IMMEDIATE``),
        so a transaction that reads before it writes never fails to upgrade its lock."""
        with self.errors(), self.engine.connect() as conn, conn.begin():
            if self.dialect == "sqlite":
                # pysqlite begins only before DML: take the write lock now
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise self.store_error(exc) from exc

    def store_error(self, exc: BaseException) -> StoreError:
        """A database error (SQLAlchemy's, or the driver's own from a raw DBAPI connection) as
        :class:`StoreError`, ``retryable`` for the driver's ``OperationalError`` (a lost
        connection, a lock timeout)."""
        orig = getattr(exc, "orig", None) or exc
        error = StoreError(f"store error: {type(orig).__name__}: {orig}")
        error.retryable = isinstance(orig, self.engine.dialect.loaded_dbapi.OperationalError)
        return error

    async def close(self) -> None:
        self._closed = True
        if self._owned:
            self.engine.dispose()


async def open_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine on a store URL, its schema migrated to the newest revision."""
    engine = create_store_engine(store_url(url), sqlite_synchronous=sqlite_synchronous)
    try:
        await asyncio.to_thread(upgrade_to_head, engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


class _DecimalSum:
    """SQLite aggregate ``podium_dsum(text)``: the exact sum of fixed-point texts, as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return format(self.total, "f")


_T_LEDGER = schema.cost_ledger
_COLUMNS: dict[str, ColumnElement[Any]] = {
    "org": _T_LEDGER.c.org,
    "team": _T_LEDGER.c.team,
    "project": _T_LEDGER.c.project,
    "key": _T_LEDGER.c.key_id,
    "use_case": _T_LEDGER.c.use_case,
    "model": _T_LEDGER.c.model,
    "provider": _T_LEDGER.c.provider,
    "routed_from": _T_LEDGER.c.routed_from,
    "day": _T_LEDGER.c.day,
    "month": func.substr(_T_LEDGER.c.day, 1, 7),
}
_USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Usage))
_ATTRIBUTION_FIELDS = tuple(f.name for f in dataclasses.fields(Attribution))


def _row(entry: LedgerEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": entry.request_id,
        "attempt": entry.attempt,
        "ts": entry.ts,
        "day": entry.day.isoformat(),
        "model": entry.model,
        "provider": entry.provider,
        "routed_from": entry.routed_from,
        "cost": entry.cost,
        "baseline_cost": entry.baseline_cost,
        "cache_hit": entry.cache_hit,
    }
    row.update({f: getattr(entry.usage, f) for f in _USAGE_FIELDS})
    row.update({f: getattr(entry.attribution, f) for f in _ATTRIBUTION_FIELDS})
    return row


def _entry(row: Any) -> LedgerEntry:
    m = row._mapping
    return LedgerEntry(
        ts=m["ts"],
        request_id=m["request_id"],
        model=m["model"],
        provider=m["provider"],
        usage=Usage(**{f: m[f] for f in _USAGE_FIELDS}),
        cost=m["cost"],
        attribution=Attribution(**{f: m[f] for f in _ATTRIBUTION_FIELDS}),
        cache_hit=bool(m["cache_hit"]),
        routed_from=m["routed_from"],
        baseline_cost=m["baseline_cost"],
        attempt=m["attempt"],
    )


class SQLLedger:
    """A :class:`Ledger` in the ``cost_ledger`` table (SQLite or PostgreSQL).

    Args:
        engine: An engine on a database migrated to revision ``0002`` or later (the store's
            engine, or one from :meth:`open`).
        offload: Run database work in a worker thread (default: PostgreSQL yes, SQLite no).
    """

    def __init__(self, engine: Engine, *, offload: bool | None = None, owned: bool = False) -> None:
        self._db = SQLRunner(engine, offload=offload, owned=owned)
        insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        # RETURNING says whether the row went in (psycopg reports no row count for INSERTs here)
        self._insert = (
            insert(_T_LEDGER)
            .on_conflict_do_nothing(index_elements=[_T_LEDGER.c.request_id, _T_LEDGER.c.attempt])
            .returning(_T_LEDGER.c.attempt)
        )
        dialect = engine.dialect
        names = [c.name for c in _T_LEDGER.columns]
        self._raw_insert = (
            f"INSERT INTO {_T_LEDGER.name} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))}) ON CONFLICT DO NOTHING"
        )  # names from our own schema, never input
        self._raw_columns = [(c.name, c.type.bind_processor(dialect)) for c in _T_LEDGER.columns]

    @classmethod
    async def open(cls, url: str, *, sqlite_synchronous: str = "NORMAL") -> SQLLedger:
        """A ledger on its own engine to ``url``, with the schema migrated."""
        engine = await open_engine(url, sqlite_synchronous=sqlite_synchronous)
        return cls(engine, owned=True)

    async def record(self, entry: LedgerEntry) -> bool:
        _check(entry)
        return await self._db.run(self._record, _row(entry))

    async def record_many(self, entries: Sequence[LedgerEntry]) -> int:
        for entry in entries:
            _check(entry)
        return await self._db.run(self._record_many, [_row(e) for e in entries])

    async def entries(self, query: LedgerQuery | None = None) -> list[LedgerEntry]:
        return await self._db.run(self._entries, query or LedgerQuery())

    async def rollup(
        self, by: Sequence[Dimension], query: LedgerQuery | None = None
    ) -> list[SpendRow]:
        _check_dimensions(by)
        rows = await self._db.run(self._rollup, tuple(by), query or LedgerQuery())
        return sorted(rows, key=_group_order)

    async def close(self) -> None:
        await self._db.close()

    def _record(self, row: dict[str, Any]) -> bool:
        with self._db.errors(), self._db.engine.begin() as conn:
            return conn.execute(self._insert, row).first() is not None

    def _record_many(self, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        if self._db.dialect == "sqlite":
            return self._record_many_raw(rows)
        with self._db.errors(), self._db.engine.begin() as conn:
            # One multi-row INSERT ... RETURNING ("insertmanyvalues"): a row a duplicate skipped
            # returns nothing. Row by row it cost ~0.1 ms each, most of a batch's time.
            return len(conn.execute(self._insert, list(rows)).all())

    def _record_many_raw(self, rows: Sequence[dict[str, Any]]) -> int:
        """The batch on SQLite's DBAPI connection: ``executemany`` of bound values (each
        column's own bind processing: exact decimals as text, booleans as 0/1), whose row count
        is what went in. A third of the CPU of SQLAlchemy's multi-row INSERT ... RETURNING,
        which the gateway's record stage pays per batch on the event loop."""
        columns = self._raw_columns
        values = [
            tuple(row[name] if bind is None else bind(row[name]) for name, bind in columns)
            for row in rows
        ]
        dbapi = self._db.engine.dialect.loaded_dbapi
        try:
            connection = self._db.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise self._db.store_error(exc) from exc
        raw = connection.dbapi_connection
        assert raw is not None
        try:
            cursor = raw.cursor()
            try:
                cursor.executemany(self._raw_insert, values)
                count = cursor.rowcount
            finally:
                cursor.close()
            raw.commit()
            return int(count)
        except dbapi.Error as exc:
            raw.rollback()
            raise self._db.store_error(exc) from exc
        finally:
            connection.close()

    def _entries(self, query: LedgerQuery) -> list[LedgerEntry]:
        statement = (
            select(_T_LEDGER)
            .where(*_filters(query))
            .order_by(_T_LEDGER.c.ts, _T_LEDGER.c.request_id, _T_LEDGER.c.attempt)
        )
        with self._db.errors(), self._db.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(statement)]

    def _rollup(self, by: tuple[Dimension, ...], query: LedgerQuery) -> list[SpendRow]:
        t = _T_LEDGER
        groups = [_COLUMNS[d] for d in by]
        with self._db.errors(), self._db.engine.connect() as conn:
            if self._db.dialect == "sqlite":
                # registered per use: the engine may be shared, its connections made elsewhere
                raw: Any = conn.connection.driver_connection  # a sqlite3.Connection
                raw.create_aggregate("podium_dsum", 1, _DecimalSum)
                total: ColumnElement[Any] = func.podium_dsum(t.c.cost, type_=schema.ExactDecimal)
            else:
                total = func.sum(t.c.cost, type_=schema.ExactDecimal)
            statement = select(
                *groups,
                total,
                func.count(),
                *[func.sum(t.c[f]) for f in _TOKEN_FIELDS],
                func.sum(case((t.c.cache_hit, 1), else_=0)),
            ).where(*_filters(query))
            if groups:
                statement = statement.group_by(*groups)
            result = conn.execute(statement).all()
        n = len(by)
        rows = []
        for r in result:
            if r[n + 1] == 0:  # an aggregate without GROUP BY over no rows
                continue
            tokens = {f: int(v) for f, v in zip(_TOKEN_FIELDS, r[n + 2 : n + 7], strict=True)}
            rows.append(
                SpendRow(
                    tuple(r[:n]),
                    r[n],
                    int(r[n + 1]),
                    **tokens,
                    cache_hits=int(r[n + 7]),
                )
            )
        return rows


def _filters(query: LedgerQuery) -> list[ColumnElement[bool]]:
    _check_dimensions(list(query.where))
    clauses = [_COLUMNS[d] == v for d, v in query.where.items()]
    if query.start is not None:
        clauses.append(_T_LEDGER.c.day >= query.start.isoformat())
    if query.end is not None:
        clauses.append(_T_LEDGER.c.day < query.end.isoformat())
    return clauses
