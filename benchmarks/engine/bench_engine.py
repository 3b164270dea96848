"""Engine benchmarks: Podium side by side with LangGraph, in one process, reported as ratios.

Run through ``benchmarks/run.sh`` (``make bench``), which builds the ``.venv-bench`` venv with
Podium and the pinned LangGraph packages. What each row measures is in ``benchmarks/README.md``.

Every timed run gets a fresh store (a new temporary SQLite file for the durable rows); building
the graph or planning the workflow, opening the store and cleaning up stay outside the timing.
Times are wall clock (``time.perf_counter``), the median of the repetitions after warm-up runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import operator
import os
import platform
import random
import shutil
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Send

from podium.store import MemoryStore, open_store
from podium.types import Event, Store
from podium.workflows.engine import Engine
from podium.workflows.plan import Plan
from podium.workflows.spec import CallStep, ForEachStep, ParallelStep, Workflow

SEQ_STEPS = 1_000
FAN_SMALL = 1_000
FAN_LARGE = 10_000
JOURNAL_STEPS = 50
PAYLOAD_BYTES = 1_024
PAYLOAD_TOTAL = JOURNAL_STEPS * PAYLOAD_BYTES

_rng = random.Random(0)
PAYLOADS = [
    "".join(_rng.choices(string.ascii_letters + string.digits, k=PAYLOAD_BYTES))
    for _ in range(JOURNAL_STEPS)
]
"""One distinct 1 KiB ASCII string per step (ASCII: as many bytes in JSON as in msgpack)."""


# -- results ------------------------------------------------------------------------------


@dataclass
class Measurement:
    """The samples of one configuration, already scaled to ``unit``."""

    key: str
    system: str
    what: str
    unit: str
    samples: list[float]
    warmup: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass(frozen=True)
class Row:
    """One line of the report: a Podium measurement against its LangGraph counterpart."""

    group: str
    label: str
    podium: str
    langgraph: str
    target: float | None = None


RESULTS: dict[str, Measurement] = {}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def record(m: Measurement) -> None:
    RESULTS[m.key] = m
    spread = f"min {min(m.samples):,.1f}, max {max(m.samples):,.1f}" if len(m.samples) > 1 else ""
    log(f"  {m.key:<34} {m.median:>12,.1f} {m.unit:<10} (n={len(m.samples)}; {spread})")


@contextmanager
def tmp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def db_bytes(path: Path) -> int:
    """A SQLite database's size on disk, WAL and shared-memory files included."""
    return sum(
        os.path.getsize(p)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if os.path.exists(p)
    )


def repeat_sync(fn: Callable[[], float], reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(reps)]


def repeat_async(fn: Callable[[], Awaitable[float]], reps: int, warmup: int) -> list[float]:
    async def go() -> list[float]:
        for _ in range(warmup):
            await fn()
        return [await fn() for _ in range(reps)]

    return asyncio.run(go())


# -- Podium -------------------------------------------------------------------------------


async def noop() -> None:
    return None


async def work(x: int) -> int:
    return x


def _payload_fn(i: int) -> Callable[[], Awaitable[str]]:
    async def produce() -> str:
        return PAYLOADS[i]

    produce.__qualname__ = f"produce_{i}"
    return produce


def podium_plan(workflow: Workflow) -> Plan:
    return Engine(MemoryStore()).plan(workflow)


def podium_sequence(n: int) -> Plan:
    return podium_plan(
        Workflow(name="seq", steps=[CallStep(id=f"s{i}", call=noop) for i in range(n)])
    )


def podium_for_each(n: int) -> Plan:
    """Dynamic fan-out over a run input: the counterpart of LangGraph's ``Send``."""
    step = ForEachStep(
        id="f",
        for_each="{{ inputs.batch }}",
        do=[CallStep(id="w", call=work, input={"x": "{{ item }}"})],
        max_concurrency=n,
        max_items=n,
    )
    return podium_plan(Workflow(name="for_each", inputs={"batch": "array"}, steps=[step]))


