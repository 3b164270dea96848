"""HTTP/1.1 load generator for the gateway benchmark: sequential, open-loop and closed-loop.

Raw asyncio (an :class:`asyncio.Protocol` per keep-alive connection, a bounded pool of them),
because an HTTP client library costs more CPU per request than the gateways under test can be
told apart by on a 2-core machine. Three ways to load a server:

- :func:`sequential`: one connection, one request after the other (the unloaded latency).
- :func:`open_loop`: requests scheduled at a fixed arrival rate whatever the server does. Latency
  is measured from each request's *scheduled* send time, so a server that falls behind is charged
  for the queue it builds (no coordinated omission); the time from the actual send is kept too
  (``service``), and so is the generator's own lateness (``send_lag``).
- :func:`closed_loop`: N connections each sending its next request when the last one answered,
  for T seconds: the throughput the server sustains.

Every request is the same bytes: a gateway under test must have its cache off.

Standalone use (see ``--help``)::

    python benchmarks/gateway/loadgen.py http://127.0.0.1:18999/v1/chat/completions --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

now = time.perf_counter

DEFAULT_BODY: dict[str, Any] = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}


class HttpError(Exception):
    """A response the generator could not read (malformed, or the connection went away)."""


# -- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where requests go, and the bytes of the one request sent every time."""

    host: str
    port: int
    path: str
    payload: bytes
    """The whole HTTP/1.1 request: request line, headers and body."""
    expect: bytes = b""
    """A 200 response whose body lacks this counts as an error (``unexpected body``)."""

    @classmethod
    def post_json(cls, url: str, body: dict[str, Any], *, token: str | None = None) -> Target:
        """A ``POST`` of ``body`` as JSON to ``url`` (``http://`` only), with a bearer token.

        A completion must carry ``"choices"``; a stream must end with ``[DONE]``.
        """
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// URL with a host, got {url!r}")
        port = parts.port or 80
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = [
            f"POST {parts.path or '/'} HTTP/1.1",
            f"host: {parts.hostname}:{port}",
            "content-type: application/json",
            "accept: application/json, text/event-stream",
            "user-agent: podium-bench-loadgen",
            f"content-length: {len(data)}",
        ]
        if token:
            headers.append(f"authorization: Bearer {token}")
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        expect = b"[DONE]" if body.get("stream") else b'"choices"'
        return cls(parts.hostname, port, parts.path or "/", head + data, expect)


