"""A small "claims system" in one SQLite file: what the insurance-claim saga changes in the world.

Every action is idempotent, keyed by the step's idempotency key (stable across retries and
crash/resume), so a step that runs again after an interruption changes nothing twice; the
``activity`` table lists each action once, in order, compensations included. Amounts are
Decimal strings; times come from the workflow's injected clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    claim_id TEXT PRIMARY KEY, policy TEXT NOT NULL, claimant TEXT NOT NULL,
    claimed TEXT NOT NULL, status TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    claim_id TEXT NOT NULL, kind TEXT NOT NULL, filename TEXT NOT NULL, sha256 TEXT NOT NULL,
    status TEXT NOT NULL, PRIMARY KEY (claim_id, kind));
CREATE TABLE IF NOT EXISTS screenings (
    claim_id TEXT PRIMARY KEY, score TEXT NOT NULL, signals TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reserves (
    claim_id TEXT PRIMARY KEY, amount TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payouts (
    reference TEXT PRIMARY KEY, claim_id TEXT NOT NULL, payee TEXT NOT NULL,
    amount TEXT NOT NULL, status TEXT NOT NULL, paid_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS activity (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, claim_id TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL, at TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE);
"""


class ClaimExists(Exception):
    """The claim was submitted before and is not withdrawn."""


