"""Administration: organisations, teams, projects, users and API keys under ``/api/admin``.

Listing needs ``admin:read``; creating, rotating and revoking need ``admin:write``. On top of the
permission, every operation is confined to the caller's scope (the rule of
:mod:`podium.governance.rbac`):

- the server's admin token (no attribution) administers every organisation, and alone creates
  organisations;
- an org-wide key (admin, auditor) sees and changes its own organisation only;
- a team-scoped key (team-admin) sees only its team — listings are filtered to it — and may
  create projects, users and keys only inside it: naming another team or organisation is a 403.
  A key or user outside the caller's scope is a 404 when addressed by id, as if it did not exist.

Nobody hands out more than they hold: a role is granted only by a caller whose own role holds
every permission of it (a team-admin cannot mint an admin or auditor key).

A created or rotated key is in the response body once (``key``); no later request shows it again
— the server keeps only a keyed hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from podium.api.auth import Principal, require
from podium.api.errors import ERROR_RESPONSES, ApiError
from podium.api.state import get_state
from podium.governance.identity import (
    DEFAULT_ORG,
    ApiKey,
    IdentityConflict,
    IdentityError,
    IdentityNotFound,
    IdentityStore,
    NewKey,
    Org,
    Project,
    Team,
    User,
    parse_duration,
)
from podium.governance.rbac import Role, is_org_wide, may_grant

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=ERROR_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found in your scope"}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "It exists already, or its state does not allow this"}
}

Reader = Annotated[Principal, require("admin:read")]
Writer = Annotated[Principal, require("admin:write")]


async def _identity(request: Request) -> IdentityStore:
    identity = get_state(request).identity
    if not isinstance(identity, IdentityStore):
        raise ApiError(503, "administration is unavailable: this server has no identity store")
    return identity


# -- scope ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a caller administers: ``org`` ``None`` is every organisation, ``team`` ``None`` a
    whole organisation."""

    org: str | None
    team: str | None
    role: Role
    actor: str

    @classmethod
    def of(cls, principal: Principal) -> _Scope:
        a = principal.attribution
        org = None if a is None else (a.org or DEFAULT_ORG)
        team = None if a is None else a.team
        try:
            role = Role(principal.role) if principal.role else None
        except ValueError:
            role = None
        if role is None:  # a principal built without a role: judge by its scope
            role = Role.ADMIN if team is None else Role.TEAM_ADMIN
        return cls(org, team, role, principal.subject)

    def sees(self, org: str, team: str | None) -> bool:
        if self.org is not None and org != self.org:
            return False
        return self.team is None or team == self.team

    def org_for(self, asked: str | None) -> str:
        """The organisation a new thing goes into: the one asked for, if the caller may."""
        if asked is None:
            return self.org or DEFAULT_ORG
        if self.org is not None and asked != self.org:
            raise ApiError(403, f"this key administers organisation {self.org!r}, not {asked!r}")
        return asked

    def team_for(self, asked: str | None, what: str) -> str | None:
        """The team a new thing goes into; a team-scoped caller only gets its own."""
        if self.team is None:
            return asked
        if asked is not None and asked != self.team:
            raise ApiError(
                403,
                f"this key administers team {self.team!r}: it cannot create {what} in {asked!r}",
            )
        return self.team

    def grants(self, role: Role) -> None:
        if not may_grant(self.role, role):
            raise ApiError(403, f"a {self.role.value} cannot grant the {role.value} role")


def _narrow(
    scope: _Scope, org: str | None, team: str | None
) -> tuple[str | None, str | None] | None:
    """The org/team filters of a listing: what was asked, narrowed to the caller's scope
    (``None``: the caller asked for something outside it, so there is nothing to list)."""
    if scope.org is not None:
        if org is not None and org != scope.org:
            return None
        org = scope.org
    if scope.team is not None:
        if team is not None and team != scope.team:
            return None
        team = scope.team
    return org, team


def _refused(exc: IdentityError) -> ApiError:
    if isinstance(exc, IdentityNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, IdentityConflict):
        return ApiError(409, str(exc))
    return ApiError(422, str(exc))


