"""Saga: long-running steps, each with an optional compensation.

A failing step first exhausts its own retries and fallback. Then the saga compensates the steps
it completed, newest first (except those listed in ``on_failure.keep``); compensations are
journaled leaves with their own retries, so a crash mid-compensation resumes it. Finally it
either runs the degrade path (``on_failure.then``) and ends *degraded*, or raises
``SagaAborted``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from podium.errors import SagaAborted, WorkflowSuspended
from podium.workflows.context import Namespace, RunState
from podium.workflows.nodes import Node, describe
from podium.workflows.patterns.sequential import run_sequence


class SagaNode(Node):
    """Steps with compensations and a degrade path."""

    kind = "saga"

    def __init__(
        self,
        id: str,
        children: Sequence[Node],
        keep: Sequence[str],
        degrade: Sequence[Node],
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.children = list(children)
        self.keep = set(keep)
        self.degrade = list(degrade)

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        prefix = path + "/"
        steps = ns["steps"]
        done: list[Node] = []
        out = None
        for child in self.children:
            try:
                out = await child.run(rt, ns, prefix)
            except (WorkflowSuspended, asyncio.CancelledError):
                raise
            except Exception as exc:
                failed_at = child.id
                error = describe(exc)
                break
            if not steps[child.id].get("skipped"):
                done.append(child)
        else:
            return out, None

        compensated: list[str] = []
        kept: list[str] = []
        for child in reversed(done):
            if child.compensate is None or child.id in self.keep:
                kept.append(child.id)
                continue
            await child.compensate.run_at(rt, ns, f"{prefix}{child.id}#compensate")
            compensated.append(child.id)
        kept.reverse()
        meta = {
            "degraded": True,
            "failed_step": failed_at,
            "error": error["message"],
            "compensated": compensated,
            "kept": kept,
        }
        if not self.degrade:
            raise SagaAborted(
                f"saga {path} failed at {failed_at}: {error['message']}; "
                f"compensated {', '.join(compensated) or 'nothing'}",
                run_id=rt.run_id,
                step_id=f"{prefix}{failed_at}",
                compensated=compensated,
            )
        frame = {**ns, "saga": meta}
        out = await run_sequence(rt, frame, f"{prefix}on_failure/", self.degrade)
        return out, meta
