"""Liveness: the one route that needs no token."""

from __future__ import annotations

from fastapi import APIRouter

from podium.api.auth import public
from podium.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
async def healthz() -> Health:
    """The server is up."""
    return Health()
