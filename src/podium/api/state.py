"""What the routes share while the server runs: the engine, the catalog, background work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request

from podium.api.catalog import WorkflowCatalog
from podium.api.errors import ApiError
from podium.errors import PodiumError
from podium.finops.ledger import Ledger
from podium.models.catalog import Catalog
from podium.workflows.engine import Engine

if TYPE_CHECKING:
    from podium.gateway.pipeline import Gateway
    from podium.governance.audit import AuditLog

log = logging.getLogger("podium.api")
T = TypeVar("T")


@dataclass
class ApiState:
    """The running server's engine and workflows, and the tasks it started in the background."""

    engine: Engine | None = None
    """Set by the lifespan; ``None`` before start-up and after shutdown."""
    catalog: WorkflowCatalog = field(default_factory=WorkflowCatalog)
    gateway: Gateway | None = None
    """The model call path the ``/v1`` routes and the workflows' model steps share."""
    ledger: Ledger | None = None
    """The cost ledger the FinOps routes read; ``None``: they answer 503."""
    model_catalog: Catalog | None = None
    """Model prices, for savings reports; ``None``: those answer 503."""
    audit: AuditLog | None = None
    """The audit trail (``None``: the audit and lineage routes answer 503)."""
    identity: Any = None
    """The identity store (organisations, teams, projects, users, API keys), once opened."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, T], *, what: str) -> asyncio.Task[T]:
        """Run ``work`` in the background; nobody awaits it, so a failure is logged."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)

        def finished(done: asyncio.Task[T]) -> None:
            self.tasks.discard(done)
            if done.cancelled():
                return
            exc = done.exception()
            if isinstance(exc, PodiumError):
                log.warning("%s failed: %s", what, exc)
            elif exc is not None:
                log.error("%s crashed", what, exc_info=exc)

        task.add_done_callback(finished)
        return task

    async def stop(self) -> None:
        """Cancel the background tasks and wait for them (interrupted runs stay resumable)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def get_state(request: Request) -> ApiState:
    """The app's :class:`ApiState` (a route dependency)."""
    state = getattr(request.app.state, "podium", None)
    if not isinstance(state, ApiState):
        raise RuntimeError("this app was not built by podium.api.create_app")
    return state


async def get_engine(request: Request) -> Engine:
    """The running engine (a route dependency)."""
    engine = get_state(request).engine
    if engine is None:
        raise RuntimeError("the API is not started: run the app's lifespan")
    return engine


async def get_gateway(request: Request) -> Gateway:
    """The running gateway (a route dependency)."""
    gateway = get_state(request).gateway
    if gateway is None:
        raise RuntimeError("the API is not started: run the app's lifespan")
    return gateway


async def get_ledger(request: Request) -> Ledger:
    """The cost ledger (a route dependency); a 503 when the server has none."""
    ledger = get_state(request).ledger
    if ledger is None:
        raise ApiError(503, "cost reports are unavailable: this server has no cost ledger")
    return ledger


async def _state(request: Request) -> ApiState:
    # async: FastAPI runs a sync dependency in a worker thread, a hop per request
    return get_state(request)


StateDep = Annotated[ApiState, Depends(_state)]
EngineDep = Annotated[Engine, Depends(get_engine)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
GatewayDep = Annotated["Gateway", Depends(get_gateway)]
