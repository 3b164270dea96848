"""A wire-accurate simulator of AWS Bedrock's Converse API: ``POST /model/{modelId}/converse``
(JSON) and ``/converse-stream`` (an ``application/vnd.amazon.eventstream`` body, encoded here
with real preludes, typed headers and CRC32s).

Every request must carry a valid SigV4 signature: the simulator parses the ``Authorization``
header, checks the credential scope (key id, date, region, service ``bedrock``), the
``X-Amz-Date`` skew (5 minutes) and the session token, then recomputes the signature with
botocore over the request exactly as received (raw path, signed headers, body hash) and compares
— a mismatch is a 403 ``InvalidSignatureException``, an unknown key id a 403
``UnrecognizedClientException``. It then checks what Converse checks (a conversation that starts
with a user turn and alternates roles, non-blank text, tool results answering the previous turn's
tool uses, ``toolConfig`` whenever tools appear, inference parameter ranges, ``outputConfig``'s
JSON schema, the model id, the context window) and answers errors the AWS way: the status, an
``x-amzn-ErrorType`` header naming the exception, and ``{"message": …}``.

Replies are deterministic: a scripted :class:`~podium.testing.simulators.server.Reply`, else a
forced tool (``toolChoice`` ``any``/``tool``) called with schema-shaped input, else a JSON value
shaped by ``outputConfig``'s schema, else an echo of the last user turn. Usage reports
``inputTokens`` *excluding* ``cacheReadInputTokens``/``cacheWriteInputTokens`` and
``outputTokens`` including any reasoning, as Bedrock does.
"""

from __future__ import annotations

import binascii
import calendar
import hashlib
import hmac
import json
import re
import struct
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.testing.simulators.server import (
    ErrorKind,
    Handler,
    RecordedRequest,
    Reply,
    ScriptedToolCall,
    SimError,
    Simulator,
    count_tokens,
    default_kind,
    instance_of,
)

EVENTSTREAM = "application/vnd.amazon.eventstream"
SKEW = 300
"""Seconds a request's ``X-Amz-Date`` may differ from the simulator's clock."""

_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_TYPES: dict[ErrorKind, str] = {
    "invalid_request": "ValidationException",
    "context_length": "ValidationException",
    "content_filter": "ValidationException",
    "authentication": "UnrecognizedClientException",
    "permission": "AccessDeniedException",
    "not_found": "ResourceNotFoundException",
    "rate_limit": "ThrottlingException",
    "server": "InternalServerException",
    "overloaded": "ServiceUnavailableException",
}
_BY_STATUS = {408: "ModelTimeoutException", 424: "ModelErrorException"}
_MESSAGES = {
    "ValidationException": "The provided request is not valid.",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided "
    "model identifier.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "InternalServerException": "The server encountered an internal error while processing the "
    "request.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request "
    "again.",
    "ModelErrorException": "The system encountered an unexpected error during processing. Try "
    "your request again.",
}
_CONTEXT = "Input is too long for requested model."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_STREAM_TYPES = {
    429: "throttlingException",
    400: "validationException",
    503: "serviceUnavailableException",
    424: "modelStreamErrorException",
}
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "content_filtered",
}
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_raw_target: ContextVar[tuple[bytes, bytes]] = ContextVar("raw_target", default=(b"", b""))


def error_type(status: int, kind: ErrorKind) -> str:
    """The exception Bedrock names for an error of ``status`` and ``kind``."""
    return _BY_STATUS.get(status) or _TYPES[kind]


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, string headers, payload and the two CRC32s."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def encode_event(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """A Converse stream event (Bedrock pads each payload with a ``p`` field)."""
    body = {**payload, "p": _PADDING[: 1 + len(event_type) % len(_PADDING)]}
    headers = {":event-type": event_type, ":content-type": "application/json"}
    return encode_message({**headers, ":message-type": "event"}, json.dumps(body).encode())


def encode_exception(exception_type: str, payload: Mapping[str, Any]) -> bytes:
    """A Converse stream exception (``throttlingException``, …)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps(payload).encode())


