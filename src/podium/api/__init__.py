"""Podium's HTTP API (FastAPI): workflows, runs and human reviews under ``/api``.

Build it with :func:`create_app`; ``podium serve`` runs it with uvicorn.
"""

from podium.api.app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app"]
