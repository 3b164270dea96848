"""Alembic revisions, one module per schema change (applied in ``down_revision`` order)."""
