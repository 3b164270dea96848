"""``podium keys``: API keys, and the organisations, teams, projects and users they belong to.

The commands work on the store's database directly (``--db``, else ``PODIUM_DATABASE_URL``, else
SQLite in ``<home>``), with the same key pepper as the server (``PODIUM_KEY_PEPPER``,
``PODIUM_KEY_PEPPER_FILE``, else ``<home>/key_pepper``): a key created here works on every
server of the deployment, and a key revoked here stops working there within seconds. Every
change is recorded in the audit trail as an ``admin_change`` by ``cli:<user>``.

A new key is printed once. Nothing can show it again: the store keeps only a keyed hash.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from podium.cli.render import when
from podium.config import Settings
from podium.errors import ConfigError, PodiumError
from podium.governance.audit import AuditLog
from podium.governance.identity import (
    DEFAULT_ORG,
    ApiKey,
    IdentityStore,
    NewKey,
    load_pepper,
    parse_duration,
)
from podium.governance.rbac import ROLE_HELP, Role
from podium.governance.setup import audit_keys
from podium.store.sql import store_url
from podium.types import SystemClock

T = TypeVar("T")

keys_app = typer.Typer(
    help="API keys (shown once, stored as a keyed hash), and the organisations, teams, projects "
    "and users they belong to.",
    no_args_is_help=True,
)
orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
teams_app = typer.Typer(help="Teams (each in an organisation).", no_args_is_help=True)
projects_app = typer.Typer(help="Projects (each in a team).", no_args_is_help=True)
users_app = typer.Typer(help="Users (a role, and a team unless org-wide).", no_args_is_help=True)
keys_app.add_typer(orgs_app, name="orgs")
keys_app.add_typer(teams_app, name="teams")
keys_app.add_typer(projects_app, name="projects")
keys_app.add_typer(users_app, name="users")

console = Console()
err = Console(stderr=True)

STATUS_STYLE = {"active": "green", "rotating": "yellow", "expired": "dim", "revoked": "red"}
ROLES_HELP = "; ".join(f"{r.value}: {text}" for r, text in ROLE_HELP.items())

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", metavar="URL", help="Store URL (default: the store; env PODIUM_DATABASE_URL)."
    ),
]
OrgOption = Annotated[str, typer.Option("--org", help="The organisation.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
    return typer.Exit(code)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "cli"


def _open(db: str | None, *, audited: bool) -> Callable[[], Awaitable[IdentityStore]]:
    """Checks the settings now (readable errors), opens the store when called."""
    try:
        settings = Settings.from_env(os.environ)
        if db:
            settings = settings.model_copy(update={"database_url": db})
        url = settings.store_url
        if url.partition("://")[0].lower() == "memory":
            raise ConfigError("the store is in memory (memory://): there are no keys to manage")
        store_url(url)  # only the scheme is ever shown: the rest may hold a password
        pepper = load_pepper(Path(settings.home), os.environ)
        keys = audit_keys(settings, os.environ) if audited else None
    except ConfigError as exc:
        raise _fail(str(exc)) from None

    async def open_() -> IdentityStore:
        clock = SystemClock()
        audit = None
        if keys is not None:
            master, signer = keys
            audit = await AuditLog.open(
                url,
                clock=clock,
                master=master,
                signer=signer,
                sqlite_synchronous=settings.sqlite_synchronous,
            )
        try:
            return await IdentityStore.open(
                url,
                clock=clock,
                pepper=pepper,
                audit=audit,
                sqlite_synchronous=settings.sqlite_synchronous,
            )
        except BaseException:
            if audit is not None:
                await audit.close()
            raise

    return open_


def _run(
    db: str | None, work: Callable[[IdentityStore], Awaitable[T]], *, audited: bool = False
) -> T:
    opener = _open(db, audited=audited)

    async def main() -> T:
        identity = await opener()
        try:
            return await work(identity)
        finally:
            audit = identity.audit
            await identity.close()
            if audit is not None:
                await audit.close()

    try:
        return asyncio.run(main())
    except PodiumError as exc:
        raise _fail(str(exc)) from None


def _duration(text: str, what: str) -> float | None:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _fail(f"{what}: {exc}") from None


def _key_dict(key: ApiKey, now: float) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "prefix": key.prefix,
        "name": key.name,
        "org": key.org,
        "team": key.team,
        "project": key.project,
        "use_case": key.use_case,
        "user_id": key.user_id,
        "role": key.role.value,
        "status": key.status(now),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "rotated_from": key.rotated_from,
        "rotated_at": key.rotated_at,
    }


def _show_new(new: NewKey, now: float, *, as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"key": new.key, **_key_dict(new.record, now)}) + "\n")
        return
    record = new.record
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("Key", Text(new.key, style="bold green"))
    grid.add_row("Id", record.key_id)
    grid.add_row("Team", f"{record.org}/{record.team or '*'}" + _bound(record))
    grid.add_row("Role", record.role.value)
    grid.add_row("Expires", when(record.expires_at) if record.expires_at else "never")
    console.print(Panel(grid, title=title, expand=False))
    # soft_wrap: the key must stay on one line to be copied whole
    console.print(
        "[bold yellow]Store this key now: it is shown once and cannot be retrieved.[/]",
        soft_wrap=True,
    )


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _bound(key: ApiKey) -> str:
    parts = [f"project {key.project}"] if key.project else []
    if key.use_case:
        parts.append(f"use case {key.use_case}")
    return f" ({', '.join(parts)})" if parts else ""


# -- keys -----------------------------------------------------------------------------------------


@keys_app.command()
def create(
    team: Annotated[
        str | None,
        typer.Option(help="The key's team (required unless the role is admin or auditor)."),
    ] = None,
    role: Annotated[Role, typer.Option(help=f"What the key may do. {ROLES_HELP}.")] = (
        Role.DEVELOPER
    ),
    project: Annotated[
        str | None, typer.Option(help="Bind the key to a project: its calls are charged there.")
    ] = None,
    use_case: Annotated[
        str | None, typer.Option("--use-case", help="A use case its calls are charged to.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="The user (email or id) the key belongs to.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    expires: Annotated[str, typer.Option(help="Lifetime: 90d, 24h, 30m… or 'never'.")] = "90d",
    org: OrgOption = DEFAULT_ORG,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it ONCE."""
    lifetime = _duration(expires, "--expires")

    async def work(identity: IdentityStore) -> tuple[NewKey, float]:
        new = await identity.create_key(
            actor=_actor(),
            org=org,
            team=team,
            role=role,
            project=project,
            use_case=use_case,
            user=user,
            name=name,
            expires_in=lifetime,
        )
        return new, identity.now()

    new, now = _run(db, work, audited=True)
    _show_new(new, now, as_json=as_json, title="New API key")


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    active: Annotated[
        bool, typer.Option("--active", help="Only keys that work now (active or rotating).")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keys, oldest first: id, prefix, team, role, dates and status — never a secret."""

    async def work(identity: IdentityStore) -> tuple[list[ApiKey], float]:
        return await identity.list_keys(org=org, team=team), identity.now()

    keys, now = _run(db, work)
    if active:
        keys = [k for k in keys if k.status(now) in ("active", "rotating")]
    if as_json:
        sys.stdout.write(json.dumps([_key_dict(k, now) for k in keys]) + "\n")
        return
    table = Table(title="API keys", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("prefix", no_wrap=True, min_width=8)
    table.add_column("team", overflow="fold")
    table.add_column("role", overflow="fold")
    for column in ("created", "expires", "last rotated"):
        table.add_column(column, overflow="fold")
    table.add_column("status", no_wrap=True)
    for k in keys:
        status = k.status(now)
        table.add_row(
            k.key_id,
            k.prefix,
            f"{k.org}/{k.team or '*'}" + _bound(k),
            k.role.value,
            _day(k.created_at),
            _day(k.expires_at) if k.expires_at else "never",
            _day(k.rotated_at) if k.rotated_at else "",
            Text(status, style=STATUS_STYLE[status]),
        )
    console.print(table)


@keys_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (key_…).")],
    db: DbOption = None,
) -> None:
    """Stop a key now (running servers within a few seconds)."""

    async def work(identity: IdentityStore) -> ApiKey:
        return await identity.revoke_key(key_id, actor=_actor())

    key = _run(db, work, audited=True)
    console.print(f"revoked {key.key_id} (pod_{key.prefix}_…)", highlight=False)


@keys_app.command()
def rotate(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (key_…).")],
    grace: Annotated[
        str, typer.Option(help="How long the old key keeps working: 24h, 1h, 0s…")
    ] = "24h",
    expires: Annotated[
        str | None,
        typer.Option(help="The new key's lifetime (default: the old key's), or 'never'."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a key: print the new key ONCE; the old one stops after the grace period."""
    grace_s = _duration(grace, "--grace")
    if grace_s is None:
        raise _fail("--grace: a rotated key cannot stay valid forever; revoke it instead")
    lifetime = _duration(expires, "--expires") if expires is not None else None

    async def work(identity: IdentityStore) -> tuple[NewKey, float]:
        if expires is None:
            new = await identity.rotate_key(key_id, actor=_actor(), grace=grace_s)
        else:
            new = await identity.rotate_key(
                key_id, actor=_actor(), grace=grace_s, expires_in=lifetime
            )
        return new, identity.now()

    new, now = _run(db, work, audited=True)
    _show_new(new, now, as_json=as_json, title=f"New API key (replaces {key_id})")
    if not as_json:
        console.print(f"{key_id} keeps working until {when(now + grace_s)}", highlight=False)


# -- organisations, teams, projects, users --------------------------------------------------------


def _created(what: str) -> None:
    console.print(f"created {what}", highlight=False)


@orgs_app.command("create")
def create_org(
    name: Annotated[str, typer.Argument(help="The organisation's name (a slug).")],
    db: DbOption = None,
) -> None:
    """Create an organisation."""
    _run(db, lambda identity: identity.create_org(name, actor=_actor()), audited=True)
    _created(f"organisation {name}")


@orgs_app.command("list")
def list_orgs(db: DbOption = None) -> None:
    """Organisations."""
    orgs = _run(db, lambda identity: identity.list_orgs())
    table = Table("organisation", "created", "by", title="Organisations", title_justify="left")
    for o in orgs:
        table.add_row(o.name, when(o.created_at), o.created_by)
    console.print(table)


@teams_app.command("create")
def create_team(
    name: Annotated[str, typer.Argument(help="The team's name (a slug).")],
    org: OrgOption = DEFAULT_ORG,
    db: DbOption = None,
) -> None:
    """Create a team."""
    _run(db, lambda identity: identity.create_team(name, org=org, actor=_actor()), audited=True)
    _created(f"team {org}/{name}")


@teams_app.command("list")
def list_teams(
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    db: DbOption = None,
) -> None:
    """Teams."""
    teams = _run(db, lambda identity: identity.list_teams(org=org))
    table = Table("organisation", "team", "created", "by", title="Teams", title_justify="left")
    for t in teams:
        table.add_row(t.org, t.name, when(t.created_at), t.created_by)
    console.print(table)


@projects_app.command("create")
def create_project(
    name: Annotated[str, typer.Argument(help="The project's name (a slug).")],
    team: Annotated[str, typer.Option(help="Its team.")],
    org: OrgOption = DEFAULT_ORG,
    db: DbOption = None,
) -> None:
    """Create a project in a team."""
    _run(
        db,
        lambda identity: identity.create_project(name, team=team, org=org, actor=_actor()),
        audited=True,
    )
    _created(f"project {org}/{team}/{name}")


@projects_app.command("list")
def list_projects(
    team: Annotated[str | None, typer.Option(help="Only this team's.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    db: DbOption = None,
) -> None:
    """Projects."""
    projects = _run(db, lambda identity: identity.list_projects(org=org, team=team))
    table = Table("organisation", "team", "project", "created", title="Projects")
    for p in projects:
        table.add_row(p.org, p.team, p.name, when(p.created_at))
    console.print(table)


@users_app.command("create")
def create_user(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    role: Annotated[Role, typer.Option(help=f"What they may do. {ROLES_HELP}.")],
    team: Annotated[
        str | None, typer.Option(help="Their team (required unless admin or auditor).")
    ] = None,
    org: OrgOption = DEFAULT_ORG,
    db: DbOption = None,
) -> None:
    """Create a user."""
    user = _run(
        db,
        lambda identity: identity.create_user(email, role=role, team=team, org=org, actor=_actor()),
        audited=True,
    )
    _created(f"user {user.email} ({user.user_id}, {user.role.value})")


@users_app.command("list")
def list_users(
    team: Annotated[str | None, typer.Option(help="Only this team's.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    db: DbOption = None,
) -> None:
    """Users."""
    users = _run(db, lambda identity: identity.list_users(org=org, team=team))
    table = Table("id", "email", "team", "role", "created", title="Users", title_justify="left")
    for u in users:
        table.add_row(
            u.user_id, u.email, f"{u.org}/{u.team or '*'}", u.role.value, when(u.created_at)
        )
    console.print(table)
