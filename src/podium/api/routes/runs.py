"""Runs: start them, read them and their journal, decide their reviews, resume and cancel them.

Starting, deciding and resuming answer at once (202) and let the run go on in the background;
poll ``GET /api/runs/{run_id}`` to follow it. Before a resume is handed to the background, the
run's plan is rebuilt here, so a definition that no longer loads or has changed is reported to
the caller rather than only logged.

Tenant isolation (:mod:`podium.api.scope`): a run belongs to the org and team of whoever started
it. A team-scoped caller lists only its team's runs, and every route naming a run of another team
— reading it, its journal, its event stream, or approving, rejecting, resuming or cancelling it —
answers 404 ``RunNotFound``, exactly as for an id that does not exist. Org-wide callers (admin and
auditor keys) see their organisation's runs, the admin token every run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import StreamingResponse

from podium.api.auth import Principal, require
from podium.api.errors import ERROR_RESPONSES
from podium.api.routes.workflows import find_workflow
from podium.api.schemas import (
    Decision,
    DecisionAccepted,
    EventInfo,
    PendingReview,
    ResumeRun,
    RunDetail,
    RunState,
    RunSummary,
    StartRun,
    StepInfo,
)
from podium.api.scope import PrincipalDep, ScopeDep, TeamScope, run_owner, visible_run
from podium.api.state import EngineDep, StateDep
from podium.types import RunStatus
from podium.workflows.engine import Engine
from podium.workflows.history import pending_reviews, steps_of

router = APIRouter(prefix="/api", tags=["runs"], responses=ERROR_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run"}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The run's state does not allow this"}
}


@router.post(
    "/workflows/{name}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require("runs:start")],
    responses={
        200: {"model": RunState, "description": "With wait=true: the run finished or waits"},
        404: {"description": "No such workflow"},
    },
)
async def start_run(
    name: str,
    body: StartRun,
    response: Response,
    state: StateDep,
    engine: EngineDep,
    principal: PrincipalDep,
) -> RunState:
    """Start a run of a served workflow; invalid inputs are refused with a 422. The run belongs
    to the caller's org and team, and its model calls are charged to them."""
    plan = find_workflow(state, name)
    run_id = await engine.start(plan, body.inputs, owner=run_owner(principal))
    response.headers["Location"] = f"/api/runs/{run_id}"
    if not body.wait:
        return RunState(run_id=run_id, status="running")
    # wait() shields the run: a client that hangs up does not cancel it.
    result = await engine.wait(run_id)
    response.status_code = status.HTTP_200_OK
    return RunState.of(result)


@router.get("/runs", dependencies=[require("runs:read")])
async def list_runs(
    engine: EngineDep,
    scope: ScopeDep,
    status: RunStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunSummary]:
    """Runs the caller may see, newest first: its team's (or its organisation's, org-wide)."""
    records = await engine.store.list_runs(
        status=status, workflow=workflow, limit=limit, **scope.run_filter()
    )
    return [RunSummary.of(r) for r in records]


@router.get("/runs/{run_id}", dependencies=[require("runs:read")], responses=_NOT_FOUND)
async def get_run(run_id: str, engine: EngineDep, scope: ScopeDep) -> RunDetail:
    """A run: its header, inputs, result, steps and the reviews it waits for."""
    record = await visible_run(engine.store, run_id, scope)
    events = await engine.store.events(run_id)
    waiting = set(pending_reviews(events)) if record.status == "waiting" else set()
    reviews = []
    for e in events:
        if e.kind == "review_requested" and e.step in waiting:
            asked = json.loads(e.data) if e.data else {}
            reviews.append(
                PendingReview(step=e.step, prompt=asked.get("prompt"), data=asked.get("data"))
            )
    summary = RunSummary.of(record)
    return RunDetail(
        **summary.model_dump(),
        inputs=json.loads(record.inputs),
        output=json.loads(record.result) if record.result else None,
        error=json.loads(record.error) if record.error else None,
        steps=[StepInfo.of(s) for s in steps_of(events)],
        pending_reviews=reviews,
    )


