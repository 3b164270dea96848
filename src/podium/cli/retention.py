"""``podium retention run``: apply the policy's retention rules once, now.

Shreds audit records, purges the content of finished runs (hashes kept) and deletes cache entries
past their rule's ``days`` (see :mod:`podium.governance.retention`). The server runs the same job
on a schedule; this command is for a one-off run, a cron job, or a ``--dry-run`` to see what the
rules would delete.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from podium.cli.audit import DbOption, _fail, _url
from podium.cli.render import when
from podium.config import Settings
from podium.errors import ConfigError, PodiumError
from podium.gateway.cache import CacheBackend
from podium.gateway.config import CACHE_FILE
from podium.governance.retention import RetentionJob, RetentionReport
from podium.types import SystemClock

retention_app = typer.Typer(
    help="Retention: delete content past its policy's time (hashes kept).",
    no_args_is_help=True,
)
console = Console()


@retention_app.callback()
def _group() -> None:
    """Retention: delete content past its policy's time (hashes kept)."""
    # A callback keeps ``run`` a subcommand even while it is the only one.


def _rules(policy: Path) -> Any:
    from podium.governance.policy import Policy

    try:
        return Policy.load(policy).retention
    except (ConfigError, OSError) as exc:
        raise _fail(f"cannot load the policy {policy}: {exc}") from None


def _table(report: RetentionReport) -> Table:
    title = "Retention (dry run: nothing deleted)" if report.dry_run else "Retention"
    table = Table(title=title, title_justify="left")
    for name in ("rule", "days", "older than", "audit shredded", "runs purged", "cache"):
        table.add_column(name, justify="right" if name != "rule" else "left")
    for r in report.rules:
        entries = "?" if r.cache_entries is None else str(r.cache_entries)
        cache = f"{entries} in {len(r.cache_namespaces)} ns" if r.cache_namespaces else "0"
        table.add_row(
            r.rule_id,
            str(r.days),
            when(r.cutoff),
            str(r.audit_shredded),
            str(len(r.runs_purged)),
            cache,
        )
    return table


@retention_app.command("run")
def run(
    policy: Annotated[
        Path,
        typer.Option("--policy", metavar="FILE", help="The policy whose retention rules apply."),
    ],
    db: DbOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    cache: Annotated[
        list[Path] | None,
        typer.Option(
            "--cache",
            metavar="FILE",
            help="A SQLite response cache to purge too (repeatable; default: the gateway's "
            f"<home>/{CACHE_FILE} when it exists).",
        ),
    ] = None,
    redis_cache: Annotated[
        list[str] | None,
        typer.Option("--redis-cache", metavar="URL", help="A Redis response cache (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Shred audit records, purge finished runs' content and cache entries past their time."""
    url = _url(db)
    rules = _rules(policy)
    files = list(cache or [])
    if not files:
        try:
            default = Path(Settings.from_env(os.environ).home) / CACHE_FILE
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        if default.exists():
            files.append(default)
    for file in files:
        if not file.exists():
            raise _fail(f"no cache file at {file}")

    async def work() -> RetentionReport:
        from podium.gateway.cache_backends import RedisCacheBackend, SQLiteCacheBackend
        from podium.governance.audit import AuditLog
        from podium.store import open_store

        clock = SystemClock()
        audit = await AuditLog.open(url, clock=clock)
        store = await open_store(url)
        caches: list[CacheBackend] = [SQLiteCacheBackend(f) for f in files]
        caches += [RedisCacheBackend.from_url(u) for u in redis_cache or []]
        try:
            job = RetentionJob(audit, store, caches, rules, clock)
            return await job.run(dry_run=dry_run)
        finally:
            for backend in caches:
                await backend.close()
            await store.close()
            await audit.close()

    try:
        report = asyncio.run(work())
    except (PodiumError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), sort_keys=True) + "\n")
        return
    console.print(_table(report))
    verb = "would delete" if dry_run else "deleted"
    entries = "?" if report.cache_entries is None else report.cache_entries
    console.print(
        escape(
            f"{verb}: {report.audit_shredded} audit payloads, {report.runs_purged} runs' "
            f"content, {entries} cache entries"
        ),
        highlight=False,
    )
