"""Human review through the API: see what waits, approve or reject, and the run goes on."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.support import wait_for


async def _waiting_payout(client: httpx.AsyncClient, amount: int = 5000) -> str:
    response = await client.post("/api/workflows/payout/runs", json={"inputs": {"amount": amount}})
    assert response.status_code == 202
    run_id: str = response.json()["run_id"]
    await wait_for(client, run_id, "waiting")
    return run_id


async def test_a_waiting_run_shows_what_the_reviewer_is_asked(client: httpx.AsyncClient) -> None:
    run_id = await _waiting_payout(client)
    detail = (await client.get(f"/api/runs/{run_id}")).json()
    assert detail["pending_reviews"] == [
        {"step": "sign_off", "prompt": "Pay 5000?", "data": {"amount": 5000, "large": True}}
    ]
    steps = {s["path"]: s["status"] for s in detail["steps"]}
    assert steps == {"assess": "completed", "sign_off": "waiting"}


async def test_approve_resumes_the_run(client: httpx.AsyncClient) -> None:
    run_id = await _waiting_payout(client)
    response = await client.post(
        f"/api/runs/{run_id}/approve", json={"step": "sign_off", "comment": "ok", "by": "cfo"}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"run_id": run_id, "step": "sign_off", "approved": True, "by": "cfo"}

    done = await wait_for(client, run_id, "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["output"] == {"paid": "paid 5000", "reviewer": "cfo"}
    assert done["pending_reviews"] == []
    decision: dict[str, Any] = next(s for s in done["steps"] if s["path"] == "sign_off")["output"]
    assert decision["approved"] is True
    assert decision["comment"] == "ok"


async def test_reject_fails_the_run_and_names_the_caller(client: httpx.AsyncClient) -> None:
    run_id = await _waiting_payout(client)
    response = await client.post(
        f"/api/runs/{run_id}/reject", json={"step": "sign_off", "comment": "too much"}
    )
    assert response.status_code == 202
    assert response.json()["by"] == "admin"  # nobody named: the caller's identity
    assert response.json()["approved"] is False

    done = await wait_for(client, run_id, "completed", "failed")
    assert done["status"] == "failed"
    assert done["error"]["type"] == "ReviewRejected"
    assert "rejected by admin: too much" in done["error"]["message"]


async def test_deciding_a_step_that_is_not_waiting_is_a_409(client: httpx.AsyncClient) -> None:
    run_id = await _waiting_payout(client)
    wrong = await client.post(f"/api/runs/{run_id}/approve", json={"step": "nope"})
    assert wrong.status_code == 409
    error = wrong.json()["error"]
    assert error["type"] == "WorkflowError"
    assert error["run_id"] == run_id
    assert error["step"] == "nope"
    assert "is not waiting for a review at 'nope'" in error["message"]
    assert "waiting on: sign_off" in error["message"]

    # the right step still works, once
    assert (
        await client.post(f"/api/runs/{run_id}/approve", json={"step": "sign_off"})
    ).status_code == 202
    await wait_for(client, run_id, "completed")
    again = await client.post(f"/api/runs/{run_id}/approve", json={"step": "sign_off"})
    assert again.status_code == 409
    assert "status completed" in again.json()["error"]["message"]


async def test_decisions_are_validated(client: httpx.AsyncClient) -> None:
    run_id = await _waiting_payout(client)
    for body in ({}, {"step": ""}, {"step": "sign_off", "approved": True}, {"step": 3}):
        response = await client.post(f"/api/runs/{run_id}/approve", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "RequestValidationError"
    unknown = await client.post("/api/runs/nope/reject", json={"step": "sign_off"})
    assert unknown.status_code == 404