def iso(seconds: float) -> str:
    """An injected clock's reading as an ISO UTC timestamp."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class ClaimsSystem:
    """The claims database at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        if not str(path):
            raise ValueError("db must be the path of the claims system's SQLite file")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()

    @staticmethod
    def _log(
        db: sqlite3.Connection, claim_id: str, action: str, detail: str, at: str, key: str
    ) -> bool:
        """Record an action once per idempotency key; False when it was already done."""
        cur = db.execute(
            "INSERT OR IGNORE INTO activity (claim_id, action, detail, at, idempotency_key)"
            " VALUES (?, ?, ?, ?, ?)",
            (claim_id, action, detail, at, key),
        )
        return cur.rowcount == 1

    def open_claim(
        self, claim: Mapping[str, Any], documents: Sequence[Mapping[str, str]], at: str, key: str
    ) -> None:
        """Register the claim with its verified documents (a claim is registered once)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT c.status, a.idempotency_key FROM claims c LEFT JOIN activity a"
                " ON a.claim_id = c.claim_id AND a.action = 'documents_verified'"
                " WHERE c.claim_id = ? ORDER BY a.seq DESC LIMIT 1",
                (claim["claim_id"],),
            ).fetchone()
            if row is not None and row["idempotency_key"] != key and row["status"] != "withdrawn":
                raise ClaimExists(
                    f"claim {claim['claim_id']} is already registered ({row['status']})"
                )
            if not self._log(db, claim["claim_id"], "documents_verified",
                             ", ".join(d["kind"] for d in documents), at, key):  # fmt: skip
                return
            db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, 'documents_verified', '', ?)",
                (claim["claim_id"], claim["policy"], claim["claimant"], claim["claimed"], at),
            )
            for d in documents:
                db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, 'verified')",
                    (claim["claim_id"], d["kind"], d["filename"], d["sha256"]),
                )

    def release_documents(self, claim_id: str, at: str, key: str) -> None:
        with self._tx() as db:
            if self._log(db, claim_id, "documents_released", "", at, key):
                db.execute(
                    "UPDATE documents SET status = 'released' WHERE claim_id = ?", (claim_id,)
                )
                self._status(db, claim_id, "withdrawn", "", at)

    def record_screening(
        self, claim_id: str, score: Decimal, signals: Sequence[str], status: str, at: str, key: str
    ) -> None:
        with self._tx() as db:
            if self._log(db, claim_id, f"fraud_screening_{status}", f"score {score}", at, key):
                db.execute(
                    "INSERT OR REPLACE INTO screenings VALUES (?, ?, ?, ?)",
                    (claim_id, str(score), "; ".join(signals), status),
                )
                self._status(db, claim_id, f"screening_{status}", "", at)

    def void_screening(self, claim_id: str, at: str, key: str) -> None:
        with self._tx() as db:
            if self._log(db, claim_id, "fraud_screening_voided", "", at, key):
                db.execute(
                    "UPDATE screenings SET status = 'voided' WHERE claim_id = ?", (claim_id,)
                )

    def open_reserve(self, claim_id: str, amount: Decimal, at: str, key: str) -> None:
        """Set money aside for the claim (an insurer's reserve)."""
        with self._tx() as db:
            if self._log(db, claim_id, "reserve_opened", str(amount), at, key):
                db.execute(
                    "INSERT OR REPLACE INTO reserves VALUES (?, ?, 'open')", (claim_id, str(amount))
                )
                self._status(db, claim_id, "assessed", "", at)

    def release_reserve(self, claim_id: str, at: str, key: str) -> None:
        with self._tx() as db:
            if self._log(db, claim_id, "reserve_released", "", at, key):
                db.execute(
                    "UPDATE reserves SET status = 'released' WHERE claim_id = ?", (claim_id,)
                )

    def pay(
        self, claim_id: str, payee: str, amount: Decimal, approved_by: str, at: str, key: str
    ) -> str:
        """Pay the claim once per idempotency key; the payment's reference."""
        with self._tx() as db:
            row = db.execute(
                "SELECT reference FROM payouts WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if row is not None:
                return str(row["reference"])
            count = db.execute("SELECT COUNT(*) FROM payouts").fetchone()[0]
            reference = f"PAY-{count + 1:06d}"
            db.execute(
                "INSERT INTO payouts VALUES (?, ?, ?, ?, 'paid', ?, ?)",
                (reference, claim_id, payee, str(amount), at, key),
            )
            db.execute("UPDATE reserves SET status = 'settled' WHERE claim_id = ?", (claim_id,))
            self._log(db, claim_id, "paid", f"{amount} to {payee} ({approved_by})", at, key)
            self._status(db, claim_id, "paid", reference, at)
        return reference

    def reverse_payout(self, claim_id: str, at: str, key: str) -> None:
        with self._tx() as db:
            if self._log(db, claim_id, "payout_reversed", "", at, key):
                db.execute(
                    "UPDATE payouts SET status = 'reversed' WHERE claim_id = ? AND status = 'paid'",
                    (claim_id,),
                )
                db.execute("UPDATE reserves SET status = 'open' WHERE claim_id = ?", (claim_id,))

    def flag(self, claim_id: str, status: str, note: str, at: str, key: str) -> None:
        """Hand the claim to a person, with why."""
        with self._tx() as db:
            if self._log(db, claim_id, status, note, at, key):
                self._status(db, claim_id, status, note, at)

    @staticmethod
    def _status(db: sqlite3.Connection, claim_id: str, status: str, note: str, at: str) -> None:
        db.execute(
            "UPDATE claims SET status = ?, note = ?, updated_at = ? WHERE claim_id = ?",
            (status, note, at, claim_id),
        )

    def snapshot(self, claim_id: str) -> dict[str, Any]:
        """Everything the system holds about a claim (what the tests check)."""
        with self._tx() as db:
            claim = db.execute("SELECT * FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()

            def rows(table: str) -> list[dict[str, Any]]:
                cur = db.execute(f"SELECT * FROM {table} WHERE claim_id = ?", (claim_id,))
                return [dict(r) for r in cur.fetchall()]

            return {
                "claim": dict(claim) if claim else None,
                "documents": rows("documents"),
                "screenings": rows("screenings"),
                "reserves": rows("reserves"),
                "payouts": rows("payouts"),
                "activity": [
                    r["action"]
                    for r in db.execute(
                        "SELECT action FROM activity WHERE claim_id = ? ORDER BY seq", (claim_id,)
                    )
                ],
            }