def podium_parallel(n: int) -> Plan:
    """Static fan-out: ``n`` branches written into the definition."""
    branches: list[Any] = [CallStep(id=f"b{i}", call=work, input={"x": i}) for i in range(n)]
    step = ParallelStep(id="p", parallel=branches, max_concurrency=n)
    return podium_plan(Workflow(name="parallel", steps=[step]))


def podium_payloads() -> Plan:
    steps = [CallStep(id=f"s{i}", call=_payload_fn(i)) for i in range(JOURNAL_STEPS)]
    return podium_plan(Workflow(name="journal", steps=steps))


StoreFactory = Callable[[Path], Awaitable[Store]]


async def memory_store(_dir: Path) -> Store:
    return MemoryStore()


def sqlite_store(level: str) -> StoreFactory:
    async def factory(directory: Path) -> Store:
        return await open_store(f"sqlite:///{directory / 'podium.db'}", sqlite_synchronous=level)

    return factory


async def podium_once(
    plan: Plan, factory: StoreFactory, inputs: dict[str, Any] | None, check: Callable[[Any], None]
) -> float:
    """One timed run on a fresh store; returns seconds."""
    with tmp_dir() as directory:
        store = await factory(directory)
        engine = Engine(store)
        try:
            gc.collect()
            start = time.perf_counter()
            result = await engine.run(plan, inputs)
            elapsed = time.perf_counter() - start
            if result.status != "completed":
                raise RuntimeError(f"podium run {result.status}: {result.error}")
            check(result.output)
        finally:
            await engine.close()
            await store.close()
    return elapsed


def event_bytes(events: list[Event]) -> int:
    """The journal's logical size: text fields as UTF-8, numbers as 8 bytes each."""
    total = 0
    for e in events:
        total += len(e.run_id.encode()) + len(e.kind.encode()) + len(e.step.encode()) + 3 * 8
        if e.data is not None:
            total += len(e.data.encode())
    return total


async def podium_journal_once() -> dict[str, int]:
    plan = podium_payloads()
    with tmp_dir() as directory:
        path = directory / "podium.db"
        store = await open_store(f"sqlite:///{path}")
        await store.close()
        empty = db_bytes(path)
        store = await open_store(f"sqlite:///{path}")
        engine = Engine(store)
        try:
            result = await engine.run(plan)
            if result.status != "completed":
                raise RuntimeError(f"podium run {result.status}: {result.error}")
            events = await store.events(result.run_id)
        finally:
            await engine.close()
            await store.close()  # the last connection checkpoints the WAL into the file
        full = db_bytes(path)
    return {
        "logical": event_bytes(events),
        "file_growth": full - empty,
        "events": len(events),
    }


# -- LangGraph ----------------------------------------------------------------------------


class SeqState(TypedDict):
    x: int


