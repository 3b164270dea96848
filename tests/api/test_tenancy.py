"""Tenant isolation over the whole API: team A never reads or acts on team B's data.

One server, on the memory and on the SQLite store, with these callers:

- ``A`` and ``B``: team-admin keys of teams ``a`` and ``b`` of organisation ``acme`` (team-admin
  holds every permission a team may hold, so no route refuses them for a missing permission and
  what is checked is their scope alone);
- ``G``: a team-admin key of team ``a`` of *another* organisation, ``globex`` (same team name);
- ``ORG``: an admin key of ``acme`` (org-wide, no team);
- the admin token: unrestricted.

Each caller starts runs (one waiting for a review, one calling a model through the gateway), and
the identity store holds a project, a user and a key per team. Then every route under ``/api/``
that reads data or names a resource is checked by :data:`CHECKS`: another team's run, key or
costs are invisible (404 exactly as for an unknown id, filtered lists, 403 for an explicit other
team's costs), the owner and the org admin still see them. A route the app serves that has no
check in :data:`CHECKS` fails :func:`test_every_read_and_resource_route_has_an_isolation_check`:
a new route must bring its isolation check here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr

from podium.api import create_app
from podium.api.auth import PUBLIC, ClientKeys, route_permissions
from podium.config import Settings
from podium.finops.ledger import Attribution, MemoryLedger
from podium.gateway.cache import CachePolicy, ResponseCache
from podium.gateway.cache_backends import MemoryCacheBackend
from podium.gateway.pipeline import Gateway
from podium.governance import AuditLog, MasterKey, SigningKey
from podium.governance.gate import Governance
from podium.governance.rbac import Role
from podium.governance.workflow_audit import audited
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.store import open_store
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.workflows.engine import Engine
from tests.api.support import POLL_SECONDS, TOKEN, serving, write_workflows

UPSTREAM_KEY = "sk-upstream-tenancy-0001"
MINI = "openai/gpt-4o-mini"
START = 1_795_000_000.0
"""2026-11-18 (UTC): the catalog's prices are in force."""

ASK = """\
name: ask
inputs:
  q: string
steps:
  - id: answer
    model: openai/gpt-4o-mini
    prompt: "{{ inputs.q }}"
output: "{{ steps.answer.output.text }}"
"""


@dataclass(frozen=True)
class Caller:
    name: str
    token: str
    org: str | None
    team: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


A = Caller("A", "pk-tenancy-team-a-0123456789", "acme", "a")
B = Caller("B", "pk-tenancy-team-b-0123456789", "acme", "b")
G = Caller("G", "pk-tenancy-globex-a-01234567", "globex", "a")
ORG = Caller("ORG", "pk-tenancy-acme-admin-012345", "acme", None)
ADMIN = Caller("ADMIN", TOKEN, None, None)
TEAMS = (A, B, G)


def client_keys() -> ClientKeys:
    keys: dict[str, tuple[str, Attribution, Role]] = {}
    for c in (A, B, G):
        project = f"p{c.team}"
        attribution = Attribution(org=c.org, team=c.team, project=project, key_id=f"key-{c.name}")
        keys[c.token] = (f"key-{c.name}", attribution, Role.TEAM_ADMIN)
    keys[ORG.token] = ("key-ORG", Attribution(org="acme", key_id="key-ORG"), Role.ADMIN)
    return ClientKeys(keys)


@dataclass
class World:
    """The served app and what each caller owns in it."""

    client: httpx.AsyncClient
    gateway: Gateway
    sim: OpenAISimulator
    audit: AuditLog
    waiting: dict[str, str] = field(default_factory=dict)
    """Caller name → its run waiting for a review."""
    asked: dict[str, str] = field(default_factory=dict)
    """Caller name → its completed run that called a model."""
    keys: dict[str, str] = field(default_factory=dict)
    """Caller name → the id of a stored API key of its team."""
    admin_run: str = ""
    """A run the admin token started: the default organisation's, no team's."""

    def runs_of(self, c: Caller) -> set[str]:
        return {self.waiting[c.name], self.asked[c.name]}

    async def get(self, c: Caller, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, headers=c.headers, **kw)

    async def post(self, c: Caller, url: str, body: Any = None) -> httpx.Response:
        return await self.client.post(url, headers=c.headers, json=body)

    async def ok(self, c: Caller, url: str, **kw: Any) -> Any:
        response = await self.get(c, url, **kw)
        assert response.status_code == 200, (c.name, url, response.text)
        return response.json()


