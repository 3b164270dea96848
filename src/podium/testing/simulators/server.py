"""The loopback server every API simulator runs on, with per-test fault injection.

A simulator is a :class:`Simulator` subclass: it lists its routes (handlers that take the
:class:`RecordedRequest` and return a Starlette response) and renders errors in its API's shape.
The base class serves them over real HTTP with uvicorn on ``127.0.0.1`` at an ephemeral port, in a
background thread with its own event loop — so one server can outlive many pytest event loops and
serve synchronous SDK clients too. It records every request and applies the faults a test injects::

    with MySimulator(api_key="sk-test") as sim:          # or: async with MySimulator() as sim:
        sim.inject(Fault(status=429, retry_after=2))     # the next request gets a 429
        sim.inject(Fault(after_chunks=3))                # the next stream is cut after 3 chunks
        sim.script(Reply(text="hello"))                  # the next completion says "hello"
        ... point a client at sim.url ...
        sim.requests[-1].headers["authorization"]        # what the client really sent

A subclass implements :meth:`Simulator.routes`, :meth:`Simulator.error_body` and (for APIs that
stream) :meth:`Simulator.stream_error`; optionally :meth:`Simulator.response_headers`. A handler
rejects a request by raising :class:`SimError` and streams with :meth:`Simulator.event_stream`
(which applies mid-stream faults). Neutral helpers shared by simulators live here too:
:class:`Reply` (a scripted answer), :func:`count_tokens`, :func:`instance_of` (a JSON value that
satisfies a schema) and :func:`default_kind`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "context_length",
    "content_filter",
    "rate_limit",
    "server",
    "overloaded",
]
"""Provider-neutral error kinds; each simulator renders them in its API's own error shape."""


_generation: contextvars.ContextVar[int] = contextvars.ContextVar(
    "simulator_generation", default=-1
)
"""The reset generation a request arrived in (set per request by the endpoint)."""


def default_kind(status: int) -> ErrorKind:
    """The error kind an API reports for an HTTP status."""
    kinds: dict[int, ErrorKind] = {
        401: "authentication",
        403: "permission",
        404: "not_found",
        429: "rate_limit",
        503: "overloaded",
        529: "overloaded",
    }
    if status in kinds:
        return kinds[status]
    return "server" if status >= 500 else "invalid_request"


@dataclass(frozen=True)
class Fault:
    """A failure to inject into the next matching request(s).

    Without ``after_chunks`` the fault applies before the response starts: wait ``delay``
    seconds, then hang (``hang``) or answer with the error ``status`` (or, with neither, serve
    the request normally — a slow response). With ``after_chunks`` it applies mid-stream (to
    streamed responses only), after that many chunks: send the API's in-stream error event for
    ``status``, or hang (``hang``), or cut the connection (``abort``: a reset without the
    chunked terminator; ``abort=False``: a clean end of body) — never the terminal event.
    """

    status: int | None = None
    """HTTP status of the error response (or of the in-stream error event)."""
    kind: ErrorKind | None = None
    """The error kind; ``None`` means the usual one for ``status`` (see :func:`default_kind`)."""
    message: str | None = None
    """The error message; ``None`` lets the simulator use its API's usual wording."""
    retry_after: float | str | None = None
    """Sent as the ``Retry-After`` header (seconds, or an HTTP date)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers (e.g. ``retry-after-ms``)."""
    delay: float = 0.0
    """Seconds to wait before responding."""
    hang: bool = False
    """Never respond (until the simulator stops): the client must time out."""
    after_chunks: int | None = None
    """Apply the fault mid-stream after this many chunks instead of before the response."""
    abort: bool = True
    """Mid-stream cut: reset the connection (``True``) or end the body cleanly (``False``)."""
    path: str | None = None
    """Only requests whose path contains this string match; ``None`` matches every request."""
    times: int | None = 1
    """How many matching requests this fault applies to; ``None`` means all of them."""
    chance: float = 1.0
    """The probability that a matching request gets the fault, drawn from the simulator's seeded
    generator (reproducible across runs); a request it spares does not use it up."""


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call a scripted reply makes."""

    name: str
    arguments: Mapping[str, Any]
    id: str | None = None
    """``None`` lets the simulator make an id in its API's style."""