def _seconds(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ApiError(422, f"{what}: {exc}") from None


# -- bodies ---------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgInfo(BaseModel):
    name: str
    created_at: float
    created_by: str

    @classmethod
    def of(cls, org: Org) -> OrgInfo:
        return cls(name=org.name, created_at=org.created_at, created_by=org.created_by)


class TeamInfo(BaseModel):
    org: str
    name: str
    created_at: float
    created_by: str

    @classmethod
    def of(cls, team: Team) -> TeamInfo:
        return cls(
            org=team.org, name=team.name, created_at=team.created_at, created_by=team.created_by
        )


class ProjectInfo(BaseModel):
    org: str
    team: str
    name: str
    created_at: float
    created_by: str

    @classmethod
    def of(cls, p: Project) -> ProjectInfo:
        return cls(
            org=p.org, team=p.team, name=p.name, created_at=p.created_at, created_by=p.created_by
        )


class UserInfo(BaseModel):
    id: str
    email: str
    org: str
    team: str | None
    role: Role
    created_at: float
    created_by: str

    @classmethod
    def of(cls, u: User) -> UserInfo:
        return cls(
            id=u.user_id,
            email=u.email,
            org=u.org,
            team=u.team,
            role=u.role,
            created_at=u.created_at,
            created_by=u.created_by,
        )


class KeyInfo(BaseModel):
    """An API key as listed: never its secret, never its hash."""

    id: str
    prefix: str
    """The visible part: the key starts with ``pod_<prefix>_``."""
    name: str | None
    org: str
    team: str | None
    """``null`` for an org-wide key (admin, auditor)."""
    project: str | None
    use_case: str | None
    user_id: str | None
    role: Role
    status: str
    """``active``, ``rotating`` (replaced, still valid until ``expires_at``), ``expired`` or
    ``revoked``."""
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None
    rotated_from: str | None
    rotated_at: float | None

    @classmethod
    def of(cls, key: ApiKey, now: float) -> KeyInfo:
        return cls(
            id=key.key_id,
            prefix=key.prefix,
            name=key.name,
            org=key.org,
            team=key.team,
            project=key.project,
            use_case=key.use_case,
            user_id=key.user_id,
            role=key.role,
            status=key.status(now),
            created_at=key.created_at,
            created_by=key.created_by,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            rotated_from=key.rotated_from,
            rotated_at=key.rotated_at,
        )


class CreatedKey(KeyInfo):
    """A new key, with the key itself: shown in this response only."""

    key: str
    """``pod_<prefix>_<secret>``: store it now; it cannot be shown again."""
    warning: str = "Store this key now: it is shown once and cannot be retrieved."

    @classmethod
    def of_new(cls, new: NewKey, now: float) -> CreatedKey:
        return cls(key=new.key, **KeyInfo.of(new.record, now).model_dump())


class CreateOrg(_Request):
    name: str = Field(max_length=64)


class CreateTeam(_Request):
    name: str = Field(max_length=64)
    org: str | None = Field(default=None, max_length=64)
    """Default: the caller's organisation (``default`` for the admin token)."""


class CreateProject(_Request):
    name: str = Field(max_length=64)
    team: str | None = Field(default=None, max_length=64)
    """Required unless the caller is a team-admin (then: their team)."""
    org: str | None = Field(default=None, max_length=64)


class CreateUser(_Request):
    email: str = Field(max_length=320)
    role: Role
    team: str | None = Field(default=None, max_length=64)
    """Required for team roles (a team-admin's own by default); refused for admin and auditor."""
    org: str | None = Field(default=None, max_length=64)


class CreateKey(_Request):
    role: Role = Role.DEVELOPER
    team: str | None = Field(default=None, max_length=64)
    """Required for team roles (a team-admin's own by default); refused for admin and auditor."""
    org: str | None = Field(default=None, max_length=64)
    project: str | None = Field(default=None, max_length=64)
    use_case: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, max_length=320)
    """The user (id or email) the key belongs to."""
    name: str | None = Field(default=None, max_length=200)
    expires: str = Field(default="90d", max_length=32, examples=["90d", "24h", "never"])


