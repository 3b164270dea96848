"""Google's Gemini API (``generativelanguage.googleapis.com``, ``v1beta``), natively.

Chat is ``POST /v1beta/models/{model}:generateContent`` (streamed: ``:streamGenerateContent?
alt=sse``, each event a whole ``GenerateContentResponse`` holding the next piece; the last one
has the candidate's ``finishReason`` and the final ``usageMetadata``). Messages become
``contents`` of ``user``/``model`` turns made of ``parts``; system messages become
``systemInstruction``; tools are ``functionDeclarations`` answered by ``functionCall`` parts, and
tool results go back as ``functionResponse`` parts. JSON mode sets
``generationConfig.responseMimeType`` to ``application/json``, with ``responseSchema`` when the
schema fits Gemini's OpenAPI subset and ``responseJsonSchema`` when it does not (the same choice
is made between ``parameters`` and ``parametersJsonSchema`` for tools). Embeddings use
``:batchEmbedContents`` (at most 100 inputs a request). The key travels in ``x-goog-api-key``.

Gemini 3 signs the function calls it makes (``thoughtSignature``) and refuses a history that
replays them unsigned, so a call's signature rides inside its :class:`ToolCall` id
(``<id>~ts~<signature>``) and is restored when the call comes back.

``usageMetadata.promptTokenCount`` includes ``cachedContentTokenCount``, and
``thoughtsTokenCount`` is reported apart from ``candidatesTokenCount``; :func:`usage_from` makes
``input = prompt - cached + toolUsePrompt``, ``output = candidates``, ``reasoning = thoughts``,
so each token is counted once. A prompt the API blocks (``promptFeedback.blockReason``, no
candidates) raises :class:`~podium.errors.ContentRefused`. An invalid key is a 400
``INVALID_ARGUMENT`` whose ``ErrorInfo`` reason is ``API_KEY_INVALID``: it maps to
:class:`~podium.errors.AuthenticationFailed`. A 429 says when to retry in its ``RetryInfo``
detail (``retryDelay``), used when no ``Retry-After`` header is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from podium.errors import (
    AuthenticationFailed,
    ContentRefused,
    ModelError,
    ProviderOverloaded,
    RateLimited,
)
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

PROVIDER = "gemini"
BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
EMBED_BATCH = 100
"""``batchEmbedContents`` takes at most this many requests."""
SIGNATURE_MARK = "~ts~"
"""Separates a function call's id from its ``thoughtSignature`` inside a :class:`ToolCall` id."""

_FILTERED: FinishReason = "content_filter"
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"),
        _FILTERED,
    ),
}
"""Any other ``finishReason`` (``MALFORMED_FUNCTION_CALL``, ``OTHER``, …) is an ``error``."""
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
        "maximum",
    }
)  # fmt: skip
"""The fields of Gemini's OpenAPI-subset ``Schema``; anything else needs ``*JsonSchema``."""


