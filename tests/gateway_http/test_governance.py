"""Governance on the HTTP gateway, end to end: the policy's data classes, PII redaction before a
hosted model and before anything is stored, policy violations in the audit trail, and an audit
trail that fails calls closed.

The server is ``podium serve``'s app with a gateway that keeps everything it stores on disk, in
one SQLite file (or PostgreSQL): the ledger, the audit trail, the response cache — so the tests can
search the raw bytes for canary strings. The hosted model is the OpenAI simulator (it echoes the
last user message, so a placeholder the model saw comes back in its answer); the local model is
``local/smollm2-135m-instruct``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from podium import MemoryStore
from podium.api import create_app
from podium.api.auth import ClientKeys
from podium.config import Settings
from podium.finops.ledger import Attribution, SQLLedger
from podium.gateway.breaker import Breakers
from podium.gateway.cache import CachePolicy, ResponseCache
from podium.gateway.cache_backends import SQLiteCacheBackend
from podium.gateway.pipeline import Gateway
from podium.gateway.resilience import Resilience
from podium.gateway.routing import Deployment, ModelGroup
from podium.governance import AuditLog, MasterKey, SigningKey
from podium.governance.gate import Governance
from podium.governance.journal import AuditJournal
from podium.governance.policy import Policy
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.workflows.engine import Engine
from tests.gateway_http.conftest import (
    ADMIN_TOKEN,
    DEPLOYMENT,
    MINI,
    START,
    UPSTREAM_KEY,
    _Server,
    retry_policy,
)

KEY = "pk-team-support-0123456789abcdef"
SUPPORT = Attribution(org="acme", team="support", project="helpdesk", key_id="key-support")
LOCAL = "local/smollm2-135m-instruct"

CANARIES = {
    "EMAIL": "zelda.canary@example.org",
    "PHONE": "+1 415-555-0134",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
}
PROMPT = (
    f"Hello, I am writing about my refund. Reach me at {CANARIES['EMAIL']} or "
    f"{CANARIES['PHONE']}. I paid with card {CANARIES['CREDIT_CARD']} and the refund should go to "
    f"IBAN {CANARIES['IBAN']}."
)

POLICY = """
policy: acme-test
revision: 1
default: deny
classifications:
  default: internal
  public: {destinations: [local, hosted]}
  internal: {destinations: [local, hosted]}
  confidential: {destinations: [local]}
  restricted: {destinations: [local]}
rules:
  - id: everyone-local
    allow: {models: ["local/*"]}
  - id: support-mini
    when: {teams: [support]}
    allow: {providers: [openai], models: ["openai/gpt-4o-mini"]}
pii:
  entities: [EMAIL, PHONE, CREDIT_CARD, IBAN, NATIONAL_ID, IP_ADDRESS]
  hosted: redact
  local: allow
  restore: true
"""


@dataclass
class Governed:
    url: str
    gateway: Gateway
    sim: OpenAISimulator
    audit: AuditLog
    home: Path
    store_url: str
    run: Callable[[Any], Any]
    journal: AuditJournal | None

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0)

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}", **headers}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=60)

    def records(self) -> list[Any]:
        self.run(self.gateway.flush())
        return list(self.run(self.audit.records()))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'podium.db'}"
    url: str = request.getfixturevalue("pg_url")
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE audit_records, audit_checkpoints, cost_ledger")
    return url


@pytest.fixture(params=[False, True], ids=["commit", "journal"])
def journaled(request: pytest.FixtureRequest) -> bool:
    """Whether calls wait for the audit transaction or for the audit journal's write."""
    return bool(request.param)


