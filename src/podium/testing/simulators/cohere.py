"""A wire-accurate simulator of Cohere's v2 API: ``POST /v2/chat`` (JSON, or server-sent events
with ``stream: true``) and ``POST /v2/embed``.

It checks what the real API checks — the bearer key, ``model`` and ``messages``, roles, tool
results answering the assistant's tool calls (and every call answered), tool definitions,
``tool_choice`` only with tools, ``response_format`` types, the context window, and for embeddings
``texts`` (at most 96) and ``input_type`` — and answers errors as ``{"id", "message"}``. Replies
are deterministic: a scripted :class:`~podium.testing.simulators.server.Reply`, else the first
tool called with schema-shaped arguments when ``tool_choice`` is ``REQUIRED``, else a JSON value
(``json_schema``-shaped, or ``{"echo": …}``) in JSON mode, else an echo of the last user message.

Usage is reported the way Cohere bills: ``billed_units`` holds every prompt token (Cohere has no
cache price; cache hits are also reported as ``cached_tokens``) and every output token (thinking
included), and ``tokens`` adds the prompt template Cohere does not bill. Streams carry the real
event sequence ``message-start``, ``tool-plan-delta``, ``tool-call-start``/``-delta``/``-end``,
``content-start``/``-delta``/``-end`` and ``message-end``; an in-stream failure is a
``message-end`` whose ``finish_reason`` is ``ERROR``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from starlette.responses import Response

from podium.testing.simulators.openai import embedding
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

TEMPLATE_TOKENS = 66
"""Prompt-template tokens ``usage.tokens.input_tokens`` adds to what is billed."""

_MESSAGES: dict[ErrorKind, str] = {
    "invalid_request": "invalid request: the request is malformed",
    "authentication": "invalid api token",
    "permission": "forbidden: you do not have access to this resource",
    "not_found": "model not found, make sure the correct model ID was used and that you have "
    "access to the model.",
    "context_length": "too many tokens: total number of tokens in the prompt cannot exceed "
    "128000 - received 130000. Try using a shorter prompt, or enabling prompt truncating. See "
    "https://docs.cohere.com/reference/chat for more details.",
    "content_filter": "blocked input: please adjust your prompt and try again, as it may be a "
    "potential violation of our Usage Guidelines (https://docs.cohere.com/docs/usage-guidelines).",
    "rate_limit": "You are using a Trial key, which is limited to 20 API calls / minute. You can "
    "continue to use the Trial key for free or upgrade to a Production key with higher rate "
    "limits at 'https://dashboard.cohere.com/api-keys'. Contact us on "
    "'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions",
    "server": "internal server error, this has been reported to our developers",
    "overloaded": "the service is temporarily unavailable, please try again later",
}
_ROLES = ("system", "user", "assistant", "tool")
_FINISH = {
    "stop": "COMPLETE",
    "length": "MAX_TOKENS",
    "tool_calls": "TOOL_CALL",
    "content_filter": "ERROR",
}
_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")


def _uuid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _text(content: Any) -> str:
    """The text of a message's content (a string, or text/document parts)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict):
            document = part.get("document") or {}
            texts.append(str(part.get("text") or document.get("data") or ""))
    return " ".join(texts)