class _RawTarget:
    """ASGI middleware keeping the request's raw (still percent-encoded) path and query string,
    which SigV4 signs, where the handler can read them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            _raw_target.set((raw, scope.get("query_string", b"")))
        await self.app(scope, receive, send)


_VALIDATION = {
    "model": "The provided model identifier is invalid.",
    "first": "A conversation must start with a user message. Try again with a conversation that "
    "starts with a user message.",
    "alternate": "A conversation must alternate between user and assistant roles. Make sure the "
    "conversation alternates between user and assistant roles and try again.",
    "empty": "The content field in the Message object at messages.{i} is empty. Add a "
    "ContentBlock object to the content field and try again.",
    "blank": "The text field in the {where} is blank. Add text to the text field, and try again.",
    "results": "Expected toolResult blocks at messages.{i}.content for the following Ids: {ids}",
    "constraint": "1 validation error detected: Value '{value}' at '{at}' failed to satisfy "
    "constraint: {rule}",
    "tool_config": "The toolConfig field must be defined when using toolUse and toolResult "
    "content blocks.",
    "schema": "The inputSchema field in toolConfig.tools.{i}.toolSpec must have a json value.",
    "choice": "The tool {name} in toolChoice is not defined in toolConfig.tools.",
    "output": "The JSON schema in outputConfig.textFormat.structure.jsonSchema.schema is not a "
    "valid JSON Schema object.",
}


def _invalid(what: str, **values: Any) -> SimError:
    """A 400 ``ValidationException`` with Bedrock's wording for ``what``."""
    return _aws_error(400, "ValidationException", _VALIDATION[what].format(**values))


def _aws_error(status: int, exception: str, message: str) -> SimError:
    kind = next((k for k, v in _TYPES.items() if v == exception), None)
    return SimError(
        status, message, kind=kind, headers={"x-amzn-ErrorType": exception + _NAMESPACE}
    )


def _text(blocks: Any) -> str:
    parts: list[str] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        if "text" in block:
            parts.append(str(block["text"]))
        elif "toolUse" in block:
            parts.append(json.dumps(block["toolUse"].get("input", {})))
        elif "toolResult" in block:
            for item in block["toolResult"].get("content") or ():
                parts.append(str(item.get("text") or json.dumps(item.get("json", ""))))
    return " ".join(parts)


def _pieces(text: str, size: int = 0) -> list[str]:
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)]
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


