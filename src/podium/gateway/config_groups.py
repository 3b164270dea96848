"""The gateway config's model groups: the deployments a group routes over, its strategy, and the
cascade and learned-router settings (``model_groups:`` in the file, see ``docs/gateway.md``).

Part of :mod:`podium.gateway.config`, which re-exports every name here; split out to keep each
module to one idea (the file's top level there, the groups here).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podium.gateway.config_yaml import (
    EnvName,
    Invalid,
    Loc,
    Problem,
    Section,
    context,
    fail,
    near,
)
from podium.gateway.routing import (
    CascadeStrategy,
    LeastBusyStrategy,
    LeastCostStrategy,
    LeastLatencyStrategy,
    PriorityStrategy,
    RoutingStrategy,
    UsageBasedStrategy,
    WeightedStrategy,
)
from podium.models.catalog import Catalog

if TYPE_CHECKING:
    from podium.gateway.learned.policy import Policy

__all__ = [
    "CascadeConfig",
    "DeploymentConfig",
    "GroupConfig",
    "LearnedConfig",
    "Strategy",
    "unknown_model",
]

Strategy = Literal[
    "priority",
    "weighted",
    "least-latency",
    "least-cost",
    "least-busy",
    "usage-based",
    "cascade",
    "learned",
]
_NAME = r"^\S+$"


class DeploymentConfig(Section):
    """One way to reach a catalog model."""

    model: str = Field(min_length=1)
    """A catalog model (``openai/gpt-4o-mini``) or a registered local model
    (``local/smollm2-135m-instruct``); aliases are accepted."""
    id: str | None = Field(default=None, pattern=_NAME)
    """Unique name of the deployment (rate limits, breakers and audit use it). Default: the
    model as written, suffixed ``#2``, ``#3`` when repeated."""
    base_url: str | None = None
    """This deployment's API URL (overrides ``providers.<provider>.base_url``)."""
    api_key_env: EnvName | None = None
    """The *name* of the environment variable holding this deployment's key."""
    weight: float = Field(default=1.0, ge=0)
    """Share of traffic under the ``weighted`` strategy."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute this deployment may take (routing skips it beyond; none: no cap)."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per minute this deployment may take."""
    priority: int = 0
    """Lower goes first (``priority`` strategy, and ties of the others)."""
    tier: int = Field(default=0, ge=0)
    """Cascade rung: 0 is the cheapest; higher tiers are stronger."""
    max_context: int | None = Field(default=None, ge=1)
    """A context window smaller than the catalog's (e.g. a server's ``max_model_len``)."""

    @field_validator("model")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        catalog = context(info).catalog
        if catalog is not None and catalog.lookup(value) is None:
            raise Invalid([unknown_model(catalog, value)])
        return value

    @model_validator(mode="after")
    def _hosted_only(self, info: ValidationInfo) -> DeploymentConfig:
        catalog = context(info).catalog
        model = catalog.lookup(self.model) if catalog is not None else None
        keys = [k for k in ("base_url", "api_key_env") if getattr(self, k) is not None]
        if model is not None and model.local and keys:
            raise Invalid(
                [
                    Problem(
                        (k,),
                        f"{model.name!r} runs in-process: '{k}' applies to hosted models only",
                        f"remove '{k}'",
                    )
                    for k in keys
                ]
            )
        return self


class CascadeConfig(Section):
    """Options of the ``cascade`` strategy."""

    threshold: float = Field(default=0.5, ge=0, le=1)
    """A request whose complexity score reaches this starts one tier up."""
    confidence_threshold: float = Field(default=0.5, ge=0, le=1)
    """An answer whose confidence is below this is escalated to the next tier."""
    judge: Literal["confidence", "agreement"] = "confidence"
    """How an answer below the top tier is judged: ``confidence``, one answer's own signs of
    doubt (empty, refused, cut, hedged, invalid JSON); ``agreement``, the tier's first two
    deployments are asked at once and the answer escalates unless they agree (same option
    letter, or the same text once case and spacing are folded). Both answers are billed. A
    streamed request is never judged: it streams from the tier its complexity score picks."""