def _pieces(text: str, size: int = 0) -> list[str]:
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _event(data: Mapping[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


class CohereSimulator(Simulator):
    """Cohere's v2 chat and embed API."""

    name = "cohere-simulator"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        context_window: int = 128_000,
        dimensions: int = 8,
    ) -> None:
        """
        Args:
            api_key: The bearer key clients must send (``None``: any non-empty key).
            models: Known model ids (``None``: every id is known); others get 404.
            context_window: Prompt tokens (words) beyond which chat requests get 400.
            dimensions: Embedding size when the request sets no ``output_dimension``.
        """
        self.models = set(models) if models is not None else None
        self.context_window = context_window
        self.dimensions = dimensions
        super().__init__(api_key=api_key)

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        return [("POST", "/v2/chat", self.chat), ("POST", "/v2/embed", self.embed)]

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {
            "x-debug-trace-id": hashlib.md5(f"trace-{request.seq}".encode()).hexdigest(),
            "x-endpoint-monthly-call-limit": "1000",
            "vary": "Origin",
        }

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        return {"id": _uuid("error", status, message), "message": message or _MESSAGES[kind]}

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        delta = {"error": message or _MESSAGES[kind], "finish_reason": "ERROR", "usage": {}}
        return _event({"type": "message-end", "delta": delta})

    # -- request checks ---------------------------------------------------------------------------

    def _body(self, request: RecordedRequest) -> tuple[dict[str, Any], str]:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").removeprefix("bearer ").strip()
        if not key:
            raise SimError(401, "no api key supplied", kind="authentication")
        if self.api_key is not None and key != self.api_key:
            raise SimError(401, "invalid api token", kind="authentication")
        try:
            body = request.json()
        except ValueError:
            raise SimError(400, "invalid request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise SimError(400, "invalid request: the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise SimError(400, "invalid request: model must be a non-empty string")
        if self.models is not None and model not in self.models:
            raise SimError(
                404,
                f"model '{model}' not found, make sure the correct model ID was used and that "
                "you have access to the model.",
                kind="not_found",
            )
        return body, model

    def _check_chat(self, body: Mapping[str, Any]) -> int:
        """Validate a chat request; returns the prompt's token count (words)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise SimError(400, "invalid request: messages must contain at least one message")
        pending: set[str] = set()
        tokens = 0
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                raise SimError(
                    400,
                    f"invalid request: messages[{i}].role must be one of 'system', 'user', "
                    f"'assistant' or 'tool', got '{role}'",
                )
            if role == "tool":
                call_id = str(message.get("tool_call_id", ""))
                if call_id not in pending:
                    raise SimError(
                        400,
                        f"invalid request: messages[{i}]: tool_call_id '{call_id}' does not match "
                        "any tool call of the previous assistant message",
                    )
                pending.discard(call_id)
            elif pending:
                raise SimError(
                    400,
                    "invalid request: every tool call must be followed by a tool message with its "
                    f"result; missing results for: {', '.join(sorted(pending))}",
                )
            for call in message.get("tool_calls") or ():
                pending.add(str(call.get("id")))
                tokens += count_tokens(str((call.get("function") or {}).get("arguments", "")))
            tokens += count_tokens(_text(message.get("content")))
        tools = body.get("tools") or []
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(function, dict):
                raise SimError(400, f"invalid request: tools[{i}].type must be 'function'")
            if not function.get("name"):
                raise SimError(400, f"invalid request: tools[{i}].function.name is required")
        choice = body.get("tool_choice")
        if choice is not None and choice not in ("REQUIRED", "NONE"):
            raise SimError(400, "invalid request: tool_choice must be one of 'REQUIRED', 'NONE'")
        if choice is not None and not tools:
            raise SimError(400, "invalid request: tool_choice can only be used with tools")
        fmt = body.get("response_format") or {}
        if fmt and fmt.get("type") not in ("text", "json_object"):
            raise SimError(
                400, "invalid request: response_format.type must be one of 'text', 'json_object'"
            )
        if tokens > self.context_window:
            raise SimError(
                400,
                "too many tokens: total number of tokens in the prompt cannot exceed "
                f"{self.context_window} - received {tokens}. Try using a shorter prompt, or "
                "enabling prompt truncating. See https://docs.cohere.com/reference/chat for more "
                "details.",
                kind="context_length",
            )
        return tokens

    # -- chat -------------------------------------------------------------------------------------

    async def chat(self, request: RecordedRequest) -> Response:
        body, _ = self._body(request)
        prompt_tokens = self._check_chat(body)
        reply = self.next_reply() or self._default_reply(body)
        text = reply.text
        finish = _FINISH[reply.finish_reason]
        for stop in body.get("stop_sequences") or ():
            if stop in text:
                text, finish = text[: text.index(stop)], "STOP_SEQUENCE"
        calls: list[dict[str, Any]] = [
            {
                "id": call.id or f"{call.name}_{_uuid(request.seq, i).replace('-', '')[:12]}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
        message: dict[str, Any] = {"role": "assistant"}
        if calls:
            names = ", ".join(c["function"]["name"] for c in calls)
            message["tool_plan"] = f"I will use {names} to answer this."
            message["tool_calls"] = calls
        if text or not calls:
            message["content"] = [{"type": "text", "text": text}]
        result = {
            "id": _uuid("chat", request.seq),
            "message": message,
            "finish_reason": finish,
            "usage": _usage(reply, prompt_tokens),
        }
        if body.get("stream"):
            return self.event_stream(request, _events(result))
        return self.json_response(request, result)

    def _default_reply(self, body: Mapping[str, Any]) -> Reply:
        last = next((m for m in reversed(body["messages"]) if m.get("role") != "assistant"), None)
        said = _text(last.get("content")) if last else ""
        tools: list[Any] = body.get("tools") or []
        if body.get("tool_choice") == "REQUIRED":
            function = tools[0]["function"]
            schema = function.get("parameters") or {"type": "object"}
            return Reply(tool_calls=[ScriptedToolCall(function["name"], instance_of(schema, said))])
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            schema = fmt.get("json_schema")
            return Reply(text=json.dumps(instance_of(schema, said) if schema else {"echo": said}))
        return Reply(text=f"You said: {said}")

    # -- embed ------------------------------------------------------------------------------------

    async def embed(self, request: RecordedRequest) -> Response:
        body, _ = self._body(request)
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            raise SimError(400, "invalid request: texts must be a non-empty list of strings")
        if len(texts) > 96:
            raise SimError(
                400,
                "invalid request: total number of texts must be at most 96 - received "
                f"{len(texts)}",
            )
        input_type = body.get("input_type")
        if input_type not in _INPUT_TYPES:
            raise SimError(
                400, "invalid request: valid input_type must be provided with the provided model"
            )
        kinds = body.get("embedding_types") or ["float"]
        for kind in kinds:
            if kind not in _EMBEDDING_TYPES:
                raise SimError(
                    400,
                    "invalid request: embedding_types must be one of "
                    + ", ".join(_EMBEDDING_TYPES),
                )
        dims = int(body.get("output_dimension") or self.dimensions)
        vectors = [embedding(f"{input_type}:{t}", dims) for t in texts]
        embeddings: dict[str, Any] = {}
        for kind in kinds:
            if kind == "float":
                embeddings["float"] = vectors
            elif kind == "base64":
                packed = [struct.pack(f"<{dims}f", *v) for v in vectors]
                embeddings["base64"] = [base64.b64encode(p).decode() for p in packed]
            else:
                embeddings[kind] = [
                    [max(-128, min(127, round(x * 127))) for x in v] for v in vectors
                ]
        tokens = sum(count_tokens(str(t)) for t in texts)
        result = {
            "id": _uuid("embed", request.seq),
            "embeddings": embeddings,
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }
        return self.json_response(request, result)


def embedding_for(text: str, input_type: str, dimensions: int) -> list[float]:
    """The vector the simulator returns for ``text`` embedded as ``input_type``."""
    return embedding(f"{input_type}:{text}", dimensions)


def _usage(reply: Reply, prompt_words: int) -> dict[str, Any]:
    """Cohere's usage: billed units count every prompt and output token once."""
    uncached = reply.input_tokens if reply.input_tokens is not None else prompt_words
    billed_in = uncached + reply.cache_read_tokens + reply.cache_write_tokens
    visible = reply.output_tokens
    if visible is None:
        visible = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(c.arguments)) for c in reply.tool_calls
        )
    billed_out = visible + reply.reasoning_tokens
    return {
        "billed_units": {"input_tokens": billed_in, "output_tokens": billed_out},
        "tokens": {"input_tokens": billed_in + TEMPLATE_TOKENS, "output_tokens": billed_out},
        "cached_tokens": reply.cache_read_tokens,
    }


