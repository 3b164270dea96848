"""Pricing: golden costs per provider usage shape, computed by hand, and the rules behind them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from podium.errors import PodiumError
from podium.finops.pricing import Cost, UnknownPrice, price, worst_case
from podium.models.base import ChatRequest, Message, Usage
from podium.models.catalog import Catalog, ModelInfo, Price, PriceTier
from podium.models.providers import anthropic, bedrock, gemini, openai_compat
from podium.testing.simulators.anthropic import AnthropicSimulator
from podium.testing.simulators.openai import OpenAISimulator
from podium.testing.simulators.server import Reply

GOLDEN = json.loads((Path(__file__).parent / "golden" / "costs.json").read_text())["cases"]
CATALOG = Catalog.builtin()
DAY = date(2025, 6, 1)
KEY = "sk-test-finops-0000"

PARSERS: dict[str, Callable[[Mapping[str, Any]], Usage]] = {
    "openai": openai_compat.usage_from,
    "anthropic": anthropic.usage_from,
    "gemini": gemini.usage_from,
    "bedrock": bedrock.usage_from,
}


async def streamed_usage(case: dict[str, Any]) -> Usage:
    """Usage as the adapter assembles it from a real stream served by the API's simulator."""
    info = CATALOG.get(case["model"])
    request = ChatRequest(model=info.name, messages=[Message("user", "hello there")])
    model: anthropic.AnthropicModel | openai_compat.OpenAICompatModel
    if case["shape"] == "anthropic-stream":
        sim: AnthropicSimulator | OpenAISimulator = AnthropicSimulator(api_key=KEY)
        base = None
    else:
        sim = OpenAISimulator(api_key=KEY)
        base = "/v1"
    async with sim:
        sim.script(Reply(**case["reply"]))
        if isinstance(sim, AnthropicSimulator):
            model = anthropic.AnthropicModel(info, base_url=sim.url, api_key=SecretStr(KEY))
        else:
            spec = next(s for s in openai_compat.PROVIDERS if s.name == "openai")
            model = openai_compat.OpenAICompatModel(
                info, spec, base_url=f"{sim.url}{base}", api_key=SecretStr(KEY)
            )
        try:
            chunks = [chunk async for chunk in model.stream(request)]
        finally:
            await model.close()
    assert sum(1 for c in chunks if c.usage is not None) == 1
    assert chunks[-1].usage is not None
    assert chunks[-1].finish_reason == "stop"
    return chunks[-1].usage


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
async def test_golden_cost(case: dict[str, Any]) -> None:
    if case["shape"] in PARSERS:
        usage = PARSERS[case["shape"]](case["wire"])
    elif case["shape"].endswith("-stream"):
        usage = await streamed_usage(case)
    else:
        usage = Usage(**case["usage"])
    assert usage == Usage(**case["usage"])

    cost = price(CATALOG.get(case["model"]), usage, date.fromisoformat(case["day"]))

    expected = case["cost"]
    for part in ("input", "output", "cache_read", "cache_write", "reasoning", "units", "total"):
        assert getattr(cost, part) == Decimal(expected[part]), part
    assert cost.tier == expected["tier"]
    # the fixture's total is the sum of its parts, and the parts follow its working
    parts = ("input", "output", "cache_read", "cache_write", "reasoning", "units")
    assert sum(Decimal(expected[p]) for p in parts) == Decimal(expected["total"])


def test_every_part_is_a_decimal_and_total_is_exact() -> None:
    usage = Usage(input_tokens=3, output_tokens=7, cache_read_tokens=11)
    cost = price(CATALOG.get("openai/gpt-4o"), usage, DAY)
    assert all(isinstance(getattr(cost, p), Decimal) for p in ("input", "output", "total"))
    # 3 x 0.0000025 + 7 x 0.00001 + 11 x 0.00000125: exact, no float residue
    assert cost.total == Decimal("0.00009125")
    assert Cost(input=Decimal("0.1"), output=Decimal("0.2")).total == Decimal("0.3")


def model(**price_fields: Any) -> ModelInfo:
    return ModelInfo(
        name="acme/m1",
        provider="acme",
        provider_model="m1",
        capabilities=frozenset(),
        prices=(Price(effective_from=date(2025, 1, 1), **price_fields),),
    )


def test_explicit_reasoning_price_is_used() -> None:
    info = model(input=Decimal("1"), output=Decimal("2"), reasoning=Decimal("5"))
    cost = price(info, Usage(output_tokens=1, reasoning_tokens=2), DAY)
    assert (cost.output, cost.reasoning, cost.total) == (Decimal(2), Decimal(10), Decimal(12))