class BedrockSimulator(Simulator):
    """AWS Bedrock's Converse and ConverseStream operations, SigV4 verified."""

    name = "bedrock-simulator"

    def __init__(
        self,
        *,
        access_key: str = "AKIDEXAMPLE",
        secret_key: str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: str | None = None,
        region: str = "us-east-1",
        models: Collection[str] | None = None,
        context_window: int = 200_000,
    ) -> None:
        """
        Args:
            access_key: The only access key id accepted.
            secret_key: Its secret, with which signatures are recomputed.
            session_token: The ``X-Amz-Security-Token`` required (``None``: none may be sent).
            region: The region requests must be signed for.
            models: Known model ids (``None``: every id is known); others get 400.
            context_window: Prompt tokens (words) beyond which requests get 400.
        """
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.models = set(models) if models is not None else None
        self.context_window = context_window
        super().__init__(api_key=access_key)
        self.app.add_middleware(_RawTarget)

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        return [
            ("POST", "/model/{model_id:path}/converse", self.converse),
            ("POST", "/model/{model_id:path}/converse-stream", self.converse),
        ]

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        headers = {"x-amzn-RequestId": str(uuid.UUID(int=request.seq, version=4))}
        fault = request.fault
        if fault is None or fault.status is None or fault.after_chunks is not None:
            return headers
        if not any(k.lower() == "x-amzn-errortype" for k in fault.headers):
            kind = fault.kind or default_kind(fault.status)
            headers["x-amzn-ErrorType"] = error_type(fault.status, kind) + _NAMESPACE
        return headers

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        usual = _CONTEXT if kind == "context_length" else _MESSAGES[error_type(status, kind)]
        return {"message": message or usual}

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        name = _STREAM_TYPES.get(status, "internalServerException")
        payload: dict[str, Any] = {"message": message or _MESSAGES[error_type(status, kind)]}
        if name == "modelStreamErrorException":
            payload.update(originalStatusCode=500, originalMessage=payload["message"])
        return encode_exception(name, payload)

    # -- SigV4 ------------------------------------------------------------------------------------

    def verify_signature(self, request: RecordedRequest) -> None:
        """Reject ``request`` unless its SigV4 signature is the one its credentials make."""
        auth = request.headers.get("authorization")
        if not auth:
            raise _aws_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        match = _AUTH.match(auth)
        if match is None:
            raise _aws_error(
                400,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                f"parameters. Authorization={auth.split(' ')[0]}",
            )
        key_id, day, region, service, terminal = (match["credential"].split("/") + [""] * 5)[:5]
        if key_id != self.access_key:
            raise _aws_error(
                403, "UnrecognizedClientException", _MESSAGES["UnrecognizedClientException"]
            )
        if region != self.region or terminal != "aws4_request":
            raise _aws_error(
                403, "InvalidSignatureException", "Credential should be scoped to a valid region. "
            )
        if service != "bedrock":
            raise _aws_error(
                403,
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'bedrock'. ",
            )
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise _aws_error(
                403,
                "InvalidSignatureException",
                "'Host' and 'X-Amz-Date' must be SignedHeaders in the AWS Authorization.",
            )
        stamp = request.headers.get("x-amz-date", "")
        try:
            sent = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            raise _aws_error(
                403,
                "InvalidSignatureException",
                f"Date must be in ISO-8601 'basic format'. Got '{stamp}'.",
            ) from None
        now = time.time()
        if abs(now - sent) > SKEW or stamp[:8] != day:
            limit = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - SKEW))
            raise _aws_error(
                403,
                "InvalidSignatureException",
                f"Signature expired: {stamp} is now earlier than {limit} "
                f"({time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))} - 5 min.)",
            )
        token = request.headers.get("x-amz-security-token")
        if token != self.session_token or (token and "x-amz-security-token" not in signed):
            raise _aws_error(
                403, "UnrecognizedClientException", _MESSAGES["UnrecognizedClientException"]
            )
        if not hmac.compare_digest(match["signature"], self._signature(request, signed, stamp)):
            raise _aws_error(403, "InvalidSignatureException", _MISMATCH)

    def _signature(self, request: RecordedRequest, signed: Sequence[str], stamp: str) -> str:
        """The signature botocore computes for ``request`` as received."""
        # botocore ships no type information; its signing API is used untyped.
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
        from botocore.credentials import Credentials  # type: ignore[import-untyped]

        raw_path, raw_query = _raw_target.get()
        url = f"http://{request.headers.get('host', '')}{raw_path.decode()}"
        if raw_query:
            url += "?" + raw_query.decode()
        headers = {name: request.headers.get(name, "") for name in signed}
        aws = AWSRequest(request.method, url, headers=headers, data=request.body)
        aws.context["timestamp"] = stamp
        signer = SigV4Auth(
            Credentials(self.access_key, self.secret_key, self.session_token),
            "bedrock",
            self.region,
        )
        canonical = signer.canonical_request(aws)
        return str(signer.signature(signer.string_to_sign(aws, canonical), aws))

    # -- request checks ---------------------------------------------------------------------------

    def _check(self, body: Mapping[str, Any], model: str) -> int:
        """Validate a Converse request; returns the prompt's token count (words)."""
        if self.models is not None and model not in self.models:
            raise _invalid("model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("first")
        tokens = count_tokens(_text(body.get("system")))
        for j, block in enumerate(body.get("system") or ()):
            if "text" in block and not str(block["text"]).strip():
                raise _invalid("blank", where=f"SystemContentBlock object at system.{j}")
        uses_tools = False
        open_ids: list[str] = []
        for i, message in enumerate(messages):
            role = message.get("role")
            if i == 0 and role != "user":
                raise _invalid("first")
            if role != ("user" if i % 2 == 0 else "assistant"):
                raise _invalid("alternate")
            blocks = message.get("content")
            if not blocks:
                raise _invalid("empty", i=i)
            for j, block in enumerate(blocks):
                if "text" in block and not str(block["text"]).strip():
                    raise _invalid(
                        "blank", where=f"ContentBlock object at messages.{i}.content.{j}"
                    )
            answered = [str(b["toolResult"].get("toolUseId")) for b in blocks if "toolResult" in b]
            missing = [tid for tid in open_ids if tid not in answered]
            if missing:
                raise _invalid("results", i=i, ids=", ".join(missing))
            open_ids = [str(b["toolUse"].get("toolUseId")) for b in blocks if "toolUse" in b]
            uses_tools = uses_tools or bool(open_ids or answered)
            tokens += count_tokens(_text(blocks))
        self._check_config(body, uses_tools)
        if tokens > self.context_window:
            raise SimError(400, _CONTEXT, kind="context_length")
        return tokens

    def _check_config(self, body: Mapping[str, Any], uses_tools: bool) -> None:
        config = body.get("inferenceConfig") or {}
        temperature = config.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            bound = "less than or equal to 1" if temperature > 1 else "greater than or equal to 0"
            rule = f"Member must have value {bound}"
            raise _invalid(
                "constraint", value=temperature, at="inferenceConfig.temperature", rule=rule
            )
        if config.get("maxTokens") is not None and config["maxTokens"] < 1:
            rule = "Member must have value greater than or equal to 1"
            at = "inferenceConfig.maxTokens"
            raise _invalid("constraint", value=config["maxTokens"], at=at, rule=rule)
        tool_config = body.get("toolConfig")
        if uses_tools and tool_config is None:
            raise _invalid("tool_config")
        if tool_config is not None:
            tools = tool_config.get("tools") or []
            if not tools:
                rule = "Member must have length greater than or equal to 1"
                raise _invalid("constraint", value="[]", at="toolConfig.tools", rule=rule)
            names = set()
            for i, tool in enumerate(tools):
                spec = tool.get("toolSpec") or {}
                name = str(spec.get("name", ""))
                if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
                    rule = "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
                    at = f"toolConfig.tools.{i + 1}.member.toolSpec.name"
                    raise _invalid("constraint", value=name, at=at, rule=rule)
                if "json" not in (spec.get("inputSchema") or {}):
                    raise _invalid("schema", i=i)
                names.add(name)
            forced = (tool_config.get("toolChoice") or {}).get("tool")
            if forced is not None and forced.get("name") not in names:
                raise _invalid("choice", name=forced.get("name"))
        text_format = (body.get("outputConfig") or {}).get("textFormat")
        if text_format is not None:
            schema = ((text_format.get("structure") or {}).get("jsonSchema") or {}).get("schema")
            try:
                parsed = json.loads(schema) if isinstance(schema, str) else None
            except ValueError:
                parsed = None
            if text_format.get("type") != "json_schema" or not isinstance(parsed, dict):
                raise _invalid("output")

    # -- converse ---------------------------------------------------------------------------------

    async def converse(self, request: RecordedRequest) -> Response:
        self.verify_signature(request)
        try:
            body = request.json()
        except ValueError:
            raise SimError(400, "The request body is not valid JSON.") from None
        model = request.path_params["model_id"]
        prompt_tokens = self._check(body, model)
        reply = self.next_reply() or self._default_reply(body)
        text, stop = reply.text, _STOP[reply.finish_reason]
        for sequence in (body.get("inferenceConfig") or {}).get("stopSequences") or ():
            if sequence in text:
                text, stop = text[: text.index(sequence)], "stop_sequence"
        content: list[dict[str, Any]] = [{"text": text}] if text else []
        for i, call in enumerate(reply.tool_calls):
            use_id = (
                call.id or f"tooluse_{hashlib.sha1(f'{request.seq}:{i}'.encode()).hexdigest()[:22]}"
            )
            content.append(
                {"toolUse": {"toolUseId": use_id, "name": call.name, "input": dict(call.arguments)}}
            )
        usage = _usage(reply, prompt_tokens)
        if request.path.endswith("/converse-stream"):
            events = _events(content, stop, usage)
            return self.event_stream(request, events, headers={"content-type": EVENTSTREAM})
        result = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 42},
        }
        return self.json_response(request, result)

    def _default_reply(self, body: Mapping[str, Any]) -> Reply:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        last: Mapping[str, Any] = users[-1] if users else {}
        said = _text(last.get("content"))
        tool_config = body.get("toolConfig") or {}
        specs = {
            t["toolSpec"]["name"]: t["toolSpec"]
            for t in tool_config.get("tools") or ()
            if "toolSpec" in t
        }
        choice = tool_config.get("toolChoice") or {}
        forced = (choice.get("tool") or {}).get("name") or (
            next(iter(specs)) if "any" in choice else None
        )
        if forced is not None:
            schema = specs[forced]["inputSchema"]["json"]
            return Reply(tool_calls=[ScriptedToolCall(forced, instance_of(schema, said))])
        text_format = (body.get("outputConfig") or {}).get("textFormat")
        if text_format is not None:
            schema = json.loads(text_format["structure"]["jsonSchema"]["schema"])
            value = instance_of(schema, said) if schema.get("properties") else {"echo": said}
            return Reply(text=json.dumps(value))
        return Reply(text=f"You said: {said}")


