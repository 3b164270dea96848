"""Audit trail throughput: append (one record per transaction, and batched) and verify.

Measures :class:`podium.governance.AuditLog` on a SQLite file and on PostgreSQL, on this machine,
against the governance issue's targets (batched append >= 20k records/s, verify >= 200k
records/s). Run from the repository root with the dev venv::

    .venv/bin/python benchmarks/governance/bench_audit.py                 # both backends
    .venv/bin/python benchmarks/governance/bench_audit.py --backends sqlite --records 20000
    .venv/bin/python benchmarks/governance/bench_audit.py --json benchmarks/results/audit.json

PostgreSQL: a server at 127.0.0.1:5432 (user ``postgres``, trust auth, database ``test`` for
administration, as the test suite expects); the benchmark creates its own database and drops it.
The method is in ``benchmarks/governance/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from podium.governance import AuditEntry, AuditLog, MasterKey, SigningKey
from podium.types import SystemClock

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
TARGETS = {"append_batched": 20_000.0, "verify": 200_000.0}


def entry(i: int) -> AuditEntry:
    """A ``model_call``-shaped record: ~15 small header fields, a ~250-byte payload."""
    return AuditEntry(
        kind="model_call",
        actor=f"key_{i % 7}",
        team=("ml", "search", "support")[i % 3],
        header={
            "request_id": f"req_{i:012d}",
            "call_kind": "chat",
            "org": "acme",
            "project": "assistant",
            "key_id": f"key_{i % 7}",
            "model_requested": "fast",
            "model_served": "openai/gpt-4o-mini",
            "deployment": "gpt-4o-mini@eu",
            "provider": "openai",
            "cost": Decimal("0.000123") * (i % 50 + 1),
            "outcome": "ok",
            "cache": "miss",
            "classification": "internal",
            "policy": {"id": "acme", "version": "sha256:1a2b3c4d5e6f", "rule": "eng-hosted"},
        },
        payload={
            "prompt": f"Summarise ticket {i}: the customer cannot log in since the last update.",
            "response": "The customer reports a login failure after updating; reset the session.",
            "usage": {"input_tokens": 42, "output_tokens": 17},
            "latency_s": 0.412,
        },
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark run, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"podium_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="podium-bench-audit-") as folder:
        yield f"sqlite:///{Path(folder) / 'audit.db'}"


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children (verify's
    forked workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process's threads and its child processes) spent in
    ``work``."""
    gc.collect()
    start, cpu = time.perf_counter(), _cpu()
    await work()
    return time.perf_counter() - start, _cpu() - cpu


async def bench_backend(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    master, signer = MasterKey.generate(), SigningKey.generate()
    log = await AuditLog.open(url, clock=SystemClock(), master=master, signer=signer)
    out: dict[str, Any] = {"backend": backend}
    try:
        n = 0

        # Single: one record per call (one transaction each), as an unbatched sink would.
        async def single() -> None:
            nonlocal n
            for _ in range(args.single):
                await log.append(entry(n))
                n += 1

        seconds, cpu = await timed(single)
        out["append_single"] = args.single / seconds
        out["append_single_cpu"] = args.single / cpu
        print(f"{backend}: single append {out['append_single']:,.0f}/s", file=sys.stderr)

        # Batched: append_many of --batch records per transaction, until --records are stored.
        batches = [
            [entry(i) for i in range(start, min(start + args.batch, args.records))]
            for start in range(n, args.records, args.batch)
        ]
        batched_count = sum(len(b) for b in batches)

        async def batched() -> None:
            for batch in batches:
                await log.append_many(batch)

        seconds, cpu = await timed(batched)
        out["append_batched"] = batched_count / seconds
        out["append_batched_cpu"] = batched_count / cpu
        print(f"{backend}: batched append {out['append_batched']:,.0f}/s", file=sys.stderr)

        # Verify: the whole chain (checkpoints every 1000 records), median of --reps.
        samples: list[float] = []
        cpu_samples: list[float] = []
        result = None
        for _ in range(args.reps):

            async def verify() -> None:
                nonlocal result
                result = await log.verify()

            seconds, cpu = await timed(verify)
            samples.append(seconds)
            cpu_samples.append(cpu)
        if result is None or not result.ok:
            raise SystemExit(f"{backend}: the log does not verify: {result}")
        out["records"] = result.records
        out["verify"] = result.records / statistics.median(samples)
        out["verify_cpu"] = result.records / statistics.median(cpu_samples)
        out["verify_samples_s"] = samples
        print(f"{backend}: verify {out['verify']:,.0f}/s over {result.records}", file=sys.stderr)
    finally:
        await log.close()
    return out


def table(results: list[dict[str, Any]]) -> str:
    """Records per wall-clock second, and (in parentheses) per CPU-second of this process: the
    second is what a busy machine changes least (the PostgreSQL server's CPU is not in it)."""
    lines = [
        "| backend | append, single (records/s) | append, batched (records/s) | verify (records/s) |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['append_single']:,.0f} ({r['append_single_cpu']:,.0f}) | "
            f"{r['append_batched']:,.0f} ({r['append_batched_cpu']:,.0f}) | "
            f"{r['verify']:,.0f} ({r['verify_cpu']:,.0f}), {r['records']:,} records |"
        )
    lines.append(
        f"| **target** | — | ≥ {TARGETS['append_batched']:,.0f} | ≥ {TARGETS['verify']:,.0f} |"
    )
    lines.append("")
    lines.append(
        "records per wall-clock second (per CPU-second of the benchmark's process and its "
        "forked verify workers)"
    )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--records", type=int, default=100_000, help="records in the log")
    parser.add_argument("--single", type=int, default=2_000, help="single appends timed")
    parser.add_argument("--batch", type=int, default=1_000, help="records per append_many")
    parser.add_argument("--reps", type=int, default=3, help="verify runs (median)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f}: results will be low", file=sys.stderr)
    results = []
    for backend in args.backends.split(","):
        database = sqlite_database() if backend == "sqlite" else postgres_database()
        with database as url:
            results.append(await bench_backend(backend, url, args))
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "machine": {
                        "python": platform.python_version(),
                        "cpus": os.cpu_count(),
                        "load_before": load_before,
                        "load_after": os.getloadavg(),
                    },
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    asyncio.run(main())
