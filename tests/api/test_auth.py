"""Deny by default: every route declares a permission, and none answers without the token."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from podium.api import create_app
from podium.api.auth import (
    PERMISSIONS,
    PUBLIC,
    AdminToken,
    BearerAuth,
    Principal,
    public,
    public_paths,
    require,
    route_permissions,
)
from podium.api.errors import install_error_handlers
from podium.config import Settings
from tests.api.support import AUTH, TOKEN, serving

# Built once at import, only to enumerate its routes for parametrization (no lifespan runs).
APP = create_app(Settings(database_url="memory://"), admin_token=TOKEN)

KNOWN = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/workflows"),
    ("GET", "/api/workflows/{name}"),
    ("POST", "/api/workflows/{name}/runs"),
    ("GET", "/api/runs"),
    ("GET", "/api/runs/{run_id}"),
    ("GET", "/api/runs/{run_id}/events"),
    ("GET", "/api/runs/{run_id}/events/stream"),
    ("POST", "/api/runs/{run_id}/approve"),
    ("POST", "/api/runs/{run_id}/reject"),
    ("POST", "/api/runs/{run_id}/resume"),
    ("POST", "/api/runs/{run_id}/cancel"),
    ("GET", "/api/costs"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("POST", "/v1/moderations"),
}
"""Routes the enumeration must find, so that the guards below can never pass vacuously."""

DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _operations(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    ops = []
    for ctx, declared in route_permissions(app):
        for method in sorted(ctx.methods or {"GET"}):
            if method != "HEAD":
                ops.append((method, str(ctx.path), declared))
    return ops


PROTECTED = [(m, p) for m, p, declared in _operations(APP) if declared != [PUBLIC]]
PUBLIC_OPS = [(m, p) for m, p, declared in _operations(APP) if declared == [PUBLIC]]


def _concrete(path: str) -> str:
    return path.replace("{name}", "hello").replace("{run_id}", "no-such-run")


def test_the_enumeration_sees_every_route() -> None:
    found = {(m, p) for m, p, _ in _operations(APP)}
    assert found >= KNOWN, f"routes not enumerated: {KNOWN - found}"
    assert {p for _, p in PUBLIC_OPS} == DOCS | {"/healthz", "/readyz"}


def test_every_route_declares_exactly_one_known_permission() -> None:
    undeclared = [
        f"{method} {path}: {declared or 'nothing'}"
        for method, path, declared in _operations(APP)
        if len(declared) != 1 or (declared[0] not in PERMISSIONS and declared[0] != PUBLIC)
    ]
    assert not undeclared, "routes without exactly one declared permission:\n" + "\n".join(
        undeclared
    )


def test_the_guard_catches_a_route_without_a_permission() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    @router.get("/guarded", dependencies=[require("runs:read")])
    async def guarded() -> dict[str, str]:
        return {}

    app.include_router(router)
    declared = {str(ctx.path): d for ctx, d in route_permissions(app)}
    assert declared["/api/forgotten"] == []
    assert declared["/api/guarded"] == ["runs:read"]


def test_router_level_permissions_count() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api", dependencies=[require("runs:control")])

    @router.post("/thing")
    async def thing() -> dict[str, str]:
        return {}

    app.include_router(router)
    assert [d for _, d in route_permissions(app)][-1] == ["runs:control"]


def test_unknown_permissions_and_parametrized_public_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown permission 'runs:everything'"):
        require("runs:everything")
    app = FastAPI()

    @app.get("/open/{thing}", dependencies=[public()])
    async def open_thing(thing: str) -> str:
        return thing

    with pytest.raises(ValueError, match="static path"):
        public_paths(app)


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
@pytest.mark.parametrize("credentials", ["no token", "wrong token", "admin token"])
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_protected_routes_need_the_token(
    settings: Settings, workflows_dir: Path, method: str, path: str, credentials: str
) -> None:
    headers = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer " + TOKEN[:-1] + "x"},
        "admin token": AUTH,
    }[credentials]
    app = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(app, headers=headers) as client:
        kwargs = {"json": {}} if method == "POST" else {}
        response = await client.request(method, _concrete(path), **kwargs)
    if credentials == "admin token":
        assert response.status_code not in (401, 403), response.text
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    # /v1 speaks OpenAI's error shape (its SDK parses it); /api Podium's.
    openai_shaped = path.startswith("/v1/")
    assert error["type"] == ("invalid_request_error" if openai_shaped else "Unauthorized")
    assert error["message"] == (
        "missing bearer token" if credentials == "no token" else "invalid bearer token"
    )


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
@pytest.mark.parametrize(("method", "path"), PUBLIC_OPS, ids=[f"{m} {p}" for m, p in PUBLIC_OPS])
async def test_public_routes_answer_without_a_token(
    settings: Settings, method: str, path: str
) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app, headers={}) as client:
        response = await client.request(method, path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
@pytest.mark.parametrize(
    "header",
    ["Basic " + TOKEN, "Bearer", "Bearer ", TOKEN, "bearer " + TOKEN + "x", "Bearer " + TOKEN * 2],
)
async def test_malformed_or_near_miss_credentials_are_refused(
    settings: Settings, header: str
) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app, headers={"Authorization": header}) as client:
        response = await client.get("/api/workflows")
    assert response.status_code == 401


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_the_scheme_name_is_case_insensitive(settings: Settings) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app, headers={"Authorization": "bearer " + TOKEN}) as client:
        assert (await client.get("/api/workflows")).status_code == 200


@pytest.mark.parametrize("settings", ["memory"], indirect=True)
async def test_unknown_paths_are_denied_before_they_are_looked_up(settings: Settings) -> None:
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app, headers={}) as client:
        assert (await client.get("/api/secret-admin")).status_code == 401
        assert (await client.post("/anything", content=b"x")).status_code == 401
    async with serving(app) as client:
        missing = await client.get("/api/secret-admin")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFound"


async def test_a_principal_without_the_permission_gets_403() -> None:
    class ReadOnly:
        def authenticate(self, token: str) -> Principal | None:
            return Principal("auditor", frozenset({"runs:read"})) if token == "ro" else None

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/read", dependencies=[require("runs:read")])
    async def read() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/start")
    async def start(who: Annotated[Principal, require("runs:start")]) -> dict[str, str]:
        return {"who": who.subject}

    app.add_middleware(BearerAuth, authenticator=ReadOnly(), public_paths=frozenset())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": "Bearer ro"}
    ) as client:
        assert (await client.get("/read")).status_code == 200
        refused = await client.post("/start")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"type": "Forbidden", "message": "this token lacks the permission 'runs:start'"}
    }


def test_the_openapi_spec_names_each_operations_permission() -> None:
    spec = APP.openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/api/runs"]["get"]["security"] == [{"HTTPBearer": ["runs:read"]}]
    approve = spec["paths"]["/api/runs/{run_id}/approve"]["post"]
    assert approve["security"] == [{"HTTPBearer": ["runs:review"]}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "401" in approve["responses"]


def test_the_token_is_not_in_reprs() -> None:
    assert TOKEN not in repr(AdminToken(TOKEN))
    with pytest.raises(ValueError, match="must not be empty"):
        AdminToken("")


@pytest.mark.parametrize("settings", ["memory", "sqlite"], indirect=True)
async def test_the_token_is_never_logged(
    settings: Settings, workflows_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(settings, workflows_dir=workflows_dir, admin_token=TOKEN)
    async with serving(app) as client:
        await client.get("/api/workflows")
        await client.post("/api/workflows/hello/runs", json={"inputs": {"nmae": 1}})
        await client.get("/api/runs", headers={"Authorization": "Bearer " + TOKEN + "-wrong"})
        await client.post("/api/workflows/hello/runs", json={"wait": True})
    assert caplog.records, "nothing was logged: the check would be vacuous"
    assert not re.search(re.escape(TOKEN), caplog.text)
