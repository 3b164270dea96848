"""What a call leaves behind, over HTTP: cache hits at zero cost in the receipts, and a record
for every call, even a stream whose client went away mid-answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import httpx

from podium.finops.budget_sql import SQLBudgetStore
from podium.finops.ledger import open_engine
from podium.gateway.cache import CachePolicy, ResponseCache
from podium.gateway.cache_backends import MemoryCacheBackend
from podium.gateway.pipeline import CallRecord
from podium.testing import FakeClock
from podium.testing.simulators.server import Fault
from tests.gateway_http.conftest import ADMIN_TOKEN, GROUP, MINI, ML_KEY, Served, daily_budget

T = TypeVar("T")
ML_AUTH = {"authorization": f"Bearer {ML_KEY}"}

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_a_repeated_question_is_a_cache_hit_at_zero_cost(
    serve: Callable[..., Served], clock: FakeClock
) -> None:
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, policy=CachePolicy(semantic=False))
    served = serve(cache=cache)
    client = served.client()
    first = client.chat.completions.with_raw_response.create(
        model=GROUP, messages=QUESTION, temperature=0
    )
    again = client.chat.completions.with_raw_response.create(
        model=GROUP, messages=QUESTION, temperature=0
    )
    assert first.headers["x-podium-cache"] == "miss"
    assert again.headers["x-podium-cache"] == "exact"
    assert Decimal(again.headers["x-podium-cost"]) == 0 < Decimal(first.headers["x-podium-cost"])
    assert again.headers["x-podium-model"] in (MINI, "gpt-4o-mini")  # see the next test
    assert "x-podium-deployment" not in again.headers  # no deployment was called
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert again.parse().id != first.parse().id
    # A stream of the same question replays the stored answer.
    with client.chat.completions.with_streaming_response.create(
        model=GROUP, messages=QUESTION, temperature=0, stream=True
    ) as response:
        assert response.headers["x-podium-cache"] == "exact"
        assert Decimal(response.headers["x-podium-cost"]) == 0
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == first.parse().choices[0].message.content
    assert len(served.sim.requests) == 1


def test_a_cache_hit_names_the_same_model_as_the_miss(
    serve: Callable[..., Served], clock: FakeClock
) -> None:
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, policy=CachePolicy(semantic=False))
    served = serve(cache=cache)
    client = served.client()
    for _ in range(2):
        client.chat.completions.create(model=GROUP, messages=QUESTION, temperature=0)
    rows = served.ledger_rows()
    (miss,) = [r for r in rows if not r.cache_hit]
    (hit,) = [r for r in rows if r.cache_hit]
    assert hit.model == miss.model == MINI


def _wait(probe: Callable[[], list[T]]) -> list[T]:
    """Poll until ``probe`` finds something (the record stage runs after the response)."""
    deadline = time.monotonic() + 5
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def test_a_stream_whose_client_leaves_is_still_recorded(serve: Callable[..., Served]) -> None:
    records: list[CallRecord] = []

    async def keep(record: CallRecord) -> None:
        records.append(record)

    served = serve(record_sinks=[keep])
    served.sim.inject(Fault(after_chunks=3, hang=True))  # two words, then silence
    body = {
        "model": GROUP,
        "messages": [{"role": "user", "content": "talk slowly"}],
        "stream": True,
    }
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.stream("POST", f"{served.url}/chat/completions", json=body, headers=auth) as r:
        request_id = r.headers["x-request-id"]
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("data: ")  # the answer started; the client hangs up
    (record,) = _wait(lambda: served.run(served.gateway.flush()) or list(records))
    assert record.request_id == request_id
    assert record.outcome == "error"
    assert record.deployment is not None


def test_a_stream_whose_client_leaves_is_charged_and_settles_its_budget_hold(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    # Budgets in SQL, off the event loop (as on PostgreSQL): the record stage really awaits.
    engine = asyncio.run(open_engine(f"sqlite:///{tmp_path / 'budgets.db'}"))
    store = SQLBudgetStore(engine, offload=True, owned=True)
    served = serve(budgets=[daily_budget("5")], budget_store=store)
    served.sim.inject(Fault(after_chunks=3, hang=True))  # two words, then silence
    body = {
        "model": GROUP,
        "messages": [{"role": "user", "content": "talk slowly"}],
        "stream": True,
    }
    with httpx.stream("POST", f"{served.url}/chat/completions", json=body, headers=ML_AUTH) as r:
        request_id = r.headers["x-request-id"]
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("data: ")
        assert next(lines).startswith("data: ")  # "You " reached the client; it hangs up
    rows = _wait(lambda: served.ledger_rows())
    (row,) = rows
    assert row.request_id == request_id
    assert row.usage.output_tokens > 0  # billed up to the cut
    assert served.gateway.budgets is not None
    (status,) = served.run(served.gateway.budgets.status())
    assert status.reserved == 0  # the hold was settled, not left to expire
    assert status.spent == row.cost > 0