async def _wait_status(world: World, c: Caller, run_id: str, status: str) -> None:
    async with asyncio.timeout(POLL_SECONDS):
        while (await world.ok(c, f"/api/runs/{run_id}"))["status"] != status:
            await asyncio.sleep(0.01)


async def _seed(world: World) -> None:
    for c in TEAMS:
        started = await world.post(c, "/api/workflows/payout/runs", {"inputs": {"amount": 5}})
        assert started.status_code == 202, started.text
        world.waiting[c.name] = started.json()["run_id"]
        asked = await world.post(
            c, "/api/workflows/ask/runs", {"inputs": {"q": f"Hello from {c.name}"}, "wait": True}
        )
        assert asked.status_code == 200, asked.text
        assert asked.json()["status"] == "completed", asked.text
        world.asked[c.name] = asked.json()["run_id"]
    for c in TEAMS:
        await _wait_status(world, c, world.waiting[c.name], "waiting")
    hello = await world.post(ADMIN, "/api/workflows/hello/runs", {"inputs": {}, "wait": True})
    assert hello.status_code == 200, hello.text
    world.admin_run = hello.json()["run_id"]

    # The identity store: both organisations, a team, project, user and key per caller's team.
    for org in ("acme", "globex"):
        assert (await world.post(ADMIN, "/api/admin/orgs", {"name": org})).status_code == 201
    for c in TEAMS:
        where = {"org": c.org, "team": c.team}
        made = [
            await world.post(ADMIN, "/api/admin/teams", {"name": c.team, "org": c.org}),
            await world.post(ADMIN, "/api/admin/projects", {"name": f"p{c.team}", **where}),
            await world.post(
                ADMIN,
                "/api/admin/users",
                {"email": f"{c.name.lower()}@{c.org}.test", "role": "developer", **where},
            ),
            key := await world.post(
                ADMIN, "/api/admin/keys", {"role": "developer", "name": c.name, **where}
            ),
        ]
        assert [r.status_code for r in made] == [201] * 4, [r.text for r in made]
        world.keys[c.name] = key.json()["id"]


@pytest.fixture(params=["memory", "sqlite"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, use_simulator: Callable[..., Any]
) -> AsyncIterator[World]:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key=UPSTREAM_KEY)
    clock = FakeClock(start=START)
    settings = Settings(
        home=tmp_path / ".podium",
        database_url="memory://",
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr(UPSTREAM_KEY)},
    )
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, policy=CachePolicy(semantic=False))
    audit = await AuditLog.open(
        f"sqlite:///{tmp_path / 'audit.db'}",
        clock=clock,
        master=MasterKey.generate(),
        signer=SigningKey.generate(),
    )
    gateway = Gateway(
        ModelHub(settings, catalog=Catalog.builtin()),
        clock=clock,
        ledger=MemoryLedger(),
        cache=cache,
        governance=Governance(audit=audit),
    )
    gateway.on_close.append(audit.close)
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'runs.db'}"
    store = await open_store(url)
    # Every step, run transition and approval is audited, as `podium serve` does it.
    engine = Engine(audited(store, gateway), settings=settings, gateway=gateway, clock=clock)
    workflows = write_workflows(tmp_path / "workflows")
    (workflows / "ask.yaml").write_text(ASK)
    app = create_app(
        settings,
        engine=engine,
        gateway=gateway,
        workflows_dir=workflows,
        admin_token=TOKEN,
        authenticator=client_keys(),
    )
    try:
        async with serving(app, headers={}) as client:
            world = World(client, gateway, sim, audit)
            await _seed(world)
            yield world
    finally:
        await engine.close()
        await gateway.close()
        await store.close()


# -- the checks, one per route --------------------------------------------------------------------

Check = Callable[[World], Awaitable[None]]
CHECKS: dict[tuple[str, str], Check] = {}
"""(method, path template) → the isolation check of that route."""


