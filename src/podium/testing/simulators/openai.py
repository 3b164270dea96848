"""A wire-accurate simulator of the OpenAI API (chat completions and embeddings), with the Azure
OpenAI deployment routes — the API every OpenAI-compatible provider speaks.

It validates requests the way the real API does (missing ``model``/``messages``, unanswered tool
calls, JSON mode without the word "json", the context window, the API key) and answers with the
real error shape ``{"error": {"message", "type", "param", "code"}}``. Replies are deterministic:
a scripted :class:`~podium.testing.simulators.server.Reply`, else an echo of the last user message
(``{"echo": …}`` in JSON mode, a schema-shaped object for ``json_schema``). Usage reports
``prompt_tokens`` including cached tokens and ``completion_tokens`` including reasoning tokens,
with their ``*_details``, as OpenAI does. Streams are ``data: {chunk}`` events ending in
``data: [DONE]``, with a usage chunk when ``stream_options.include_usage`` is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
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

CREATED = 1_700_000_000
"""The ``created`` timestamp of every response (deterministic)."""

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_ERRORS: dict[ErrorKind, tuple[str, str | None, str]] = {
    # kind: (type, code, usual message)
    "invalid_request": ("invalid_request_error", None, "Invalid request."),
    "authentication": (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "permission": ("invalid_request_error", None, "You are not allowed to sample from this model"),
    "not_found": (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    "context_length": (
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130000 tokens. Please reduce the length of the messages.",
    ),
    "content_filter": (
        "invalid_request_error",
        "content_filter",
        "The response was filtered due to the prompt triggering content management policy.",
    ),
    "rate_limit": (
        "tokens",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. "
        "Please try again in 120ms.",
    ),
    "server": (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}


def mask_key(key: str) -> str:
    """A key the way OpenAI quotes it in errors: first three and last four characters."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "****"


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    raw = [
        int.from_bytes(hashlib.sha256(f"{i}:{text}".encode()).digest()[:4], "big") / 2**32 - 0.5
        for i in range(dimensions)
    ]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def _pieces(text: str, size: int = 0) -> list[str]:
    """Text split into stream deltas: words with their trailing space, or ``size`` characters."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


class OpenAISimulator(Simulator):
    """The OpenAI chat completions and embeddings API (and Azure OpenAI's deployment routes)."""

    name = "openai-simulator"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        served: Mapping[str, str] | None = None,
        context_window: int = 128_000,
        dimensions: int = 8,
    ) -> None:
        """
        Args:
            api_key: The key clients must send (``None``: anything is accepted).
            models: Known model ids (``None``: every id is known); others get 404.
            served: Requested model (or Azure deployment) → the snapshot the response names.
            context_window: Prompt tokens (words) beyond which requests get 400.
            dimensions: Embedding size when the request does not set ``dimensions``.
        """
        self.models = set(models) if models is not None else None
        self.served = dict(served or {})
        self.context_window = context_window
        self.dimensions = dimensions
        super().__init__(api_key=api_key)

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        return [
            ("POST", "/openai/deployments/{deployment}/chat/completions", self.chat),
            ("POST", "/openai/deployments/{deployment}/embeddings", self.embeddings),
            ("POST", "/{prefix:path}/chat/completions", self.chat),
            ("POST", "/{prefix:path}/embeddings", self.embeddings),
        ]

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {
            "x-request-id": f"req_{request.seq:032x}",
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
        }

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        typ, code, usual = _ERRORS[kind]
        return {"error": {"message": message or usual, "type": typ, "param": param, "code": code}}

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        body = self.error_body(status, kind, message)
        return f"data: {json.dumps(body)}\n\n".encode()

    # -- request checks ---------------------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> None:
        if self.api_key is None:
            return
        azure = "deployment" in request.path_params
        sent = request.headers.get("api-key") if azure else None
        auth = request.headers.get("authorization", "")
        if sent is None and auth:
            sent = auth.removeprefix("Bearer ").strip()
        if not sent:
            raise SimError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                kind="invalid_request",
            )
        if sent != self.api_key:
            raise SimError(
                401,
                f"Incorrect API key provided: {mask_key(sent)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                kind="authentication",
            )

    def _body(self, request: RecordedRequest) -> tuple[dict[str, Any], str]:
        """The parsed body and the model it asks for, after the checks every route shares."""
        if "deployment" in request.path_params and "api-version" not in request.query:
            raise SimError(404, "Resource not found")
        self._authenticate(request)
        try:
            body = request.json()
        except ValueError:
            raise SimError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)",
            ) from None
        if not isinstance(body, dict):
            raise SimError(400, "Invalid type for request body: expected an object.")
        model = request.path_params.get("deployment") or body.get("model")
        if not model:
            raise SimError(400, "you must provide a model parameter")
        if self.models is not None and model not in self.models:
            raise SimError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                kind="not_found",
            )
        return body, str(model)

    def _check_messages(self, messages: Any) -> int:
        """Validate ``messages`` as OpenAI does; returns the prompt's token count."""
        if messages is None:
            raise SimError(400, "Missing required parameter: 'messages'.", param="messages")
        if not isinstance(messages, list) or not messages:
            raise SimError(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
            )
        pending: dict[str, int] = {}
        tokens = 0
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                raise SimError(
                    400,
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                    "'user', 'function', 'tool', and 'developer'.",
                    param=f"messages[{i}].role",
                )
            if pending and role != "tool":
                raise SimError(
                    400,
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                    f"response messages: {', '.join(pending)}",
                    param=f"messages.[{pending[next(iter(pending))]}].role",
                )
            if role == "tool" and message.get("tool_call_id") not in pending:
                raise SimError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            pending.pop(message.get("tool_call_id", ""), None)
            for call in message.get("tool_calls") or ():
                pending[str(call.get("id"))] = i
                tokens += count_tokens(str((call.get("function") or {}).get("arguments", "")))
            tokens += count_tokens(_text(message.get("content")))
        if pending:
            raise SimError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                param="messages",
            )
        if tokens > self.context_window:
            raise SimError(
                400,
                f"This model's maximum context length is {self.context_window} tokens. However, "
                f"your messages resulted in {tokens} tokens. Please reduce the length of the "
                "messages.",
                kind="context_length",
                param="messages",
            )
        return tokens

    # -- chat completions -------------------------------------------------------------------------

    async def chat(self, request: RecordedRequest) -> Response:
        body, model = self._body(request)
        messages = body.get("messages")
        prompt_tokens = self._check_messages(messages)
        stream = bool(body.get("stream"))
        if body.get("stream_options") is not None and not stream:
            raise SimError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        for i, tool in enumerate(body.get("tools") or ()):
            if not isinstance(tool, dict) or not (tool.get("function") or {}).get("name"):
                raise SimError(
                    400, f"Missing required parameter: 'tools[{i}].function.name'.", param="tools"
                )
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object" and not any(
            "json" in _text(m.get("content")).lower() for m in body["messages"]
        ):
            raise SimError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        if fmt.get("type") == "json_schema" and not (fmt.get("json_schema") or {}).get("name"):
            raise SimError(
                400,
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
            )
        reply = self.next_reply() or self._default_reply(body)
        served = reply.model or self.served.get(model, model)
        usage = _usage(reply, prompt_tokens)
        completion_id = f"chatcmpl-{request.seq:010d}"
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._chunks(completion_id, served, reply, usage, include_usage)
            return self.event_stream(request, events)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if reply.text or not reply.tool_calls else None,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": _call_id(call, request.seq, i),
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": CREATED,
            "model": served,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_simulator",
        }
        return self.json_response(request, completion)

    def _default_reply(self, body: Mapping[str, Any]) -> Reply:
        last = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), None)
        said = _text(last.get("content")) if last else ""
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            return Reply(text=json.dumps({"echo": said}))
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            return Reply(text=json.dumps(instance_of(schema, said)))
        return Reply(text=f"You said: {said}")

    def _chunks(
        self,
        completion_id: str,
        model: str,
        reply: Reply,
        usage: dict[str, Any],
        include_usage: bool,
    ) -> Iterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_simulator",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in _pieces(reply.text):
            yield chunk({"content": piece})
        seq = int(completion_id.rsplit("-", 1)[1])
        for i, call in enumerate(reply.tool_calls):
            head = {"name": call.name, "arguments": ""}
            first = {"index": i, "id": _call_id(call, seq, i), "type": "function", "function": head}
            yield chunk({"tool_calls": [first]})
            for piece in _pieces(json.dumps(call.arguments), 8):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield chunk({}, reply.finish_reason)
        if include_usage:
            final = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_simulator",
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(final)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    # -- embeddings -------------------------------------------------------------------------------

    async def embeddings(self, request: RecordedRequest) -> Response:
        body, model = self._body(request)
        inputs = body.get("input")
        if inputs is None:
            raise SimError(400, "Missing required parameter: 'input'.", param="input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or any(x in ("", []) for x in inputs):
            raise SimError(
                400,
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param="input",
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise SimError(
                400,
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
            )
        dims = int(body.get("dimensions") or self.dimensions)
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
        data = []
        for i, text in enumerate(texts):
            vector = embedding(text, dims)
            value: Any = vector
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(count_tokens(t) for t in texts)
        result = {
            "object": "list",
            "data": data,
            "model": self.served.get(model, model),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return self.json_response(request, result)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _call_id(call: ScriptedToolCall, seq: int, index: int) -> str:
    return call.id or f"call_{seq:08d}{index:02d}"


def _usage(reply: Reply, prompt_words: int) -> dict[str, Any]:
    """OpenAI's usage object: prompt tokens include cached ones, completion includes reasoning."""
    uncached = reply.input_tokens if reply.input_tokens is not None else prompt_words
    prompt = uncached + reply.cache_read_tokens + reply.cache_write_tokens
    visible = reply.output_tokens
    if visible is None:
        visible = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(c.arguments)) for c in reply.tool_calls
        )
    completion = visible + reply.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": reply.cache_read_tokens,
            "audio_tokens": 0,
            **(
                {"cache_write_tokens": reply.cache_write_tokens} if reply.cache_write_tokens else {}
            ),
        },
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