def finish_reason(value: str | None, *, called_tools: bool = False) -> FinishReason:
    """Podium's finish reason for a Gemini ``finishReason`` (Gemini says ``STOP`` after calling
    a function: that is ``tool_calls`` here)."""
    reason = _FINISH.get(value or "STOP", "error")
    return "tool_calls" if reason == "stop" and called_tools else reason


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """Podium's :class:`Usage` from ``usageMetadata``, each token counted once."""
    if not data:
        return Usage()
    prompt = int(data.get("promptTokenCount") or 0)
    cached = int(data.get("cachedContentTokenCount") or 0)
    return Usage(
        input_tokens=max(0, prompt - cached) + int(data.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(data.get("candidatesTokenCount") or 0),
        cache_read_tokens=cached,
        reasoning_tokens=int(data.get("thoughtsTokenCount") or 0),
    )


def fits_openapi_schema(schema: Any) -> bool:
    """Whether ``schema`` uses only what Gemini's OpenAPI-subset ``Schema`` accepts."""
    if not isinstance(schema, Mapping):
        return False
    if not set(schema) <= _SCHEMA_KEYS or not isinstance(schema.get("type", ""), str):
        return False
    children: list[Any] = list((schema.get("properties") or {}).values())
    children += list(schema.get("anyOf") or ())
    if "items" in schema:
        children.append(schema["items"])
    return all(fits_openapi_schema(child) for child in children)


def json_schema(response_format: str | Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON Schema a request's ``response_format`` asks for: ``{"name", "schema"}``, a bare
    schema, or OpenAI's ``{"type": "json_schema", "json_schema": {...}}`` (``None``: none)."""
    if not isinstance(response_format, Mapping) or response_format.get("type") == "json_object":
        return None
    if response_format.get("type") == "json_schema":
        response_format = response_format.get("json_schema") or {}
    schema = response_format.get("schema", response_format)
    return schema if isinstance(schema, Mapping) else None


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """A :class:`ToolCall` id split into Gemini's call id and its thought signature."""
    base, mark, signature = call_id.partition(SIGNATURE_MARK)
    return base, (signature if mark else None)


def _image_part(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url") or {}
    url = str(image.get("url", "") if isinstance(image, Mapping) else image)
    if url.startswith("data:") and ";base64," in url:
        mime, _, data = url.removeprefix("data:").partition(";base64,")
        return {"inlineData": {"mimeType": mime, "data": data}}
    return {"fileData": {"fileUri": url}}


def _parts(content: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            parts.append(_image_part(part))
    return parts


def _function_response(message: Message, name: str, call_id: str) -> dict[str, Any]:
    try:
        result: Any = json.loads(message.text)
    except ValueError:
        result = message.text
    response = result if isinstance(result, dict) else {"result": result}
    body: dict[str, Any] = {"name": name, "response": response}
    if call_id and not call_id.startswith("call_"):
        body["id"] = call_id
    return {"functionResponse": body}


def wire_contents(
    messages: Sequence[Message],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Podium messages as Gemini ``contents`` and ``systemInstruction``."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in messages:
        if message.role == "system":
            system.extend(_parts(message.content))
            continue
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            name = message.name or names.get(call_id, "")
            answer = _function_response(message, name, split_call_id(call_id)[0])
            previous = contents[-1]["parts"] if contents else [{}]
            if "functionResponse" in previous[0]:
                previous.append(answer)  # one turn answers every call of the turn before
            else:
                contents.append({"role": "user", "parts": [answer]})
            continue
        parts = _parts(message.content)
        for call in message.tool_calls:
            names[call.id] = call.name
            base, signature = split_call_id(call.id)
            function: dict[str, Any] = {"name": call.name, "args": _arguments(call.arguments)}
            if base and not base.startswith("call_"):
                function["id"] = base
            part: dict[str, Any] = {"functionCall": function}
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        role = "model" if message.role == "assistant" else "user"
        contents.append({"role": role, "parts": parts or [{"text": ""}]})
    return contents, ({"parts": system} if system else None)


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def _tool_calls(parts: Sequence[Mapping[str, Any]], seq: int) -> list[ToolCall]:
    """Tool calls from ``functionCall`` parts; ids made up where Gemini gives none."""
    calls: list[ToolCall] = []
    for part in parts:
        function = part.get("functionCall")
        if not isinstance(function, Mapping):
            continue
        call_id = str(function.get("id") or f"call_{seq + len(calls)}")
        if part.get("thoughtSignature"):
            call_id += SIGNATURE_MARK + str(part["thoughtSignature"])
        args = json.dumps(function.get("args") or {})
        calls.append(ToolCall(call_id, str(function.get("name", "")), args))
    return calls


def _text(parts: Sequence[Mapping[str, Any]]) -> str:
    return "".join(str(p["text"]) for p in parts if "text" in p and not p.get("thought"))


def _duration(value: Any) -> float | None:
    """Seconds in a protobuf ``Duration`` string (``"37s"``, ``"0.5s"``)."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None


class GeminiModel(HostedModel):
    """A Gemini model behind Google's Gemini API."""

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
            info: The catalog entry (``provider_model`` is the id sent, e.g. ``gemini-2.5-flash``).
            base_url: Overrides ``https://generativelanguage.googleapis.com``.
            api_key: The Gemini API key; kept secret, sent only in each request's header.
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
        return {"x-goog-api-key": self._key()}

    @property
    def resource(self) -> str:
        """The model's resource name, ``models/<id>``."""
        model = self.info.provider_model
        return model if "/" in model else f"models/{model}"

    def _path(self, method: str) -> str:
        return f"{API_VERSION}/{self.resource}:{method}"

    def _error(self, response: httpx.Response, body: bytes) -> ModelError:
        body = redact(body, self._secret())
        request_id = response.headers.get("x-goog-request-id")
        kw: dict[str, Any] = {"provider": PROVIDER, "model": self.name, "request_id": request_id}
        error = _error_object(body)
        mapped = map_http_error(response, body=body, **kw)
        if not error:
            return mapped
        text = f"gemini {response.status_code} {error.get('status', '')}: {error.get('message')}"
        details = [d for d in error.get("details") or () if isinstance(d, Mapping)]
        if any(d.get("reason") == "API_KEY_INVALID" for d in details):
            return AuthenticationFailed(text, **kw)
        if isinstance(mapped, RateLimited):
            delay = next(
                (_duration(d.get("retryDelay")) for d in details if "retryDelay" in d), None
            )
            after = mapped.retry_after
            return RateLimited(text, retry_after=after if after is not None else delay, **kw)
        return type(mapped)(text, **kw)

    async def _post(self, method: str, body: Mapping[str, Any]) -> tuple[Any, str | None]:
        """POST ``body``; the parsed JSON answer and the request id, or the mapped error."""
        client = self._client()
        headers = self._headers()
        try:
            response = await client.post(self._path(method), json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=PROVIDER, model=self.name) from None
        if response.status_code >= 400:
            raise self._error(response, response.content)
        try:
            data = response.json()
        except ValueError:
            raise ProviderOverloaded(
                "gemini: the response is not JSON", provider=PROVIDER, model=self.name
            ) from None
        return data, data.get("responseId") or response.headers.get("x-goog-request-id")

    def _refused(self, data: Mapping[str, Any], request_id: str | None) -> ContentRefused | None:
        feedback = data.get("promptFeedback") or {}
        if data.get("candidates") or not feedback.get("blockReason"):
            return None
        reason = feedback["blockReason"]
        detail = feedback.get("blockReasonMessage") or f"the prompt was blocked ({reason})"
        return ContentRefused(
            f"gemini: {detail}", provider=PROVIDER, model=self.name, request_id=request_id
        )

    # -- chat -------------------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a ``generateContent`` request."""
        contents, system = wire_contents(request.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = system
        config: dict[str, Any] = {
            k: v
            for k, v in {
                "maxOutputTokens": request.max_tokens,
                "temperature": request.temperature,
                "topP": request.top_p,
                "seed": request.seed,
                "stopSequences": list(request.stop) or None,
            }.items()
            if v is not None
        }
        fmt = request.response_format
        if fmt != "text":
            config["responseMimeType"] = "application/json"
        schema = json_schema(fmt)
        if schema is not None:
            key = "responseSchema" if fits_openapi_schema(schema) else "responseJsonSchema"
            config[key] = dict(schema)
        if config:
            body["generationConfig"] = config
        if request.tools:
            declarations = []
            for tool in request.tools:
                declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
                params = dict(tool.parameters)
                if params.get("properties") or params.get("type") not in (None, "object"):
                    key = "parameters" if fits_openapi_schema(params) else "parametersJsonSchema"
                    declaration[key] = params
                declarations.append(declaration)
            body["tools"] = [{"functionDeclarations": declarations}]
        choice = request.tool_choice
        if choice:
            modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
            calling: dict[str, Any] = {"mode": modes.get(choice, "ANY")}
            if choice not in modes:
                calling["allowedFunctionNames"] = [choice]
            body["toolConfig"] = {"functionCallingConfig": calling}
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._require(Capability.CHAT)
        started = time.perf_counter()
        data, request_id = await self._post("generateContent", self.chat_body(request))
        latency = time.perf_counter() - started
        refused = self._refused(data, request_id)
        if refused is not None:
            raise refused
        candidate = (data.get("candidates") or [{}])[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        calls = _tool_calls(parts, 0)
        return ChatResponse(
            text=_text(parts),
            model_requested=request.model,
            model_served=str(data.get("modelVersion") or self.info.provider_model),
            provider=PROVIDER,
            usage=usage_from(data.get("usageMetadata")),
            finish_reason=finish_reason(candidate.get("finishReason"), called_tools=bool(calls)),
            tool_calls=calls,
            request_id=request_id,
            latency_s=latency,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Text deltas as they arrive; the last chunk carries the finish reason, the usage and
        the tool calls."""
        self._require(Capability.STREAM)
        client = self._client()
        headers = self._headers()
        path = self._path("streamGenerateContent")
        body = self.chat_body(request)
        started = False
        try:
            async with client.stream(
                "POST", path, json=body, headers=headers, params={"alt": "sse"}
            ) as response:
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
        request_id: str | None = response.headers.get("x-goog-request-id")
        served: str | None = None
        usage: Mapping[str, Any] | None = None
        calls: list[ToolCall] = []
        finish: str | None = None
        async for event in iter_sse(response.aiter_lines()):
            if not event.data:
                continue
            try:
                data = json.loads(event.data)
            except ValueError:
                raise ProviderOverloaded(
                    "gemini: a stream event is not JSON",
                    provider=PROVIDER,
                    model=self.name,
                    request_id=request_id,
                ) from None
            if isinstance(data, Mapping) and "error" in data:
                status = int((data["error"] or {}).get("code") or 500)
                raise self._error(httpx.Response(status), json.dumps(data).encode())
            request_id = data.get("responseId") or request_id
            served = data.get("modelVersion") or served
            usage = data.get("usageMetadata") or usage
            refused = self._refused(data, request_id)
            if refused is not None:
                raise refused
            candidate = (data.get("candidates") or [{}])[0]
            parts = (candidate.get("content") or {}).get("parts") or []
            calls.extend(_tool_calls(parts, len(calls)))
            text = _text(parts)
            if text:
                yield ChatChunk(delta=text, model_served=served, request_id=request_id)
            if candidate.get("finishReason"):
                finish = candidate["finishReason"]
        if finish is None:
            raise stream_cut(PROVIDER, self.name, request_id)
        yield ChatChunk(
            tool_calls=calls,
            finish_reason=finish_reason(finish, called_tools=bool(calls)),
            usage=usage_from(usage),
            model_served=served,
            request_id=request_id,
        )

    # -- embeddings -------------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Embeddings through ``batchEmbedContents``, 100 inputs a request. Usage is the API's
        ``usageMetadata.promptTokenCount`` when it reports one, else the characters embedded."""
        self._require(Capability.EMBED)
        started = time.perf_counter()
        task = self.info.extra.get("task_type")
        dims = self.info.extra.get("output_dimensionality")
        vectors: list[list[float]] = []
        tokens: int | None = None
        request_id: str | None = None
        inputs = list(request.inputs)
        for start in range(0, len(inputs), EMBED_BATCH):
            requests = []
            for text in inputs[start : start + EMBED_BATCH]:
                item: dict[str, Any] = {
                    "model": self.resource,
                    "content": {"parts": [{"text": text}]},
                }
                if task:
                    item["taskType"] = task
                if dims:
                    item["outputDimensionality"] = int(dims)
                requests.append(item)
            data, rid = await self._post("batchEmbedContents", {"requests": requests})
            request_id = request_id or rid
            vectors.extend([float(v) for v in e.get("values") or ()] for e in data["embeddings"])
            counted = (data.get("usageMetadata") or {}).get("promptTokenCount")
            if counted is not None:
                tokens = (tokens or 0) + int(counted)
        usage = (
            Usage(input_tokens=tokens)
            if tokens is not None
            else Usage(characters=sum(len(t) for t in inputs))
        )
        return EmbedResponse(
            vectors=vectors,
            model_served=self.info.provider_model,
            provider=PROVIDER,
            usage=usage,
            request_id=request_id,
            latency_s=time.perf_counter() - started,
        )


def _error_object(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def register(registry: ModelRegistry) -> None:
    """Register the Gemini adapter (the ``podium.models`` plug-in)."""
    registry.add_provider(PROVIDER, GeminiModel.from_settings)
