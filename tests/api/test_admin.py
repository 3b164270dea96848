"""``/api/admin``: organisations, teams, projects, users and keys, each confined to the caller's
scope; a created key is shown once and then only by its prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from podium.api import create_app
from podium.config import Settings
from podium.governance.identity import IdentityStore
from podium.testing import FakeClock
from tests.api.support import TOKEN, serving


def _as(app: FastAPI, key: str) -> httpx.AsyncClient:
    """Another client of an app already started (its lifespan is not run again)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://podium.test",
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A started app with teams ``a`` and ``b``, and a client sending the admin token."""
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app) as client:
        for team in ("a", "b"):
            created = await client.post("/api/admin/teams", json={"name": team})
            assert created.status_code == 201, created.text
        yield app, client


async def _key(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/admin/keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_created_key_is_shown_once_and_works(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    created = await _key(client, team="a", role="developer", name="ci", expires="30d")
    key = created["key"]
    assert key.startswith(f"pod_{created['prefix']}_")
    assert len(key) == 56
    assert created["warning"].startswith("Store this key now")
    assert (created["team"], created["role"], created["status"]) == ("a", "developer", "active")
    assert created["expires_at"] == pytest.approx(created["created_at"] + 30 * 86_400)
    listed = await client.get("/api/admin/keys")
    one = await client.get(f"/api/admin/keys/{created['id']}")
    for response in (listed, one):
        assert response.status_code == 200
        assert key not in response.text
        assert key.rsplit("_", 1)[1] not in response.text
        assert "key_hash" not in response.text
    assert one.json()["prefix"] == created["prefix"]
    assert "key" not in one.json()
    async with _as(app, key) as developer:
        assert (await developer.get("/api/workflows")).status_code == 200
        refused = await developer.get("/api/admin/keys")
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == (
            "this token lacks the permission 'admin:read'"
        )


async def test_revoked_rotated_and_unknown_keys_get_the_same_401(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    revoked = await _key(client, team="a")
    rotated = await _key(client, team="a")
    revoke = await client.post(f"/api/admin/keys/{revoked['id']}/revoke")
    assert (revoke.status_code, revoke.json()["status"]) == (200, "revoked")
    again = await client.post(f"/api/admin/keys/{revoked['id']}/revoke")
    assert again.status_code == 409
    rotate = await client.post(f"/api/admin/keys/{rotated['id']}/rotate", json={"grace": "0s"})
    assert rotate.status_code == 201, rotate.text
    successor = rotate.json()
    assert successor["rotated_from"] == rotated["id"]
    assert successor["key"] != rotated["key"]
    unknown = f"pod_{'Z' * 8}_{'a' * 43}"
    bodies = []
    for key in (revoked["key"], rotated["key"], unknown):
        async with _as(app, key) as caller:
            response = await caller.get("/api/workflows")
        assert response.status_code == 401
        bodies.append(response.json())
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["error"]["message"] == "invalid bearer token"
    async with _as(app, successor["key"]) as caller:
        assert (await caller.get("/api/workflows")).status_code == 200


async def test_a_rotated_key_works_through_its_grace(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    old = await _key(client, team="b", role="viewer")
    rotate = await client.post(f"/api/admin/keys/{old['id']}/rotate")  # default grace: 24h
    assert rotate.status_code == 201
    listed = {k["id"]: k for k in (await client.get("/api/admin/keys?team=b")).json()}
    assert listed[old["id"]]["status"] == "rotating"
    assert listed[old["id"]]["expires_at"] == pytest.approx(
        listed[old["id"]]["rotated_at"] + 86_400
    )
    for key in (old["key"], rotate.json()["key"]):
        async with _as(app, key) as caller:
            assert (await caller.get("/api/runs")).status_code == 200
    refused = await client.post(f"/api/admin/keys/{old['id']}/rotate", json={"grace": "forever"})
    assert refused.status_code == 422


async def test_an_expired_key_gets_the_same_401(tmp_path: Path, settings: Settings) -> None:
    clock = FakeClock()
    identity = await IdentityStore.open(
        f"sqlite:///{tmp_path / 'identity.db'}", clock=clock, pepper=b"k" * 32
    )
    try:
        await identity.create_team("a", actor="t")
        new = await identity.create_key(actor="t", team="a", expires_in=60)
        app = create_app(settings, admin_token=TOKEN, identity=identity)
        async with serving(app, headers={"Authorization": f"Bearer {new.key}"}) as caller:
            assert (await caller.get("/api/workflows")).status_code == 200
            clock.advance(60)
            expired = await caller.get("/api/workflows")
        assert expired.status_code == 401
        assert expired.json()["error"]["message"] == "invalid bearer token"
    finally:
        await identity.close()


async def test_a_team_admin_administers_its_team_only(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    lead = await _key(client, team="a", role="team-admin")
    b_key = await _key(client, team="b")
    await _key(client, role="admin")
    async with _as(app, lead["key"]) as team_admin:
        other_team = await team_admin.post("/api/admin/keys", json={"team": "b"})
        assert other_team.status_code == 403
        assert "team 'a': it cannot create keys in 'b'" in other_team.json()["error"]["message"]
        escalate = await team_admin.post("/api/admin/keys", json={"role": "admin"})
        assert escalate.status_code == 403
        assert escalate.json()["error"]["message"] == "a team-admin cannot grant the admin role"
        assert (await team_admin.post("/api/admin/teams", json={"name": "c"})).status_code == 403
        assert (await team_admin.post("/api/admin/orgs", json={"name": "x"})).status_code == 403
        mine = await team_admin.post("/api/admin/keys", json={"role": "service"})
        assert mine.status_code == 201
        assert mine.json()["team"] == "a"
        listed = (await team_admin.get("/api/admin/keys")).json()
        assert {k["team"] for k in listed} == {"a"}
        assert len(listed) == 2
        assert (await team_admin.get("/api/admin/keys?team=b")).json() == []
        assert [t["name"] for t in (await team_admin.get("/api/admin/teams")).json()] == ["a"]
        for path in (f"/api/admin/keys/{b_key['id']}",):
            assert (await team_admin.get(path)).status_code == 404
        for action in ("revoke", "rotate"):
            hidden = await team_admin.post(f"/api/admin/keys/{b_key['id']}/{action}")
            assert hidden.status_code == 404
        project = await team_admin.post("/api/admin/projects", json={"name": "bot"})
        assert (project.status_code, project.json()["team"]) == (201, "a")
        user = await team_admin.post(
            "/api/admin/users", json={"email": "dev@example.com", "role": "developer"}
        )
        assert (user.status_code, user.json()["team"]) == (201, "a")
        auditor = await team_admin.post(
            "/api/admin/users", json={"email": "aud@example.com", "role": "auditor"}
        )
        assert auditor.status_code == 403
    # the keys of team b are untouched
    async with _as(app, b_key["key"]) as b:
        assert (await b.get("/api/workflows")).status_code == 200


async def test_an_org_admin_stays_in_its_organisation(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    assert (await client.post("/api/admin/orgs", json={"name": "acme"})).status_code == 201
    assert (
        await client.post("/api/admin/teams", json={"name": "eng", "org": "acme"})
    ).status_code == 201
    acme_key = await _key(client, org="acme", team="eng")
    org_admin = await _key(client, role="admin")
    assert org_admin["team"] is None
    assert org_admin["org"] == "default"
    async with _as(app, org_admin["key"]) as caller:
        assert [o["name"] for o in (await caller.get("/api/admin/orgs")).json()] == ["default"]
        assert (await caller.post("/api/admin/orgs", json={"name": "evil"})).status_code == 403
        elsewhere = await caller.post("/api/admin/keys", json={"org": "acme", "team": "eng"})
        assert elsewhere.status_code == 403
        assert (await caller.get(f"/api/admin/keys/{acme_key['id']}")).status_code == 404
        teams = {t["name"] for t in (await caller.get("/api/admin/teams")).json()}
        assert teams == {"a", "b"}
        made = await caller.post("/api/admin/teams", json={"name": "c"})
        assert made.status_code == 201
        assert made.json()["created_by"] == org_admin["id"]
    everything = {o["name"] for o in (await client.get("/api/admin/orgs")).json()}
    assert everything == {"default", "acme"}


async def test_an_auditor_reads_but_changes_nothing(
    admin: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = admin
    await _key(client, team="a")
    auditor = await _key(client, role="auditor")
    async with _as(app, auditor["key"]) as caller:
        listed = await caller.get("/api/admin/keys")
        assert listed.status_code == 200
        assert len(listed.json()) == 2
        refused = await caller.post("/api/admin/keys", json={"team": "a"})
        assert refused.status_code == 403


async def test_invalid_requests_are_explained(admin: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = admin
    cases = [
        ({"team": "nope"}, 404, "no team 'nope' in organisation 'default'"),
        ({"role": "admin", "team": "a"}, 422, "the admin role is org-wide: it takes no team"),
        ({}, 422, "the developer role belongs to a team: name one"),
        ({"team": "a", "expires": "soon"}, 422, "expires: invalid duration 'soon'"),
    ]
    for body, status, message in cases:
        response = await client.post("/api/admin/keys", json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
    duplicate = await client.post("/api/admin/teams", json={"name": "a"})
    assert duplicate.status_code == 409
    unknown_role = await client.post("/api/admin/keys", json={"team": "a", "role": "root"})
    assert unknown_role.status_code == 422


def test_the_openapi_spec_names_the_admin_permissions() -> None:
    spec = create_app(Settings(database_url="memory://"), admin_token=TOKEN).openapi()
    paths = spec["paths"]
    assert paths["/api/admin/keys"]["get"]["security"] == [{"HTTPBearer": ["admin:read"]}]
    assert paths["/api/admin/keys"]["post"]["security"] == [{"HTTPBearer": ["admin:write"]}]
    revoke = paths["/api/admin/keys/{key_id}/revoke"]["post"]
    assert revoke["security"] == [{"HTTPBearer": ["admin:write"]}]
    assert "key_hash" not in str(spec["components"]["schemas"]["KeyInfo"])
