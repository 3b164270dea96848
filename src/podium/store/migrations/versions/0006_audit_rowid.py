"""Store the audit tables' ``seq`` as SQLite's rowid; drop the index on the wrapped keys'
master key id.

On SQLite only a column declared exactly ``INTEGER`` is an alias of the rowid when it is the
primary key. Revision 0003 declared ``seq`` ``BIGINT``, so SQLite kept every ``seq`` twice: in
the table (keyed by a hidden rowid) and in an automatic unique index. Each audit append — one
per governed model call — dirtied both, in ``audit_records`` and ``audit_keys``, and wrote them
to the write-ahead log. The index on ``audit_keys.master_key_id`` served only key rotation,
which walks the keys in ``seq`` order anyway and rewraps nearly every one it meets; it cost a
further page per append. Measured on one core: an append of one record took ~110 µs before,
~89 µs after, and wrote ~31 KiB of log instead of ~18 KiB (the B-tree pages it dirties: 7 → 4).

SQLite tables are rebuilt (Alembic's batch mode copies the rows and recreates the other
indexes), so upgrading a large trail takes a while once; the stored values do not change, and
neither do the hashes chained over them. PostgreSQL keeps ``BIGINT``: only the index goes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("audit_records", "audit_keys", "audit_checkpoints")


def _retype(to: sa.types.TypeEngine[int], was: sa.types.TypeEngine[int]) -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.alter_column("seq", type_=to, existing_type=was, existing_nullable=False)


def upgrade() -> None:
    """Drop ``ix_audit_keys_master_key_id``; on SQLite, rebuild the tables with ``seq``
    ``INTEGER``."""
    op.drop_index("ix_audit_keys_master_key_id", table_name="audit_keys")
    if op.get_bind().dialect.name == "sqlite":
        _retype(sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    """Back to revision 0005's ``BIGINT`` and index."""
    if op.get_bind().dialect.name == "sqlite":
        _retype(sa.BigInteger(), sa.Integer())
    op.create_index("ix_audit_keys_master_key_id", "audit_keys", ["master_key_id"])
