"""AWS Bedrock's Converse API (``bedrock-runtime``), natively, signed with SigV4.

Chat is ``POST /model/{modelId}/converse`` (the id percent-encoded, ``:`` included); streaming
is ``/converse-stream``, whose body is an AWS event stream (``application/vnd.amazon.eventstream``,
binary messages, each a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes),
typed headers (``:message-type``, ``:event-type``/``:exception-type``, ``:content-type``), a JSON
payload and a CRC32 of the whole message). :class:`EventStreamDecoder` decodes it incrementally
and checks both CRCs. The events are ``messageStart``, ``contentBlockStart`` (a tool call's id
and name), ``contentBlockDelta`` (text, or a piece of a tool call's JSON input),
``contentBlockStop``, ``messageStop`` (the stop reason) and ``metadata`` (usage): a stream that
ends before both of the last two was cut. An ``exception`` message mid-stream is raised mapped.

Messages become ``messages`` (alternating ``user``/``assistant`` content blocks: ``text``,
``image``, ``toolUse``, ``toolResult``) and ``system``; sampling goes in ``inferenceConfig``, tools
in ``toolConfig``, JSON mode in ``outputConfig.textFormat`` (``json_schema``). Usage's
``inputTokens`` already excludes ``cacheReadInputTokens`` and ``cacheWriteInputTokens``, so each
token is counted once as reported. Errors name their type in the ``x-amzn-ErrorType`` header
(``ThrottlingException`` 429, ``ValidationException`` 400 — ``Input is too long`` is a context
overflow —, ``AccessDeniedException`` 403, ``ResourceNotFoundException`` 404,
``ModelTimeoutException`` 408, ``ModelNotReadyException``/``ServiceUnavailableException``…).

Requests are signed with botocore's SigV4 (service ``bedrock``; the ``aws`` extra installs it).
Credentials come from :class:`~podium.config.Settings`: the key id is ``provider_keys["bedrock"]``
(``AWS_ACCESS_KEY_ID``), the secret ``bedrock:aws_secret_access_key``, the optional session
token ``bedrock:aws_session_token``, the region ``bedrock:aws_region`` or
``bedrock:aws_default_region`` (default ``us-east-1``).
"""

from __future__ import annotations

import binascii
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    ConfigError,
    ModelError,
    ModelNotFound,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
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
    retry_after,
    stream_cut,
)

if TYPE_CHECKING:
    from podium.config import Settings
    from podium.models.catalog import ModelInfo
    from podium.models.registry import ModelRegistry
    from podium.types import Clock

PROVIDER = "bedrock"
SERVICE = "bedrock"
"""The SigV4 signing name of ``bedrock-runtime``."""
DEFAULT_REGION = "us-east-1"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}
_ERRORS: dict[str, type[ModelError]] = {
    "ThrottlingException": RateLimited,
    "ServiceQuotaExceededException": RateLimited,
    "AccessDeniedException": AuthenticationFailed,
    "UnrecognizedClientException": AuthenticationFailed,
    "InvalidSignatureException": AuthenticationFailed,
    "IncompleteSignatureException": AuthenticationFailed,
    "MissingAuthenticationTokenException": AuthenticationFailed,
    "ExpiredTokenException": AuthenticationFailed,
    "ResourceNotFoundException": ModelNotFound,
    "ModelTimeoutException": ProviderTimeout,
    "ModelNotReadyException": ProviderOverloaded,
    "ServiceUnavailableException": ProviderOverloaded,
    "InternalServerException": ProviderOverloaded,
    "ModelErrorException": ProviderOverloaded,
    "ModelStreamErrorException": ProviderOverloaded,
}
"""The error each AWS exception type maps to; ``ValidationException`` maps by its message."""
_STREAM_STATUS = {
    "throttlingException": 429,
    "validationException": 400,
    "serviceUnavailableException": 503,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
}


# -- the event stream ---------------------------------------------------------------------------


