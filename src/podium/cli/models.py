"""``podium models``: list, show and import the model catalog.

Money is shown per million tokens, computed in ``Decimal`` (no float rounding).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from podium.config import Settings
from podium.errors import ConfigError, ModelNotFound
from podium.models.base import Capability
from podium.models.catalog import (
    USER_CATALOG,
    Catalog,
    CatalogError,
    ModelInfo,
    Price,
    PriceTier,
    model_to_dict,
    money,
)
from podium.models.litellm import read_litellm, update_catalog_file
from podium.models.registry import ModelRegistry

models_app = typer.Typer(
    help="The model catalog: what each model can do and costs (without a command: list it).",
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

MILLION = Decimal(1_000_000)


class SortKey(StrEnum):
    """How ``podium models`` orders the list."""

    NAME = "name"
    PRICE = "price"
    CONTEXT = "context"


CatalogOption = Annotated[
    list[Path],
    typer.Option(
        "--catalog",
        help="Extra catalog file(s) layered over the built-in one and <PODIUM_HOME>/catalog.yaml.",
    ),
]


def _home() -> Path:
    try:
        return Settings.from_env(os.environ).home
    except ConfigError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None


def _catalog(extra: list[Path]) -> Catalog:
    """Built-in + user catalog files, plus the local models the installed plug-ins register."""
    user = _home() / USER_CATALOG
    paths = [user] if user.is_file() else []
    try:
        return Catalog.load(*paths, *extra).including(ModelRegistry.default().local_models)
    except CatalogError as exc:
        n = len(exc.issues)
        err.print(f"[bold red]invalid catalog[/]: {n} problem{'s' if n != 1 else ''}")
        for issue in exc.issues:
            err.print(Text(str(issue)), style="red", highlight=False)
        raise typer.Exit(2) from None


def per_million(amount: Decimal | None) -> str:
    """USD per million tokens, exact, with at least two decimals (``'2.50'``, ``'0.075'``)."""
    if amount is None:
        return ""
    value = (amount * MILLION).normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        value = value.quantize(Decimal("0.01"))
    return format(value, "f")


def _sort_key(key: SortKey, today: date) -> Any:
    def by_price(m: ModelInfo) -> tuple[Any, ...]:
        p = m.price_at(today)
        return (p is None, p.input if p else 0, p.output if p else 0, m.name)

    def by_context(m: ModelInfo) -> tuple[Any, ...]:
        return (-(m.context_window or 0), m.name)

    return {SortKey.PRICE: by_price, SortKey.CONTEXT: by_context}.get(key, lambda m: m.name)


@models_app.callback(invoke_without_command=True)
def list_models(
    ctx: typer.Context,
    provider: Annotated[
        list[str], typer.Option("--provider", "-p", help="Only these providers.")
    ] = [],  # noqa: B006
    capability: Annotated[
        list[Capability], typer.Option("--capability", "-c", help="Only models with all of these.")
    ] = [],  # noqa: B006
    local: Annotated[
        bool | None, typer.Option("--local/--hosted", help="Only local, or only hosted, models.")
    ] = None,
    sort: Annotated[SortKey, typer.Option(help="Order by name, price or context.")] = SortKey.NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    catalog: CatalogOption = [],  # noqa: B006
) -> None:
    """List the catalog's models (run 'podium models show NAME' for one model)."""
    if ctx.invoked_subcommand is not None:
        return
    cat = _catalog(catalog)
    today = date.today()
    found = [
        m
        for m in cat
        if (not provider or m.provider in provider)
        and all(c in m.capabilities for c in capability)
        and (local is None or m.local == local)
    ]
    found.sort(key=_sort_key(sort, today))
    if as_json:
        sys.stdout.write(json.dumps([_as_json(m) for m in found], indent=2) + "\n")
        return
    if not found:
        console.print("no model matches; known providers: " + ", ".join(cat.providers))
        return
    table = Table(title=f"Models ({len(found)})", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("capabilities")
    table.add_column("context", justify="right", no_wrap=True)
    table.add_column("$/1M in", justify="right", no_wrap=True)
    table.add_column("$/1M out", justify="right", no_wrap=True)
    table.add_column("$/1M cache read", justify="right", no_wrap=True)
    for m in found:
        p = m.price_at(today)
        table.add_row(
            m.name,
            m.provider,
            ", ".join(sorted(m.capabilities)),
            f"{m.context_window:,}" if m.context_window else "",
            per_million(p.input) if p else "",
            per_million(p.output) if p else "",
            per_million(p.cache_read) if p else "",
        )
    console.print(table)


def _as_json(m: ModelInfo) -> dict[str, Any]:
    data = model_to_dict(m)
    data["provider"] = m.provider
    data["provider_model"] = m.provider_model
    data["local"] = m.local
    data["prices"] = [{**p, "effective_from": str(p["effective_from"])} for p in data["prices"]]
    return data


@models_app.command()
def show(
    name: Annotated[str, typer.Argument(help="A model name or alias.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    catalog: CatalogOption = [],  # noqa: B006
) -> None:
    """Show one model: every field and its price history."""
    cat = _catalog(catalog)
    try:
        m = cat.get(name)
    except ModelNotFound as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(_as_json(m), indent=2) + "\n")
        return
    console.print(f"[bold]{m.name}[/]  {m.description}", highlight=False)
    facts = Table.grid(padding=(0, 2))
    rows = [
        ("provider", m.provider),
        ("provider model", m.provider_model),
        ("aliases", ", ".join(m.aliases)),
        ("capabilities", ", ".join(sorted(m.capabilities))),
        ("context window", f"{m.context_window:,}" if m.context_window else "unknown"),
        ("max output", f"{m.max_output:,}" if m.max_output else "unknown"),
        ("local", "yes" if m.local else "no"),
        *((f"extra.{k}", v) for k, v in m.extra.items()),
    ]
    for key, value in rows:
        facts.add_row(Text(key, style="dim"), Text(value))
    console.print(facts)
    console.print(_history(m.prices))


def _history(prices: tuple[Price, ...]) -> Table:
    table = Table(title="Price history (USD per 1M tokens)", title_justify="left")
    for col in ("from", "input", "output", "cache read", "cache write", "reasoning", "other"):
        table.add_column(col, justify="left" if col in ("from", "other") else "right")
    table.add_column("source")
    for p in prices:
        other = [_tier(t) for t in p.tiers]
        for label, value in (
            ("per character", p.per_character),
            ("per image", p.per_image),
            ("per second", p.per_second),
            ("per request", p.per_request),
        ):
            if value is not None:
                other.append(f"{label}: {money(value)}")
        table.add_row(
            str(p.effective_from),
            per_million(p.input),
            per_million(p.output),
            per_million(p.cache_read),
            per_million(p.cache_write),
            per_million(p.reasoning),
            "\n".join(other),
            p.source,
        )
    return table


def _tier(t: PriceTier) -> str:
    text = f"above {t.above_input_tokens:,}: in {per_million(t.input)}, out {per_million(t.output)}"
    if t.cache_read is not None:
        text += f", cache read {per_million(t.cache_read)}"
    if t.cache_write is not None:
        text += f", cache write {per_million(t.cache_write)}"
    return text


@models_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A LiteLLM price map (JSON).", exists=True)],
    provider: Annotated[
        list[str], typer.Option("--provider", "-p", help="Only these providers.")
    ] = [],  # noqa: B006
    effective: Annotated[
        str | None,
        typer.Option(help="Date the prices take effect, YYYY-MM-DD (default: today)."),
    ] = None,
    into: Annotated[
        Path | None,
        typer.Option(help="Catalog file to update (default: <PODIUM_HOME>/catalog.yaml)."),
    ] = None,
) -> None:
    """Import a LiteLLM price map into your catalog: new models are added, changed prices are
    appended to each model's history (earlier prices stay)."""
    try:
        when = date.fromisoformat(effective) if effective else date.today()
    except ValueError:
        raise typer.BadParameter(f"{effective!r} is not a YYYY-MM-DD date") from None
    target = into or _home() / USER_CATALOG
    try:
        result = read_litellm(file, effective_from=when, providers=set(provider) or None)
    except (ValueError, OSError) as exc:
        err.print(f"[bold red]error[/]: cannot read {file}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        update = update_catalog_file(target, result.models)
    except CatalogError as exc:
        err.print(f"[bold red]invalid catalog[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(update.text, encoding="utf-8")
    temporary.replace(target)
    console.print(
        f"imported {len(result.models):,} models from {file.name}: {update.new:,} new, "
        f"{update.changed:,} with a changed price, {update.unchanged:,} unchanged"
        + (f", {len(update.conflicts):,} left alone" if update.conflicts else ""),
        highlight=False,
    )
    if result.skipped:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in result.skipped.items())
        console.print(f"skipped {result.skipped_total:,} entries ({reasons})", highlight=False)
    if result.filtered:
        console.print(f"{result.filtered:,} entries of other providers", highlight=False)
    for conflict in update.conflicts[:10]:
        console.print(f"  left alone: {conflict}", style="yellow", highlight=False)
    console.print(f"prices effective {when} → {target}", highlight=False)
