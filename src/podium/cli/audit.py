"""``podium audit``: verify, show and export the tamper-evident audit trail.

Keys come from the environment: ``PODIUM_AUDIT_MASTER_KEY`` (or ``…_FILE``) to decrypt,
``PODIUM_AUDIT_SIGNING_KEY`` (or ``…_FILE``) or ``--public-key`` to check checkpoint signatures.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from podium.cli.render import short, when
from podium.config import Settings
from podium.errors import ConfigError, PodiumError
from podium.governance.audit import AuditLog
from podium.governance.chain import Checkpoint
from podium.governance.keys import PayloadShredded, VerifyKey
from podium.store.sql import store_url
from podium.types import SystemClock

T = TypeVar("T")

audit_app = typer.Typer(help="The tamper-evident audit trail: verify, show, export.")
console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", metavar="URL", help="Store URL (default: the store; env PODIUM_DATABASE_URL)."
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
    return typer.Exit(code)


def _url(db: str | None) -> str:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    url = db or settings.store_url
    if url.partition("://")[0].lower() == "memory":
        raise _fail("the store is in memory (memory://): no audit trail is kept there")
    try:
        parsed = store_url(url)  # only the scheme is ever shown: the rest may hold a password
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and not Path(database).exists():
        raise _fail(f"no database at {database}; pass --db with the store URL")
    return url


async def _open(url: str, public_keys: list[str]) -> AuditLog:
    """The audit log at ``url``, with the records of audit journals left by a server that
    stopped without moving them (it crashed) moved into the chain first."""
    from podium.governance.journal import recover
    from podium.governance.setup import existing_audit_keys

    settings = Settings.from_env(os.environ)
    try:
        master, signer = existing_audit_keys(settings, os.environ)
        verify_keys = [VerifyKey(base64.b64decode(k, validate=True)) for k in public_keys]
    except (ConfigError, binascii.Error, ValueError) as exc:
        raise _fail(f"bad audit key: {exc}") from None
    log = await AuditLog.open(
        url, clock=SystemClock(), master=master, signer=signer, verify_keys=verify_keys
    )
    journals = Path(settings.home) / "audit-journal"
    if master is not None and journals.is_dir():
        moved = await recover(log, journals)
        if moved:
            err.print(
                f"moved into the chain {moved} audit record(s) that a server which stopped "
                f"without moving them left in {journals}",
                highlight=False,
            )
    return log


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except PodiumError as exc:
        raise _fail(str(exc)) from None


PublicKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        metavar="BASE64",
        help="An Ed25519 public key whose checkpoints are trusted (repeatable).",
    ),
]


@audit_app.command()
def verify(
    db: DbOption = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            "--checkpoints",
            metavar="FILE",
            help="Checkpoints exported earlier (JSON lines), to detect a truncated tail.",
        ),
    ] = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Walk the chain: exit 0 when intact, 1 naming the first bad record."""
    url = _url(db)
    trusted: list[Checkpoint] = []
    if checkpoints is not None:
        try:
            for line in checkpoints.read_text().splitlines():
                data = json.loads(line) if line.strip() else None
                if data and data.get("type", "checkpoint") == "checkpoint":
                    trusted.append(Checkpoint.from_dict(data))
        except (OSError, ValueError, KeyError) as exc:
            raise _fail(f"cannot read checkpoints from {checkpoints}: {exc}") from None

    async def work() -> Any:
        log = await _open(url, public_key or [])
        try:
            return await log.verify(trusted, blocking=True)  # nothing else runs here
        finally:
            await log.close()

    result = _run(work())
    if result.ok:
        console.print(f"audit trail {result}", highlight=False)
        return
    err.print(f"[bold red]audit trail broken[/]: {escape(str(result))}", highlight=False)
    raise typer.Exit(1)


@audit_app.command()
def show(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N records.")] = 20,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Decrypt payloads (needs the master key).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """The newest records: header in clear, payload decrypted on request."""
    url = _url(db)

    async def work() -> list[dict[str, Any]]:
        log = await _open(url, [])
        try:
            out = []
            for record in await log.tail(limit):
                item = record.to_dict()
                if decrypt:
                    try:
                        item["payload"] = await log.decrypt(record.seq)
                    except PayloadShredded:
                        item["payload"] = "<shredded>"
                out.append(item)
            return out
        finally:
            await log.close()

    items = _run(work())
    if as_json:
        for item in items:
            sys.stdout.write(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n")
        return
    table = Table("seq", "time", "kind", "actor", "team", "fields", *(["payload"] * decrypt))
    for item in items:
        row = [
            str(item["seq"]),
            when(item["ts"]),
            item["kind"],
            item["actor"],
            item["team"] or "",
            short(item["fields"], 60),
        ]
        if decrypt:
            row.append(short(item["payload"], 60))
        table.add_row(*row)
    console.print(table)


@audit_app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Where to write the JSON lines.")],
    db: DbOption = None,
) -> None:
    """Write every record (payload still encrypted) and every signed checkpoint as JSON lines."""
    url = _url(db)

    async def work() -> tuple[int, int]:
        log = await _open(url, [])
        counts = {"record": 0, "checkpoint": 0}
        try:
            with file.open("w") as out:
                async for item in log.export():
                    out.write(json.dumps(item, sort_keys=True) + "\n")
                    counts[item["type"]] += 1
        finally:
            await log.close()
        return counts["record"], counts["checkpoint"]

    try:
        records, checkpoints = _run(work())
    except OSError as exc:
        raise _fail(f"cannot write {file}: {exc.strerror}") from None
    console.print(f"exported {records} records and {checkpoints} checkpoints to {file}")
