"""Cohere's v2 API (``api.cohere.com``), natively: chat and embeddings.

Chat is ``POST /v2/chat`` with a bearer key. Messages keep their roles (``system``, ``user``,
``assistant`` with ``tool_calls``, ``tool`` answering a ``tool_call_id``); tools are
``{"type": "function", "function": {...}}``; JSON mode is ``response_format``
``{"type": "json_object"}`` (with ``json_schema`` for structured output); ``tool_choice`` is
``REQUIRED`` or ``NONE`` (naming one tool keeps only that tool and requires it). Streams are
server-sent events ``message-start``, ``content-start``/``content-delta``/``content-end``,
``tool-plan-delta``, ``tool-call-start``/``tool-call-delta``/``tool-call-end`` and finally
``message-end``, which carries ``finish_reason`` and usage — a stream without it was cut.
``finish_reason`` ``ERROR`` in a stream's ``message-end`` is an error, raised as such.

Usage: ``usage.billed_units`` holds the tokens Cohere charges (``usage.tokens`` adds its prompt
template, which is not billed), so :func:`usage_from` counts billed units, falling back to
``tokens`` when no billed units are reported. Embeddings are ``POST /v2/embed`` with
``embedding_types: ["float"]`` and an ``input_type`` (``search_document`` unless the catalog
entry's ``extra.input_type`` says otherwise), at most 96 texts a request. The request id is the
response ``id``, or the ``x-debug-trace-id`` header on errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from podium.errors import ModelError, ProviderOverloaded
from podium.models.base import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    FinishReason,
    Message,
    ToolCall,
    Usage,
)
from podium.models.providers.hosted import HostedModel
from podium.models.providers.http import (
    map_http_error,
    map_transport_error,
    redact,
    stream_cut,
)
from podium.models.providers.sse import iter_sse

if TYPE_CHECKING:
    from podium.models.catalog import ModelInfo
    from podium.models.registry import ModelRegistry

PROVIDER = "cohere"
BASE_URL = "https://api.cohere.com"
EMBED_BATCH = 96
"""``/v2/embed`` takes at most this many texts."""

_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    "TIMEOUT": "error",
}


def finish_reason(value: str | None) -> FinishReason:
    """Podium's finish reason for a Cohere ``finish_reason``."""
    return _FINISH.get(value or "COMPLETE", "stop")


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """Podium's :class:`Usage` from a Cohere ``usage`` (or embed ``meta``): billed units."""
    if not data:
        return Usage()
    units = data.get("billed_units") or data.get("tokens") or {}
    return Usage(
        input_tokens=int(units.get("input_tokens") or 0),
        output_tokens=int(units.get("output_tokens") or 0),
    )


