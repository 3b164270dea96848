"""The SQL stores' tables, as SQLAlchemy Core metadata.

This module is the reference the migrations must reproduce: a test upgrades an empty database to
``head`` and checks that the reflected schema has no difference from :data:`metadata`. Change a
table here only together with a new revision in ``podium/store/migrations/versions``.

Both SQLite and PostgreSQL enforce the foreign keys from ``events`` and ``signals`` to ``runs``:
they are how an append or a signal to an unknown run is refused without an extra query.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint and index names, fixed so that migrations can name what they create."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("workflow", String(200), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("updated_at", Float, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("parent_id", String(64), nullable=True),
)
"""One row per run: its header (see :class:`podium.types.RunRecord`)."""

events = Table(
    "events",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(24), nullable=False),
    Column("step", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("data", Text, nullable=True),
)
"""The append-only journal (see :class:`podium.types.Event`); the primary key orders it."""

signals = Table(
    "signals",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("payload", Text, nullable=False),
)
"""External signals delivered to a run, first write wins."""