def check(method: str, path: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[(method, path)] = fn
        return fn

    return register


def _same_404(foreign: httpx.Response, unknown: httpx.Response, foreign_id: str, fake: str) -> None:
    """A resource of another team answers exactly what an unknown id answers."""
    assert foreign.status_code == unknown.status_code == 404, (foreign.text, unknown.text)
    assert foreign.text.replace(foreign_id, "<id>") == unknown.text.replace(fake, "<id>")


def _fake_run_id(world: World) -> str:
    real = world.waiting["A"]
    return "f" * len(real)  # same shape as a real id, no run has it


async def _run_resource(world: World, template: str, runs: dict[str, str] | None = None) -> None:
    """GET ``template`` (with ``{run_id}``) for each caller's runs (or ``runs``: one per caller):
    404 for other teams and orgs, 200 for the owner, its org's admin and the admin token."""
    fake = _fake_run_id(world)
    for owner in TEAMS:
        for run_id in world.runs_of(owner) if runs is None else {runs[owner.name]}:
            url = template.format(run_id=run_id)
            assert (await world.get(owner, url)).status_code == 200, (owner.name, url)
            for stranger in TEAMS:
                if stranger is owner:
                    continue
                foreign = await world.get(stranger, url)
                unknown = await world.get(stranger, template.format(run_id=fake))
                _same_404(foreign, unknown, run_id, fake)
            org_wide = await world.get(ORG, url)
            assert org_wide.status_code == (200 if owner.org == "acme" else 404), url
            assert (await world.get(ADMIN, url)).status_code == 200, url
    if runs is None:  # the admin token's run belongs to no team: no team key sees it
        url = template.format(run_id=world.admin_run)
        for c in (*TEAMS, ORG):
            assert (await world.get(c, url)).status_code == 404, (c.name, url)


@check("GET", "/api/runs/{run_id}")
async def _get_run(world: World) -> None:
    await _run_resource(world, "/api/runs/{run_id}")
    detail = await world.ok(A, f"/api/runs/{world.waiting['A']}")
    assert detail["pending_reviews"][0]["step"] == "sign_off"


@check("GET", "/api/runs/{run_id}/events")
async def _get_events(world: World) -> None:
    await _run_resource(world, "/api/runs/{run_id}/events")


@check("GET", "/api/runs/{run_id}/events/stream")
async def _stream_events(world: World) -> None:
    await _run_resource(world, "/api/runs/{run_id}/events/stream")


@check("GET", "/api/runs")
async def _list_runs(world: World) -> None:
    def ids(rows: list[dict[str, Any]]) -> set[str]:
        return {r["run_id"] for r in rows}

    for c in TEAMS:
        assert ids(await world.ok(c, "/api/runs")) == world.runs_of(c), c.name
        waiting = await world.ok(c, "/api/runs", params={"status": "waiting"})
        assert ids(waiting) == {world.waiting[c.name]}
    # G is team "a" too, but of globex: the filter is on (org, team), not the team's name.
    assert ids(await world.ok(ORG, "/api/runs")) == world.runs_of(A) | world.runs_of(B)
    everything = world.runs_of(A) | world.runs_of(B) | world.runs_of(G) | {world.admin_run}
    assert ids(await world.ok(ADMIN, "/api/runs")) == everything
    # The limit applies to the caller's runs, not to everyone's before filtering.
    assert ids(await world.ok(A, "/api/runs", params={"limit": 2})) == world.runs_of(A)


@check("POST", "/api/workflows/{name}/runs")
async def _start_run(world: World) -> None:
    """A started run belongs to its starter (its list and detail; nobody else's)."""
    started = await world.post(B, "/api/workflows/hello/runs", {"inputs": {}, "wait": True})
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]
    assert run_id in {r["run_id"] for r in await world.ok(B, "/api/runs")}
    assert run_id not in {r["run_id"] for r in await world.ok(A, "/api/runs")}
    assert (await world.get(A, f"/api/runs/{run_id}")).status_code == 404


async def _run_action(world: World, action: str, body: Any) -> None:
    """POST an action on A's waiting run as every stranger: 404 as for an unknown id, and the
    run is left exactly as it was (still waiting for the same review, journal unchanged)."""
    run_id = world.waiting["A"]
    before = await world.ok(A, f"/api/runs/{run_id}/events")
    fake = _fake_run_id(world)
    for stranger in (B, G):
        foreign = await world.post(stranger, f"/api/runs/{run_id}/{action}", body)
        unknown = await world.post(stranger, f"/api/runs/{fake}/{action}", body)
        _same_404(foreign, unknown, run_id, fake)
    await asyncio.sleep(0.05)  # anything wrongly spawned in the background would show by now
    detail = await world.ok(A, f"/api/runs/{run_id}")
    assert detail["status"] == "waiting"
    assert [r["step"] for r in detail["pending_reviews"]] == ["sign_off"]
    assert await world.ok(A, f"/api/runs/{run_id}/events") == before


