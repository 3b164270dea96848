"""HTTP/1.1 POSTs over pooled keep-alive connections: asyncio protocols and ``httptools``' parser.

The gateway's hot path sends one JSON POST per call to a provider and waits for one JSON
answer. aiohttp's client spent ~0.4 ms of CPU on each (building its request and response
objects, tracing hooks, URL and cookie handling) on the 2-core benchmark machine — a sixth of
what the whole governed call costs there. This client does only what that path needs:

- one idle-connection pool per origin (scheme, host, port); a connection goes back to it after a
  complete response the server let us keep (``Connection: close`` and HTTP/1.0 answers close
  it), and is dropped once the server closed it or it sat idle ``max_idle_s``;
- TLS through :mod:`ssl` (the system's default context unless one is given), with SNI;
- responses with ``Content-Length``, chunked, or (headers without either) read until close;
- a connect timeout, and a read timeout that restarts whenever bytes arrive (as aiohttp's
  ``sock_read``): a provider that is slow but streaming its answer is not cut off.

Failures are the ``httpx`` errors the adapters already map (``ConnectError``,
``ConnectTimeout``, ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``). A request is never
re-sent by this client: a POST to a model may be billed, and retrying is the gateway's
resilience layer's decision. Proxies are not supported (nor were they by the aiohttp session it
replaces); streams and every other call keep going through ``httpx``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, cast
from urllib.parse import urlsplit

import httptools
import httpx

__all__ = ["KeepAliveClient"]

MAX_IDLE_S: Final = 15.0
"""An idle connection older than this is closed rather than reused (servers close theirs
after 5 s (uvicorn), 60 s, 75 s (nginx)…; one they closed is noticed as soon as they do)."""


class _Origin:
    """Where requests go: the address to connect to and the request line's parts."""

    __slots__ = ("host", "host_header", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default = 443 if self.tls else 80
        self.port = parts.port or default
        self.host_header = parts.netloc.rpartition("@")[2]  # never credentials in Host
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its response."""

    def __init__(self, read_timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        """When its last response ended (the client's clock)."""
        self._read_timeout = read_timeout
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._got_headers = False
        self._until_close = False
        self._complete = False
        self._keep = False
        """The server lets us send another request on this connection."""

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self._close()
            return
        self._arm()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._got_headers and self._until_close:
                self._done()  # a body delimited by the end of the connection
            else:
                what = "while reading the response" if self._got_headers else "before answering"
                self._fail(httpx.ReadError(f"the server closed the connection {what}"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = self._headers.get(key)
        self._headers[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self._got_headers = True
        length = self._headers.get("content-length")
        chunked = "chunked" in self._headers.get("transfer-encoding", "").lower()
        status = self._parser.get_status_code()
        bodiless = status in (204, 304) or 100 <= status < 200
        self._until_close = length is None and not chunked and not bodiless

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep = self._parser.should_keep_alive()  # only meaningful inside a callback
        self._done()

    # -- requests ----------------------------------------------------------------------------

    async def request(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``data`` (a whole request) and wait for the response."""
        assert self.transport is not None
        if self.closed:
            raise httpx.ReadError("the server closed the connection before answering")
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body = {}, []
        self._got_headers = self._until_close = self._complete = self._keep = False
        self._arm()
        try:
            self.transport.write(data)
            await self._waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        status = self._parser.get_status_code()
        if not self._keep or self._until_close:
            self._close()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        return status, self._headers, body

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._read_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._fail(httpx.ReadTimeout(f"no bytes from the server for {self._read_timeout:g} s"))

    def _done(self) -> None:
        self._complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self._close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self, now: float, max_idle: float) -> bool:
        return not self.closed and self._complete and now - self.idle_since < max_idle


class KeepAliveClient:
    """POSTs over keep-alive connections, pooled per origin (see the module docstring).

    Args:
        timeout: Seconds to connect, and seconds without a byte from the server while waiting
            for an answer.
        max_idle_s: Close rather than reuse a connection idle this long.
        ssl_context: For ``https``: the context that checks the server (``None``: the system's
            default trust store, as :func:`ssl.create_default_context` makes it).
        clock: Monotonic seconds (the test seam for idle ages).
    """

    def __init__(
        self,
        timeout: float,
        *,
        max_idle_s: float = MAX_IDLE_S,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_idle_s = max_idle_s
        self._ssl = ssl_context
        self._clock = clock
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[tuple[bool, str, int], deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self.connections_made = 0
        """How many connections were opened (for tests and metrics)."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST ``body`` with ``headers`` (``Host`` and ``Content-Length`` are added); the
        status, the response's headers (lower-case names) and its body."""
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = _Origin(url)
        lines = [f"POST {origin.path} HTTP/1.1\r\nhost: {origin.host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}\r\n\r\n")
        request = "".join(lines).encode("latin-1") + body
        connection = await self._connection(origin)
        try:
            answer = await connection.request(request)
        except BaseException:
            connection._close()
            self._open.discard(connection)
            raise
        key = (origin.tls, origin.host, origin.port)
        connection.idle_since = self._clock()
        if connection.closed:
            self._open.discard(connection)
        else:
            self._idle.setdefault(key, deque()).append(connection)
        return answer

    async def _connection(self, origin: _Origin) -> _Connection:
        key = (origin.tls, origin.host, origin.port)
        idle = self._idle.get(key)
        now = self._clock()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if connection.reusable(now, self.max_idle_s):
                return connection
            connection._close()
            self._open.discard(connection)
        return await self._connect(origin)

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: Any = None
        if origin.tls:
            tls = self._ssl or ssl.create_default_context()
        where = f"{origin.host}:{origin.port}"
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.timeout),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {where} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}") from exc
        self.connections_made += 1
        self._open.add(connection)
        return connection

    async def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            connection._close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