def test_missing_cache_prices_fall_back_to_the_input_price_in_force() -> None:
    info = model(
        input=Decimal("1"),
        output=Decimal("2"),
        tiers=(PriceTier(above_input_tokens=10, input=Decimal("3"), output=Decimal("4")),),
    )
    small = price(info, Usage(input_tokens=2, cache_read_tokens=3, cache_write_tokens=4), DAY)
    assert (small.cache_read, small.cache_write, small.tier) == (Decimal(3), Decimal(4), None)
    large = price(info, Usage(input_tokens=5, cache_read_tokens=3, cache_write_tokens=4), DAY)
    # 12 prompt tokens > 10: the tier's input price for every prompt token
    assert (large.input, large.cache_read, large.cache_write) == (
        Decimal(15),
        Decimal(9),
        Decimal(12),
    )
    assert large.tier == 10


def test_the_highest_tier_exceeded_applies() -> None:
    info = model(
        input=Decimal("1"),
        output=Decimal("1"),
        tiers=(
            PriceTier(above_input_tokens=10, input=Decimal("2"), output=Decimal("2")),
            PriceTier(above_input_tokens=20, input=Decimal("3"), output=Decimal("3")),
        ),
    )
    assert [price(info, Usage(input_tokens=n), DAY).tier for n in (10, 11, 20, 21)] == [
        None,
        10,
        10,
        20,
    ]
    assert price(info, Usage(input_tokens=21, output_tokens=1), DAY).total == Decimal(66)


def test_task_units() -> None:
    info = model(
        per_character=Decimal("0.001"),
        per_image=Decimal("0.5"),
        per_second=Decimal("0.01"),
        per_request=Decimal("0.2"),
    )
    cost = price(info, Usage(characters=1000, images=2, seconds=0.1, requests=3), DAY)
    # 1 + 1 + 0.001 (0.1 s taken as Decimal('0.1'), not the float's binary expansion) + 0.6
    assert cost.units == cost.total == Decimal("2.601")


def test_local_models_cost_nothing() -> None:
    from podium.models.local.runtime import LOCAL_PRICES

    info = ModelInfo("local/x", "local", "x", frozenset(), prices=LOCAL_PRICES, local=True)
    assert price(info, Usage(characters=10_000, images=3), DAY).total == 0


def test_price_in_force_on_the_day_is_used() -> None:
    info = ModelInfo(
        "acme/m1",
        "acme",
        "m1",
        frozenset(),
        prices=(
            Price(date(2025, 1, 1), input=Decimal("1")),
            Price(date(2025, 7, 1), input=Decimal("2")),
        ),
    )
    usage = Usage(input_tokens=1)
    assert price(info, usage, date(2025, 6, 30)).total == 1
    assert price(info, usage, date(2025, 7, 1)).total == 2


def test_unknown_price_refuses_with_a_clear_message() -> None:
    before = model(input=Decimal("1"))
    with pytest.raises(UnknownPrice) as caught:
        price(before, Usage(input_tokens=1), date(2024, 12, 31))
    assert isinstance(caught.value, PodiumError)
    assert "acme/m1" in str(caught.value)
    assert "first price takes effect on 2025-01-01" in str(caught.value)
    unpriced = ModelInfo("acme/m2", "acme", "m2", frozenset())
    with pytest.raises(UnknownPrice, match="the catalog has no price for it"):
        worst_case(unpriced, 10, 10, DAY)


def test_worst_case_covers_the_cache_write_premium_and_the_tier() -> None:
    sonnet = CATALOG.get("anthropic/claude-sonnet-4-5-20250929")
    # 1000 prompt tokens at the cache-write price (0.00000375 > input 0.000003), 500 output
    assert worst_case(sonnet, 1000, 500, DAY) == Decimal("0.00375") + Decimal("0.0075")
    pro = CATALOG.get("gemini/gemini-2.5-pro")
    # 300k prompt: tier input 0.0000025; 1000 output at the tier's 0.000015
    assert worst_case(pro, 300_000, 1000, DAY) == Decimal("0.75") + Decimal("0.015")
    with pytest.raises(ValueError, match="negative"):
        worst_case(pro, -1, 0, DAY)


CHAT_MODELS = [m for m in CATALOG if m.price_at(DAY) is not None and not m.local]


@settings(max_examples=300, deadline=None)
@given(
    info=st.sampled_from(CHAT_MODELS),
    split=st.tuples(*(st.integers(0, 400_000) for _ in range(3))),
    out=st.tuples(st.integers(0, 100_000), st.integers(0, 100_000)),
)
def test_worst_case_bounds_every_usage_it_admits(
    info: ModelInfo, split: tuple[int, int, int], out: tuple[int, int]
) -> None:
    """Whatever part of the prompt is cached and however the output splits into reasoning,
    the call never costs more than its reservation."""
    usage = Usage(
        input_tokens=split[0],
        cache_read_tokens=split[1],
        cache_write_tokens=split[2],
        output_tokens=out[0],
        reasoning_tokens=out[1],
    )
    actual = price(info, usage, DAY)
    assert actual.total <= worst_case(info, sum(split), sum(out), DAY)
    assert actual.total == sum(
        (actual.input, actual.output, actual.cache_read, actual.cache_write, actual.reasoning),
        actual.units,
    )
