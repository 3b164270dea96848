"""A wire-accurate simulator of Anthropic's Messages API (``POST /v1/messages``).

It checks what the real API checks — the key (``x-api-key``, or ``Authorization: Bearer`` as
newer SDKs send it), the ``anthropic-version`` header, required ``model``/``max_tokens``/
``messages``, roles (no ``system`` role: it is a top-level field), non-empty text blocks,
``tool_use`` blocks answered by ``tool_result`` blocks in the next message, tool definitions,
the context window — and answers errors as ``{"type": "error", "error": {"type", "message"}}``.

Replies are deterministic: a scripted :class:`~podium.testing.simulators.server.Reply`, else a
forced tool (``tool_choice`` ``tool``/``any``) called with an input shaped by its schema, else an
echo of the last user message. Usage reports ``input_tokens`` *excluding* cache reads and writes
(``cache_read_input_tokens``/``cache_creation_input_tokens``) and ``output_tokens`` *including*
thinking (broken out in ``output_tokens_details.thinking_tokens``), as Anthropic does.

Streams carry the real event sequence: ``message_start``, ``content_block_start``, ``ping``,
``content_block_delta`` (``text_delta``/``input_json_delta``), ``content_block_stop``,
``message_delta`` (stop reason, cumulative usage) and ``message_stop``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from starlette.responses import Response

from podium.testing.simulators.server import (
    ErrorKind,
    Handler,
    RecordedRequest,
    Reply,
    ScriptedToolCall,
    SimError,
    Simulator,
    count_tokens,
    instance_of,
)

_ERRORS: dict[ErrorKind, tuple[str, str]] = {
    # kind: (error type, usual message)
    "invalid_request": ("invalid_request_error", "Invalid request"),
    "authentication": ("authentication_error", "invalid x-api-key"),
    "permission": (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "not_found": ("not_found_error", "Not found"),
    "context_length": (
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ),
    "content_filter": ("invalid_request_error", "Output blocked by content filtering policy"),
    "rate_limit": (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit.",
    ),
    "server": ("api_error", "Internal server error"),
    "overloaded": ("overloaded_error", "Overloaded"),
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def _pieces(text: str, size: int = 0) -> list[str]:
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _text(content: Any) -> str:
    """The text of a message's content (string or blocks), tool inputs and results included."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input", {})))
        elif block.get("type") == "tool_result":
            parts.append(_text(block.get("content", "")))
    return " ".join(parts)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


