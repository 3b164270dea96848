"""Side-effecting steps for the crash test. Each writes to an external SQLite ledger, deduplicated
by the step's idempotency key; every execution is also counted (not deduplicated)."""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any

from podium import StepContext


def _connect(ledger: str) -> sqlite3.Connection:
    con = sqlite3.connect(ledger, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE IF NOT EXISTS executions (key TEXT NOT NULL)")
    return con


def _write(ledger: str, ctx: StepContext, value: Any) -> None:
    time.sleep(random.uniform(0.001, 0.01))  # the effect takes a while: kills land inside it
    con = _connect(ledger)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO executions (key) VALUES (?)", (ctx.idempotency_key,))
        con.execute(
            "INSERT INTO effects (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (ctx.idempotency_key, str(value)),
        )
        con.execute("COMMIT")
    finally:
        con.close()
    time.sleep(random.uniform(0.0, 0.005))  # ...and between the effect and the journal commit


def effect(ledger: str, value: Any, ctx: StepContext) -> Any:
    _write(ledger, ctx, value)
    return value


def fails_once(ledger: str, value: Any, ctx: StepContext) -> Any:
    con = _connect(ledger)
    try:
        tried = con.execute(
            "SELECT count(*) FROM executions WHERE key = ?", (ctx.idempotency_key + "#try",)
        ).fetchone()[0]
        con.execute("INSERT INTO executions (key) VALUES (?)", (ctx.idempotency_key + "#try",))
    finally:
        con.close()
    if tried == 0:
        raise ConnectionError("transient: the service hiccuped")
    _write(ledger, ctx, value)
    return value


def always_fails(ledger: str, ctx: StepContext) -> None:
    raise RuntimeError("payment provider rejected the payout")
