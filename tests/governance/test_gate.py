"""The governance gate on the in-process call path: ceilings, PII blocking and redaction, the
audit writer's group commit, streamed restoration, workflow steps and approvals in the audit
trail, and the embedded defaults (keys created once, every call audited)."""

from __future__ import annotations

import asyncio
import stat
from collections import Counter
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from podium import Engine, load_text
from podium.config import Settings
from podium.finops.ledger import Attribution
from podium.gateway.build import open_gateway
from podium.gateway.config import GatewayConfig
from podium.gateway.pipeline import Gateway
from podium.gateway.records import Caller, CallOptions
from podium.governance import AuditEntry, AuditLog
from podium.governance.gate import (
    LEAD_MAX,
    AuditWriter,
    Governance,
    Governed,
    PiiBlocked,
    StreamRestorer,
)
from podium.governance.pii import PlaceholderVault
from podium.governance.policy import Policy, PolicyDenied, Subject
from podium.governance.workflow_audit import audited
from podium.models.base import ChatChunk, ChatRequest, Message
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.store import open_store
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from tests.governance.conftest import OpenLog

START = 1_795_000_000.0
SUPPORT = Caller(Attribution(org="acme", team="support", key_id="k1"), subject="k1")

POLICY = """
policy: gate-test
default: allow
classifications:
  default: internal
  internal: {destinations: [local, hosted]}
  secret: {destinations: [local, hosted], pii: {hosted: block}}
ceilings:
  - id: small-calls
    when: {teams: [support]}
    max_output_tokens: 100
    max_cost_per_call: "0.001"
pii:
  entities: [EMAIL, PHONE, CREDIT_CARD]
  hosted: redact
  local: allow
  restore: true
"""


def _gateway(tmp_path: Path, sim: OpenAISimulator, governance: Governance) -> Gateway:
    settings = Settings(
        home=tmp_path,
        provider_urls={"openai": f"{sim.url}/v1"},
        provider_keys={"openai": SecretStr("sk-gate")},
    )
    hub = ModelHub(settings, catalog=Catalog.builtin())
    return Gateway(hub, clock=FakeClock(start=START), governance=governance)


