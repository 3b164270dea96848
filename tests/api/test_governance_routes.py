"""``GET /api/audit``, ``/api/audit/verify`` and ``/api/lineage/{id}``: filters, cursors, the
caller's scope, permissions, and 503 without an audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from podium import Engine
from podium.api import create_app
from podium.api.auth import ClientKeys
from podium.config import Settings
from podium.finops.ledger import Attribution
from podium.governance import AuditEntry, AuditLog, MasterKey, SigningKey
from podium.governance.rbac import Role
from podium.store import open_store, schema
from podium.store.sql import store_url
from podium.testing import FakeClock, FakeGateway
from podium.types import RunRecord, Store
from podium.workflows.plan import load_text
from tests.api.support import TOKEN, serving

ML = {"Authorization": "Bearer pk-governance-ml-0123456789"}
SEARCH = {"Authorization": "Bearer pk-governance-search-012345"}
GLOBEX_ML = {"Authorization": "Bearer pk-governance-globex-ml-0123"}
VIEWER = {"Authorization": "Bearer pk-governance-viewer-0123456"}
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

WORKFLOW = """
name: answer
inputs:
  q: string
steps:
  - id: draft
    model: fast
    prompt: "Draft: {{ inputs.q }}"
  - id: polish
    model: fast
    prompt: "Polish: {{ steps.draft.output.text }}"
