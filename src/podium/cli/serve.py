"""``podium serve``: run the HTTP API with uvicorn."""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from podium.config import Settings
from podium.errors import PodiumError

TOKEN_ENV = "PODIUM_ADMIN_TOKEN"


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def banner(base: str, token: str | None, workflows: Path) -> Panel:
    """What ``serve`` prints once at start-up. ``token`` is shown only if it was generated."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("API", f"{base}/api")
    grid.add_row("Docs", f"{base}/docs")
    grid.add_row("Workflows", str(workflows))
    if token is None:
        grid.add_row("Admin token", f"from ${TOKEN_ENV}")
    else:
        grid.add_row("Admin token", f"export {TOKEN_ENV}={token}")
        grid.add_row("", "[dim]generated for this process; set the variable to keep one[/]")
    grid.add_row("Try", f'curl -H "Authorization: Bearer ${TOKEN_ENV}" {base}/api/workflows')
    return Panel(grid, title="Podium API", expand=False)


async def _check_store(settings: Settings) -> None:
    from podium.store import open_store

    store = await open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    await store.close()


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workflows: Annotated[
        Path, typer.Option(help="Directory whose *.yaml workflows the API serves.")
    ] = Path("examples"),
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Store URL (default: SQLite in .podium/; env PODIUM_DATABASE_URL)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API: workflows, runs and human reviews (token from $PODIUM_ADMIN_TOKEN)."""
    # Imported here so that the other commands do not pay for the web stack.
    import uvicorn

    from podium.api import create_app

    console = Console()
    err = Console(stderr=True)
    try:
        settings = Settings.from_env(os.environ)
        if db:
            settings = settings.model_copy(update={"database_url": db})
        # Fail here, readably, rather than with a traceback from inside the server's start-up.
        asyncio.run(_check_store(settings))
    except PodiumError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    token = os.environ.get(TOKEN_ENV) or None
    generated = token is None
    if token is None:
        token = secrets.token_urlsafe(32)
    app = create_app(settings, workflows_dir=workflows, admin_token=token)
    console.print(banner(_base_url(host, port), token if generated else None, workflows))
    # uvicorn's own logging set-up, extended to Podium's loggers (start-up, recovery, failures).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["podium"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(app, host=host, port=port, log_level="info", log_config=log_config)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(3)