class LearnedConfig(Section):
    """Options of the ``learned`` strategy (see ``podium route train``)."""

    artefact: Path
    """The trained router's JSON file (its ``.npz`` weights beside it); relative to the config
    file's directory."""
    policy: Literal["threshold", "tradeoff", "target"] = "target"
    """``threshold``: the cheapest deployment whose predicted quality reaches ``threshold``;
    ``tradeoff``: the largest quality - ``lambda`` x cost (cost relative to the premium model);
    ``target``: keep ``target`` of the premium model's accuracy at the lowest cost (the λ the
    artefact's cross-validated curve gives)."""
    threshold: float | None = Field(default=None, ge=0, le=1)
    """``threshold`` policy: the predicted probability of a good answer to reach (default 0.7)."""
    lam: float | None = Field(default=None, ge=0, alias="lambda")
    """``tradeoff`` policy: quality points one premium call's cost is worth (default 0.1)."""
    target: float | None = Field(default=None, gt=0, le=1)
    """``target`` policy: the share of the premium model's accuracy to keep (default 0.95)."""
    task_key: str = Field(default="task", min_length=1)
    """The request metadata key carrying the task tag the router was trained with."""
    models: dict[str, str] = Field(default_factory=dict)
    """Deployment id or model -> the model's name in the artefact, where they differ."""

    _router: Any = PrivateAttr(default=None)

    @field_validator("artefact")
    @classmethod
    def _exists(cls, value: Path, info: ValidationInfo) -> Path:
        path = context(info).resolve(value)
        if not path.is_file():
            base = context(info).base_dir or Path.cwd()
            raise fail(f"no such file: {path}", f"relative paths start from {base}")
        return path

    @model_validator(mode="after")
    def _policy_and_artefact(self) -> LearnedConfig:
        problems = [
            Problem(
                (key,),
                f"'{key}' applies to policy {owner!r}, not {self.policy!r}",
                f"remove '{key}', or set 'policy: {owner}'",
            )
            for key, owner, value in (
                ("threshold", "threshold", self.threshold),
                ("lambda", "tradeoff", self.lam),
                ("target", "target", self.target),
            )
            if value is not None and self.policy != owner
        ]
        if problems:
            raise Invalid(problems)
        try:  # NumPy: only for learned groups
            from podium.gateway.learned import artefact
            from podium.gateway.learned.strategy import UnreachableTarget, resolve_policy
        except ImportError as exc:
            raise fail(
                f"the learned router needs NumPy ({exc})", "pip install 'podium[local]'"
            ) from None

        try:
            router = artefact.load(self.artefact)
        except artefact.ArtefactError as exc:
            raise Invalid(
                [Problem(("artefact",), str(exc), "retrain with 'podium route train'")]
            ) from None
        unknown = [(k, v) for k, v in self.models.items() if v not in router.models]
        if unknown:
            raise Invalid(
                [
                    Problem(
                        ("models", k),
                        f"the artefact has no model {v!r}",
                        near(v, router.models) or "known: " + ", ".join(router.models),
                    )
                    for k, v in unknown
                ]
            )
        try:
            resolve_policy(router, self.policy_object())
        except UnreachableTarget as exc:
            raise fail(str(exc), "lower 'target'", at=("target",)) from None
        self._router = router
        return self

    def policy_object(self) -> Policy:
        """The declared policy (a ``target`` one not yet resolved to its λ)."""
        from podium.gateway.learned.policy import Policy

        return Policy(
            self.policy,
            threshold=0.7 if self.threshold is None else self.threshold,
            lam=0.1 if self.lam is None else self.lam,
            target=0.95 if self.target is None else self.target,
        )

    def strategy(self) -> RoutingStrategy:
        """The :class:`~podium.gateway.learned.LearnedStrategy` (loads the embedder's engine
        lazily, on the first request, when the router uses embeddings)."""
        from podium.gateway.learned.embed import E5Embedder
        from podium.gateway.learned.strategy import LearnedStrategy

        router = self._router
        return LearnedStrategy(
            router,
            self.policy_object(),
            models=self.models,
            embedder=E5Embedder() if router.spec.embeddings else None,
            task_key=self.task_key,
        )


