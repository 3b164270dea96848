"""Conditional branches (if / switch) and the bounded loop (evaluator-optimizer)."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Sequence
from typing import Any

from podium.workflows.context import Namespace, RunState
from podium.workflows.nodes import Evaluator, Node
from podium.workflows.patterns.sequential import run_sequence


class IfNode(Node):
    """Run ``then`` when the condition is true, else ``else``. Deterministic: not journaled."""

    kind = "if"
    journaled = False

    def __init__(
        self, id: str, cond: Evaluator, then: Sequence[Node], else_: Sequence[Node], **kw: Any
    ) -> None:
        super().__init__(id, **kw)
        self.cond = cond
        self.then = list(then)
        self.else_ = list(else_)

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        taken = bool(self.cond(ns))
        branch = self.then if taken else self.else_
        out = await run_sequence(rt, ns, path + "/", branch)
        return out, {"branch": "then" if taken else "else"}


class SwitchNode(Node):
    """Run the case whose key equals the value (compared as text), else ``default``."""

    kind = "switch"
    journaled = False

    def __init__(
        self,
        id: str,
        value: Evaluator,
        cases: dict[str, Sequence[Node]],
        default: Sequence[Node],
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.value = value
        self.cases = {k: list(v) for k, v in cases.items()}
        self.default = list(default)

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        value = self.value(ns)
        key = (
            value
            if isinstance(value, str)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        branch = self.cases.get(key)
        case = key if branch is not None else "default"
        out = await run_sequence(rt, ns, path + "/", branch if branch is not None else self.default)
        return out, {"case": case}


class LoopNode(Node):
    """Repeat the body until ``until`` holds or ``max_iterations`` is reached.

    Each iteration has its own frame: ``steps`` inside it are that iteration's; ``loop.iteration``
    (1-based) and ``loop.previous`` (the last iteration's step outputs) are in scope.
    """

    kind = "loop"

    def __init__(
        self, id: str, body: Sequence[Node], until: Evaluator, max_iterations: int, **kw: Any
    ) -> None:
        super().__init__(id, **kw)
        self.body = list(body)
        self.until = until
        self.max_iterations = max_iterations

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        previous: dict[str, Any] | None = None
        out = None
        for iteration in range(1, self.max_iterations + 1):
            own: dict[str, Any] = {}
            frame = {
                **ns,
                "steps": ChainMap(own, ns["steps"]),
                "loop": {"iteration": iteration, "previous": previous},
            }
            out = await run_sequence(rt, frame, f"{path}[{iteration}]/", self.body)
            previous = {k: v.get("output") for k, v in own.items()}
            if self.until(frame):
                return out, {"iterations": iteration, "converged": True}
        return out, {"iterations": self.max_iterations, "converged": False}
