"""SQL store: runs and journals in SQLite or PostgreSQL, through a synchronous SQLAlchemy engine.

SQLite work is local and takes tens of microseconds, so it runs inline on the calling (event loop)
thread; a thread hop would cost more than the query. PostgreSQL work waits on the network and
runs in a worker thread (:func:`asyncio.to_thread`). ``offload`` overrides either choice.

:meth:`SQLStore.append` is the hot path: one transaction, one ``executemany`` of pre-rendered SQL
for the events, one ``UPDATE`` for the optional run update, no ``SELECT``. Foreign keys from
``events`` to ``runs`` refuse an append to an unknown run, so no existence check is needed.
The other operations use cached SQLAlchemy Core statements.

URLs may carry passwords: nothing here logs one or formats one into a message.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from sqlalchemy import URL, Dialect, Engine, bindparam, create_engine, event, make_url, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.pool import QueuePool, StaticPool

from podium.errors import ConfigError, JournalConflict, RunNotFound, StoreError
from podium.store import checkpoint, schema
from podium.store.migrations import upgrade_to_head
from podium.store.purge import CONTENT_EVENTS, purge_event_data, purge_run_fields
from podium.types import Event, RunRecord, RunStatus, RunUpdate

_P = ParamSpec("_P")
_T = TypeVar("_T")

_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_RUN_COLUMNS = [schema.runs.c[name] for name in _RUN_FIELDS]
_EVENT_COLUMNS = [schema.events.c[name] for name in _EVENT_FIELDS]

_SELECT_RUN = select(*_RUN_COLUMNS).where(schema.runs.c.run_id == bindparam("run_id"))
_RUN_EXISTS = select(schema.runs.c.run_id).where(schema.runs.c.run_id == bindparam("run_id"))
_SELECT_EVENTS = (
    select(*_EVENT_COLUMNS)
    .where(schema.events.c.run_id == bindparam("run_id"), schema.events.c.seq > bindparam("after"))
    .order_by(schema.events.c.seq)
)
_SELECT_SIGNALS = select(schema.signals.c.name, schema.signals.c.payload).where(
    schema.signals.c.run_id == bindparam("run_id")
)
_INSERT_RUN = schema.runs.insert()


@dataclasses.dataclass(frozen=True, slots=True)
class _HotSQL:
    """The hot path's statements, rendered once in the driver's own parameter style.

    They go straight to a DBAPI cursor of the SQLAlchemy transaction, with tuples: no
    compilation, no per-row parameter processing (about a third of an append's cost on SQLite).
    """

    insert_events: str
    """Positional parameters in :class:`~podium.types.Event` field order."""
    update_run: str
    """Parameters: status, updated_at, result (``NULL`` keeps the stored one), error, run_id."""

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _HotSQL:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        events = schema.events
        runs = schema.runs
        columns = ", ".join(_EVENT_FIELDS)
        marks = ", ".join(mark for _ in _EVENT_FIELDS)
        return cls(
            insert_events=f"INSERT INTO {events.name} ({columns}) VALUES ({marks})",
            update_run=(
                f"UPDATE {runs.name} SET status = {mark}, updated_at = {mark}, "
                f"result = COALESCE({mark}, result), error = {mark} WHERE run_id = {mark}"
            ),
        )


class SQLStore:
    """A :class:`~podium.types.Store` on SQLite or PostgreSQL.

    Build it with :meth:`open`, which also migrates the schema. Append to one run per call: a
    run update applies to the run of the first event.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql+psycopg://…`` (``postgresql://`` and
            ``postgres://`` are aliases).
        sqlite_synchronous: SQLite's ``PRAGMA synchronous``: ``NORMAL`` survives process crashes,
            ``FULL`` power loss too (see :class:`podium.config.Settings`).
        offload: Run database work in a worker thread. ``None`` picks: no for SQLite, yes for
            PostgreSQL.
    """

    group_commit = True

    def __init__(
        self, url: str, *, sqlite_synchronous: str = "NORMAL", offload: bool | None = None
    ) -> None:
        parsed = store_url(url)
        self._engine = create_store_engine(parsed, sqlite_synchronous=sqlite_synchronous)
        dialect = self._engine.dialect
        self._offload = offload if offload is not None else dialect.name != "sqlite"
        self._hot = _HotSQL.for_dialect(dialect)
        self._dbapi: Any = dialect.loaded_dbapi
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        self._insert_signal = insert(schema.signals).on_conflict_do_nothing(
            index_elements=[schema.signals.c.run_id, schema.signals.c.name]
        )
        # Break created_at ties by code point, as Python does, whatever the database's locale.
        self._run_id_order = (
            schema.runs.c.run_id.collate("C")
            if dialect.name == "postgresql"
            else schema.runs.c.run_id
        )
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, *, sqlite_synchronous: str = "NORMAL", offload: bool | None = None
    ) -> SQLStore:
        """Connect and upgrade the schema to the newest migration.

        Concurrent openers (threads or processes) are serialised while migrating.

        Args:
            url: See :class:`SQLStore`.
            sqlite_synchronous: See :class:`SQLStore`.
            offload: See :class:`SQLStore`.

        Returns:
            The store, ready to use.

        Raises:
            ConfigError: The URL or a setting is invalid.
            StoreError: The database cannot be reached or migrated.
        """
        store = cls(url, sqlite_synchronous=sqlite_synchronous, offload=offload)
        try:
            with store._db_errors():
                await asyncio.to_thread(upgrade_to_head, store._engine)
        except BaseException:
            store._engine.dispose()
            raise
        return store

    async def create_run(self, run: RunRecord, events: Sequence[Event] = ()) -> None:
        """Insert a new run and its first events in one transaction.

        Raises:
            StoreError: A run with this id exists.
            JournalConflict: Two events share a sequence number.
        """
        await self._run(self._create_run, run, events)

    async def get_run(self, run_id: str) -> RunRecord:
        """Return the run.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(self._get_run, run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        limit: int = 50,
        org: str | None = None,
        team: str | None = None,
    ) -> list[RunRecord]:
        """Return up to ``limit`` runs, newest first, optionally filtered (``org``/``team``:
        the owner; a team's list walks the ``(team, created_at)`` index)."""
        if limit <= 0:
            return []
        return await self._run(self._list_runs, status, workflow, limit, org, team)

    async def append(self, events: Sequence[Event], update: RunUpdate | None = None) -> None:
        """Append events and apply a run update atomically, all or nothing.

        Raises:
            JournalConflict: A sequence number is already taken.
            RunNotFound: The run does not exist.
            StoreError: An update comes without events.
        """
        if not events:
            if update is None:
                return
            raise StoreError("a run update needs at least one event to name the run")
        await self._run(self._append, events, update)

    async def events(self, run_id: str, *, after: int = 0) -> list[Event]:
        """Return the run's events with ``seq > after``, in order.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(self._events, run_id, after)

    async def put_signal(self, run_id: str, name: str, payload: str) -> None:
        """Record a signal unless one with this name was delivered already (first write wins).

        Raises:
            RunNotFound: No such run.
        """
        await self._run(self._put_signal, run_id, name, payload)

    async def signals(self, run_id: str) -> dict[str, str]:
        """Return the run's signals by name.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(self._signals, run_id)

    async def purge_run_content(self, run_id: str, *, keep_hash: bool = True) -> bool:
        """Replace the run's content by hash-keeping placeholders, in one transaction (see
        :mod:`podium.store.purge`). Returns whether anything changed.

        Raises:
            RunNotFound: No such run.
        """
        return await self._run(self._purge_run_content, run_id, keep_hash)

    async def close(self) -> None:
        """Close the pooled connections. The store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._closed:
            raise StoreError("the store is closed")
        if self._offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    # The synchronous halves. Each is one short transaction.

    def _create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        with self._db_errors(run.run_id), self._engine.begin() as conn:
            try:
                conn.execute(_INSERT_RUN, dataclasses.asdict(run))
            except IntegrityError as exc:
                if _violation(exc.orig) == "unique":
                    raise StoreError(f"run {run.run_id!r} already exists") from exc
                raise
            if events:
                cursor = conn.connection.cursor()
                try:
                    cursor.executemany(self._hot.insert_events, _event_rows(events))
                finally:
                    cursor.close()

    def _get_run(self, run_id: str) -> RunRecord:
        with self._db_errors(), self._engine.connect() as conn:
            row = conn.execute(_SELECT_RUN, {"run_id": run_id}).first()
        if row is None:
            raise RunNotFound(run_id)
        return RunRecord(*row)

    def _list_runs(
        self,
        status: RunStatus | None,
        workflow: str | None,
        limit: int,
        org: str | None,
        team: str | None,
    ) -> list[RunRecord]:
        runs = schema.runs
        query = select(*_RUN_COLUMNS)
        if status is not None:
            query = query.where(runs.c.status == status)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if org is not None:
            query = query.where(runs.c.org == org)
        if team is not None:
            query = query.where(runs.c.team == team)
        query = query.order_by(runs.c.created_at.desc(), self._run_id_order.desc()).limit(limit)
        with self._db_errors(), self._engine.connect() as conn:
            return [RunRecord(*row) for row in conn.execute(query)]

    def _append(self, events: Sequence[Event], update: RunUpdate | None) -> None:
        run_id = events[0].run_id
        with self._db_errors(run_id), self._engine.begin() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.executemany(self._hot.insert_events, _event_rows(events))
                if update is not None:
                    cursor.execute(
                        self._hot.update_run,
                        (update.status, update.updated_at, update.result, update.error, run_id),
                    )
                    if cursor.rowcount != 1:
                        raise RunNotFound(run_id)
            finally:
                cursor.close()

    def _events(self, run_id: str, after: int) -> list[Event]:
        with self._db_errors(), self._engine.connect() as conn:
            rows = conn.execute(_SELECT_EVENTS, {"run_id": run_id, "after": after}).all()
            if not rows and conn.execute(_RUN_EXISTS, {"run_id": run_id}).first() is None:
                raise RunNotFound(run_id)
        return [Event(*row) for row in rows]

    def _put_signal(self, run_id: str, name: str, payload: str) -> None:
        with self._db_errors(run_id), self._engine.begin() as conn:
            conn.execute(self._insert_signal, {"run_id": run_id, "name": name, "payload": payload})

    def _signals(self, run_id: str) -> dict[str, str]:
        with self._db_errors(), self._engine.connect() as conn:
            rows = conn.execute(_SELECT_SIGNALS, {"run_id": run_id}).all()
            if not rows and conn.execute(_RUN_EXISTS, {"run_id": run_id}).first() is None:
                raise RunNotFound(run_id)
        return {name: payload for name, payload in rows}

    def _purge_run_content(self, run_id: str, keep_hash: bool) -> bool:
        runs, events = schema.runs, schema.events
        with self._db_errors(run_id), self._engine.begin() as conn:
            row = conn.execute(_SELECT_RUN, {"run_id": run_id}).first()
            if row is None:
                raise RunNotFound(run_id)
            changed = False
            fields = purge_run_fields(RunRecord(*row), keep_hash=keep_hash)
            if fields is not None:
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == run_id)
                    .values(inputs=fields[0], result=fields[1])
                )
                changed = True
            journal = conn.execute(
                select(*_EVENT_COLUMNS).where(
                    events.c.run_id == run_id, events.c.kind.in_(sorted(CONTENT_EVENTS))
                )
            ).all()
            updates = []
            for event_row in journal:
                data = purge_event_data(Event(*event_row), keep_hash=keep_hash)
                if data is not None:
                    updates.append({"s": event_row.seq, "d": data})
            if updates:
                conn.execute(
                    events.update()
                    .where(events.c.run_id == run_id, events.c.seq == bindparam("s"))
                    .values(data=bindparam("d")),
                    updates,
                )
                changed = True
            return changed

    # Errors

    @contextmanager
    def _db_errors(self, run_id: str | None = None) -> Iterator[None]:
        """Turn driver errors, raw or wrapped by SQLAlchemy, into store errors.

        The transaction has rolled back by the time they get here.
        """
        try:
            yield
        except DBAPIError as exc:
            raise self._store_error(exc.orig, run_id) from exc
        except self._dbapi.Error as exc:  # raised by the hot path's DBAPI cursor
            raise self._store_error(exc, run_id) from exc
        except SQLAlchemyError as exc:  # e.g. no pooled connection free in time
            error = StoreError(f"store error: {type(exc).__name__}: {exc}")
            error.retryable = isinstance(exc, SATimeoutError)
            raise error from exc

    def _store_error(self, error: BaseException | None, run_id: str | None) -> StoreError:
        if isinstance(error, self._dbapi.IntegrityError):
            kind = _violation(error)
            if kind == "unique":
                return JournalConflict(
                    f"run {run_id!r}: a sequence number in this batch is already taken"
                )
            if kind == "foreign_key" and run_id is not None:
                return RunNotFound(run_id)
            return StoreError(f"store constraint violated: {error}")
        store_error = StoreError(f"store database error: {type(error).__name__}: {error}")
        # Lost connections and lock timeouts may pass on a retry; anything else will not.
        store_error.retryable = isinstance(error, self._dbapi.OperationalError)
        return store_error


def _event_rows(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    return [(e.run_id, e.seq, e.kind, e.step, e.attempt, e.ts, e.data) for e in events]


def _violation(error: BaseException | None) -> Literal["unique", "foreign_key", "other"]:
    """Classify a constraint violation by the driver's error code (psycopg, then sqlite3)."""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate == "23505":
        return "unique"
    if sqlstate == "23503":
        return "foreign_key"
    name = getattr(error, "sqlite_errorname", None)
    if name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
        return "unique"
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return "foreign_key"
    return "other"


# Engines: URL aliases, SQLite pragmas, pooling.

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
"""Accepted values of SQLite's ``PRAGMA synchronous``."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before failing: long enough
that a loaded machine never turns contention into an error."""
"""How long a SQLite writer waits for another connection's write lock before failing."""

_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
"""Accepted URL schemes and the synchronous driver each one maps to."""

SQL_SCHEMES = frozenset(_DRIVERS)
"""URL schemes (before ``://``, lower case) served by the SQL store."""

SUPPORTED_SCHEMES = ("sqlite:///", "postgresql+psycopg://", "postgresql://", "postgres://")
"""The SQL schemes :func:`store_url` accepts, as shown in error messages."""


def store_url(url: str) -> URL:
    """Parse a store URL, mapping ``postgresql://`` and ``postgres://`` to the psycopg driver.

    Args:
        url: A SQLAlchemy URL of a SQLite or PostgreSQL database.

    Returns:
        The parsed URL, with the driver Podium uses.

    Raises:
        ConfigError: The URL is malformed or names another database or driver.
    """
    scheme = url.partition("://")[0]
    drivername = _DRIVERS.get(scheme.lower())
    if drivername is None:
        raise ConfigError(
            f"unsupported SQL store scheme {scheme!r}; use one of {', '.join(SUPPORTED_SCHEMES)}"
        )
    try:
        # "postgres" is no SQLAlchemy dialect name: swap the scheme before parsing.
        parsed = make_url(drivername + url[len(scheme) :])
    except ArgumentError:
        raise ConfigError(f"malformed {scheme} store URL") from None
    return parsed


def create_store_engine(url: URL, *, sqlite_synchronous: str = "NORMAL") -> Engine:
    """Create the engine of a SQL store.

    SQLite connections get ``journal_mode=WAL``, the chosen ``synchronous`` level, a busy
    timeout and enforced foreign keys. A file database gets a :class:`~sqlalchemy.pool.QueuePool`
    (the SQLAlchemy 2.x default for files, stated here) whose connections may cross threads: the
    event loop thread uses one, worker threads others, each with its own transaction. Its parent
    directory is created if missing.

    Args:
        url: A URL from :func:`store_url`.
        sqlite_synchronous: ``OFF``, ``NORMAL``, ``FULL`` or ``EXTRA`` (SQLite only).

    Returns:
        The engine. Parameters are hidden from its log lines and error messages.

    Raises:
        ConfigError: ``sqlite_synchronous`` is not a valid level.
    """
    if url.get_backend_name() != "sqlite":
        return create_engine(url, hide_parameters=True, pool_pre_ping=True)
    level = sqlite_synchronous.upper()
    if level not in SQLITE_SYNCHRONOUS:
        raise ConfigError(
            f"invalid sqlite_synchronous {sqlite_synchronous!r}; "
            f"use one of {', '.join(SQLITE_SYNCHRONOUS)}"
        )
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=True,
        # One in-memory database is one connection: share it (callers are serialised).
        poolclass=StaticPool if in_memory else QueuePool,
        connect_args={"check_same_thread": False},
    )
    background = not in_memory and not database.startswith("file:")
    event.listen(engine, "connect", _sqlite_pragmas(level, autocheckpoint=not background))
    if background:  # checkpoints off the event loop (see podium.store.checkpoint)
        checkpoint.register(database, engine)
    return engine


def sqlite_wal(execute: Callable[[str], Any], timeout_s: float) -> None:
    """Switch a SQLite database to WAL, waiting while another connection holds it.

    Changing the journal mode needs the database to itself, and SQLite answers "database is
    locked" at once rather than through the busy handler — so processes opening a new database
    together (replicas starting) would fail. A database already in WAL answers at once."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _sqlite_pragmas(level: str, *, autocheckpoint: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            sqlite_wal(cursor.execute, SQLITE_BUSY_TIMEOUT_MS / 1000)
            cursor.execute(f"PRAGMA synchronous={level}")  # validated against SQLITE_SYNCHRONOUS
            cursor.execute("PRAGMA foreign_keys=ON")
            if not autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    return on_connect
