"""The identity records: organisations, teams, projects, users, API keys, and their errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from podium.errors import PodiumError
from podium.finops.ledger import Attribution
from podium.governance.rbac import Role

DEFAULT_ORG: Final = "default"
"""The organisation that always exists, and that calls are charged to when none is named."""

KeyStatus = Literal["active", "rotating", "expired", "revoked"]
"""``rotating``: superseded by a rotation, still accepted until its grace ends."""


# -- errors ---------------------------------------------------------------------------------------


class IdentityError(PodiumError):
    """An identity operation was refused: an invalid name, role or scope."""


class IdentityNotFound(IdentityError):
    """No such organisation, team, project, user or key."""


class IdentityConflict(IdentityError):
    """It already exists, or its state does not allow this (a revoked key cannot be rotated)."""


# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Org:
    name: str
    created_at: float
    created_by: str


@dataclass(frozen=True, slots=True)
class Team:
    org: str
    name: str
    created_at: float
    created_by: str


@dataclass(frozen=True, slots=True)
class Project:
    org: str
    team: str
    name: str
    created_at: float
    created_by: str


@dataclass(frozen=True, slots=True)
class User:
    """A person. ``team`` is ``None`` for the org-wide roles (admin, auditor)."""

    user_id: str
    email: str
    org: str
    team: str | None
    role: Role
    created_at: float
    created_by: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What is stored about a key: everything but the key (the hash is never read back out).

    Attributes:
        key_id: The key's stable id (``key_…``): what ledgers and audit records name.
        prefix: The visible 8 characters after ``pod_``.
        expires_at: When it stops working (``None``: never).
        revoked_at: When it was revoked.
        rotated_from: The key this one replaced.
        rotated_at: When this key was replaced by a successor (its ``expires_at`` then marks the
            end of the grace period).
    """

    key_id: str
    prefix: str
    name: str | None
    org: str
    team: str | None
    project: str | None
    use_case: str | None
    user_id: str | None
    role: Role
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None
    rotated_from: str | None
    rotated_at: float | None

    def status(self, now: float) -> KeyStatus:
        """Whether the key is accepted at ``now``, and if not, why."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "rotating" if self.rotated_at is not None else "active"

    @property
    def attribution(self) -> Attribution:
        """Who its calls are charged to (``team`` is ``None`` for org-wide keys)."""
        return Attribution(
            org=self.org,
            team=self.team,
            project=self.project,
            key_id=self.key_id,
            use_case=self.use_case,
        )


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created or rotated: the only time the full key exists outside its holder."""

    key: str = field(repr=False)
    """``pod_<prefix>_<secret>``: show it once, never store or log it."""
    record: ApiKey

    def __repr__(self) -> str:
        return f"NewKey(key=<shown once>, record={self.record!r})"


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What an accepted key grants: the API turns it into its ``Principal``."""

    key_id: str
    role: Role
    permissions: frozenset[str]
    attribution: Attribution
