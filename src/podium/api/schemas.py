"""The JSON the API accepts and returns, as pydantic models (they make the OpenAPI spec)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from podium.types import Event, EventKind, RunRecord, RunStatus
from podium.workflows.engine import RunResult
from podium.workflows.history import StepView
from podium.workflows.plan import Plan


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    """The server is up."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether the server takes work: its parts, each open or not."""

    store: bool
    """The run store is open (workflows can start and resume)."""
    gateway: bool
    """The model gateway is open (``/v1`` and model steps can call models)."""


# -- workflows ----------------------------------------------------------------------------
class InputInfo(BaseModel):
    """One declared input of a workflow."""

    type: str
    description: str = ""
    required: bool
    default: Any = None


class WorkflowSummary(BaseModel):
    """A workflow the server can run."""

    name: str
    description: str
    version: str | int
    inputs: dict[str, InputInfo]
    file: str | None
    """The definition file, as the server names it."""

    @classmethod
    def of(cls, plan: Plan) -> WorkflowSummary:
        wf = plan.workflow
        return cls(
            name=wf.name,
            description=wf.description,
            version=wf.version,
            inputs={
                name: InputInfo(
                    type=inp.type,
                    description=inp.description,
                    required=inp.is_required,
                    default=inp.default,
                )
                for name, inp in wf.inputs.items()
            },
            file=plan.file,
        )


class WorkflowDetail(WorkflowSummary):
    """A workflow with its diagram."""

    diagram: str
    """A Mermaid ``flowchart TD`` of the definition."""


# -- runs ---------------------------------------------------------------------------------
class StartRun(_Request):
    """Start a run of a workflow."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    """Values for the workflow's declared inputs; defaults fill the rest."""
    wait: bool = False
    """Answer when the run completes, fails or waits for a review (200) instead of at once
    (202)."""


class RunState(BaseModel):
    """Where a run stands."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: dict[str, Any] | None = None
    waiting_on: list[str] = Field(default_factory=list)
    """Review steps the run waits for."""

    @classmethod
    def of(cls, result: RunResult) -> RunState:
        return cls(
            run_id=result.run_id,
            status=result.status,
            output=result.output,
            error=result.error,
            waiting_on=result.waiting_on,
        )


class RunSummary(BaseModel):
    """A run's header."""

    run_id: str
    workflow: str
    status: RunStatus
    created_at: float
    """Seconds since the epoch."""
    updated_at: float
    parent_id: str | None = None

    @classmethod
    def of(cls, record: RunRecord) -> RunSummary:
        return cls(
            run_id=record.run_id,
            workflow=record.workflow,
            status=record.status,
            created_at=record.created_at,
            updated_at=record.updated_at,
            parent_id=record.parent_id,
        )


class StepInfo(BaseModel):
    """What happened to one step."""

    path: str
    status: str
    """running, completed, failed, retrying or waiting (for review)."""
    attempts: int
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    output: Any = None
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, step: StepView) -> StepInfo:
        return cls(
            path=step.path,
            status=step.status,
            attempts=step.attempts,
            started_at=step.started_at,
            ended_at=step.ended_at,
            duration_s=step.duration,
            output=step.output,
            error=step.error,
            meta=step.meta,
        )


class PendingReview(BaseModel):
    """A review step waiting for a decision."""

    step: str
    """The step's full path: what approve/reject take."""
    prompt: Any = None
    """What the reviewer is asked."""
    data: Any = None
    """What the reviewer is shown."""


class RunDetail(RunSummary):
    """A run with its inputs, result, steps and pending reviews."""

    inputs: dict[str, Any]
    output: Any = None
    error: dict[str, Any] | None = None
    steps: list[StepInfo]
    pending_reviews: list[PendingReview]


class EventInfo(BaseModel):
    """One journal entry, as stored."""

    seq: int
    kind: EventKind
    step: str
    """The step's path (empty for run-level events)."""
    attempt: int
    ts: float
    data: Any = None

    @classmethod
    def of(cls, event: Event) -> EventInfo:
        return cls(
            seq=event.seq,
            kind=event.kind,
            step=event.step,
            attempt=event.attempt,
            ts=event.ts,
            data=json.loads(event.data) if event.data else None,
        )


class Decision(_Request):
    """A reviewer's decision on a waiting review step."""

    step: str = Field(min_length=1, max_length=1000)
    """The review step: its id, or its full path when the id is ambiguous."""
    comment: str = Field(default="", max_length=10_000)
    by: str = Field(default="", max_length=200)
    """Who decides (default: the caller's identity)."""


class DecisionAccepted(BaseModel):
    """A recorded decision; the run resumes in the background."""

    run_id: str
    step: str
    """The decided step's full path."""
    approved: bool
    by: str


class ResumeRun(_Request):
    """Continue a run from its journal."""

    force: bool = False
    """Continue even if the workflow definition changed since the run started."""
