"""Keep each audit record's wrapped data key in the record's row; drop ``audit_keys``.

Every audit append — one per governed model call — inserted two rows: the record, and its
wrapped data key in ``audit_keys``. The second insert dirtied a fourth B-tree page per append
(the records, their ``kind`` and ``team`` indexes, the keys), written to the write-ahead log and
later checkpointed back. ``audit_records`` now holds ``master_key_id`` and ``wrapped_key``
itself: outside the hashes, as before, and both ``NULL`` once a record is crypto-shredded (a shred
now rewrites those two columns instead of deleting a row). Records whose key was shredded before
this revision have no ``audit_keys`` row and get ``NULL``.

The columns are added in place (no table rebuild); filling them is one ``UPDATE`` over the trail.
The downgrade rebuilds ``audit_keys`` from the columns and, on SQLite, the records table without
them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _seq() -> sa.types.TypeEngine[int]:
    return sa.Integer() if op.get_bind().dialect.name == "sqlite" else sa.BigInteger()


def upgrade() -> None:
    """Add ``audit_records.master_key_id`` and ``wrapped_key``, fill them from ``audit_keys``,
    drop ``audit_keys``."""
    op.add_column("audit_records", sa.Column("master_key_id", sa.String(64), nullable=True))
    op.add_column("audit_records", sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE audit_records SET"
        " master_key_id = (SELECT k.master_key_id FROM audit_keys k"
        " WHERE k.seq = audit_records.seq),"
        " wrapped_key = (SELECT k.wrapped_key FROM audit_keys k WHERE k.seq = audit_records.seq)"
    )
    op.drop_table("audit_keys")


def downgrade() -> None:
    """Back to revision 0006: the keys in ``audit_keys`` (shredded records have no row)."""
    op.create_table(
        "audit_keys",
        sa.Column("seq", _seq(), autoincrement=False, nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_keys"),
    )
    op.execute(
        "INSERT INTO audit_keys (seq, master_key_id, wrapped_key)"
        " SELECT seq, master_key_id, wrapped_key FROM audit_records"
        " WHERE wrapped_key IS NOT NULL"
    )
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("wrapped_key")
        batch.drop_column("master_key_id")