class EventStreamError(ValueError):
    """The bytes are not a valid AWS event stream (bad length or CRC)."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded event-stream message."""

    headers: Mapping[str, Any]
    payload: bytes

    @property
    def kind(self) -> str:
        """``event``, ``exception`` or ``error`` (``:message-type``)."""
        return str(self.headers.get(":message-type", "event"))

    @property
    def name(self) -> str:
        """The event or exception type (``messageStart``, ``throttlingException``, …)."""
        key = ":exception-type" if self.kind == "exception" else ":event-type"
        return str(self.headers.get(key) or self.headers.get(":error-code") or "")

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else {}


_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def _headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1 : at + 1 + size].decode()
        kind = data[at + 1 + size]
        at += 2 + size
        value: Any
        if kind in (0, 1):
            value = kind == 0
        elif kind in _FIXED:
            fmt = _FIXED[kind]
            (value,) = struct.unpack_from(fmt, data, at)
            at += struct.calcsize(fmt)
        elif kind in (6, 7):
            (length,) = struct.unpack_from(">H", data, at)
            raw = data[at + 2 : at + 2 + length]
            value = raw.decode() if kind == 7 else raw
            at += 2 + length
        elif kind == 9:
            value = uuid.UUID(bytes=data[at : at + 16])
            at += 16
        else:
            raise EventStreamError(f"unknown header value type {kind} for {name!r}")
        headers[name] = value
    return headers


@dataclass
class EventStreamDecoder:
    """Decodes AWS event-stream messages from bytes fed in arbitrary pieces, checking the
    prelude and message CRC32s."""

    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[EventMessage]:
        """Add bytes; returns every message they complete."""
        self._buffer.extend(data)
        messages: list[EventMessage] = []
        while len(self._buffer) >= 12:
            total, headers_length, prelude_crc = struct.unpack_from(">III", self._buffer)
            if binascii.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("event stream prelude CRC mismatch")
            if total < 16 or headers_length > total - 16:
                raise EventStreamError(f"invalid event stream message length {total}")
            if len(self._buffer) < total:
                break
            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - 4)
            if binascii.crc32(message[: total - 4]) != message_crc:
                raise EventStreamError("event stream message CRC mismatch")
            try:
                headers = _headers(message[12 : 12 + headers_length])
            except (IndexError, struct.error, UnicodeDecodeError) as exc:
                raise EventStreamError(f"malformed event stream headers ({exc})") from None
            messages.append(EventMessage(headers, message[12 + headers_length : total - 4]))
        return messages

    @property
    def pending(self) -> int:
        """Bytes held of a message not yet complete."""
        return len(self._buffer)


# -- wire conversions ---------------------------------------------------------------------------


def finish_reason(value: str | None) -> FinishReason:
    """Podium's finish reason for a Converse ``stopReason``."""
    return _FINISH.get(value or "end_turn", "stop")


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """Podium's :class:`Usage` from Converse ``usage`` (input already excludes cache tokens)."""
    if not data:
        return Usage()
    return Usage(
        input_tokens=int(data.get("inputTokens") or 0),
        output_tokens=int(data.get("outputTokens") or 0),
        cache_read_tokens=int(data.get("cacheReadInputTokens") or 0),
        cache_write_tokens=int(data.get("cacheWriteInputTokens") or 0),
    )


