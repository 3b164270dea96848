"""The gateway record sink, and ``podium audit verify/show/export`` as a user types them."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update
from typer.testing import CliRunner

from podium.cli import app
from podium.finops.ledger import Attribution
from podium.gateway.records import Caller, CallRecord
from podium.gateway.resilience import Attempt
from podium.gateway.routing import Deployment, RouteDecision
from podium.governance import AuditEntry, AuditSink, MasterKey, SigningKey
from podium.models.base import Capability, Usage
from podium.models.catalog import ModelInfo
from podium.store import schema
from podium.store.sql import store_url
from tests.governance.conftest import OpenLog


def call_record() -> CallRecord:
    info = ModelInfo("openai/gpt-x", "openai", "gpt-x", frozenset(Capability))
    route = RouteDecision(
        group="fast", strategy="cost", candidates=("gpt-x@eu",), excluded=(),
        ranked=(Deployment("gpt-x@eu", info),), reason="cheapest", scores={},
        prompt_tokens=12, needed_tokens=40,
    )  # fmt: skip
    return CallRecord(
        request_id="req_1",
        caller=Caller(Attribution(org="acme", team="ml", project="bot", key_id="k_1"), "k_1"),
        kind="chat",
        requested="fast",
        served="openai/gpt-x",
        deployment="gpt-x@eu",
        provider="openai",
        usage=Usage(input_tokens=12, output_tokens=5),
        cost=Decimal("0.000123"),
        outcome="ok",
        route=route,
        attempts=(Attempt("gpt-x@eu", "ok", 1, duration_s=0.2),),
        latency_s=0.25,
    )


async def test_the_sink_appends_a_model_call(open_log: OpenLog) -> None:
    log = await open_log()
    sink = AuditSink(log)
    await sink(call_record())
    [record] = await log.records()
    assert (record.kind, record.actor, record.team) == ("model_call", "k_1", "ml")
    assert record.fields["cost"] == "0.000123"
    assert record.fields["model_requested"] == "fast"
    assert record.fields["model_served"] == "openai/gpt-x"
    assert record.fields["route"] == {
        "group": "fast",
        "strategy": "cost",
        "chosen": "gpt-x@eu",
        "reason": "cheapest",
    }
    payload = await log.decrypt(1)
    assert payload["usage"]["input_tokens"] == 12
    assert payload["attempts"][0]["deployment"] == "gpt-x@eu"
    assert (await log.verify()).ok


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    master, signer = MasterKey.generate(), SigningKey.generate()
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path / ".podium"))
    monkeypatch.setenv("PODIUM_AUDIT_MASTER_KEY", master.to_base64())
    (tmp_path / "signing.key").write_text(signer.to_base64())
    monkeypatch.setenv("PODIUM_AUDIT_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    async def fill() -> None:
        from podium.governance import AuditLog
        from podium.testing import FakeClock

        log = await AuditLog.open(
            f"sqlite:///{tmp_path / '.podium' / 'podium.db'}",
            clock=FakeClock(), master=master, signer=signer, checkpoint_every=5,
        )  # fmt: skip
        try:
            await log.append_many(
                [
                    AuditEntry("approval", "alice", "ml", {"run": f"r{i}"}, {"note": f"ok {i}"})
                    for i in range(12)
                ]
            )
            await log.shred([2])
        finally:
            await log.close()

    asyncio.run(fill())
    invoke.db = tmp_path / ".podium" / "podium.db"  # type: ignore[attr-defined]
    invoke.master = master  # type: ignore[attr-defined]
    return invoke


def test_cli_verify_show_and_export(cli: Any, tmp_path: Path) -> None:
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact: 12 records, 2 signed checkpoints" in result.stdout

    shown = cli("audit", "show", "--limit", "3", "--decrypt", "--json")
    assert shown.exit_code == 0, shown.output
    items = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [i["seq"] for i in items] == [10, 11, 12]
    assert items[-1]["payload"] == {"note": "ok 11"}
    table = cli("audit", "show", "--limit", "12", "--decrypt")
    assert "<shredded>" in table.stdout
    assert "ok 0" in table.stdout
    assert "ok 0" not in cli("audit", "show", "--limit", "12").stdout  # no --decrypt: no content

    out = tmp_path / "audit.jsonl"
    exported = cli("audit", "export", str(out))
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["type"] for x in lines].count("record") == 12
    assert [x["seq"] for x in lines if x["type"] == "checkpoint"] == [5, 10]
    assert "ok 3" not in out.read_text()  # payloads stay encrypted

    engine = create_engine(store_url(f"sqlite:///{cli.db}"))
    with engine.begin() as conn:
        conn.execute(
            update(schema.audit_records)
            .where(schema.audit_records.c.seq == 7)
            .values(actor="mallory")
        )
    engine.dispose()
    broken = cli("audit", "verify", "--checkpoints", str(out))
    assert broken.exit_code == 1
    assert "record 7:" in broken.stderr
    assert "actor" in broken.stderr


def test_cli_refuses_a_missing_database_and_a_wrong_key(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = cli("audit", "verify", "--db", f"sqlite:///{tmp_path / 'nope.db'}")
    assert missing.exit_code == 2
    assert "no database at" in missing.stderr
    wrong = MasterKey.generate()
    monkeypatch.setenv("PODIUM_AUDIT_MASTER_KEY", wrong.to_base64())
    result = cli("audit", "show", "--decrypt")
    assert result.exit_code == 2
    assert f"configured master key is {wrong.key_id}" in result.stderr
    assert wrong.to_base64() not in result.output
    monkeypatch.setenv("PODIUM_AUDIT_MASTER_KEY", "garbage!")
    result = cli("audit", "show")
    assert result.exit_code == 2
    assert "not valid base64" in result.stderr


def test_cli_moves_the_journal_of_a_server_that_died_before_it_verifies(
    cli: Any, tmp_path: Path
) -> None:
    from tests.governance.test_audit_journal import crash

    journals = tmp_path / ".podium" / "audit-journal"
    crash(f"sqlite:///{cli.db}", journals, cli.master, 3)
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "moved into the chain 3 audit record(s)" in result.stderr
    assert "intact: 15 records" in result.stdout
    assert list(journals.glob("*.journal")) == []
    shown = cli("audit", "show", "--limit", "1", "--decrypt", "--json")
    assert json.loads(shown.stdout)["payload"]["prompt"] == "secret prompt 2"
