"""The OpenAI-compatible HTTP gateway: ``/v1/*`` routes over the call path.

Any OpenAI client (the official SDKs, LangChain's ``ChatOpenAI``, plain HTTP) talks to Podium by
setting its base URL to ``http://<host>:<port>/v1`` and its API key to a Podium client key (or
the admin token). Every route needs the ``models:call`` permission:

- ``POST /v1/chat/completions``: a ``chat.completion``, or (``stream: true``) server-sent
  ``chat.completion.chunk`` events ending in ``data: [DONE]``.
- ``POST /v1/embeddings``: vectors, as floats or ``base64``.
- ``POST /v1/moderations``: one result per input (text, or inline ``data:`` images).
- ``GET /v1/models`` and ``GET /v1/models/{id}``: the model groups and the reachable catalog
  models (ids may hold ``/``: ``openai/gpt-4o-mini``).

The wire format and its converters are :mod:`podium.gateway.openai_wire`; this module only
authenticates, names the payer, calls the :class:`~podium.gateway.pipeline.Gateway` and writes
the answer.

**Who pays.** A call is charged to the key's attribution (team, project, use case). A principal
with no attribution of its own (the admin token) may name one with the ``x-podium-team``,
``x-podium-project`` and ``x-podium-use-case`` headers, under the ``default`` organisation; a
key that names another team (or project, use case) than its own is refused with a 403: a key
cannot charge another team.

**Receipts.** Every answer carries ``x-request-id`` (the gateway's id, also the completion's
``id`` and the ledger row's); answers that reached a model carry ``x-podium-model`` (the catalog
model that served), ``x-podium-deployment``, ``x-podium-cost`` (USD, exact decimal text) and
``x-podium-cache`` (``exact``, ``semantic`` or ``miss``). A completion's ``model`` field is the
model as the provider named it (e.g. a dated snapshot). A stream's cost is known only at its
end, after the headers left: it is in the ledger under the request id.

**Data class.** A request names its data class (``public``, ``internal``, ``confidential``,
``restricted``) with the ``x-podium-classification`` header or ``metadata.classification``; the
policy decides which destinations it may reach (``confidential``: local models only, by default)
and how personal data in it is handled (redacted into placeholders before a hosted model, by
default, and put back in the answer).

**Streams.** Refusals and failover happen before the first byte, so they are ordinary error
responses. A stream that breaks after it started ends with an error event
(``data: {"error": {...}}``) and no ``[DONE]``: clients raise instead of taking a truncated
answer for a complete one. A client that leaves mid-stream still gets its call recorded and
charged for what was produced.

**Errors** have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, and these
statuses (:func:`~podium.gateway.openai_errors.wire_error` maps them):

======  =====================  =======================  ========================================
status  type                   code                     when
======  =====================  =======================  ========================================
400     invalid_request_error  invalid_value            a bad body or parameter value
400     invalid_request_error  unsupported_parameter    ``n`` > 1, logprobs, audio, token-array
                                                        input… (the gateway cannot)
400     invalid_request_error  unsupported_capability   the model cannot do that
                                                        (``CapabilityUnsupported``)
400     invalid_request_error  context_length_exceeded  the prompt does not fit
                                                        (``ContextLengthExceeded``)
400     invalid_request_error  content_filter           the provider's policy refused it
                                                        (``ContentRefused``)
400     invalid_request_error  invalid_value            the provider refused it as invalid
                                                        (``BadModelRequest``)
401     invalid_request_error  invalid_api_key          no key, or an unknown one
                                                        (``BearerAuth``)
402     insufficient_quota     budget_exceeded          a hard budget cannot take the call's
                                                        worst case (``BudgetExceeded``): the
                                                        message names the budget, what remains
                                                        and when its window resets;
                                                        ``Retry-After`` is that reset
403     permission_error       permission_denied        the key lacks ``models:call``, or names
                                                        another team than its own
403     permission_error       policy_denied            the central policy refuses the call
                                                        (``PolicyDenied``): the model for this
                                                        team, the data class's destinations,
                                                        a ceiling, or personal data the policy
                                                        blocks; the message names the policy,
                                                        its version and the rule
404     invalid_request_error  model_not_found          no such model or group
                                                        (``ModelNotFound``, with a did-you-mean)
404     invalid_request_error  not_found                no such endpoint under ``/v1``
413     invalid_request_error  request_too_large        a body over 1 MiB (``BodySizeLimit``)
429     rate_limit_error       rate_limit_exceeded      a Podium rate limit
                                                        (``RateLimitExceeded``), or the
                                                        provider's after the gateway's retries
                                                        and fallbacks (``RateLimited``);
                                                        ``Retry-After`` when known
500     server_error           configuration_error      the gateway is misconfigured
                                                        (``ConfigError``); ``null``: a bug
502     upstream_error         upstream_error           every deployment failed
                                                        (``CallFailed``); the message counts the
                                                        attempts; also
                                                        ``upstream_authentication_failed`` (the
                                                        gateway's provider key) and
                                                        ``upstream_model_not_found``
503     service_unavailable    no_deployment_available  every deployment was excluded
                                                        (``NoDeploymentAvailable``);
                                                        ``Retry-After`` when every exclusion
                                                        passes by itself (an open breaker's
                                                        cooldown)
503     service_unavailable    model_unavailable        a local model's package is not installed
                                                        on the server
503     service_unavailable    audit_unavailable        the call's audit record could not be
                                                        written: the call fails closed
504     timeout                provider_timeout         no answer in time (``ProviderTimeout``)
======  =====================  =======================  ========================================

An exhausted budget is a **402, not a 429**: the OpenAI SDKs retry every 429 (and 5xx) on their
own, and a refused budget must not be retried blindly — it stays refused until its window
resets. Refusals that waiting cannot fix also carry ``x-should-retry: false``, which the SDKs
obey. Only these routes answer in this shape; ``/api/*`` keeps Podium's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.api.auth import Authenticator, Principal, admit, permitted, require
from podium.api.errors import ApiError
from podium.api.limits import too_large_message
from podium.api.state import GatewayDep, get_gateway, get_state
from podium.errors import PodiumError, ProviderTimeout
from podium.finops.ledger import Attribution
from podium.gateway import openai_answers as answers
from podium.gateway import openai_errors as errors
from podium.gateway import openai_wire as wire
from podium.gateway.pipeline import (
    Caller,
    CallOptions,
    CallRecord,
    ChatStream,
    Gateway,
    new_request_id,
)
from podium.gateway.routing import NoDeploymentAvailable
from podium.models.base import Capability, ChatChunk

log = logging.getLogger("podium.gateway.http")

ATTRIBUTION_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"x-podium-team": "team", "x-podium-project": "project", "x-podium-use-case": "use_case"}
)
"""Headers that name who pays, honoured for principals without an attribution (the admin)."""


# -- errors in OpenAI's shape, for these routes only ----------------------------------------------


def _gateway_of(request: Request) -> Gateway | None:
    try:
        return get_state(request).gateway
    except RuntimeError:
        return None


def _retry_in(gateway: Gateway | None, exc: NoDeploymentAvailable) -> float | None:
    """Seconds until one of the excluded deployments' open breakers lets calls through."""
    if gateway is None or gateway.resilience.breakers is None:
        return None
    excluded = {e.deployment for e in exc.excluded}
    waits = [
        s.retry_in_s
        for s in gateway.resilience.breakers.snapshots()
        if s.name in excluded and s.retry_in_s is not None
    ]
    return min(waits, default=None)


