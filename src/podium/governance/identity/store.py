"""The identity store: the SQL tables behind organisations, teams, projects, users and keys,
and the in-memory snapshot of active keys that authentication reads (see the package's doc)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy import Engine, Row, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from podium.config import Settings
from podium.errors import ConfigError, PodiumError, StoreError
from podium.finops.ledger import SQLRunner, open_engine
from podium.governance.audit import AuditLog
from podium.governance.chain import AuditEntry
from podium.governance.identity.material import (
    DEFAULT_KEY_LIFETIME,
    DEFAULT_ROTATION_GRACE,
    KEY_PREFIX,
    MIN_PEPPER_BYTES,
    PEPPER_ENV,
    PEPPER_FILE_ENV,
    PREFIX_LENGTH,
    SECRET_LENGTH,
    load_pepper,
    prefix_of,
    random_base62,
)
from podium.governance.identity.records import (
    DEFAULT_ORG,
    ApiKey,
    IdentityConflict,
    IdentityError,
    IdentityNotFound,
    KeyGrant,
    NewKey,
    Org,
    Project,
    Team,
    User,
)
from podium.governance.identity.rows import (
    asdict_of,
    check_scope,
    grant_of,
    key_of,
    org_of,
    project_of,
    team_of,
    user_of,
    valid_email,
    valid_lifetime,
    valid_role,
    valid_slug,
)
from podium.governance.rbac import Role, is_org_wide, may_grant
from podium.store import schema
from podium.types import Clock, SystemClock

log = logging.getLogger("podium.governance")

REFRESH_SECONDS: Final = 5.0
"""How often :meth:`IdentityStore.refresh_forever` reloads the active keys: the longest a key
revoked or rotated through another replica keeps working here (plus one reload's duration)."""
SYSTEM_ACTOR: Final = "system"

_INSERT_ID_RETRIES = 5


@dataclass(frozen=True, slots=True)
class _Live:
    digest: bytes
    expires_at: float
    grant: KeyGrant


_O, _TM, _PR, _U, _K = (
    schema.orgs,
    schema.teams,
    schema.projects,
    schema.users,
    schema.api_keys,
)
_KEY_COLUMNS = [c for c in _K.c if c.name != "key_hash"]


async def open_identity(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    audit: AuditLog | None = None,
) -> IdentityStore:
    """The identity store of a server: in the store's database, peppered by :func:`load_pepper`.

    A ``memory://`` store keeps identities in an in-memory SQLite database and, unless a pepper
    variable is set, peppers them with random bytes: its keys die with the process anyway.
    """
    env = os.environ if env is None else env
    url = settings.store_url
    if url.partition("://")[0].lower() == "memory":
        url = "sqlite://"
        ephemeral = not (env.get(PEPPER_ENV) or env.get(PEPPER_FILE_ENV))
        pepper = (
            secrets.token_bytes(MIN_PEPPER_BYTES)
            if ephemeral
            else load_pepper(Path(settings.home), env)
        )
    else:
        pepper = load_pepper(Path(settings.home), env)
    return await IdentityStore.open(
        url,
        clock=clock or SystemClock(),
        pepper=pepper,
        audit=audit,
        sqlite_synchronous=settings.sqlite_synchronous,
    )


# -- the store ------------------------------------------------------------------------------------


class IdentityStore:
    """Organisations, teams, projects, users and API keys in the SQL store (SQLite or
    PostgreSQL), with the in-memory snapshot of active keys that :meth:`verify` reads.

    Args:
        engine: An engine on a database migrated to revision ``0005`` or later.
        clock: Creation, expiry and revocation times.
        pepper: The key-hashing secret (:func:`load_pepper`); at least 32 bytes.
        audit: Append an ``admin_change`` record for every mutation.
        refresh_seconds: The interval of :meth:`refresh_forever`.
        offload: Run database work in a worker thread (default: PostgreSQL yes, SQLite no).
        owned: Dispose of the engine on :meth:`close`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        pepper: bytes,
        audit: AuditLog | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        offload: bool | None = None,
        owned: bool = False,
    ) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ConfigError(f"the key pepper needs at least {MIN_PEPPER_BYTES} bytes")
        if refresh_seconds <= 0:
            raise ValueError("refresh_seconds must be positive")
        self._db = SQLRunner(engine, offload=offload, owned=owned)
        self._clock = clock
        # The keyed state (pepper absorbed) is computed once and copied per call: a fresh
        # hmac.digest() re-derives it each time, 2.6 µs against 1.7 µs here.
        self._keyed = hmac.new(pepper, digestmod=hashlib.sha256)
        self._audit = audit
        self.refresh_seconds = refresh_seconds
        self._live: dict[str, _Live] = {}
        self._fingerprint_seen: tuple[int, int, int] | None = None
        self._reload_in_thread = not isinstance(engine.pool, StaticPool)
        self._refreshing = asyncio.Lock()
        self.loaded_at: float | None = None
        """When the snapshot was last loaded (the clock's monotonic time)."""
        insert_ = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        self._insert_org_once = insert_(_O).on_conflict_do_nothing(index_elements=[_O.c.name])

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock,
        pepper: bytes,
        audit: AuditLog | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        sqlite_synchronous: str = "NORMAL",
    ) -> IdentityStore:
        """Open (and migrate) the store at ``url``, make sure the ``default`` organisation
        exists and load the active keys. The identity store owns its engine.

        ``sqlite://`` (no path) is an in-memory database: what a ``memory://`` server uses.
        """
        engine = await open_engine(url, sqlite_synchronous=sqlite_synchronous)
        store = cls(
            engine,
            clock=clock,
            pepper=pepper,
            audit=audit,
            refresh_seconds=refresh_seconds,
            owned=True,
        )
        try:
            await store._db.run(store._ensure_default_org)
            await store.refresh()
        except BaseException:
            await store.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"IdentityStore(dialect={self._db.dialect!r}, active_keys={len(self._live)})"

    async def close(self) -> None:
        await self._db.close()

    @property
    def audit(self) -> AuditLog | None:
        """Where admin changes are recorded (``None``: nowhere)."""
        return self._audit

    def now(self) -> float:
        """The store's clock (what key statuses are judged against)."""
        return self._clock.now()

    def _ensure_default_org(self) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                self._insert_org_once.values(
                    name=DEFAULT_ORG, created_at=self._clock.now(), created_by=SYSTEM_ACTOR
                )
            )

    # -- the hot path -----------------------------------------------------------------------------

    def verify(self, token: str) -> KeyGrant | None:
        """What ``token`` grants, or ``None`` (malformed, unknown, expired, revoked — the caller
        cannot tell which). Reads the in-memory snapshot only."""
        prefix = prefix_of(token)
        if prefix is None:
            return None
        live = self._live.get(prefix)
        if live is None:
            return None
        digest = self._hash(token)
        if not hmac.compare_digest(digest, live.digest):
            return None
        if live.expires_at <= self._clock.now():
            return None
        return live.grant

    def _hash(self, key: str) -> bytes:
        """``HMAC-SHA256(pepper, key)``."""
        keyed = self._keyed.copy()
        keyed.update(key.encode())
        return keyed.digest()

    async def refresh(self, *, force: bool = False) -> int:
        """Reload the snapshot of accepted keys if the keys changed; returns how many it holds.

        Each call reads a fingerprint first — the number of keys, of revoked keys and of rotated
        keys. Keys are never deleted, un-revoked or un-rotated, so every change (a creation, a
        revocation, a rotation, by any replica) changes it, and an unchanged fingerprint skips the
        full reload (about 15 µs of Python per key). The full reload runs off the event loop
        (except on an in-memory SQLite database, whose one connection the loop owns).
        """
        # One at a time: a slow reload finishing after a newer one would put back stale keys.
        async with self._refreshing:
            fingerprint = await self._db.run(self._fingerprint)
            if force or fingerprint != self._fingerprint_seen:
                if self._reload_in_thread:
                    live = await asyncio.to_thread(self._load_live)
                else:
                    live = await self._db.run(self._load_live)
                self._live = live
                self._fingerprint_seen = fingerprint
            self.loaded_at = self._clock.monotonic()
            return len(self._live)

    def _fingerprint(self) -> tuple[int, int, int]:
        query = select(func.count(), func.count(_K.c.revoked_at), func.count(_K.c.rotated_at))
        with self._db.errors(), self._db.engine.connect() as conn:
            row = conn.execute(query).one()
        return int(row[0]), int(row[1]), int(row[2])

    def _load_live(self) -> dict[str, _Live]:
        now = self._clock.now()
        query = select(*_K.c).where(
            _K.c.revoked_at.is_(None), or_(_K.c.expires_at.is_(None), _K.c.expires_at > now)
        )
        with self._db.errors(), self._db.engine.connect() as conn:
            rows = conn.execute(query).all()
        live: dict[str, _Live] = {}
        for row in rows:
            key = key_of(row._mapping)
            expires = math.inf if key.expires_at is None else key.expires_at
            live[key.prefix] = _Live(bytes.fromhex(row.key_hash), expires, grant_of(key))
        return live

    async def refresh_forever(self) -> None:
        """Reload the snapshot every ``refresh_seconds`` until cancelled (the server runs this
        in the background). A failed reload keeps the last snapshot and is logged."""
        while True:
            await self._clock.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except StoreError as exc:
                log.warning("reloading the API keys failed (keeping the last ones): %s", exc)

    # -- organisations, teams, projects, users ----------------------------------------------------

    async def create_org(self, name: str, *, actor: str) -> Org:
        """A new organisation.

        Raises:
            IdentityConflict: It exists.
        """
        org = Org(valid_slug("organisation", name), self._clock.now(), actor)
        await self._insert(_O, asdict_of(org), f"organisation {name!r} already exists")
        await self._record(actor, None, {"action": "org.create", "org": org.name}, {})
        return org

    async def list_orgs(self, *, org: str | None = None) -> list[Org]:
        query = select(*_O.c).order_by(_O.c.name)
        if org is not None:
            query = query.where(_O.c.name == org)
        return [org_of(r) for r in await self._select(query)]

    async def create_team(self, name: str, *, org: str = DEFAULT_ORG, actor: str) -> Team:
        """A new team in ``org``.

        Raises:
            IdentityNotFound: No such organisation.
            IdentityConflict: The team exists in it.
        """
        team = Team(org, valid_slug("team", name), self._clock.now(), actor)
        await self._need_org(org)
        await self._insert(_TM, asdict_of(team), f"team {name!r} already exists in {org!r}")
        header = {"action": "team.create", "org": org, "team": team.name}
        await self._record(actor, team.name, header, {})
        return team

    async def list_teams(self, *, org: str | None = None, team: str | None = None) -> list[Team]:
        query = select(*_TM.c).order_by(_TM.c.org, _TM.c.name)
        if org is not None:
            query = query.where(_TM.c.org == org)
        if team is not None:
            query = query.where(_TM.c.name == team)
        return [team_of(r) for r in await self._select(query)]

    async def create_project(
        self, name: str, *, team: str, org: str = DEFAULT_ORG, actor: str
    ) -> Project:
        """A new project in a team.

        Raises:
            IdentityNotFound: No such team.
            IdentityConflict: The project exists in it.
        """
        project = Project(org, team, valid_slug("project", name), self._clock.now(), actor)
        await self._need_team(org, team)
        await self._insert(
            _PR, asdict_of(project), f"project {name!r} already exists in team {team!r}"
        )
        header = {"action": "project.create", "org": org, "team": team, "project": project.name}
        await self._record(actor, team, header, {})
        return project

    async def list_projects(
        self, *, org: str | None = None, team: str | None = None
    ) -> list[Project]:
        query = select(*_PR.c).order_by(_PR.c.org, _PR.c.team, _PR.c.name)
        if org is not None:
            query = query.where(_PR.c.org == org)
        if team is not None:
            query = query.where(_PR.c.team == team)
        return [project_of(r) for r in await self._select(query)]

    async def create_user(
        self,
        email: str,
        *,
        role: Role | str,
        team: str | None = None,
        org: str = DEFAULT_ORG,
        actor: str,
    ) -> User:
        """A new user. Org-wide roles (admin, auditor) take no team; the others need one.

        Raises:
            IdentityError: The email or role is invalid, or the team does not fit the role.
            IdentityNotFound: No such organisation or team.
            IdentityConflict: A user has this email.
        """
        kind = valid_role(role)
        check_scope(kind, team)
        user = User(
            "usr_" + random_base62(16),
            valid_email(email),
            org,
            team,
            kind,
            self._clock.now(),
            actor,
        )
        if team is None:
            await self._need_org(org)
        else:
            await self._need_team(org, team)
        await self._insert(_U, asdict_of(user), f"a user with email {user.email!r} already exists")
        header = {"action": "user.create", "user_id": user.user_id, "org": org, "team": team}
        await self._record(actor, team, header, {"email": user.email, "role": kind.value})
        return user

    async def get_user(self, user: str) -> User:
        """A user by id (``usr_…``) or email.

        Raises:
            IdentityNotFound: No such user.
        """
        column = _U.c.user_id if user.startswith("usr_") else _U.c.email
        value = user if user.startswith("usr_") else user.strip().lower()
        rows = await self._select(select(*_U.c).where(column == value))
        if not rows:
            raise IdentityNotFound(f"no user {user!r}")
        return user_of(rows[0])

    async def list_users(self, *, org: str | None = None, team: str | None = None) -> list[User]:
        query = select(*_U.c).order_by(_U.c.org, _U.c.email)
        if org is not None:
            query = query.where(_U.c.org == org)
        if team is not None:
            query = query.where(_U.c.team == team)
        return [user_of(r) for r in await self._select(query)]

    # -- keys -------------------------------------------------------------------------------------

    async def create_key(
        self,
        *,
        actor: str,
        org: str = DEFAULT_ORG,
        team: str | None = None,
        role: Role | str = Role.DEVELOPER,
        project: str | None = None,
        use_case: str | None = None,
        user: str | None = None,
        name: str | None = None,
        expires_in: float | None = DEFAULT_KEY_LIFETIME,
    ) -> NewKey:
        """A new key, returned once with its secret.

        Args:
            actor: Who creates it (recorded and audited).
            org: Its organisation.
            team: Its team; required for every role but admin and auditor, refused for those.
            role: What it may do.
            project: Bind it to a project of its team: its calls are charged there.
            use_case: A free label its calls are charged to.
            user: The user (id or email) it belongs to; it inherits their organisation and team
                and may not hold more than their role.
            name: A label for people.
            expires_in: Seconds until it stops working (``None``: never).

        Raises:
            IdentityError: The role, team, project or user do not fit together.
            IdentityNotFound: The organisation, team, project or user does not exist.
        """
        kind = valid_role(role)
        owner: User | None = None
        if user is not None:
            owner = await self.get_user(user)
            if owner.org != org or (team is not None and owner.team != team):
                raise IdentityError(
                    f"user {owner.email} is in {owner.org}/{owner.team or '*'}: "
                    "a key of theirs cannot belong elsewhere"
                )
            team = owner.team if not is_org_wide(kind) else None
            if not may_grant(owner.role, kind):
                raise IdentityError(
                    f"user {owner.email} is {owner.role.value}: their key cannot be {kind.value}"
                )
        check_scope(kind, team)
        if project is not None:
            if team is None:
                raise IdentityError("a project belongs to a team: an org-wide key cannot have one")
            await self._need_project(org, team, project)
        elif team is not None:
            await self._need_team(org, team)
        else:
            await self._need_org(org)
        if name is not None and not 0 < len(name) <= 200:
            raise IdentityError("a key's name must have 1-200 characters")
        if use_case is not None and not 0 < len(use_case) <= 200:
            raise IdentityError("a use case must have 1-200 characters")
        now = self._clock.now()
        lifetime = valid_lifetime(expires_in)
        new = await self._insert_key(
            {
                "name": name,
                "org": org,
                "team": team,
                "project": project,
                "use_case": use_case,
                "user_id": owner.user_id if owner is not None else None,
                "role": kind.value,
                "created_at": now,
                "created_by": actor,
                "expires_at": None if lifetime is None else now + lifetime,
                "revoked_at": None,
                "rotated_from": None,
                "rotated_at": None,
            }
        )
        await self.refresh()
        record = new.record
        await self._record(
            actor,
            team,
            {
                "action": "key.create",
                "key_id": record.key_id,
                "org": org,
                "team": team,
                "role": kind.value,
            },
            {
                "prefix": record.prefix,
                "name": name,
                "project": project,
                "use_case": use_case,
                "user_id": record.user_id,
                "expires_at": record.expires_at,
            },
        )
        return new

    async def get_key(self, key_id: str) -> ApiKey:
        """A key's record.

        Raises:
            IdentityNotFound: No such key.
        """
        rows = await self._select(select(*_KEY_COLUMNS).where(_K.c.key_id == key_id))
        if not rows:
            raise IdentityNotFound(f"no API key {key_id!r}")
        return key_of(rows[0]._mapping)

    async def list_keys(self, *, org: str | None = None, team: str | None = None) -> list[ApiKey]:
        """Keys, oldest first (every status: look at :meth:`ApiKey.status`)."""
        query = select(*_KEY_COLUMNS).order_by(_K.c.created_at, _K.c.key_id)
        if org is not None:
            query = query.where(_K.c.org == org)
        if team is not None:
            query = query.where(_K.c.team == team)
        return [key_of(r._mapping) for r in await self._select(query)]

    async def revoke_key(self, key_id: str, *, actor: str) -> ApiKey:
        """Stop a key now (here at once; on other replicas within :data:`REFRESH_SECONDS`).

        Raises:
            IdentityNotFound: No such key.
            IdentityConflict: It is already revoked.
        """
        now = self._clock.now()
        statement = (
            update(_K)
            .where(_K.c.key_id == key_id, _K.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        changed = await self._db.run(self._write, statement)
        if not changed:
            key = await self.get_key(key_id)  # IdentityNotFound for an unknown id
            raise IdentityConflict(f"API key {key_id} ({key.prefix}) is already revoked")
        await self.refresh()
        key = await self.get_key(key_id)
        header = {"action": "key.revoke", "key_id": key_id, "org": key.org, "team": key.team}
        await self._record(actor, key.team, header, {"prefix": key.prefix})
        return key

    async def rotate_key(
        self,
        key_id: str,
        *,
        actor: str,
        grace: float = DEFAULT_ROTATION_GRACE,
        expires_in: float | Literal["same"] | None = "same",
    ) -> NewKey:
        """Replace a key: a new key with the same organisation, team, role and bindings; the old
        one keeps working for ``grace`` seconds (not past its own expiry), then stops.

        Args:
            key_id: The key to replace.
            actor: Who rotates it.
            grace: Seconds the old key stays valid (0: it stops now).
            expires_in: The new key's lifetime; ``"same"`` (default) keeps the old one's.

        Raises:
            IdentityNotFound: No such key.
            IdentityConflict: The key is revoked, expired, or was already rotated.
        """
        if not math.isfinite(grace) or grace < 0:
            raise IdentityError(f"the grace period must be zero or more seconds: {grace}")
        old = await self.get_key(key_id)
        now = self._clock.now()
        status = old.status(now)
        if status != "active":
            why = "was already rotated" if status == "rotating" else f"is {status}"
            raise IdentityConflict(f"API key {key_id} ({old.prefix}) {why}: it cannot be rotated")
        if expires_in == "same":
            lifetime = None if old.expires_at is None else old.expires_at - old.created_at
        else:
            lifetime = valid_lifetime(expires_in)
        old_end = now + grace if old.expires_at is None else min(old.expires_at, now + grace)
        new = await self._insert_key(
            {
                "name": old.name,
                "org": old.org,
                "team": old.team,
                "project": old.project,
                "use_case": old.use_case,
                "user_id": old.user_id,
                "role": old.role.value,
                "created_at": now,
                "created_by": actor,
                "expires_at": None if lifetime is None else now + lifetime,
                "revoked_at": None,
                "rotated_from": key_id,
                "rotated_at": None,
            },
            supersede=(key_id, now, old_end),
        )
        await self.refresh()
        await self._record(
            actor,
            old.team,
            {
                "action": "key.rotate",
                "key_id": new.record.key_id,
                "rotated_from": key_id,
                "org": old.org,
                "team": old.team,
            },
            {
                "prefix": new.record.prefix,
                "old_prefix": old.prefix,
                "grace_seconds": grace,
                "old_expires_at": old_end,
                "expires_at": new.record.expires_at,
            },
        )
        return new

    # -- plumbing ---------------------------------------------------------------------------------

    async def _insert_key(
        self, values: dict[str, Any], *, supersede: tuple[str, float, float] | None = None
    ) -> NewKey:
        for _ in range(_INSERT_ID_RETRIES):
            prefix, secret = random_base62(PREFIX_LENGTH), random_base62(SECRET_LENGTH)
            key = f"{KEY_PREFIX}{prefix}_{secret}"
            row = {
                **values,
                "key_id": "key_" + random_base62(12),
                "prefix": prefix,
                "key_hash": self._hash(key).hex(),
            }
            try:
                await self._db.run(self._insert_key_sync, row, supersede)
            except StoreError as exc:
                if isinstance(exc.__cause__, IntegrityError):
                    continue  # a prefix or id collision (1 in 62^8): draw again
                raise
            del row["key_hash"]
            return NewKey(key, key_of(row))
        raise IdentityConflict(
            "could not store the key (a prefix collision or a concurrent change); try again"
        )  # pragma: no cover

    def _insert_key_sync(
        self, row: dict[str, Any], supersede: tuple[str, float, float] | None
    ) -> None:
        with self._db.transaction() as conn:
            if supersede is not None:
                old_id, now, end = supersede
                done = conn.execute(
                    update(_K)
                    .where(
                        _K.c.key_id == old_id,
                        _K.c.revoked_at.is_(None),
                        _K.c.rotated_at.is_(None),
                        or_(_K.c.expires_at.is_(None), _K.c.expires_at > now),
                    )
                    .values(rotated_at=now, expires_at=end)
                ).rowcount
                if done != 1:  # a concurrent rotation or revocation won
                    raise _Lost(old_id)
            conn.execute(insert(_K), row)

    async def _insert(self, table: Any, row: dict[str, Any], exists: str) -> None:
        try:
            await self._db.run(self._write, insert(table).values(row))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise IdentityConflict(exists) from None
            raise

    def _write(self, statement: Any) -> int:
        with self._db.transaction() as conn:
            return int(conn.execute(statement).rowcount)

    async def _select(self, query: Any) -> Sequence[Row[Any]]:
        return await self._db.run(self._select_sync, query)

    def _select_sync(self, query: Any) -> Sequence[Row[Any]]:
        with self._db.errors(), self._db.engine.connect() as conn:
            return conn.execute(query).all()

    async def _need_org(self, org: str) -> None:
        if not await self._select(select(_O.c.name).where(_O.c.name == org)):
            raise IdentityNotFound(f"no organisation {org!r}")

    async def _need_team(self, org: str, team: str) -> None:
        found = await self._select(
            select(_TM.c.name).where(and_(_TM.c.org == org, _TM.c.name == team))
        )
        if not found:
            await self._need_org(org)
            raise IdentityNotFound(f"no team {team!r} in organisation {org!r}")

    async def _need_project(self, org: str, team: str, project: str) -> None:
        found = await self._select(
            select(_PR.c.name).where(_PR.c.org == org, _PR.c.team == team, _PR.c.name == project)
        )
        if not found:
            await self._need_team(org, team)
            raise IdentityNotFound(f"no project {project!r} in team {team!r}")

    async def _record(
        self, actor: str, team: str | None, header: Mapping[str, Any], payload: dict[str, Any]
    ) -> None:
        if self._audit is None:
            return
        entry = AuditEntry(
            kind="admin_change", actor=actor, team=team, header=header, payload=payload
        )
        try:
            await self._audit.append(entry)
        except PodiumError:
            log.error("the audit record of %s by %s failed", header.get("action"), actor)
            raise


class _Lost(IdentityConflict):
    """A rotation lost the race to another rotation or a revocation of the same key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id} changed while it was being rotated")
