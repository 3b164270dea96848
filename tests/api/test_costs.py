"""``GET /api/costs`` on a memory and a SQLite ledger: the same report ``podium costs --json``
prints (the rows and sums of ``tests/cli/test_costs.py``, computed there by hand)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium import Engine, MemoryStore
from podium.api import create_app
from podium.config import Settings
from podium.finops import Ledger, MemoryLedger, SQLLedger
from podium.gateway.pipeline import Gateway
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock
from tests.api.support import AUTH, TOKEN, serving
from tests.cli.test_costs import (
    FOUR_O,
    MINI,
    NOVEMBER_BY_TEAM_MODEL,
    NOVEMBER_SAVINGS_VS_4O,
    PERIOD_TOTALS,
    seed,
    ts,
)

NOV_24 = ts("2026-11-24T15:00:00")


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    led: Ledger = (
        MemoryLedger()
        if request.param == "memory"
        else await SQLLedger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    )
    await seed(led)
    yield led
    await led.close()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """An engine whose clock reads 2026-11-24 (UTC): the default ``on``."""
    engine = Engine(MemoryStore(), clock=FakeClock(NOV_24))
    yield engine
    await engine.close()


def make_app(
    tmp_path: Path, engine: Engine, ledger: Ledger | None, catalog: Catalog | None = None
) -> Any:
    app = create_app(
        Settings(home=tmp_path / ".podium", database_url="memory://"),
        engine=engine,
        admin_token=TOKEN,
    )
    app.state.podium.ledger = ledger
    app.state.podium.model_catalog = catalog
    return app


@pytest.fixture
async def client(
    tmp_path: Path, engine: Engine, ledger: Ledger
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(make_app(tmp_path, engine, ledger, Catalog.builtin())) as c:
        yield c


async def get(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.get(f"/api/costs?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_spend_grouped_by_several_dimensions(client: httpx.AsyncClient) -> None:
    report = await get(client, "by=team,model&period=month&on=2026-11-24")
    assert report == NOVEMBER_BY_TEAM_MODEL  # what podium costs --json prints
    assert await get(client, "by=team&by=model") == report  # repeated; this month by the clock


async def test_without_dimensions_one_total_row(client: httpx.AsyncClient) -> None:
    report = await get(client, "on=2026-11-24")
    assert [(r["group"], r["cost"], r["calls"], r["cache_hits"]) for r in report["rows"]] == [
        ({}, "0.013775", 5, 1)
    ]
    assert report["total"] == "0.013775"


@pytest.mark.parametrize(("options", "query", "total", "start", "end"), PERIOD_TOTALS)
async def test_periods_end_exactly_at_their_boundaries(
    client: httpx.AsyncClient,
    options: list[str],
    query: str,
    total: str,
    start: str | None,
    end: str | None,
) -> None:
    report = await get(client, query)
    assert report["total"] == total
    assert report["period"] == {"start": start, "end": end}


async def test_blank_dates_are_absent(client: httpx.AsyncClient) -> None:
    report = await get(client, "period=day&on=2026-11-30&since=&until=")
    assert (report["period"], report["total"]) == (
        {"start": "2026-11-30", "end": "2026-12-01"},
        "0.006",
    )


async def test_where_filters(client: httpx.AsyncClient) -> None:
    ml = await get(client, "by=model&on=2026-11-24&where=team:ml")
    assert ml["where"] == {"team": "ml"}
    assert [(r["group"], r["cost"]) for r in ml["rows"]] == [
        ({"model": FOUR_O}, "0.00725"),
        ({"model": MINI}, "0.00045"),
    ]
    assert ml["total"] == "0.0077"
    both = await get(client, f"on=2026-11-24&where=team:ml&where=model:{FOUR_O}")
    assert both["total"] == "0.00725"
    nobody = await get(client, "by=team&where=team:nobody")
    assert (nobody["rows"], nobody["total"]) == ([], "0")


async def test_sort_by_cost(client: httpx.AsyncClient) -> None:
    report = await get(client, "by=team&on=2026-11-24&sort=cost")
    assert [(r["group"]["team"], r["cost"]) for r in report["rows"]] == [
        ("ml", "0.0077"),
        ("research", "0.006"),
        (None, "0.000075"),
    ]


async def test_savings_against_a_baseline(client: httpx.AsyncClient) -> None:
    report = await get(client, f"on=2026-11-24&baseline={FOUR_O}")
    assert report["savings"] == NOVEMBER_SAVINGS_VS_4O
    cheaper = (await get(client, f"on=2026-11-24&baseline={MINI}"))["savings"]
    assert (cheaper["baseline"], cheaper["vs_baseline"]) == ("0.00207", "-0.011705")


@pytest.mark.parametrize(
    ("query", "key", "message"),
    [
        (
            "by=tem",
            "query.by",
            "unknown dimension 'tem'; did you mean 'team'? dimensions: org, team, project, key, "
            "use_case, model, provider, routed_from, day, month",
        ),
        ("by=team,team", "query.by", "dimension 'team' is given twice"),
        ("where=team", "query.where", "where takes dimension:value (e.g. team:ml), got 'team'"),
        ("where=teem:ml", "query.where", "unknown dimension 'teem'; did you mean 'team'?"),
        ("where=team:ml&where=team:x", "query.where", "dimension 'team' is filtered twice"),
        ("period=fortnight", "query.period", "Input should be 'day', 'week', 'month', 'year'"),
        ("on=2026-13-01", "query.on", "Input should be a valid date"),
        ("since=2026-12-01&until=2026-11-01", "query.since", "since (2026-12-01) is after until"),
        ("period=day&since=2026-11-01", "query.period", "give period/on or since/until, not both"),
        ("sort=price", "query.sort", "Input should be 'group' or 'cost'"),
        (
            "baseline=openai/gpt-4o-mimi",
            "query.baseline",
            "no model 'openai/gpt-4o-mimi' in the catalog; did you mean 'openai/gpt-4o-mini'",
        ),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_parameter(
    client: httpx.AsyncClient, query: str, key: str, message: str
) -> None:
    response = await client.get(f"/api/costs?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "RequestValidationError"
    assert error["issues"][0]["key"] == key
    assert message in error["issues"][0]["message"]
    assert message in error["message"]


async def test_a_token_is_needed(tmp_path: Path, engine: Engine, ledger: Ledger) -> None:
    app = make_app(tmp_path, engine, ledger)
    async with serving(app, headers={}) as anonymous:
        refused = await anonymous.get("/api/costs")
        wrong = await anonymous.get("/api/costs", headers={"Authorization": "Bearer nope"})
        allowed = await anonymous.get("/api/costs?on=2026-11-24", headers=AUTH)
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused.json()["error"]["message"] == "missing bearer token"
    assert allowed.status_code == 200
    assert allowed.json()["total"] == "0.013775"


async def test_without_a_ledger_the_server_says_so(tmp_path: Path, engine: Engine) -> None:
    settings = Settings(home=tmp_path / ".podium", database_url="memory://")
    gateway = Gateway(ModelHub(settings, catalog=Catalog.builtin()), ledger=None)
    app = create_app(settings, engine=engine, admin_token=TOKEN, gateway=gateway)
    async with serving(app) as client:
        response = await client.get("/api/costs")
    assert response.status_code == 503
    assert response.json()["error"] == {
        "type": "ServiceUnavailable",
        "message": "cost reports are unavailable: this server has no cost ledger",
    }
    await gateway.close()


def test_the_openapi_spec_documents_the_route(tmp_path: Path) -> None:
    app = create_app(Settings(database_url="memory://"), admin_token=TOKEN)
    spec = app.openapi()
    operation = spec["paths"]["/api/costs"]["get"]
    assert operation["security"] == [{"HTTPBearer": ["costs:read"]}]
    assert {p["name"] for p in operation["parameters"]} == {
        "by",
        "period",
        "on",
        "since",
        "until",
        "where",
        "baseline",
        "sort",
    }
    assert {"401", "403", "422", "503"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/CostReport"}
    report = spec["components"]["schemas"]["CostReport"]
    assert set(report["required"]) >= {"period", "by", "rows", "total", "savings"}
    assert spec["components"]["schemas"]["SpendGroup"]["properties"]["cost"]["type"] == "string"
