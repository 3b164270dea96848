"""Verifying the audit trail: the walk over the stored chain, in this process or in forked
``seq`` ranges, and its verdict (the first bad record, or intact). :class:`ChainWalker` checks
the records; this module fetches them (raw DBAPI pages, a reader thread ahead of the walk) and
splits the work. :meth:`podium.governance.audit.AuditLog.verify` is the entry point."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from podium.errors import StoreError
from podium.finops.ledger import SQLRunner
from podium.governance.chain import COLUMNS, GENESIS, ChainWalker, Checkpoint, VerifyResult
from podium.governance.keys import VerifyKey
from podium.store import schema

_R = schema.audit_records

_VERIFY_PAGE = 2000
"""Rows per page while verifying: small enough to stay in the CPU caches, large enough that
the round trips do not count."""
PARALLEL_VERIFY_MIN = 20_000
"""Above this many records, :meth:`AuditLog.verify` walks ``seq`` ranges in one process per
CPU (forking costs ~10 ms; a log this size takes ~0.1 s to walk in one process)."""
_METHODS = frozenset(multiprocessing.get_all_start_methods())


def start_method(quiet: bool) -> str | None:
    """How to start walker processes: ``fork`` when the caller says no other thread can be
    inside a database driver (``quiet``: a command line tool walking on its main thread),
    ``forkserver`` otherwise; ``None`` where neither exists (the walk stays in this process).

    A forked child has only the forking thread, and a lock another thread held at that moment
    stays held in the child forever: a verify worker forked while the API server's event loop
    was inside SQLite (appending an audit record) would block on its first ``sqlite3.connect``.
    A fork server is a clean single-threaded process, started once (~1 s, this module
    imported), that forks the children. The WAL checkpoint thread guards its own SQLite work
    against forks (:mod:`podium.store.checkpoint`), so it never makes a fork unsafe.
    """
    if quiet and "fork" in _METHODS:
        return "fork"
    return "forkserver" if "forkserver" in _METHODS else None


def verify_chain(
    db: SQLRunner,
    checkpoints: Sequence[Checkpoint],
    verify_keys: Mapping[str, VerifyKey],
    workers: int | None,
    last_seq: Callable[[], int],
    quiet: bool = False,
) -> VerifyResult:
    """Check every checkpoint's signature, then walk the chain (in this process or in worker
    processes by ``seq`` range); the verdict names the first bad record. ``last_seq`` reads
    the newest ``seq``; ``quiet``: see :func:`start_method`."""
    problems: list[tuple[int, str]] = []
    signed: dict[int, str] = {}
    for cp in checkpoints:
        key = verify_keys.get(cp.signer_key_id)
        if key is None:
            problems.append(
                (
                    cp.seq,
                    f"checkpoint signed by unknown key {cp.signer_key_id} (configure its "
                    "signing key, or pass its public key to trust it)",
                )
            )
        elif not key.verify(cp.signature, Checkpoint.message(cp.seq, cp.chain_hash)):
            problems.append((cp.seq, "checkpoint signature does not verify"))
        elif signed.setdefault(cp.seq, cp.chain_hash) != cp.chain_hash:
            problems.append((cp.seq, "two signed checkpoints disagree on the chain hash"))
    first_cp_problem = min(problems, default=None)
    walker = ChainWalker(signed)
    stop_at = None if first_cp_problem is None else first_cp_problem[0]
    if workers is None:
        # One per CPU on PostgreSQL too, although its server needs CPU as well: the client
        # spends ~6.5 µs a record (fetch 3, hashing 3.5), the server ~1.6 µs, so the single
        # walk leaves the second core mostly idle (2 cores: 120-160k/s alone, 180-220k/s
        # with two workers).
        workers = os.cpu_count() or 1
        automatic = True
    else:
        automatic = False
    method = start_method(quiet) if workers > 1 else None
    parallel = method is not None
    top = last_seq() if parallel else 0
    if parallel and (not automatic or top > PARALLEL_VERIFY_MIN):
        assert method is not None
        walk_parallel(db, walker, workers, top, stop_at, method)
    else:
        walk(db, walker, stop_at)
    candidates = [p for p in (walker.problem, first_cp_problem) if p is not None]
    if not candidates and signed and max(signed) > walker.last_seq:
        top = max(signed)
        candidates.append(
            (
                walker.last_seq + 1,
                f"missing: the log ends at seq {walker.last_seq} but a signed checkpoint "
                f"covers seq {top} (truncated)",
            )
        )
    if candidates:
        seq, problem = min(candidates)
        return VerifyResult(False, walker.count, len(checkpoints), seq, problem)
    return VerifyResult(True, walker.count, len(checkpoints))


def walk(db: SQLRunner, walker: ChainWalker, stop_at: int | None) -> None:
    """Walk from where ``walker`` stands to the end of the log (or a problem, or
    ``stop_at``), in this process."""
    with contextlib.closing(pages(db, walker.last_seq)) as stream:
        for page in stream:
            if not page or not walker.walk(page, stop_at):
                break


def walk_parallel(
    db: SQLRunner,
    walker: ChainWalker,
    workers: int,
    top: int,
    stop_at: int | None,
    method: str = "fork",
) -> None:
    """Walk ``seq`` ranges in forked processes, then merge their verdicts in ``seq`` order.

    Each record's checks need only the previous record's stored ``chain_hash``, so range
    ``(lo, hi]`` is walked by a :class:`ChainWalker` seeded with record ``lo``'s
    ``chain_hash``. Merging in order keeps the single walk's verdict: a range counts only
    when the walk so far ended exactly at its seed (record ``lo``, with that chain hash);
    then its first problem is the walk's. Otherwise (record ``lo`` deleted, a range
    whose worker failed), the rest is walked here from where the merged walk stands, so
    a gap or a broken link at a range boundary is reported exactly as the single walk
    would. Started by ``method`` (:func:`start_method`), never spawn: the children have
    everything imported already (spawn pays ~1 s importing Podium each time), and each opens
    its own connection from the database URL.
    """
    bounds = sorted({top * i // workers for i in range(workers)})
    if stop_at is not None:
        bounds = [b for b in bounds if b < stop_at] or [0]
    ranges = [(lo, hi) for lo, hi in zip(bounds, [*bounds[1:], None], strict=True)]
    context: Any = multiprocessing.get_context(method)  # fork or forkserver: both have Process
    if method == "forkserver":
        context.set_forkserver_preload([__name__])  # read when the server starts, once
    url = db.engine.url.render_as_string(hide_password=False)  # to the children only
    started: list[tuple[Any, Any]] = []
    try:
        for lo, hi in ranges:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_walk_range,
                args=(url, walker.signed, lo, hi, stop_at, send, _VERIFY_PAGE),
                name="podium-audit-verify",
                daemon=True,
            )
            process.start()
            send.close()
            started.append((process, receive))
        for (lo, hi), (_process, receive) in zip(ranges, started, strict=True):
            try:
                outcome = receive.recv()
            except EOFError:  # the worker died before answering
                outcome = None
            if outcome is None or (lo, walker.prev) != (walker.last_seq, outcome[0]):
                break  # not seeded where the walk stands: walk on from here, below
            walker.prev, walker.last_seq, walker.count, walker.problem = outcome[1:]
            if walker.problem is not None or hi is None:
                return
        else:
            return
    finally:
        for process, receive in started:
            receive.close()
            if process.is_alive():
                process.terminate()  # a later range, no longer needed
            process.join()
    walk(db, walker, stop_at)


def pages(db: SQLRunner, after: int = 0) -> Generator[list[Any], None, None]:
    """Every record with ``seq > after`` as raw DBAPI rows (columns :data:`COLUMNS`),
    page by page, oldest first; an empty page ends it. The next page is fetched by a
    reader thread with its own connection while the caller checks this one: the database
    (another process for PostgreSQL, C code that releases the GIL for SQLite) works while
    Python hashes."""
    query = _page_query(db.engine)
    pages: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()
    dbapi_error = db.engine.dialect.loaded_dbapi.Error
    postgres = db.dialect == "postgresql"

    def read() -> None:
        try:
            with db.errors(), db.engine.connect() as conn:
                dbapi = conn.connection.dbapi_connection
                assert dbapi is not None
                # psycopg's binary protocol: no text parsing of floats, ints and bytea
                # (it fetches ~1.7x faster than the text protocol here).
                cursor = dbapi.cursor(binary=True) if postgres else dbapi.cursor()
                try:
                    low = after
                    while not stop.is_set():
                        cursor.execute(query, (low, _VERIFY_PAGE))
                        page = cast(list[Any], cursor.fetchall())  # a list in both
                        pages.put(page)
                        if not page:
                            return
                        low = int(page[-1][0])
                finally:
                    cursor.close()
        except dbapi_error as exc:
            pages.put(StoreError(f"store error: {type(exc).__name__}: {exc}"))
        except BaseException as exc:  # handed to the caller, raised there
            pages.put(exc)

    reader = threading.Thread(target=read, name="podium-audit-verify", daemon=True)
    reader.start()
    try:
        while True:
            item = pages.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if not item:
                return
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                pages.get(timeout=0.05)
        reader.join()


def _page_query(engine: Engine) -> str:
    """The verification's page query: raw SQL, since SQLAlchemy's ``Row`` costs more than the
    hashing in this hot loop. Parameters: ``seq`` after, and the page's size."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    return (
        f"SELECT {', '.join(COLUMNS)} FROM {_R.name} "  # names from our own schema
        f"WHERE seq > {mark} ORDER BY seq LIMIT {mark}"
    )


