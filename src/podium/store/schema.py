"""The SQL stores' tables, as SQLAlchemy Core metadata.

This module is the reference the migrations must reproduce: a test upgrades an empty database to
``head`` and checks that the reflected schema has no difference from :data:`metadata`. Change a
table here only together with a new revision in ``podium/store/migrations/versions``.

Both SQLite and PostgreSQL enforce the foreign keys from ``events`` and ``signals`` to ``runs``:
they are how an append or a signal to an unknown run is refused without an extra query.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.types import TypeEngine

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
    Column("org", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Index("ix_runs_team_created_at", "team", "created_at"),
)
"""One row per run: its header (see :class:`podium.types.RunRecord`). ``org``/``team`` name the
owner (revision 0004): NULL for runs no team owns, which only org-wide principals see."""

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


# -- FinOps (revision 0002) -----------------------------------------------------------------------
# Money is exact on both databases. Ledger amounts are ExactDecimal: PostgreSQL NUMERIC
# (unconstrained, exact), SQLite TEXT holding the decimal's fixed-point text (SQLite has no decimal
# type; its NUMERIC affinity would turn amounts into floats). Budget counters are whole
# picodollars (10^-12 USD) in an integer column, so the guarded UPDATE of a reservation does exact
# integer arithmetic inside the database: BIGINT on SQLite (up to ~9.2 million USD per counter),
# NUMERIC(38, 0) on PostgreSQL.


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` stored exactly: NUMERIC on PostgreSQL, fixed-point text on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"an exact amount must be a finite Decimal, not {value!r}")
        return value if dialect.name == "postgresql" else format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


PICO_UNITS = BigInteger().with_variant(Numeric(38, 0), "postgresql")
"""Whole picodollars (10^-12 USD), for counters the database adds up itself."""

cost_ledger = Table(
    "cost_ledger",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("day", String(10), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("routed_from", String(200), nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cache_read_tokens", Integer, nullable=False),
    Column("cache_write_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("characters", Integer, nullable=False),
    Column("images", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("cost", ExactDecimal(), nullable=False),
    Column("baseline_cost", ExactDecimal(), nullable=True),
    Column("cache_hit", Boolean, nullable=False),
    Column("org", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Column("project", String(200), nullable=True),
    Column("key_id", String(200), nullable=True),
    Column("use_case", String(200), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("step", Text, nullable=True),
)
"""One append-only row per priced model call (see :class:`podium.finops.ledger.LedgerEntry`):
usage counts, exact cost and attribution; no copied catalog data."""

budget_counters = Table(
    "budget_counters",
    metadata,
    Column("budget_id", String(200), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("spent", PICO_UNITS, nullable=False),
    Column("reserved", PICO_UNITS, nullable=False),
)
"""Spend and open reservations of one budget in one window (``period``: the window's first day,
or ``total``), in picodollars."""

budget_reservations = Table(
    "budget_reservations",
    metadata,
    Column("reservation_id", String(64), primary_key=True),
    Column("request_id", String(64), nullable=False),
    Column("amount", PICO_UNITS, nullable=False),
    Column("actual", PICO_UNITS, nullable=True),
    Column("holds", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Index("ix_budget_reservations_state_expires_at", "state", "expires_at"),
)
"""Reservations: ``held`` until ``settled``, ``released`` or ``expired``; ``holds`` is the JSON
list of the ``[budget_id, period]`` counters the amount is held on. The sweeper finds expired
holds, and old finished rows to forget, by ``(state, expires_at)``."""

budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("budget_id", String(200), primary_key=True),
    Column("period", String(16), primary_key=True),
    Column("threshold", String(32), primary_key=True),
    Column("limit_amount", ExactDecimal(), nullable=False),
    Column("spent", ExactDecimal(), nullable=False),
    Column("ts", Float, nullable=False),
)
"""Alert thresholds crossed by a budget's spend, each recorded once per window."""


# -- Audit trail (revisions 0003, 0006, 0007, 0008) ------------------------------------------------
# See podium.governance.audit: the chain commits to hashes only (header + payload ciphertext), so
# a record's data key can be deleted (crypto-shredding) and the chain still verifies.

AUDIT_SEQ = BigInteger().with_variant(Integer(), "sqlite")
"""The audit tables' ``seq``: on SQLite ``INTEGER``, so the primary key is the rowid itself, not
a second copy in a unique index (revision 0006)."""

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", AUDIT_SEQ, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("team", String(200), nullable=True, index=True),
    Column("header", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False),
    Column("master_key_id", String(64), nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),
)
"""The append-only audit chain: one row per record, ``seq`` 1, 2, … without gaps. ``header`` is
the record's canonical JSON header in clear; ``payload`` the AES-GCM nonce and ciphertext.
``wrapped_key`` is the payload's data key wrapped by the master key ``master_key_id``; both are
outside the hashes, and both ``NULL`` once the record is crypto-shredded. (Revisions before 0007
kept them in a table of their own, ``audit_keys``: a second insert and a fourth B-tree page
written per append.)"""

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", AUDIT_SEQ, primary_key=True, autoincrement=False),
    Column("chain_hash", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("signer_key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)
"""Ed25519 signatures over ``(seq, chain_hash)``, every N records and on demand."""

audit_journal_moves = Table(
    "audit_journal_moves",
    metadata,
    Column("journal_id", String(128), primary_key=True),
    Column("ts", Float, nullable=False),
)
"""Audit journal files whose records are in the chain (revision 0008): a file's id is inserted
in the transaction that appends its records, and deleted once the file is gone, so a crash
between the two never appends a file twice (see :mod:`podium.governance.journal`)."""


# -- Identity (revision 0005) ---------------------------------------------------------------------
# See podium.governance.identity. Organisations, teams and projects are named by slugs, the names
# the ledger, budgets and policies attribute calls with. A key's secret is never stored: only its
# visible prefix and HMAC-SHA256(pepper, key), the pepper being kept outside the database.

orgs = Table(
    "orgs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)
"""Organisations (``default`` always exists)."""

teams = Table(
    "teams",
    metadata,
    Column("org", String(64), ForeignKey("orgs.name"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)
"""Teams, each in one organisation."""

projects = Table(
    "projects",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("team", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    ForeignKeyConstraint(["org", "team"], ["teams.org", "teams.name"]),
)
"""Projects, each in one team."""

users = Table(
    "users",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("org", String(64), ForeignKey("orgs.name"), nullable=False),
    Column("team", String(64), nullable=True),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    ForeignKeyConstraint(["org", "team"], ["teams.org", "teams.name"], name="fk_users_team"),
    Index("ix_users_org_team", "org", "team"),
)
"""People: a role, and a team unless the role is org-wide (admin, auditor)."""

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("name", String(200), nullable=True),
    Column("org", String(64), ForeignKey("orgs.name"), nullable=False),
    Column("team", String(64), nullable=True),
    Column("project", String(64), nullable=True),
    Column("use_case", String(200), nullable=True),
    Column("user_id", String(32), ForeignKey("users.user_id"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("rotated_from", String(32), nullable=True),
    Column("rotated_at", Float, nullable=True),
    ForeignKeyConstraint(["org", "team"], ["teams.org", "teams.name"], name="fk_api_keys_team"),
    ForeignKeyConstraint(
        ["org", "team", "project"],
        ["projects.org", "projects.team", "projects.name"],
        name="fk_api_keys_project",
    ),
    Index("ix_api_keys_org_team", "org", "team"),
)
"""API keys: the visible ``prefix`` (unique: it finds the key), ``key_hash`` (hex HMAC-SHA256
under the server's pepper), role, bindings, expiry, revocation and rotation."""
