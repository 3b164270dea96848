"""The policy engine: who may use which model, where each data class may go, per-call ceilings,
PII actions and retention — decided in memory, in microseconds.

:class:`Policy` compiles a validated :class:`~podium.governance.policy.spec.PolicySpec` once:
every selector list and model list becomes one regular expression (``fnmatch.translate`` of
each glob, joined), so a decision is a handful of ``re.match`` calls. Decisions are pure
functions of (caller, model, data class), so they are memoised in a bounded dict; the gateway's
admission (key → RBAC → policy) must cost at most 50 µs per call in total.

Evaluation order (``docs/policy.md``):

1. the data class: the request's, or the policy's default; an undeclared class is refused
   (rule ``unknown-classification``);
2. every ``deny`` in file order: the first whose ``when`` selects the caller and whose targets
   match the model refuses it — a deny beats every allow, wherever it is written;
3. every ``allow`` in file order: the first that matches admits the model;
4. otherwise the policy's ``default`` (``deny`` unless written otherwise): rule ``default-deny``
   or ``default-allow``.

The per-call ceiling is the first ``ceilings`` entry selecting the caller and the model. The
data class gives the allowed destinations and the PII action per destination; the gateway
enforces them (:mod:`podium.governance.gate`), routing only to deployments
:meth:`Policy.permits` and :meth:`Policy.destination_allowed` accept.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from podium.errors import DefinitionIssue, PodiumError
from podium.governance.chain import canonical_json, sha256_hex
from podium.governance.policy.spec import (
    DESTINATIONS,
    PolicyFileError,
    PolicySpec,
    SelectorSpec,
    TargetSpec,
    parse_spec,
    spec_from_mapping,
)

__all__ = [
    "BUILTIN_SOURCE",
    "MEMO_SIZE",
    "Policy",
    "PolicyDecision",
    "PolicyDenied",
    "RetentionRule",
    "RuleTrace",
    "Subject",
    "SubjectMatcher",
]

MEMO_SIZE = 4096
"""Decisions remembered per policy (the memo is emptied when full: no eviction bookkeeping on
the hot path)."""
BUILTIN_SOURCE = "<built-in>"
"""The ``source`` of :meth:`Policy.default`."""

_SELECTORS = (
    ("orgs", "org"),
    ("teams", "team"),
    ("projects", "project"),
    ("use_cases", "use_case"),
    ("keys", "key_id"),
)
"""Selector key in the file → :class:`Subject` attribute."""


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is calling, as the API key's attribution says. ``None``: the key carries none."""

    org: str | None = None
    team: str | None = None
    project: str | None = None
    use_case: str | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The policy's answer for one caller, model and data class.

    Attributes:
        allowed: Whether the model may be called.
        policy_id: The policy's id.
        policy_version: ``sha256:<12 hex>`` of its canonical content.
        rule_id: The rule that decided, or ``default-deny`` / ``default-allow`` /
            ``unknown-classification``.
        reason: One sentence naming the policy, its version, the rule, the caller and the model.
        classification: The request's data class (the policy's default when it named none).
        destinations: Where data of that class may go (``local``, ``hosted``).
        pii_action: Destination → ``redact`` | ``block`` | ``allow``.
        pii_entities: The personal-data kinds to look for.
        pii_restore: Whether placeholders are replaced by the originals in the answer.
        max_output_tokens: The ceiling's output-token cap, if any.
        max_cost_per_call: The ceiling's worst-case cost cap in USD, if any.
        ceiling_id: The ceiling that applies, if any.
    """

    allowed: bool
    policy_id: str
    policy_version: str
    rule_id: str
    reason: str
    classification: str
    destinations: frozenset[str]
    pii_action: Mapping[str, str]
    pii_entities: tuple[str, ...]
    pii_restore: bool
    max_output_tokens: int | None
    max_cost_per_call: Decimal | None
    ceiling_id: str | None


class PolicyDenied(PodiumError):
    """The central policy refuses a call (a model, a data class's destinations, a ceiling or
    personal data it blocks). Carries the policy id and version and the rule that decided, so
    the violation can be recorded and queried.

    Args:
        message: The full sentence (default: ``reason``).
        policy_id: The policy's id.
        policy_version: Its version (``sha256:…``).
        rule_id: The rule that refused.
        reason: Why, in words.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        policy_id: str,
        policy_version: str,
        rule_id: str,
        reason: str,
    ) -> None:
        self.policy_id = policy_id
        self.policy_version = policy_version
        self.rule_id = rule_id
        self.reason = reason
        super().__init__(message or reason)

    @classmethod
    def from_decision(cls, decision: PolicyDecision) -> PolicyDenied:
        """The error for a refusing decision."""
        return cls(
            decision.reason,
            policy_id=decision.policy_id,
            policy_version=decision.policy_version,
            rule_id=decision.rule_id,
            reason=decision.reason,
        )


