"""Alembic migrations of the SQL stores, run programmatically (no ``alembic.ini`` needed).

:func:`upgrade_to_head` is what :meth:`podium.store.sql.SQLStore.open` calls. It holds a lock while
it migrates, so several processes opening the same database at once apply each revision once:
PostgreSQL takes a transaction-level advisory lock, SQLite a ``BEGIN IMMEDIATE`` write lock.
Both databases run DDL transactionally, so a failed upgrade leaves the schema as it was.

To write a new revision, build the config with :func:`alembic_config` and call
``alembic.command.revision`` on it, or point the ``alembic`` CLI at this directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

SCRIPT_LOCATION = Path(__file__).resolve().parent
"""The Alembic script directory: this package (``env.py``, ``versions/``)."""

PG_ADVISORY_LOCK_KEY = 0x706F6469756D
"""Key of the PostgreSQL advisory lock serialising migrations (``"podium"`` in ASCII)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Build an Alembic config for Podium's migrations, without an ini file.

    Args:
        connection: The connection ``env.py`` migrates on. Any transaction open on it is the
            caller's to commit.

    Returns:
        The config, ready for the functions of :mod:`alembic.command`.
    """
    config = Config()
    # ConfigParser interpolates "%": escape it in the path.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest revision, in one locked transaction.

    Args:
        engine: A synchronous engine on SQLite or PostgreSQL.
    """
    with engine.connect() as connection, connection.begin():
        dialect = connection.dialect.name
        if dialect == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_ADVISORY_LOCK_KEY}
            )
        elif dialect == "sqlite":
            # pysqlite only begins transactions before DML; take the write lock now so that
            # the DDL runs inside it and concurrent upgrades wait (busy_timeout) for each other.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        command.upgrade(alembic_config(connection), "head")
