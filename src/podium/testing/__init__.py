"""Fakes for tests — ours and yours. Nothing here touches the network or the real clock.

- :class:`FakeClock`: virtual time; ``sleep`` advances it instantly (backoff tests run in µs).
- :class:`FakeGateway`: a scripted model gateway that records every call it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from podium.errors import ModelError, ModelNotFound
from podium.types import ModelCall, ModelReply


class FakeClock:
    """A clock whose time moves only when slept on or advanced."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self.sleeps: list[float] = []
        """Every ``sleep`` requested, in order (e.g. retry backoff delays)."""

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


Reply = str | ModelReply | BaseException | Callable[[ModelCall], Any]


class FakeGateway:
    """Answers model calls from a script: per model, a reply or a sequence of replies.

    A reply is text, a :class:`ModelReply`, an exception to raise, or a function of the
    request. ``calls`` records every request, so tests can assert what was asked.
    """

    def __init__(self, script: dict[str, Reply | Sequence[Reply]] | None = None) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.calls: list[ModelCall] = []
        for model, replies in (script or {}).items():
            self.add(model, replies)

    def add(self, model: str, replies: Reply | Sequence[Reply]) -> None:
        """Script ``model``; a sequence is used in order, its last entry repeating."""
        if isinstance(replies, str | ModelReply | BaseException) or callable(replies):
            self.script[model] = [replies]
        else:
            self.script[model] = list(replies)

    async def call(self, request: ModelCall) -> ModelReply:
        self.calls.append(request)
        replies = self.script.get(request.model)
        if not replies:
            raise ModelNotFound(f"model {request.model!r} is not scripted", model=request.model)
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply) and not isinstance(reply, ModelReply):
            reply = reply(request)
            if asyncio.iscoroutine(reply):
                reply = await reply
        if isinstance(reply, ModelReply):
            return reply
        text = str(reply)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
        return ModelReply(
            text=text,
            model=request.model,
            usage={"input_tokens": prompt_tokens, "output_tokens": len(text.split())},
            cost=Decimal("0"),
        )


def flaky(failures: int, error: BaseException | None = None) -> Callable[..., Any]:
    """A step function that raises ``error`` on its first ``failures`` calls, then succeeds."""
    state = {"calls": 0}

    async def step(**kwargs: Any) -> dict[str, Any]:
        state["calls"] += 1
        if state["calls"] <= failures:
            raise error or ModelError("transient failure", retryable=True)
        return {"calls": state["calls"], **kwargs}

    step.state = state  # type: ignore[attr-defined]
    return step
