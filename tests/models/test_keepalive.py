"""The hot path's keep-alive HTTP/1.1 client against real loopback servers, on asyncio's own
event loop and on uvloop (the one ``podium serve`` runs): reuse, framing, closes, timeouts, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import pytest
import uvloop

from podium.models.providers.keepalive import KeepAliveClient
from tests.tls import self_signed

# What the server does with each request it reads: the raw bytes to answer, then whether to
# close the connection ("close"), hang up mid-way ("drop": the bytes, then close), or say nothing.
Script = Callable[[int, bytes], Awaitable[tuple[bytes, str]]]


def ok(body: bytes = b'{"ok": true}', *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


class Server:
    """A loopback HTTP/1.1 server that follows a script, counting connections and requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer, then = await self.script(len(self.requests), request)
                writer.write(answer)
                await writer.drain()
                if then in ("close", "drop"):
                    return
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[None]], None]:
    """Run a coroutine on a fresh loop of the parametrised kind."""
    factory = LOOPS[request.param]

    def go(coro: Awaitable[None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]

    return go


Answer = tuple[int, Mapping[str, str], bytes]


@contextlib.asynccontextmanager
async def serving(
    script: Script, *clients: KeepAliveClient, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, str]]:
    """A server following ``script`` and its chat URL; stops it and closes ``clients`` after."""
    server = Server(script)
    await server.start(tls)
    scheme = "https" if tls is not None else "http"
    try:
        yield server, f"{scheme}://127.0.0.1:{server.port}/v1/chat/completions"
    finally:
        for client in clients:
            await client.close()
        await server.stop()


async def _answer(script: Script, client: KeepAliveClient, n: int) -> tuple[Server, list[Answer]]:
    async with serving(script, client) as (server, url):
        got = [await client.post(url, b'{"n": %d}' % i, {"x-k": "v"}) for i in range(n)]
    return server, got


def test_one_connection_carries_every_request(run: Callable[[Awaitable[None]], None]) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        return ok(b'{"n": %d}' % n, f"X-Request-Id: req-{n}"), ""

    async def main() -> None:
        client = KeepAliveClient(5)
        server, got = await _answer(script, client, 50)
        assert server.connections == client.connections_made == 1
        assert [status for status, _, _ in got] == [200] * 50
        assert [body for _, _, body in got] == [b'{"n": %d}' % n for n in range(1, 51)]
        assert got[4][1]["x-request-id"] == "req-5"  # names in lower case
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:" in first
        assert b"\r\nx-k: v\r\n" in first
        assert first.endswith(b'\r\n\r\n{"n": 0}')

    run(main())


def test_chunked_and_close_delimited_bodies_are_read_whole(
    run: Callable[[Awaitable[None]], None],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"

    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        return (until_close, "close") if n == 2 else (chunked, "")

    async def main() -> None:
        client = KeepAliveClient(5)
        server, got = await _answer(script, client, 3)
        assert [body for _, _, body in got] == [b"hello world", b"until the end", b"hello world"]
        # the chunked answer kept the connection; the close-delimited one could not
        assert client.connections_made == server.connections == 2

    run(main())


def test_a_connection_the_server_closes_is_never_reused(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        if n == 1:
            return ok(b"1", "Connection: close"), "close"
        return ok(b"%d" % n), "close" if n == 2 else ""  # 2: closed after answering, unasked

    async def main() -> None:
        client = KeepAliveClient(5)
        async with serving(script, client) as (server, url):
            assert (await client.post(url, b"", {}))[2] == b"1"
            assert (await client.post(url, b"", {}))[2] == b"2"
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
            assert (await client.post(url, b"", {}))[2] == b"3"
        assert server.connections == client.connections_made == 3

    run(main())


def test_an_idle_connection_past_its_age_is_replaced(
    run: Callable[[Awaitable[None]], None],
) -> None:
    now = [0.0]

    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        return ok(), ""

    async def main() -> None:
        client = KeepAliveClient(5, max_idle_s=10, clock=lambda: now[0])
        async with serving(script, client) as (_, url):
            await client.post(url, b"", {})
            now[0] = 9.0
            await client.post(url, b"", {})
            assert client.connections_made == 1
            now[0] = 100.0
            await client.post(url, b"", {})
            assert client.connections_made == 2

    run(main())


def test_failures_are_the_httpx_errors_the_adapters_map(
    run: Callable[[Awaitable[None]], None],
) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        if n == 1:
            await asyncio.sleep(1.0)  # longer than the client waits
            return ok(), ""
        return ok(b"x" * 100)[:90], "drop"  # the headers and part of the body, then gone

    async def main() -> None:
        client = KeepAliveClient(0.2)
        async with serving(script, client) as (server, url):
            with pytest.raises(httpx.ReadTimeout, match=r"no bytes from the server for 0\.2 s"):
                await client.post(url, b"", {})
            with pytest.raises(httpx.ReadError, match="while reading the response"):
                await client.post(url, b"", {})
        refused = KeepAliveClient(1)
        with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{server.port}"):
            await refused.post(url, b"", {})  # nobody listens there any more

    run(main())


def test_https_with_the_servers_certificate_trusted(
    run: Callable[[Awaitable[None]], None], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))

    async def script(n: int, request: bytes) -> tuple[bytes, str]:
        return ok(b'{"tls": %d}' % n), ""

    async def main() -> None:
        client = KeepAliveClient(5, ssl_context=trusted)
        untrusted = KeepAliveClient(5)  # the system's trust store does not know this one
        async with serving(script, client, untrusted, tls=served) as (_, url):
            assert (await client.post(url, b"{}", {}))[2] == b'{"tls": 1}'
            assert (await client.post(url, b"{}", {}))[2] == b'{"tls": 2}'
            assert client.connections_made == 1
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.post(url, b"{}", {})

    run(main())
