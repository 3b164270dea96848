"""Add ``audit_journal_moves``: the audit journal files whose records are in the chain.

A governed call's audit record is first written to an append-only journal file (one ``write``
before the call is answered) and moved into the chain in batches
(:mod:`podium.governance.journal`). The transaction that appends a file's records also inserts
the file's id here, and the row is deleted once the file is removed: a crash between the commit
and the removal leaves the row, so recovery never appends the file's records twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_journal_moves",
        sa.Column("journal_id", sa.String(128), primary_key=True),
        sa.Column("ts", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_journal_moves")
