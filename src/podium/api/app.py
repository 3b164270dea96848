"""The HTTP API application: ``create_app`` wires settings, engine, workflows, auth and routes.

Its lifespan opens the store (unless an engine is given), loads the served workflows, recovers in
the background every run a crash left running, and on shutdown stops background work and closes
what it opened. Interrupted runs stay resumable: the next start-up recovers them.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from podium import __version__
from podium.api.auth import (
    AdminToken,
    Authenticator,
    BearerAuth,
    Principal,
    StoredKeys,
    public_paths,
)
from podium.api.catalog import WorkflowCatalog
from podium.api.errors import install_error_handlers
from podium.api.limits import BodySizeLimit
from podium.api.routes import admin, costs, governance, health, runs, workflows
from podium.api.state import ApiState
from podium.config import Settings
from podium.errors import ConfigError
from podium.gateway import server
from podium.gateway.build import open_gateway
from podium.gateway.pipeline import Gateway
from podium.governance.identity import IdentityStore, open_identity
from podium.governance.retention import RetentionJob, RetentionScheduler
from podium.governance.workflow_audit import audited
from podium.store import open_store
from podium.types import Store
from podium.workflows.engine import Engine

if TYPE_CHECKING:
    from podium.gateway.config import GatewayConfig

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


async def _warm(gateway: Gateway) -> None:
    loaded = await gateway.warm_local()
    if loaded:
        log.info("warm pool: loaded %s", ", ".join(loaded))


class _Either:
    """Ask one authenticator, then the other."""

    def __init__(self, first: Authenticator, second: Authenticator) -> None:
        self.first, self.second = first, second

    def authenticate(self, token: str) -> Principal | None:
        return self.first.authenticate(token) or self.second.authenticate(token)


_NO_TELEMETRY: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}


def _otel_configured() -> bool:
    """OpenTelemetry is set up through its environment (``OTEL_*``, as
    ``opentelemetry-instrument`` and exporters are): then FastAPI's native spans and metrics
    stay on. Otherwise they are off: FastAPI would look the global providers up on every
    request (~2% of the gateway's CPU) to find nothing configured."""
    return any(name.startswith("OTEL_") for name in os.environ)


RETENTION_EVERY_S: Final = 3600.0
"""How often the server runs the policy's retention rules (the first run a minute after start)."""


def _retention(gateway: Gateway, store: Store) -> RetentionScheduler | None:
    """The scheduled retention job of the gateway's policy, when it has rules and an audit log."""
    governance = gateway.governance
    if governance is None or not governance.policy.retention:
        return None
    caches = [gateway.cache.backend] if gateway.cache is not None else []
    job = RetentionJob(governance.audit, store, caches, governance.policy.retention, gateway.clock)
    return RetentionScheduler(job, RETENTION_EVERY_S, delay_s=60.0)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    workflows_dir: Path | None = None,
    admin_token: str,
    gateway: Gateway | None = None,
    gateway_config: GatewayConfig | None = None,
    authenticator: Authenticator | None = None,
    identity: IdentityStore | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Podium's settings; the store is opened from ``settings.store_url``.
        engine: Serve this engine instead of opening a store. The caller keeps owning it: it is
            not closed on shutdown.
        workflows_dir: Directory whose ``*.yaml`` workflows the API serves by name (none if
            ``None``). Invalid files are skipped and logged with their located problems.
        admin_token: The bearer token that grants every permission. Never logged.
        gateway: Serve this gateway (the caller keeps owning it). ``None``: open one from
            ``gateway_config`` (or the defaults) on the store's database, owned by the app.
        gateway_config: The gateway's configuration file, loaded.
        authenticator: Accepts tokens besides the admin token (e.g. :class:`ClientKeys`);
            it is asked first, then the admin token.
        identity: Serve this identity store (organisations, teams, users, ``pod_…`` API keys;
            the caller keeps owning and refreshing it). ``None``: open one on the store's
            database, owned by the app, its keys reloaded every few seconds.

    Raises:
        ConfigError: The admin token is empty.
    """
    if not admin_token:
        raise ConfigError("the admin token must not be empty")
    state = ApiState()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store: Store | None = None
        own_gateway: Gateway | None = None
        active = engine
        served = gateway
        if active is None:
            store = await open_store(
                settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
            )
            # The scheme only: the rest of a URL may hold a password.
            log.info("opened the %s store", settings.store_url.partition("://")[0])
        try:
            if served is None:
                served = own_gateway = await open_gateway(settings, gateway_config)
        except BaseException:
            if store is not None:
                await store.close()
            raise
        if active is None:
            assert store is not None
            # Every step, run transition and approval is audited with the gateway's calls.
            active = Engine(audited(store, served), settings=settings, gateway=served)
        state.gateway = served
        audit_preset = state.audit is not None
        if not audit_preset and served.governance is not None:
            state.audit = served.governance.audit
        preset = state.ledger is not None
        if not preset:
            state.ledger = served.ledger
        if state.model_catalog is None:
            state.model_catalog = served.hub.catalog
        own_identity: IdentityStore | None = None
        retention: RetentionScheduler | None = None
        try:
            if identity is None:
                state.identity = own_identity = await open_identity(settings, audit=state.audit)
                what = "reloading the API keys"
                state.spawn(own_identity.refresh_forever(), what=what)
            else:
                state.identity = identity
            state.catalog = WorkflowCatalog.load(workflows_dir, registry=active.registry)
            state.engine = active
            state.spawn(_recover(active), what="recovery of interrupted runs")
            state.spawn(_warm(served), what="warming the local models")
            retention = _retention(served, store if store is not None else active.store)
            if retention is not None:
                retention.start()
            yield
        finally:
            if retention is not None:
                await retention.stop()
            await state.stop()
            state.identity = None
            if own_identity is not None:
                await own_identity.close()
            state.engine = None
            state.gateway = None
            if not audit_preset:
                state.audit = None
            if not preset:
                state.ledger = None
            if store is not None:
                await active.close()
                await store.close()
            if own_gateway is not None:
                await own_gateway.close()

    app = PodiumAPI(
        title="Podium",
        version=__version__,
        description=(
            "Durable multi-model AI workflows. Every route but `/healthz` and these docs needs "
            "`Authorization: Bearer <token>`; each operation names the permission it requires "
            "as its bearer scope."
        ),
        lifespan=lifespan,
        telemetry=None if _otel_configured() else _NO_TELEMETRY,
    )
    app.state.podium = state
    install_error_handlers(app)
    # The gateway first: routes are matched in order, and /v1 carries the traffic.
    app.include_router(server.router)
    app.include_router(health.router)
    app.include_router(workflows.router)
    app.include_router(runs.router)
    app.include_router(costs.router)
    app.include_router(admin.router)
    app.include_router(governance.router)
    # The last added runs first: who is calling, then how much they send, then the route.
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    auth: Authenticator = AdminToken(admin_token)
    if authenticator is not None:
        auth = _Either(authenticator, auth)
    # Stored keys first: a `pod_` token is looked up in one dict, any other passed over at once.
    auth = _Either(StoredKeys(lambda: state.identity), auth)
    app.add_middleware(BearerAuth, authenticator=auth, public_paths=public_paths(app))
    app.fast_path = functools.partial(
        server.ChatFastPath,
        authenticator=auth,
        max_bytes=MAX_BODY_BYTES,
        gateway=lambda: state.gateway,
    )
    return app


class PodiumAPI(FastAPI):
    """The FastAPI app, with the gateway's hot route (:class:`~podium.gateway.server.ChatFastPath`)
    outermost: served without the stack under it (same checks, same errors), before even
    FastAPI's and Starlette's own error and body-limit layers; every other request passes
    through. (A user middleware always sits inside those layers, hence this subclass.)"""

    fast_path: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.fast_path is None else self.fast_path(stack)
