"""``podium serve``: run the HTTP API with uvicorn."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from podium.config import Settings
from podium.errors import ConfigError, PodiumError

TOKEN_ENV = "PODIUM_ADMIN_TOKEN"


def _base_url(host: str, port: int, *, https: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{shown}:{port}"


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _plain_http_allowed(rule: str, host: str, *, tls: bool) -> None:
    """Refuse to serve plain HTTP where the config says not to (``server.plain_http``)."""
    if tls or rule == "allow":
        return
    if rule == "refuse":
        raise ConfigError(
            "server.plain_http is 'refuse' but no TLS certificate is configured: set "
            "server.tls (cert, key) or pass --tls-cert and --tls-key"
        )
    if host not in LOOPBACK and not host.startswith("127."):
        raise ConfigError(
            f"refusing to serve plain HTTP on {host}: bearer tokens and prompts would cross the "
            "network in clear. Configure TLS (server.tls, or --tls-cert/--tls-key), bind "
            "127.0.0.1, or set server.plain_http: allow (behind a TLS-terminating proxy)"
        )


def banner(base: str, token: str | None, workflows: Path) -> Panel:
    """What ``serve`` prints once at start-up. ``token`` is shown only if it was generated."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("API", f"{base}/api")
    grid.add_row("Gateway", f"{base}/v1  (OpenAI-compatible: base_url={base}/v1)")
    grid.add_row("Docs", f"{base}/docs")
    grid.add_row("Workflows", str(workflows))
    if token is None:
        grid.add_row("Admin token", f"from ${TOKEN_ENV}")
    else:
        grid.add_row("Admin token", f"export {TOKEN_ENV}={token}")
        grid.add_row("", "[dim]generated for this process; set the variable to keep one[/]")
    grid.add_row("Try", f'curl -H "Authorization: Bearer ${TOKEN_ENV}" {base}/api/workflows')
    grid.add_row("", "podium demo  [dim](all six seed workflows, offline, with a summary)[/]")
    grid.add_row("", "podium runs · podium show RUN_ID · podium costs --by model")
    return Panel(grid, title="Podium API", expand=False)


async def _check_store(settings: Settings) -> None:
    from podium.store import open_store

    store = await open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    await store.close()


def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on (default: the config's, else 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: the config's, else 8000).")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Gateway configuration (YAML): model groups, routing, cache, limits, budgets, "
            "keys, TLS. Env PODIUM_GATEWAY_CONFIG.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM); serve HTTPS. Needs --tls-key.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log one line per request (the client's address taken from X-Forwarded-For "
            "when a proxy on this host sends it). Off by default: every call is already in the "
            "ledger and the run journal, and at 1,000 requests/s the log costs CPU."
        ),
    ] = False,
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
    """Serve the HTTP API and the OpenAI-compatible gateway (admin token from
    $PODIUM_ADMIN_TOKEN; client keys from the config)."""
    # Imported here so that the other commands do not pay for the web stack.
    import uvicorn

    from podium.api import create_app
    from podium.api.auth import ClientKeys
    from podium.gateway.config import GatewayConfig

    console = Console()
    err = Console(stderr=True)
    try:
        settings = Settings.from_env(os.environ)
        if db:
            settings = settings.model_copy(update={"database_url": db})
        if config_file is not None:
            settings = settings.model_copy(update={"gateway_config": config_file})
        path = settings.gateway_config
        gateway_config = GatewayConfig.load(path) if path else GatewayConfig.default()
        keys = gateway_config.client_keys(os.environ)
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        tls = gateway_config.server.tls
        cert = tls_cert or (tls.cert if tls is not None else None)
        key = tls_key or (tls.key if tls is not None else None)
        host = host or gateway_config.server.host
        port = port or gateway_config.server.port
        _plain_http_allowed(gateway_config.server.plain_http, host, tls=cert is not None)
        # Fail here, readably, rather than with a traceback from inside the server's start-up.
        asyncio.run(_check_store(settings))
    except PodiumError as exc:
        err.print(f"[bold red]error[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    token = os.environ.get(TOKEN_ENV) or None
    generated = token is None
    if token is None:
        token = secrets.token_urlsafe(32)
    authenticator = None
    if keys:
        from podium.finops.ledger import Attribution

        authenticator = ClientKeys(
            {
                k.secret.get_secret_value(): (
                    k.id,
                    Attribution(
                        org=k.org or "default",
                        team=k.team,
                        project=k.project,
                        key_id=k.id,
                        use_case=k.use_case,
                    ),
                )
                for k in keys
            }
        )
    app = create_app(
        settings,
        workflows_dir=workflows,
        admin_token=token,
        gateway_config=gateway_config,
        authenticator=authenticator,
    )
    base = _base_url(host, port, https=cert is not None)
    console.print(banner(base, token if generated else None, workflows))
    # uvicorn's own logging set-up, extended to Podium's loggers (start-up, recovery, failures).
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["podium"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        access_log=access_log,
        # X-Forwarded-For rewrites the client's address, which only the access log shows: a
        # layer (~8 µs a request) that is worth it only with the log on.
        proxy_headers=access_log,
        loop="uvloop",
        http="httptools",
    )
    # What start-up built (modules, catalog, plans) lives as long as the server: freeze it out
    # of the collector, and collect less often — a request leaves a few thousand short-lived
    # objects, and the default threshold (700) ran a collection every few requests.
    # Measured on the gateway benchmark: 877 → 1,069 requests/s sustained, memory still flat.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(3)
