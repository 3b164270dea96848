"""``podium costs``: spend from the cost ledger, grouped, filtered and compared to a baseline.

Every amount is the ledger's exact ``Decimal`` and is printed in full (``$0.00000875``, never
rounded to cents); ``--json`` writes the same report the HTTP API's ``GET /api/costs`` returns,
amounts as decimal strings.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import json
import os
import sys
from collections.abc import Coroutine
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from podium.config import Settings
from podium.errors import ConfigError, ModelNotFound, PodiumError
from podium.finops.ledger import DIMENSIONS, EXACT, Dimension, LedgerQuery, SpendRow, SQLLedger
from podium.finops.reports import (
    QueryWording,
    ReportQueryError,
    Reports,
    Savings,
    parse_dimensions,
    parse_where,
    report_json,
    report_period,
)
from podium.finops.reports import exact as exact  # re-exported beside dollars (JSON vs text)
from podium.models.catalog import Catalog, CatalogError
from podium.models.registry import ModelRegistry
from podium.store.sql import store_url

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

_TOKENS = (
    ("input_tokens", "in tok"),
    ("output_tokens", "out tok"),
    ("cache_read_tokens", "cache rd"),
    ("cache_write_tokens", "cache wr"),
    ("reasoning_tokens", "reason"),
)
"""Token counts of a spend row, with their (narrow) column headers."""
_ALWAYS_SHOWN = {"input_tokens", "output_tokens"}


class Period(StrEnum):
    """Which calendar period ``--on`` picks (UTC); ``all`` is every recorded day."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    ALL = "all"


class SortBy(StrEnum):
    """How the groups are ordered."""

    GROUP = "group"
    COST = "cost"


# -- parsing --------------------------------------------------------------------------------------

_WORDING = QueryWording(
    separator="=",
    by_twice="--by names {name!r} twice",
    where_syntax="--where takes dimension=value (e.g. team=ml), got {pair!r}",
    where_twice="--where filters {dimension!r} twice; give one value",
    period_and_range="give --period/--on or --since/--until, not both",
    since_after_until="--since {since} is after --until {until}",
)
"""How ``podium costs`` words a bad report query: by its options."""


def parse_day(text: str, option: str) -> date:
    """A ``YYYY-MM-DD`` option value."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{option} takes a YYYY-MM-DD date, got {text!r}") from None


def _report_query(
    by: list[str],
    where: list[str],
    period: Period | None,
    on: str | None,
    since: str | None,
    until: str | None,
    today: date,
) -> tuple[list[Dimension], LedgerQuery]:
    """The dimensions and the rows a report is about, from the command's options."""
    try:
        dimensions = parse_dimensions(by, _WORDING)
        filters = parse_where(where, _WORDING)
        query = report_period(
            period.value if period is not None else None,
            parse_day(on, "--on") if on is not None else None,
            parse_day(since, "--since") if since is not None else None,
            parse_day(until, "--until") if until is not None else None,
            today=today,
            wording=_WORDING,
        )
    except ReportQueryError as exc:
        raise typer.BadParameter(exc.message) from None
    return dimensions, dataclasses.replace(query, where=filters)


def period_phrase(query: LedgerQuery, unit: Period | None) -> str:
    """How a report's days read after "spend": ``in November 2026``, ``since 2026-11-01``."""
    start, end = query.start, query.end
    last = end - timedelta(days=1) if end is not None else None
    if start is None:
        return "over all recorded days" if last is None else f"up to {last}"
    if last is None:
        return f"since {start}"
    if unit is Period.DAY or start == last:
        return f"on {start}"
    if unit is Period.MONTH or (start.day == 1 and last == _month_end(start)):
        return f"in {calendar.month_name[start.month]} {start.year}"
    if unit is Period.YEAR:
        return f"in {start.year}"
    if unit is Period.WEEK:
        return f"in the week of {start} to {last}"
    return f"from {start} to {last}"


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


# -- formatting -----------------------------------------------------------------------------------


