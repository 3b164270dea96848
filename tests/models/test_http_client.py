"""The providers' shared HTTP client: no cookie jar, and the fast transport's error classes."""

from __future__ import annotations

import socket

import httpx
import pytest

from podium.models.providers.http import Endpoint, fast_transport, make_client


async def test_a_providers_cookie_is_never_sent_on_a_later_request() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={}, headers={"set-cookie": "session=tenant-a; Path=/"})

    client = make_client(Endpoint(base_url="http://provider.test"), httpx.MockTransport(answer))
    async with client:
        await client.post("/v1/chat/completions", json={})
        await client.post("/v1/chat/completions", json={})
    assert seen == [None, None]  # another caller never rides on tenant A's session


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(Endpoint(base_url=f"http://127.0.0.1:{port}"), fast_transport())
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/models")
