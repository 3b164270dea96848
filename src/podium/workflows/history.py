"""Read a run's journal as people want to see it: one row per step."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from podium.types import Event


@dataclass
class StepView:
    """What happened to one step."""

    path: str
    status: str = "running"
    """running, completed, failed, retrying, waiting (for review)."""
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    output: Any = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


def steps_of(events: list[Event]) -> list[StepView]:
    """Fold a journal into step rows, in the order steps first appeared."""
    rows: dict[str, StepView] = {}
    for e in events:
        if not e.step:
            continue
        row = rows.get(e.step)
        if row is None:
            row = rows[e.step] = StepView(e.step, started_at=e.ts)
        data = json.loads(e.data) if e.data else {}
        if e.kind == "step_started":
            row.attempts = max(row.attempts, e.attempt)
            row.status = "running"
        elif e.kind == "step_failed":
            row.error = data.get("message")
            row.status = "failed" if data.get("final") else "retrying"
            row.ended_at = e.ts
        elif e.kind == "step_completed":
            row.status = "completed"
            row.output = data.get("o")
            row.meta = data.get("m") or {}
            row.ended_at = e.ts
        elif e.kind == "review_requested":
            row.status = "waiting"
            row.meta = {"request": data}
    # blocks (parallel, saga, …) journal only their end: they started with their first child
    for row in rows.values():
        if row.attempts == 0:
            inner = [
                r.started_at
                for r in rows.values()
                if r.started_at is not None and r.path.startswith((row.path + "/", row.path + "["))
            ]
            if inner:
                row.started_at = min(inner)
    return list(rows.values())


def pending_reviews(events: list[Event]) -> list[str]:
    """Review steps that asked for a decision and have not completed."""
    asked: list[str] = []
    done: set[str] = set()
    for e in events:
        if e.kind == "review_requested":
            asked.append(e.step)
        elif e.kind == "step_completed":
            done.add(e.step)
    return [p for p in asked if p not in done]


@dataclass(frozen=True, slots=True)
class ModelCallView:
    """One model step's call: what served it, what it cost, and what its preferred route
    would have cost."""

    step: str
    served: str
    preferred: str
    reason: str
    cost: Decimal
    would_cost: Decimal | None
    """``None``: the preferred model served (or has no price)."""


def model_calls(steps: list[StepView]) -> list[ModelCallView]:
    """The model calls among a run's completed steps (a model step's output carries its route:
    see :class:`~podium.workflows.nodes.ModelNode`)."""
    out: list[ModelCallView] = []
    for s in steps:
        o = s.output
        if s.status != "completed" or not isinstance(o, dict):
            continue
        route = o.get("route")
        if not isinstance(route, dict) or "preferred" not in route or "model" not in o:
            continue
        would = route.get("would_cost")
        out.append(
            ModelCallView(
                s.path,
                str(o["model"]),
                str(route["preferred"]),
                str(route.get("reason", "")),
                Decimal(str(o.get("cost") or 0)),
                Decimal(str(would)) if would is not None else None,
            )
        )
    return out
