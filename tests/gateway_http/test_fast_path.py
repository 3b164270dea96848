"""``ChatFastPath`` serves ``POST /v1/chat/completions`` without FastAPI's stack: every answer,
good or bad, must be the one the FastAPI route gives. Each case runs against two servers, one
with the fast path and one without it, and their answers are compared field by field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.gateway_http.conftest import ADMIN_TOKEN, GROUP, ML_KEY, VIEWER_KEY, Served

HELLO = [{"role": "user", "content": "hello"}]
BIG = "x" * (1024 * 1024 + 1)
AUDIO = {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
FINANCE = {"x-podium-team": "finance"}
OPS = {"x-podium-team": "ops"}

# (name, body: JSON value or raw bytes, headers besides the key, key)
CASES: list[tuple[str, Any, dict[str, str], str | None]] = [
    ("a completion", {"model": GROUP, "messages": HELLO}, {}, ML_KEY),
    ("a stream", {"model": GROUP, "messages": HELLO, "stream": True}, {}, ML_KEY),
    ("no token", {"model": GROUP, "messages": HELLO}, {}, None),
    ("a bad token", {"model": GROUP, "messages": HELLO}, {}, "pk-nope"),
    ("a key without models:call", {"model": GROUP, "messages": HELLO}, {}, VIEWER_KEY),
    ("an unknown model", {"model": "chta", "messages": HELLO}, {}, ML_KEY),
    ("a bad parameter", {"model": GROUP, "messages": HELLO, "temperature": 3}, {}, ML_KEY),
    ("a missing parameter", {"model": GROUP}, {}, ML_KEY),
    ("an unknown parameter", {"model": GROUP, "messages": HELLO, "bogus": 1}, {}, ML_KEY),
    ("a union's deeper branch", {"model": GROUP, "messages": [AUDIO]}, {}, ML_KEY),
    ("not JSON", b"{not json", {}, ML_KEY),
    ("an empty body", b"", {}, ML_KEY),
    ("a JSON array", [1, 2], {}, ML_KEY),
    ("over 1 MiB", {"model": GROUP, "messages": [{"role": "user", "content": BIG}]}, {}, ML_KEY),
    ("another team's charge", {"model": GROUP, "messages": HELLO}, FINANCE, ML_KEY),
    ("the admin naming a team", {"model": GROUP, "messages": HELLO}, OPS, ADMIN_TOKEN),
]


@pytest.fixture
def pair(serve: Callable[..., Served]) -> tuple[Served, Served]:
    return serve(), serve(fast_path=False)


def _send(served: Served, body: Any, headers: dict[str, str], key: str | None) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return httpx.post(f"{served.url}/chat/completions", content=content, headers=sent, timeout=10)


def _comparable(response: httpx.Response) -> dict[str, Any]:
    """What both paths must agree on: status, headers (names; values but the ids, times and
    lengths that differ per call), and the body with its ids and times removed."""
    vary = {"x-request-id", "date", "content-length", "server"}
    headers = {k: (v if k not in vary else "…") for k, v in response.headers.items()}
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line for line in response.text.splitlines() if line.startswith("data:")]
        return {"status": response.status_code, "headers": headers, "events": len(events),
                "done": events[-1] if events else None}  # fmt: skip
    body = response.json()
    for key in ("id", "created"):
        body.pop(key, None)
    error = body.get("error")
    if error and str(error["message"]).startswith("the request body is not valid JSON ("):
        error["message"] = "the request body is not valid JSON (…)"  # the parser's own words
    return {"status": response.status_code, "headers": headers, "body": body}


@pytest.mark.parametrize(("name", "body", "headers", "key"), CASES, ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route_does(
    pair: tuple[Served, Served], name: str, body: Any, headers: dict[str, str], key: str | None
) -> None:
    fast, route = pair
    got, want = _send(fast, body, headers, key), _send(route, body, headers, key)
    assert _comparable(got) == _comparable(want), name
    assert got.headers["x-request-id"].startswith("req_")


def test_both_paths_call_the_provider_once_per_admitted_request(
    pair: tuple[Served, Served],
) -> None:
    fast, route = pair
    assert fast.sim is route.sim
    calls = []
    for served in pair:
        before = len(served.sim.requests)
        for _, body, headers, key in CASES:
            _send(served, body, headers, key)
        calls.append(len(served.sim.requests) - before)
    assert calls == [3, 3]  # the completion, the stream and the admin's call
