"""Orchestrator-worker: an orchestrator step decides at run time which workers to engage, with
which input; the tasks run concurrently and a synthesizer combines their results.

The orchestrator's decision is journaled like any step, so a resumed run dispatches exactly the
same tasks (the idea of LangGraph's ``Send``, made durable).
"""

from __future__ import annotations

from collections import ChainMap
from typing import Any

from podium.errors import StepFailed
from podium.workflows.context import Namespace, RunState
from podium.workflows.nodes import Node
from podium.workflows.patterns.parallel import fan_out


class OrchestrateNode(Node):
    """``orchestrate`` (planner) → tasks on named ``workers`` → ``synthesize``."""

    kind = "orchestrate"

    def __init__(
        self,
        id: str,
        planner: Node,
        workers: dict[str, Node],
        synthesize: Node | None,
        max_concurrency: int | None,
        max_tasks: int,
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.planner = planner
        self.workers = workers
        self.synthesize = synthesize
        self.max_concurrency = max_concurrency
        self.max_tasks = max_tasks

    def _tasks(self, plan: Any, path: str, rt: RunState) -> list[dict[str, Any]]:
        if isinstance(plan, dict) and "tasks" in plan:
            plan = plan["tasks"]
        problem = None
        if not isinstance(plan, list):
            problem = f"expected a list of {{worker, input}}, got {type(plan).__name__}"
        else:
            for i, task in enumerate(plan):
                if not isinstance(task, dict) or "worker" not in task:
                    problem = f"task {i} is not a mapping with a 'worker' key: {task!r}"
                    break
                if task["worker"] not in self.workers:
                    known = ", ".join(sorted(self.workers))
                    problem = f"task {i} names unknown worker {task['worker']!r} (known: {known})"
                    break
            else:
                if len(plan) > self.max_tasks:
                    problem = f"{len(plan)} tasks exceed max_tasks={self.max_tasks}"
        if problem:
            raise StepFailed(
                f"step {path}: the orchestrator's plan is invalid: {problem}",
                run_id=rt.run_id,
                step_id=path,
                error_type="InvalidPlan",
            )
        assert isinstance(plan, list)
        return [{"worker": t["worker"], "input": t.get("input") or {}} for t in plan]

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        decision, _ = await self.planner.run_at(rt, ns, f"{path}/orchestrate")
        tasks = self._tasks(decision, path, rt)
        steps = ns["steps"]

        def branch(i: int, task: dict[str, Any]) -> Any:
            worker = self.workers[task["worker"]]
            frame = {**ns, "steps": ChainMap({}, steps), "task": {**task, "index": i}}
            return lambda: worker.run_at(rt, frame, f"{path}/{i}:{task['worker']}")

        outcomes = await fan_out(
            rt,
            list(range(len(tasks))),
            [branch(i, t) for i, t in enumerate(tasks)],
            limit=self.max_concurrency or rt.max_concurrency,
            stop_on_failure=True,
        )
        results = []
        for task, outcome in zip(tasks, outcomes, strict=True):
            assert outcome is not None
            if not outcome.ok:
                assert outcome.error is not None
                raise outcome.error
            results.append({**task, "output": outcome.value[0]})
        meta = {"workers": [t["worker"] for t in tasks]}
        if self.synthesize is None:
            return results, meta
        frame = {**ns, "results": results}
        out, _ = await self.synthesize.run_at(rt, frame, f"{path}/synthesize")
        return out, meta