def dollars(amount: Decimal) -> str:
    """USD for people: every significant digit, at least cents, thousands separated
    (``$0.00000875``, ``$1,234.50``, ``-$0.0012``)."""
    value = EXACT.normalize(amount.copy_abs())
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        value = value.quantize(Decimal("0.01"), context=EXACT)
    return f"{'-' if amount < 0 else ''}${value:,f}"


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def _share(part: Decimal, whole: Decimal) -> str:
    if whole == 0:
        return ""
    share = EXACT.divide(EXACT.multiply(part, 100), whole).quantize(Decimal("0.1"))
    return f"{share}%"


def _total(rows: list[SpendRow]) -> SpendRow:
    cost = Decimal(0)
    for row in rows:
        cost = EXACT.add(cost, row.cost)
    counts = {f: sum(getattr(r, f) for r in rows) for f, _ in _TOKENS}
    return SpendRow(
        (), cost, sum(r.calls for r in rows), **counts, cache_hits=sum(r.cache_hits for r in rows)
    )


def spend_table(
    by: list[Dimension], rows: list[SpendRow], title: str, *, width: int | None = None
) -> Table:
    """Spend per group, its share of the total, and a total row.

    Token counts are broken down (input, output, and cache and reasoning when any); when that
    table cannot fit ``width`` columns, one column holds all of a group's tokens instead.
    """
    table = _spend_table(by, rows, title, detailed=True)
    if width is not None and _narrowest(table) > width:
        table = _spend_table(by, rows, title, detailed=False)
    return table


def _narrowest(table: Table) -> int:
    """The fewest columns ``table`` renders in without cropping or squeezing a number."""
    return Measurement.get(console, console.options.update_width(1_000_000), table).minimum