def error_response(request: Request, exc: BaseException) -> JSONResponse:
    """The OpenAI-shaped answer to anything a ``/v1`` route raised."""
    return _error_answer(
        exc,
        _gateway_of(request),
        f"{request.method} {request.url.path}",
        getattr(request.state, "request_id", None),
    )


def _error_answer(
    exc: BaseException, gateway: Gateway | None, what: str, request_id: str | None
) -> JSONResponse:
    """The OpenAI-shaped answer to ``exc``, raised by the request ``what`` (method and path,
    for the log); ``request_id`` when the call was given one already."""
    if isinstance(exc, RequestValidationError):
        error = errors.wire_error(wire.validation_error(exc.errors()), now=0.0)
    elif isinstance(exc, ApiError):
        error = errors.status_error(exc.status, exc.message)
    elif isinstance(exc, StarletteHTTPException):
        error = errors.status_error(exc.status_code, str(exc.detail))
    else:
        now = gateway.clock.now() if gateway is not None else 0.0
        retry_in = _retry_in(gateway, exc) if isinstance(exc, NoDeploymentAvailable) else None
        error = errors.wire_error(exc, now=now, retry_in=retry_in)
        if not isinstance(exc, PodiumError):
            log.error("%s failed", what, exc_info=exc)
        elif error.status >= 500:
            log.warning("%s: %s", what, exc)
    headers = error.headers()
    # Every answer has a request id, even one refused before the call was given one.
    headers["x-request-id"] = request_id or new_request_id()
    if isinstance(exc, ApiError | StarletteHTTPException):
        headers.update(exc.headers or {})
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class OpenAIRoute(APIRoute):
    """A route whose failures (validation, permissions, the call path) answer in OpenAI's
    error shape, whatever the app's own error handlers do."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return error_response(request, exc)

        return handle


router = APIRouter(prefix="/v1", tags=["gateway"], route_class=OpenAIRoute)

CallerDep = Annotated[Principal, require("models:call")]


def podium_headers(request: Request) -> dict[str, str]:
    """The request's ``x-podium-*`` headers (the first of each name), which say who pays and the
    data class."""
    return _scan(request.scope["headers"])[2]


def _scan(raw: Iterable[tuple[bytes, bytes]]) -> tuple[str, bytes | None, dict[str, str]]:
    """In one pass over a request's raw headers, the first of each name (as Starlette's
    ``Headers.get`` reads them): ``Authorization`` (``""`` without one), ``Content-Length`` and
    the :func:`podium_headers`."""
    authorization: str | None = None
    length = None
    found: dict[str, str] = {}
    for name, value in raw:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-length":
            if length is None:
                length = value
        elif name.startswith(b"x-podium-"):
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return authorization or "", length, found


def caller_of(principal: Principal, headers: Mapping[str, str]) -> Caller:
    """Who is calling and on whose account (see "Who pays" in the module docstring), from the
    request's :func:`podium_headers`.

    Raises:
        ApiError: 403 when a principal with its own attribution names another one.
    """
    asked = {name: headers[h] for h, name in ATTRIBUTION_HEADERS.items() if headers.get(h)}
    own = principal.attribution
    if own is None:
        return Caller(Attribution(org="default", **asked), subject=principal.subject)
    for name, value in asked.items():
        mine = getattr(own, name)
        if value != mine:
            header = next(h for h, n in ATTRIBUTION_HEADERS.items() if n == name)
            raise ApiError(
                403,
                f"this key is charged to {name} {mine!r}; it cannot charge {value!r} "
                f"({header}): a key cannot charge another team",
            )
    return Caller(own, subject=principal.subject)


CLASSIFICATION_HEADER: Final = "x-podium-classification"
"""The request's data class (``public``, ``internal``, ``confidential``, ``restricted``); a chat
request may also say it as ``metadata.classification``."""


def _classification(
    headers: Mapping[str, str], tags: Mapping[str, str] | None = None
) -> str | None:
    return headers.get(CLASSIFICATION_HEADER) or (tags or {}).get("classification")


def _start(request: Request, gateway: Gateway) -> str:
    request_id = new_request_id(gateway.clock.now())
    request.state.request_id = request_id
    return request_id


def receipt(record: CallRecord) -> dict[str, str]:
    """The ``x-podium-*`` headers of a finished call."""
    headers = {
        "x-request-id": record.request_id,
        "x-podium-cost": answers.cost_header(record.cost),
        "x-podium-cache": record.cache or "miss",
    }
    if record.served:
        headers["x-podium-model"] = record.served
    if record.deployment:
        headers["x-podium-deployment"] = record.deployment
    return headers


def _created(gateway: Gateway) -> int:
    return math.floor(gateway.clock.now())


# -- chat -----------------------------------------------------------------------------------------


def _stream_headers(stream: ChatStream, request_id: str) -> dict[str, str]:
    headers = {"x-request-id": request_id, "cache-control": "no-cache", "x-accel-buffering": "no"}
    record = stream.record  # set already when a cache hit answers
    deployment = stream.deployment
    if deployment is not None:
        headers["x-podium-deployment"] = deployment.id
        headers["x-podium-model"] = deployment.model
    elif stream.model_served:
        headers["x-podium-model"] = stream.model_served
    headers["x-podium-cache"] = (record.cache if record is not None else None) or "miss"
    if record is not None:
        headers["x-podium-cost"] = answers.cost_header(record.cost)
    return headers


_END = object()
"""Marks the end of a pumped stream."""


async def _pump(stream: ChatStream, queue: asyncio.Queue[object]) -> None:
    """Read the stream into ``queue``: chunks, then ``_END`` or the error that ended it."""
    chunks = aiter(stream)
    try:
        async for chunk in chunks:
            await queue.put(chunk)
        await queue.put(_END)
    except Exception as exc:
        await queue.put(exc)
    finally:
        # Cancelled while a chunk waited for room: close the iteration itself, so the stream
        # records (and charges) the text it produced.
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _events(stream: ChatStream, writer: answers.ChunkWriter) -> AsyncIterator[bytes]:
    """The SSE body: the chunks, then ``[DONE]`` — or an error event and no ``[DONE]``.

    The stream is read by its own task. When the client goes away, Starlette cancels this
    body, and its cancellation would strike every await of the call's record stage (settling
    the budget hold, pricing, the ledger row) — a provider-billed answer would go unrecorded.
    Instead the reading task is cancelled once, and the record stage runs to its end.
    """
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=8)
    reader = asyncio.create_task(_pump(stream, queue), name=f"stream {stream.request_id}")
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, ChatChunk)
            for event in writer.events(item):
                yield event
        if not writer.finished:
            raise ProviderTimeout("the stream ended before its final chunk")
        yield answers.DONE
    except Exception as exc:
        error = errors.wire_error(exc, now=stream.gateway.clock.now())
        if isinstance(exc, PodiumError):
            log.warning("stream %s broke after it started: %s", stream.request_id, exc)
        else:
            log.error("stream %s failed", stream.request_id, exc_info=exc)
        yield answers.sse(error.body())
    finally:
        reader.cancel()  # a no-op once the stream ended
        with anyio.CancelScope(shield=True):
            await asyncio.gather(reader, return_exceptions=True)
            await stream.aclose()  # records the call if nothing did (a no-op once recorded)


@router.post(
    "/chat/completions",
    response_model=answers.ChatCompletion,
    summary="Create a chat completion (OpenAI-compatible)",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(
    body: wire.ChatCompletionCreate,
    request: Request,
    principal: CallerDep,
) -> Response:
    """A chat completion, or (``stream: true``) its server-sent chunks."""
    gateway = await get_gateway(request)  # not a dependency: FastAPI solves each for ~20 µs
    request_id = _start(request, gateway)
    answer = await complete(gateway, principal, body, podium_headers(request), request_id)
    if isinstance(answer, Completion):
        return Response(answer.body, headers=answer.receipt, media_type="application/json")
    return answer


class Completion:
    """A finished (not streamed) chat completion's answer: its JSON and receipt headers. An
    ASGI app that sends them as two messages, without the work of building a ``Response``."""

    __slots__ = ("body", "receipt")

    def __init__(self, body: bytes, receipt: dict[str, str]) -> None:
        self.body = body
        self.receipt = receipt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
        ]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.receipt.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def complete(
    gateway: Gateway,
    principal: Principal,
    body: wire.ChatCompletionCreate,
    headers: Mapping[str, str],
    request_id: str,
) -> Completion | StreamingResponse:
    """Answer a validated chat completion request of an admitted caller, given its
    :func:`podium_headers` (the route's body, and :class:`ChatFastPath`'s)."""
    caller = caller_of(principal, headers)
    chat, options = wire.to_chat_request(body, request_id)
    classification = _classification(headers, options.tags)
    if classification is not None:
        options = dataclasses.replace(options, classification=classification)
    if body.stream:
        stream = gateway.stream(chat, caller, options)
        await stream.start()  # refusals and failover before any byte: ordinary error answers
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        writer = answers.ChunkWriter(
            request_id,
            _created(gateway),
            stream.model_served or chat.model,
            include_usage=include_usage,
        )
        return StreamingResponse(
            _events(stream, writer),
            media_type="text/event-stream",
            headers=_stream_headers(stream, request_id),
        )
    served = await gateway.chat(chat, caller, options)
    data = answers.chat_completion_json(
        served.response, request_id=request_id, created=_created(gateway)
    )
    return Completion(data, receipt(served.record))


CHAT_PATH: Final = "/v1/chat/completions"


class ChatFastPath:
    """The outermost ASGI layer of the app (see :class:`~podium.api.app.PodiumAPI`): it serves
    ``POST /v1/chat/completions``, the gateway's hot route, itself, and passes every other
    request on.

    It does what the stack under it would — the bearer token (:func:`~podium.api.auth.admit`),
    the body limit, validation into :class:`~podium.gateway.openai_wire.ChatCompletionCreate`
    (straight from the JSON bytes), the ``models:call`` permission, OpenAI-shaped errors — and
    calls the route's own :func:`complete`, without FastAPI's routing, dependency solving,
    middleware and exception layers, reading the headers it needs in one pass: ~0.5 ms of CPU
    a call on the 2-core benchmark machine, a third of what the gateway added. The FastAPI
    route stays: it documents the operation in the OpenAPI spec and serves apps that include
    :data:`router` without this layer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        max_bytes: int,
        gateway: Callable[[], Gateway | None],
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_bytes = max_bytes
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        authorization, declared, headers = _scan(scope["headers"])
        refusal = admit(self.authenticator, scope, authorization)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        gateway = self.gateway()
        request_id: str | None = None
        answer: ASGIApp
        try:
            if gateway is None:
                raise RuntimeError("the API is not started: run the app's lifespan")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise ApiError(413, too_large_message(self.max_bytes))
            body = await self._body(receive)
            if body is None:
                return  # the client left before it finished sending
            principal = permitted(scope, "models:call")
            request_id = new_request_id(gateway.clock.now())
            answer = await complete(gateway, principal, _chat_body(body), headers, request_id)
        except Exception as exc:
            answer = _error_answer(exc, gateway, f"POST {CHAT_PATH}", request_id)
        await answer(scope, receive, send)

    async def _body(self, receive: Receive) -> bytes | None:
        """The request body; ``None`` when the client disconnected first.

        Raises:
            ApiError: 413 when it grows over the limit as it arrives.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise ApiError(413, too_large_message(self.max_bytes))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _chat_body(body: bytes) -> wire.ChatCompletionCreate:
    """The request validated from its JSON bytes.

    Raises:
        RequestValidationError: As FastAPI raises it (locations under ``body``).
    """
    if not body.strip():  # as FastAPI reports it: the body, missing
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "missing"}])
    try:
        return wire.ChatCompletionCreate.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


# -- embeddings and moderation --------------------------------------------------------------------


@router.post("/embeddings", response_model=answers.EmbeddingList, summary="Create embeddings")
async def embeddings(
    body: wire.EmbeddingCreate, request: Request, gateway: GatewayDep, principal: CallerDep
) -> Response:
    """Vectors for one text or many, in request order."""
    request_id = _start(request, gateway)
    headers = podium_headers(request)
    served = await gateway.embed(
        wire.to_embed_request(body),
        caller_of(principal, headers),
        CallOptions(request_id=request_id, classification=_classification(headers)),
    )
    answer = answers.embedding_list(served.response, body.encoding_format)
    return JSONResponse(answer.model_dump(mode="json"), headers=receipt(served.record))


def default_moderation_model(gateway: Gateway) -> str:
    """The first listed model that moderates text (``POST /v1/moderations`` without a model)."""
    for entry in gateway.listing():
        if Capability.MODERATE_TEXT.value in entry.capabilities:
            return entry.id
    raise errors.InvalidRequest(
        "no moderation model is available: name one in 'model' (GET /v1/models)", param="model"
    )


@router.post("/moderations", response_model=answers.ModerationList, summary="Moderate text")
async def moderations(
    body: wire.ModerationCreate, request: Request, gateway: GatewayDep, principal: CallerDep
) -> Response:
    """One moderation result per input (text, or an inline ``data:image/...`` URL)."""
    request_id = _start(request, gateway)
    headers = podium_headers(request)
    caller = caller_of(principal, headers)
    inputs = wire.to_moderation_request(body, body.model or default_moderation_model(gateway))
    options = CallOptions(request_id=request_id, classification=_classification(headers))
    served = await gateway.moderate(inputs.request, caller, options)
    answer = answers.moderation_list(served.response, inputs, request_id=request_id)
    return JSONResponse(answer.model_dump(mode="json"), headers=receipt(served.record))


# -- models ---------------------------------------------------------------------------------------


@router.get("/models", response_model=answers.ModelList, summary="List the callable models")
async def list_models(gateway: GatewayDep, _: CallerDep) -> answers.ModelList:
    """The configured model groups, the local models and the hosted models that have a key."""
    return answers.ModelList(data=[answers.model_object(e) for e in gateway.listing()])


@router.get("/models/{model_id:path}", response_model=answers.ModelObject, summary="One model")
async def get_model(model_id: str, gateway: GatewayDep, _: CallerDep) -> answers.ModelObject:
    """One model group or model, by name or alias (404 with a did-you-mean otherwise)."""
    listed = {e.id: e for e in gateway.listing()}
    if model_id in listed:
        return answers.model_object(listed[model_id])
    group = gateway.group(model_id)  # ModelNotFound (404) names the nearest names
    if group.name in listed:
        return answers.model_object(listed[group.name])
    infos = [d.info for d in group.deployments]
    return answers.ModelObject(
        id=group.name,
        owned_by=infos[0].provider if len(group.deployments) == 1 else "podium",
        kind="model" if len(group.deployments) == 1 else "group",
        capabilities=sorted({str(c) for i in infos for c in i.capabilities}),
        context_window=max((d.context_window or 0 for d in group.deployments), default=0) or None,
    )


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
async def unknown_endpoint(request: Request, _: CallerDep) -> Response:
    """Anything else under ``/v1``: an OpenAI-shaped 404 naming what is served."""
    raise ApiError(
        404,
        f"unknown endpoint {request.method} {request.url.path}; the gateway serves POST "
        "/v1/chat/completions, POST /v1/embeddings, POST /v1/moderations and GET /v1/models",
    )