@pytest.fixture
def governed(
    tmp_path: Path,
    store_url: str,
    journaled: bool,
    use_simulator: Callable[..., Any],
    _stopping: list[_Server],
) -> Iterator[Governed]:
    sim: OpenAISimulator = use_simulator(OpenAISimulator, api_key=UPSTREAM_KEY)
    clock = FakeClock(start=START)
    settings = Settings(home=tmp_path / ".podium")
    hub = ModelHub(settings, catalog=Catalog.builtin())
    hosted = Deployment(
        DEPLOYMENT, hub.info(MINI), params={"base_url": f"{sim.url}/v1"}, key_ref="SIM_KEY"
    )
    local = Deployment(LOCAL, hub.info(LOCAL))
    holder: dict[str, Any] = {}

    async def build() -> Gateway:
        audit = await AuditLog.open(
            store_url, clock=clock, master=MasterKey.generate(), signer=SigningKey.generate()
        )
        ledger = await SQLLedger.open(store_url)
        cache = ResponseCache(
            SQLiteCacheBackend(tmp_path / "cache.db"), clock=clock, policy=CachePolicy()
        )
        holder["audit"] = audit
        journal = holder["journal"] = None
        if journaled:
            journal = await AuditJournal.open(
                audit, settings.home / "audit-journal", clock=clock, delay=0.01
            )
            holder["journal"] = journal
        gateway = Gateway(
            hub,
            clock=clock,
            groups=[
                ModelGroup("chat", (hosted,)),
                ModelGroup("mixed", (hosted, local)),
            ],
            resilience=Resilience(
                clock, retry_policy(), breakers=Breakers(clock), rng=random.Random(7)
            ),
            deployment_keys={DEPLOYMENT: SecretStr(UPSTREAM_KEY)},
            ledger=ledger,
            cache=cache,
            governance=Governance(
                Policy.parse(POLICY, source="policy.yaml"), audit=audit, journal=journal
            ),
        )
        gateway.on_close.extend([cache.backend.close, ledger.close, audit.close])
        if journal is not None:
            gateway.on_close.append(journal.close)  # closed first: its records go in
        return gateway

    import asyncio

    loop = asyncio.new_event_loop()
    gateway = loop.run_until_complete(build())
    loop.close()
    engine = Engine(MemoryStore(), settings=settings, gateway=gateway, clock=clock)
    app = create_app(
        settings,
        engine=engine,
        admin_token=ADMIN_TOKEN,
        gateway=gateway,
        authenticator=ClientKeys({KEY: ("key-support", SUPPORT)}),
    )
    server = _Server(app)
    server_loop = server.start()

    def run(work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, server_loop).result(30)

    yield Governed(
        f"http://127.0.0.1:{server.port}/v1",
        gateway,
        sim,
        holder["audit"],
        tmp_path,
        store_url,
        run,
        holder["journal"],
    )
    run(gateway.close())
    run(engine.close())
    server.stop()
    _stopping.append(server)


def _bytes_everywhere(g: Governed) -> bytes:
    """Every byte the server stored: the files under the test directory, or a PostgreSQL dump."""
    out = b""
    if g.store_url.startswith("postgresql"):
        dsn = g.store_url.replace("postgresql+psycopg://", "postgresql://")
        out += subprocess.run(["pg_dump", dsn], check=True, capture_output=True).stdout
    for path in sorted(g.home.rglob("*")):
        if path.is_file():
            out += path.read_bytes()
    return out


def _sent(g: Governed) -> str:
    """Every body the hosted provider received, as text."""
    return "\n".join(r.body.decode() for r in g.sim.requests)


def _ask(g: Governed, model: str, text: str, **extra: Any) -> Any:
    return g.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def test_pii_never_reaches_the_provider_nor_the_database(governed: Governed) -> None:
    answer = _ask(governed, "chat", PROMPT, temperature=0)
    # The model saw placeholders and echoed them; the caller gets its own data back.
    text = answer.choices[0].message.content or ""
    for value in CANARIES.values():
        assert value in text
    sent = _sent(governed)
    assert len(governed.sim.requests) == 1
    raw = sent
    for value in CANARIES.values():
        assert value not in raw
    assert "<EMAIL_1>" in raw
    assert "<CREDIT_CARD_1>" in raw
    assert "<IBAN_1>" in raw
    # A second identical call is a cache hit: what the cache stored was the redacted answer.
    again = _ask(governed, "chat", PROMPT, temperature=0)
    assert again.choices[0].message.content == text
    assert len(governed.sim.requests) == 1
    records = governed.records()
    assert [r.kind for r in records] == ["model_call", "model_call"]
    assert records[0].fields["pii"] == {"CREDIT_CARD": 1, "EMAIL": 1, "IBAN": 1, "PHONE": 1}
    assert records[0].fields["policy"]["rule"] == "support-mini"
    governed.run(governed.gateway.close())  # flush and close every store before reading bytes
    stored = _bytes_everywhere(governed)
    assert stored  # the search below looks at something
    for value in CANARIES.values():
        assert value.encode() not in stored
        assert value.replace(" ", "").encode() not in stored


