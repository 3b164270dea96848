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
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING

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
from podium.finops.budgets import Budget
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
from podium.gateway.config_sections import (
    CACHE_FILE,
    DEFAULT_EMBEDDER,
    LIMIT_SCOPES,
    BreakerConfig,
    BudgetConfig,
    CacheConfig,
    ClientKey,
    GovernanceConfig,
    KeyConfig,
    LimitRuleConfig,
    LimitsConfig,
    PricingConfig,
    ProviderConfig,
    RetryConfig,
    ServerConfig,
    TLSConfig,
)
from podium.gateway.config_yaml import (
    GatewayConfigError,
    Invalid,
    Loc,
    Problem,
    Section,
    ValidationContext,
    context,
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
