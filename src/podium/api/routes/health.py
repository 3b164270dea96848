"""Liveness and readiness: the two routes that need no token (orchestrators probe them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from podium.api.auth import public
from podium.api.schemas import Health, Readiness
from podium.api.state import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
async def healthz() -> Health:
    """The process is up (it may still be starting)."""
    return Health()


@router.get(
    "/readyz",
    dependencies=[public()],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting or stopping"}},
)
async def readyz(state: StateDep) -> Any:
    """The store and the gateway are open: the server takes runs and model calls."""
    ready = Readiness(store=state.engine is not None, gateway=state.gateway is not None)
    if ready.store and ready.gateway:
        return ready
    return JSONResponse(ready.model_dump(), status_code=503)
