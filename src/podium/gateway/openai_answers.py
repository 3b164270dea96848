"""The OpenAI wire format's answers: the gateway's results as OpenAI shapes (``chat.completion``,
its ``chat.completion.chunk`` stream, lists of ``embedding`` and ``model``, moderation results),
with the gateway's request id as ``id`` and the model that served as ``model``.

:class:`~podium.models.base.Usage` counts each token once, while OpenAI counts cached tokens
inside ``prompt_tokens`` and reasoning tokens inside ``completion_tokens``: :func:`wire_usage`
adds them back and reports them in ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``. The requests, and their validation, are in
:mod:`podium.gateway.openai_wire`.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from podium.gateway.openai_wire import FLAG_SCORE, FunctionCall, ModerationInputs, ToolCallWire
from podium.gateway.pipeline import ModelListing
from podium.models.base import (
    ChatChunk,
    ChatResponse,
    EmbedResponse,
    FinishReason,
    ModerationResponse,
    ToolCall,
    Usage,
)
from podium.models.catalog import money


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    """Read from the provider's prompt cache (counted in ``prompt_tokens``)."""
    cache_write_tokens: int = 0
    """Written to the provider's prompt cache (counted in ``prompt_tokens``; a Podium field)."""


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0
    """Spent reasoning (counted in ``completion_tokens``)."""


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


def wire_usage(usage: Usage) -> CompletionUsage:
    """OpenAI's usage object (the inverse of the OpenAI adapter's ``usage_from``)."""
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    completion = usage.output_tokens + usage.reasoning_tokens
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens
        ),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    """``null`` when the answer is only tool calls."""
    refusal: str | None = None
    tool_calls: list[ToolCallWire] | None = Field(default=None, exclude_if=lambda v: v is None)
    """Left out when the model called no tool, as OpenAI leaves it out."""


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason
    """OpenAI's reasons, and ``error`` when a provider ended the answer abnormally."""


class ChatCompletion(BaseModel):
    """A ``chat.completion``."""

    id: str
    """The gateway's request id (also the ``x-request-id`` header)."""
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    """The model that served (not necessarily the one asked for)."""
    choices: list[Choice]
    usage: CompletionUsage


def _calls(calls: Sequence[ToolCall]) -> list[ToolCallWire] | None:
    if not calls:
        return None
    return [
        ToolCallWire(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in calls
    ]


def chat_completion(response: ChatResponse, *, request_id: str, created: int) -> ChatCompletion:
    """The ``chat.completion`` of a finished answer."""
    calls = _calls(response.tool_calls)
    content = response.text if response.text or not calls else None
    return ChatCompletion(
        id=request_id,
        created=created,
        model=response.model_served,
        choices=[
            Choice(
                message=AssistantMessage(content=content, tool_calls=calls),
                finish_reason=response.finish_reason,
            )
        ],
        usage=wire_usage(response.usage),
    )


def chat_completion_json(response: ChatResponse, *, request_id: str, created: int) -> bytes:
    """:func:`chat_completion` as the JSON its model serializes to, byte for byte (a test holds
    them equal), built as plain data and written by orjson: the gateway's hot route, where
    validating six models to serialize them took ~10 µs a call."""
    calls = response.tool_calls
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.text if response.text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    usage = response.usage
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    completion = usage.output_tokens + usage.reasoning_tokens
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": response.model_served,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": response.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {
                    "cached_tokens": usage.cache_read_tokens,
                    "cache_write_tokens": usage.cache_write_tokens,
                },
                "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            },
        }
    )


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"
"""The event that ends a complete stream (never sent after an error)."""


