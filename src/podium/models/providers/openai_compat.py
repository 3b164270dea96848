"""One adapter for every OpenAI-compatible API: OpenAI, Azure OpenAI, Mistral, Groq, DeepSeek,
Together, Fireworks, xAI, OpenRouter, Perplexity, Ollama, vLLM and llama.cpp's server.

Chat completions (``POST {base}/chat/completions``; streamed as ``data: {chunk}`` events ending in
``data: [DONE]``, with ``stream_options.include_usage`` so the last event carries usage), tools,
JSON mode and ``json_schema`` structured output, and embeddings (``POST {base}/embeddings``).
OpenAI's usage counts cached tokens inside ``prompt_tokens`` and reasoning tokens inside
``completion_tokens``; :func:`usage_from` separates them so each token is counted once.

Each provider differs only by a :class:`ProviderSpec` (base URL, whether it needs a key, Azure's
URL and header shape); :func:`register` adds a factory per provider. Keys and base URLs come from
:class:`~podium.config.Settings` (``provider_keys``/``provider_urls``); a missing key fails at call
time with :class:`~podium.errors.AuthenticationFailed` naming the variable to set.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import httpx
import orjson
from pydantic import SecretStr

from podium.config import PROVIDER_KEY_VARIABLES
from podium.errors import (
    ConfigError,
    ContentRefused,
    ContextLengthExceeded,
    ModelError,
    ProviderOverloaded,
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
    Model,
    Tool,
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
from podium.models.providers.keepalive import KeepAliveClient
from podium.models.providers.sse import iter_sse

if TYPE_CHECKING:
    from podium.config import Settings
    from podium.models.catalog import ModelInfo
    from podium.models.registry import ModelRegistry, ProviderFactory

DEFAULT_TIMEOUT = 600.0
AZURE_API_VERSION = "2024-10-21"
"""Azure OpenAI's GA data-plane API version (a model's ``extra["api_version"]`` overrides it)."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How one OpenAI-compatible provider differs from the others."""

    name: str
    base_url: str | None
    """Default base URL (``None``: it must be configured, ``PODIUM_PROVIDER_URL_<NAME>``)."""
    needs_key: bool = True
    azure: bool = False
    """Azure OpenAI: deployment URLs, ``api-version`` query and an ``api-key`` header."""
    max_tokens_field: str = "max_tokens"
    """OpenAI's newer models accept only ``max_completion_tokens``; most servers ``max_tokens``."""

    @property
    def key_variable(self) -> str:
        """The environment variable that supplies this provider's key."""
        return PROVIDER_KEY_VARIABLES.get(self.name, (f"{self.name.upper()}_API_KEY",))[0]

    @property
    def url_variable(self) -> str:
        return f"PODIUM_PROVIDER_URL_{self.name.upper()}"


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec("openai", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens"),
    ProviderSpec("azure", None, azure=True, max_tokens_field="max_completion_tokens"),
    ProviderSpec("mistral", "https://api.mistral.ai/v1"),
    ProviderSpec("groq", "https://api.groq.com/openai/v1"),
    ProviderSpec("deepseek", "https://api.deepseek.com/v1"),
    ProviderSpec("together", "https://api.together.xyz/v1"),
    ProviderSpec("fireworks", "https://api.fireworks.ai/inference/v1"),
    ProviderSpec("xai", "https://api.x.ai/v1"),
    ProviderSpec("openrouter", "https://openrouter.ai/api/v1"),
    ProviderSpec("perplexity", "https://api.perplexity.ai"),
    ProviderSpec("ollama", "http://127.0.0.1:11434/v1", needs_key=False),
    ProviderSpec("vllm", None, needs_key=False),
    ProviderSpec("llamacpp", None, needs_key=False),
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_CONTENT_CODES = ("content_filter", "content_policy_violation")


def finish_reason(value: str | None) -> FinishReason:
    """Podium's finish reason for an OpenAI ``finish_reason``."""
    return _FINISH.get(value or "stop", "stop")


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """Podium's :class:`Usage` from an OpenAI ``usage`` object, each token counted once:
    cached (and cache-written) tokens leave ``prompt_tokens``, reasoning leaves
    ``completion_tokens``. DeepSeek's ``prompt_cache_hit_tokens`` counts as a cache read."""
    if not data:
        return Usage()
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    cached = int(prompt_details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0)
    written = int(prompt_details.get("cache_write_tokens") or 0)
    reasoning = int(completion_details.get("reasoning_tokens") or 0)
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    return Usage(
        input_tokens=max(0, prompt - cached - written),
        output_tokens=max(0, completion - reasoning),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def wire_message(message: Message) -> dict[str, Any]:
    """A Podium message in OpenAI's wire form."""
    out: dict[str, Any] = {"role": message.role}
    content: Any = message.content if isinstance(message.content, str) else list(message.content)
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        content = content or None
    out["content"] = content
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def response_format(value: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` for Podium's ``json`` mode or a ``{"name", "schema"}``."""
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, Mapping):
        if "type" in value:  # already in OpenAI's own form
            return dict(value)
        spec: dict[str, Any] = {
            "name": value.get("name", "response"),
            "schema": value.get("schema", value),
        }
        if "strict" in value:
            spec["strict"] = value["strict"]
        return {"type": "json_schema", "json_schema": spec}
    return None


class OpenAICompatModel(HostedModel):
    """A model served by an OpenAI-compatible API."""

    fast_transport = True

    def __init__(
        self,
        info: ModelInfo,
        spec: ProviderSpec,
        *,
        base_url: str | None = None,
        api_key: SecretStr | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            info: The catalog entry (``provider_model`` is the id, or Azure deployment, sent).
            spec: The provider's differences.
            base_url: Overrides ``spec.base_url`` (for Azure: the resource endpoint).
            api_key: The provider key; kept secret, sent only in each request's header.
            timeout: Seconds for connecting and for each read (a long non-streamed answer
                sends nothing until it is done, hence the official SDKs' 10 minutes).
            transport: The httpx transport (the test seam; ``None``: real network).
        """
        super().__init__(
            info,
            base_url=(base_url or spec.base_url or "").rstrip("/") or None,
            api_key=api_key,
            timeout=timeout,
            transport=transport,
        )
        self.spec = spec
        self.provider = spec.name
        self._urls: dict[str, httpx.URL] = {}
        self._url_texts: dict[str, str] = {}
        """``_urls`` as text, for the keep-alive hot path."""

    @classmethod
    def from_settings(  # type: ignore[override]  # the provider comes from ``spec``
        cls, info: ModelInfo, settings: Settings, spec: ProviderSpec
    ) -> Self:
        """The adapter for ``info`` with the key and base URL ``settings`` hold for ``spec``."""
        return cls(
            info,
            spec,
            base_url=settings.provider_urls.get(spec.name),
            api_key=settings.provider_keys.get(spec.name),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, model={self.name!r}, "
            f"base_url={self.base_url!r})"
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self.base_url is None:
            raise ConfigError(
                f"{self.provider} has no base URL: set {self.spec.url_variable} "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        return super()._client()

    def _key_variables(self) -> tuple[str, ...]:
        return (self.spec.key_variable,)

    def _headers(self) -> dict[str, str]:
        if self._api_key is None and not self.spec.needs_key:
            return {}
        secret = self._key()
        return {"api-key": secret} if self.spec.azure else {"authorization": f"Bearer {secret}"}

    def _target(self, operation: str) -> tuple[str, dict[str, str]]:
        """The path (relative to the base URL) and query of ``operation``."""
        if self.spec.azure:
            version = self.info.extra.get("api_version", AZURE_API_VERSION)
            path = f"openai/deployments/{self.info.provider_model}/{operation}"
            return path, {"api-version": version}
        return operation, {}

    def _error(self, response: httpx.Response, body: bytes) -> ModelError:
        request_id = _request_id(response.headers)
        body = redact(body, self._secret())
        kw: dict[str, Any] = {"provider": self.provider, "model": self.name}
        err = _error_object(body)
        code = str(err.get("code") or "")
        text = f"{self.provider} {response.status_code}: {err.get('message') or code}"
        if code == "context_length_exceeded":
            return ContextLengthExceeded(text, request_id=request_id, **kw)
        if code in _CONTENT_CODES:
            return ContentRefused(text, request_id=request_id, **kw)
        return map_http_error(response, request_id=request_id, body=body, **kw)

    def _url(self, operation: str) -> httpx.URL:
        """The absolute URL of an operation, built once: merging a relative path and query into
        the base URL on every call costs ~0.13 ms of CPU, a tenth of a gateway call."""
        url = self._urls.get(operation)
        if url is None:
            path, params = self._target(operation)
            assert self.base_url is not None  # _fast_session / _client checked it
            url = httpx.URL(self.base_url.rstrip("/") + "/").join(path)
            if params:
                url = url.copy_merge_params(params)
            self._urls[operation] = url
        return url

    async def _post_fast(
        self,
        fast: KeepAliveClient,
        operation: str,
        body: Mapping[str, Any],
        headers: dict[str, str],
    ) -> tuple[Any, str | None]:
        url = self._url_texts.get(operation)
        if url is None:
            url = self._url_texts[operation] = str(self._url(operation))
        headers["content-type"] = "application/json"
        try:
            status, answer_headers, content = await fast.post(url, orjson.dumps(body), headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=self.provider, model=self.name) from None
        if status >= 400:
            response = httpx.Response(
                status,
                headers=list(answer_headers.items()),
                content=content,
                request=httpx.Request("POST", url),
            )
            raise self._error(response, content)
        request_id = _request_id(answer_headers)
        try:
            return orjson.loads(content), request_id
        except ValueError:
            raise ProviderOverloaded(
                f"{self.provider}: the response is not JSON",
                provider=self.provider,
                model=self.name,
                request_id=request_id,
            ) from None

    async def _post(self, operation: str, body: Mapping[str, Any]) -> tuple[Any, str | None]:
        """POST ``body``; the parsed JSON answer and the request id, or the mapped error."""
        headers = self._headers()
        fast = self._fast_session()
        if fast is not None:
            return await self._post_fast(fast, operation, body, headers)
        client = self._client()
        try:
            response = await client.post(self._url(operation), json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=self.provider, model=self.name) from None
        if response.status_code >= 400:
            raise self._error(response, response.content)
        request_id = _request_id(response.headers)
        try:
            return response.json(), request_id
        except ValueError:
            raise ProviderOverloaded(
                f"{self.provider}: the response is not JSON",
                provider=self.provider,
                model=self.name,
                request_id=request_id,
            ) from None

    # -- chat -------------------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of a chat completion request."""
        body: dict[str, Any] = {"messages": [wire_message(m) for m in request.messages]}
        if not self.spec.azure:
            body["model"] = self.info.provider_model
        if request.max_tokens is not None:
            body[self.spec.max_tokens_field] = request.max_tokens
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "user": request.user,
            "stop": list(request.stop) or None,
            "response_format": response_format(request.response_format),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t.name, **_tool_spec(t)}}
                for t in request.tools
            ]
        if request.tool_choice in ("auto", "none", "required"):
            body["tool_choice"] = request.tool_choice
        elif request.tool_choice:
            body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._require(Capability.CHAT)
        started = time.perf_counter()
        data, request_id = await self._post("chat/completions", self.chat_body(request))
        latency = time.perf_counter() - started
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        refusal = message.get("refusal")
        calls = [
            ToolCall(str(c.get("id")), str(fn.get("name")), fn.get("arguments") or "")
            for c in message.get("tool_calls") or ()
            for fn in [c.get("function") or {}]
        ]
        return ChatResponse(
            text=message.get("content") or refusal or "",
            model_requested=request.model,
            model_served=str(data.get("model") or self.info.provider_model),
            provider=self.provider,
            usage=usage_from(data.get("usage")),
            finish_reason="content_filter"
            if refusal
            else finish_reason(choice.get("finish_reason")),
            tool_calls=calls,
            request_id=request_id,
            latency_s=latency,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Text deltas as they arrive; the last chunk carries the finish reason, the usage and
        the tool calls (assembled from their streamed deltas)."""
        self._require(Capability.STREAM)
        client = self._client()
        headers = self._headers()
        path, params = self._target("chat/completions")
        body = self.chat_body(request, stream=True)
        request_id: str | None = None
        started = False
        try:
            async with client.stream(
                "POST", path, json=body, headers=headers, params=params
            ) as response:
                request_id = _request_id(response.headers)
                started = True
                if response.status_code >= 400:
                    raise self._error(response, await response.aread())
                async for chunk in self._chunks(response, request_id):
                    yield chunk
        except httpx.HTTPError as exc:
            if not started:
                raise map_transport_error(exc, provider=self.provider, model=self.name) from None
            raise stream_cut(self.provider, self.name, request_id, exc) from None

    async def _chunks(
        self, response: httpx.Response, request_id: str | None
    ) -> AsyncIterator[ChatChunk]:
        served: str | None = None
        usage: Usage | None = None
        finish: FinishReason | None = None
        calls: dict[int, dict[str, str]] = {}
        async for event in iter_sse(response.aiter_lines()):
            if event.data == "[DONE]":
                break
            if not event.data:
                continue
            data = json.loads(event.data)
            if data.get("error"):
                raise self._stream_error(data, request_id)
            served = data.get("model") or served
            if data.get("usage"):
                usage = usage_from(data["usage"])
            for choice in data.get("choices") or ():
                delta = choice.get("delta") or {}
                for part in delta.get("tool_calls") or ():
                    call = calls.setdefault(int(part.get("index", 0)), {"arguments": ""})
                    function = part.get("function") or {}
                    call["id"] = part.get("id") or call.get("id", "")
                    call["name"] = function.get("name") or call.get("name", "")
                    call["arguments"] += function.get("arguments") or ""
                if delta.get("content"):
                    yield ChatChunk(
                        delta=delta["content"], model_served=served, request_id=request_id
                    )
                if choice.get("finish_reason"):
                    finish = finish_reason(choice["finish_reason"])
        else:
            raise stream_cut(self.provider, self.name, request_id)
        yield ChatChunk(
            tool_calls=[
                ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())
            ],
            finish_reason=finish or "stop",
            usage=usage or Usage(),
            model_served=served,
            request_id=request_id,
        )

    def _stream_error(self, data: Mapping[str, Any], request_id: str | None) -> ModelError:
        """The error an in-stream ``{"error": …}`` event reports (its status inferred)."""
        err = data["error"] if isinstance(data["error"], Mapping) else {"message": data["error"]}
        kind = f"{err.get('type')} {err.get('code')}"
        status = 429 if "rate_limit" in kind else 400 if "invalid_request" in kind else 500
        headers = {"x-request-id": request_id} if request_id else {}
        body = json.dumps({"error": err}).encode()
        return self._error(httpx.Response(status, headers=headers), body)

    # -- embeddings -------------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self._require(Capability.EMBED)
        started = time.perf_counter()
        body: dict[str, Any] = {"input": list(request.inputs), "encoding_format": "float"}
        if not self.spec.azure:
            body["model"] = self.info.provider_model
        data, request_id = await self._post("embeddings", body)
        latency = time.perf_counter() - started
        rows = sorted(data.get("data") or (), key=lambda row: int(row.get("index", 0)))
        usage = data.get("usage") or {}
        return EmbedResponse(
            vectors=[[float(v) for v in row["embedding"]] for row in rows],
            model_served=str(data.get("model") or self.info.provider_model),
            provider=self.provider,
            usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0)),
            request_id=request_id,
            latency_s=latency,
        )


def _tool_spec(tool: Tool) -> dict[str, Any]:
    return {"description": tool.description, "parameters": dict(tool.parameters)}


def _request_id(headers: Mapping[str, str]) -> str | None:
    value: str | None = headers.get("x-request-id") or headers.get("apim-request-id")
    return value


def _error_object(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def register(registry: ModelRegistry) -> None:
    """Register a factory for every OpenAI-compatible provider (the ``podium.models`` plug-in)."""
    for spec in PROVIDERS:
        registry.add_provider(spec.name, _factory(spec))


def _factory(spec: ProviderSpec) -> ProviderFactory:
    def build(info: ModelInfo, settings: Settings) -> Model:
        return OpenAICompatModel.from_settings(info, settings, spec)

    return build
