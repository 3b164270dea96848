"""Sequential pipeline: steps in order, each seeing the outputs before it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podium.workflows.context import Namespace, RunState
from podium.workflows.nodes import Node


async def run_sequence(rt: RunState, ns: Namespace, prefix: str, children: Sequence[Node]) -> Any:
    """Run ``children`` in order under ``prefix``; return the last one's output."""
    out = None
    for child in children:
        out = await child.run(rt, ns, prefix)
    return out


class SequenceNode(Node):
    """A ``steps:`` group. Pure control flow: its children are journaled, it is not."""

    kind = "steps"
    journaled = False

    def __init__(self, id: str, children: Sequence[Node], **kw: Any) -> None:
        super().__init__(id, **kw)
        self.children = list(children)

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        return await run_sequence(rt, ns, path + "/", self.children), None
