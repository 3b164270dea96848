"""The API's routers, one per resource."""

from podium.api.routes import health, runs, workflows

__all__ = ["health", "runs", "workflows"]