@check("POST", "/api/runs/{run_id}/approve")
async def _approve(world: World) -> None:
    await _run_action(world, "approve", {"step": "sign_off"})


@check("POST", "/api/runs/{run_id}/reject")
async def _reject(world: World) -> None:
    await _run_action(world, "reject", {"step": "sign_off"})


@check("POST", "/api/runs/{run_id}/resume")
async def _resume(world: World) -> None:
    await _run_action(world, "resume", None)


@check("POST", "/api/runs/{run_id}/cancel")
async def _cancel(world: World) -> None:
    await _run_action(world, "cancel", None)


@check("GET", "/api/costs")
async def _costs(world: World) -> None:
    by_team = {"by": "team"}

    def teams(report: dict[str, Any]) -> dict[str | None, Decimal]:
        return {row["group"]["team"]: Decimal(row["cost"]) for row in report["rows"]}

    a = await world.ok(A, "/api/costs", params=by_team)
    b = await world.ok(B, "/api/costs", params=by_team)
    assert set(teams(a)) == {"a"}
    assert set(teams(b)) == {"b"}
    assert teams(a)["a"] > 0
    assert teams(b)["b"] > 0
    assert a["where"] == {"org": "acme", "team": "a"}
    assert Decimal(a["total"]) == teams(a)["a"]
    # Without grouping, the total is still the team's own.
    assert Decimal((await world.ok(B, "/api/costs"))["total"]) == teams(b)["b"]
    # Globex's team "a" spent too, but that is not acme's team "a".
    g = await world.ok(G, "/api/costs", params=by_team)
    assert g["where"] == {"org": "globex", "team": "a"}
    assert Decimal(g["total"]) == teams(g)["a"] > 0
    # Asking for another team or organisation is refused, and says why.
    for c, where in ((B, "team:a"), (B, "org:globex"), (G, "org:acme"), (ORG, "org:globex")):
        refused = await world.get(c, "/api/costs", params={"where": where})
        assert refused.status_code == 403, (c.name, where, refused.text)
        assert "cannot read" in refused.json()["error"]["message"]
    # The org admin sees both acme teams (not globex); the admin token everything.
    org = await world.ok(ORG, "/api/costs", params=by_team)
    assert teams(org) == {"a": teams(a)["a"], "b": teams(b)["b"]}
    everyone = await world.ok(ADMIN, "/api/costs", params={"by": "org,team"})
    groups = {(r["group"]["org"], r["group"]["team"]) for r in everyone["rows"]}
    assert {("acme", "a"), ("acme", "b"), ("globex", "a")} <= groups


async def _shared_catalog(world: World, url: str) -> None:
    """The served workflows are the server's configuration, the same for every team."""
    seen = [await world.ok(c, url) for c in (*TEAMS, ORG, ADMIN)]
    assert all(s == seen[0] for s in seen)


@check("GET", "/api/workflows")
async def _workflows(world: World) -> None:
    await _shared_catalog(world, "/api/workflows")


@check("GET", "/api/workflows/{name}")
async def _workflow(world: World) -> None:
    await _shared_catalog(world, "/api/workflows/payout")


# The administration routes: identities are tenant data too.


async def _scoped_list(world: World, url: str, fields: tuple[str, ...]) -> None:
    """Each team sees only rows of its own (org, team); the org admin its organisation's."""
    for c in TEAMS:
        rows = await world.ok(c, url)
        assert rows, (c.name, url)
        assert {tuple(r[f] for f in fields) for r in rows} == {(c.org, c.team)[: len(fields)]}
        # Asking for another team's rows gives nothing, not theirs.
        other = "b" if c.team == "a" else "a"
        assert await world.ok(c, url, params={"team": other}) == []
    org_rows = await world.ok(ORG, url)
    assert {r["org"] for r in org_rows} == {"acme"}


@check("GET", "/api/admin/orgs")
async def _orgs(world: World) -> None:
    for c in TEAMS:
        assert [o["name"] for o in await world.ok(c, "/api/admin/orgs")] == [c.org]
    assert {o["name"] for o in await world.ok(ADMIN, "/api/admin/orgs")} >= {"acme", "globex"}