class ChunkWriter:
    """Turns the gateway's stream chunks into OpenAI's ``chat.completion.chunk`` events.

    The first event carries ``role: assistant``; text deltas become ``content`` deltas; tool
    calls (which the gateway delivers whole) one ``tool_calls`` delta each, indexed across the
    stream; the final chunk a ``finish_reason`` event, then, with ``include_usage``, an event
    with no choices and the usage (every other event then carries ``"usage": null``).
    """

    def __init__(
        self, request_id: str, created: int, model: str, *, include_usage: bool = False
    ) -> None:
        self.request_id = request_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.finished = False
        """The final chunk was written: only ``[DONE]`` may follow."""
        self._opened = False
        self._tools = 0

    def _event(
        self,
        delta: dict[str, Any] | None,
        finish: FinishReason | None = None,
        usage: Usage | None = None,
    ) -> bytes:
        data: dict[str, Any] = {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
        }
        if delta is not None:
            if not self._opened:
                delta = {"role": "assistant", **delta}
                self._opened = True
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data["choices"] = [choice]
        if self.include_usage:
            data["usage"] = wire_usage(usage).model_dump() if usage is not None else None
        return sse(data)

    def events(self, chunk: ChatChunk) -> Iterator[bytes]:
        """The events of one chunk (an empty chunk gives none, except the opening one)."""
        if chunk.model_served:
            self.model = chunk.model_served
        if chunk.delta or not self._opened:
            yield self._event({"content": chunk.delta})
        for call in chunk.tool_calls:
            spec = {
                "index": self._tools,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            self._tools += 1
            yield self._event({"tool_calls": [spec]})
        if chunk.finish_reason is not None:
            self.finished = True
            yield self._event({}, chunk.finish_reason)
            if self.include_usage:
                yield self._event(None, usage=chunk.usage or Usage())


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    """Floats, or (``encoding_format: base64``) little-endian float32s in base64."""


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """The answer to ``POST /v1/embeddings``."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


def embedding_list(
    response: EmbedResponse, encoding: Literal["float", "base64"] = "float"
) -> EmbeddingList:
    """The answer to ``POST /v1/embeddings``, vectors in request order."""
    data: list[EmbeddingData] = []
    for i, vector in enumerate(response.vectors):
        value: list[float] | str = [float(v) for v in vector]
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append(EmbeddingData(index=i, embedding=value))
    tokens = response.usage.input_tokens + response.usage.cache_read_tokens
    return EmbeddingList(
        data=data,
        model=response.model_served,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


class ModelObject(BaseModel):
    """One entry of ``GET /v1/models``; ``kind``, ``capabilities`` and ``context_window`` are
    the gateway's additions."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    kind: Literal["group", "model"]
    """A configured model group, or a catalog model."""
    capabilities: list[str]
    context_window: int | None = None


class ModelList(BaseModel):
    """The answer to ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


def model_object(entry: ModelListing) -> ModelObject:
    return ModelObject(
        id=entry.id,
        owned_by=entry.owned_by,
        kind=entry.kind,
        capabilities=list(entry.capabilities),
        context_window=entry.context_window,
    )


class Moderation(BaseModel):
    """One input's moderation, in the model's own categories."""

    flagged: bool
    categories: dict[str, bool]
    """``true`` when the input is flagged and scores at least :data:`FLAG_SCORE` on it."""
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[Literal["text", "image"]]]


class ModerationList(BaseModel):
    """The answer to ``POST /v1/moderations``."""

    id: str
    model: str
    results: list[Moderation]


def moderation_list(
    response: ModerationResponse, inputs: ModerationInputs, *, request_id: str
) -> ModerationList:
    """The answer to ``POST /v1/moderations``: one result per input, in request order."""
    results: list[Moderation] = []
    for position, kind in zip(inputs.positions, inputs.kinds, strict=True):
        result = response.results[position]
        scores = {name: float(score) for name, score in result.categories.items()}
        results.append(
            Moderation(
                flagged=result.flagged,
                categories={n: result.flagged and s >= FLAG_SCORE for n, s in scores.items()},
                category_scores=scores,
                category_applied_input_types={n: [kind] for n in scores},
            )
        )
    return ModerationList(id=request_id, model=response.model_served, results=results)


def cost_header(cost: Decimal) -> str:
    """A cost as exact fixed-point text (never ``1E-7``)."""
    return money(cost)