@router.get("/runs/{run_id}/events", dependencies=[require("runs:read")], responses=_NOT_FOUND)
async def get_events(
    run_id: str,
    engine: EngineDep,
    scope: ScopeDep,
    after: Annotated[int, Query(ge=0, description="Only events with a greater seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[EventInfo]:
    """The run's journal, in order: page with ``after`` = the last ``seq`` seen."""
    await visible_run(engine.store, run_id, scope)  # 404, not an empty journal
    events = await engine.store.events(run_id, after=after)
    return [EventInfo.of(e) for e in events[:limit]]


_SETTLED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "waiting"})
"""Statuses after which a run writes nothing more until someone acts on it."""


@router.get(
    "/runs/{run_id}/events/stream",
    dependencies=[require("runs:read")],
    responses={
        **_NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
    },
)
async def stream_events(
    run_id: str,
    engine: EngineDep,
    scope: ScopeDep,
    after: Annotated[int, Query(ge=0, description="Only events with a greater seq.")] = 0,
    poll_s: Annotated[float, Query(gt=0, le=10, description="Seconds between polls.")] = 0.2,
) -> StreamingResponse:
    """The run's journal as server-sent events (``event: <kind>``, ``id: <seq>``, the event as
    JSON), live: new events follow as the run writes them. The stream ends with an ``end``
    event once the run has completed, failed, been cancelled or waits for a review."""
    await visible_run(engine.store, run_id, scope)  # 404 before the stream starts

    async def events() -> AsyncIterator[bytes]:
        seen = after
        while True:
            record = await engine.store.get_run(run_id)
            for e in await engine.store.events(run_id, after=seen):
                seen = e.seq
                body = EventInfo.of(e).model_dump_json()
                yield f"event: {e.kind}\nid: {e.seq}\ndata: {body}\n\n".encode()
            if record.status in _SETTLED:
                end = json.dumps({"run_id": run_id, "status": record.status})
                yield f"event: end\ndata: {end}\n\n".encode()
                return
            await engine.clock.sleep(poll_s)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-store"}
    )


async def _decide(
    run_id: str,
    body: Decision,
    approved: bool,
    principal: Principal,
    state: StateDep,
    engine: Engine,
) -> DecisionAccepted:
    await visible_run(engine.store, run_id, TeamScope.of(principal))
    plan = await engine.plan_for_resume(run_id, force=False)
    by = body.by or principal.subject
    path = await engine.decide(run_id, body.step, approved=approved, comment=body.comment, by=by)
    assert plan is not None  # decide() refuses a run that is not waiting
    state.spawn(engine.resume(run_id, plan), what=f"resuming run {run_id} after review")
    return DecisionAccepted(run_id=run_id, step=path, approved=approved, by=by)


@router.post(
    "/runs/{run_id}/approve",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_NOT_FOUND, **_CONFLICT},
)
async def approve(
    run_id: str,
    body: Decision,
    principal: Annotated[Principal, require("runs:review")],
    state: StateDep,
    engine: EngineDep,
) -> DecisionAccepted:
    """Approve a waiting review step; the run resumes in the background."""
    return await _decide(run_id, body, True, principal, state, engine)


@router.post(
    "/runs/{run_id}/reject",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_NOT_FOUND, **_CONFLICT},
)
async def reject(
    run_id: str,
    body: Decision,
    principal: Annotated[Principal, require("runs:review")],
    state: StateDep,
    engine: EngineDep,
) -> DecisionAccepted:
    """Reject a waiting review step; the run resumes in the background (and fails there,
    unless the step says ``on_reject: continue``)."""
    return await _decide(run_id, body, False, principal, state, engine)


@router.post(
    "/runs/{run_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require("runs:control")],
    responses={
        200: {"model": RunState, "description": "The run is already over: its state"},
        **_NOT_FOUND,
        **_CONFLICT,
    },
)
async def resume(
    run_id: str,
    response: Response,
    state: StateDep,
    engine: EngineDep,
    scope: ScopeDep,
    body: Annotated[ResumeRun | None, Body()] = None,
) -> RunState:
    """Continue a run from its journal in the background: finished steps are replayed, never
    re-executed. A run waiting for a review just suspends again until it is decided."""
    await visible_run(engine.store, run_id, scope)
    force = body.force if body is not None else False
    plan = await engine.plan_for_resume(run_id, force=force)
    if plan is None:
        response.status_code = status.HTTP_200_OK
        return RunState.of(await engine.result(run_id))
    state.spawn(engine.resume(run_id, plan, force=force), what=f"resuming run {run_id}")
    return RunState(run_id=run_id, status="running")


@router.post("/runs/{run_id}/cancel", dependencies=[require("runs:control")], responses=_NOT_FOUND)
async def cancel(run_id: str, engine: EngineDep, scope: ScopeDep) -> RunState:
    """Cancel a run: a running one is interrupted, a waiting one is marked cancelled. A run that
    is already over is left as it is."""
    await visible_run(engine.store, run_id, scope)
    return RunState.of(await engine.cancel(run_id))
