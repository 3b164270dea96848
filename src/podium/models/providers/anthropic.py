"""The Anthropic Messages API adapter (``POST /v1/messages``).

Podium's chat form is OpenAI-shaped; this module translates both ways: ``system`` messages become
the top-level ``system`` field, tool calls become ``tool_use`` blocks and tool results
``tool_result`` blocks (consecutive same-role messages merged, as the API expects), and the
response's blocks become text and :class:`~podium.models.base.ToolCall` s. Streams are the
API's named events; a stream that ends without ``message_stop`` raises
:class:`~podium.errors.ProviderTimeout`.

**JSON mode** uses a forced tool, the approach Anthropic documents for guaranteed JSON: the
request gains a tool named :data:`JSON_TOOL` whose ``input_schema`` is the requested schema (or
any object for ``json``), and ``tool_choice`` forces it (``any`` when the caller also passes
tools, so the model may call those instead). The tool's input is returned as the response text
(``finish_reason`` ``stop``). It works on every Claude model, unlike prefilling (refused by newer
models) or instructions alone (no guarantee); the cost is a tool definition's worth of input
tokens.

**Usage**: Anthropic's ``input_tokens`` already excludes cache reads and writes, which it reports
as ``cache_read_input_tokens`` and ``cache_creation_input_tokens``; ``output_tokens`` includes
thinking, which ``output_tokens_details.thinking_tokens`` breaks out when present — so each token
lands in exactly one :class:`~podium.models.base.Usage` field.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from podium.errors import (
    BadModelRequest,
    ContextLengthExceeded,
    ModelError,
    ProviderOverloaded,
)
from podium.models.base import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
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

BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` is required by the API: a request without one gets this (or the model's smaller
``max_output``) — not the model's maximum, which would inflate worst-case budget reservations."""
DEFAULT_TIMEOUT = 600.0
JSON_TOOL = "json_response"
"""The tool JSON mode forces (see the module docstring)."""

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""HTTP status of each error ``type`` (for errors reported inside a 200 stream)."""
_CONTEXT_HINTS = ("prompt is too long", "exceed context limit", "context window")


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """Podium's :class:`Usage` from an Anthropic ``usage`` object (each token counted once)."""
    if not data:
        return Usage()
    thinking = int((data.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
    output = int(data.get("output_tokens") or 0)
    return Usage(
        input_tokens=int(data.get("input_tokens") or 0),
        output_tokens=max(0, output - thinking),
        cache_read_tokens=int(data.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(data.get("cache_creation_input_tokens") or 0),
        reasoning_tokens=thinking,
    )


def _part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    """An OpenAI-style content part as an Anthropic block (Anthropic blocks pass through)."""
    if part.get("type") == "text":
        return {"type": "text", "text": part["text"]} if part.get("text") else None
    if part.get("type") == "image_url":
        image = part.get("image_url")
        url = str(image.get("url") if isinstance(image, Mapping) else image)
        if url.startswith("data:"):
            header, _, data = url.partition(",")
            media_type = header.removeprefix("data:").split(";")[0]
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
        return {"type": "image", "source": {"type": "url", "url": url}}
    return dict(part)


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
        ]
    if isinstance(message.content, str):
        blocks = [{"type": "text", "text": message.content}] if message.content else []
    else:
        blocks = [b for b in map(_part, message.content) if b is not None]
    for call in message.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def wire_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The top-level ``system`` text and the ``messages`` list for Podium's messages."""
    system = "\n\n".join(m.text for m in messages if m.role == "system") or None
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    return system, wire


class AnthropicModel(HostedModel):
    """A Claude model behind Anthropic's Messages API."""

    fast_transport = True

    provider = "anthropic"

    def __init__(
        self,
        info: ModelInfo,
        *,
        base_url: str | None = None,
        api_key: SecretStr | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            info: The catalog entry (``provider_model`` is the model id sent).
            base_url: Overrides :data:`BASE_URL` (a proxy, or a simulator in tests).
            api_key: The key; kept secret, sent only in each request's ``x-api-key`` header.
            timeout: Seconds for connecting and for each read (a long non-streamed answer
                sends nothing until it is done, hence the official SDKs' 10 minutes).
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
        return {"x-api-key": self._key(), "anthropic-version": API_VERSION}

    def _error(self, response: httpx.Response, body: bytes, request_id: str | None) -> ModelError:
        body = redact(body, self._secret())
        try:
            err = json.loads(body).get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        message = str(err.get("message", "")) if isinstance(err, dict) else ""
        kw: dict[str, Any] = {"provider": self.provider, "model": self.name}
        text = f"anthropic {response.status_code}: {message}"
        if response.status_code == 400 and any(h in message.lower() for h in _CONTEXT_HINTS):
            return ContextLengthExceeded(text, request_id=request_id, **kw)
        if response.status_code == 413:  # request_too_large: bytes, not tokens
            return BadModelRequest(text, request_id=request_id, **kw)
        return map_http_error(response, request_id=request_id, body=body, **kw)

    # -- requests ---------------------------------------------------------------------------------

    def messages_body(self, request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of a Messages API request."""
        system, messages = wire_messages(request.messages)
        body: dict[str, Any] = {
            "model": self.info.provider_model,
            "max_tokens": request.max_tokens
            or min(self.info.max_output or DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS),
            "messages": messages,
        }
        optional = {
            "system": system,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop_sequences": list(request.stop) or None,
            "metadata": {"user_id": request.user} if request.user else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        tools = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
        choice: dict[str, Any] | None = None
        if request.tool_choice in ("auto", "none"):
            choice = {"type": request.tool_choice}
        elif request.tool_choice == "required":
            choice = {"type": "any"}
        elif request.tool_choice:
            choice = {"type": "tool", "name": request.tool_choice}
        schema = _json_schema(request.response_format)
        if schema is not None:
            tools.append(
                {
                    "name": JSON_TOOL,
                    "description": "Give your final answer as this tool's input.",
                    "input_schema": schema,
                }
            )
            keep_choice = len(tools) > 1 and request.tool_choice != "none"
            choice = {"type": "any"} if keep_choice else {"type": "tool", "name": JSON_TOOL}
        if tools:
            body["tools"] = tools
            if choice is not None:
                body["tool_choice"] = choice
        if stream:
            body["stream"] = True
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._require(Capability.CHAT)
        client = self._client()
        headers = self._headers()
        body = self.messages_body(request)
        started = time.perf_counter()
        try:
            response = await client.post("v1/messages", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=self.provider, model=self.name) from None
        request_id = _request_id(response.headers)
        if response.status_code >= 400:
            raise self._error(response, response.content, request_id)
        try:
            data = response.json()
        except ValueError:
            raise ProviderOverloaded(
                "anthropic: the response is not JSON",
                provider=self.provider,
                model=self.name,
                request_id=request_id,
            ) from None
        latency = time.perf_counter() - started
        json_mode = _json_schema(request.response_format) is not None
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in data.get("content") or ():
            if block.get("type") == "text":
                text.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input") or {})
                if json_mode and block.get("name") == JSON_TOOL:
                    text.append(arguments)  # the JSON answer (a forced tool emits no preamble)
                else:
                    calls.append(ToolCall(str(block.get("id")), str(block.get("name")), arguments))
        finish = _FINISH.get(str(data.get("stop_reason")), "stop")
        if json_mode and finish == "tool_calls" and not calls:
            finish = "stop"
        return ChatResponse(
            text="".join(text),
            model_requested=request.model,
            model_served=str(data.get("model") or self.info.provider_model),
            provider=self.provider,
            usage=usage_from(data.get("usage")),
            finish_reason=finish,
            tool_calls=calls,
            request_id=request_id,
            latency_s=latency,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Text deltas as they arrive (in JSON mode, the JSON answer's fragments); the last chunk
        carries the finish reason, the usage and the tool calls."""
        self._require(Capability.STREAM)
        client = self._client()
        headers = self._headers()
        body = self.messages_body(request, stream=True)
        request_id: str | None = None
        started = False
        try:
            async with client.stream("POST", "v1/messages", json=body, headers=headers) as response:
                request_id = _request_id(response.headers)
                started = True
                if response.status_code >= 400:
                    raise self._error(response, await response.aread(), request_id)
                json_mode = _json_schema(request.response_format) is not None
                async for chunk in self._chunks(response, request_id, json_mode):
                    yield chunk
        except httpx.HTTPError as exc:
            if not started:
                raise map_transport_error(exc, provider=self.provider, model=self.name) from None
            raise stream_cut(self.provider, self.name, request_id, exc) from None

    async def _chunks(
        self, response: httpx.Response, request_id: str | None, json_mode: bool
    ) -> AsyncIterator[ChatChunk]:
        served: str | None = None
        usage: dict[str, Any] = {}
        stop_reason: str | None = None
        blocks: dict[int, dict[str, Any]] = {}
        async for event in iter_sse(response.aiter_lines()):
            if event.event == "ping" or not event.data:
                continue
            data = json.loads(event.data)
            kind = data.get("type", event.event)
            if kind == "error":
                err = data.get("error") or {}
                status = _ERROR_STATUS.get(str(err.get("type")), 500)
                raise self._error(httpx.Response(status), event.data.encode(), request_id)
            if kind == "message_start":
                message = data.get("message") or {}
                served = message.get("model") or served
                usage.update(message.get("usage") or {})
            elif kind == "content_block_start":
                block = dict(data.get("content_block") or {})
                block["json"] = ""
                blocks[int(data.get("index", 0))] = block
            elif kind == "content_block_delta":
                block = blocks.setdefault(int(data.get("index", 0)), {"json": ""})
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield ChatChunk(delta=delta["text"], model_served=served, request_id=request_id)
                elif delta.get("type") == "input_json_delta":
                    piece = str(delta.get("partial_json") or "")
                    block["json"] += piece
                    if json_mode and block.get("name") == JSON_TOOL and piece:
                        yield ChatChunk(delta=piece, model_served=served, request_id=request_id)
            elif kind == "message_delta":
                stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            elif kind == "message_stop":
                break
        else:
            raise stream_cut(self.provider, self.name, request_id)
        calls = [
            ToolCall(str(b.get("id")), str(b.get("name")), b["json"] or "{}")
            for _, b in sorted(blocks.items())
            if b.get("type") == "tool_use" and not (json_mode and b.get("name") == JSON_TOOL)
        ]
        finish = _FINISH.get(str(stop_reason), "stop")
        if json_mode and finish == "tool_calls" and not calls:
            finish = "stop"
        yield ChatChunk(
            tool_calls=calls,
            finish_reason=finish,
            usage=usage_from(usage),
            model_served=served,
            request_id=request_id,
        )


def _json_schema(response_format: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """The input schema of the JSON tool for a response format (``None``: plain text)."""
    if response_format == "json":
        return {"type": "object"}
    if isinstance(response_format, Mapping):
        spec: Mapping[str, Any] = response_format
        if spec.get("type") == "json_schema":  # OpenAI's own form
            spec = spec.get("json_schema") or {}
        schema: Mapping[str, Any] = spec.get("schema", spec)
        return dict(schema)
    return None


def _request_id(headers: httpx.Headers) -> str | None:
    value: str | None = headers.get("request-id") or headers.get("x-request-id")
    return value


def register(registry: ModelRegistry) -> None:
    """Register the Anthropic factory (the ``podium.models`` plug-in)."""
    registry.add_provider("anthropic", AnthropicModel.from_settings)