def _content(content: str | Sequence[Mapping[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            parts.append({"type": "image_url", "image_url": {"url": str(url)}})
    return parts


def wire_message(message: Message) -> dict[str, Any]:
    """A Podium message in Cohere's v2 wire form."""
    out: dict[str, Any] = {"role": message.role}
    content = _content(message.content)
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
        out["content"] = content or ""
        return out
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        if content:
            out["content"] = content
        return out
    out["content"] = content
    return out


def response_format(value: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """Cohere's ``response_format`` for Podium's ``json`` mode or a JSON Schema."""
    if value == "text":
        return None
    out: dict[str, Any] = {"type": "json_object"}
    if isinstance(value, Mapping) and value.get("type") != "json_object":
        spec = value.get("json_schema", value) if value.get("type") == "json_schema" else value
        schema = spec.get("schema", spec)
        out["json_schema"] = dict(schema)
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        str(p.get("text", "")) for p in content or () if isinstance(p, Mapping) and "text" in p
    )


def _calls(data: Sequence[Mapping[str, Any]] | None) -> list[ToolCall]:
    return [
        ToolCall(str(c.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments") or ""))
        for c in data or ()
        for fn in [c.get("function") or {}]
    ]


class CohereModel(HostedModel):
    """A Cohere model behind the v2 API."""

    fast_transport = True

    provider = PROVIDER

    def __init__(
        self,
        info: ModelInfo,
        *,
        base_url: str | None = None,
        api_key: SecretStr | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            info: The catalog entry (``provider_model`` is the id sent, e.g. ``command-a-03-2025``).
            base_url: Overrides ``https://api.cohere.com``.
            api_key: The Cohere API key; kept secret, sent only in each request's header.
            timeout: Seconds for connecting and for each read.
            transport: The httpx transport (the test seam; ``None``: real network).
        """
        super().__init__(
            info,
            base_url=(base_url or BASE_URL).rstrip("/"),
            api_key=api_key,
            timeout=timeout,
            transport=transport,
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._key()}"}

    def _error(self, response: httpx.Response, body: bytes) -> ModelError:
        body = redact(body, self._secret())
        request_id = _body_id(body) or response.headers.get("x-debug-trace-id")
        return map_http_error(
            response, provider=PROVIDER, model=self.name, request_id=request_id, body=body
        )

    async def _post(self, path: str, body: Mapping[str, Any]) -> tuple[Any, str | None]:
        """POST ``body``; the parsed JSON answer and the request id, or the mapped error."""
        client = self._client()
        headers = self._headers()
        try:
            response = await client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=PROVIDER, model=self.name) from None
        if response.status_code >= 400:
            raise self._error(response, response.content)
        try:
            data = response.json()
        except ValueError:
            raise ProviderOverloaded(
                "cohere: the response is not JSON", provider=PROVIDER, model=self.name
            ) from None
        return data, data.get("id") or response.headers.get("x-debug-trace-id")

    # -- chat -------------------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of a ``/v2/chat`` request."""
        body: dict[str, Any] = {
            "model": self.info.provider_model,
            "messages": [wire_message(m) for m in request.messages],
            "stream": stream,
        }
        optional = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "p": request.top_p,
            "seed": request.seed,
            "stop_sequences": list(request.stop) or None,
            "response_format": response_format(request.response_format),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        tools = list(request.tools)
        choice = request.tool_choice
        if choice and choice not in ("auto", "none", "required"):
            tools = [t for t in tools if t.name == choice]
            choice = "required"
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools
            ]
        if choice in ("required", "none"):
            body["tool_choice"] = choice.upper()
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._require(Capability.CHAT)
        started = time.perf_counter()
        data, request_id = await self._post("v2/chat", self.chat_body(request))
        latency = time.perf_counter() - started
        message = data.get("message") or {}
        return ChatResponse(
            text=_text(message.get("content")),
            model_requested=request.model,
            model_served=self.info.provider_model,
            provider=PROVIDER,
            usage=usage_from(data.get("usage")),
            finish_reason=finish_reason(data.get("finish_reason")),
            tool_calls=_calls(message.get("tool_calls")),
            request_id=request_id,
            latency_s=latency,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Text deltas as they arrive; the last chunk (from ``message-end``) carries the finish
        reason, the usage and the tool calls."""
        self._require(Capability.STREAM)
        client = self._client()
        headers = self._headers()
        body = self.chat_body(request, stream=True)
        started = False
        try:
            async with client.stream("POST", "v2/chat", json=body, headers=headers) as response:
                if response.status_code >= 400:
                    raise self._error(response, await response.aread())
                started = True
                async for chunk in self._chunks(response):
                    yield chunk
        except httpx.HTTPError as exc:
            if not started:
                raise map_transport_error(exc, provider=PROVIDER, model=self.name) from None
            raise stream_cut(PROVIDER, self.name, None, exc) from None

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[ChatChunk]:
        request_id: str | None = response.headers.get("x-debug-trace-id")
        served = self.info.provider_model
        calls: dict[int, dict[str, str]] = {}
        async for event in iter_sse(response.aiter_lines()):
            if not event.data or event.data == "[DONE]":
                continue
            try:
                data = json.loads(event.data)
            except ValueError:
                raise ProviderOverloaded(
                    "cohere: a stream event is not JSON",
                    provider=PROVIDER,
                    model=self.name,
                    request_id=request_id,
                ) from None
            kind = data.get("type") or event.event
            message = (data.get("delta") or {}).get("message") or {}
            if kind == "message-start":
                request_id = data.get("id") or request_id
            elif kind == "content-delta":
                text = _text([message.get("content") or {}])
                if text:
                    yield ChatChunk(delta=text, model_served=served, request_id=request_id)
            elif kind in ("tool-call-start", "tool-call-delta"):
                call = calls.setdefault(int(data.get("index", 0)), {"arguments": ""})
                part = message.get("tool_calls") or {}
                function = part.get("function") or {}
                call["id"] = part.get("id") or call.get("id", "")
                call["name"] = function.get("name") or call.get("name", "")
                call["arguments"] += function.get("arguments") or ""
            elif kind == "message-end":
                delta = data.get("delta") or {}
                if delta.get("error") or delta.get("finish_reason") == "ERROR":
                    raise self._stream_error(delta, request_id)
                yield ChatChunk(
                    tool_calls=[
                        ToolCall(c.get("id", ""), c.get("name", ""), c["arguments"])
                        for _, c in sorted(calls.items())
                    ],
                    finish_reason=finish_reason(delta.get("finish_reason")),
                    usage=usage_from(delta.get("usage")),
                    model_served=served,
                    request_id=request_id,
                )
                return
        raise stream_cut(PROVIDER, self.name, request_id)

    def _stream_error(self, delta: Mapping[str, Any], request_id: str | None) -> ModelError:
        """The error a ``message-end`` with ``finish_reason`` ``ERROR`` reports."""
        message = str(delta.get("error") or "the generation failed")
        body = json.dumps({"message": message}).encode()
        return map_http_error(
            httpx.Response(500, content=body),
            provider=PROVIDER,
            model=self.name,
            request_id=request_id,
            body=body,
        )

    # -- embeddings -------------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self._require(Capability.EMBED)
        started = time.perf_counter()
        inputs = list(request.inputs)
        input_type = self.info.extra.get("input_type", "search_document")
        dimension = self.info.extra.get("output_dimension")
        vectors: list[list[float]] = []
        usage = Usage(requests=0)
        request_id: str | None = None
        for start in range(0, len(inputs), EMBED_BATCH):
            body: dict[str, Any] = {
                "model": self.info.provider_model,
                "texts": inputs[start : start + EMBED_BATCH],
                "input_type": input_type,
                "embedding_types": ["float"],
            }
            if dimension:
                body["output_dimension"] = int(dimension)
            data, rid = await self._post("v2/embed", body)
            request_id = request_id or rid
            rows = (data.get("embeddings") or {}).get("float") or []
            vectors.extend([float(v) for v in row] for row in rows)
            usage = usage + usage_from(data.get("meta"))
        return EmbedResponse(
            vectors=vectors,
            model_served=self.info.provider_model,
            provider=PROVIDER,
            usage=usage,
            request_id=request_id,
            latency_s=time.perf_counter() - started,
        )


def _body_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return str(value) if value else None


def register(registry: ModelRegistry) -> None:
    """Register the Cohere adapter (the ``podium.models`` plug-in)."""
    registry.add_provider(PROVIDER, CohereModel.from_settings)