def test_confidential_data_never_reaches_a_hosted_model(governed: Governed) -> None:
    response = governed.post(
        "/chat/completions",
        {"model": "chat", "messages": [{"role": "user", "content": "quarterly numbers"}]},
        **{"x-podium-classification": "confidential"},
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "policy_denied"
    assert "acme-test" in error["message"]
    assert "confidential" in error["message"]
    assert governed.sim.requests == []
    # A group with a local model serves it there, still without a hosted request.
    answer = governed.post(
        "/chat/completions",
        {
            "model": "mixed",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "quarterly numbers"}],
            "metadata": {"classification": "confidential"},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-podium-model"] == LOCAL
    assert governed.sim.requests == []
    records = governed.records()
    assert [r.kind for r in records] == ["policy_violation", "model_call"]
    violation = records[0].fields["policy"]
    assert violation["id"] == "acme-test"
    assert violation["rule"] == "classification"
    assert records[1].fields["classification"] == "confidential"


def test_a_model_no_rule_allows_is_denied_and_flagged(governed: Governed) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(governed, "openai/gpt-4o", "hello")
    assert "default-deny" in str(caught.value) or "deny" in str(caught.value)
    assert governed.sim.requests == []
    (record,) = governed.records()
    assert record.kind == "policy_violation"
    assert record.fields["policy"]["rule"] == "default-deny"
    assert record.fields["model_requested"] == "openai/gpt-4o"


def test_a_failed_audit_write_fails_the_call_closed(governed: Governed) -> None:
    if not governed.store_url.startswith("sqlite"):
        pytest.skip("the table is renamed through SQLite's own driver")
    if governed.journal is not None:
        pytest.skip("with a journal a call waits for the journal's write, not the store")
    _ask(governed, "chat", "first")
    path = governed.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE audit_records RENAME TO audit_records_gone")
    response = governed.post(
        "/chat/completions",
        {"model": "chat", "messages": [{"role": "user", "content": "second"}]},
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"


def _journal_fds(directory: Path) -> list[int]:
    """This process's open descriptors on audit journal files in ``directory``."""
    fds = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = Path(fd).readlink()
        except OSError:
            continue
        if target.parent == directory and target.name.endswith(".journal"):
            fds.append(int(fd.name))
    return fds


def test_a_failed_journal_write_fails_the_call_closed(governed: Governed) -> None:
    if governed.journal is None:
        pytest.skip("needs the audit journal")
    governed.journal.delay = 60  # the first record stays in the journal's open file
    _ask(governed, "chat", "first")
    # The disk fills up under the journal's open file: /dev/full answers ENOSPC to every write.
    (fd,) = _journal_fds(governed.journal.directory)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, fd)
    finally:
        os.close(full)
    response = governed.post(
        "/chat/completions",
        {"model": "chat", "messages": [{"role": "user", "content": "second"}]},
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "audit_unavailable"
    assert "audit" in error["message"]
    # The next call writes a new journal file; nothing journaled before the failure is lost.
    _ask(governed, "chat", "third")
    records = governed.records()
    assert [r.kind for r in records] == ["model_call", "model_call"]
    assert [governed.run(governed.audit.decrypt(r.seq))["prompt"] for r in records] == [
        [{"role": "user", "content": "first"}],
        [{"role": "user", "content": "third"}],
    ]
    assert governed.run(governed.audit.verify()).ok


def test_with_a_journal_a_failing_store_delays_the_records_and_loses_none(
    governed: Governed, caplog: pytest.LogCaptureFixture
) -> None:
    if governed.journal is None or not governed.store_url.startswith("sqlite"):
        pytest.skip("needs the audit journal, and the table is renamed through SQLite's driver")
    _ask(governed, "chat", "first")
    assert len(governed.records()) == 1
    path = governed.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE audit_records RENAME TO audit_records_gone")
    for text in ("second", "third"):  # answered: their records are in the journal
        assert _ask(governed, "chat", text).choices[0].message.content
    assert governed.journal.pending == 2
    with pytest.raises(Exception, match="audit_records"):
        governed.run(governed.journal.flush())
    assert governed.journal.pending == 2
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE audit_records_gone RENAME TO audit_records")
    records = governed.records()
    assert [
        governed.run(governed.audit.decrypt(r.seq))["prompt"][0]["content"] for r in records
    ] == [
        "first",
        "second",
        "third",
    ]
    assert governed.journal.pending == 0
    assert governed.run(governed.audit.verify()).ok
    failed = [r.getMessage() for r in caplog.records if "could not move" in r.getMessage()]
    assert failed
    assert "no such table: audit_records" in failed[0]


def test_streamed_answers_are_restored_across_chunks(governed: Governed) -> None:
    stream = governed.client().chat.completions.create(
        model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    for value in CANARIES.values():
        assert value in text
    raw = _sent(governed)
    for value in CANARIES.values():
        assert value not in raw
