"""examples/insurance_claim: a saga against a SQLite claims system, with a human review step.

Each test checks exactly what happened in the claims system: documents, fraud screening,
reserve, payouts and the ordered activity log (compensations included).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium import Engine, Plan, load_workflow, open_store
from podium.testing import FakeClock
from podium.types import Store
from podium.workflows.resolve import load_object
from tests.examples.conftest import EXAMPLES

EXAMPLE = EXAMPLES / "insurance_claim"
T0 = 1_793_000_000.0  # 2026-10-26T07:33:20Z
AT = "2026-10-26T07:33:20+00:00"
VERIFIED = ["driving_licence", "incident_report", "repair_estimate"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'runs.db'}")
    yield s
    await s.close()


@pytest.fixture
def workflow() -> Plan:
    return load_workflow(EXAMPLE / "workflow.yaml")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "claims-system.db")


def claims(db: str, claim_id: str) -> dict[str, Any]:
    """Everything the claims system holds about a claim."""
    system = load_object(f"{EXAMPLE / 'steps.py'}:claims_system").ClaimsSystem(db)
    snapshot: dict[str, Any] = system.snapshot(claim_id)
    return snapshot


async def test_a_small_claim_pays_straight_through(store: Store, workflow: Plan, db: str) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    result = await engine.run(workflow, {"claim_id": "CLM-1001", "db": db})
    await engine.close()
    assert result.ok, result.error
    assert result.output == {
        "claim_id": "CLM-1001",
        "status": "paid",
        "payout": "590.00",  # 840.00 estimate - 250.00 deductible, exact
        "reference": "PAY-000001",
        "approval": "straight through",
    }
    assert not [e for e in await store.events(result.run_id) if e.kind == "review_requested"]
    state = claims(db, "CLM-1001")
    assert state["activity"] == [
        "documents_verified",
        "fraud_screening_cleared",
        "reserve_opened",
        "paid",
    ]
    assert [(p["amount"], p["payee"], p["status"], p["paid_at"]) for p in state["payouts"]] == [
        ("590.00", "Maria Lopez", "paid", AT)
    ]
    assert state["reserves"] == [{"claim_id": "CLM-1001", "amount": "590.00", "status": "settled"}]
    assert [d["kind"] for d in state["documents"] if d["status"] == "verified"] == VERIFIED
    assert state["claim"]["status"] == "paid"
    assert state["claim"]["updated_at"] == AT


async def test_a_large_claim_waits_for_review_and_pays_once_after_approval(
    store: Store, workflow: Plan, db: str
) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    waiting = await engine.run(workflow, {"claim_id": "CLM-1002", "db": db})
    await engine.close()
    assert waiting.status == "waiting"
    assert waiting.waiting_on == ["claim/approve_payout"]
    request = next(e for e in await store.events(waiting.run_id) if e.kind == "review_requested")
    asked = json.loads(request.data or "{}")
    assert asked["prompt"].startswith("Approve a payout of $5679.25 to James O'Neill")
    assert asked["data"]["payout"] == "5679.25"
    assert asked["data"]["estimate_total"] == "6179.25"
    state = claims(db, "CLM-1002")
    assert state["payouts"] == []  # nothing paid while a person decides
    assert state["reserves"][0]["status"] == "open"

    # The approval comes later, from another process (a new engine on the same store).
    later = Engine(store, clock=FakeClock(T0 + 3600))
    await later.approve(waiting.run_id, "claim/approve_payout", comment="photos match", by="ana")
    done = await later.resume(waiting.run_id, workflow)
    assert done.ok, done.error
    assert done.output["status"] == "paid"
    assert done.output["payout"] == "5679.25"
    assert done.output["approval"] == "approved by ana"
    again = await later.resume(waiting.run_id, workflow)  # replayed from the journal
    await later.close()
    assert again.output == done.output
    state = claims(db, "CLM-1002")
    assert [(p["amount"], p["status"]) for p in state["payouts"]] == [("5679.25", "paid")]
    assert state["activity"] == [
        "documents_verified",
        "fraud_screening_cleared",
        "reserve_opened",
        "paid",
    ]


async def test_a_failed_assessment_flags_the_claim_and_keeps_the_documents(
    store: Store, workflow: Plan, db: str
) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    result = await engine.run(workflow, {"claim_id": "CLM-1003", "db": db})
    await engine.close()
    assert result.ok, result.error  # degraded, not failed: a person takes over
    out = result.output
    assert out["status"] == "manual_review"
    assert out["failed_step"] == "assess"
    assert "needs an itemised estimate" in out["reason"]
    assert out["compensated"] == ["fraud_check"]
    assert out["kept"] == ["verify"]
    assert out["documents_kept"] == VERIFIED
    state = claims(db, "CLM-1003")
    assert state["activity"] == [
        "documents_verified",
        "fraud_screening_cleared",
        "fraud_screening_voided",  # the compensation ran
        "manual_review",
    ]
    assert [d["status"] for d in state["documents"]] == ["verified"] * 3
    assert state["screenings"][0]["status"] == "voided"
    assert state["reserves"] == []
    assert state["payouts"] == []
    assert state["claim"]["status"] == "manual_review"
    assert "itemised estimate" in state["claim"]["note"]


async def test_a_rejected_payout_undoes_assessment_and_screening(
    store: Store, workflow: Plan, db: str
) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    waiting = await engine.run(workflow, {"claim_id": "CLM-1002", "db": db})
    await engine.reject(waiting.run_id, "claim/approve_payout", comment="get a second quote")
    done = await engine.resume(waiting.run_id, workflow)
    await engine.close()
    assert done.output["status"] == "manual_review"
    assert done.output["failed_step"] == "approve_payout"
    assert "get a second quote" in done.output["reason"]
    assert done.output["compensated"] == ["assess", "fraud_check"]  # newest first
    state = claims(db, "CLM-1002")
    assert state["activity"] == [
        "documents_verified",
        "fraud_screening_cleared",
        "reserve_opened",
        "reserve_released",
        "fraud_screening_voided",
        "manual_review",
    ]
    assert state["payouts"] == []
    assert [d["status"] for d in state["documents"]] == ["verified"] * 3


async def test_a_claim_is_accepted_once(store: Store, workflow: Plan, db: str) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    first = await engine.run(workflow, {"claim_id": "CLM-1001", "db": db})
    second = await engine.run(workflow, {"claim_id": "CLM-1001", "db": db})
    await engine.close()
    assert first.output["status"] == "paid"
    assert second.output["status"] == "not_accepted"
    assert "already registered (paid)" in second.output["reason"]
    assert len(claims(db, "CLM-1001")["payouts"]) == 1


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"claim_id": "../../etc"}, "claim_id must look like CLM-1001"),
        ({"claim_id": "CLM-9999"}, "no claim form at"),
        ({"claim_id": "CLM-1001", "review_threshold": "a lot"}, "is not an amount of money"),
    ],
)
async def test_claims_that_cannot_be_processed_say_why(
    store: Store, workflow: Plan, db: str, inputs: dict[str, Any], reason: str
) -> None:
    engine = Engine(store, clock=FakeClock(T0))
    result = await engine.run(workflow, {**inputs, "db": db})
    await engine.close()
    assert result.ok, result.error
    assert result.output["status"] in ("not_accepted", "manual_review")
    assert reason in result.output["reason"]
    assert claims(db, inputs["claim_id"])["payouts"] == []
