"""Settings, built once at the edge (CLI, server, test) from an injected environment.

Nothing in Podium reads ``os.environ`` except :meth:`Settings.from_env`, and nothing keeps
configuration in module globals: a ``Settings`` object is passed explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.errors import ConfigError

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class Settings(BaseModel):
    """Podium's settings. Every field maps to an environment variable ``PODIUM_<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default=Path(".podium"))
    """Directory for the embedded database and local state."""

    database_url: str | None = None
    """SQLAlchemy URL of the store. ``None`` means SQLite at ``<home>/podium.db``;
    ``memory://`` keeps runs in memory (nothing survives the process);
    ``postgresql+psycopg://…`` for shared deployments."""

    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    """SQLite's ``PRAGMA synchronous`` in WAL mode. ``NORMAL`` (default) survives any process
    crash (SIGKILL) but may lose the last acknowledged steps on a power cut or kernel panic;
    ``FULL`` fsyncs every commit and survives power loss too, at a higher cost per step."""

    max_concurrency: int = Field(default=64, ge=1)
    """Default bound on concurrently running branches of one parallel block."""

    thread_pool_size: int = Field(default=32, ge=1)
    """Threads available to synchronous step functions."""

    @property
    def store_url(self) -> str:
        """The effective store URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'podium.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``PODIUM_*`` variables (pass ``os.environ`` at the edge)."""
        values: dict[str, str] = {}
        for name in cls.model_fields:
            key = f"PODIUM_{name.upper()}"
            if key in env:
                values[name] = env[key]
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"PODIUM_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