# -- one connection -----------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive client connection; reads Content-Length, chunked and read-to-close bodies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.first_byte_at = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.head_done = False
        self.length: int | None = None
        self.chunked = False
        self.close_after = False
        self.body = bytearray()
        self.pos = 0  # where parsing of a chunked body continues in ``buffer``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if self.head_done and self.length is None and not self.chunked:
                waiter.set_result((self.status, bytes(self.buffer)))  # body ran to the close
            else:
                waiter.set_exception(HttpError(f"connection closed: {exc or 'EOF'}"))

    def send(self, payload: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future resolves to ``(status, body)``."""
        if self.closed or self.transport is None:
            raise HttpError("connection is closed")
        assert self.waiter is None, "one request at a time per connection"
        self.waiter = asyncio.get_running_loop().create_future()
        self.first_byte_at = 0.0
        self.transport.write(payload)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is unusable
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        self.buffer += data
        try:
            done = self._parse()
        except HttpError as exc:
            waiter, self.waiter = self.waiter, None
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if done is not None:
            waiter, self.waiter = self.waiter, None
            if self.close_after:
                self.closed = True
                if self.transport is not None:
                    self.transport.close()
            if not waiter.done():
                waiter.set_result(done)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    raise HttpError("response headers too large")
                return None
            self.first_byte_at = now()
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            try:
                self.status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                raise HttpError(f"malformed status line {lines[0]!r}") from None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
                elif name == "connection" and value.strip().lower() == "close":
                    self.close_after = True
            del buf[: end + 4]
            self.head_done = True
            if self.status in (204, 304) or 100 <= self.status < 200:
                self.length = 0
        if self.chunked:
            return self._parse_chunked()
        if self.length is not None:
            if len(buf) < self.length:
                return None
            body = bytes(buf[: self.length])
            del buf[: self.length]
            status = self.status
            self._reset()
            return status, body
        return None  # no length, not chunked: the body runs to the close

    def _parse_chunked(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        while True:
            line_end = buf.find(b"\r\n", self.pos)
            if line_end < 0:
                return None
            try:
                size = int(bytes(buf[self.pos : line_end]).split(b";", 1)[0], 16)
            except ValueError:
                raise HttpError("malformed chunk size") from None
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if buf[line_end : line_end + 4] == b"\r\n\r\n":
                    trailer_end = line_end
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                status, body = self.status, bytes(self.body)
                self._reset()
                return status, body
            start = line_end + 2
            if len(buf) < start + size + 2:
                return None
            self.body += buf[start : start + size]
            self.pos = start + size + 2
            if self.pos > 65536:  # drop what is parsed so the buffer does not grow
                del buf[: self.pos]
                self.pos = 0


# -- a pool of connections ----------------------------------------------------------------


class Pool:
    """At most ``size`` keep-alive connections to one host; callers wait for a free one."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Connection] = []
        self.opened = 0

    async def acquire(self) -> Connection:
        await self.slots.acquire()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        try:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(Connection, self.host, self.port)
        except BaseException:
            self.slots.release()
            raise
        self.opened += 1
        return conn

    def release(self, conn: Connection, *, reusable: bool) -> None:
        if reusable and not conn.closed:
            self.idle.append(conn)
        elif conn.transport is not None and not conn.closed:
            conn.closed = True
            conn.transport.close()
        self.slots.release()

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


# -- measurements -------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, p99.9, max and mean, in milliseconds."""
    ordered = sorted(samples_s)
    if not ordered:
        return {}
    return {
        "median": percentile(ordered, 50) * 1e3,
        "p90": percentile(ordered, 90) * 1e3,
        "p99": percentile(ordered, 99) * 1e3,
        "p999": percentile(ordered, 99.9) * 1e3,
        "max": ordered[-1] * 1e3,
        "mean": sum(ordered) / len(ordered) * 1e3,
    }


@dataclass
class Phase:
    """What one load phase saw. Latencies are in seconds until :meth:`report`."""

    name: str
    mode: str
    target_rps: float | None = None
    concurrency: int = 1
    duration_s: float = 0.0
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: list[float] = field(default_factory=list)
    """From the scheduled send (open loop) or the actual send (sequential, closed loop)."""
    service: list[float] = field(default_factory=list)
    """From the actual send to the last byte."""
    first_byte: list[float] = field(default_factory=list)
    """From the actual send to the end of the response headers."""
    send_lag: list[float] = field(default_factory=list)
    """Open loop: how late the request left (the generator's scheduling plus pool waits)."""
    connections: int = 0
    last_done: float = 0.0
    """When the last response arrived (``perf_counter``)."""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.error_count / self.sent if self.sent else 0.0

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def report(self) -> dict[str, Any]:
        """A JSON-ready summary (milliseconds), without the raw samples."""
        return {
            "name": self.name,
            "mode": self.mode,
            "target_rps": self.target_rps,
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.error_count,
            "error_kinds": dict(self.errors),
            "error_rate": self.error_rate,
            "achieved_rps": round(self.achieved_rps, 1),
            "connections_opened": self.connections,
            "latency_ms": summarize(self.latency),
            "service_ms": summarize(self.service),
            "first_byte_ms": summarize(self.first_byte),
            "send_lag_ms": summarize(self.send_lag),
        }

    def line(self) -> str:
        """One line for the progress log."""
        lat = summarize(self.latency)
        rate = f"{self.target_rps:,.0f} rps target, " if self.target_rps else ""
        if not lat:
            return f"{self.name}: {rate}no successful request ({dict(self.errors)})"
        return (
            f"{self.name}: {rate}{self.achieved_rps:,.0f} rps achieved, median "
            f"{lat['median']:.3f} ms, p99 {lat['p99']:.3f} ms, max {lat['max']:.1f} ms, "
            f"errors {self.error_count}/{self.sent}"
        )


OnDone = Callable[[int], None]
"""Called with the number of requests just completed (for counting what a server served)."""


def _error_kind(exc: BaseException) -> str:
    return type(exc).__name__


async def _call(
    pool: Pool, target: Target, phase: Phase, scheduled: float | None, on_done: OnDone | None
) -> None:
    """Send one request through the pool and record it in ``phase``."""
    phase.sent += 1
    try:
        conn = await pool.acquire()
    except OSError as exc:
        phase.errors[_error_kind(exc)] += 1
        return
    reusable = False
    try:
        sent = now()
        status, body = await conn.send(target.payload)
        done = now()
        reusable = True
    except (HttpError, OSError) as exc:
        phase.errors[_error_kind(exc)] += 1
        return
    finally:
        pool.release(conn, reusable=reusable)
    phase.last_done = done
    if on_done is not None:
        on_done(1)
    if status != 200:
        phase.errors[f"HTTP {status}"] += 1
        return
    if target.expect not in body:
        phase.errors["unexpected body"] += 1
        return
    phase.ok += 1
    phase.service.append(done - sent)
    if conn.first_byte_at:
        phase.first_byte.append(conn.first_byte_at - sent)
    if scheduled is None:
        phase.latency.append(done - sent)
    else:
        phase.latency.append(done - scheduled)
        phase.send_lag.append(sent - scheduled)


async def sequential(
    target: Target, count: int, *, name: str = "sequential", on_done: OnDone | None = None
) -> Phase:
    """``count`` requests one after the other on one keep-alive connection."""
    phase = Phase(name, "sequential")
    pool = Pool(target.host, target.port, 1)
    began = now()
    try:
        for _ in range(count):
            await _call(pool, target, phase, None, on_done)
    finally:
        phase.duration_s = now() - began
        phase.connections = pool.opened
        pool.close()
    return phase


async def open_loop(
    target: Target,
    rate: float,
    duration: float,
    *,
    name: str | None = None,
    max_connections: int = 256,
    drain: float = 10.0,
    on_done: OnDone | None = None,
) -> Phase:
    """``rate`` requests a second for ``duration`` seconds, each timed from its scheduled send.

    Requests that have not finished ``drain`` seconds after the last one was due are cancelled
    and counted as ``timeout`` errors. At most ``max_connections`` are open; a request waiting
    for one is late, and its lateness counts in its latency.
    """
    phase = Phase(name or f"open {rate:g} rps", "open", target_rps=rate)
    pool = Pool(target.host, target.port, max_connections)
    loop = asyncio.get_running_loop()
    total = max(1, round(rate * duration))
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    start = now() + 0.005
    try:
        for i in range(total):
            due = start + i * interval
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(_call(pool, target, phase, due, on_done))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        last_due = start + (total - 1) * interval
        if tasks:
            await asyncio.wait(set(tasks), timeout=max(0.0, last_due + drain - now()))
        for task in list(tasks):
            task.cancel()
            phase.errors["timeout"] += 1
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        # Answers that arrive after the schedule ended stretch the phase: achieved RPS is what
        # was answered over the time it took, not over the schedule.
        phase.duration_s = max(total * interval, phase.last_done - start)
        phase.connections = pool.opened
        pool.close()
    return phase


async def closed_loop(
    target: Target,
    concurrency: int,
    duration: float,
    *,
    name: str | None = None,
    on_done: OnDone | None = None,
    stop_after: int | None = None,
) -> Phase:
    """``concurrency`` connections, each sending back to back, for ``duration`` seconds.

    No request starts after ``duration``; the phase lasts until the last one started has
    answered, and throughput is the successful requests over that time. With ``stop_after``, the
    phase also ends once that many requests were sent.
    """
    phase = Phase(name or f"closed x{concurrency}", "closed", concurrency=concurrency)
    pool = Pool(target.host, target.port, concurrency)
    began = now()
    deadline = began + duration

    async def worker() -> None:
        while now() < deadline and (stop_after is None or phase.sent < stop_after):
            await _call(pool, target, phase, None, on_done)

    try:
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.wait(workers, timeout=duration + 30.0)
        for task in workers:
            if not task.done():
                task.cancel()
                phase.errors["timeout"] += 1
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        phase.duration_s = now() - began
        phase.connections = pool.opened
        pool.close()
    return phase


def install_uvloop() -> str:
    """Use uvloop's event loop when it is installed; returns the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# -- command line -------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> Phase:
    body = dict(DEFAULT_BODY, model=args.model, stream=args.stream)
    target = Target.post_json(args.url, body, token=args.token)
    if args.warmup:
        await sequential(target, args.warmup)
    if args.closed:
        return await closed_loop(target, args.closed, args.duration)
    if args.rate:
        return await open_loop(target, args.rate, args.duration)
    return await sequential(target, args.count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url", help="e.g. http://127.0.0.1:4000/v1/chat/completions")
    parser.add_argument("--token", help="sent as 'Authorization: Bearer TOKEN'")
    parser.add_argument("--model", default="bench", help="the request's model (default bench)")
    parser.add_argument("--stream", action="store_true", help="ask for an SSE stream")
    parser.add_argument("--rate", type=float, help="open loop at this many requests a second")
    parser.add_argument("--closed", type=int, metavar="N", help="closed loop, N connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--count", type=int, default=1000, help="sequential requests")
    parser.add_argument("--warmup", type=int, default=100, help="sequential requests first")
    args = parser.parse_args(argv)
    install_uvloop()
    phase = asyncio.run(_run(args))
    print(phase.line(), file=sys.stderr)
    print(json.dumps(phase.report(), indent=2))
    return 0 if phase.ok else 1


if __name__ == "__main__":
    sys.exit(main())