def _blocks(content: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text" and str(part.get("text", "")).strip():
            blocks.append({"text": str(part["text"])})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = str(image.get("url", "") if isinstance(image, Mapping) else image)
            mime, _, data = url.removeprefix("data:").partition(";base64,")
            if not url.startswith("data:") or not data:
                raise BadModelRequest(
                    "bedrock takes images as data: URLs (base64), not links", provider=PROVIDER
                )
            blocks.append({"image": {"format": mime.split("/")[-1], "source": {"bytes": data}}})
    return blocks


def _tool_result(message: Message) -> dict[str, Any]:
    try:
        value = json.loads(message.text)
    except ValueError:
        value = None
    content = [{"json": value}] if isinstance(value, dict) else [{"text": message.text or " "}]
    result = {"toolUseId": message.tool_call_id or "", "content": content, "status": "success"}
    return {"toolResult": result}


def wire_messages(
    messages: Sequence[Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Podium messages as Converse ``messages`` (consecutive turns of one role merged, as
    Bedrock requires them to alternate) and ``system`` blocks."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system.extend(_blocks(message.content))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [_tool_result(message)] if message.role == "tool" else _blocks(message.content)
        for call in message.tool_calls:
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                arguments = {"arguments": call.arguments}
            blocks.append(
                {"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}}
            )
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out, system


def _json_schema(value: str | Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The schema name and JSON Schema a ``response_format`` asks for (``None``: plain text)."""
    if value == "text":
        return None
    if not isinstance(value, Mapping) or value.get("type") == "json_object":
        return "response", {"type": "object"}
    if value.get("type") == "json_schema":
        value = value.get("json_schema") or {}
    schema = value.get("schema", value)
    return str(value.get("name") or "response"), schema if isinstance(schema, Mapping) else {}


def _botocore() -> Any:
    """botocore's signing modules, imported when first needed."""
    try:
        # botocore ships no type information; its signing API is used through ``Any``.
        import botocore.auth  # type: ignore[import-untyped]
        import botocore.awsrequest  # type: ignore[import-untyped]
        import botocore.credentials  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "the bedrock adapter signs requests with botocore: pip install 'podium[aws]'"
        ) from None
    return botocore


class BedrockModel(HostedModel):
    """A model served by AWS Bedrock's Converse API."""

    provider = PROVIDER

    def __init__(
        self,
        info: ModelInfo,
        *,
        access_key: SecretStr | None = None,
        secret_key: SecretStr | None = None,
        session_token: SecretStr | None = None,
        region: str = DEFAULT_REGION,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        """
        Args:
            info: The catalog entry (``provider_model`` is the Bedrock model or profile id).
            access_key: ``AWS_ACCESS_KEY_ID``.
            secret_key: ``AWS_SECRET_ACCESS_KEY``; signs, never sent.
            session_token: ``AWS_SESSION_TOKEN`` for temporary credentials.
            region: The AWS region the requests are signed for and sent to.
            base_url: Overrides ``https://bedrock-runtime.{region}.amazonaws.com``.
            timeout: Seconds for connecting and for each read.
            transport: The httpx transport (the test seam; ``None``: real network).
            clock: Where signing reads the time (``None``: the system clock).
        """
        super().__init__(
            info,
            base_url=(base_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/"),
            timeout=timeout,
            transport=transport,
        )
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._clock = clock

    @classmethod
    def from_settings(cls, info: ModelInfo, settings: Settings) -> Self:
        """The adapter for ``info`` with the credentials, region and URL ``settings`` hold."""
        keys = settings.provider_keys
        region = keys.get("bedrock:aws_region") or keys.get("bedrock:aws_default_region")
        return cls(
            info,
            access_key=keys.get(PROVIDER),
            secret_key=keys.get("bedrock:aws_secret_access_key"),
            session_token=keys.get("bedrock:aws_session_token"),
            region=region.get_secret_value() if region else DEFAULT_REGION,
            base_url=settings.provider_urls.get(PROVIDER),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.name!r}, region={self.region!r}, "
            f"base_url={self.base_url!r})"
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        if self.base_url is None:
            return f"{self.provider} has no base URL"
        if self._access_key is None or self._secret_key is None:
            return "no AWS credentials for bedrock: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        return None

    def _url(self, operation: str) -> str:
        return f"{self.base_url}/model/{quote(self.info.provider_model, safe='')}/{operation}"

    def _signed_headers(self, url: str, body: bytes, accept: str) -> dict[str, str]:
        """The headers of a request signed with SigV4 (the time read from the clock)."""
        missing = [
            variable
            for variable, value in (
                ("AWS_ACCESS_KEY_ID", self._access_key),
                ("AWS_SECRET_ACCESS_KEY", self._secret_key),
            )
            if value is None
        ]
        if missing or self._access_key is None or self._secret_key is None:
            raise AuthenticationFailed(
                f"no AWS credentials for bedrock: set {' and '.join(missing)}",
                provider=PROVIDER,
                model=self.name,
            )
        botocore = _botocore()
        token = self._session_token.get_secret_value() if self._session_token else None
        credentials = botocore.credentials.Credentials(
            self._access_key.get_secret_value(), self._secret_key.get_secret_value(), token
        )
        headers = {"Content-Type": "application/json", "Accept": accept}
        request = botocore.awsrequest.AWSRequest("POST", url, headers=headers, data=body)
        now = self._clock.now() if self._clock is not None else time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        request.context["timestamp"] = stamp
        request.headers["X-Amz-Date"] = stamp
        if token:
            request.headers["X-Amz-Security-Token"] = token
        # The signer's own ``add_auth`` logs the canonical request (session token included)
        # at DEBUG: its parts are called instead, which log nothing.
        signer = botocore.auth.SigV4Auth(credentials, SERVICE, self.region)
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        signed = signer.signed_headers(signer.headers_to_sign(request))
        out = {str(k): str(v) for k, v in request.headers.items()}
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return out

    def _secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self._secret_key, self._session_token) if s]

    def _map_error(
        self,
        status: int,
        error_type: str,
        body: bytes,
        headers: httpx.Headers,
        request_id: str | None,
    ) -> ModelError:
        for secret in self._secrets():
            body = redact(body, secret)
        response = httpx.Response(status, headers=headers, content=body)
        kw: dict[str, Any] = {"provider": PROVIDER, "model": self.name, "request_id": request_id}
        mapped = map_http_error(response, body=body, **kw)
        message = str(mapped).partition(": ")[2]
        # ValidationException and unknown types map by status and message (context overflow…)
        cls = _ERRORS.get(error_type, type(mapped))
        if "model identifier is invalid" in message:
            cls = ModelNotFound
        text = f"bedrock {status} {error_type or 'error'}: {message}"
        if issubclass(cls, RateLimited):
            return RateLimited(text, retry_after=retry_after(headers), **kw)
        return cls(text, **kw)

    def _error(self, response: httpx.Response, body: bytes) -> ModelError:
        error_type = response.headers.get("x-amzn-errortype", "").split(":")[0]
        if not error_type:
            try:
                error_type = str(json.loads(body).get("__type", "")).rsplit("#", 1)[-1]
            except (ValueError, AttributeError):
                error_type = ""
        request_id = response.headers.get("x-amzn-requestid")
        return self._map_error(response.status_code, error_type, body, response.headers, request_id)

    # -- chat -------------------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a Converse request."""
        messages, system = wire_messages(request.messages)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        config = {
            k: v
            for k, v in {
                "maxTokens": request.max_tokens,
                "temperature": request.temperature,
                "topP": request.top_p,
                "stopSequences": list(request.stop) or None,
            }.items()
            if v is not None
        }
        if config:
            body["inferenceConfig"] = config
        if request.tools:
            tools = [
                {
                    "toolSpec": {
                        "name": t.name,
                        "description": t.description or t.name,
                        "inputSchema": {"json": dict(t.parameters)},
                    }
                }
                for t in request.tools
            ]
            tool_config: dict[str, Any] = {"tools": tools}
            choice = request.tool_choice
            if choice == "auto":
                tool_config["toolChoice"] = {"auto": {}}
            elif choice == "required":
                tool_config["toolChoice"] = {"any": {}}
            elif choice and choice != "none":
                tool_config["toolChoice"] = {"tool": {"name": choice}}
            body["toolConfig"] = tool_config
        wanted = _json_schema(request.response_format)
        if wanted is not None:
            name, schema = wanted
            structure = {"jsonSchema": {"schema": json.dumps(schema), "name": name}}
            body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": structure}}
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._require(Capability.CHAT)
        started = time.perf_counter()
        url = self._url("converse")
        body = json.dumps(self.chat_body(request)).encode()
        headers = self._signed_headers(url, body, "application/json")
        try:
            response = await self._client().post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, provider=PROVIDER, model=self.name) from None
        if response.status_code >= 400:
            raise self._error(response, response.content)
        request_id = response.headers.get("x-amzn-requestid")
        try:
            data = response.json()
        except ValueError:
            raise ProviderOverloaded(
                "bedrock: the response is not JSON",
                provider=PROVIDER,
                model=self.name,
                request_id=request_id,
            ) from None
        blocks = ((data.get("output") or {}).get("message") or {}).get("content") or []
        calls = [
            ToolCall(str(use.get("toolUseId")), str(use.get("name")), json.dumps(use.get("input")))
            for block in blocks
            if (use := block.get("toolUse"))
        ]
        return ChatResponse(
            text="".join(str(b["text"]) for b in blocks if "text" in b),
            model_requested=request.model,
            model_served=self.info.provider_model,
            provider=PROVIDER,
            usage=usage_from(data.get("usage")),
            finish_reason=finish_reason(data.get("stopReason")),
            tool_calls=calls,
            request_id=request_id,
            latency_s=time.perf_counter() - started,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Text deltas as they arrive; the last chunk (once ``messageStop`` and ``metadata``
        have both come) carries the finish reason, the usage and the tool calls."""
        self._require(Capability.STREAM)
        url = self._url("converse-stream")
        body = json.dumps(self.chat_body(request)).encode()
        headers = self._signed_headers(url, body, "application/vnd.amazon.eventstream")
        request_id: str | None = None
        started = False
        try:
            async with self._client().stream("POST", url, content=body, headers=headers) as resp:
                if resp.status_code >= 400:
                    raise self._error(resp, await resp.aread())
                request_id = resp.headers.get("x-amzn-requestid")
                started = True
                async for chunk in self._chunks(resp, request_id):
                    yield chunk
        except httpx.HTTPError as exc:
            if not started:
                raise map_transport_error(exc, provider=PROVIDER, model=self.name) from None
            raise stream_cut(PROVIDER, self.name, request_id, exc) from None
        except ValueError as exc:  # EventStreamError, or an event payload that is not JSON
            raise ProviderOverloaded(
                f"bedrock: corrupt event stream ({exc})",
                provider=PROVIDER,
                model=self.name,
                request_id=request_id,
            ) from None

    async def _chunks(
        self, response: httpx.Response, request_id: str | None
    ) -> AsyncIterator[ChatChunk]:
        decoder = EventStreamDecoder()
        served = self.info.provider_model
        calls: dict[int, dict[str, str]] = {}
        stop: str | None = None
        usage: Usage | None = None
        async for data in response.aiter_bytes():
            for message in decoder.feed(data):
                if message.kind != "event":
                    raise self._stream_exception(message, response.headers, request_id)
                event = message.json()
                if message.name == "contentBlockStart":
                    use = (event.get("start") or {}).get("toolUse") or {}
                    calls[int(event.get("contentBlockIndex", 0))] = {
                        "id": str(use.get("toolUseId", "")),
                        "name": str(use.get("name", "")),
                        "input": "",
                    }
                elif message.name == "contentBlockDelta":
                    delta = event.get("delta") or {}
                    if "toolUse" in delta:
                        index = int(event.get("contentBlockIndex", 0))
                        call = calls.setdefault(index, {"id": "", "name": "", "input": ""})
                        call["input"] += str(delta["toolUse"].get("input") or "")
                    elif delta.get("text"):
                        yield ChatChunk(
                            delta=str(delta["text"]), model_served=served, request_id=request_id
                        )
                elif message.name == "messageStop":
                    stop = str(event.get("stopReason") or "end_turn")
                elif message.name == "metadata":
                    usage = usage_from(event.get("usage"))
        if stop is None or usage is None or decoder.pending:
            raise stream_cut(PROVIDER, self.name, request_id)
        yield ChatChunk(
            tool_calls=[
                ToolCall(c["id"], c["name"], c["input"] or "{}") for _, c in sorted(calls.items())
            ],
            finish_reason=finish_reason(stop),
            usage=usage,
            model_served=served,
            request_id=request_id,
        )

    def _stream_exception(
        self, message: EventMessage, headers: httpx.Headers, request_id: str | None
    ) -> ModelError:
        """The error an ``exception`` (or ``error``) message inside the stream reports."""
        if message.kind == "error":
            text = str(message.headers.get(":error-message", ""))
            body = json.dumps({"message": text}).encode()
            return self._map_error(500, message.name, body, httpx.Headers(), request_id)
        name = message.name
        status = _STREAM_STATUS.get(name, 500)
        error_type = name[:1].upper() + name[1:]
        return self._map_error(status, error_type, message.payload, headers, request_id)


def register(registry: ModelRegistry) -> None:
    """Register the Bedrock adapter (the ``podium.models`` plug-in)."""
    registry.add_provider(PROVIDER, BedrockModel.from_settings)