@check("GET", "/api/admin/teams")
async def _teams(world: World) -> None:
    for c in TEAMS:
        rows = await world.ok(c, "/api/admin/teams")
        assert [(t["org"], t["name"]) for t in rows] == [(c.org, c.team)]
    rows = await world.ok(ORG, "/api/admin/teams")
    assert {(t["org"], t["name"]) for t in rows} == {("acme", "a"), ("acme", "b")}


@check("GET", "/api/admin/projects")
async def _projects(world: World) -> None:
    await _scoped_list(world, "/api/admin/projects", ("org", "team"))


@check("GET", "/api/admin/users")
async def _users(world: World) -> None:
    await _scoped_list(world, "/api/admin/users", ("org", "team"))


@check("GET", "/api/admin/keys")
async def _keys(world: World) -> None:
    await _scoped_list(world, "/api/admin/keys", ("org", "team"))
    for c in TEAMS:
        ids = {k["id"] for k in await world.ok(c, "/api/admin/keys")}
        assert ids == {world.keys[c.name]}


async def _key_resource(world: World, action: str | None) -> None:
    fake = "k" * len(world.keys["B"])
    for stranger, victim in ((A, B), (B, A), (G, A), (A, G)):
        key_id = world.keys[victim.name]
        suffix = f"/{action}" if action else ""
        if action is None:
            foreign = await world.get(stranger, f"/api/admin/keys/{key_id}")
            unknown = await world.get(stranger, f"/api/admin/keys/{fake}")
        else:
            foreign = await world.post(stranger, f"/api/admin/keys/{key_id}{suffix}", {})
            unknown = await world.post(stranger, f"/api/admin/keys/{fake}{suffix}", {})
        _same_404(foreign, unknown, key_id, fake)
        assert (await world.ok(victim, f"/api/admin/keys/{key_id}"))["status"] == "active"


@check("GET", "/api/admin/keys/{key_id}")
async def _key(world: World) -> None:
    await _key_resource(world, None)


@check("POST", "/api/admin/keys/{key_id}/rotate")
async def _rotate(world: World) -> None:
    await _key_resource(world, "rotate")


@check("POST", "/api/admin/keys/{key_id}/revoke")
async def _revoke(world: World) -> None:
    await _key_resource(world, "revoke")


# Governance reads: the audit trail and lineage.


def _run_of(record: dict[str, Any]) -> str | None:
    run_id = record["fields"].get("run_id")
    return run_id if isinstance(run_id, str) else None


@check("GET", "/api/audit")
async def _audit(world: World) -> None:
    await world.gateway.flush()
    everyone = world.runs_of(A) | world.runs_of(B) | world.runs_of(G)
    for c in TEAMS:
        records = (await world.ok(c, "/api/audit", params={"limit": 1000}))["records"]
        assert {r["team"] for r in records} == {c.team}, c.name
        assert {r["fields"].get("org") for r in records} <= {c.org, None}
        assert {"model_call", "workflow_step", "admin_change"} <= {r["kind"] for r in records}
        runs = {_run_of(r) for r in records} - {None}
        # its own runs' records, none of another team's (globex's "a" is not acme's "a")
        assert runs & everyone == world.runs_of(c), c.name
        other = "b" if c.team == "a" else "a"
        refused = await world.get(c, "/api/audit", params={"team": other})
        assert refused.status_code == 403, refused.text
    org = (await world.ok(ORG, "/api/audit", params={"limit": 1000}))["records"]
    assert {r["fields"].get("org") for r in org} <= {"acme", None}
    assert world.runs_of(A) | world.runs_of(B) <= {_run_of(r) for r in org}
    full = (await world.ok(ADMIN, "/api/audit", params={"limit": 1000}))["records"]
    assert everyone <= {_run_of(r) for r in full}


@check("GET", "/api/audit/verify")
async def _verify(world: World) -> None:
    """Verification names no record's content: the same counts for every caller."""
    answers = [await world.ok(c, "/api/audit/verify") for c in (*TEAMS, ADMIN)]
    assert answers[0]["ok"] is True
    assert answers[0]["records"] > 0
    assert all(a == answers[0] for a in answers)
    assert set(answers[0]) == {"ok", "records", "checkpoints", "first_bad", "problem", "message"}


