"""Identity names checked, and rows turned into records: the validation every create and
update applies (slugs, emails, roles, key lifetimes, a role's team scope) and the conversions of
the identity tables' rows into :mod:`podium.governance.identity.records`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row

from podium.governance.identity.records import (
    ApiKey,
    IdentityError,
    KeyGrant,
    Org,
    Project,
    Team,
    User,
)
from podium.governance.rbac import ROLE_PERMISSIONS, Role, is_org_wide, parse_role

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def valid_slug(kind: str, value: str) -> str:
    if not _SLUG.match(value):
        raise IdentityError(
            f"invalid {kind} name {value!r}: use 1-63 lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def valid_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise IdentityError(f"invalid email address {value!r}")
    return email


def valid_role(value: Role | str) -> Role:
    try:
        return parse_role(str(value))
    except ValueError as exc:
        raise IdentityError(str(exc)) from None


def valid_lifetime(seconds: float | None) -> float | None:
    if seconds is not None and (not math.isfinite(seconds) or seconds <= 0):
        raise IdentityError(f"a key's lifetime must be a positive number of seconds: {seconds}")
    return seconds


def org_of(row: Row[Any]) -> Org:
    return Org(row.name, row.created_at, row.created_by)


def team_of(row: Row[Any]) -> Team:
    return Team(row.org, row.name, row.created_at, row.created_by)


def project_of(row: Row[Any]) -> Project:
    return Project(row.org, row.team, row.name, row.created_at, row.created_by)


def user_of(row: Row[Any]) -> User:
    return User(
        row.user_id, row.email, row.org, row.team, Role(row.role), row.created_at, row.created_by
    )


def key_of(row: Mapping[Any, Any]) -> ApiKey:
    """An :class:`ApiKey` from a row's mapping (or the values just inserted)."""
    return ApiKey(
        key_id=row["key_id"],
        prefix=row["prefix"],
        name=row["name"],
        org=row["org"],
        team=row["team"],
        project=row["project"],
        use_case=row["use_case"],
        user_id=row["user_id"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        rotated_from=row["rotated_from"],
        rotated_at=row["rotated_at"],
    )


def grant_of(key: ApiKey) -> KeyGrant:
    return KeyGrant(key.key_id, key.role, ROLE_PERMISSIONS[key.role], key.attribution)


def asdict_of(record: Org | Team | Project | User) -> dict[str, Any]:
    out = {name: getattr(record, name) for name in record.__slots__}
    if isinstance(record, User):
        out["role"] = record.role.value
    return out


def check_scope(role: Role, team: str | None) -> None:
    if is_org_wide(role) and team is not None:
        raise IdentityError(f"the {role.value} role is org-wide: it takes no team")
    if not is_org_wide(role) and team is None:
        raise IdentityError(f"the {role.value} role belongs to a team: name one")