def _events(result: Mapping[str, Any]) -> Iterator[bytes]:
    """The stream of events that delivers the chat ``result``."""
    message = result["message"]
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    yield _event({"id": result["id"], "type": "message-start", "delta": {"message": start}})
    for piece in _pieces(message.get("tool_plan", "")):
        yield _event({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
    for index, call in enumerate(message.get("tool_calls") or ()):
        head = {**call, "function": {**call["function"], "arguments": ""}}
        yield _event(
            {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": head}}}
        )
        for piece in _pieces(call["function"]["arguments"], 8):
            part = {"function": {"arguments": piece}}
            yield _event(
                {
                    "type": "tool-call-delta",
                    "index": index,
                    "delta": {"message": {"tool_calls": part}},
                }
            )
        yield _event({"type": "tool-call-end", "index": index})
    for index, block in enumerate(message.get("content") or ()):
        opening = {"content": {"type": "text", "text": ""}}
        yield _event({"type": "content-start", "index": index, "delta": {"message": opening}})
        for piece in _pieces(block["text"]):
            delta = {"message": {"content": {"text": piece}}}
            yield _event({"type": "content-delta", "index": index, "delta": delta})
        yield _event({"type": "content-end", "index": index})
    end = {"finish_reason": result["finish_reason"], "usage": result["usage"]}
    yield _event({"type": "message-end", "delta": end})
