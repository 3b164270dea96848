"""The HTTP API application: ``create_app`` wires settings, engine, workflows, auth and routes.

Its lifespan opens the store (unless an engine is given), loads the served workflows, recovers in
the background every run a crash left running, and on shutdown stops background work and closes
what it opened. Interrupted runs stay resumable: the next start-up recovers them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from podium import __version__
from podium.api.auth import AdminToken, BearerAuth, public_paths
from podium.api.catalog import WorkflowCatalog
from podium.api.errors import install_error_handlers
from podium.api.limits import BodySizeLimit
from podium.api.routes import health, runs, workflows
from podium.api.state import ApiState
from podium.config import Settings
from podium.errors import ConfigError
from podium.store import open_store
from podium.types import Store
from podium.workflows.engine import Engine

log = logging.getLogger("podium.api")

MAX_BODY_BYTES: Final = 1024 * 1024
"""Request bodies over 1 MiB are refused with a 413."""


async def _recover(engine: Engine) -> None:
    results = await engine.recover()
    if not results:
        log.info("recovery: no runs were left running")
        return
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    log.info("recovery: resumed %d run(s) a crash left running (%s)", len(results), counts)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    workflows_dir: Path | None = None,
    admin_token: str,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Podium's settings; the store is opened from ``settings.store_url``.
        engine: Serve this engine instead of opening a store. The caller keeps owning it: it is
            not closed on shutdown.
        workflows_dir: Directory whose ``*.yaml`` workflows the API serves by name (none if
            ``None``). Invalid files are skipped and logged with their located problems.
        admin_token: The bearer token that grants every permission. Never logged.

    Raises:
        ConfigError: The admin token is empty.
    """
    if not admin_token:
        raise ConfigError("the admin token must not be empty")
    state = ApiState()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store: Store | None = None
        active = engine
        if active is None:
            store = await open_store(
                settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
            )
            # The scheme only: the rest of a URL may hold a password.
            log.info("opened the %s store", settings.store_url.partition("://")[0])
            active = Engine(store, settings=settings)
        try:
            state.catalog = WorkflowCatalog.load(workflows_dir, registry=active.registry)
            state.engine = active
            state.spawn(_recover(active), what="recovery of interrupted runs")
            yield
        finally:
            await state.stop()
            state.engine = None
            if store is not None:
                await active.close()
                await store.close()

    app = FastAPI(
        title="Podium",
        version=__version__,
        description=(
            "Durable multi-model AI workflows. Every route but `/healthz` and these docs needs "
            "`Authorization: Bearer <token>`; each operation names the permission it requires "
            "as its bearer scope."
        ),
        lifespan=lifespan,
    )
    app.state.podium = state
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(workflows.router)
    app.include_router(runs.router)
    # The last added runs first: who is calling, then how much they send, then the route.
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(
        BearerAuth, authenticator=AdminToken(admin_token), public_paths=public_paths(app)
    )
    return app
