"""What every hosted adapter shares: an httpx client (the transport is the seam tests replace),
credentials kept out of logs and reprs, request ids, and the mapping of HTTP failures onto the
``ModelError`` tree (with ``Retry-After``)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    ContentRefused,
    ContextLengthExceeded,
    ModelError,
    ModelNotFound,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
)

_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "exceeds the maximum",
)
_CONTENT_HINTS = ("content policy", "content_policy", "safety", "content_filter", "blocked")


@dataclass(frozen=True)
class Endpoint:
    """Where a provider lives and how to authenticate. ``api_key`` never appears in a repr."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 60.0
    """Seconds for one HTTP request (connect + each read)."""


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))


def error_message(body: bytes | str) -> str:
    """The human message inside a provider's error body (OpenAI, Anthropic, Gemini, Cohere,
    Bedrock shapes), or the body itself."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "msg", "detail"):
                if isinstance(err.get(key), str):
                    return str(err[key])
        if isinstance(err, str):
            return err
        for key in ("message", "Message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return text.strip()[:500]


def map_http_error(
    response: httpx.Response,
    *,
    provider: str,
    model: str,
    request_id: str | None = None,
    body: bytes | None = None,
) -> ModelError:
    """The ``ModelError`` for a failed HTTP response."""
    status = response.status_code
    raw = body if body is not None else response.content
    message = error_message(raw)
    lowered = message.lower()
    kw: dict[str, Any] = {"provider": provider, "model": model, "request_id": request_id}
    text = f"{provider} {status}: {message}"
    if status in (401, 403):
        return AuthenticationFailed(text, **kw)
    if status == 404:
        return ModelNotFound(text, **kw)
    if status == 429:
        return RateLimited(text, retry_after=retry_after(response.headers), **kw)
    if status in (408, 504):
        return ProviderTimeout(text, **kw)
    if status >= 500 or status == 529:
        return ProviderOverloaded(text, **kw)
    if any(h in lowered for h in _CONTEXT_HINTS):
        return ContextLengthExceeded(text, **kw)
    if any(h in lowered for h in _CONTENT_HINTS):
        return ContentRefused(text, **kw)
    return BadModelRequest(text, **kw)


def map_transport_error(exc: httpx.HTTPError, *, provider: str, model: str) -> ModelError:
    """The ``ModelError`` for a connection-level failure."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            f"{provider}: timed out ({type(exc).__name__})", provider=provider, model=model
        )
    return ProviderOverloaded(
        f"{provider}: connection failed ({type(exc).__name__}: {exc})",
        provider=provider,
        model=model,
    )


def fast_transport() -> httpx.AsyncBaseTransport:
    """aiohttp's transport behind the httpx API, with its connection errors classified right.

    ``httpx-aiohttp`` maps every ``aiohttp.ClientConnectionError`` — a refused connection, a
    server that hung up mid-response — to ``httpx.ConnectTimeout``; those are failures, not
    timeouts, and are raised here as ``ConnectError`` and ``ReadError``.
    """
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    class FastTransport(AiohttpTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            try:
                return await super().handle_async_request(request)
            except httpx.ConnectTimeout as exc:
                cause = exc.__cause__
                if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
                    raise
                if isinstance(cause, aiohttp.ClientConnectorError):
                    raise httpx.ConnectError(str(cause), request=request) from cause
                if isinstance(cause, aiohttp.ClientConnectionError):
                    raise httpx.ReadError(str(cause), request=request) from cause
                raise

    return FastTransport()


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """An httpx client without a cookie jar. A gateway's connection to a provider is shared by
    every caller, so a cookie one answer set must never ride along on another caller's request
    (and parsing ``Set-Cookie`` on every answer costs ~0.07 ms of CPU)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None


def make_client(
    endpoint: Endpoint, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An httpx client for one provider endpoint (``transport`` is the test seam)."""
    return _Client(
        base_url=endpoint.base_url,
        timeout=httpx.Timeout(endpoint.timeout),
        transport=transport,
        headers=dict(endpoint.headers),
    )


def redact(body: bytes, secret: str | None) -> bytes:
    """``body`` with every occurrence of ``secret`` replaced by ``***`` (providers sometimes
    quote the key they were sent in an error message)."""
    if not secret:
        return body
    return body.replace(secret.encode(), b"***")


def stream_cut(
    provider: str, model: str, request_id: str | None, cause: BaseException | None = None
) -> ProviderTimeout:
    """The error for a stream that ended (or broke) before its terminal event: never a
    truncated answer passed off as a complete one."""
    how = f" ({type(cause).__name__})" if cause is not None else ""
    return ProviderTimeout(
        f"{provider}: the stream ended before its terminal event{how}",
        provider=provider,
        model=model,
        request_id=request_id,
    )
