"""The shortest way to run a workflow from Python: ``await podium.run(workflow, inputs)``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from podium.store import MemoryStore, open_store
from podium.types import Store
from podium.workflows.engine import Engine, RunResult
from podium.workflows.plan import Plan, load_workflow
from podium.workflows.spec import Workflow


async def run(
    workflow: Workflow | Plan | str | Path,
    inputs: dict[str, Any] | None = None,
    *,
    store: Store | str | None = None,
    **engine_options: Any,
) -> RunResult:
    """Run a workflow (a definition, a plan, or a YAML file path) to completion or suspension.

    ``store`` is a :class:`~podium.types.Store` or a store URL; by default runs are kept in
    memory. Pass ``store="sqlite:///runs.db"`` for durable runs you can resume.
    Other keyword arguments go to :class:`~podium.workflows.engine.Engine`.
    """
    target = load_workflow(workflow) if isinstance(workflow, str | Path) else workflow
    owned = not isinstance(store, Store)
    backend: Store
    if store is None:
        backend = MemoryStore()
    elif isinstance(store, str):
        backend = await open_store(store)
    else:
        backend = store
    gateway = None
    if engine_options.get("gateway") is None:
        from podium.config import Settings
        from podium.finops.ledger import MemoryLedger
        from podium.gateway.build import open_gateway

        settings = engine_options.get("settings") or Settings.from_env(os.environ)
        gateway = await open_gateway(settings, ledger=MemoryLedger())
        engine_options["gateway"] = gateway
    engine = Engine(backend, **engine_options)
    try:
        return await engine.run(target, inputs)
    finally:
        await engine.close()
        if gateway is not None:
            await gateway.close()
        if owned:
            await backend.close()


def run_sync(
    workflow: Workflow | Plan | str | Path,
    inputs: dict[str, Any] | None = None,
    **options: Any,
) -> RunResult:
    """Blocking :func:`run`, for scripts and notebooks without an event loop."""
    return asyncio.run(run(workflow, inputs, **options))
