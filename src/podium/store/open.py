"""Pick and open a store backend from its URL."""

from __future__ import annotations

from podium.errors import ConfigError
from podium.store.memory import MemoryStore
from podium.store.sql import SQL_SCHEMES, SQLStore
from podium.types import Store

SUPPORTED_URLS = (
    "memory://",
    "sqlite:///<path>",
    "postgresql+psycopg://<user>@<host>/<db>",
    "postgresql://…",
    "postgres://…",
)
"""The URL forms :func:`open_store` accepts, as listed in its error message."""


async def open_store(url: str, *, sqlite_synchronous: str = "NORMAL") -> Store:
    """Open the store a URL names, migrating a SQL database to the newest schema.

    Args:
        url: ``memory://`` (nothing survives the process), ``sqlite:///path/to/podium.db``, or a
            PostgreSQL URL: ``postgresql+psycopg://…``, with ``postgresql://`` and ``postgres://``
            accepted as aliases.
        sqlite_synchronous: SQLite's ``PRAGMA synchronous`` (see
            :attr:`podium.config.Settings.sqlite_synchronous`); ignored by other backends.

    Returns:
        The open store. Call ``await store.close()`` when done.

    Raises:
        ConfigError: The URL names no supported backend, or a setting is invalid.
        StoreError: The database cannot be reached or migrated.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryStore()
    if scheme in SQL_SCHEMES:
        return await SQLStore.open(url, sqlite_synchronous=sqlite_synchronous)
    # Only the scheme is shown: the rest of a URL may hold a password.
    raise ConfigError(
        f"unsupported store URL scheme {scheme!r}; use one of: {', '.join(SUPPORTED_URLS)}"
    )
