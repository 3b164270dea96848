"""Runtime nodes: a planned workflow is a tree of these. This module holds the shared contract
(replay, fallback, journaling) and the leaf steps: function call, model call, sub-workflow and
human review. The patterns (parallel, orchestrator-worker, saga, branches, loops) live in
``podium.workflows.patterns``.

Every journaled node runs through :meth:`Node.run_at`: a step whose completion is in the journal
returns the recorded output without running again; a step that failed for good replays its
failure (or goes straight to its fallback).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from podium.errors import (
    ModelError,
    PodiumError,
    ReviewRejected,
    StepFailed,
    StepTimeout,
    WorkflowError,
    WorkflowSuspended,
)
from podium.types import ModelCall
from podium.workflows.context import Namespace, RunState
from podium.workflows.expressions import Compiled, ExpressionError
from podium.workflows.journal import dumps
from podium.workflows.spec import RetryPolicy

Evaluator = Callable[[Namespace], Any]
_IMMUTABLE = (str, int, float, bool, type(None))
_NOT_RETRYABLE = (ValidationError, TypeError, ExpressionError, ReviewRejected)


def describe(exc: BaseException) -> dict[str, Any]:
    """An error as journal data: its type, message and, once located, the failing step."""
    kind = exc.error_type if isinstance(exc, StepFailed) else type(exc).__name__
    info: dict[str, Any] = {"type": kind, "message": str(exc) or kind}
    if isinstance(exc, WorkflowError) and exc.step_id:
        info["step"] = exc.step_id
    return info


def as_failure(path: str, info: dict[str, Any], run_id: str) -> StepFailed:
    """The located error a step raises, from its description.

    Used live and on replay alike, so a resumed run sees the very same error (type, message,
    step) as the run that recorded it.
    """
    if info.get("step"):
        return StepFailed(
            info["message"], run_id=run_id, step_id=info["step"], error_type=info["type"]
        )
    return StepFailed(
        f"step {path} failed: {info['type']}: {info['message']}",
        run_id=run_id,
        step_id=path,
        error_type=info["type"],
    )


class Node:
    """One step of a planned workflow."""

    kind = "node"
    journaled = True
    """Record completion (and final failure) in the journal; replay it on resume."""
    records_own_failures = False
    times_itself = False

    def __init__(
        self,
        id: str,
        *,
        when: Evaluator | None = None,
        fallback: Node | None = None,
        compensate: Node | None = None,
        timeout: float | None = None,
    ) -> None:
        self.id = id
        self.when = when
        self.fallback = fallback
        self.compensate = compensate
        self.timeout = timeout

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        """Do the step's work; return its output and optional metadata."""
        raise NotImplementedError

    async def run(self, rt: RunState, ns: Namespace, prefix: str) -> Any:
        """Run as a child of a container: honour ``when`` and publish ``steps.<id>``."""
        steps = ns["steps"]
        if self.when is not None and not self.when(ns):
            steps[self.id] = {"output": None, "skipped": True}
            return None
        out, meta = await self.run_at(rt, ns, prefix + self.id)
        steps[self.id] = {"output": out, **meta} if meta else {"output": out}
        return out

    async def run_at(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        """Run at ``path``, replaying from the journal when the step already finished."""
        failure: dict[str, Any] | None = None
        if self.journaled:
            done = rt.replay.completed.get(path)
            if done is not None:
                return done.get("o"), done.get("m")
            failure = rt.replay.terminal.get(path)
        if failure is None:
            try:
                if self.timeout is not None and not self.times_itself:
                    try:
                        async with asyncio.timeout(self.timeout):
                            out, meta = await self.execute(rt, ns, path)
                    except TimeoutError:
                        raise StepTimeout(
                            f"step {path} timed out after {self.timeout:g}s",
                            run_id=rt.run_id,
                            step_id=path,
                        ) from None
                else:
                    out, meta = await self.execute(rt, ns, path)
            except (WorkflowSuspended, asyncio.CancelledError):
                raise
            except Exception as exc:
                failure = describe(exc)
                if self.journaled and not self.records_own_failures:
                    rt.journal.record("step_failed", path, 0, dumps({**failure, "final": True}))
                    await rt.journal.commit()
                if self.fallback is None:
                    if isinstance(exc, WorkflowError) and exc.step_id:
                        raise
                    raise as_failure(path, failure, rt.run_id) from exc
            else:
                if self.journaled:
                    out = await self._complete(rt, path, out, meta)
                return out, meta
        if self.fallback is None:
            raise as_failure(path, failure, rt.run_id)
        out, _ = await self.fallback.run_at(rt, ns, path + "#fallback")
        meta = {"fallback": True, "error": failure.get("message")}
        if self.journaled:
            out = await self._complete(rt, path, out, meta)
        return out, meta

    @staticmethod
    async def _complete(rt: RunState, path: str, out: Any, meta: dict[str, Any] | None) -> Any:
        text = dumps(out)
        if meta:
            rt.journal.record("step_completed", path, 0, f'{{"o":{text},"m":{dumps(meta)}}}')
        else:
            rt.journal.record("step_completed", path, 0, f'{{"o":{text}}}')
        await rt.journal.commit()
        # Downstream steps see exactly what a replay would see.
        return out if isinstance(out, _IMMUTABLE) else json.loads(text)


def retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether ``policy`` retries ``exc``."""
    if policy.retry_on:
        names = {cls.__name__ for cls in type(exc).__mro__}
        return bool(names.intersection(policy.retry_on))
    if isinstance(exc, _NOT_RETRYABLE):
        return False
    if isinstance(exc, PodiumError):
        return exc.retryable
    return True


class LeafNode(Node):
    """A step that does one unit of work, with retries (backoff + full jitter) per attempt."""

    records_own_failures = True
    times_itself = True

    def __init__(self, id: str, *, retry: RetryPolicy | None = None, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.retry = retry

    async def invoke(self, rt: RunState, ns: Namespace, path: str, attempt: int) -> Any:
        """One attempt."""
        raise NotImplementedError

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        attempt = rt.replay.failures.get(path, 0)
        policy = self.retry
        while True:
            attempt += 1
            rt.journal.record("step_started", path, attempt)
            try:
                if self.timeout is None:
                    return await self.invoke(rt, ns, path, attempt), None
                try:
                    async with asyncio.timeout(self.timeout):
                        return await self.invoke(rt, ns, path, attempt), None
                except TimeoutError:
                    raise StepTimeout(
                        f"step {path} timed out after {self.timeout:g}s",
                        run_id=rt.run_id,
                        step_id=path,
                    ) from None
            except (WorkflowSuspended, asyncio.CancelledError):
                raise
            except Exception as exc:
                again = (
                    policy is not None and attempt < policy.max_attempts and retryable(exc, policy)
                )
                info = describe(exc)
                rt.journal.record("step_failed", path, attempt, dumps({**info, "final": not again}))
                await rt.journal.commit()
                if not again:
                    raise
                assert policy is not None
                delay = min(
                    policy.max_delay, policy.initial_delay * policy.multiplier ** (attempt - 1)
                )
                if policy.jitter:
                    delay = rt.rng.uniform(0, delay)
                await rt.clock.sleep(delay)


class CallNode(LeafNode):
    """Call a Python function (async awaited, sync in the executor's thread pool)."""

    kind = "call"

    def __init__(
        self,
        id: str,
        fn: Callable[..., Any],
        input: Compiled,
        *,
        wants_ctx: bool = False,
        pass_task_input: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.fn = fn
        self.input = input
        self.wants_ctx = wants_ctx
        self.pass_task_input = pass_task_input

    async def invoke(self, rt: RunState, ns: Namespace, path: str, attempt: int) -> Any:
        if self.pass_task_input:
            kwargs = dict(ns["task"]["input"] or {})
        else:
            kwargs = self.input.evaluate(ns)
            if self.input.constant:
                kwargs = dict(kwargs)
        if self.wants_ctx:
            kwargs["ctx"] = rt.step_context(path, attempt)
        return await rt.executor.run(self.fn, kwargs)


class ModelNode(LeafNode):
    """Call a model through the governed call path (``ModelGateway``)."""

    kind = "model"

    def __init__(
        self,
        id: str,
        model: str,
        messages: Compiled,
        params: Compiled,
        parse: str = "text",
        fallbacks: tuple[str, ...] = (),
        **kw: Any,
    ) -> None:
        super().__init__(id, **kw)
        self.model = model
        self.messages = messages
        self.params = params
        self.parse = parse
        self.fallbacks = fallbacks

    async def invoke(self, rt: RunState, ns: Namespace, path: str, attempt: int) -> Any:
        if rt.gateway is None:
            raise ModelError(
                f"step {path} calls model {self.model!r} but no model gateway is configured",
                model=self.model,
            )
        request = ModelCall(
            model=self.model,
            messages=self.messages.evaluate(ns),
            params=self.params.evaluate(ns),
            metadata={
                "run_id": rt.run_id,
                "step": path,
                "attempt": str(attempt),
                "idempotency_key": f"{rt.run_id}/{path}",
            },
            fallbacks=self.fallbacks,
        )
        reply = await rt.gateway.call(request)
        data = reply.data
        if self.parse == "json":
            try:
                data = json.loads(reply.text)
            except json.JSONDecodeError as exc:
                raise StepFailed(
                    f"step {path}: model {reply.model} did not answer valid JSON: {exc}",
                    run_id=rt.run_id,
                    step_id=path,
                    error_type="JSONDecodeError",
                    retryable=True,
                ) from None
        return {
            "text": reply.text,
            "data": data,
            "model": reply.model,
            "usage": dict(reply.usage),
            "cost": str(reply.cost) if reply.cost is not None else None,
            "route": dict(reply.route) if reply.route is not None else None,
        }


class ReviewNode(Node):
    """Wait durably for a human decision delivered as a signal (``podium approve``)."""

    kind = "review"

    def __init__(self, id: str, prompt: Compiled, data: Compiled, on_reject: str, **kw: Any):
        super().__init__(id, **kw)
        self.prompt = prompt
        self.data = data
        self.on_reject = on_reject

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        if rt.signals is None:
            rt.signals = await rt.store.signals(rt.run_id)
        raw = rt.signals.get(f"review:{path}")
        if raw is None:
            if path not in rt.replay.review_requested:
                request = {"prompt": self.prompt.evaluate(ns), "data": self.data.evaluate(ns)}
                rt.journal.record("review_requested", path, 0, dumps(request))
                rt.replay.review_requested.add(path)
                await rt.journal.commit()
            raise WorkflowSuspended(rt.run_id, [path])
        decision = json.loads(raw)
        if not decision.get("approved") and self.on_reject == "fail":
            comment = decision.get("comment") or "no comment"
            raise ReviewRejected(
                f"step {path} was rejected by {decision.get('by') or 'a reviewer'}: {comment}",
                run_id=rt.run_id,
                step_id=path,
            )
        return decision, None


class SubWorkflowNode(Node):
    """Run another planned workflow inline; its steps are journaled under this step's path."""

    kind = "workflow"

    def __init__(self, id: str, plan: Any, input: Compiled, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.plan = plan
        self.input = input

    async def execute(
        self, rt: RunState, ns: Namespace, path: str
    ) -> tuple[Any, dict[str, Any] | None]:
        inputs = self.plan.validate_inputs(self.input.evaluate(ns))
        child: Namespace = {"inputs": inputs, "steps": {}, "run": ns.get("run")}
        return await self.plan.execute(rt, child, path + "/"), None
