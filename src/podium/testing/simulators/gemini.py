"""A wire-accurate simulator of Google's Gemini API (``v1beta``/``v1``): ``generateContent``,
``streamGenerateContent`` (``alt=sse`` events, or a JSON array without it), ``embedContent`` and
``batchEmbedContents``.

It checks what the real API checks — the key (``x-goog-api-key`` header or ``key`` query
parameter: none is a 403 ``PERMISSION_DENIED``, a wrong one a 400 ``INVALID_ARGUMENT`` whose
``ErrorInfo`` reason is ``API_KEY_INVALID``), unknown request fields, ``contents`` and their roles
(``user``/``model``) and non-empty parts, function-response turns answering every call of the
turn before, function declarations (``parameters`` restricted to the OpenAPI-subset ``Schema``;
``parametersJsonSchema`` for full JSON Schema; never both), ``responseMimeType``/
``responseSchema``, Gemini 3's thought signatures on replayed function calls, and the context
window — and answers errors as ``{"error": {"code", "message", "status", "details"}}`` (a 429
carries a ``RetryInfo`` detail). Prompts containing a ``blocked_terms`` entry are refused the way
Gemini refuses them: a 200 with ``promptFeedback.blockReason`` and no candidates.

Replies are deterministic: a scripted :class:`~podium.testing.simulators.server.Reply`, else a
forced function (``functionCallingConfig.mode`` ``ANY``) called with arguments shaped by its
schema, else a JSON value shaped by ``responseSchema`` in JSON mode (``{"echo": …}`` without a
schema), else an echo of the last user turn. ``usageMetadata`` reports ``promptTokenCount``
*including* ``cachedContentTokenCount`` and ``thoughtsTokenCount`` apart from
``candidatesTokenCount``, as Gemini does (Gemini has no cache writes: they count as prompt).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

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

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES: dict[ErrorKind, str] = {
    "invalid_request": "Request contains an invalid argument.",
    "authentication": "API key not valid. Please pass a valid API key.",
    "permission": "The caller does not have permission",
    "not_found": "Requested entity was not found.",
    "context_length": "The input token count (1048577) exceeds the maximum number of tokens "
    "allowed (1048576).",
    "content_filter": "The prompt was blocked by the safety filters.",
    "rate_limit": "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
    "rate-limits.",
    "server": "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    "overloaded": "The model is overloaded. Please try again later.",
}
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_FIELDS = {
    "contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
    "generationConfig", "cachedContent", "model", "serviceTier", "store",
}  # fmt: skip
_SCHEMA_KEYS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}  # fmt: skip
_MIME_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml")
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_SAFETY = [
    {"category": c, "probability": "NEGLIGIBLE"}
    for c in (
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    )
]
_BLOCKED = [
    {**r, "probability": "HIGH", "blocked": True} if i == 1 else r for i, r in enumerate(_SAFETY)
]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _get(data: Mapping[str, Any], name: str) -> Any:
    """A field by its JSON (lowerCamel) or proto (snake_case) name, as the API accepts both."""
    return data[name] if name in data else data.get(_snake(name))


def _lowered(schema: Any) -> Any:
    """A schema with OpenAPI-subset upper-case types (``OBJECT``) lower-cased (``object``)."""
    if isinstance(schema, Mapping):
        out = {k: _lowered(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = out["type"].lower()
        return out
    if isinstance(schema, list):
        return [_lowered(v) for v in schema]
    return schema


def _unknown_schema_key(schema: Any, where: str) -> tuple[str, str] | None:
    """The first field ``Schema`` does not have, and where it is."""
    if not isinstance(schema, Mapping):
        return None
    for key in schema:
        if key not in _SCHEMA_KEYS and _snake(key) not in {_snake(k) for k in _SCHEMA_KEYS}:
            return key, where
    for name, sub in (schema.get("properties") or {}).items():
        found = _unknown_schema_key(sub, f"{where}.properties[{name}].value")
        if found:
            return found
    if "items" in schema:
        return _unknown_schema_key(schema["items"], f"{where}.items")
    return None


def _part_text(part: Mapping[str, Any]) -> str:
    if "text" in part:
        return str(part["text"])
    for key in ("functionCall", "function_call"):
        if key in part:
            return json.dumps(part[key].get("args") or {})
    for key in ("functionResponse", "function_response"):
        if key in part:
            return json.dumps(part[key].get("response") or {})
    return ""


def _content_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, Mapping) else None
    return " ".join(_part_text(p) for p in parts or () if isinstance(p, Mapping))


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _signature(seq: int) -> str:
    return base64.b64encode(hashlib.sha256(f"thought-{seq}".encode()).digest()).decode()


class GeminiSimulator(Simulator):
    """Google's Gemini API (generate, stream, embed)."""

    name = "gemini-simulator"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        served: Mapping[str, str] | None = None,
        context_window: int = 1_048_576,
        dimensions: int = 8,
        blocked_terms: Collection[str] = ("forbidden-topic",),
        retry_delay: str | None = "37s",
    ) -> None:
        """
        Args:
            api_key: The key clients must send (``None``: any non-empty key).
            models: Known model ids (``None``: every id is known); others get 404.
            served: Requested model → the ``modelVersion`` the response names.
            context_window: Prompt tokens (words) beyond which requests get 400.
            dimensions: Embedding size when the request sets no ``outputDimensionality``.
            blocked_terms: Prompts containing one (any case) are blocked for ``SAFETY``.
            retry_delay: The ``RetryInfo.retryDelay`` of 429 errors (``None``: no RetryInfo).
        """
        self.models = set(models) if models is not None else None
        self.served = dict(served or {})
        self.context_window = context_window
        self.dimensions = dimensions
        self.blocked_terms = tuple(t.lower() for t in blocked_terms)
        self.retry_delay = retry_delay
        super().__init__(api_key=api_key)

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        base = "/{version}/models/{model}"
        return [
            ("POST", base + ":generateContent", self.generate),
            ("POST", base + ":streamGenerateContent", self.generate),
            ("POST", base + ":embedContent", self.embed_content),
            ("POST", base + ":batchEmbedContents", self.batch_embed),
        ]

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        return {"vary": "Origin, X-Origin, Referer", "x-content-type-options": "nosniff"}

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        error: dict[str, Any] = {
            "code": status,
            "message": message or _MESSAGES[kind],
            "status": _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        }
        if kind == "authentication" and status == 400:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": error["message"],
                },
            ]
        if status == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaValue": "10",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
            ]
            if self.retry_delay is not None:
                error["details"].append(
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": self.retry_delay,
                    }
                )
        return {"error": error}

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        return f"data: {json.dumps(self.error_body(status, kind, message))}\r\n\r\n".encode()

    # -- request checks ---------------------------------------------------------------------------

    def _body(self, request: RecordedRequest, method: str) -> tuple[dict[str, Any], str]:
        version = request.path_params["version"]
        if version not in ("v1beta", "v1"):
            raise SimError(404, f"Method not found: {version}", kind="not_found")
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise SimError(403, _UNREGISTERED, kind="permission")
        if self.api_key is not None and key != self.api_key:
            raise SimError(400, kind="authentication")
        model = request.path_params["model"]
        if self.models is not None and model not in self.models:
            raise SimError(
                404,
                f"models/{model} is not found for API version {version}, or is not supported "
                f"for {method}. Call ListModels to see the list of available models and their "
                "supported methods.",
                kind="not_found",
            )
        try:
            body = request.json()
        except ValueError:
            raise SimError(400, "Invalid JSON payload received. Unexpected token.") from None
        if not isinstance(body, dict):
            raise SimError(400, "Invalid JSON payload received. Expected an object.")
        return body, model

    def _check_generate(self, body: Mapping[str, Any], model: str) -> int:
        """Validate a generate request; returns the prompt's token count (words)."""
        for name in body:
            if name not in _FIELDS and name not in {_snake(f) for f in _FIELDS}:
                raise SimError(
                    400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                )
        contents = _get(body, "contents")
        if not contents:
            raise SimError(400, "* GenerateContentRequest.contents: contents is not specified\n")
        tokens = count_tokens(_content_text(_get(body, "systemInstruction")))
        open_calls = 0
        for i, content in enumerate(contents):
            role = content.get("role", "user") if isinstance(content, Mapping) else None
            if role not in ("user", "model"):
                raise SimError(400, "Please use a valid role: user, model.")
            parts = [p for p in content.get("parts") or () if isinstance(p, Mapping)]
            if not parts:
                raise SimError(
                    400,
                    f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be "
                    "empty.\n",
                )
            calls = [p for p in parts if _get(p, "functionCall") is not None]
            answers = sum(1 for p in parts if _get(p, "functionResponse") is not None)
            if open_calls and answers != open_calls:
                raise SimError(
                    400,
                    "Please ensure that the number of function response parts is equal to the "
                    "number of function call parts of the function call turn.",
                )
            if model.startswith("gemini-3") and calls and not _get(calls[0], "thoughtSignature"):
                raise SimError(
                    400,
                    "Function call is missing a thought_signature in functionCall parts. This is "
                    "required for tools to work correctly, and missing thought_signature may lead "
                    "to degraded model performance. Additional data, function call `default_api:"
                    f"{_get(calls[0], 'functionCall').get('name')}` , position {i + 1}. Please "
                    "refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more "
                    "details.",
                )
            open_calls = len(calls) if role == "model" else 0
            tokens += count_tokens(_content_text(content))
        self._check_tools(body)
        self._check_config(_get(body, "generationConfig") or {})
        if tokens > self.context_window:
            raise SimError(
                400,
                f"The input token count ({tokens}) exceeds the maximum number of tokens allowed "
                f"({self.context_window}).",
                kind="context_length",
            )
        return tokens

    def _check_tools(self, body: Mapping[str, Any]) -> None:
        for t, tool in enumerate(_get(body, "tools") or ()):
            for d, decl in enumerate(_get(tool, "functionDeclarations") or ()):
                where = f"tools[{t}].function_declarations[{d}]"
                if not decl.get("name"):
                    raise SimError(
                        400, f"* GenerateContentRequest.{where}.name: Name cannot be empty.\n"
                    )
                params = _get(decl, "parameters")
                if params is not None and _get(decl, "parametersJsonSchema") is not None:
                    raise SimError(
                        400,
                        f"* GenerateContentRequest.{where}: parameters and parameters_json_schema "
                        "cannot both be set.\n",
                    )
                unknown = _unknown_schema_key(params, f"{where}.parameters")
                if unknown:
                    raise SimError(
                        400,
                        f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                        f"'{unknown[1]}': Cannot find field.",
                    )
                if (
                    params is not None
                    and str(params.get("type", "")).lower() == "object"
                    and (not params.get("properties"))
                ):
                    raise SimError(
                        400,
                        f"* GenerateContentRequest.{where}.parameters.properties: should be "
                        "non-empty for OBJECT type\n",
                    )

    def _check_config(self, config: Mapping[str, Any]) -> None:
        mime = _get(config, "responseMimeType")
        if mime is not None and mime not in (*_MIME_TYPES, "text/x.enum"):
            raise SimError(
                400,
                "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes "
                "are `text/plain`, `application/json`, `application/xml`, `application/yaml` and "
                "`text/x.enum`.\n",
            )
        has_schema = _get(config, "responseSchema") is not None
        if (has_schema or _get(config, "responseJsonSchema") is not None) and mime not in (
            "application/json",
            "text/x.enum",
        ):
            raise SimError(
                400,
                "* GenerateContentRequest.generation_config.response_mime_type: "
                "response_mime_type must be one of [application/json, text/x.enum] when "
                "response_schema is set.\n",
            )
        unknown = _unknown_schema_key(_get(config, "responseSchema"), "generation_config")
        if unknown:
            raise SimError(
                400,
                f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                f"'{unknown[1]}.response_schema': Cannot find field.",
            )

    # -- generate ---------------------------------------------------------------------------------

    async def generate(self, request: RecordedRequest) -> Response:
        stream = request.path.endswith(":streamGenerateContent")
        body, model = self._body(request, "streamGenerateContent" if stream else "generateContent")
        prompt_tokens = self._check_generate(body, model)
        reply = self.next_reply() or self._default_reply(body)
        served = reply.model or self.served.get(model, model)
        response_id = f"sim{request.seq:08d}" + hashlib.sha1(str(request.seq).encode()).hexdigest()
        head = {"modelVersion": served, "responseId": response_id[:23]}
        prompt_text = " ".join(_content_text(c) for c in _get(body, "contents")).lower()
        if any(term in prompt_text for term in self.blocked_terms):
            blocked = {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _BLOCKED},
                "usageMetadata": _usage(Reply(output_tokens=0), prompt_tokens),
                **head,
            }
            chunks: list[dict[str, Any]] = [blocked]
        else:
            chunks = list(self._chunks(reply, body, model, request.seq, prompt_tokens, stream))
            for chunk in chunks:
                chunk.update(head)
        if not stream:
            return self.json_response(request, chunks[0])
        if request.query.get("alt") != "sse":
            return JSONResponse(chunks, headers=self.response_headers(request))
        events = (f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks)
        return self.event_stream(request, events)

    def _chunks(
        self,
        reply: Reply,
        body: Mapping[str, Any],
        model: str,
        seq: int,
        prompt_tokens: int,
        stream: bool,
    ) -> Iterator[dict[str, Any]]:
        """The response (one chunk), or the stream's chunks, that deliver ``reply``."""
        text = reply.text
        finish = _FINISH[reply.finish_reason]
        config = _get(body, "generationConfig") or {}
        for stop in _get(config, "stopSequences") or ():
            if stop in text:
                text, finish = text[: text.index(stop)], "STOP"
        calls: list[dict[str, Any]] = []
        for i, call in enumerate(reply.tool_calls):
            function: dict[str, Any] = {"name": call.name, "args": dict(call.arguments)}
            if call.id:
                function["id"] = call.id
            part: dict[str, Any] = {"functionCall": function}
            if i == 0 and model.startswith("gemini-3"):
                part["thoughtSignature"] = _signature(seq)
            calls.append(part)
        if stream:
            pieces = [[{"text": p}] for p in _pieces(text)] + ([calls] if calls else [])
        else:
            pieces = [([{"text": text}] if text else []) + calls]
        pieces = [p for p in pieces if p] or [[{"text": ""}]]
        usage = _usage(reply, prompt_tokens)
        for i, parts in enumerate(pieces):
            last = i == len(pieces) - 1
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = finish
                if finish == "SAFETY":
                    candidate["safetyRatings"] = _BLOCKED
            chunk_usage = (
                usage
                if last
                else {
                    k: usage[k]
                    for k in ("promptTokenCount", "totalTokenCount", "promptTokensDetails")
                }
            )
            yield {"candidates": [candidate], "usageMetadata": chunk_usage}

    def _default_reply(self, body: Mapping[str, Any]) -> Reply:
        contents = _get(body, "contents")
        last = next((c for c in reversed(contents) if c.get("role", "user") == "user"), None)
        said = _content_text(last)
        calling = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
        declarations = {
            d["name"]: d
            for tool in _get(body, "tools") or ()
            for d in _get(tool, "functionDeclarations") or ()
        }
        if calling.get("mode") == "ANY" and declarations:
            allowed = _get(calling, "allowedFunctionNames") or list(declarations)
            decl = declarations[allowed[0]]
            schema = _get(decl, "parameters") or _get(decl, "parametersJsonSchema") or {}
            arguments = instance_of(_lowered(schema), said) if schema else {}
            return Reply(tool_calls=[ScriptedToolCall(decl["name"], arguments)])
        config = _get(body, "generationConfig") or {}
        if _get(config, "responseMimeType") == "application/json":
            schema = _get(config, "responseSchema") or _get(config, "responseJsonSchema")
            value = instance_of(_lowered(schema), said) if schema else {"echo": said}
            return Reply(text=json.dumps(value))
        return Reply(text=f"You said: {said}")

    # -- embeddings -------------------------------------------------------------------------------

    def _embed_one(self, item: Mapping[str, Any], where: str) -> list[float]:
        text = _content_text(_get(item, "content"))
        if not _get(item, "content") or not text:
            raise SimError(400, f"* {where}.content: content is not specified\n")
        dims = _get(item, "outputDimensionality") or self.dimensions
        return embedding(text, int(dims))

    async def embed_content(self, request: RecordedRequest) -> Response:
        body, _ = self._body(request, "embedContent")
        vector = self._embed_one(body, "EmbedContentRequest")
        return self.json_response(request, {"embedding": {"values": vector}})

    async def batch_embed(self, request: RecordedRequest) -> Response:
        body, model = self._body(request, "batchEmbedContents")
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise SimError(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n")
        if len(items) > 100:
            raise SimError(
                400,
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
            )
        vectors = []
        for i, item in enumerate(items):
            where = f"BatchEmbedContentsRequest.requests[{i}]"
            if item.get("model") != f"models/{model}":
                raise SimError(
                    400,
                    f"* {where}.model: the model of each request must be the model of the batch "
                    f"(models/{model}).\n",
                )
            vectors.append({"values": self._embed_one(item, where)})
        tokens = sum(count_tokens(_content_text(_get(i, "content"))) for i in items)
        usage = {"promptTokenCount": tokens, "totalTokenCount": tokens}
        return self.json_response(request, {"embeddings": vectors, "usageMetadata": usage})


def _usage(reply: Reply, prompt_words: int) -> dict[str, Any]:
    """Gemini's ``usageMetadata``: the prompt includes cached tokens, thoughts stand apart."""
    uncached = reply.input_tokens if reply.input_tokens is not None else prompt_words
    prompt = uncached + reply.cache_read_tokens + reply.cache_write_tokens
    visible = reply.output_tokens
    if visible is None:
        visible = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(c.arguments)) for c in reply.tool_calls
        )
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + visible + reply.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if visible:
        usage["candidatesTokenCount"] = visible
    if reply.cache_read_tokens:
        usage["cachedContentTokenCount"] = reply.cache_read_tokens
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cache_read_tokens}]
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return usage
