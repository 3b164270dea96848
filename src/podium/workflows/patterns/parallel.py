"""Parallel fan-out / fan-in: independent branches with bounded concurrency, an aggregator
(all, first success, majority vote, weighted score, custom function) and a failure policy
(fail-fast, quorum, best-effort with a degraded flag)."""

from __future__ import annotations

import asyncio
from collections import ChainMap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from podium.errors import QuorumNotMet, StepFailed, WorkflowSuspended
from podium.workflows.context import Namespace, RunState
from podium.workflows.journal import dumps
from podium.workflows.nodes import Evaluator, Node
from podium.workflows.patterns.sequential import run_sequence

Branch = Callable[[], Awaitable[Any]]


@dataclass(slots=True)
class Outcome:
    """How one branch ended."""

    key: Any
    ok: bool
    value: Any = None
    error: BaseException | None = None


async def fan_out(
    rt: RunState,
    keys: Sequence[Any],
    branches: Sequence[Branch],
    *,
    limit: int,
    stop_on_failure: bool,
    stop_on_success: bool = False,
) -> list[Outcome | None]:
    """Run branches concurrently, at most ``limit`` at once.

    Returns outcomes in branch order (``None`` for branches cancelled by an early stop).
    A ``WorkflowSuspended`` branch never stops the others; suspensions are merged and re-raised
    once everything else has settled, unless a failure stopped the block first.
    """
    n = len(branches)
    outcomes: list[Outcome | None] = [None] * n
    if n == 0:
        return outcomes

    async def one(i: int) -> None:
        try:
            value = await branches[i]()
            outcomes[i] = Outcome(keys[i], True, value)
        except WorkflowSuspended as exc:
            outcomes[i] = Outcome(keys[i], False, error=exc)
        except Exception as exc:
            outcomes[i] = Outcome(keys[i], False, error=exc)
            if stop_on_failure:
                raise
            return
        if stop_on_success and outcomes[i] is not None and outcomes[i].ok:  # type: ignore[union-attr]
            raise _Stop

    if limit >= n:
        tasks: list[asyncio.Future[None]] = [asyncio.ensure_future(one(i)) for i in range(n)]
    else:
        # ``limit`` workers take the branches in order: a 10,000-way fan-out capped at 64 holds
        # 64 tasks, not 10,000 (less memory, and the garbage collector has less to walk).
        pending = iter(range(n))

        async def worker() -> None:
            for i in pending:
                await one(i)

        tasks = [asyncio.ensure_future(worker()) for _ in range(limit)]
    rt.journal.concurrent += 1
    try:
        return await _settle(tasks, outcomes, stop_on_failure or stop_on_success)
    finally:
        rt.journal.concurrent -= 1


async def _settle(
    tasks: list[asyncio.Future[None]], outcomes: list[Outcome | None], stop_early: bool
) -> list[Outcome | None]:
    if stop_early:
        pending: set[asyncio.Future[None]] = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if any(t.exception() is not None for t in done if not t.cancelled()):
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    else:
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return outcomes


class _Stop(Exception):
    """A branch succeeded and the block wants only the first success."""