@dataclass(frozen=True)
class Reply:
    """A scripted completion. Token counts use Podium's convention (each token counted once);
    each simulator renders them the way its API reports usage. ``None`` counts: the simulator
    counts words (:func:`count_tokens`)."""

    text: str = ""
    tool_calls: Sequence[ScriptedToolCall] = ()
    finish: Literal["stop", "length", "tool_calls", "content_filter"] | None = None
    """``None``: ``tool_calls`` when the reply calls tools, else ``stop``."""
    input_tokens: int | None = None
    """Prompt tokens that were neither read from nor written to the cache."""
    output_tokens: int | None = None
    """Visible output tokens (reasoning excluded)."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None
    """The model the response says served it; ``None``: the simulator's usual answer."""

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool_calls else "stop")


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the simulator received it."""

    seq: int
    """1 for the first request the simulator received, then 2, …"""
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes
    path_params: Mapping[str, str] = field(default_factory=dict)
    fault: Fault | None = None
    """The fault injected into this request, if any."""

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.body)


class SimError(Exception):
    """Raised by a handler to answer with the API's error response."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        kind: ErrorKind | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.kind: ErrorKind = kind or default_kind(status)
        self.message = message
        """``None``: the API's usual wording for this kind of error."""
        super().__init__(message or self.kind)
        self.param = param
        self.headers = dict(headers or {})


Handler = Callable[[RecordedRequest], Awaitable[Response]]


class _ConnectionCut(Exception):
    """Raised inside a streamed body to make uvicorn drop the connection (a simulated cut)."""


class _QuietCuts(logging.Filter):
    """Keeps uvicorn from logging the tracebacks of deliberate connection cuts."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _is_cut(exc)


def _is_cut(exc: BaseException | None) -> bool:
    if isinstance(exc, _ConnectionCut):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cut(e) for e in exc.exceptions)
    return exc is not None and _is_cut(exc.__cause__ or exc.__context__)


_uvicorn_errors = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietCuts) for f in _uvicorn_errors.filters):
    _uvicorn_errors.addFilter(_QuietCuts())


def count_tokens(text: str) -> int:
    """The simulators' deterministic token count: whitespace-separated words."""
    return len(text.split())


