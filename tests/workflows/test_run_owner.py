"""A run's owner: recorded on its header, journaled, and charged for every model call the run
makes — in sub-workflows, and after a resume in another engine (another process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from podium import Engine, MemoryStore
from podium.config import Settings
from podium.dsl import model, review, sub, workflow
from podium.finops.ledger import Attribution, MemoryLedger
from podium.gateway.pipeline import Gateway
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock, FakeGateway
from podium.testing.simulators.openai import OpenAISimulator
from podium.types import DEFAULT_ORG, Event, ModelCall, RunRecord
from podium.workflows.engine import OwnedGateway, owner_of

MINI = "openai/gpt-4o-mini"
OWNER = Attribution(
    org="acme",
    team="ml",
    project="search",
    key_id="key-ml",
    use_case="triage",
    run_id="not-this-run",  # a caller's run_id/step never leak into the run's calls
    step="not-this-step",
)

INNER = workflow("inner", model("ask", MINI, "{{ inputs.q }}"), inputs={"q": "string"})
OWNED = workflow(
    "owned",
    model("first", MINI, "Say hello."),
    review("gate", "Go on?"),
    sub("child", INNER, q="Say goodbye."),
    output="{{ steps.child.output.text }}",
)


def _gateway(tmp_path: Path, sim: OpenAISimulator, clock: FakeClock) -> Gateway:
    settings = Settings(
        home=tmp_path,
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr("sk-owner")},
    )
    hub = ModelHub(settings, catalog=Catalog.builtin())
    return Gateway(hub, clock=clock, ledger=MemoryLedger())


async def test_every_model_call_of_a_run_is_charged_to_its_owner_even_after_a_resume(
    tmp_path: Path, use_simulator: Callable[..., Any]
) -> None:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key="sk-owner")
    clock = FakeClock(start=1_795_000_000.0)
    gateway = _gateway(tmp_path, sim, clock)
    try:
        store = MemoryStore()
        first = Engine(store, gateway=gateway, clock=clock)
        waiting = await first.run(OWNED, owner=OWNER)
        assert waiting.status == "waiting", waiting.error
        await first.approve(waiting.run_id, "gate", by="lead")
        await first.close()

        record = await store.get_run(waiting.run_id)
        assert (record.org, record.team) == ("acme", "ml")
        started = json.loads((await store.events(waiting.run_id))[0].data or "{}")
        assert started["owner"] == {
            "org": "acme",
            "team": "ml",
            "project": "search",
            "key_id": "key-ml",
            "use_case": "triage",
        }

        # Another engine, as another process would: the owner comes back from the journal.
        second = Engine(store, gateway=gateway, clock=clock)
        try:
            done = await second.resume(waiting.run_id, OWNED)
        finally:
            await second.close()
        assert done.ok, done.error
        assert done.output == "You said: Say goodbye."  # the simulator echoes the prompt

        await gateway.flush()
        assert gateway.ledger is not None
        rows = {row.attribution.step: row.attribution for row in await gateway.ledger.entries()}
        assert set(rows) == {"first", "child/ask"}  # the sub-workflow's step too
        for step, charged in rows.items():
            assert charged == Attribution(
                org="acme",
                team="ml",
                project="search",
                key_id="key-ml",
                use_case="triage",
                run_id=waiting.run_id,
                step=step,
            )
    finally:
        await gateway.close()


async def test_a_run_without_an_owner_is_the_default_orgs_and_journals_as_before() -> None:
    fake = FakeGateway({MINI: "hi"})
    engine = Engine(MemoryStore(), gateway=fake, clock=FakeClock())
    try:
        result = await engine.run(workflow("plain", model("m", MINI, "Hello?")))
        record = await engine.store.get_run(result.run_id)
        events = await engine.store.events(result.run_id)
    finally:
        await engine.close()
    assert result.ok, result.error
    assert (record.org, record.team) == (DEFAULT_ORG, None)
    assert set(json.loads(events[0].data or "{}")) == {"inputs"}  # no owner key
    assert fake.calls[0].metadata["org"] == DEFAULT_ORG
    assert "team" not in fake.calls[0].metadata


async def test_the_owner_overrides_what_a_call_says_about_who_pays() -> None:
    fake = FakeGateway({MINI: "hi"})
    owned = OwnedGateway(fake, {"org": "acme", "team": "ml"})
    await owned.call(
        ModelCall(MINI, [{"role": "user", "content": "x"}], metadata={"team": "ops", "step": "s"})
    )
    assert dict(fake.calls[0].metadata) == {"org": "acme", "team": "ml", "step": "s"}


def test_a_run_journaled_before_owners_takes_its_owner_from_the_header() -> None:
    record = RunRecord("r", "wf", "running", 1.0, 1.0, org="acme", team="ml")
    started = Event("r", 1, "run_started", data='{"inputs": {}}')
    assert owner_of(record, [started]) == Attribution(org="acme", team="ml")
    unowned = RunRecord("r", "wf", "running", 1.0, 1.0)
    assert owner_of(unowned, [started]) == Attribution(org=DEFAULT_ORG)
    journaled = Event("r", 1, "run_started", data='{"owner": {"org": "x", "team": "t"}}')
    assert owner_of(record, [journaled]) == Attribution(org="x", team="t")
