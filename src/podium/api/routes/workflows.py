"""The workflows the server offers: list them, read one with its diagram.

The served workflows are the server's catalog (the files of its workflows directory), shared by
every team: they are configuration, not tenant data, so every caller that may read workflows sees
all of them (:mod:`podium.api.scope`). What a team does with them — its runs, their inputs,
outputs and model calls — is isolated by the runs and costs routes.
"""

from __future__ import annotations

from fastapi import APIRouter

from podium.api.auth import require
from podium.api.errors import ERROR_RESPONSES, ApiError
from podium.api.schemas import WorkflowDetail, WorkflowSummary
from podium.api.state import StateDep
from podium.workflows.diagram import to_mermaid
from podium.workflows.plan import Plan

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERROR_RESPONSES)


def find_workflow(state: StateDep, name: str) -> Plan:
    """The served workflow ``name``, or a 404 naming the ones there are."""
    plan = state.catalog.get(name)
    if plan is None:
        known = ", ".join(state.catalog.names()) or "none"
        raise ApiError(
            404, f"no workflow named {name!r} (served: {known})", type="WorkflowNotFound"
        )
    return plan


@router.get("", dependencies=[require("workflows:read")])
async def list_workflows(state: StateDep) -> list[WorkflowSummary]:
    """Every workflow the server can run, by name."""
    return [WorkflowSummary.of(p) for p in state.catalog]


@router.get(
    "/{name}",
    dependencies=[require("workflows:read")],
    responses={404: {"description": "No such workflow"}},
)
async def get_workflow(name: str, state: StateDep) -> WorkflowDetail:
    """One workflow, with a Mermaid diagram of its steps."""
    plan = find_workflow(state, name)
    return WorkflowDetail(
        **WorkflowSummary.of(plan).model_dump(), diagram=to_mermaid(plan.workflow)
    )
