"""Alembic environment: migrates the connection passed in ``config.attributes["connection"]``.

Without one (e.g. the ``alembic`` CLI), it connects to the ``sqlalchemy.url`` main option, or
renders SQL in offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from podium.store.schema import metadata


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    # Inside a transaction the caller opened, this is a no-op and the caller commits.
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("pass a connection in config.attributes or set sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
