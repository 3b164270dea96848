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
