"""Lineage of a workflow step and of a gateway call: inputs, template version, model, policy
version and upstream steps, by hash — the same before and after retention purges the content."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from podium import Engine
from podium.cli.lineage import lineage as lineage_command
from podium.finops.ledger import Attribution
from podium.governance import AuditEntry, AuditLog
from podium.governance.chain import canonical_json
from podium.governance.gate import AuditWriter
from podium.governance.lineage import Lineage, LineageNotFound, lineage, step_id_of
from podium.governance.workflow_audit import AuditedStore
from podium.store import open_store
from podium.testing import FakeClock, FakeGateway
from podium.types import Store
from podium.workflows.plan import load_text
from tests.conftest import truncate
from tests.governance.conftest import OpenLog

WORKFLOW = """
name: triage
inputs:
  ticket: {type: string}
  lang: {type: string, default: en}
steps:
  - id: summarise
    model: fast
    system: You summarise support tickets.
    prompt: "Summarise in {{ inputs.lang }}: {{ inputs.ticket }}"
  - id: checks
    parallel:
      - id: classify
        model: fast
        prompt: "Label this summary: {{ steps.summarise.output.text }}"
      - id: urgency
        model: fast
        prompt: "How urgent is it? {{ steps.summarise.output.text }}"
  - id: route
    model: fast
    prompt: "Route {{ steps.classify.output.text }} / {{ steps.urgency.output.text }}"
output:
  queue: "{{ steps.route.output.text }}"
