"""The audit trail's fast paths keep the format and the verdicts: headers assembled from
pre-encoded parts equal the canonical JSON of the header; verification that parses no JSON
catches every column edit, and falls back to parsing where only parsing can tell."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, update

from podium.governance import AuditEntry
from podium.governance.chain import FORMAT_VERSION, canonical_json, header_text, plain_json
from podium.store import schema
from podium.store.sql import store_url
from podium.testing import FakeClock
from tests.governance.conftest import OpenLog

R = schema.audit_records

TRICKY: list[dict[str, Any]] = [
    {},
    {"cost": Decimal("0.000123"), "n": 3, "ok": True, "none": None, "f": 0.1},
    {"nested": {"b": [1, 2, {"z": "é"}], "a": ("t", "u")}, "emoji": "🎉", "quote": 'a"b\\c'},
    # fields that imitate the header's own tail: the fast check must not be fooled
    {"x": {"kind": "model_call", "seq": 5, "team": "ml", "ts": 1.0, "v": 1}},
    {"actor": "mallory", "kind": "approval", "team": "search", "seq": 1},
    {"ctl": "line\nbreak\ttab\u0001", "big": 10**30, "neg": -Decimal("1.50")},
]


@pytest.mark.parametrize("fields", TRICKY)
def test_plain_json_is_the_json_round_trip(fields: dict[str, Any]) -> None:
    assert plain_json(fields) == json.loads(canonical_json(fields))
    assert canonical_json(plain_json(fields)) == canonical_json(fields)


def test_plain_json_takes_the_round_trip_for_unusual_values() -> None:
    odd = {10: "ten", 2: "two"}  # sorted as ints, then read back as strings
    assert plain_json(odd) == json.loads(canonical_json(odd)) == {"2": "two", "10": "ten"}
    assert canonical_json(plain_json(odd)) != canonical_json(odd)  # why it must round-trip
    with pytest.raises(ValueError, match="non-finite"):
        plain_json({"x": Decimal("NaN")})
    with pytest.raises(ValueError, match="not JSON compliant"):
        plain_json({"x": float("inf")})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        plain_json({"x": object()})


@pytest.mark.parametrize("fields", TRICKY)
@pytest.mark.parametrize("team", ["ml", None, 'te"am'])
def test_header_text_is_the_canonical_header(fields: dict[str, Any], team: str | None) -> None:
    plain = plain_json(fields)
    full = {
        "v": FORMAT_VERSION,
        "seq": 42,
        "ts": 1_700_000_000.123456,
        "kind": "model_call",
        "actor": "key_1",
        "team": team,
        "fields": plain,
    }
    assert header_text(
        seq=42,
        ts_text=canonical_json(1_700_000_000.123456),
        kind_text=canonical_json("model_call"),
        actor_text=canonical_json("key_1"),
        team_text=canonical_json(team),
        fields_text=canonical_json(plain),
    ) == canonical_json(full)


async def test_tricky_headers_verify_and_read_back(open_log: OpenLog) -> None:
    log = await open_log()
    await log.append_many(
        [AuditEntry("model_call", f"a{i}", "ml", f, {"i": i}) for i, f in enumerate(TRICKY)]
    )
    result = await log.verify()
    assert result.ok, str(result)
    records = await log.records()
    assert [r.fields for r in records] == [json.loads(canonical_json(f)) for f in TRICKY]
    assert await log.decrypt(3) == {"i": 2}  # the AAD assembled from parts decrypts


class IntClock(FakeClock):
    """A clock whose time is an ``int``: the header says ``"ts":5``, the REAL column ``5.0``."""

    def now(self) -> float:
        return int(super().now())


async def test_an_integer_clock_verifies_through_the_slow_path(open_log: OpenLog) -> None:
    log = await open_log(clock=IntClock())
    await log.append_many([AuditEntry("model_call", "a", "ml", {"i": i}) for i in range(25)])
    result = await log.verify()
    assert result.ok, str(result)
    assert result.records == 25


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("kind", "approval"),
        ("actor", "key_1x"),
        ("actor", "key_"),
        ("team", None),
        ("team", "m"),
        ("team", "mll"),
        ("ts", 1_700_000_000.5),
    ],
)
async def test_every_repeated_column_edit_is_caught(
    open_log: OpenLog, db_url: str, column: str, value: Any
) -> None:
    log = await open_log()
    await log.append_many([AuditEntry("model_call", "key_1", "ml", {"i": i}) for i in range(30)])
    engine = create_engine(store_url(db_url))
    with engine.begin() as conn:
        conn.execute(update(R).where(R.c.seq == 17).values({column: value}))
    engine.dispose()
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 17), str(result)
    assert f"column {column!r} differs from the hashed header" in (result.problem or "")


async def test_a_page_boundary_does_not_hide_a_break(open_log: OpenLog, db_url: str) -> None:
    """Verification reads pages of 2,000 rows: a broken link across pages is still caught."""
    log = await open_log(checkpoint_every=1000)
    for start in range(0, 4500, 1500):
        await log.append_many(
            [AuditEntry("model_call", "k", None, {"i": i}) for i in range(start, start + 1500)]
        )
    assert (await log.verify()).records == 4500
    engine = create_engine(store_url(db_url))
    with engine.begin() as conn:
        conn.execute(update(R).where(R.c.seq == 2001).values(prev_hash="0" * 64))
    engine.dispose()
    result = await log.verify()
    assert (result.ok, result.first_bad) == (False, 2001)
    assert "prev_hash" in (result.problem or "")