class RotateKey(_Request):
    grace: str = Field(default="24h", max_length=32, examples=["24h", "0s"])
    """How long the old key keeps working."""
    expires: str | None = Field(default=None, max_length=32)
    """The new key's lifetime (default: the old key's)."""


# -- routes ---------------------------------------------------------------------------------------
# The identity store is fetched inside each route (not a dependency) so that its 503 comes after
# the permission check, and an unauthorised caller learns nothing about the server's set-up.


@router.get("/orgs")
async def list_orgs(request: Request, principal: Reader) -> list[OrgInfo]:
    """Organisations: every one for the admin token, the caller's own otherwise."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    return [OrgInfo.of(o) for o in await identity.list_orgs(org=scope.org)]


@router.post("/orgs", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_org(body: CreateOrg, request: Request, principal: Writer) -> OrgInfo:
    """Create an organisation (the server's admin token only)."""
    scope = _Scope.of(principal)
    if scope.org is not None:
        raise ApiError(403, "only the server's admin token creates organisations")
    identity = await _identity(request)
    try:
        return OrgInfo.of(await identity.create_org(body.name, actor=scope.actor))
    except IdentityError as exc:
        raise _refused(exc) from None


@router.get("/teams")
async def list_teams(request: Request, principal: Reader, org: str | None = None) -> list[TeamInfo]:
    """Teams of the caller's organisation (a team-scoped caller: its own team)."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    narrowed = _narrow(scope, org, None)
    if narrowed is None:
        return []
    return [TeamInfo.of(t) for t in await identity.list_teams(org=narrowed[0], team=narrowed[1])]


@router.post("/teams", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_team(body: CreateTeam, request: Request, principal: Writer) -> TeamInfo:
    """Create a team (org-wide admins only)."""
    scope = _Scope.of(principal)
    if scope.team is not None:
        raise ApiError(403, f"this key administers team {scope.team!r}: it cannot create teams")
    org = scope.org_for(body.org)
    identity = await _identity(request)
    try:
        return TeamInfo.of(await identity.create_team(body.name, org=org, actor=scope.actor))
    except IdentityError as exc:
        raise _refused(exc) from None


@router.get("/projects")
async def list_projects(
    request: Request, principal: Reader, org: str | None = None, team: str | None = None
) -> list[ProjectInfo]:
    """Projects in the caller's scope."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    narrowed = _narrow(scope, org, team)
    if narrowed is None:
        return []
    org, team = narrowed
    return [ProjectInfo.of(p) for p in await identity.list_projects(org=org, team=team)]


@router.post("/projects", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_project(body: CreateProject, request: Request, principal: Writer) -> ProjectInfo:
    """Create a project in a team (a team-admin: in its own team)."""
    scope = _Scope.of(principal)
    org = scope.org_for(body.org)
    team = scope.team_for(body.team, "projects")
    if team is None:
        raise ApiError(422, "a project belongs to a team: name one")
    identity = await _identity(request)
    try:
        project = await identity.create_project(body.name, team=team, org=org, actor=scope.actor)
    except IdentityError as exc:
        raise _refused(exc) from None
    return ProjectInfo.of(project)


@router.get("/users")
async def list_users(
    request: Request, principal: Reader, org: str | None = None, team: str | None = None
) -> list[UserInfo]:
    """Users in the caller's scope."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    narrowed = _narrow(scope, org, team)
    if narrowed is None:
        return []
    org, team = narrowed
    return [UserInfo.of(u) for u in await identity.list_users(org=org, team=team)]


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=_CONFLICT)
async def create_user(body: CreateUser, request: Request, principal: Writer) -> UserInfo:
    """Create a user with a role no greater than the caller's."""
    scope = _Scope.of(principal)
    org = scope.org_for(body.org)
    scope.grants(body.role)
    team = None if is_org_wide(body.role) else scope.team_for(body.team, "users")
    if is_org_wide(body.role) and body.team is not None:
        raise ApiError(422, f"the {body.role.value} role is org-wide: it takes no team")
    identity = await _identity(request)
    try:
        user = await identity.create_user(
            body.email, role=body.role, team=team, org=org, actor=scope.actor
        )
    except IdentityError as exc:
        raise _refused(exc) from None
    return UserInfo.of(user)


@router.get("/keys")
async def list_keys(
    request: Request, principal: Reader, org: str | None = None, team: str | None = None
) -> list[KeyInfo]:
    """API keys in the caller's scope, every status, oldest first: never a secret or a hash."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    narrowed = _narrow(scope, org, team)
    if narrowed is None:
        return []
    org, team = narrowed
    now = identity.now()
    return [KeyInfo.of(k, now) for k in await identity.list_keys(org=org, team=team)]


@router.post("/keys", status_code=status.HTTP_201_CREATED)
async def create_key(body: CreateKey, request: Request, principal: Writer) -> CreatedKey:
    """Create a key; the response holds it once (``key``)."""
    scope = _Scope.of(principal)
    org = scope.org_for(body.org)
    scope.grants(body.role)
    if is_org_wide(body.role):
        if body.team is not None:
            raise ApiError(422, f"the {body.role.value} role is org-wide: it takes no team")
        team = None
    else:
        team = scope.team_for(body.team, "keys")
    expires = _seconds(body.expires, "expires")
    identity = await _identity(request)
    try:
        new = await identity.create_key(
            actor=scope.actor,
            org=org,
            team=team,
            role=body.role,
            project=body.project,
            use_case=body.use_case,
            user=body.user,
            name=body.name,
            expires_in=expires,
        )
    except IdentityError as exc:
        raise _refused(exc) from None
    return CreatedKey.of_new(new, identity.now())


async def _key_in_scope(identity: IdentityStore, scope: _Scope, key_id: str) -> ApiKey:
    try:
        key = await identity.get_key(key_id)
    except IdentityNotFound:
        key = None
    if key is None or not scope.sees(key.org, key.team):
        raise ApiError(404, f"no API key {key_id!r}")
    return key


@router.get("/keys/{key_id}", responses=_NOT_FOUND)
async def get_key(key_id: str, request: Request, principal: Reader) -> KeyInfo:
    """One key's record."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    return KeyInfo.of(await _key_in_scope(identity, scope, key_id), identity.now())


@router.post(
    "/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    responses={**_NOT_FOUND, **_CONFLICT},
)
async def rotate_key(
    key_id: str, request: Request, principal: Writer, body: RotateKey | None = None
) -> CreatedKey:
    """Replace a key: the response holds the new key once; the old one works for ``grace``."""
    scope = _Scope.of(principal)
    body = body or RotateKey()
    grace = _seconds(body.grace, "grace")
    if grace is None:
        raise ApiError(422, "grace: a rotated key cannot stay valid forever; revoke it instead")
    identity = await _identity(request)
    key = await _key_in_scope(identity, scope, key_id)
    scope.grants(key.role)
    try:
        if body.expires is None:
            new = await identity.rotate_key(key_id, actor=scope.actor, grace=grace)
        else:
            new = await identity.rotate_key(
                key_id,
                actor=scope.actor,
                grace=grace,
                expires_in=_seconds(body.expires, "expires"),
            )
    except IdentityError as exc:
        raise _refused(exc) from None
    return CreatedKey.of_new(new, identity.now())


@router.post("/keys/{key_id}/revoke", responses={**_NOT_FOUND, **_CONFLICT})
async def revoke_key(key_id: str, request: Request, principal: Writer) -> KeyInfo:
    """Stop a key now (other replicas within a few seconds)."""
    scope = _Scope.of(principal)
    identity = await _identity(request)
    key = await _key_in_scope(identity, scope, key_id)
    scope.grants(key.role)
    try:
        revoked = await identity.revoke_key(key_id, actor=scope.actor)
    except IdentityError as exc:
        raise _refused(exc) from None
    return KeyInfo.of(revoked, identity.now())
