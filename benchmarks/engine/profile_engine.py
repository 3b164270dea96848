"""Profile one Podium engine scenario of the benchmark with cProfile.

Usage (from the repository root, with either venv):

    .venv/bin/python benchmarks/engine/profile_engine.py seq-sqlite --level FULL
    .venv/bin/python benchmarks/engine/profile_engine.py fan-for-each --n 10000 --sort tottime

Prints the top functions (file:line) of a few runs after a warm-up run; ``--out`` also keeps
the raw profile for snakeviz or ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from podium.store import MemoryStore, open_store
from podium.types import Store
from podium.workflows.engine import Engine
from podium.workflows.plan import Plan
from podium.workflows.spec import CallStep, ForEachStep, ParallelStep, Workflow

SCENARIOS = ("seq-memory", "seq-sqlite", "fan-for-each", "fan-parallel", "fan-for-each-sqlite")


async def noop() -> None:
    return None


async def work(x: int) -> int:
    return x


def build(scenario: str, n: int) -> tuple[Plan, dict[str, Any] | None]:
    if scenario.startswith("seq"):
        steps: list[Any] = [CallStep(id=f"s{i}", call=noop) for i in range(n)]
        workflow = Workflow(name="seq", steps=steps)
        inputs = None
    elif scenario == "fan-parallel":
        branches: list[Any] = [CallStep(id=f"b{i}", call=work, input={"x": i}) for i in range(n)]
        workflow = Workflow(
            name="parallel", steps=[ParallelStep(id="p", parallel=branches, max_concurrency=n)]
        )
        inputs = None
    else:
        step = ForEachStep(
            id="f",
            for_each="{{ inputs.batch }}",
            do=[CallStep(id="w", call=work, input={"x": "{{ item }}"})],
            max_concurrency=n,
            max_items=n,
        )
        workflow = Workflow(name="for_each", inputs={"batch": "array"}, steps=[step])
        inputs = {"batch": list(range(n))}
    return Engine(MemoryStore()).plan(workflow), inputs


async def one_run(
    plan: Plan,
    inputs: dict[str, Any] | None,
    sqlite: bool,
    level: str,
    prof: cProfile.Profile | None,
) -> float:
    directory = Path(tempfile.mkdtemp(prefix="podium-profile-"))
    try:
        store: Store = (
            await open_store(f"sqlite:///{directory / 'p.db'}", sqlite_synchronous=level)
            if sqlite
            else MemoryStore()
        )
        engine = Engine(store)
        start = time.perf_counter()
        if prof is not None:
            prof.enable()
        result = await engine.run(plan, inputs)
        if prof is not None:
            prof.disable()
        elapsed = time.perf_counter() - start
        assert result.status == "completed", result.error
        await engine.close()
        await store.close()
        return elapsed
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile one Podium benchmark scenario.")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--n", type=int, default=1000, help="steps or branches")
    parser.add_argument("--level", default="NORMAL", help="SQLite synchronous level")
    parser.add_argument("--runs", type=int, default=5, help="profiled runs")
    parser.add_argument("--sort", default="tottime", help="pstats sort key")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also write the raw profile here")
    args = parser.parse_args(argv)

    plan, inputs = build(args.scenario, args.n)
    sqlite = args.scenario in ("seq-sqlite", "fan-for-each-sqlite")

    async def go() -> list[float]:
        await one_run(plan, inputs, sqlite, args.level, None)  # warm-up
        prof = cProfile.Profile()
        times = [await one_run(plan, inputs, sqlite, args.level, prof) for _ in range(args.runs)]
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats(args.sort).print_stats(args.top)
        if args.out:
            stats.dump_stats(args.out)
        return times

    times = asyncio.run(go())
    per = 1e6 / args.n if args.scenario.startswith("seq") else 1e3
    unit = "µs/step" if args.scenario.startswith("seq") else "ms/run"
    print(f"{args.scenario}: {', '.join(f'{t * per:.1f}' for t in times)} {unit} (under cProfile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