class GroupConfig(Section):
    """A name clients call (as the request's ``model``) over deployments."""

    name: str = Field(pattern=_NAME)
    """What clients send as ``model``."""
    aliases: tuple[Annotated[str, Field(pattern=_NAME)], ...] = ()
    """Other names for the group."""
    strategy: Strategy = "priority"
    """How deployments are ranked: ``priority``, ``weighted``, ``least-latency``,
    ``least-cost``, ``least-busy``, ``usage-based``, ``cascade`` or ``learned``."""
    cascade: CascadeConfig | None = None
    """Options of the ``cascade`` strategy (only with ``strategy: cascade``)."""
    learned: LearnedConfig | None = None
    """Options of the ``learned`` strategy (required with ``strategy: learned``)."""
    fallback_answer: str | None = Field(default=None, min_length=1)
    """Answer given (marked degraded) when every deployment fails."""
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    """The deployments, in declaration order (which breaks ties)."""

    @model_validator(mode="after")
    def _strategy_options(self, info: ValidationInfo) -> GroupConfig:
        problems = []
        if self.cascade is not None and self.strategy != "cascade":
            problems.append(
                Problem(
                    ("cascade",),
                    f"'cascade' options apply only to strategy 'cascade', not {self.strategy!r}",
                    "remove 'cascade:', or set 'strategy: cascade'",
                )
            )
        problems += self._learned_problems(context(info).catalog)
        tiers = {d.tier for d in self.deployments}
        if self.strategy == "cascade" and len(tiers) < 2:
            problems.append(
                Problem(
                    ("strategy",),
                    f"a cascade needs deployments on two tiers or more (all are on tier "
                    f"{tiers.pop()})",
                    "give the stronger deployments 'tier: 1'",
                )
            )
        if self.cascade is not None and self.cascade.judge == "agreement" and len(tiers) > 1:
            top = max(tiers)
            for tier in sorted(tiers - {top}):
                count = sum(1 for d in self.deployments if d.tier == tier)
                if count < 2:
                    problems.append(
                        Problem(
                            ("cascade", "judge"),
                            f"judging by agreement needs two deployments on every tier below "
                            f"the top one; tier {tier} has {count}",
                            f"add a second deployment with 'tier: {tier}', or use "
                            "'judge: confidence'",
                        )
                    )
        if self.strategy == "weighted" and not any(d.weight > 0 for d in self.deployments):
            problems.append(
                Problem(
                    ("strategy",),
                    "weighted routing needs a deployment with weight > 0",
                    "set 'weight:' on the deployments",
                )
            )
        problems += self._mixed_kinds(context(info).catalog)
        if problems:
            raise Invalid(problems)
        return self

    def _learned_problems(self, catalog: Catalog | None) -> list[Problem]:
        if self.learned is not None and self.strategy != "learned":
            return [
                Problem(
                    ("learned",),
                    f"'learned' options apply only to strategy 'learned', not {self.strategy!r}",
                    "remove 'learned:', or set 'strategy: learned'",
                )
            ]
        if self.strategy != "learned":
            return []
        if self.learned is None:
            return [
                Problem(
                    ("strategy",),
                    "strategy 'learned' needs a trained router",
                    "add 'learned: {artefact: router.json}' (podium route train writes one)",
                )
            ]
        from podium.gateway.learned.strategy import match_name

        router = self.learned._router
        found = []
        for d in self.deployments:
            info = catalog.lookup(d.model) if catalog is not None else None
            names = [n for n in (d.id, d.model, *(info.aliases if info else ())) if n]
            found.append(match_name(names, router.models, self.learned.models))
        if not any(found):
            return [
                Problem(
                    ("learned", "models"),
                    "the router knows none of this group's deployments (it was trained on "
                    f"{', '.join(router.models)})",
                    "map deployments to its models: 'models: {<deployment id>: <model>}'",
                )
            ]
        return []

    def _mixed_kinds(self, catalog: Catalog | None) -> list[Problem]:
        """Deployments must be interchangeable: each shares a capability with the first."""
        infos = [catalog.lookup(d.model) if catalog is not None else None for d in self.deployments]
        first = infos[0]
        if first is None:
            return []
        return [
            Problem(
                ("deployments", j, "model"),
                f"{info.name!r} can do none of what {first.name!r} does "
                f"({', '.join(sorted(first.capabilities))})",
                "a group's deployments must be interchangeable; declare two groups",
            )
            for j, info in enumerate(infos)
            if info is not None and not info.capabilities & first.capabilities
        ]

    def strategy_object(self, rng: Random) -> RoutingStrategy:
        """The routing strategy this group declares (``rng`` drives ``weighted``)."""
        if self.strategy == "weighted":
            return WeightedStrategy(rng)
        if self.strategy == "cascade":
            return CascadeStrategy(threshold=(self.cascade or CascadeConfig()).threshold)
        if self.strategy == "learned" and self.learned is not None:
            return self.learned.strategy()
        return _STRATEGIES[self.strategy]()


_STRATEGIES: dict[str, type[RoutingStrategy]] = {
    "priority": PriorityStrategy,
    "least-latency": LeastLatencyStrategy,
    "least-cost": LeastCostStrategy,
    "least-busy": LeastBusyStrategy,
    "usage-based": UsageBasedStrategy,
}
"""The strategies built without arguments."""


def unknown_model(catalog: Catalog, name: str, at: Loc = ()) -> Problem:
    """The problem of a model name the catalog does not know, with the closest names."""
    names = [n for m in catalog for n in (m.name, *m.aliases)]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "see 'podium models'"
    return Problem(at, f"unknown model {name!r}", hint)
