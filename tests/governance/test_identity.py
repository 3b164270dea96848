"""The identity store on SQLite and PostgreSQL: organisations, teams, projects, users, API keys
(shown once, kept as a keyed hash, expiring, revocable, rotatable) and the audit of changes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from podium.errors import ConfigError
from podium.finops.ledger import Attribution
from podium.governance import AuditLog
from podium.governance.identity import (
    DEFAULT_ORG,
    IdentityConflict,
    IdentityError,
    IdentityNotFound,
    IdentityStore,
    load_pepper,
    parse_duration,
)
from podium.governance.rbac import ROLE_PERMISSIONS, Role
from podium.testing import FakeClock
from podium.types import SystemClock

PEPPER = b"p" * 32
KEY = re.compile(r"^pod_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}$")
Open = Callable[..., Awaitable[IdentityStore]]


def _empty_identity_tables(url: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE api_keys, users, projects, teams, orgs")


@pytest.fixture
def url(db_url: str) -> str:
    """The test database (``db_url``: a SQLite file or the session's PostgreSQL, emptied)."""
    if db_url.startswith("postgresql"):
        _empty_identity_tables(db_url)
    return db_url


@pytest.fixture
async def open_identity(url: str, clock: FakeClock) -> AsyncIterator[Open]:
    opened: list[IdentityStore] = []

    async def open_(**kwargs: object) -> IdentityStore:
        options: dict[str, object] = {"clock": clock, "pepper": PEPPER}
        options.update(kwargs)
        store = await IdentityStore.open(url, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def identity(open_identity: Open) -> IdentityStore:
    store = await open_identity()
    await store.create_team("support", actor="alice")
    await store.create_team("ml", actor="alice")
    return store


# -- organisations, teams, projects, users --------------------------------------------------------


async def test_the_hierarchy_is_created_and_listed(identity: IdentityStore) -> None:
    await identity.create_org("acme", actor="root")
    await identity.create_team("eng", org="acme", actor="root")
    await identity.create_project("chatbot", team="eng", org="acme", actor="root")
    await identity.create_project("faq", team="support", actor="root")
    assert [o.name for o in await identity.list_orgs()] == ["acme", DEFAULT_ORG]
    assert [(t.org, t.name) for t in await identity.list_teams()] == [
        ("acme", "eng"),
        (DEFAULT_ORG, "ml"),
        (DEFAULT_ORG, "support"),
    ]
    assert [t.name for t in await identity.list_teams(org="acme")] == ["eng"]
    projects = await identity.list_projects(team="eng")
    assert [(p.org, p.team, p.name, p.created_by) for p in projects] == [
        ("acme", "eng", "chatbot", "root")
    ]


async def test_duplicates_and_missing_parents_are_refused(identity: IdentityStore) -> None:
    with pytest.raises(IdentityConflict, match="team 'support' already exists"):
        await identity.create_team("support", actor="x")
    with pytest.raises(IdentityConflict, match="organisation 'default' already exists"):
        await identity.create_org(DEFAULT_ORG, actor="x")
    with pytest.raises(IdentityNotFound, match="no organisation 'nope'"):
        await identity.create_team("eng", org="nope", actor="x")
    with pytest.raises(IdentityNotFound, match="no team 'nope' in organisation 'default'"):
        await identity.create_project("p", team="nope", actor="x")
    with pytest.raises(IdentityError, match="invalid team name 'Bad Name'"):
        await identity.create_team("Bad Name", actor="x")


async def test_users_have_a_team_unless_their_role_is_org_wide(identity: IdentityStore) -> None:
    dev = await identity.create_user(" Bob@Example.com ", role="developer", team="ml", actor="a")
    auditor = await identity.create_user("carol@example.com", role=Role.AUDITOR, actor="a")
    assert (dev.email, dev.team, dev.role) == ("bob@example.com", "ml", Role.DEVELOPER)
    assert (auditor.team, auditor.role) == (None, Role.AUDITOR)
    assert (await identity.get_user("bob@example.com")).user_id == dev.user_id
    assert [u.email for u in await identity.list_users(team="ml")] == ["bob@example.com"]
    with pytest.raises(IdentityError, match="the developer role belongs to a team"):
        await identity.create_user("d@example.com", role="developer", actor="a")
    with pytest.raises(IdentityError, match="the admin role is org-wide"):
        await identity.create_user("e@example.com", role="admin", team="ml", actor="a")
    with pytest.raises(IdentityError, match="unknown role 'root'; use one of: admin, team-admin"):
        await identity.create_user("f@example.com", role="root", team="ml", actor="a")
    with pytest.raises(IdentityConflict, match="already exists"):
        await identity.create_user("bob@example.com", role="viewer", team="ml", actor="a")


# -- keys -----------------------------------------------------------------------------------------


async def test_a_new_key_is_shown_once_and_grants_its_role(identity: IdentityStore) -> None:
    await identity.create_project("faq", team="support", actor="a")
    new = await identity.create_key(
        actor="alice", team="support", role="developer", project="faq", use_case="triage"
    )
    assert KEY.match(new.key)
    assert new.key.startswith(f"pod_{new.record.prefix}_")
    assert new.key not in repr(new)
    assert "shown once" in repr(new)
    grant = identity.verify(new.key)
    assert grant is not None
    assert grant.role is Role.DEVELOPER
    assert grant.permissions == ROLE_PERMISSIONS[Role.DEVELOPER]
    assert grant.attribution == Attribution(
        org=DEFAULT_ORG,
        team="support",
        project="faq",
        key_id=new.record.key_id,
        use_case="triage",
    )
    listed = await identity.list_keys(team="support")
    assert [k.key_id for k in listed] == [new.record.key_id]
    assert listed[0] == new.record
    assert new.key not in repr(listed)


async def test_org_wide_keys_carry_no_team(identity: IdentityStore) -> None:
    admin = await identity.create_key(actor="root", role="admin")
    grant = identity.verify(admin.key)
    assert grant is not None
    assert grant.attribution.team is None
    assert grant.attribution.org == DEFAULT_ORG
    with pytest.raises(IdentityError, match="the auditor role is org-wide: it takes no team"):
        await identity.create_key(actor="root", role="auditor", team="ml")
    with pytest.raises(IdentityError, match="the service role belongs to a team"):
        await identity.create_key(actor="root", role="service")
    with pytest.raises(IdentityNotFound, match="no project 'nope' in team 'ml'"):
        await identity.create_key(actor="root", team="ml", project="nope")


async def test_a_users_key_cannot_exceed_the_user(identity: IdentityStore) -> None:
    user = await identity.create_user("v@example.com", role="viewer", team="ml", actor="a")
    key = await identity.create_key(actor="a", role="viewer", user="v@example.com")
    assert (key.record.team, key.record.user_id) == ("ml", user.user_id)
    with pytest.raises(IdentityError, match="is viewer: their key cannot be developer"):
        await identity.create_key(actor="a", role="developer", user=user.user_id)
    with pytest.raises(IdentityError, match="cannot belong elsewhere"):
        await identity.create_key(actor="a", role="viewer", team="support", user=user.user_id)


async def test_malformed_and_unknown_tokens_are_refused(identity: IdentityStore) -> None:
    new = await identity.create_key(actor="a", team="ml")
    forged = new.key[:-1] + ("A" if new.key[-1] != "A" else "B")  # right prefix, wrong secret
    for token in ("", "pod_", new.key[:-1], new.key + "x", "xod" + new.key[3:], forged):
        assert identity.verify(token) is None, token
    other = f"pod_{'Z' * 8}_{'a' * 43}"
    assert identity.verify(other) is None


async def test_the_secret_is_never_stored(url: str, identity: IdentityStore) -> None:
    new = await identity.create_key(actor="a", team="ml", name="ci")
    secret = new.key.rsplit("_", 1)[1]
    stored_hash = _stored_hash(url, new.record.key_id)
    expected = hmac.new(PEPPER, new.key.encode(), hashlib.sha256).hexdigest()
    assert stored_hash == expected  # the keyed hash...
    assert stored_hash != hashlib.sha256(new.key.encode()).hexdigest()  # ...not a plain one
    if url.startswith("sqlite"):
        await identity.close()
        raw = b"".join(
            p.read_bytes() for p in Path(url.removeprefix("sqlite:///")).parent.iterdir()
        )
        assert new.record.prefix.encode() in raw  # the search reads what the store wrote
        assert secret.encode() not in raw
        assert new.key.encode() not in raw


async def test_another_pepper_accepts_no_key(open_identity: Open, identity: IdentityStore) -> None:
    new = await identity.create_key(actor="a", team="ml")
    other = await open_identity(pepper=b"q" * 32)
    assert other.verify(new.key) is None
    assert identity.verify(new.key) is not None


async def test_a_key_expires_with_the_clock(identity: IdentityStore, clock: FakeClock) -> None:
    new = await identity.create_key(actor="a", team="ml", expires_in=3600)
    assert new.record.expires_at == clock.now() + 3600
    clock.advance(3599)
    assert identity.verify(new.key) is not None
    clock.advance(1)
    assert identity.verify(new.key) is None
    assert (await identity.get_key(new.record.key_id)).status(clock.now()) == "expired"
    forever = await identity.create_key(actor="a", team="ml", expires_in=None)
    clock.advance(10 * 365 * 86_400)
    assert identity.verify(forever.key) is not None


async def test_a_revoked_key_stops_at_once(identity: IdentityStore, clock: FakeClock) -> None:
    new = await identity.create_key(actor="a", team="ml")
    revoked = await identity.revoke_key(new.record.key_id, actor="b")
    assert identity.verify(new.key) is None
    assert revoked.revoked_at == clock.now()
    assert revoked.status(clock.now()) == "revoked"
    with pytest.raises(IdentityConflict, match="is already revoked"):
        await identity.revoke_key(new.record.key_id, actor="b")
    with pytest.raises(IdentityNotFound, match="no API key 'key_nope'"):
        await identity.revoke_key("key_nope", actor="b")


async def test_rotation_keeps_the_old_key_for_the_grace_only(
    identity: IdentityStore, clock: FakeClock
) -> None:
    old = await identity.create_key(actor="a", team="ml", role="service", expires_in=30 * 86_400)
    clock.advance(86_400)
    new = await identity.rotate_key(old.record.key_id, actor="b", grace=3600)
    assert new.key != old.key
    assert KEY.match(new.key)
    assert new.record.rotated_from == old.record.key_id
    assert (new.record.team, new.record.role) == ("ml", Role.SERVICE)
    assert new.record.expires_at == clock.now() + 30 * 86_400  # the same lifetime
    replaced = await identity.get_key(old.record.key_id)
    assert replaced.rotated_at == clock.now()
    assert replaced.status(clock.now()) == "rotating"
    assert identity.verify(old.key) is not None
    assert identity.verify(new.key) is not None
    clock.advance(3600)
    assert identity.verify(old.key) is None
    assert identity.verify(new.key) is not None
    with pytest.raises(IdentityConflict, match="is expired: it cannot be rotated"):
        await identity.rotate_key(old.record.key_id, actor="b")


async def test_a_key_is_rotated_once_and_never_past_its_expiry(
    identity: IdentityStore, clock: FakeClock
) -> None:
    old = await identity.create_key(actor="a", team="ml", expires_in=600)
    new = await identity.rotate_key(old.record.key_id, actor="b", grace=86_400, expires_in=None)
    assert (await identity.get_key(old.record.key_id)).expires_at == clock.now() + 600
    assert new.record.expires_at is None
    with pytest.raises(IdentityConflict, match="was already rotated"):
        await identity.rotate_key(old.record.key_id, actor="b")
    now = await identity.rotate_key(new.record.key_id, actor="b", grace=0)
    assert identity.verify(new.key) is None
    assert identity.verify(now.key) is not None
    revoked = await identity.create_key(actor="a", team="ml")
    await identity.revoke_key(revoked.record.key_id, actor="b")
    with pytest.raises(IdentityConflict, match="is revoked"):
        await identity.rotate_key(revoked.record.key_id, actor="b")


async def test_another_replicas_revocation_arrives_with_the_next_refresh(
    open_identity: Open, identity: IdentityStore
) -> None:
    new = await identity.create_key(actor="a", team="ml")
    other = await open_identity()
    assert other.verify(new.key) is not None
    await identity.revoke_key(new.record.key_id, actor="b")
    assert identity.verify(new.key) is None
    assert other.verify(new.key) is not None  # no database round trip per call...
    assert await other.refresh() == 0
    assert other.verify(new.key) is None  # ...until the snapshot is reloaded


async def test_the_background_refresh_picks_up_changes(
    open_identity: Open, identity: IdentityStore
) -> None:
    other = await open_identity(clock=SystemClock(), refresh_seconds=0.02)
    task = asyncio.create_task(other.refresh_forever())
    try:
        new = await identity.create_key(actor="a", team="ml", expires_in=None)
        async with asyncio.timeout(5):
            while other.verify(new.key) is None:
                await asyncio.sleep(0.01)
        await identity.revoke_key(new.record.key_id, actor="b")
        async with asyncio.timeout(5):
            while other.verify(new.key) is not None:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


# -- the audit of changes -------------------------------------------------------------------------


async def test_every_change_is_audited_without_secrets(
    open_identity: Open, open_log: Callable[..., Awaitable[AuditLog]], url: str
) -> None:
    log = await open_log()
    identity = await open_identity(audit=log)
    await identity.create_org("acme", actor="root")
    await identity.create_team("eng", org="acme", actor="root")
    await identity.create_project("bot", team="eng", org="acme", actor="root")
    user = await identity.create_user(
        "d@example.com", role="developer", team="eng", org="acme", actor="lead"
    )
    new = await identity.create_key(actor="lead", org="acme", team="eng", user=user.user_id)
    rotated = await identity.rotate_key(new.record.key_id, actor="lead", grace=60)
    await identity.revoke_key(rotated.record.key_id, actor="root")
    records = await log.records()
    assert [(r.kind, r.actor, r.team, r.fields["action"]) for r in records] == [
        ("admin_change", "root", None, "org.create"),
        ("admin_change", "root", "eng", "team.create"),
        ("admin_change", "root", "eng", "project.create"),
        ("admin_change", "lead", "eng", "user.create"),
        ("admin_change", "lead", "eng", "key.create"),
        ("admin_change", "lead", "eng", "key.rotate"),
        ("admin_change", "root", "eng", "key.revoke"),
    ]
    assert records[4].fields == {
        "action": "key.create",
        "key_id": new.record.key_id,
        "org": "acme",
        "team": "eng",
        "role": "developer",
    }
    assert records[5].fields["rotated_from"] == new.record.key_id
    payload = await log.decrypt(records[4].seq)
    assert isinstance(payload, dict)
    assert payload["prefix"] == new.record.prefix
    texts = [str(r.fields) for r in records]
    texts += [str(await log.decrypt(r.seq)) for r in records]
    for key in (new.key, rotated.key):
        secret = key.rsplit("_", 1)[1]
        assert not any(secret in t for t in texts)
        assert not any(_stored_hash(url, k) in t for t in texts for k in (new.record.key_id,))
    assert "d@example.com" not in str(records[3].fields)  # the email is in the sealed payload
    assert (await log.verify()).ok


# -- pepper and durations -------------------------------------------------------------------------


def test_the_pepper_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    raw = bytes(range(32))
    assert load_pepper(tmp_path, {"PODIUM_KEY_PEPPER": base64.b64encode(raw).decode()}) == raw
    file = tmp_path / "pepper"
    file.write_text(base64.b64encode(raw * 2).decode() + "\n")
    assert load_pepper(tmp_path, {"PODIUM_KEY_PEPPER_FILE": str(file)}) == raw * 2
    home = tmp_path / "home"
    made = load_pepper(home, {})
    assert len(made) == 32
    assert stat.S_IMODE((home / "key_pepper").stat().st_mode) == 0o600
    assert load_pepper(home, {}) == made  # created once, then reused
    with pytest.raises(ConfigError, match="has 16 bytes; it needs at least 32"):
        load_pepper(tmp_path, {"PODIUM_KEY_PEPPER": base64.b64encode(b"x" * 16).decode()})
    with pytest.raises(ConfigError, match=r"from \$PODIUM_KEY_PEPPER is not valid base64"):
        load_pepper(tmp_path, {"PODIUM_KEY_PEPPER": "not base64!"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_pepper(tmp_path, {"PODIUM_KEY_PEPPER_FILE": str(tmp_path / "missing")})


def test_durations() -> None:
    assert parse_duration("90d") == 90 * 86_400
    assert parse_duration("24h") == 86_400
    assert parse_duration("1.5m") == 90
    assert parse_duration("2w") == 14 * 86_400
    assert parse_duration("never") is None
    with pytest.raises(ValueError, match="invalid duration '90 days'"):
        parse_duration("90 days")


def _stored_hash(url: str, key_id: str) -> str:
    from sqlalchemy import create_engine, select

    from podium.store import schema
    from podium.store.sql import store_url

    engine = create_engine(store_url(url))
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    select(schema.api_keys.c.key_hash).where(schema.api_keys.c.key_id == key_id)
                ).scalar_one()
            )
    finally:
        engine.dispose()
