"""Retention with a frozen clock: audit records, finished runs and cache entries just inside their
rule's window are kept, just outside are deleted; hashes survive; the chain still verifies."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podium import Engine
from podium.cli.retention import retention_app
from podium.errors import RunNotFound
from podium.finops.ledger import Attribution
from podium.gateway.cache import StoredEntry
from podium.gateway.cache_backends import MemoryCacheBackend, SQLiteCacheBackend
from podium.governance import AuditEntry, AuditLog, PayloadShredded
from podium.governance.retention import (
    DAY,
    RetentionJob,
    RetentionScheduler,
    namespace_team,
)
from podium.store import open_store
from podium.store.purge import PURGED
from podium.testing import FakeClock, FakeGateway
from podium.types import Event, RunRecord, RunUpdate, Store
from podium.workflows.history import steps_of
from podium.workflows.plan import load_text
from tests.conftest import truncate
from tests.governance.conftest import OpenLog

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Rule:
    """A retention rule of the shape the job reads (the policy's has more selectors)."""

    id: str
    days: int
    teams: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None

    def matches(self, team: str | None, classification: str | None) -> bool:
        return (self.teams is None or team in self.teams) and (
            self.classes is None or classification in self.classes
        )


CONFIDENTIAL_30D = Rule("confidential-30d", 30, classes=("confidential",))
ML_90D = Rule("ml-90d", 90, teams=("ml",))
ALL_365D = Rule("default-1y", 365)


def call(team: str | None, classification: str | None, **fields: Any) -> AuditEntry:
    header: dict[str, Any] = {"request_id": f"req_{team}_{classification}", **fields}
    if classification is not None:
        header["classification"] = classification
    return AuditEntry("model_call", "k_1", team, header, {"prompt": "secret", "team": team})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """The run store in the audit trail's database (as in production)."""
    if db_url.startswith("postgresql"):
        truncate(db_url)
    opened = await open_store(db_url)
    yield opened
    await opened.close()


# -- the audit trail ------------------------------------------------------------------------------


async def test_audit_records_are_shredded_just_outside_their_window(
    open_log: OpenLog, clock: FakeClock
) -> None:
    log: AuditLog = await open_log(clock=clock)
    await log.append_many(
        [
            call("ml", "confidential"),  # 1
            call("ml", "internal"),  # 2
            call("search", "confidential"),  # 3
            call("ml", None),  # 4: no class
            call("search", "internal"),  # 5
        ]
    )
    job = RetentionJob(log, None, [], [ALL_365D, ML_90D, CONFIDENTIAL_30D], clock)
    assert [r.id for r in job.rules] == ["confidential-30d", "ml-90d", "default-1y"]

    clock.advance(30 * DAY - 1)  # just inside 30 days
    report = await job.run()
    assert report.audit_shredded == 0
    clock.advance(1)  # exactly 30 days: still not *older* than 30 days
    assert (await job.run()).audit_shredded == 0

    clock.advance(0.5)  # just outside
    dry = await job.run(dry_run=True)
    assert (dry.dry_run, dry.audit_shredded) == (True, 2)
    assert await log.decrypt(1) == {"prompt": "secret", "team": "ml"}  # a dry run deletes nothing
    report = await job.run()
    by_rule = {r.rule_id: r.audit_shredded for r in report.rules}
    assert by_rule == {"confidential-30d": 2, "ml-90d": 0, "default-1y": 0}
    assert {r.seq for r in await log.records() if r.shredded} == {1, 3}
    with pytest.raises(PayloadShredded):
        await log.decrypt(3)
    assert await log.decrypt(2) == {"prompt": "secret", "team": "ml"}
    assert (await log.verify()).ok  # headers and hashes stay: the chain verifies
    assert (await job.run()).audit_shredded == 0  # idempotent

    clock.advance(60 * DAY)  # 90 days and a half: ml's other records go
    report = await job.run()
    assert {r.rule_id: r.audit_shredded for r in report.rules}["ml-90d"] == 2
    assert {r.seq for r in await log.records() if r.shredded} == {1, 2, 3, 4}
    clock.advance(275 * DAY)  # past a year: everything
    assert (await job.run()).audit_shredded == 1
    result = await log.verify()
    assert result.ok, str(result)
    assert result.records == 5


async def test_no_rules_delete_nothing(open_log: OpenLog, clock: FakeClock) -> None:
    log = await open_log(clock=clock)
    await log.append(call("ml", "confidential"))
    clock.advance(10_000 * DAY)
    report = await RetentionJob(log, None, [], [], clock).run()
    assert (report.audit_shredded, report.rules) == (0, ())
    assert await log.decrypt(1) == {"prompt": "secret", "team": "ml"}


# -- the run store --------------------------------------------------------------------------------

WORKFLOW = """
name: triage
inputs:
  ticket: {type: string}
steps:
  - id: summarise
    model: fast
    system: You summarise support tickets.
    prompt: "Summarise: {{ inputs.ticket }}"
  - id: classify
    model: fast
    prompt: "Label this summary: {{ steps.summarise.output.text }}"
output:
  label: "{{ steps.classify.output.text }}"
"""


async def start(store: Store, clock: FakeClock, team: str, ticket: str) -> str:
    engine = Engine(store, gateway=FakeGateway({"fast": "an answer"}), clock=clock)
    try:
        result = await engine.run(
            load_text(WORKFLOW), {"ticket": ticket}, owner=Attribution(org="acme", team=team)
        )
    finally:
        await engine.close()
    assert result.status == "completed"
    return result.run_id


async def test_finished_runs_lose_their_content_and_keep_its_hashes(
    open_log: OpenLog, store: Store, clock: FakeClock
) -> None:
    log = await open_log(clock=clock)
    ml = await start(store, clock, "ml", "my card 4111 was charged twice")
    search = await start(store, clock, "search", "the search box is slow")
    # the gateway recorded the ml run's calls as confidential (the search run's carry no class)
    await log.append_many(
        [
            call("ml", "confidential", run_id=ml, step="summarise"),
            call("search", None, run_id=search, step="summarise"),
        ]
    )
    before = await store.get_run(ml)
    before_events = await store.events(ml)
    job = RetentionJob(log, store, [], [CONFIDENTIAL_30D, ALL_365D], clock)

    clock.advance(30 * DAY - 1)
    assert (await job.run()).runs_purged == 0
    clock.advance(2)
    report = await job.run()
    assert {r.rule_id: r.runs_purged for r in report.rules} == {
        "confidential-30d": (ml,),
        "default-1y": (),
    }
    after = await store.get_run(ml)
    assert json.loads(after.inputs) == {
        PURGED: {"sha256": hashlib.sha256(before.inputs.encode()).hexdigest()}
    }
    assert before.result is not None
    assert after.result is not None
    assert "4111" not in after.result
    assert "an answer" not in after.result
    assert (after.status, after.team, after.source_hash) == ("completed", "ml", before.source_hash)
    events = await store.events(ml)
    assert [e.seq for e in events] == [e.seq for e in before_events]
    for old, new in zip(before_events, events, strict=True):
        if old.kind == "step_completed":
            data = json.loads(new.data or "")
            assert data["o"] == {
                PURGED: {"sha256": hashlib.sha256((old.data or "").encode()).hexdigest()}
            }
        elif old.kind == "run_started":
            assert "4111" not in (new.data or "")
            assert json.loads(new.data or "")["owner"]["team"] == "ml"  # not content: kept
        else:
            assert new == old
    assert [s.status for s in steps_of(events)] == ["completed", "completed"]  # still readable
    assert "slow" in (await store.get_run(search)).inputs  # no class: the 1-year rule

    assert (await job.run()).runs_purged == 0  # idempotent
    clock.advance(335 * DAY)
    report = await job.run()
    assert {r.rule_id: r.runs_purged for r in report.rules}["default-1y"] == (search,)


async def test_running_runs_are_never_purged(store: Store, clock: FakeClock) -> None:
    run = RunRecord("r_wait", "w", "waiting", T0, T0, inputs='{"x": 1}', team="ml")
    await store.create_run(run, [Event("r_wait", 1, "run_started", "", 0, T0, '{"inputs":{}}')])
    clock.advance(1000 * DAY)
    report = await RetentionJob(None, store, [], [ALL_365D], clock).run()
    assert report.runs_purged == 0
    assert (await store.get_run("r_wait")).inputs == '{"x": 1}'


@pytest.mark.parametrize("keep_hash", [True, False])
async def test_purge_run_content_on_every_store(any_store: Store, keep_hash: bool) -> None:
    """The store half, on memory, SQLite and PostgreSQL: placeholders, hashes, idempotence."""
    inputs, output = '{"ticket":"secret"}', '{"o":{"text":"secret answer"},"m":{"model":"m1"}}'
    await any_store.create_run(
        RunRecord("r_1", "w", "running", T0, T0, inputs=inputs, team="ml"),
        [
            Event(
                "r_1", 1, "run_started", "", 0, T0, '{"inputs":{"ticket":"secret"},"file":"w.yaml"}'
            )
        ],
    )
    await any_store.append(
        [
            Event("r_1", 2, "step_completed", "a", 0, T0, output),
            Event("r_1", 3, "review_requested", "b", 0, T0, '{"prompt":"ok?","data":"secret"}'),
            Event("r_1", 4, "step_failed", "c", 1, T0, '{"message":"boom","final":true}'),
            Event("r_1", 5, "run_completed", "", 0, T0, None),
        ],
        RunUpdate("completed", T0 + 1, result='{"label":"secret"}'),
    )
    assert await any_store.purge_run_content("r_1", keep_hash=keep_hash) is True
    run = await any_store.get_run("r_1")
    digest = hashlib.sha256(inputs.encode()).hexdigest() if keep_hash else None
    assert json.loads(run.inputs) == {PURGED: {"sha256": digest}}
    assert run.result is not None
    assert "secret" not in run.result
    events = {e.seq: e for e in await any_store.events("r_1")}
    assert all("secret" not in (e.data or "") for e in events.values())
    completed = json.loads(events[2].data or "")
    assert completed["m"] == {"model": "m1"}
    expected = hashlib.sha256(output.encode()).hexdigest() if keep_hash else None
    assert completed["o"] == {PURGED: {"sha256": expected}}
    assert json.loads(events[1].data or "")["file"] == "w.yaml"
    assert events[4].data == '{"message":"boom","final":true}'  # errors are not content
    assert (run.status, run.updated_at) == ("completed", T0 + 1)
    assert await any_store.purge_run_content("r_1") is False  # purged already
    with pytest.raises(RunNotFound):
        await any_store.purge_run_content("nope")


# -- caches ---------------------------------------------------------------------------------------


def entry(i: int, created_at: float) -> StoredEntry:
    return StoredEntry(f"{i:064x}", "{}", created_at, created_at + 1000 * DAY)


async def test_cache_entries_are_purged_per_team(tmp_path: Path, clock: FakeClock) -> None:
    memory, sqlite = MemoryCacheBackend(), SQLiteCacheBackend(tmp_path / "cache.sqlite3")
    try:
        for backend in (memory, sqlite):
            await backend.put("org:acme/team:ml", entry(1, T0 - 7 * DAY - 1), T0)  # outside
            await backend.put("org:acme/team:ml", entry(2, T0 - 7 * DAY + 1), T0)  # inside
            await backend.put("org:acme/team:search", entry(3, T0 - 7 * DAY - 1), T0)
            await backend.put("org:acme/team:search", entry(4, T0 - 365 * DAY - 1), T0)
            await backend.put("org:acme", entry(5, T0 - 365 * DAY - 1), T0)
        rules = [Rule("ml-7d", 7, teams=("ml",)), ALL_365D]
        job = RetentionJob(None, None, [memory, sqlite], rules, clock)
        dry = await job.run(dry_run=True)
        assert dry.cache_entries is None  # a cache cannot count without deleting
        assert await memory.get("org:acme/team:ml", f"{1:064x}", T0) is not None
        report = await job.run()
        by_rule = {r.rule_id: (r.cache_namespaces, r.cache_entries) for r in report.rules}
        assert by_rule == {
            "ml-7d": (("org:acme/team:ml",) * 2, 2),
            "default-1y": (("org:acme", "org:acme/team:search") * 2, 4),
        }
        for backend in (memory, sqlite):
            left = {
                ns: [i for i in range(1, 6) if await backend.get(ns, f"{i:064x}", T0)]
                for ns in ("org:acme/team:ml", "org:acme/team:search", "org:acme")
            }
            assert left == {"org:acme/team:ml": [2], "org:acme/team:search": [3], "org:acme": []}
    finally:
        await sqlite.close()


def test_namespace_team() -> None:
    assert namespace_team("org:acme/team:ml") == "ml"
    assert namespace_team("org:acme") is None


# -- the schedule ---------------------------------------------------------------------------------


async def test_the_scheduler_runs_the_job_every_period(open_log: OpenLog, clock: FakeClock) -> None:
    log = await open_log(clock=clock)
    await log.append(call("ml", "confidential"))
    job = RetentionJob(log, None, [], [Rule("one-day", 1)], clock)
    scheduler = RetentionScheduler(job, every_s=6 * 3600)
    scheduler.start()
    try:
        for _ in range(200):
            if scheduler.runs >= 6:
                break
            await asyncio.sleep(0.01)
    finally:
        await scheduler.stop()
    assert scheduler.runs >= 6
    assert not scheduler.running
    assert set(clock.sleeps) == {6 * 3600}
    # the frozen clock moved 6 hours per tick: the record went at the 6th run (30 h), once
    # it was more than a day old
    assert (await log.records())[0].shredded
    assert scheduler.last is not None
    assert scheduler.last.at >= T0 + 30 * 3600


async def test_a_failing_run_does_not_stop_the_schedule(clock: FakeClock) -> None:
    class Broken(Rule):
        def matches(self, team: str | None, classification: str | None) -> bool:
            raise RuntimeError("policy store unreachable")

    memory = MemoryCacheBackend()
    await memory.put("org:a/team:b", entry(1, T0), T0)
    scheduler = RetentionScheduler(
        RetentionJob(None, None, [memory], [Broken("x", 1)], clock), every_s=60
    )
    assert await scheduler.run_once() is None
    assert await scheduler.run_once() is None
    assert (scheduler.failures, scheduler.runs) == (2, 0)
    assert scheduler.last_error == "RuntimeError: policy store unreachable"


def test_negative_days_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        RetentionJob(None, None, [], [Rule("bad", -1)], clock)


# -- the CLI --------------------------------------------------------------------------------------

POLICY = """
policy: test
default: allow
retention:
  - id: confidential-30d
    classifications: [confidential]
    days: 30
  - id: default-1y
    days: 365
"""


async def test_cli_runs_the_policy_rules(open_log: OpenLog, db_url: str, tmp_path: Path) -> None:
    log = await open_log(clock=FakeClock(1_000_000.0))  # long ago
    await log.append_many([call("ml", "confidential"), call("ml", "internal")])
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    runner = CliRunner(env={"PODIUM_HOME": str(tmp_path)})  # no default cache file there
    args = ["run", "--policy", str(policy), "--db", db_url]
    result = await asyncio.to_thread(runner.invoke, retention_app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would delete: 2 audit payloads" in result.output
    assert not any(r.shredded for r in await log.records())
    result = await asyncio.to_thread(runner.invoke, retention_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {r["rule"]: r["audit_shredded"] for r in report["rules"]} == {
        "confidential-30d": 1,
        "default-1y": 1,
    }
    assert all(r.shredded for r in await log.records())
    missing = tmp_path / "nowhere.sqlite3"
    result = await asyncio.to_thread(runner.invoke, retention_app, [*args, "--cache", str(missing)])
    assert result.exit_code == 2
    assert "no cache file" in result.output
