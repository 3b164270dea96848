"""Failures answer in one JSON shape, with the right status, and never with a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium import Engine, MemoryStore
from podium.api import MAX_BODY_BYTES, create_app
from podium.api.errors import status_of
from podium.config import Settings
from podium.errors import (
    ConfigError,
    DefinitionError,
    DefinitionIssue,
    JournalConflict,
    ModelError,
    NonDeterminism,
    PodiumError,
    RunNotFound,
    StoreError,
    WorkflowError,
)
from tests.api.support import TOKEN, serving

TOO_LARGE = {
    "error": {
        "type": "ContentTooLarge",
        "message": "request body too large: the limit is 1048576 bytes (1 MiB)",
    }
}


async def test_a_declared_body_over_1_mib_is_refused(client: httpx.AsyncClient) -> None:
    body = b'{"inputs": {"name": "' + b"x" * MAX_BODY_BYTES + b'"}}'
    response = await client.post(
        "/api/workflows/hello/runs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert (await client.get("/api/runs")).json() == []


async def test_a_streamed_body_over_1_mib_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"inputs": {"name": "'
        for _ in range(20):
            yield b"x" * (64 * 1024)
        yield b'"}}'

    response = await client.post(
        "/api/workflows/hello/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == TOO_LARGE


async def test_a_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    name = "x" * (MAX_BODY_BYTES - 100)
    response = await client.post("/api/workflows/hello/runs", json={"inputs": {"name": name}})
    assert response.status_code == 202


async def test_malformed_requests_are_422(client: httpx.AsyncClient) -> None:
    broken = await client.post(
        "/api/workflows/hello/runs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["type"] == "RequestValidationError"
    assert "JSON decode error" in broken.json()["error"]["message"]

    extra = await client.post("/api/workflows/hello/runs", json={"input": {"name": "x"}})
    assert extra.status_code == 422
    assert extra.json()["error"]["issues"] == [
        {"message": "Extra inputs are not permitted", "key": "body.input"}
    ]
    not_a_mapping = await client.post("/api/workflows/hello/runs", json={"inputs": [1]})
    assert not_a_mapping.status_code == 422


async def test_wrong_methods_are_405_in_the_same_shape(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/runs")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "MethodNotAllowed"


class _BrokenStore(MemoryStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def list_runs(self, **_: Any) -> list[Any]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            RuntimeError("password=hunter2 in /srv/secret.py"),
            500,
            {
                "error": {
                    "type": "InternalServerError",
                    "message": "internal server error; see the server log",
                }
            },
        ),
        (
            StoreError("the store is closed"),
            500,
            {"error": {"type": "StoreError", "message": "the store is closed"}},
        ),
    ],
)
async def test_server_failures_do_not_leak_internals(
    workflows_dir: Path, error: Exception, status: int, body: dict[str, Any]
) -> None:
    store = _BrokenStore(error)
    engine = Engine(store)
    app = create_app(
        Settings(database_url="memory://"),
        engine=engine,
        workflows_dir=workflows_dir,
        admin_token=TOKEN,
    )
    async with serving(app, raise_app_exceptions=False) as client:
        response = await client.get("/api/runs")
    await engine.close()
    assert response.status_code == status
    assert response.json() == body
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DefinitionError([DefinitionIssue("bad")]), 422),
        (RunNotFound("r"), 404),
        (JournalConflict("race"), 409),
        (WorkflowError("not waiting"), 409),
        (NonDeterminism("changed"), 409),
        (ConfigError("bad setting"), 500),
        (StoreError("down"), 500),
        (ModelError("provider down"), 502),
        (PodiumError("other"), 400),
    ],
)
def test_podium_errors_map_to_statuses(error: PodiumError, status: int) -> None:
    assert status_of(error) == status
