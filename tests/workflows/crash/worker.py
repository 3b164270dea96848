"""Runs (or resumes) one crash-saga run; prints READY once the engine is about to work and the
result as JSON at the end. Usage: worker.py STORE_URL LEDGER RUN_ID"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from podium import Engine, RunNotFound, load_workflow, open_store


async def main(url: str, ledger: str, run_id: str) -> None:
    store = await open_store(url)
    engine = Engine(store)
    plan = load_workflow(Path(__file__).with_name("saga.yaml"))
    print("READY", flush=True)
    try:
        try:
            result = await engine.resume(run_id)
        except RunNotFound:
            result = await engine.run(plan, {"ledger": ledger, "claim": 100}, run_id=run_id)
    finally:
        await engine.close()
        await store.close()
    print(json.dumps({"status": result.status, "output": result.output, "error": result.error}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