@check("GET", "/api/lineage/{id:path}")
async def _lineage(world: World) -> None:
    await _run_resource(world, "/api/lineage/{run_id}/answer", runs=world.asked)
    # A gateway call by request id: the caller's team only.
    asked = await world.client.post(
        "/v1/chat/completions",
        headers=A.headers,
        json={"model": MINI, "messages": [{"role": "user", "content": "Lineage?"}]},
    )
    assert asked.status_code == 200, asked.text
    await world.gateway.flush()
    request_id = asked.headers["x-request-id"]
    assert (await world.get(A, f"/api/lineage/{request_id}")).status_code == 200
    fake = "req_" + "0" * (len(request_id) - 4)
    for stranger in (B, G):
        foreign = await world.get(stranger, f"/api/lineage/{request_id}")
        unknown = await world.get(stranger, f"/api/lineage/{fake}")
        _same_404(foreign, unknown, request_id, fake)
    assert (await world.get(ORG, f"/api/lineage/{request_id}")).status_code == 200


# -- the tests ------------------------------------------------------------------------------------


def _guarded_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every route that reads data or names a resource: each GET under ``/api/``, and every
    other method on a path with a parameter (an action on one run, one key…). Creating
    something without naming an existing one (``POST /api/admin/teams``) is left out: it reads
    nothing and writes in the caller's own scope (``tests/api/test_admin.py`` checks that)."""
    for ctx, declared in route_permissions(app):
        route = ctx.original_route
        path = str(ctx.path)
        if not path.startswith("/api/") or declared == [PUBLIC]:
            continue
        assert isinstance(route, APIRoute), path
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            if method == "GET" or "{" in path:
                yield method, path


def test_every_read_and_resource_route_has_an_isolation_check(tmp_path: Path) -> None:
    app = create_app(
        Settings(home=tmp_path, database_url="memory://"),
        admin_token=TOKEN,
        authenticator=client_keys(),
    )
    guarded = set(_guarded_routes(app))
    missing = sorted(guarded - set(CHECKS))
    assert not missing, (
        "these routes have no tenant isolation check: add one to CHECKS in "
        f"tests/api/test_tenancy.py: {missing}"
    )
    stale = sorted(set(CHECKS) - guarded)
    assert not stale, f"CHECKS names routes the app no longer serves: {stale}"
    assert ("GET", "/api/runs/{run_id}/events/stream") in guarded  # the enumeration works


async def test_no_team_reads_or_acts_on_another_teams_data(world: World) -> None:
    failures: list[str] = []
    for (method, path), run_check in CHECKS.items():
        try:
            await run_check(world)
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


async def test_the_owner_and_its_org_admin_still_act_on_the_run(world: World) -> None:
    """The 404s above are the scope at work, not a route that refuses everyone."""
    run_id = world.waiting["A"]
    approved = await world.post(A, f"/api/runs/{run_id}/approve", {"step": "sign_off"})
    assert approved.status_code == 202, approved.text
    await _wait_status(world, A, run_id, "completed")
    cancelled = await world.post(ORG, f"/api/runs/{world.waiting['B']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


async def test_a_runs_model_calls_are_charged_to_its_owner(world: World) -> None:
    await world.gateway.flush()
    assert world.gateway.ledger is not None
    rows = await world.gateway.ledger.entries()
    for c in TEAMS:
        run_id = world.asked[c.name]
        [row] = [r for r in rows if r.attribution.run_id == run_id]
        assert row.attribution == Attribution(
            org=c.org,
            team=c.team,
            project=f"p{c.team}",
            key_id=f"key-{c.name}",
            run_id=run_id,
            step="answer",
        )


async def test_a_teams_cache_entry_is_not_served_to_another_team(world: World) -> None:
    question = {
        "model": MINI,
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0,  # a sampled answer is not cached
    }

    async def ask(c: Caller) -> str:
        response = await world.client.post("/v1/chat/completions", headers=c.headers, json=question)
        assert response.status_code == 200, response.text
        return response.headers["x-podium-cache"]

    upstream = len(world.sim.requests)
    assert await ask(A) == "miss"
    assert await ask(A) == "exact"  # the cache works…
    assert await ask(B) == "miss"  # …but not across teams
    assert await ask(G) == "miss"  # nor across organisations, for a team of the same name
    assert len(world.sim.requests) - upstream == 3
    assert world.sim.requests[-1].json()["messages"][-1]["content"].startswith("Capital of")