def _usage(reply: Reply, prompt_words: int) -> dict[str, Any]:
    """Bedrock's usage: input excludes cache reads and writes; output includes reasoning."""
    uncached = reply.input_tokens if reply.input_tokens is not None else prompt_words
    visible = reply.output_tokens
    if visible is None:
        visible = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(c.arguments)) for c in reply.tool_calls
        )
    output = visible + reply.reasoning_tokens
    usage: dict[str, Any] = {
        "inputTokens": uncached,
        "outputTokens": output,
        "totalTokens": uncached + output + reply.cache_read_tokens + reply.cache_write_tokens,
    }
    if reply.cache_read_tokens or reply.cache_write_tokens:
        usage["cacheReadInputTokens"] = reply.cache_read_tokens
        usage["cacheWriteInputTokens"] = reply.cache_write_tokens
    return usage


def _events(
    content: Sequence[Mapping[str, Any]], stop: str, usage: Mapping[str, Any]
) -> Iterator[bytes]:
    """The ConverseStream messages that deliver ``content``."""
    yield encode_event("messageStart", {"role": "assistant"})
    for index, block in enumerate(content):
        if "text" in block:
            for piece in _pieces(block["text"]):
                yield encode_event(
                    "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}
                )
        else:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            yield encode_event("contentBlockStart", {"contentBlockIndex": index, "start": start})
            for piece in _pieces(json.dumps(use["input"]), 8):
                delta = {"toolUse": {"input": piece}}
                yield encode_event(
                    "contentBlockDelta", {"contentBlockIndex": index, "delta": delta}
                )
        yield encode_event("contentBlockStop", {"contentBlockIndex": index})
    yield encode_event("messageStop", {"stopReason": stop})
    yield encode_event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})