output: "{{ steps.polish.output.text }}"
"""


def keys() -> ClientKeys:
    def key(name: str, org: str, team: str, role: Role) -> tuple[str, Attribution, Role]:
        return (f"key-{name}", Attribution(org=org, team=team, key_id=f"key-{name}"), role)

    return ClientKeys(
        {
            ML["Authorization"][7:]: key("ml", "acme", "ml", Role.DEVELOPER),
            SEARCH["Authorization"][7:]: key("search", "acme", "search", Role.DEVELOPER),
            GLOBEX_ML["Authorization"][7:]: key("globex", "globex", "ml", Role.DEVELOPER),
            VIEWER["Authorization"][7:]: key("viewer", "acme", "ml", Role.VIEWER),
        }
    )


def call(team: str, i: int, **fields: Any) -> AuditEntry:
    header = {"request_id": f"req_{team}_{i}", "org": "acme", "model_served": "m", **fields}
    return AuditEntry("model_call", f"key-{team}", team, header, {"prompt": "secret"})


@dataclass
class World:
    client: httpx.AsyncClient
    log: AuditLog
    store: Store
    url: str
    run_id: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """An app on a SQLite store whose audit trail holds 6 calls of ml, 3 of search and a run
    of team ml with its calls."""
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    clock = FakeClock()
    log = await AuditLog.open(
        url, clock=clock, master=MasterKey.generate(), signer=SigningKey.generate()
    )
    store = await open_store(url)
    engine = Engine(store, gateway=FakeGateway({"fast": "ok"}), clock=clock)
    result = await engine.run(
        load_text(WORKFLOW), {"q": "why?"}, owner=Attribution(org="acme", team="ml")
    )
    await log.append_many([call("ml", i) for i in range(6)] + [call("search", i) for i in range(3)])
    await log.append(call("ml", 99, run_id=result.run_id, step="polish", request_id="req_polish"))
    settings = Settings(home=tmp_path / ".podium", database_url=url)
    app = create_app(settings, engine=engine, admin_token=TOKEN, authenticator=keys())
    app.state.podium.audit = log
    try:
        async with serving(app, headers=ADMIN) as client:
            yield World(client, log, store, url, result.run_id)
    finally:
        await engine.close()
        await store.close()
        await log.close()


async def get(world: World, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return await world.client.get(path, params=params, headers=headers)


async def test_the_admin_lists_every_record_with_filters_and_cursors(world: World) -> None:
    response = await get(world, "/api/audit", ADMIN)
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert "payload" not in records[0]  # headers and hashes only
    assert records[0]["fields"]["request_id"] == "req_ml_0"
    first = (await get(world, "/api/audit", ADMIN, team="search", limit=2)).json()
    assert [r["seq"] for r in first["records"]] == [7, 8]
    assert first["next"] == {"after": 8}
    rest = (await get(world, "/api/audit", ADMIN, team="search", after=8)).json()
    assert ([r["seq"] for r in rest["records"]], rest["next"]) == ([9], None)
    newest = (await get(world, "/api/audit", ADMIN, newest="true", limit=3)).json()
    assert [r["seq"] for r in newest["records"]] == [10, 9, 8]
    assert newest["next"] == {"before": 8}
    assert (await get(world, "/api/audit", ADMIN, kind="approval")).json()["records"] == []


async def test_a_team_sees_only_its_records(world: World) -> None:
    response = await get(world, "/api/audit", ML)
    assert response.status_code == 200, response.text
    teams = {r["team"] for r in response.json()["records"]}
    assert teams == {"ml"}
    assert len(response.json()["records"]) == 7
    refused = await get(world, "/api/audit", ML, team="search")
    assert refused.status_code == 403
    assert "team 'ml' only" in refused.text
    # same team name, another organisation: the records name org acme
    assert (await get(world, "/api/audit", GLOBEX_ML)).json()["records"] == []
    assert (await get(world, "/api/audit", VIEWER)).status_code == 403  # no audit:read


async def test_verify_names_the_first_bad_record(world: World) -> None:
    response = await get(world, "/api/audit/verify", ML)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    assert response.json()["records"] == 10
    engine = create_engine(store_url(world.url))
    with engine.begin() as conn:
        conn.execute(
            update(schema.audit_records)
            .where(schema.audit_records.c.seq == 4)
            .values(actor="mallory")
        )
    engine.dispose()
    body = (await get(world, "/api/audit/verify", ADMIN)).json()
    assert (body["ok"], body["first_bad"]) == (False, 4)
    assert "column 'actor' differs" in body["problem"]


async def test_lineage_of_a_step_and_of_a_call(world: World) -> None:
    response = await get(world, f"/api/lineage/{world.run_id}/polish", ML)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["kind"], data["step"], data["team"]) == ("workflow_step", "polish", "ml")
    assert [u["id"] for u in data["upstream"]] == ["draft"]
    assert data["template"]["parts"] == {"prompt": "Polish: {{ steps.draft.output.text }}"}
    assert [c["request_id"] for c in data["model_calls"]] == ["req_polish"]
    call_lineage = (await get(world, "/api/lineage/req_polish", ML)).json()
    assert (call_lineage["kind"], call_lineage["step"]) == ("model_call", "polish")
    bare = (await get(world, "/api/lineage/req_search_1", ADMIN)).json()
    assert (bare["team"], bare["run_id"]) == ("search", None)


async def test_another_teams_lineage_does_not_exist(world: World) -> None:
    for path, unknown in (
        (f"/api/lineage/{world.run_id}/polish", "/api/lineage/nope/polish"),
        ("/api/lineage/req_polish", "/api/lineage/req_nope"),
    ):
        hidden = await get(world, path, SEARCH)
        missing = await get(world, unknown, SEARCH)
        assert hidden.status_code == missing.status_code == 404
        assert (
            hidden.json()["error"]["message"]
            .replace(world.run_id, "nope")
            .replace("req_polish", "req_nope")
            == missing.json()["error"]["message"]
        )
    assert (await get(world, "/api/lineage/req_polish", GLOBEX_ML)).status_code == 404
    assert (await get(world, "/api/lineage/req_polish", VIEWER)).status_code == 403


async def test_without_an_audit_trail_the_routes_answer_503(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / ".podium", database_url="memory://")
    app = create_app(settings, admin_token=TOKEN)
    async with serving(app) as client:
        for path in ("/api/audit", "/api/audit/verify", "/api/lineage/req_1"):
            response = await client.get(path)
            assert response.status_code == 503, (path, response.text)
        response = await client.get("/api/lineage/nope/step")
        assert response.status_code == 404  # steps are traced from the store alone


async def test_a_record_without_org_belongs_to_its_runs_org(world: World) -> None:
    """Workflow records name their run, not its org: the run's owner decides."""
    await world.store.create_run(
        RunRecord("run_globex", "w", "completed", 0.0, 0.0, org="globex", team="ml")
    )
    await world.log.append(
        AuditEntry("workflow_step", "workflow", "ml", {"run_id": "run_globex", "step": "s"}, {})
    )
    await world.log.append(
        AuditEntry("workflow_step", "workflow", "ml", {"run_id": world.run_id, "step": "s"}, {})
    )
    mine = (await get(world, "/api/audit", ML, kind="workflow_step")).json()["records"]
    assert [r["fields"]["run_id"] for r in mine] == [world.run_id]
    theirs = (await get(world, "/api/audit", GLOBEX_ML, kind="workflow_step")).json()["records"]
    assert [r["fields"]["run_id"] for r in theirs] == ["run_globex"]
    page = (await get(world, "/api/audit", ML, limit=1, after=10)).json()
    assert [r["seq"] for r in page["records"]] == [12]  # 11 (globex) is skipped, not counted
