"""Create the FinOps tables: the cost ledger, budget counters, reservations and alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Exact money: NUMERIC on PostgreSQL, fixed-point text on SQLite (see podium.store.schema).
EXACT = sa.Text().with_variant(sa.Numeric(), "postgresql")
# Whole picodollars, added up by the database itself.
PICO = sa.BigInteger().with_variant(sa.Numeric(38, 0), "postgresql")


def upgrade() -> None:
    """Create the four tables and the indexes reports and the sweeper use."""
    op.create_table(
        "cost_ledger",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("routed_from", sa.String(200), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("characters", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cost", EXACT, nullable=False),
        sa.Column("baseline_cost", EXACT, nullable=True),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("org", sa.String(200), nullable=True),
        sa.Column("team", sa.String(200), nullable=True),
        sa.Column("project", sa.String(200), nullable=True),
        sa.Column("key_id", sa.String(200), nullable=True),
        sa.Column("use_case", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("step", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", "attempt", name="pk_cost_ledger"),
    )
    op.create_index("ix_cost_ledger_day", "cost_ledger", ["day"])
    op.create_table(
        "budget_counters",
        sa.Column("budget_id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("spent", PICO, nullable=False),
        sa.Column("reserved", PICO, nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period", name="pk_budget_counters"),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("amount", PICO, nullable=False),
        sa.Column("actual", PICO, nullable=True),
        sa.Column("holds", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("reservation_id", name="pk_budget_reservations"),
    )
    op.create_index(
        "ix_budget_reservations_state_expires_at", "budget_reservations", ["state", "expires_at"]
    )
    op.create_table(
        "budget_alerts",
        sa.Column("budget_id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("threshold", sa.String(32), nullable=False),
        sa.Column("limit_amount", EXACT, nullable=False),
        sa.Column("spent", EXACT, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period", "threshold", name="pk_budget_alerts"),
    )


def downgrade() -> None:
    """Drop everything :func:`upgrade` created."""
    op.drop_table("budget_alerts")
    op.drop_index("ix_budget_reservations_state_expires_at", table_name="budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_table("budget_counters")
    op.drop_index("ix_cost_ledger_day", table_name="cost_ledger")
    op.drop_table("cost_ledger")