class FanState(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


class WorkerState(TypedDict):
    x: int


class JournalState(TypedDict):
    outputs: Annotated[list[str], operator.add]


class LatestState(TypedDict):
    output: str


def lg_noop(state: SeqState) -> None:
    return None


async def lg_anoop(state: SeqState) -> None:
    return None


def lg_sequence(n: int, *, is_async: bool = False) -> StateGraph[Any]:
    graph: StateGraph[Any] = StateGraph(SeqState)
    fn = lg_anoop if is_async else lg_noop
    graph.add_sequence([(f"s{i}", fn) for i in range(n)])
    graph.add_edge(START, "s0")
    return graph


def lg_dispatch(state: FanState) -> list[Send]:
    return [Send("worker", {"x": x}) for x in state["items"]]


def lg_worker(state: WorkerState) -> dict[str, list[int]]:
    return {"results": [state["x"]]}


async def lg_aworker(state: WorkerState) -> dict[str, list[int]]:
    return {"results": [state["x"]]}


def lg_fan_out(*, is_async: bool = False) -> StateGraph[Any]:
    """Map-reduce the LangGraph way: ``Send`` per item to a worker, a reducer collects."""
    graph: StateGraph[Any] = StateGraph(FanState)
    graph.add_node("worker", lg_aworker if is_async else lg_worker)
    graph.add_conditional_edges(START, lg_dispatch, ["worker"])
    return graph


def lg_payloads(*, keep_all: bool) -> StateGraph[Any]:
    def node(i: int) -> Callable[[Any], dict[str, Any]]:
        if keep_all:
            return lambda _state: {"outputs": [PAYLOADS[i]]}
        return lambda _state: {"output": PAYLOADS[i]}

    graph: StateGraph[Any] = StateGraph(JournalState if keep_all else LatestState)
    graph.add_sequence([(f"s{i}", node(i)) for i in range(JOURNAL_STEPS)])
    graph.add_edge(START, "s0")
    return graph


def sqlite_conn(path: Path, level: str | None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    if level is not None:
        conn.execute(f"PRAGMA synchronous={level}")
    return conn


def lg_once(
    graph: StateGraph[Any],
    compiled: Any,
    saver: str,
    level: str | None,
    state: dict[str, Any],
    check: Callable[[Any], None],
) -> float:
    """One timed ``invoke``; ``saver`` is ``none``, ``memory`` or ``sqlite``. Returns seconds."""
    config: dict[str, Any] = {
        "recursion_limit": SEQ_STEPS + 100,
        "configurable": {"thread_id": "bench"},
    }
    with tmp_dir() as directory:
        conn = None
        kwargs: dict[str, Any] = {}
        if saver == "none":
            app = compiled
        elif saver == "memory":
            app = graph.compile(checkpointer=InMemorySaver())
            kwargs["durability"] = "sync"
        else:
            conn = sqlite_conn(directory / "langgraph.db", level)
            checkpointer = SqliteSaver(conn)
            checkpointer.setup()
            app = graph.compile(checkpointer=checkpointer)
            kwargs["durability"] = "sync"
        try:
            gc.collect()
            start = time.perf_counter()
            out = app.invoke(state, config, **kwargs)
            elapsed = time.perf_counter() - start
            check(out)
        finally:
            if conn is not None:
                conn.close()
    return elapsed


async def lg_aonce(
    graph: StateGraph[Any],
    compiled: Any,
    saver: str,
    level: str | None,
    state: dict[str, Any],
    check: Callable[[Any], None],
) -> float:
    """One timed ``ainvoke``; ``saver`` is ``none`` or ``sqlite`` (AsyncSqliteSaver)."""
    config: dict[str, Any] = {
        "recursion_limit": SEQ_STEPS + 100,
        "configurable": {"thread_id": "bench"},
    }
    with tmp_dir() as directory:
        if saver == "none":
            gc.collect()
            start = time.perf_counter()
            out = await compiled.ainvoke(state, config)
            elapsed = time.perf_counter() - start
            check(out)
            return elapsed
        async with AsyncSqliteSaver.from_conn_string(str(directory / "langgraph.db")) as cp:
            if level is not None:
                await cp.conn.execute(f"PRAGMA synchronous={level}")
            await cp.setup()
            app = graph.compile(checkpointer=cp)
            gc.collect()
            start = time.perf_counter()
            out = await app.ainvoke(state, config, durability="sync")
            elapsed = time.perf_counter() - start
            check(out)
    return elapsed


_LOGICAL_SQL = """
SELECT
  (SELECT COALESCE(SUM(LENGTH(thread_id) + LENGTH(checkpoint_ns) + LENGTH(checkpoint_id)
     + IFNULL(LENGTH(parent_checkpoint_id), 0) + IFNULL(LENGTH(type), 0)
     + IFNULL(LENGTH(checkpoint), 0) + IFNULL(LENGTH(metadata), 0)), 0) FROM checkpoints),
  (SELECT COALESCE(SUM(LENGTH(thread_id) + LENGTH(checkpoint_ns) + LENGTH(checkpoint_id)
     + LENGTH(task_id) + LENGTH(task_path) + 8 + LENGTH(channel) + IFNULL(LENGTH(type), 0)
     + IFNULL(LENGTH(value), 0)), 0) FROM writes),
  (SELECT COUNT(*) FROM checkpoints),
  (SELECT COUNT(*) FROM writes)
"""


def lg_journal_once(*, keep_all: bool) -> dict[str, int]:
    graph = lg_payloads(keep_all=keep_all)
    config: dict[str, Any] = {"configurable": {"thread_id": "bench"}}
    with tmp_dir() as directory:
        path = directory / "langgraph.db"
        conn = sqlite_conn(path, None)
        SqliteSaver(conn).setup()
        conn.close()
        empty = db_bytes(path)
        conn = sqlite_conn(path, None)
        try:
            app = graph.compile(checkpointer=SqliteSaver(conn))
            state: dict[str, Any] = {"outputs": []} if keep_all else {"output": ""}
            out = app.invoke(state, config, durability="sync")
            expected = PAYLOADS if keep_all else PAYLOADS[-1]
            if out.get("outputs" if keep_all else "output") != expected:
                raise RuntimeError("langgraph journal run returned the wrong outputs")
            checkpoints, writes, n_checkpoints, n_writes = conn.execute(_LOGICAL_SQL).fetchone()
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file
        full = db_bytes(path)
    return {
        "logical": checkpoints + writes,
        "logical_checkpoints": checkpoints,
        "logical_writes": writes,
        "file_growth": full - empty,
        "checkpoints": n_checkpoints,
        "writes": n_writes,
    }


# -- the benchmarks -----------------------------------------------------------------------


def check_none(_out: Any) -> None:
    return None


def check_podium_fan(n: int) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        # ForEachStep gives a list in item order, ParallelStep a mapping by branch id.
        if not isinstance(out, list | dict) or len(out) != n:
            raise RuntimeError(f"podium fan-out returned {type(out).__name__}, not {n} results")

    return check


def check_lg_fan(n: int) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        if len(out["results"]) != n:
            raise RuntimeError(f"langgraph fan-out returned {len(out['results'])} results")

    return check


def bench_sequential(reps: int, warmup: int) -> None:
    log(f"sequential: {SEQ_STEPS:,} no-op steps (µs/step)")
    per_step = 1e6 / SEQ_STEPS
    plan = podium_sequence(SEQ_STEPS)
    podium_cases: list[tuple[str, str, StoreFactory]] = [
        ("podium.seq.memory", "MemoryStore", memory_store),
        ("podium.seq.sqlite_normal", "SQLite, synchronous=NORMAL", sqlite_store("NORMAL")),
        ("podium.seq.sqlite_full", "SQLite, synchronous=FULL", sqlite_store("FULL")),
    ]
    for key, what, factory in podium_cases:

        async def once(factory: StoreFactory = factory) -> float:
            return await podium_once(plan, factory, None, check_none)

        samples = [s * per_step for s in repeat_async(once, reps, warmup)]
        record(Measurement(key, "podium", what, "µs/step", samples, warmup))

    graph = lg_sequence(SEQ_STEPS)
    compiled = graph.compile()
    state = {"x": 0}
    lg_cases = [
        ("langgraph.seq.none", "invoke, no checkpointer", "none", None),
        ("langgraph.seq.memory", "invoke, InMemorySaver, durability=sync", "memory", None),
        (
            "langgraph.seq.sqlite_normal",
            "invoke, SqliteSaver synchronous=NORMAL, durability=sync",
            "sqlite",
            "NORMAL",
        ),
        (
            "langgraph.seq.sqlite_full",
            "invoke, SqliteSaver synchronous=FULL (its default), durability=sync",
            "sqlite",
            "FULL",
        ),
    ]
    for key, what, saver, level in lg_cases:

        def lg_run(saver: str = saver, level: str | None = level) -> float:
            return lg_once(graph, compiled, saver, level, state, check_none)

        samples = [s * per_step for s in repeat_sync(lg_run, reps, warmup)]
        record(Measurement(key, "langgraph", what, "µs/step", samples, warmup))

    agraph = lg_sequence(SEQ_STEPS, is_async=True)
    acompiled = agraph.compile()
    async_cases = [
        ("langgraph.seq.async_none", "ainvoke (async nodes), no checkpointer", "none", None),
        (
            "langgraph.seq.async_sqlite_full",
            "ainvoke (async nodes), AsyncSqliteSaver synchronous=FULL, durability=sync",
            "sqlite",
            "FULL",
        ),
    ]
    for key, what, saver, level in async_cases:

        async def lg_arun(saver: str = saver, level: str | None = level) -> float:
            return await lg_aonce(agraph, acompiled, saver, level, state, check_none)

        samples = [s * per_step for s in repeat_async(lg_arun, reps, warmup)]
        record(Measurement(key, "langgraph", what, "µs/step", samples, warmup))


def bench_fan_out(n: int, reps: int, warmup: int, durable_levels: tuple[str, ...]) -> None:
    log(f"fan-out: {n:,} branches (ms per fan-out, whole run)")
    items = list(range(n))
    given = {"batch": items}
    note = "" if warmup else "no warm-up of its own (runs after the 1,000-way rows)"
    for_each = podium_for_each(n)
    parallel = podium_parallel(n)
    podium_cases: list[tuple[str, str, Plan, dict[str, Any] | None, StoreFactory]] = [
        (
            f"podium.fan{n}.for_each.memory",
            "ForEachStep, MemoryStore",
            for_each,
            given,
            memory_store,
        ),
        (
            f"podium.fan{n}.parallel.memory",
            "ParallelStep, MemoryStore",
            parallel,
            None,
            memory_store,
        ),
    ]
    for level in durable_levels:
        suffix = level.lower()
        podium_cases += [
            (
                f"podium.fan{n}.for_each.sqlite_{suffix}",
                f"ForEachStep, SQLite synchronous={level}",
                for_each,
                given,
                sqlite_store(level),
            ),
            (
                f"podium.fan{n}.parallel.sqlite_{suffix}",
                f"ParallelStep, SQLite synchronous={level}",
                parallel,
                None,
                sqlite_store(level),
            ),
        ]
    for key, what, plan, inputs, factory in podium_cases:

        async def once(
            plan: Plan = plan, inputs: dict[str, Any] | None = inputs, f: StoreFactory = factory
        ) -> float:
            return await podium_once(plan, f, inputs, check_podium_fan(n))

        samples = [s * 1e3 for s in repeat_async(once, reps, warmup)]
        record(Measurement(key, "podium", what, "ms", samples, warmup, note))

    graph = lg_fan_out()
    compiled = graph.compile()
    state = {"items": items, "results": []}
    lg_cases: list[tuple[str, str, str, str | None]] = [
        (f"langgraph.fan{n}.none", "Send, invoke, no checkpointer", "none", None),
    ]
    for level in durable_levels:
        lg_cases.append(
            (
                f"langgraph.fan{n}.sqlite_{level.lower()}",
                f"Send, invoke, SqliteSaver synchronous={level}, durability=sync",
                "sqlite",
                level,
            )
        )
    for key, what, saver, level in lg_cases:

        def lg_run(saver: str = saver, level: str | None = level) -> float:
            return lg_once(graph, compiled, saver, level, state, check_lg_fan(n))

        samples = [s * 1e3 for s in repeat_sync(lg_run, reps, warmup)]
        record(Measurement(key, "langgraph", what, "ms", samples, warmup, note))


def bench_journal(reps: int) -> None:
    log(f"journal: {JOURNAL_STEPS} steps x {PAYLOAD_BYTES} B payload (x payload)")

    def add(key: str, system: str, what: str, runs: list[dict[str, int]]) -> None:
        for metric in ("logical", "file_growth"):
            samples = [r[metric] / PAYLOAD_TOTAL for r in runs]
            extra = {"bytes": statistics.median(r[metric] for r in runs), "detail": runs[0]}
            record(Measurement(f"{key}.{metric}", system, what, "x payload", samples, 0, "", extra))

    podium_runs = [asyncio.run(podium_journal_once()) for _ in range(reps)]
    add("podium.journal", "podium", "SQLite journal events", podium_runs)
    lg_all = [lg_journal_once(keep_all=True) for _ in range(reps)]
    add(
        "langgraph.journal",
        "langgraph",
        "SqliteSaver, outputs kept in state (list reducer)",
        lg_all,
    )
    lg_last = [lg_journal_once(keep_all=False) for _ in range(reps)]
    add(
        "langgraph.journal_latest", "langgraph", "SqliteSaver, only latest output in state", lg_last
    )


def sqlite_floor(commits: int = 1_000) -> dict[str, float]:
    """What one commit costs this disk right now: bare ``sqlite3``, WAL, one row per transaction.

    No engine can commit a step faster than this; at ``FULL`` it is the ``fsync``, which other
    processes' disk traffic can make many times slower. Returns µs per commit by level.
    """
    floor = {}
    for level in ("NORMAL", "FULL"):
        with tmp_dir() as directory:
            conn = sqlite3.connect(directory / "floor.db", isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={level}")
                conn.execute(
                    "CREATE TABLE e (run_id TEXT, seq INTEGER, data TEXT, PRIMARY KEY (run_id, seq))"
                )
                start = time.perf_counter()
                for i in range(commits):
                    conn.execute("BEGIN")
                    conn.execute("INSERT INTO e VALUES (?, ?, ?)", ("run", i, '{"o":null}'))
                    conn.execute("COMMIT")
                floor[level] = (time.perf_counter() - start) * 1e6 / commits
            finally:
                conn.close()
    return floor


# -- the report -----------------------------------------------------------------------------

SEQ = "Sequential, 1,000 no-op steps (µs/step)"
FAN = "Fan-out (ms per whole run)"
JOURNAL = "Journal, 50 steps each returning 1 KB (multiple of the 50 KB payload)"


def rows(large: bool) -> list[Row]:
    out = [
        Row(SEQ, "in memory", "podium.seq.memory", "langgraph.seq.none", 20),
        Row(SEQ, "in memory vs InMemorySaver", "podium.seq.memory", "langgraph.seq.memory", 20),
        Row(SEQ, "in memory, async", "podium.seq.memory", "langgraph.seq.async_none", 20),
        Row(
            SEQ,
            "SQLite synchronous=NORMAL",
            "podium.seq.sqlite_normal",
            "langgraph.seq.sqlite_normal",
            300,
        ),
        Row(
            SEQ,
            "SQLite synchronous=FULL",
            "podium.seq.sqlite_full",
            "langgraph.seq.sqlite_full",
            300,
        ),
        Row(
            SEQ,
            "SQLite FULL vs AsyncSqliteSaver",
            "podium.seq.sqlite_full",
            "langgraph.seq.async_sqlite_full",
            300,
        ),
    ]
    for n, memory_target, durable_target in (
        (FAN_SMALL, 50.0, 200.0),
        (FAN_LARGE, None, None),
    ):
        if n == FAN_LARGE and not large:
            continue
        for kind in ("for_each", "parallel"):
            label = "ForEachStep" if kind == "for_each" else "ParallelStep"
            out.append(
                Row(
                    FAN,
                    f"{n:,}-way, in memory ({label} vs Send)",
                    f"podium.fan{n}.{kind}.memory",
                    f"langgraph.fan{n}.none",
                    memory_target,
                )
            )
            for level in ("normal", "full"):
                out.append(
                    Row(
                        FAN,
                        f"{n:,}-way, SQLite {level.upper()} ({label} vs Send)",
                        f"podium.fan{n}.{kind}.sqlite_{level}",
                        f"langgraph.fan{n}.sqlite_{level}",
                        durable_target,
                    )
                )
    out += [
        Row(
            JOURNAL,
            "logical bytes (events vs checkpoint + write rows)",
            "podium.journal.logical",
            "langgraph.journal.logical",
            2,
        ),
        Row(
            JOURNAL,
            "SQLite file growth",
            "podium.journal.file_growth",
            "langgraph.journal.file_growth",
            2,
        ),
        Row(
            JOURNAL,
            "file growth, LangGraph keeping only the latest output",
            "podium.journal.file_growth",
            "langgraph.journal_latest.file_growth",
            2,
        ),
    ]
    return [r for r in out if r.podium in RESULTS and r.langgraph in RESULTS]


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def markdown(report_rows: list[Row]) -> str:
    lines = []
    group = None
    for row in report_rows:
        if row.group != group:
            group = row.group
            if lines:
                lines.append("")
            lines += [
                f"**{group}**",
                "",
                "| Row | Podium | LangGraph | Podium / LangGraph | Podium target | |",
                "| --- | ---: | ---: | ---: | ---: | --- |",
            ]
        p, lg = RESULTS[row.podium], RESULTS[row.langgraph]
        ratio = p.median / lg.median
        target = f"≤ {row.target:g}" if row.target is not None else "-"
        verdict = "" if row.target is None else ("ok" if p.median <= row.target else "**MISSED**")
        lines.append(
            f"| {row.label} | {fmt(p.median)} | {fmt(lg.median)} | {ratio:.3f} | {target} | {verdict} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    names = [
        "podium",
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "langchain-core",
        "aiosqlite",
        "ormsgpack",
        "pydantic",
        "SQLAlchemy",
    ]
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    found["python"] = platform.python_version()
    found["sqlite"] = sqlite3.sqlite_version
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each row")
    parser.add_argument("--reps-large", type=int, default=3, help="repetitions of 10,000-way rows")
    parser.add_argument("--no-large", action="store_true", help="skip the 10,000-way rows")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 rep, no 10,000-way")
    parser.add_argument(
        "--only", choices=("sequential", "fan-out", "journal"), help="run one group only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.warmup, args.no_large = 1, 1, True
    large = not args.no_large

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(
            f"warning: load average {load_before[0]:.2f} before the benchmark; other processes "
            "are competing for the CPUs and will inflate the numbers (best run on an idle machine)"
        )
    began = time.perf_counter()
    floor_before = sqlite_floor()
    log(
        f"sqlite floor: {floor_before['NORMAL']:.0f} µs/commit NORMAL, {floor_before['FULL']:.0f} FULL"
    )
    if args.only in (None, "sequential"):
        bench_sequential(args.reps, args.warmup)
    if args.only in (None, "fan-out"):
        bench_fan_out(FAN_SMALL, args.reps, args.warmup, ("NORMAL", "FULL"))
        if large:
            bench_fan_out(FAN_LARGE, args.reps_large, 0, ("NORMAL",))
    if args.only in (None, "journal"):
        bench_journal(max(1, min(args.reps, 3)))
    floor_after = sqlite_floor()
    log(
        f"sqlite floor: {floor_after['NORMAL']:.0f} µs/commit NORMAL, {floor_after['FULL']:.0f} FULL"
    )
    wall = time.perf_counter() - began
    load_after = os.getloadavg()

    report_rows = rows(large)
    table = markdown(report_rows)
    print(table)
    print()
    print(
        f"Median of {args.reps} runs after {args.warmup} warm-up "
        f"({args.reps_large} runs, no extra warm-up, for 10,000-way); "
        f"whole benchmark {wall:.0f} s on {os.cpu_count()} CPUs "
        f"(load average {load_before[0]:.2f} before, {load_after[0]:.2f} after)."
    )
    print(
        "Bare sqlite3 commit on this disk (WAL, one row per transaction), before / after: "
        f"NORMAL {floor_before['NORMAL']:.0f} / {floor_after['NORMAL']:.0f} µs, "
        f"FULL {floor_before['FULL']:.0f} / {floor_after['FULL']:.0f} µs."
    )
    if args.json:
        document = {
            "benchmark": "engine",
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in load_after],
            },
            "versions": versions(),
            "settings": {
                "reps": args.reps,
                "warmup": args.warmup,
                "reps_large": args.reps_large if large else 0,
                "sequential_steps": SEQ_STEPS,
                "fan_out": [FAN_SMALL, *([FAN_LARGE] if large else [])],
                "journal_steps": JOURNAL_STEPS,
                "payload_bytes": PAYLOAD_BYTES,
            },
            "wall_seconds": round(wall, 1),
            "sqlite_commit_floor_us": {"before": floor_before, "after": floor_after},
            "rows": [
                {
                    "group": r.group,
                    "row": r.label,
                    "podium": r.podium,
                    "langgraph": r.langgraph,
                    "unit": RESULTS[r.podium].unit,
                    "podium_median": RESULTS[r.podium].median,
                    "langgraph_median": RESULTS[r.langgraph].median,
                    "ratio": RESULTS[r.podium].median / RESULTS[r.langgraph].median,
                    "target": r.target,
                    "target_met": None
                    if r.target is None
                    else RESULTS[r.podium].median <= r.target,
                }
                for r in report_rows
            ],
            "measurements": {
                k: {**asdict(m), "median": m.median} for k, m in sorted(RESULTS.items())
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(args.json)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
