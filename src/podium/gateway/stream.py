"""A streamed chat completion through the call path (:class:`ChatStream`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from podium.gateway.cache import CacheHit, CacheMiss
from podium.gateway.records import Caller, CallOptions, CallRecord
from podium.gateway.resilience import Attempt, fallback_stream, is_final_chunk
from podium.gateway.routing import Deployment
from podium.models.base import ChatChunk, ChatRequest, ChatResponse, ToolCall, Usage

if TYPE_CHECKING:
    from podium.gateway.pipeline import Gateway


class ChatStream:
    """A streamed chat completion through the call path.

    ``await start()`` runs admit, cache, route and budget, then opens the stream and waits for
    its first chunk — failing over to the next deployment while nothing has been sent. Iterating
    then yields every chunk; the last one carries ``finish_reason`` and usage. A stream that
    breaks after its start raises :class:`~podium.errors.ProviderTimeout` (never a truncated
    success). The record stage runs when the stream ends, however it ends.
    """

    def __init__(
        self, gateway: Gateway, request: ChatRequest, caller: Caller, options: CallOptions
    ) -> None:
        self.gateway = gateway
        self.request = request
        self.caller = caller
        self.options = options
        self.ctx = gateway._context(caller, options, "stream", request.model)
        self.record: CallRecord | None = None
        self.model_served: str | None = None
        self._first: ChatChunk | None = None
        self._source: AsyncIterator[ChatChunk] | None = None
        self._replay: list[ChatChunk] | None = None
        self._miss: CacheMiss | None = None
        self._started = False
        self._text: list[str] = []
        self._tools: list[ToolCall] = []
        self._last: ChatChunk | None = None

    @property
    def request_id(self) -> str:
        return self.ctx.request_id

    @property
    def deployment(self) -> Deployment | None:
        """The deployment serving the stream once started (``None``: a cache hit or a
        declared fallback answer)."""
        served = getattr(self._source, "deployment", None)
        return self.gateway._find(self.ctx, served)

    async def start(self) -> None:
        """Run the stages up to the first chunk. Raises what the non-streamed call would."""
        if self._started:
            return
        self._started = True
        gw, ctx, request = self.gateway, self.ctx, self.request
        from podium.gateway.limits import estimate_tokens

        try:
            request = self.request = await gw._admit(ctx, request, estimate_tokens(request))
            if gw.cache is not None and self.options.cache:
                found = await gw.cache.lookup(gw._cache_query(self.caller, request, self.options))
                if isinstance(found, CacheHit):
                    self.record = await gw._cache_hit(ctx, found)
                    self.model_served = found.response.model_served
                    self._replay = replay_chunks(found.response)
                    return
                self._miss = found
            decision, request = await gw._plan(ctx, request, True, self.options.tags)
            self.request = request
        except BaseException as exc:
            await gw._refused(ctx, exc)
            raise
        text = gw.fallbacks.get(decision.group)
        self._source = gw.resilience.stream(
            decision.ranked,
            lambda d: self._open(d),
            is_final=is_final_chunk,
            needed_tokens=decision.needed_tokens,
            fallback=fallback_stream(text) if text is not None else None,
        )
        try:
            self._first = await anext(self._source)
        except BaseException as exc:
            await self._done(None, exc)
            raise
        self.model_served = self._first.model_served

    def _open(self, deployment: Deployment) -> AsyncIterator[ChatChunk]:
        model = self.gateway.adapter(deployment)

        async def chunks() -> AsyncIterator[ChatChunk]:
            await self.gateway._deployment_limit(deployment, self.request)
            with self.gateway.router.stats.track(deployment.id):
                async for chunk in model.stream(self.request):
                    yield chunk

        return chunks()

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        governed = self.ctx.governed
        if governed is not None and governed.restores:
            # Placeholders go back in on the way out; what is cached and audited keeps them.
            from podium.governance.gate import StreamRestorer

            return StreamRestorer(governed).wrap(self._iterate())
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatChunk]:
        await self.start()
        if self._replay is not None:
            for chunk in self._replay:
                yield chunk
            return
        assert self._source is not None
        assert self._first is not None
        text, tools = self._text, self._tools
        try:
            chunk = self._first
            while True:
                text.append(chunk.delta)
                tools.extend(chunk.tool_calls)
                self._last = chunk
                yield chunk
                if is_final_chunk(chunk):
                    break
                chunk = await anext(self._source)
        except StopAsyncIteration:
            pass
        except BaseException as exc:
            # Shielded: a cancelled client must not cut the record stage (settle, ledger).
            await asyncio.shield(self._done(self._last, exc, "".join(text)))
            raise
        await asyncio.shield(self._done(self._last, None, "".join(text), tools))

    async def _done(
        self,
        last: ChatChunk | None,
        error: BaseException | None,
        text: str = "",
        tools: Sequence[ToolCall] = (),
    ) -> None:
        if self.record is not None:
            return
        gw, ctx = self.gateway, self.ctx
        source = self._source
        deployment = gw._find(ctx, getattr(source, "deployment", None))
        degraded = bool(getattr(source, "degraded", False))
        attempts: Sequence[Attempt] = source.attempts if source is not None else ()  # type: ignore[attr-defined]
        usage = last.usage if last is not None and last.usage is not None else None
        if error is not None:
            if usage is None and deployment is not None and text:
                # Billed by the provider up to the cut: charge what was produced.
                usage = Usage(
                    input_tokens=ctx.route.prompt_tokens if ctx.route else 0,
                    output_tokens=math.ceil(len(text) / 4),
                )
            self.record = await gw._finish(
                ctx,
                deployment=deployment,
                usage=usage or Usage(requests=0),
                outcome="error",
                error=error,
                attempts=attempts,
                response=text or None,
            )
            return
        usage = usage or Usage()
        self.record = await gw._finish(
            ctx,
            deployment=deployment,
            usage=usage,
            outcome="degraded" if degraded else "ok",
            attempts=attempts,
            baseline=gw._baseline(self.request.model, deployment, usage),
            served=last.model_served if degraded and last is not None else None,
            response=text,
        )
        if self._miss is not None and gw.cache is not None and not degraded and last is not None:
            response = ChatResponse(
                text,
                self.request.model,
                (last.model_served or (deployment.model if deployment else self.request.model)),
                deployment.provider if deployment else "unknown",
                usage,
                finish_reason=last.finish_reason or "stop",
                tool_calls=tuple(tools),
            )
            await gw.cache.store(self._miss, response)

    async def aclose(self) -> None:
        """Stop early (the client went away): the record stage still runs."""
        if self._source is not None:
            await self._source.aclose()  # type: ignore[attr-defined]
        if self.record is None and self._started:
            error = asyncio.CancelledError("the client stopped reading the stream")
            await asyncio.shield(self._done(self._last, error, "".join(self._text)))


def replay_chunks(response: ChatResponse) -> list[ChatChunk]:
    """A stored response as a stream: its text, then the final chunk with usage."""
    return [
        ChatChunk(
            delta=response.text,
            tool_calls=tuple(response.tool_calls),
            model_served=response.model_served,
        ),
        ChatChunk(
            finish_reason=response.finish_reason,
            usage=response.usage,
            model_served=response.model_served,
        ),
    ]
