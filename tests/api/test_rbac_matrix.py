"""Deny by default, route by route and role by role.

Every route the app serves is enumerated (``route_permissions``); a route that declares no
permission fails the suite. Then, for each role, a stored key of that role calls every route: it
must get a 403 exactly when its role lacks the route's permission — never for a route it may use,
always for one it may not. A new route or a new role is covered without editing this file.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from podium.api import create_app
from podium.api.auth import PERMISSIONS, PUBLIC, require, route_permissions
from podium.config import Settings
from podium.governance.identity import IdentityStore
from podium.governance.rbac import ROLE_PERMISSIONS, Role, is_org_wide
from tests.api.support import TOKEN, serving

# Built once at import, only to enumerate its routes (no lifespan runs).
APP = create_app(Settings(database_url="memory://"), admin_token=TOKEN)


def operations(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    """(method, path, declared permissions) of every operation but HEAD."""
    ops = []
    for ctx, declared in route_permissions(app):
        for method in sorted(ctx.methods or {"GET"}):
            if method != "HEAD":
                ops.append((method, str(ctx.path), declared))
    return ops


def undeclared(app: FastAPI) -> list[str]:
    """Operations that are neither public nor guarded by exactly one known permission."""
    return [
        f"{method} {path}: {declared}"
        for method, path, declared in operations(app)
        if declared != [PUBLIC] and (len(declared) != 1 or declared[0] not in PERMISSIONS)
    ]


GUARDED = [(m, p, d[0]) for m, p, d in operations(APP) if d != [PUBLIC]]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


def test_every_route_declares_one_known_permission() -> None:
    assert undeclared(APP) == []
    assert len(GUARDED) >= 35  # the enumeration sees the API, the gateway and the admin routes
    assert {p for _, _, p in GUARDED} >= {"runs:read", "models:call", "admin:write"}


def test_the_guard_fails_a_route_without_a_permission() -> None:
    app = create_app(Settings(database_url="memory://"), admin_token=TOKEN)
    sneaky = APIRouter()

    @sneaky.get("/api/sneaky")
    async def no_declaration() -> dict[str, str]:
        return {}

    @sneaky.get("/api/typo", dependencies=[require("runs:read"), require("costs:read")])
    async def two_declarations() -> dict[str, str]:
        return {}

    app.include_router(sneaky)
    assert undeclared(app) == ["GET /api/sneaky: []", "GET /api/typo: ['costs:read', 'runs:read']"]


async def _mint(identity: IdentityStore, role: Role) -> str:
    team = None if is_org_wide(role) else "a"
    return (await identity.create_key(actor="test", role=role, team=team)).key


@pytest.mark.parametrize("role", list(Role))
async def test_a_role_gets_403_exactly_where_it_lacks_the_permission(role: Role) -> None:
    app = create_app(Settings(database_url="memory://"), admin_token=TOKEN)
    async with serving(app) as admin:
        identity = app.state.podium.identity
        assert isinstance(identity, IdentityStore)
        await identity.create_team("a", actor="test")
        key = await _mint(identity, role)
        held = ROLE_PERMISSIONS[role]
        wrong: list[str] = []
        checked = 0
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://podium.test",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ) as caller:
            for method, path, permission in GUARDED:
                body = {} if method in ("POST", "PUT", "PATCH") else None
                response = await caller.request(method, _concrete(path), json=body)
                refused = response.status_code == 403
                if response.status_code == 401:
                    wrong.append(f"{method} {path}: 401 (the key was not accepted)")
                elif refused == (permission in held):
                    wrong.append(
                        f"{method} {path} needs {permission}: {response.status_code} for "
                        f"{role.value} ({response.text[:120]})"
                    )
                elif refused:
                    message = response.json()["error"]["message"]
                    assert message == f"this token lacks the permission {permission!r}"
                checked += 1
        assert checked == len(GUARDED)
        # The admin token reaches every route (nothing is refused to it).
        for method, path, _ in GUARDED:
            body = {} if method in ("POST", "PUT", "PATCH") else None
            response = await admin.request(method, _concrete(path), json=body)
            assert response.status_code not in (401, 403), (method, path, response.text)
    assert wrong == []
