"""Starting runs and reading them back: state, steps, journal; resuming and cancelling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.api.support import wait_for, wait_for_gate


async def test_start_a_run_in_the_background_and_poll_it(client: httpx.AsyncClient) -> None:
    started = await client.post("/api/workflows/hello/runs", json={"inputs": {"name": "Ada"}})
    assert started.status_code == 202, started.text
    body = started.json()
    run_id = body["run_id"]
    assert body["status"] == "running"
    assert started.headers["location"] == f"/api/runs/{run_id}"

    done = await wait_for(client, run_id, "completed", "failed")
    assert done["status"] == "completed"
    assert done["workflow"] == "hello"
    assert done["inputs"] == {"name": "Ada"}
    assert done["output"] == {"greeting": "Hello, Ada!", "length": 11, "shouted": "HELLO, ADA!"}
    assert done["error"] is None
    assert done["pending_reviews"] == []
    steps = {s["path"]: s for s in done["steps"]}
    assert next(iter(steps)) == "greet"
    assert {"greet", "checks/length", "checks/shout"} <= set(steps)
    assert steps["greet"]["status"] == "completed"
    assert steps["greet"]["output"] == "Hello, Ada!"
    assert steps["greet"]["attempts"] == 1
    assert steps["greet"]["duration_s"] >= 0


async def test_start_and_wait_for_the_result(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/workflows/hello/runs", json={"wait": True})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["output"]["greeting"] == "Hello, world!"  # the declared default
    assert body["waiting_on"] == []


async def test_waiting_for_a_run_that_needs_a_review(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/workflows/payout/runs", json={"inputs": {"amount": 5000}, "wait": True}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "waiting"
    assert response.json()["waiting_on"] == ["sign_off"]


async def test_bad_inputs_are_a_422_with_the_exact_message(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/workflows/hello/runs", json={"inputs": {"nmae": "Ada"}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "DefinitionError"
    assert [i["message"] for i in error["issues"]] == [
        "workflow 'hello': unknown input 'nmae' (declared: name)"
    ]
    assert error["message"].endswith("workflow 'hello': unknown input 'nmae' (declared: name)")

    missing = await client.post("/api/workflows/payout/runs", json={"inputs": {}})
    assert [i["message"] for i in missing.json()["error"]["issues"]] == [
        "workflow 'payout': missing required input 'amount'"
    ]
    wrong = await client.post("/api/workflows/payout/runs", json={"inputs": {"amount": "lots"}})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["issues"][0]["message"].startswith(
        "workflow 'payout': input 'amount': Input should be a valid integer"
    )
    # nothing was started
    assert (await client.get("/api/runs")).json() == []


async def test_starting_an_unknown_workflow_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/workflows/nope/runs", json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "WorkflowNotFound"


async def test_list_runs_with_filters(client: httpx.AsyncClient) -> None:
    first = (await client.post("/api/workflows/hello/runs", json={"wait": True})).json()
    second = (
        await client.post(
            "/api/workflows/payout/runs", json={"inputs": {"amount": 1}, "wait": True}
        )
    ).json()
    third = (await client.post("/api/workflows/hello/runs", json={"wait": True})).json()

    runs = (await client.get("/api/runs")).json()
    assert [r["run_id"] for r in runs] == [third["run_id"], second["run_id"], first["run_id"]]
    assert set(runs[0]) == {"run_id", "workflow", "status", "created_at", "updated_at", "parent_id"}

    hello = (await client.get("/api/runs", params={"workflow": "hello"})).json()
    assert [r["run_id"] for r in hello] == [third["run_id"], first["run_id"]]
    waiting = (await client.get("/api/runs", params={"status": "waiting"})).json()
    assert [r["run_id"] for r in waiting] == [second["run_id"]]
    assert len((await client.get("/api/runs", params={"limit": 1})).json()) == 1

    bad = await client.get("/api/runs", params={"status": "done"})
    assert bad.status_code == 422
    assert bad.json()["error"]["issues"][0]["key"] == "query.status"
    assert (await client.get("/api/runs", params={"limit": 0})).status_code == 422


async def test_the_journal_pages_with_after(client: httpx.AsyncClient) -> None:
    run_id = (await client.post("/api/workflows/hello/runs", json={"wait": True})).json()["run_id"]
    events = (await client.get(f"/api/runs/{run_id}/events")).json()
    assert events[0]["kind"] == "run_started"
    assert events[0]["data"]["inputs"] == {"name": "world"}
    assert events[-1]["kind"] == "run_completed"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    completed = next(e for e in events if e["kind"] == "step_completed" and e["step"] == "greet")
    assert completed["data"]["o"] == "Hello, world!"

    later = (await client.get(f"/api/runs/{run_id}/events", params={"after": 3})).json()
    assert later == events[3:]
    page = (await client.get(f"/api/runs/{run_id}/events", params={"after": 1, "limit": 2})).json()
    assert page == events[1:3]
    assert (await client.get(f"/api/runs/{run_id}/events", params={"after": -1})).status_code == 422


async def test_unknown_runs_are_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/runs/nope"),
        ("GET", "/api/runs/nope/events"),
        ("POST", "/api/runs/nope/resume"),
        ("POST", "/api/runs/nope/cancel"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json() == {
            "error": {"type": "RunNotFound", "message": "no run with id 'nope'", "run_id": "nope"}
        }


async def test_cancel_a_running_run(client: httpx.AsyncClient, tmp_path: Path) -> None:
    flag = tmp_path / "never"
    run_id = (
        await client.post("/api/workflows/gated/runs", json={"inputs": {"flag": str(flag)}})
    ).json()["run_id"]
    await wait_for_gate(flag)
    cancelled = await client.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    detail = (await client.get(f"/api/runs/{run_id}")).json()
    assert detail["status"] == "cancelled"
    assert detail["error"]["type"] == "RunCancelled"
    # cancelling again changes nothing
    again = await client.post(f"/api/runs/{run_id}/cancel")
    assert again.json()["status"] == "cancelled"


async def test_cancel_a_waiting_run(client: httpx.AsyncClient) -> None:
    waiting = await client.post(
        "/api/workflows/payout/runs", json={"inputs": {"amount": 7}, "wait": True}
    )
    run_id = waiting.json()["run_id"]
    assert (await client.post(f"/api/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    approve = await client.post(f"/api/runs/{run_id}/approve", json={"step": "sign_off"})
    assert approve.status_code == 409


async def test_resume_a_finished_run_reports_its_state(client: httpx.AsyncClient) -> None:
    run_id = (await client.post("/api/workflows/hello/runs", json={"wait": True})).json()["run_id"]
    response = await client.post(f"/api/runs/{run_id}/resume")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["output"]["greeting"] == "Hello, world!"


async def test_resume_an_undecided_review_suspends_again(client: httpx.AsyncClient) -> None:
    run_id = (
        await client.post(
            "/api/workflows/payout/runs", json={"inputs": {"amount": 3}, "wait": True}
        )
    ).json()["run_id"]
    response = await client.post(f"/api/runs/{run_id}/resume", json={"force": False})
    assert response.status_code == 202
    assert response.json() == {
        "run_id": run_id,
        "status": "running",
        "output": None,
        "error": None,
        "waiting_on": [],
    }
    await wait_for_kinds(client, run_id, "run_resumed", "run_suspended")
    detail = await wait_for(client, run_id, "waiting")
    assert [r["step"] for r in detail["pending_reviews"]] == ["sign_off"]


async def wait_for_kinds(client: httpx.AsyncClient, run_id: str, *kinds: str) -> None:
    """Until the journal ends with ``kinds`` (in order)."""
    async with asyncio.timeout(15):
        while True:
            events = (await client.get(f"/api/runs/{run_id}/events")).json()
            if [e["kind"] for e in events[-len(kinds) :]] == list(kinds):
                return
            await asyncio.sleep(0.01)


async def test_the_journal_streams_as_server_sent_events_until_the_run_settles(
    client: httpx.AsyncClient,
) -> None:
    started = await client.post("/api/workflows/hello/runs", json={"inputs": {"name": "Ada"}})
    run_id = started.json()["run_id"]
    frames: list[dict[str, str]] = []
    async with client.stream("GET", f"/api/runs/{run_id}/events/stream?poll_s=0.01") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                frames.append(frame)
                frame = {}
                continue
            field, _, value = line.partition(": ")
            frame[field] = value
    *journal, end = frames
    assert end["event"] == "end"
    assert '"status":"completed"' in end["data"].replace(" ", "")
    seqs = [int(f["id"]) for f in journal]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))  # each event once
    full = (await client.get(f"/api/runs/{run_id}/events")).json()
    assert [e["seq"] for e in full] == seqs  # the whole journal, nothing missed
    assert journal[-1]["event"] == full[-1]["kind"]


async def test_streaming_an_unknown_run_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/runs/no-such-run/events/stream")
    assert response.status_code == 404