class AnthropicSimulator(Simulator):
    """Anthropic's Messages API."""

    name = "anthropic-simulator"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        served: Mapping[str, str] | None = None,
        context_window: int = 200_000,
    ) -> None:
        """
        Args:
            api_key: The ``x-api-key`` clients must send (``None``: any non-empty key).
            models: Known model ids (``None``: every id is known); others get 404.
            served: Requested model (an alias) → the snapshot the response names.
            context_window: Prompt tokens (words) beyond which requests get 400.
        """
        self.models = set(models) if models is not None else None
        self.served = dict(served or {})
        self.context_window = context_window
        super().__init__(api_key=api_key)

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        return [("POST", "/v1/messages", self.messages)]

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {"request-id": self._request_id(request)}

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        typ, usual = _ERRORS[kind]
        return {"type": "error", "error": {"type": typ, "message": message or usual}}

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        return _event("error", self.error_body(status, kind, message))

    @staticmethod
    def _request_id(request: RecordedRequest) -> str:
        return f"req_011CSim{request.seq:016d}"

    # -- request checks ---------------------------------------------------------------------------

    def _check_headers(self, request: RecordedRequest) -> None:
        key = request.headers.get("x-api-key")
        if key is None and request.headers.get("authorization", "").startswith("Bearer "):
            key = request.headers["authorization"].removeprefix("Bearer ")  # newer SDKs' form
        if not key:
            raise SimError(401, "x-api-key header is required", kind="authentication")
        if self.api_key is not None and key != self.api_key:
            raise SimError(401, "invalid x-api-key", kind="authentication")
        if "anthropic-version" not in request.headers:
            raise SimError(400, "anthropic-version: header is required")

    def _check_body(self, request: RecordedRequest) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise SimError(400, "There was an error parsing the body of your request.") from None
        if not isinstance(body, dict):
            raise SimError(400, "Input should be an object")
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                raise SimError(400, f"{required}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            raise SimError(400, "max_tokens: Input should be greater than or equal to 1")
        model = str(body["model"])
        if self.models is not None and model not in self.models:
            raise SimError(404, f"model: {model}", kind="not_found")
        tools = body.get("tools") or []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or "name" not in tool:
                raise SimError(400, f"tools.{i}.custom.name: Field required")
            if "input_schema" not in tool and "type" not in tool:
                raise SimError(400, f"tools.{i}.custom.input_schema: Field required")
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool" and choice.get("name") not in {t["name"] for t in tools}:
            raise SimError(400, f"Tool '{choice.get('name')}' not found in provided tools")
        if choice.get("type") in ("any", "tool") and not tools:
            raise SimError(400, "tool_choice may only be specified while providing tools.")
        return body

    def _check_messages(self, messages: Any, system: Any) -> int:
        """Validate ``messages``; returns the prompt's token count (words)."""
        if not isinstance(messages, list) or not messages:
            raise SimError(400, "messages: at least one message is required")
        tokens = count_tokens(_text(system))
        open_calls: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                raise SimError(
                    400,
                    'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.',
                )
            if role not in ("user", "assistant"):
                raise SimError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
            blocks = _blocks(message.get("content"))
            if any(b.get("type") == "text" and not b.get("text") for b in blocks):
                raise SimError(400, f"messages.{i}: text content blocks must be non-empty")
            results = {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}
            if open_calls - results:
                raise SimError(
                    400,
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(sorted(open_calls - results))}. Each "
                    "`tool_use` block must have a corresponding `tool_result` block in the next "
                    "message.",
                )
            if results - open_calls:
                raise SimError(
                    400,
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {', '.join(sorted(results - open_calls))}. Each `tool_result` block "
                    "must have a corresponding `tool_use` block in the previous message.",
                )
            open_calls = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}
            tokens += count_tokens(_text(message.get("content")))
        if tokens > self.context_window:
            raise SimError(
                400,
                f"prompt is too long: {tokens} tokens > {self.context_window} maximum",
                kind="context_length",
            )
        return tokens

    # -- messages ---------------------------------------------------------------------------------

    async def messages(self, request: RecordedRequest) -> Response:
        self._check_headers(request)
        body = self._check_body(request)
        prompt_tokens = self._check_messages(body["messages"], body.get("system"))
        reply = self.next_reply() or self._default_reply(body)
        model = str(body["model"])
        served = reply.model or self.served.get(model, model)
        text, stop_reason, stop_sequence = reply.text, _STOP_REASONS[reply.finish_reason], None
        for sequence in body.get("stop_sequences") or ():
            if sequence in text:
                text, stop_reason = text[: text.index(sequence)], "stop_sequence"
                stop_sequence = sequence
                break
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for i, call in enumerate(reply.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": _call_id(call, request.seq, i),
                    "name": call.name,
                    "input": dict(call.arguments),
                }
            )
        usage = _usage(reply, prompt_tokens)
        message: dict[str, Any] = {
            "id": f"msg_01Sim{request.seq:018d}",
            "type": "message",
            "role": "assistant",
            "model": served,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        if body.get("stream"):
            return self.event_stream(request, _events(message))
        return self.json_response(request, message)

    def _default_reply(self, body: Mapping[str, Any]) -> Reply:
        last = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), None)
        said = _text(last.get("content")) if last else ""
        tools = {t["name"]: t for t in body.get("tools") or ()}
        choice = body.get("tool_choice") or {}
        forced = choice.get("name") if choice.get("type") == "tool" else None
        if forced is None and choice.get("type") == "any":
            forced = next(iter(tools))
        if forced is not None:
            schema = tools[forced].get("input_schema") or {"type": "object"}
            arguments = instance_of(schema, said)
            return Reply(tool_calls=[ScriptedToolCall(forced, arguments)])
        return Reply(text=f"You said: {said}")


def _call_id(call: ScriptedToolCall, seq: int, index: int) -> str:
    return call.id or f"toolu_01Sim{seq:010d}{index:02d}"


def _usage(reply: Reply, prompt_words: int) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` excludes cache tokens; ``output_tokens`` includes
    thinking, which ``output_tokens_details.thinking_tokens`` breaks out."""
    visible = reply.output_tokens
    if visible is None:
        visible = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(c.arguments)) for c in reply.tool_calls
        )
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens if reply.input_tokens is not None else prompt_words,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "output_tokens": visible + reply.reasoning_tokens,
        "service_tier": "standard",
    }
    if reply.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
    return usage


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _events(message: Mapping[str, Any]) -> Iterator[bytes]:
    """The stream of events that delivers ``message``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    yield _event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(json.dumps(block["input"]), 8)
            ]
        yield _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opening},
        )
        if index == 0:
            yield _event("ping", {"type": "ping"})
        for delta in deltas:
            yield _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message["stop_reason"],
                "stop_sequence": message["stop_sequence"],
            },
            "usage": {k: v for k, v in usage.items() if k != "service_tier"},  # cumulative
        },
    )
    yield _event("message_stop", {"type": "message_stop"})