# -- compiled matchers -----------------------------------------------------------------------------


def _globs(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regex matching a whole value against any of the globs (case-sensitive)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True, slots=True)
class SubjectMatcher:
    """A compiled ``when:``: every selector written must match its attribute. A missing
    attribute is matched as ``""`` (so only ``*`` matches it). No selectors: everybody."""

    checks: tuple[tuple[str, re.Pattern[str]], ...] = ()
    written: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The selectors as written (for display)."""

    @classmethod
    def of(cls, spec: SelectorSpec | None) -> SubjectMatcher:
        if spec is None:
            return cls()
        fields = spec.fields()
        return cls(
            tuple((attr, _globs(fields[key])) for key, attr in _SELECTORS if key in fields),
            tuple((key, fields[key]) for key, _attr in _SELECTORS if key in fields),
        )

    def matches(self, subject: Subject) -> bool:
        # A plain loop: all() over a generator costs ~0.3 µs more per call on the hot path.
        for attr, rx in self.checks:  # noqa: SIM110
            if rx.match(getattr(subject, attr) or "") is None:
                return False
        return True

    def describe(self) -> str:
        """``teams=eng,support projects=*``; ``everyone`` without selectors."""
        return " ".join(f"{k}={','.join(v)}" for k, v in self.written) or "everyone"


@dataclass(frozen=True, slots=True)
class _Targets:
    models: re.Pattern[str] | None
    providers: re.Pattern[str] | None
    destinations: frozenset[str] | None

    @classmethod
    def of(cls, spec: TargetSpec | None) -> _Targets | None:
        if spec is None:
            return None
        return cls(
            _globs(spec.models) if spec.models else None,
            _globs(spec.providers) if spec.providers else None,
            frozenset(spec.destinations) if spec.destinations else None,
        )

    def matches(self, model: str, provider: str) -> bool:
        if self.models is not None and self.models.match(model) is None:
            return False
        if self.providers is not None and self.providers.match(provider) is None:
            return False
        if self.destinations is not None:
            # No provider (a group's name): where it goes is known per deployment only.
            if not provider:
                return False
            return ("local" if provider == "local" else "hosted") in self.destinations
        return True


@dataclass(frozen=True, slots=True)
class _Rule:
    """One effect of a written rule (a rule with both ``allow`` and ``deny`` makes two)."""

    id: str
    who: SubjectMatcher
    targets: _Targets


@dataclass(frozen=True, slots=True)
class _Ceiling:
    id: str
    who: SubjectMatcher
    models: re.Pattern[str] | None
    max_output_tokens: int | None
    max_cost_per_call: Decimal | None


@dataclass(frozen=True)
class RetentionRule:
    """How long records of some callers' data classes are kept.

    Attributes:
        id: The rule's id (the retention job names it when it deletes).
        days: Records older than this are deleted.
        classifications: The data classes it covers; ``None``: every class.
        who: The callers it covers (compiled ``when:``).
        default_classification: The class of a record that names none.
    """

    id: str
    days: int
    classifications: tuple[str, ...] | None = None
    who: SubjectMatcher = field(default_factory=SubjectMatcher)
    default_classification: str = "internal"

    def matches(
        self,
        team: str | None,
        classification: str | None,
        *,
        org: str | None = None,
        project: str | None = None,
        use_case: str | None = None,
        key_id: str | None = None,
    ) -> bool:
        """Whether a record of ``team`` with data class ``classification`` (``None``: the
        policy's default class) falls under this rule. Selectors on attributes not passed
        match only ``*``."""
        if self.classifications is not None:
            cls = classification if classification is not None else self.default_classification
            if cls not in self.classifications:
                return False
        return self.who.matches(Subject(org, team, project, use_case, key_id))


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule judged a request (``podium policy explain``)."""

    rule_id: str
    effect: str
    """``deny`` or ``allow`` (a rule with both appears twice)."""
    selects: bool
    """Its ``when:`` selects the caller."""
    targets: bool
    """Its models/providers match."""
    decided: bool
    """It is the rule that decided."""


# -- the policy ------------------------------------------------------------------------------------


class Policy:
    """A compiled, versioned policy. Build it with :meth:`load`, :meth:`parse` or
    :meth:`default`; :meth:`decide` and :meth:`permits` are what the gateway calls.

    Attributes:
        id: The policy's id (``policy:`` in the file).
        version: ``sha256:`` and the first 12 hex digits of :attr:`sha256`.
        sha256: SHA-256 of the canonical JSON of the validated content.
        revision: The file's informational ``revision:``, if any.
        source: The file it was read from, ``<string>`` or ``<built-in>``.
        spec: The validated file.
        retention: The retention rules, in file order.
    """

    __slots__ = (
        "_allow",
        "_ceilings",
        "_classes",
        "_deny",
        "_memo",
        "_permits",
        "_pii",
        "default_classification",
        "id",
        "retention",
        "revision",
        "sha256",
        "source",
        "spec",
        "version",
    )

    def __init__(self, spec: PolicySpec, *, source: str = "<string>") -> None:
        self.spec = spec
        self.source = source
        self.id = spec.policy
        self.revision = spec.revision
        self.sha256 = sha256_hex(canonical_json(spec.canonical()).encode())
        self.version = f"sha256:{self.sha256[:12]}"
        self.default_classification = spec.classifications.default
        base = {"local": spec.pii.local, "hosted": spec.pii.hosted}
        self._classes: dict[str, frozenset[str]] = {}
        self._pii: dict[str, Mapping[str, str]] = {}
        for name, c in spec.classifications.classes().items():
            self._classes[name] = frozenset(c.destinations)
            own = c.pii.model_dump(exclude_none=True) if c.pii is not None else {}
            self._pii[name] = MappingProxyType({d: own.get(d, base[d]) for d in DESTINATIONS})
        self._pii[""] = MappingProxyType(dict(base))  # an undeclared class
        self._deny = _rules(spec, "deny")
        self._allow = _rules(spec, "allow")
        self._ceilings = tuple(
            _Ceiling(
                c.id,
                SubjectMatcher.of(c.when),
                _globs(c.models) if c.models else None,
                c.max_output_tokens,
                c.max_cost_per_call,
            )
            for c in spec.ceilings
        )
        self.retention = tuple(
            RetentionRule(
                r.id,
                r.days,
                r.classifications,
                SubjectMatcher.of(r.when),
                self.default_classification,
            )
            for r in spec.retention
        )
        self._memo: dict[tuple[Subject, str, str | None], PolicyDecision] = {}
        self._permits: dict[tuple[Subject, str, str], tuple[bool, str, str]] = {}

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        """Read and validate the policy file at ``path``.

        Raises:
            PolicyFileError: Every problem found, as ``file:line:col: key.path: message``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issue = DefinitionIssue(f"cannot read the policy: {exc}", str(path))
            raise PolicyFileError([issue]) from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<string>") -> Policy:
        """Validate YAML ``text``; ``source`` names it in messages.

        Raises:
            PolicyFileError: Every problem found, located.
        """
        return cls(parse_spec(text, source), source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<python>") -> Policy:
        """A policy from Python data shaped like the file (pydantic's errors unlocated)."""
        return cls(spec_from_mapping(data), source=source)

    @classmethod
    def default(cls) -> Policy:
        """The policy used when the operator configures none: every model allowed; public and
        internal data anywhere, confidential and restricted data to local models only
        (restricted: personal data blocked); PII redacted before hosted models and restored in
        the answer."""
        return cls.from_mapping(
            {
                "policy": "podium-default",
                "description": "Built-in: every model; sensitive classes stay local.",
                "rules": [{"id": "allow-all", "allow": {"models": ["*"]}}],
            },
            source=BUILTIN_SOURCE,
        )

    def __repr__(self) -> str:
        return f"Policy({self.id!r}, {self.version}, source={self.source!r})"

    # -- reading ----------------------------------------------------------------------------------

    @property
    def classifications(self) -> Mapping[str, frozenset[str]]:
        """Each declared data class → its allowed destinations."""
        return MappingProxyType(self._classes)

    def pii_actions(self, classification: str) -> Mapping[str, str]:
        """Destination → PII action for a class (the ``pii:`` section's for an unknown one)."""
        return self._pii.get(classification, self._pii[""])

    # -- deciding ---------------------------------------------------------------------------------

    def decide(
        self, subject: Subject, model: str, *, classification: str | None = None
    ) -> PolicyDecision:
        """Whether ``subject`` may call ``model`` (a catalog model, or a group's name) with data
        of ``classification`` (``None``: the policy's default class). Never raises."""
        key = (subject, model, classification)
        found = self._memo.get(key)
        if found is not None:
            return found
        decision = self._decide(subject, model, classification)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = decision
        return decision

    def _decide(self, subject: Subject, model: str, classification: str | None) -> PolicyDecision:
        cls = classification if classification is not None else self.default_classification
        pii = self.spec.pii
        destinations = self._classes.get(cls)
        ceiling = self._ceiling(subject, model)
        if destinations is None:
            known = ", ".join(self._classes)
            rule_id = "unknown-classification"
            allowed = False
            reason = (
                f"policy {self.id} ({self.version}) declares no data class {cls!r} "
                f"(declared: {known})"
            )
            destinations = frozenset()
        else:
            provider = model.partition("/")[0] if "/" in model else ""
            allowed, rule_id, short = self._judge(subject, model, provider)
            if rule_id.startswith("default-"):
                reason = f"policy {self.id} ({self.version}): {short}"
            else:
                reason = f"policy {self.id} ({self.version}) rule {rule_id} {short}"
        return PolicyDecision(
            allowed=allowed,
            policy_id=self.id,
            policy_version=self.version,
            rule_id=rule_id,
            reason=reason,
            classification=cls,
            destinations=destinations,
            pii_action=self.pii_actions(cls),
            pii_entities=pii.entities,
            pii_restore=pii.restore,
            max_output_tokens=ceiling.max_output_tokens if ceiling else None,
            max_cost_per_call=ceiling.max_cost_per_call if ceiling else None,
            ceiling_id=ceiling.id if ceiling else None,
        )

    def permits(self, subject: Subject, model: str, provider: str) -> tuple[bool, str, str]:
        """Whether ``subject`` may reach ``model`` through ``provider`` (one deployment the
        router considers): ``(allowed, rule_id, reason)``; the reason names the caller and the
        model, not the policy (the caller adds it)."""
        key = (subject, model, provider)
        found = self._permits.get(key)
        if found is not None:
            return found
        verdict = self._judge(subject, model, provider, via=True)
        if len(self._permits) >= MEMO_SIZE:
            self._permits.clear()
        self._permits[key] = verdict
        return verdict

    def destination_allowed(self, decision: PolicyDecision, *, local: bool) -> bool:
        """Whether the decision's data class may go to a local (or hosted) model."""
        return ("local" if local else "hosted") in decision.destinations

    def _judge(
        self, subject: Subject, model: str, provider: str, *, via: bool = False
    ) -> tuple[bool, str, str]:
        """``(allowed, rule_id, short reason)``; with ``via`` the reason names the provider."""
        shown = f"{model} through {provider}" if via else model
        for rule in self._deny:
            if rule.who.matches(subject) and rule.targets.matches(model, provider):
                return False, rule.id, f"denies {_who(subject)} the model {shown}"
        for rule in self._allow:
            if rule.who.matches(subject) and rule.targets.matches(model, provider):
                return True, rule.id, f"allows {_who(subject)} the model {shown}"
        if self.spec.default == "allow":
            return (
                True,
                "default-allow",
                (f"no rule decides for {_who(subject)} and the model {shown}; allowed by default"),
            )
        return (
            False,
            "default-deny",
            (f"no rule allows {_who(subject)} the model {shown} (deny by default)"),
        )

    def _ceiling(self, subject: Subject, model: str) -> _Ceiling | None:
        for c in self._ceilings:
            if (c.models is None or c.models.match(model) is not None) and c.who.matches(subject):
                return c
        return None

    def trace(self, subject: Subject, model: str, provider: str | None = None) -> list[RuleTrace]:
        """How every rule judged ``model`` for ``subject``, in evaluation order (denies, then
        allows); ``provider`` defaults to the model name's prefix."""
        if provider is None:
            provider = model.partition("/")[0] if "/" in model else ""
        allowed, decided, _ = self._judge(subject, model, provider)
        deciding = "allow" if allowed else "deny"
        return [
            RuleTrace(
                rule.id,
                effect,
                rule.who.matches(subject),
                rule.targets.matches(model, provider),
                rule.id == decided and effect == deciding,
            )
            for effect, rules in (("deny", self._deny), ("allow", self._allow))
            for rule in rules
        ]

    # -- retention --------------------------------------------------------------------------------

    def retention_days(self, team: str | None, classification: str | None) -> int | None:
        """The shortest period of the retention rules covering a record of ``team`` with data
        ``classification``; ``None``: no rule covers it (kept forever)."""
        days = [r.days for r in self.retention if r.matches(team, classification)]
        return min(days) if days else None


def _rules(spec: PolicySpec, effect: str) -> tuple[_Rule, ...]:
    """The compiled ``allow`` (or ``deny``) parts of the rules, in file order."""
    out = []
    for r in spec.rules:
        targets = _Targets.of(r.allow if effect == "allow" else r.deny)
        if targets is not None:
            out.append(_Rule(r.id, SubjectMatcher.of(r.when), targets))
    return tuple(out)


def _who(subject: Subject) -> str:
    """``team interns in project search``; the key or ``a caller without a team`` otherwise."""
    if subject.team:
        who = f"team {subject.team}"
    elif subject.key_id:
        who = f"key {subject.key_id}"
    else:
        who = "a caller without a team"
    return f"{who} in project {subject.project}" if subject.project else who
