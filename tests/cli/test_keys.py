"""``podium keys``: create (printed once), list (never a secret), revoke, rotate; organisations,
teams, projects and users; every change in the audit trail."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podium.cli.keys import keys_app
from podium.config import Settings
from podium.governance import AuditLog
from podium.governance.identity import IdentityStore, load_pepper
from podium.governance.setup import audit_keys
from podium.testing import FakeClock
from podium.types import SystemClock

KEY = re.compile(r"pod_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / ".podium"
    for name in ("PODIUM_DATABASE_URL", "PODIUM_KEY_PEPPER", "PODIUM_KEY_PEPPER_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MASTER_KEY", "MASTER_KEY_FILE", "SIGNING_KEY", "SIGNING_KEY_FILE"):
        monkeypatch.delenv(f"PODIUM_AUDIT_{name}", raising=False)
    monkeypatch.setenv("PODIUM_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return home


def invoke(*args: str) -> Any:
    return CliRunner().invoke(keys_app, list(args), catch_exceptions=False)


def _verify(home: Path, key: str) -> Any:
    async def check() -> Any:
        store = await IdentityStore.open(
            f"sqlite:///{home / 'podium.db'}", clock=SystemClock(), pepper=load_pepper(home, {})
        )
        try:
            return store.verify(key)
        finally:
            await store.close()

    return asyncio.run(check())


def test_a_key_is_printed_once_listed_without_its_secret_and_works(home: Path) -> None:
    assert invoke("teams", "create", "support").exit_code == 0
    created = invoke("create", "--team", "support", "--name", "ci", "--expires", "30d")
    assert created.exit_code == 0, created.output
    keys = KEY.findall(created.output)
    assert len(keys) == 1
    key = keys[0]
    assert "shown once" in created.output
    grant = _verify(home, key)
    assert grant is not None
    assert grant.attribution.team == "support"
    assert grant.role.value == "developer"
    listed = invoke("list")
    assert listed.exit_code == 0
    prefix = key.split("_")[1]
    assert prefix in listed.output
    assert "support" in listed.output
    assert "active" in listed.output
    assert key.rsplit("_", 1)[1] not in listed.output
    as_json = json.loads(invoke("list", "--json").output)
    assert [(k["prefix"], k["team"], k["status"], k["name"]) for k in as_json] == [
        (prefix, "support", "active", "ci")
    ]
    assert key not in json.dumps(as_json)
    assert "key_hash" not in json.dumps(as_json)


def test_revoke_and_rotate(home: Path) -> None:
    invoke("teams", "create", "ml")
    first = json.loads(invoke("create", "--team", "ml", "--role", "service", "--json").output)
    second = json.loads(invoke("create", "--team", "ml", "--json").output)
    revoked = invoke("revoke", first["id"])
    assert revoked.exit_code == 0
    assert f"revoked {first['id']}" in revoked.output
    assert _verify(home, first["key"]) is None
    again = invoke("revoke", first["id"])
    assert again.exit_code == 2
    assert "is already revoked" in again.output
    rotated = invoke("rotate", second["id"], "--grace", "0s")
    assert rotated.exit_code == 0, rotated.output
    (new_key,) = KEY.findall(rotated.output)
    assert f"replaces {second['id']}" in rotated.output
    assert _verify(home, second["key"]) is None
    assert _verify(home, new_key) is not None
    statuses = {k["id"]: k["status"] for k in json.loads(invoke("list", "--json").output)}
    assert statuses[first["id"]] == "revoked"
    assert statuses[second["id"]] == "expired"
    active = json.loads(invoke("list", "--active", "--json").output)
    assert [k["rotated_from"] for k in active] == [second["id"]]


def test_a_graceful_rotation_keeps_the_old_key_working(home: Path) -> None:
    invoke("teams", "create", "ml")
    old = json.loads(invoke("create", "--team", "ml", "--json").output)
    new = json.loads(invoke("rotate", old["id"], "--json").output)  # default grace: 24h
    assert new["rotated_from"] == old["id"]
    assert _verify(home, old["key"]) is not None
    assert _verify(home, new["key"]) is not None
    assert invoke("rotate", old["id"]).exit_code == 2  # already rotated


def test_bad_requests_are_explained(home: Path) -> None:
    invoke("teams", "create", "ml")
    cases = [
        (("create", "--team", "nope"), "no team 'nope' in organisation 'default'"),
        (("create", "--role", "admin", "--team", "ml"), "the admin role is org-wide"),
        (("create", "--team", "ml", "--expires", "soon"), "--expires: invalid duration 'soon'"),
        (("rotate", "key_nope"), "no API key 'key_nope'"),
        (("rotate", "key_nope", "--grace", "never"), "cannot stay valid forever"),
        (("teams", "create", "Not A Slug"), "invalid team name"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), result.output


def test_a_memory_store_has_no_keys(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODIUM_DATABASE_URL", "memory://")
    result = invoke("list")
    assert result.exit_code == 2
    assert "memory://" in result.output


def test_the_hierarchy_commands_and_the_audit_trail(home: Path) -> None:
    assert invoke("orgs", "create", "acme").exit_code == 0
    assert invoke("teams", "create", "eng", "--org", "acme").exit_code == 0
    made = invoke("projects", "create", "bot", "--team", "eng", "--org", "acme")
    assert made.exit_code == 0
    assert "project acme/eng/bot" in made.output
    user = invoke(
        "users",
        "create",
        "dev@example.com",
        "--role",
        "developer",
        "--team",
        "eng",
        "--org",
        "acme",
    )
    assert user.exit_code == 0, user.output
    key = invoke(
        "create", "--org", "acme", "--team", "eng", "--project", "bot", "--user", "dev@example.com"
    )
    assert key.exit_code == 0, key.output
    assert "acme" in invoke("orgs", "list").output
    assert "eng" in invoke("teams", "list", "--org", "acme").output
    assert "bot" in invoke("projects", "list", "--team", "eng").output
    assert "dev@example.com" in invoke("users", "list").output

    async def trail() -> list[Any]:
        master, signer = audit_keys(Settings(home=home), {})
        log = await AuditLog.open(
            f"sqlite:///{home / 'podium.db'}", clock=FakeClock(), master=master, signer=signer
        )
        try:
            assert (await log.verify()).ok
            return await log.records()
        finally:
            await log.close()

    records = asyncio.run(trail())
    assert [r.fields["action"] for r in records] == [
        "org.create",
        "team.create",
        "project.create",
        "user.create",
        "key.create",
    ]
    assert all(r.kind == "admin_change" and r.actor.startswith("cli") for r in records)
    (secret,) = KEY.findall(key.output)
    assert secret not in str([r.fields for r in records])
