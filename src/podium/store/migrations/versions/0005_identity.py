"""Create the identity tables: organisations, teams, projects, users and API keys.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    """Create ``orgs``, ``teams``, ``projects``, ``users`` and ``api_keys``."""
    op.create_table(
        "orgs",
        sa.Column("name", sa.String(64), nullable=False),
        *_created(),
        sa.PrimaryKeyConstraint("name", name="pk_orgs"),
    )
    op.create_table(
        "teams",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        *_created(),
        sa.PrimaryKeyConstraint("org", "name", name="pk_teams"),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name="fk_teams_org_orgs"),
    )
    op.create_table(
        "projects",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        *_created(),
        sa.PrimaryKeyConstraint("org", "team", "name", name="pk_projects"),
        sa.ForeignKeyConstraint(
            ["org", "team"], ["teams.org", "teams.name"], name="fk_projects_org_teams"
        ),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        *_created(),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name="fk_users_org_orgs"),
        sa.ForeignKeyConstraint(["org", "team"], ["teams.org", "teams.name"], name="fk_users_team"),
    )
    op.create_index("ix_users_org_team", "users", ["org", "team"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("use_case", sa.String(200), nullable=True),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        *_created(),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("rotated_from", sa.String(32), nullable=True),
        sa.Column("rotated_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name="fk_api_keys_org_orgs"),
        sa.ForeignKeyConstraint(
            ["org", "team"], ["teams.org", "teams.name"], name="fk_api_keys_team"
        ),
        sa.ForeignKeyConstraint(
            ["org", "team", "project"],
            ["projects.org", "projects.team", "projects.name"],
            name="fk_api_keys_project",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_api_keys_user_id_users"),
    )
    op.create_index("ix_api_keys_org_team", "api_keys", ["org", "team"])


def downgrade() -> None:
    """Drop the identity tables."""
    op.drop_index("ix_api_keys_org_team", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_users_org_team", table_name="users")
    op.drop_table("users")
    op.drop_table("projects")
    op.drop_table("teams")
    op.drop_table("orgs")