def _chat(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest("openai/gpt-4o-mini", (Message("user", text),), **kw)


@pytest.fixture
def sim(use_simulator: Callable[..., Any]) -> OpenAISimulator:
    simulator: OpenAISimulator = use_simulator(OpenAISimulator, api_key="sk-gate")
    return simulator


async def test_the_output_ceiling_is_applied_and_enforced(
    tmp_path: Path, sim: OpenAISimulator
) -> None:
    gateway = _gateway(tmp_path, sim, Governance(Policy.parse(POLICY)))
    try:
        served = await gateway.chat(_chat("hi", temperature=0), SUPPORT)
        assert served.response.text
        assert (
            sim.requests[-1].json()["max_completion_tokens"] == 100
        )  # the ceiling, set for the caller
        with pytest.raises(PolicyDenied) as caught:
            await gateway.chat(_chat("hi", max_tokens=500), SUPPORT)
        assert caught.value.rule_id == "small-calls"
        assert "max_tokens=500" in str(caught.value)
        assert len(sim.requests) == 1
    finally:
        await gateway.close()


async def test_the_cost_ceiling_refuses_before_the_provider(
    tmp_path: Path, sim: OpenAISimulator
) -> None:
    gateway = _gateway(tmp_path, sim, Governance(Policy.parse(POLICY)))
    try:
        # 100 output tokens of gpt-4o-mini cost far less than $0.001; a huge prompt does not.
        with pytest.raises(PolicyDenied) as caught:
            await gateway.chat(_chat("word " * 6000), SUPPORT)
        assert caught.value.rule_id == "small-calls"
        assert "$0.001" in str(caught.value)
        assert sim.requests == []
    finally:
        await gateway.close()


async def test_pii_is_blocked_for_a_class_that_blocks_it(
    tmp_path: Path, sim: OpenAISimulator
) -> None:
    gateway = _gateway(tmp_path, sim, Governance(Policy.parse(POLICY)))
    try:
        options = CallOptions(classification="secret")
        with pytest.raises(PiiBlocked) as caught:
            await gateway.chat(_chat("mail ann@example.com"), SUPPORT, options)
        assert "1 EMAIL" in str(caught.value)
        assert "ann@example.com" not in str(caught.value)
        assert sim.requests == []
        # Without personal data the same class goes through.
        served = await gateway.chat(_chat("hello there"), SUPPORT, options)
        assert served.response.text
    finally:
        await gateway.close()


async def test_redaction_and_restoration_in_process(tmp_path: Path, sim: OpenAISimulator) -> None:
    gateway = _gateway(tmp_path, sim, Governance(Policy.parse(POLICY)))
    try:
        served = await gateway.chat(_chat("call +1 415-555-0134 or ann@example.com"), SUPPORT)
        sent = sim.requests[-1].body.decode()
        assert "ann@example.com" not in sent
        assert "555-0134" not in sent
        assert "<EMAIL_1>" in sent
        assert "ann@example.com" in served.response.text  # the echo, restored
    finally:
        await gateway.close()


def _governed(vault: PlaceholderVault) -> Governed:
    decision = Policy.default().decide(Subject(), "local/x")
    return Governed(decision, Subject(), vault=vault)


async def test_stream_restorer_handles_placeholders_split_across_chunks() -> None:
    vault = PlaceholderVault()
    from podium.governance.pii import PiiDetector

    text = "write to bob@example.org please"
    redacted = vault.redact(text, PiiDetector(["EMAIL"]).detect(text))
    assert redacted == "write to <EMAIL_1> please"
    pieces = ["write to <EM", "AIL", "_1> ple", "ase <", "3 is not one"]

    async def chunks() -> AsyncIterator[ChatChunk]:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield ChatChunk(piece, finish_reason="stop" if last else None)

    out = [c.delta async for c in StreamRestorer(_governed(vault)).wrap(chunks())]
    assert "".join(out) == "write to bob@example.org please <3 is not one"
    assert "<EM" not in out[0]  # held back until the placeholder closed


class TickingClock(FakeClock):
    """Each reading a second later: records committed in one transaction share their time."""

    def now(self) -> float:
        self.advance(1.0)
        return super().now()


async def test_the_audit_writer_commits_concurrent_appends_together(open_log: OpenLog) -> None:
    log: AuditLog = await open_log(clock=TickingClock())
    writer = AuditWriter(log)
    entries = [AuditEntry(kind="model_call", actor=f"k{i}", header={"i": i}) for i in range(60)]
    records = await asyncio.gather(*(writer.append(e) for e in entries))
    assert sorted(r.seq for r in records) == list(range(1, 61))
    assert [r.fields["i"] for r in sorted(records, key=lambda r: r.seq)] == list(range(60))
    assert len({r.ts for r in records}) == 1  # the first caller led: one transaction
    # more than a leader takes (LEAD_MAX): the rest go to the drain task, one more transaction
    more = [AuditEntry(kind="model_call", actor="k", header={"i": i}) for i in range(LEAD_MAX + 50)]
    leads = log.appends_now  # SQLite; on PostgreSQL the drain task writes every batch
    records = await asyncio.gather(*(writer.append(e) for e in more))
    assert sorted(r.seq for r in records) == list(range(61, 61 + LEAD_MAX + 50))
    transactions = sorted(Counter(r.ts for r in records).values())
    assert transactions == ([50, LEAD_MAX] if leads else [LEAD_MAX + 50])
    assert await writer.append_many([]) == []
    assert await log.append_many([]) == []
    alone = [await writer.append(e) for e in entries[:3]]  # one at a time: one each
    assert len({r.ts for r in alone}) == 3
    assert (await log.verify()).ok


async def test_a_call_cancelled_while_leading_the_audit_write_is_still_recorded(
    open_log: OpenLog,
) -> None:
    """The leader yields once before it commits; cancelled there (a client hanging up), its
    record goes in all the same, with the records queued behind it."""
    log: AuditLog = await open_log()
    writer = AuditWriter(log)
    first = AuditEntry(kind="model_call", actor="leader", header={"request_id": "r1"})
    second = AuditEntry(kind="model_call", actor="follower", header={"request_id": "r2"})
    leading = asyncio.create_task(writer.append(first))
    await asyncio.sleep(0)  # the leader is at its yield (or, on PostgreSQL, queued)
    following = asyncio.create_task(writer.append(second))  # will queue behind it
    leading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leading
    assert (await following).actor == "follower"
    await writer.close()
    assert [(r.seq, r.actor) for r in await log.records()] == [(1, "leader"), (2, "follower")]
    assert (await log.verify()).ok


def assess(amount: int) -> dict[str, Any]:
    return {"amount": amount, "large": amount > 100}


REVIEWED = """
name: refund
inputs:
  amount: number
steps:
  - id: assess
    call: tests.governance.test_gate:assess
    input: {amount: "{{ inputs.amount }}"}
  - id: approve
    review: "Refund {{ inputs.amount }}?"
output:
  done: "yes"
"""


async def test_workflow_steps_runs_and_approvals_are_audited(
    tmp_path: Path, sim: OpenAISimulator
) -> None:
    settings = Settings(home=tmp_path / ".podium", database_url=f"sqlite:///{tmp_path}/p.db")
    gateway = await open_gateway(settings, GatewayConfig.default(), clock=FakeClock(start=START))
    store = await open_store(settings.store_url)
    engine = Engine(audited(store, gateway), gateway=gateway, clock=FakeClock(start=START))
    try:
        workflow = load_text(REVIEWED, "refund.yaml")
        started = await engine.run(workflow, {"amount": 120})
        assert started.status == "waiting"
        await engine.approve(started.run_id, "approve", by="maria")
        finished = await engine.resume(started.run_id, workflow)
        assert finished.ok, finished.error
        assert gateway.governance is not None
        assert gateway.governance.audit is not None
        records = await gateway.governance.audit.records()
    finally:
        await engine.close()
        await store.close()
        await gateway.close()
    kinds = [(r.kind, r.fields.get("event"), r.fields.get("step")) for r in records]
    assert ("workflow_run", "run_started", None) in kinds
    assert ("workflow_step", "step_completed", "assess") in kinds
    assert ("workflow_step", "review_requested", "approve") in kinds
    assert ("workflow_run", "run_completed", None) in kinds
    (approval,) = [r for r in records if r.kind == "approval"]
    assert approval.actor == "maria"
    assert approval.fields["step"] == "approve"
    assert approval.fields["run_id"] == started.run_id
    step = next(r for r in records if r.fields.get("step") == "assess")
    assert len(step.fields["data_sha256"]) == 64


async def test_the_embedded_defaults_audit_every_call_with_keys_made_once(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / ".podium", database_url=f"sqlite:///{tmp_path}/p.db")
    gateway = await open_gateway(
        settings, GatewayConfig.default(), clock=FakeClock(start=START), environ={}
    )
    try:
        assert gateway.governance is not None
        assert gateway.governance.policy.id == Policy.default().id
        from podium.models.base import ClassifyRequest

        served = await gateway.task(
            "classify", ClassifyRequest("local/vader-sentiment", ("what a lovely day",)), SUPPORT
        )
        assert served.record.outcome == "ok"
        assert gateway.governance.audit is not None
        journal = gateway.governance.writer.journal if gateway.governance.writer else None
        assert journal is not None  # on SQLite, calls wait for the journal's write
        assert journal.directory == tmp_path / ".podium" / "audit-journal"
        assert journal.sync is False  # synchronous=NORMAL: a write is as durable as a commit
        assert journal.pending == 1
        (record,) = await gateway.governance.audit.records()
        assert record.kind == "model_call"
        assert record.fields["policy"]["id"] == Policy.default().id
        assert record.fields["model_served"] == "local/vader-sentiment"
        await gateway.task(
            "classify", ClassifyRequest("local/vader-sentiment", ("another day",)), SUPPORT
        )
        assert journal.pending == 1
    finally:
        await gateway.close()
    assert list((tmp_path / ".podium" / "audit-journal").iterdir()) == []  # closing moved it
    log = await AuditLog.open(settings.store_url, clock=FakeClock())
    try:
        assert [r.seq for r in await log.records()] == [1, 2]
    finally:
        await log.close()
    keys = tmp_path / ".podium" / "audit"
    for name in ("master.key", "signing.key"):
        mode = (keys / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    first = (keys / "master.key").read_bytes()
    again = await open_gateway(settings, GatewayConfig.default(), environ={})
    await again.close()
    assert (keys / "master.key").read_bytes() == first  # made once, then reused


def test_decimal_ceiling_is_exact() -> None:
    policy = Policy.parse(POLICY)
    decision = policy.decide(Subject(team="support"), "openai/gpt-4o-mini")
    assert decision.max_cost_per_call == Decimal("0.001")
    Governance(policy).check_cost(
        Governed(decision, Subject(team="support")), Decimal("0.001")
    )  # equal is allowed
    with pytest.raises(PolicyDenied):
        Governance(policy).check_cost(
            Governed(decision, Subject(team="support")), Decimal("0.0010000001")
        )