def _walk_range(
    url: str,
    signed: Mapping[int, str],
    lo: int,
    hi: int | None,
    stop_at: int | None,
    out: Any,
    page_size: int,
) -> None:
    """A worker process of :func:`walk_parallel`: walk records ``(lo, hi]`` from
    record ``lo``'s stored ``chain_hash`` and send back ``(that hash, walker state)``, or
    ``None`` when the range cannot be walked here (record ``lo`` missing, a database error):
    the parent then walks on by itself and reports whatever is wrong."""
    outcome: tuple[Any, ...] | None = None
    try:
        engine = create_engine(url, poolclass=NullPool)  # its own: never the parent's pool
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        connection = engine.raw_connection()
        try:
            dbapi = connection.dbapi_connection
            assert dbapi is not None
            postgres = engine.dialect.name == "postgresql"
            cursor = dbapi.cursor(binary=True) if postgres else dbapi.cursor()
            seed: str | None = GENESIS
            if lo > 0:
                cursor.execute(f"SELECT chain_hash FROM {_R.name} WHERE seq = {mark}", (lo,))
                found = cursor.fetchone()
                seed = None if found is None else str(found[0])
            if seed is not None:
                walker = ChainWalker(signed)
                walker.prev, walker.last_seq, walker.count = seed, lo, lo
                query = _page_query(engine)
                low = lo
                while hi is None or low < hi:
                    # Bounded by LIMIT alone: with ``seq <= hi`` in the query, PostgreSQL plans
                    # (on the stale statistics a bulk append leaves) a bitmap scan that sorts
                    # the rest of the range for every page, ~6x slower than the index scan.
                    cursor.execute(
                        query, (low, page_size if hi is None else min(page_size, hi - low))
                    )
                    page = cursor.fetchall()
                    if hi is not None and page and page[-1][0] > hi:  # records deleted inside
                        page = [row for row in page if row[0] <= hi]
                    if not page or not walker.walk(page, stop_at):
                        break
                    low = int(page[-1][0])
                outcome = (seed, walker.prev, walker.last_seq, walker.count, walker.problem)
        finally:
            connection.close()
    except BaseException:  # the parent walks this range itself, and reports what is wrong
        outcome = None
    out.send(outcome)
    out.close()
