"""Workflows' model steps take the same call path in-process: priced, attributed to the run and
step, recorded in the ledger — for a hosted chat model (simulated) and real local models."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from podium import Engine, MemoryStore, load_text
from podium.config import Settings
from podium.finops.ledger import MemoryLedger
from podium.finops.pricing import price
from podium.gateway.pipeline import Gateway
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.testing.simulators.server import Reply

WF = """
name: triage
inputs:
  email: string
steps:
  - id: mood
    model: local/vader-sentiment
    prompt: "{{ inputs.email }}"
  - id: answer
    model: openai/gpt-4o-mini
    system: "You answer support emails."
    prompt: "The customer is {{ steps.mood.output.text }}: {{ inputs.email }}"
    params: {max_tokens: 50, temperature: 0}
output:
  mood: "{{ steps.mood.output.text }}"
  reply: "{{ steps.answer.output.text }}"
  cost: "{{ steps.answer.output.cost }}"
"""


async def test_model_steps_go_through_the_gateway_and_land_in_the_ledger(
    tmp_path: Path, use_simulator: Callable[..., Any]
) -> None:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key="sk-wf")
    sim.script(
        Reply(text="Sorry about that, a refund is on its way.", input_tokens=30, output_tokens=9)
    )
    clock = FakeClock(start=1_795_000_000.0)
    settings = Settings(
        home=tmp_path,
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr("sk-wf")},
    )
    ledger = MemoryLedger()
    gateway = Gateway(ModelHub(settings, catalog=Catalog.builtin()), clock=clock, ledger=ledger)
    engine = Engine(MemoryStore(), gateway=gateway, clock=clock)
    try:
        workflow = load_text(WF, "triage.yaml")
        result = await engine.run(workflow, {"email": "My parcel never came. This is awful!"})
    finally:
        await engine.close()
    assert result.ok, result.error
    assert result.output["mood"] == "negative"  # the real VADER lexicon
    assert result.output["reply"] == "Sorry about that, a refund is on its way."
    await gateway.flush()
    rows = {row.attribution.step: row for row in await ledger.entries()}
    assert set(rows) == {"mood", "answer"}
    answer = rows["answer"]
    assert answer.attribution.run_id == result.run_id
    assert answer.request_id == f"{result.run_id}/answer#1"
    info = gateway.hub.info("openai/gpt-4o-mini")
    assert answer.cost == price(info, answer.usage, answer.day).total > 0
    assert Decimal(result.output["cost"]) == answer.cost
    assert rows["mood"].cost == 0
    assert rows["mood"].provider == "local"
    sent = sim.requests[-1].json()
    assert sent["messages"][-1]["content"].startswith("The customer is negative:")
    await gateway.close()


async def test_the_warm_pool_loads_the_configured_local_models(tmp_path: Path) -> None:
    from podium.gateway.routing import Deployment, ModelGroup
    from podium.models.local.runtime import LocalModel

    hub = ModelHub(Settings(home=tmp_path), catalog=Catalog.builtin())
    vader = Deployment("vader", hub.info("local/vader-sentiment"))
    gateway = Gateway(hub, groups=[ModelGroup("mood", (vader,))])
    assert await gateway.warm_local() == ["vader"]
    model = gateway.adapter(vader)
    assert isinstance(model, LocalModel)
    assert model.stats().loaded
    await gateway.close()


EDGE = """
name: edge
inputs:
  question: string
steps:
  - id: answer
    model: openai/gpt-4o-mini
    fallbacks: [local/smollm2-135m-instruct]
    prompt: "{{ inputs.question }}"
    params: {max_tokens: 8, temperature: 0, seed: 1}
output: "{{ steps.answer.output }}"
"""


def _edge_engine(settings: Settings, ledger: MemoryLedger) -> tuple[Engine, Gateway]:
    gateway = Gateway(ModelHub(settings, catalog=Catalog.builtin()), ledger=ledger)
    return Engine(MemoryStore(), gateway=gateway), gateway


async def test_with_no_api_key_the_local_fallback_serves_and_the_hosted_price_is_reported(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger()
    engine, gateway = _edge_engine(Settings(home=tmp_path), ledger)
    try:
        result = await engine.run(load_text(EDGE, "edge.yaml"), {"question": "Say hello."})
    finally:
        await engine.close()
    assert result.ok, result.error
    out = result.output
    assert out["model"] == "local/smollm2-135m-instruct"
    assert Decimal(out["cost"]) == 0
    route = out["route"]
    assert route["preferred"] == "openai/gpt-4o-mini"
    assert route["served"] == "local/smollm2-135m-instruct"
    assert "no API key for openai: set OPENAI_API_KEY" in route["reason"]
    await gateway.flush()
    [row] = await ledger.entries()
    hosted = price(gateway.hub.info("openai/gpt-4o-mini"), row.usage, row.day).total
    assert hosted > 0
    assert Decimal(route["would_cost"]) == hosted == row.baseline_cost
    await gateway.close()


async def test_with_a_key_the_preferred_hosted_model_serves(
    tmp_path: Path, use_simulator: Callable[..., Any]
) -> None:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key="sk-edge")
    sim.script(Reply(text="Hello!", input_tokens=5, output_tokens=2))
    settings = Settings(
        home=tmp_path,
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr("sk-edge")},
    )
    engine, gateway = _edge_engine(settings, MemoryLedger())
    try:
        result = await engine.run(load_text(EDGE, "edge.yaml"), {"question": "Say hello."})
    finally:
        await engine.close()
        await gateway.close()
    assert result.ok, result.error
    assert result.output["text"] == "Hello!"
    assert result.output["route"] == {
        "preferred": "openai/gpt-4o-mini",
        "served": "openai/gpt-4o-mini",
        "reason": "preferred model",
        "would_cost": None,
    }
    assert len(sim.requests) == 1


async def test_a_hosted_model_alone_and_keyless_fails_naming_the_variable(tmp_path: Path) -> None:
    wf = EDGE.replace("    fallbacks: [local/smollm2-135m-instruct]\n", "")
    engine, gateway = _edge_engine(Settings(home=tmp_path), MemoryLedger())
    try:
        result = await engine.run(load_text(wf, "edge.yaml"), {"question": "Say hello."})
    finally:
        await engine.close()
        await gateway.close()
    assert result.status == "failed"
    assert result.error is not None
    assert "no API key for openai: set OPENAI_API_KEY" in result.error["message"]


async def test_task_models_take_fallbacks_and_need_no_prompt(tmp_path: Path) -> None:
    wf = """
name: mood
steps:
  - id: mood
    model: openai/omni-moderation-latest
    fallbacks: [local/profanity-check]
    params: {input: "you are a wonderful person"}
output: "{{ steps.mood.output }}"
"""
    engine, gateway = _edge_engine(Settings(home=tmp_path), MemoryLedger())
    try:
        result = await engine.run(load_text(wf, "mood.yaml"), {})
    finally:
        await engine.close()
        await gateway.close()
    assert result.ok, result.error
    assert result.output["text"] == "ok"
    assert result.output["model"] == "local/profanity-check"
    assert "no API key for openai" in result.output["route"]["reason"]


def test_a_model_step_without_prompt_or_task_input_is_a_located_error() -> None:
    import pytest

    from podium.errors import DefinitionError

    wf = "name: bad\nsteps:\n  - id: ask\n    model: local/vader-sentiment\n"
    with pytest.raises(DefinitionError) as info:
        load_text(wf, "bad.yaml")
    assert "bad.yaml:4" in str(info.value)
    assert "params.input or params.image" in str(info.value)
