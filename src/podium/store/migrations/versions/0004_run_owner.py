"""Record the owner of a run: the org and team that started it.

Every run belongs to an organisation: the engine records ``default`` for a run started without
an owner (the CLI), the API the caller's org. Runs started before this revision predate
organisations, so they are moved into ``default`` too; their ``team`` stays NULL: no team owns
them, and only an org-wide principal sees them. The index serves the team-scoped run list, which
filters on ``team`` and sorts on ``created_at``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``runs.org`` and ``runs.team`` columns and the team list index."""
    op.add_column("runs", sa.Column("org", sa.String(200), nullable=True))
    op.add_column("runs", sa.Column("team", sa.String(200), nullable=True))
    op.create_index("ix_runs_team_created_at", "runs", ["team", "created_at"])
    runs = sa.table("runs", sa.column("org", sa.String(200)))
    op.execute(runs.update().where(runs.c.org.is_(None)).values(org="default"))


def downgrade() -> None:
    """Drop the owner columns and their index."""
    op.drop_index("ix_runs_team_created_at", table_name="runs")
    op.drop_column("runs", "team")
    op.drop_column("runs", "org")
