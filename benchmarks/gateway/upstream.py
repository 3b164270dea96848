"""A zero-latency OpenAI-compatible upstream for the gateway benchmark.

It answers ``POST /v1/chat/completions`` (a JSON completion with ``usage``, or with
``"stream": true`` a Server-Sent-Events stream ending in a usage chunk and ``[DONE]``) and
``GET /v1/models`` at once, so that whatever a gateway adds to a request is what the benchmark
sees. ``GET /_stats`` tells how many completions it served, which lets the benchmark check that
every request it sent through a gateway reached the upstream (no cache answered it).

It shares the machine's cores with the gateways under test, so it is as cheap as Python allows:
raw :class:`asyncio.Protocol` over HTTP/1.1 keep-alive, no framework, uvloop when installed. It
reads the request line, the headers and a ``Content-Length`` body and nothing more (a chunked
request body is refused with ``411``).

Run it on its own (``python benchmarks/gateway/upstream.py --port 18999``) or let
``bench_gateway.py`` start it. It prints ``listening on http://HOST:PORT`` once it accepts
connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import cast

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
PROMPT_TOKENS = 9
COMPLETION_TOKENS = 3
CONTENT = "Hello there!"
PIECES = ("Hello", " there", "!")
"""The streamed content, one piece per chunk (joined, it is ``CONTENT``)."""

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


class Stats:
    """What the upstream has served, for ``GET /_stats``."""

    def __init__(self) -> None:
        self.completions = 0
        self.streams = 0
        self.models = 0
        self.bad_requests = 0
        self.connections = 0
        self.started = time.time()

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "completions": self.completions,
                "streams": self.streams,
                "models": self.models,
                "bad_requests": self.bad_requests,
                "connections": self.connections,
                "uptime_s": round(time.time() - self.started, 1),
            }
        ).encode()


def response(
    status: int, body: bytes, *, content_type: bytes = b"application/json", close: bool = False
) -> bytes:
    """One whole HTTP/1.1 response with a ``Content-Length`` body."""
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Error").encode()),
            b"content-type: " + content_type + b"\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        )
    )


def error(status: int, message: str, *, close: bool = False) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    return response(status, body.encode(), close=close)


def completion(model: str, ident: int) -> bytes:
    body = {
        "id": f"chatcmpl-bench-{ident}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(),
    }
    return response(200, json.dumps(body, separators=(",", ":")).encode())


def _chunk(event: dict[str, object]) -> bytes:
    data = b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream(model: str, ident: int) -> bytes:
    """A whole SSE response, chunked: role, one chunk per piece, stop, usage, ``[DONE]``."""
    base = {
        "id": f"chatcmpl-bench-{ident}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    deltas: list[dict[str, object]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in PIECES]
    parts = [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    ]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        parts.append(_chunk({**base, "choices": [choice]}))
    stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
    parts.append(_chunk({**base, "choices": [stop]}))
    parts.append(_chunk({**base, "choices": [], "usage": _usage()}))
    done = b"data: [DONE]\n\n"
    parts.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    return b"".join(parts)


MODELS = json.dumps(
    {
        "object": "list",
        "data": [{"id": "bench-upstream", "object": "model", "created": 0, "owned_by": "bench"}],
    }
).encode()


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse pipelined HTTP/1.1 requests, answer each at once."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if not self._handle_one():
                break

    def _handle_one(self) -> bool:
        """Answer the first whole request in the buffer; False when it is not whole yet."""
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._finish(error(431, "request headers too large", close=True), close=True)
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = head[0].split(" ", 2)
        except ValueError:
            self._finish(error(400, "malformed request line", close=True), close=True)
            return False
        length = 0
        close = version == "HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._finish(error(400, "bad content-length", close=True), close=True)
                    return False
            elif name == "transfer-encoding" and "chunked" in value.lower():
                self._finish(error(411, "send a Content-Length body", close=True), close=True)
                return False
            elif name == "connection":
                token = value.strip().lower()
                close = token == "close" or (close and token != "keep-alive")
        if length > MAX_BODY_BYTES:
            self._finish(error(413, "body too large", close=True), close=True)
            return False
        start = end + 4
        if len(self.buffer) < start + length:
            return False
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        self._finish(self._route(method, target.split("?", 1)[0], body), close=close)
        return True

    def _route(self, method: str, path: str, body: bytes) -> bytes:
        stats = self.stats
        if path == "/v1/chat/completions" or path == "/chat/completions":
            if method != "POST":
                return error(405, "use POST")
            try:
                request = json.loads(body)
                model = str(request.get("model", "bench-upstream"))
                streaming = bool(request.get("stream"))
            except (ValueError, AttributeError):
                stats.bad_requests += 1
                return error(400, "the body is not a JSON object")
            stats.completions += 1
            if streaming:
                stats.streams += 1
                return stream(model, stats.completions)
            return completion(model, stats.completions)
        if path == "/v1/models" or path == "/models":
            stats.models += 1
            return response(200, MODELS)
        if path == "/_stats":
            return response(200, stats.as_json())
        return error(404, f"no route {method} {path}")

    def _finish(self, payload: bytes, *, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def install_uvloop() -> str:
    """Use uvloop's event loop when it is installed; returns the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(
        lambda: UpstreamProtocol(stats), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(stats.as_json().decode(), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=18999, help="port; 0 picks a free one")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        install_uvloop()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