def instance_of(schema: Mapping[str, Any], text: str = "") -> Any:
    """A JSON value that satisfies the (simple) JSON Schema ``schema``; strings are ``text``
    and a free-form object is ``{"echo": text}``."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            return instance_of(schema[union][0], text)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        if not props and schema.get("additionalProperties", True) is not False:
            return {"echo": text}  # a free-form object (JSON mode)
        return {name: instance_of(sub, text) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        return [instance_of(items, text) for _ in range(int(schema.get("minItems", 1)))]
    values: dict[str, Any] = {"string": text, "integer": 0, "number": 0, "boolean": True}
    return values.get(str(kind))


class Simulator:
    """Base of the API simulators: a loopback HTTP server with recording and fault injection."""

    name = "simulator"

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        """The key clients must present (``None``: any key, or none, is accepted)."""
        self.requests: list[RecordedRequest] = []
        """Every request received, in order."""
        self._faults: list[tuple[Fault, list[int]]] = []
        self._rng = random.Random(0)
        self._replies: list[Reply] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._port = 0
        self.app = Starlette(routes=[self._route(m, p, h) for m, p, h in self.routes()])

    # -- what a subclass provides ---------------------------------------------------------------

    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        """``(method, path, handler)`` triples; paths may hold ``{params}``."""
        raise NotImplementedError

    def error_body(
        self, status: int, kind: ErrorKind, message: str | None, param: str | None = None
    ) -> Any:
        """The JSON error body the API sends (``message=None``: the API's usual wording)."""
        raise NotImplementedError

    def stream_error(self, status: int, kind: ErrorKind, message: str | None) -> bytes:
        """The bytes of the API's in-stream error event."""
        raise NotImplementedError

    def response_headers(self, request: RecordedRequest) -> dict[str, str]:
        """Headers on every response to ``request`` (e.g. the request id)."""
        return {}

    # -- what tests use -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server must be started)."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return f"http://127.0.0.1:{self._port}"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each request takes the first queued fault that matches it."""
        with self._lock:
            self._faults.extend((f, [0]) for f in faults)

    def script(self, *replies: Reply) -> None:
        """Queue replies; each completion request takes the next (then the default resumes)."""
        with self._lock:
            self._replies.extend(replies)

    def next_reply(self) -> Reply | None:
        """The next scripted reply, if any (for handlers). A request that arrived before the
        last :meth:`reset` (a slow one a client gave up on) never takes a later test's reply."""
        with self._lock:
            if _generation.get() != self._generation:
                return None
            return self._replies.pop(0) if self._replies else None

    def reset(self) -> None:
        """Forget recorded requests, queued faults and scripted replies."""
        with self._lock:
            self._generation += 1
            self.requests.clear()
            self._faults.clear()
            self._rng = random.Random(0)
            self._replies.clear()

    def start(self) -> None:
        """Start serving (returns once the server accepts connections)."""
        if self._thread is not None:
            return
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP; without it every reused keep-alive connection waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # leave the process's logging configuration alone
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock),), name=self.name, daemon=True
        )
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        """Release hanging requests, stop serving and join the server thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None
        self._port = 0
        self._started.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what handlers use ----------------------------------------------------------------------

    def event_stream(
        self,
        request: RecordedRequest,
        chunks: Iterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> StreamingResponse:
        """A ``text/event-stream`` response of ``chunks`` (each sent as its own HTTP chunk),
        with the request's mid-stream fault applied."""
        fault = request.fault if request.fault and request.fault.after_chunks is not None else None

        async def body() -> AsyncIterator[bytes]:
            for sent, chunk in enumerate(chunks):
                if fault is not None and sent == fault.after_chunks:
                    async for tail in self._mid_stream_fault(fault):
                        yield tail
                    return
                yield chunk
                await asyncio.sleep(0)  # let each event leave as its own chunk

        all_headers = {"cache-control": "no-cache", **self.response_headers(request)}
        return StreamingResponse(
            body(), media_type="text/event-stream", headers={**all_headers, **(headers or {})}
        )

    def json_response(
        self, request: RecordedRequest, body: Any, status: int = 200, **headers: str
    ) -> JSONResponse:
        """A JSON response carrying the API's usual headers."""
        return JSONResponse(body, status, headers={**self.response_headers(request), **headers})

    # -- machinery ------------------------------------------------------------------------------

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        server, config = self._server, self._server.config
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._started.set()
        await self._stopping.wait()
        await server.shutdown(sockets=[sock])

    async def _mid_stream_fault(self, fault: Fault) -> AsyncIterator[bytes]:
        await asyncio.sleep(fault.delay)
        if fault.status is not None:
            kind = fault.kind or default_kind(fault.status)
            yield self.stream_error(fault.status, kind, fault.message)
            return
        if fault.hang:
            await self._hang()
        if fault.abort:
            raise _ConnectionCut

    async def _hang(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()
        raise _ConnectionCut

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, (fault, used) in enumerate(self._faults):
                if fault.path is not None and fault.path not in path:
                    continue
                if fault.chance < 1.0 and self._rng.random() >= fault.chance:
                    continue
                used[0] += 1
                if fault.times is not None and used[0] >= fault.times:
                    del self._faults[i]
                return fault
        return None

    def _route(self, method: str, path: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            _generation.set(self._generation)
            body = await request.body()
            fault = self._take_fault(request.url.path)
            with self._lock:
                recorded = RecordedRequest(
                    seq=len(self.requests) + 1,
                    method=request.method,
                    path=request.url.path,
                    query=dict(request.query_params),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    path_params={k: str(v) for k, v in request.path_params.items()},
                    fault=fault,
                )
                self.requests.append(recorded)
            if fault is not None and fault.after_chunks is None:
                await asyncio.sleep(fault.delay)
                if fault.hang:
                    await self._hang()
                if fault.status is not None:
                    error = SimError(fault.status, fault.message, kind=fault.kind)
                    return self._error(recorded, error, fault)
            try:
                return await handler(recorded)
            except SimError as error:
                return self._error(recorded, error, None)

        return Route(path, endpoint, methods=[method])

    def _error(self, request: RecordedRequest, error: SimError, fault: Fault | None) -> Response:
        headers = {**self.response_headers(request), **error.headers}
        if fault is not None:
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            headers.update(fault.headers)
        body = self.error_body(error.status, error.kind, error.message, error.param)
        return JSONResponse(body, error.status, headers=headers)