def _spend_table(by: list[Dimension], rows: list[SpendRow], title: str, detailed: bool) -> Table:
    total = _total(rows)
    tokens: list[tuple[str, str]] = [("total_tokens", "tokens")]
    if detailed:
        tokens = [(f, label) for f, label in _TOKENS if f in _ALWAYS_SHOWN or getattr(total, f)]
    table = Table(title=title, title_justify="left")
    for i, dimension in enumerate(by):
        widest = max([len(dimension), 5, *(len(r.group[i] or "") for r in rows)])
        table.add_column(dimension, overflow="fold", min_width=min(widest, 24 if detailed else 10))
    table.add_column("cost (USD)", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("calls", justify="right", no_wrap=True)
    for _, label in tokens:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("hits", justify="right", no_wrap=True)

    def cells(row: SpendRow) -> list[str]:
        counts = (_tokens(row) if f == "total_tokens" else getattr(row, f) for f, _ in tokens)
        return [f"{row.calls:,}", *(f"{n:,}" for n in counts), f"{row.cache_hits:,}"]

    for row in rows:
        groups = [Text(v) if v is not None else Text("(none)", style="dim") for v in row.group]
        table.add_row(*groups, dollars(row.cost), _share(row.cost, total.cost), *cells(row))
    if by:
        table.add_section()
        blanks = [Text("")] * (len(by) - 1)
        table.add_row(Text("total"), *blanks, dollars(total.cost), "", *cells(total), style="bold")
    return table


def _tokens(row: SpendRow) -> int:
    return sum(getattr(row, f) for f, _ in _TOKENS)


def savings_table(s: Savings, when: str) -> Table:
    """What routing, the cache and the model choice saved against the baseline."""
    table = Table(title=f"Savings {when}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("USD", justify="right", no_wrap=True)
    table.add_column("detail")
    table.add_row("actual spend", dollars(s.actual), "")
    if s.baseline_model is not None and s.baseline is not None and s.vs_baseline is not None:
        table.add_row(f"everything on {s.baseline_model}", dollars(s.baseline), "")
        table.add_row(
            Text("saved vs baseline", style="bold"),
            Text(dollars(s.vs_baseline), style="bold green" if s.vs_baseline >= 0 else "red"),
            f"{_share(s.vs_baseline, s.baseline)} of the baseline" if s.baseline else "",
        )
    table.add_row("saved by routing", dollars(s.routing), _count(s.routed_calls, "routed call"))
    table.add_row("saved by the cache", dollars(s.cache), _count(s.cache_hits, "cache hit"))
    if s.unpriced:
        why = "routed from an alias, or a model without a price that day"
        table.add_row("not re-priced", "", f"{_count(s.unpriced, 'call')} ({why})")
    return table


# -- the command ----------------------------------------------------------------------------------


def _settings(db: str | None) -> Settings:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    if db:
        settings = settings.model_copy(update={"database_url": db})
    return settings


def _check_ledger_url(url: str) -> None:
    """Refuse a store the ledger cannot be in, and a SQLite file that does not exist (a report
    must not create an empty database and call it zero spend)."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        raise ConfigError(
            "the store is in memory (memory://), so no spend is kept to report on; "
            "pass --db with the database the gateway records to"
        )
    parsed = store_url(url)  # only the scheme is ever shown: the rest may hold a password
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise ConfigError(
            f"no database at {database}; pass --db with the store URL "
            "(or set PODIUM_DATABASE_URL / PODIUM_HOME)"
        )


def _catalog(home: Path) -> Catalog:
    """The catalog ``podium models`` shows: built-in, the user's file, installed local models."""
    try:
        return Catalog.for_home(home).including(ModelRegistry.default().local_models)
    except CatalogError as exc:
        err.print(f"[bold red]invalid catalog[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except PodiumError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None


def costs(
    by: Annotated[
        list[str],
        typer.Option(
            "--by",
            "-b",
            metavar="DIMENSIONS",
            help=f"Group by these dimensions, comma-separated: {', '.join(DIMENSIONS)}.",
        ),
    ] = [],  # noqa: B006
    period: Annotated[
        Period | None,
        typer.Option(help="The calendar period (UTC) containing --on (default: month)."),
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="A day in the period, YYYY-MM-DD (default: today, UTC)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="First day included, YYYY-MM-DD (instead of --period)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="Last day included, YYYY-MM-DD (instead of --period)."),
    ] = None,
    where: Annotated[
        list[str],
        typer.Option(
            "--where",
            "-w",
            metavar="DIMENSION=VALUE",
            help="Only rows where dimension=value (repeatable).",
        ),
    ] = [],  # noqa: B006
    savings: Annotated[
        bool,
        typer.Option(
            "--savings", help="Also show what routing and the cache saved (needs --baseline)."
        ),
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Show savings against running every call on this model (implies --savings).",
        ),
    ] = None,
    sort: Annotated[SortBy, typer.Option(help="Order groups by name or by cost.")] = SortBy.GROUP,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Store URL of the ledger (default: the store; env PODIUM_DATABASE_URL).",
        ),
    ] = None,
) -> None:
    """Spend from the cost ledger over a period, grouped by any dimensions, with exact totals.

    Examples: 'podium costs --by team,model' (this month), 'podium costs --period week --where
    team=ml', 'podium costs --since 2026-11-01 --until 2026-11-15 --baseline openai/gpt-4o'.
    """
    dimensions, query = _report_query(by, where, period, on, since, until, datetime.now(UTC).date())
    if savings and baseline is None:
        raise typer.BadParameter("--savings compares against a model: add --baseline MODEL")
    settings = _settings(db)
    catalog = Catalog()  # spend needs no prices; savings load the user's catalog
    if baseline is not None:
        catalog = _catalog(settings.home)
        try:
            catalog.get(baseline)
        except ModelNotFound as exc:
            raise typer.BadParameter(f"--baseline: {exc}") from None

    async def report() -> tuple[list[SpendRow], Savings | None]:
        _check_ledger_url(settings.store_url)
        ledger = await SQLLedger.open(
            settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        try:
            reports = Reports(ledger, catalog)
            rows = await reports.spend(dimensions, query)
            found = await reports.savings(query, baseline=baseline) if baseline else None
            return rows, found
        finally:
            await ledger.close()

    rows, found = _run(report())
    if sort is SortBy.COST:
        rows.sort(key=lambda r: r.cost, reverse=True)  # stable: ties keep the group order
    if as_json:
        sys.stdout.write(json.dumps(report_json(query, dimensions, rows, found), indent=2) + "\n")
        return
    when = period_phrase(query, period)
    only = " and ".join(f"{d}={v}" for d, v in query.where.items())
    if only:
        when += f" where {only}"
    if not rows:
        console.print(f"no spend recorded {when}", highlight=False)
        return
    grouped = f" by {', '.join(dimensions)}" if dimensions else ""
    console.print(spend_table(dimensions, rows, f"Spend{grouped} {when}", width=console.width))
    if found is not None:
        console.print(savings_table(found, when))