class FanOutNode(Node):
    """Shared aggregation and failure policy of ``parallel`` and ``for_each``."""

    def __init__(
        self,
        id: str,
        *,
        aggregate: str,
        custom: Callable[..., Any] | None,
        vote_on: Evaluator | None,
        score: Evaluator | None,
        weights: dict[str, float],
        failure: str,
        quorum: int | None,
        max_concurrency: int | None,
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.aggregate = aggregate
        self.custom = custom
        self.vote_on = vote_on
        self.score = score
        self.weights = weights
        self.failure = failure
        self.quorum = quorum
        self.max_concurrency = max_concurrency

    async def settle(
        self,
        rt: RunState,
        ns: Namespace,
        path: str,
        keys: list[Any],
        branches: list[Branch],
        as_list: bool,
    ) -> tuple[Any, dict[str, Any] | None]:
        limit = self.max_concurrency or rt.max_concurrency
        first = self.aggregate == "first"
        outcomes = await fan_out(
            rt,
            keys,
            branches,
            limit=limit,
            stop_on_failure=self.failure == "fail_fast" and not first,
            stop_on_success=first,
        )
        suspended = [o.error for o in outcomes if o and isinstance(o.error, WorkflowSuspended)]
        failed = [
            o for o in outcomes if o and not o.ok and not isinstance(o.error, WorkflowSuspended)
        ]
        succeeded = [o for o in outcomes if o and o.ok]
        if failed and self.failure == "fail_fast" and not (first and succeeded):
            err = failed[0].error
            assert err is not None
            raise err
        if suspended and not (first and succeeded):
            waiting = [w for s in suspended for w in s.waiting_on]
            raise WorkflowSuspended(rt.run_id, waiting)
        need = len(keys) // 2 + 1 if self.quorum is None else self.quorum
        if first:
            need = 1
        elif self.failure == "best_effort":
            need = 1 if keys else 0
        elif self.failure == "fail_fast":
            need = len(keys)
        if len(succeeded) < need:
            errors = "; ".join(f"{o.key}: {o.error}" for o in failed)
            raise QuorumNotMet(
                f"step {path}: {len(succeeded)} of {len(keys)} branches succeeded, "
                f"{need} needed ({errors})",
                run_id=rt.run_id,
                step_id=path,
            )
        meta: dict[str, Any] | None = None
        if failed:
            meta = {
                "degraded": True,
                "errors": {str(o.key): str(o.error) for o in failed},
            }
        if first:
            # the earliest success in completion order is the only ok outcome recorded
            return succeeded[0].value, meta
        value = await self._aggregate(rt, ns, outcomes, succeeded, as_list)
        return value, meta

    async def _aggregate(
        self,
        rt: RunState,
        ns: Namespace,
        outcomes: list[Outcome | None],
        succeeded: list[Outcome],
        as_list: bool,
    ) -> Any:
        if as_list:
            collected: Any = [o.value if o and o.ok else None for o in outcomes]
        else:
            collected = {str(o.key): o.value for o in succeeded}
        kind = self.aggregate
        if kind == "all":
            return collected
        if self.custom is not None:
            return await rt.executor.run(self.custom, {"results": collected})
        if kind == "vote":
            counts: dict[str, list[Any]] = {}
            for o in succeeded:
                ballot = (
                    self.vote_on({**ns, "output": o.value, "branch": o.key})
                    if self.vote_on
                    else o.value
                )
                entry = counts.setdefault(dumps(ballot), [0, ballot])
                entry[0] += 1
            best = max(counts.values(), key=lambda e: e[0])  # first max wins ties: branch order
            return {
                "winner": best[1],
                "votes": best[0],
                "total": len(succeeded),
                "agreement": best[0] / len(succeeded),
            }
        if kind == "weighted":
            scores: dict[str, float] = {}
            total = weight_sum = 0.0
            for o in succeeded:
                raw = (
                    self.score({**ns, "output": o.value, "branch": o.key})
                    if self.score
                    else (o.value or {}).get("score")
                )
                try:
                    value = float(cast(Any, raw))
                except (TypeError, ValueError):
                    raise StepFailed(
                        f"step {self.id}: branch {o.key} gave no numeric score ({raw!r})",
                        run_id=rt.run_id,
                        step_id=self.id,
                    ) from None
                w = self.weights.get(str(o.key), 1.0)
                scores[str(o.key)] = value
                total += w * value
                weight_sum += w
            return {"score": total / weight_sum if weight_sum else 0.0, "scores": scores}
        raise AssertionError(f"unknown aggregate {kind!r}")  # plan() rejects these


class ParallelNode(FanOutNode):
    """Fixed branches, each a step (often a ``steps:`` group); keyed by branch id."""

    kind = "parallel"

    def __init__(self, id: str, branches: Sequence[Node], **kw: Any) -> None:
        super().__init__(id, **kw)
        self.branches = list(branches)

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        prefix = path + "/"

        def branch(node: Node) -> Branch:
            return lambda: node.run(rt, ns, prefix)

        keys: list[Any] = [b.id for b in self.branches]
        return await self.settle(
            rt, ns, path, keys, [branch(b) for b in self.branches], as_list=False
        )


class ForEachNode(FanOutNode):
    """The same steps once per item of a list computed at run time."""

    kind = "for_each"

    def __init__(
        self, id: str, items: Evaluator, body: Sequence[Node], max_items: int, **kw: Any
    ) -> None:
        super().__init__(id, **kw)
        self.items = items
        self.body = list(body)
        self.max_items = max_items

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        items = self.items(ns)
        if isinstance(items, dict):
            items = list(items.items())
        if not isinstance(items, list | tuple):
            raise StepFailed(
                f"step {path}: for_each needs a list, got {type(items).__name__}",
                run_id=rt.run_id,
                step_id=path,
            )
        if len(items) > self.max_items:
            raise StepFailed(
                f"step {path}: {len(items)} items exceed max_items={self.max_items}",
                run_id=rt.run_id,
                step_id=path,
            )
        body = self.body
        steps = ns["steps"]

        def branch(i: int, item: Any) -> Branch:
            frame = {**ns, "steps": ChainMap({}, steps), "item": item, "index": i}
            return lambda: run_sequence(rt, frame, f"{path}[{i}]/", body)

        return await self.settle(
            rt,
            ns,
            path,
            list(range(len(items))),
            [branch(i, item) for i, item in enumerate(items)],
            as_list=True,
        )