"""

POLICY = {"id": "acme", "version": "sha256:1a2b3c4d5e6f", "rule": "eng-hosted"}


@dataclass
class World:
    log: AuditLog
    store: Store
    run_id: str


@pytest.fixture
async def world(open_log: OpenLog, db_url: str) -> AsyncIterator[World]:
    """A completed run of WORKFLOW whose steps and model calls are in the audit trail."""
    if db_url.startswith("postgresql"):
        truncate(db_url)
    clock = FakeClock()
    log = await open_log(clock=clock)
    inner = await open_store(db_url)
    store = AuditedStore(inner, AuditWriter(log))  # journals steps into the trail
    engine = Engine(store, gateway=FakeGateway({"fast": "an answer"}), clock=clock)
    result = await engine.run(
        load_text(WORKFLOW), {"ticket": "card charged twice"}, owner=Attribution("acme", "ml")
    )
    await engine.close()
    assert result.status == "completed"
    # what the governed gateway writes for each call a step makes (FakeGateway writes none)
    await log.append_many(
        [
            AuditEntry(
                "model_call",
                "workflow",
                "ml",
                {
                    "request_id": f"req_{step.replace('/', '_')}",
                    "org": "acme",
                    "run_id": result.run_id,
                    "step": step,
                    "model_requested": "fast",
                    "model_served": served,
                    "policy": POLICY,
                    "classification": "confidential",
                },
                {"prompt": "…", "response": "an answer"},
            )
            for step, served in (
                ("summarise", "openai/gpt-4o-mini"),
                ("checks/classify", "local/qwen"),
                ("route", "openai/gpt-4o-mini"),
            )
        ]
    )
    yield World(log, store, result.run_id)
    await inner.close()


def completion_hash(events: list, path: str) -> str:  # type: ignore[type-arg]
    [event] = [e for e in events if e.kind == "step_completed" and e.step == path]
    return hashlib.sha256(event.data.encode()).hexdigest()


async def test_a_steps_lineage(world: World) -> None:
    run = await world.store.get_run(world.run_id)
    events = await world.store.events(world.run_id)
    found = await lineage(f"{world.run_id}/checks/classify", audit=world.log, store=world.store)
    assert (found.kind, found.step, found.step_kind, found.status) == (
        "workflow_step",
        "checks/classify",
        "model",
        "completed",
    )
    assert (found.workflow, found.org, found.team) == ("triage", "acme", "ml")
    assert found.source_sha256 == run.source_hash
    assert found.inputs_sha256 == hashlib.sha256(run.inputs.encode()).hexdigest()
    assert found.reads_inputs == ()  # it reads the summary, not the inputs
    parts = {"prompt": "Label this summary: {{ steps.summarise.output.text }}"}
    assert found.template is not None
    assert found.template.parts == parts
    assert found.template.sha256 == hashlib.sha256(canonical_json(parts).encode()).hexdigest()
    assert found.template.model == "fast"
    assert found.output_sha256 == completion_hash(events, "checks/classify")
    assert found.output_audited is True  # the trail's workflow_step record has the same hash
    [up] = found.upstream
    assert (up.id, up.path) == ("summarise", "summarise")
    assert up.output_sha256 == completion_hash(events, "summarise")
    assert found.models == ("local/qwen",)
    assert found.policy == POLICY
    assert found.classification == "confidential"
    assert found.purged is False
    data = json.loads(json.dumps(found.to_dict()))  # JSON-ready
    assert data["upstream"] == [
        {"id": "summarise", "path": "summarise", "output_sha256": up.output_sha256}
    ]
    assert data["policy"] == POLICY


async def test_upstream_steps_of_a_step_reading_two(world: World) -> None:
    events = await world.store.events(world.run_id)
    found = await lineage(f"{world.run_id}/route", audit=world.log, store=world.store)
    assert [(u.id, u.path, u.output_sha256) for u in found.upstream] == [
        ("classify", "checks/classify", completion_hash(events, "checks/classify")),
        ("urgency", "checks/urgency", completion_hash(events, "checks/urgency")),
    ]
    first = await lineage(f"{world.run_id}/summarise", audit=world.log, store=world.store)
    assert first.reads_inputs == ("lang", "ticket")
    assert first.upstream == ()
    assert first.template is not None
    assert set(first.template.parts) == {"system", "prompt"}


async def test_a_calls_lineage_leads_to_its_step(world: World) -> None:
    found = await lineage("req_checks_classify", audit=world.log, store=world.store)
    assert (found.kind, found.id, found.step, found.run_id) == (
        "model_call",
        "req_checks_classify",
        "checks/classify",
        world.run_id,
    )
    assert [c.request_id for c in found.model_calls] == ["req_checks_classify"]
    assert found.model_calls[0].model_served == "local/qwen"
    assert [u.id for u in found.upstream] == ["summarise"]
    assert found.template is not None


async def test_lineage_survives_retention(world: World) -> None:
    before = await lineage(f"{world.run_id}/route", audit=world.log, store=world.store)
    assert await world.store.purge_run_content(world.run_id)
    for record in await world.log.records():
        await world.log.shred([record.seq])
    after = await lineage(f"{world.run_id}/route", audit=world.log, store=world.store)
    assert after.purged is True
    assert after.output_sha256 == before.output_sha256
    assert after.inputs_sha256 == before.inputs_sha256
    assert after.upstream == before.upstream
    assert after.output_audited is True  # still equal to the audit record's hash
    assert after.models == before.models == ("openai/gpt-4o-mini",)
    assert all(c.shredded for c in after.model_calls)


async def test_unknown_ids_are_named(world: World) -> None:
    with pytest.raises(LineageNotFound, match="no model call 'req_nope'"):
        await lineage("req_nope", audit=world.log, store=world.store)
    with pytest.raises(LineageNotFound, match="no run 'nope'"):
        await lineage("nope/summarise", audit=world.log, store=world.store)
    with pytest.raises(LineageNotFound, match=r"has no step 'summarize' \(steps that completed:"):
        await lineage(f"{world.run_id}/summarize", audit=world.log, store=world.store)
    with pytest.raises(LineageNotFound, match="no audit trail"):
        await lineage("req_checks_classify", audit=None, store=world.store)


async def test_without_an_audit_trail_a_step_is_still_traced(world: World) -> None:
    found = await lineage(f"{world.run_id}/checks/classify", audit=None, store=world.store)
    assert found.model_calls == ()
    assert found.output_audited is None
    assert [u.id for u in found.upstream] == ["summarise"]
    assert any("no audit trail" in n for n in found.notes)


def test_step_ids_of_journal_paths() -> None:
    assert step_id_of("claims/verify") == "verify"
    assert step_id_of("docs[2]/ocr") == "ocr"
    assert step_id_of("docs[2]") == "docs"
    assert step_id_of("recs/1:similar") == "similar"
    assert step_id_of("pay#fallback") == "pay"


async def test_the_cli_prints_a_tree_and_json(world: World, db_url: str) -> None:
    app = typer.Typer()
    app.command()(lineage_command)
    runner = CliRunner()
    ref = f"{world.run_id}/checks/classify"
    result = await asyncio.to_thread(runner.invoke, app, [ref, "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "upstream steps" in result.output
    assert "local/qwen" in result.output
    assert "matches the audit trail" in result.output
    result = await asyncio.to_thread(runner.invoke, app, [ref, "--db", db_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["upstream"][0]["path"] == "summarise"
    assert data["policy"] == POLICY
    result = await asyncio.to_thread(runner.invoke, app, ["req_nope", "--db", db_url])
    assert result.exit_code == 1
    assert "no model call 'req_nope'" in result.output


def test_lineage_to_dict_of_a_bare_call() -> None:
    found = Lineage("req_1", "model_call", team="ml")
    assert found.to_dict()["models"] == []
    assert found.policy is None
