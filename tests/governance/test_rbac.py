"""The role table: every permission it names exists, admin holds them all, and nobody can hand
out more than they hold."""

from __future__ import annotations

import pytest

from podium.api.auth import PERMISSIONS, AdminToken, ClientKeys
from podium.finops.ledger import Attribution
from podium.governance.rbac import (
    ORG_WIDE_ROLES,
    ROLE_HELP,
    ROLE_PERMISSIONS,
    Role,
    is_org_wide,
    may_grant,
    parse_role,
)


def test_the_table_covers_every_role_with_known_permissions() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role) == set(ROLE_HELP)
    for role, permissions in ROLE_PERMISSIONS.items():
        assert permissions <= set(PERMISSIONS), role
    # A new permission fails here until someone places it in the table.
    assert ROLE_PERMISSIONS[Role.ADMIN] == set(PERMISSIONS)


def test_what_each_role_may_and_may_not_do() -> None:
    assert ROLE_PERMISSIONS[Role.SERVICE] == {"models:call"}
    assert not any(p.startswith("admin:") for p in ROLE_PERMISSIONS[Role.DEVELOPER])
    assert "admin:write" in ROLE_PERMISSIONS[Role.TEAM_ADMIN]
    assert all(p.endswith(":read") for p in ROLE_PERMISSIONS[Role.AUDITOR])
    assert "audit:read" in ROLE_PERMISSIONS[Role.AUDITOR]
    assert "models:call" not in ROLE_PERMISSIONS[Role.AUDITOR]
    assert all(p.endswith(":read") for p in ROLE_PERMISSIONS[Role.VIEWER])
    assert "audit:read" not in ROLE_PERMISSIONS[Role.VIEWER]
    assert {Role.ADMIN, Role.AUDITOR} == ORG_WIDE_ROLES
    assert is_org_wide(Role.AUDITOR)
    assert not is_org_wide(Role.TEAM_ADMIN)


def test_nobody_grants_more_than_they_hold() -> None:
    assert may_grant(Role.ADMIN, Role.AUDITOR)
    assert may_grant(Role.TEAM_ADMIN, Role.DEVELOPER)
    assert may_grant(Role.TEAM_ADMIN, Role.SERVICE)
    assert not may_grant(Role.TEAM_ADMIN, Role.ADMIN)
    assert not may_grant(Role.TEAM_ADMIN, Role.AUDITOR)  # org-wide, though read-only
    assert not may_grant(Role.DEVELOPER, Role.TEAM_ADMIN)
    assert not may_grant(Role.VIEWER, Role.SERVICE)


def test_roles_are_parsed_with_a_helpful_error() -> None:
    assert parse_role("team-admin") is Role.TEAM_ADMIN
    with pytest.raises(ValueError, match="unknown role 'owner'; use one of: admin, team-admin"):
        parse_role("owner")


def test_principals_carry_their_role() -> None:
    admin = AdminToken("t" * 20).authenticate("t" * 20)
    assert admin is not None
    assert admin.role == "admin"
    assert admin.permissions == set(PERMISSIONS)
    team = Attribution(org="default", team="ml", key_id="k1")
    keys = ClientKeys({"secret-1": ("k1", team), "secret-2": ("k2", team, "viewer")})
    service = keys.authenticate("secret-1")
    viewer = keys.authenticate("secret-2")
    assert service is not None
    assert (service.role, service.permissions) == ("service", {"models:call"})
    assert viewer is not None
    assert (viewer.role, viewer.permissions) == ("viewer", ROLE_PERMISSIONS[Role.VIEWER])
    assert viewer.attribution == team
    with pytest.raises(ValueError, match="unknown role 'root'"):
        ClientKeys({"secret-3": ("k3", team, "root")})
