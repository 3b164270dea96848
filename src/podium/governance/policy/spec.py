"""The policy file: its typed, validated form and the errors that locate every problem.

A policy is YAML (``docs/policy.md``, ``examples/governance/policy.yaml``). It is read by the
workflow loader's position-keeping reader and validated by the frozen pydantic models below, the
same way as the gateway configuration (:mod:`podium.gateway.config_yaml` turns pydantic's errors
into ``file:line:col: key.path: message (hint)`` lines, with a did-you-mean for unknown keys).
Checks that span sections — ids unique across rules, ceilings and retention, the default data
class declared, retention classes declared — run once the sections are valid, each reported at
the key where it was written.

This module only describes and validates; :mod:`podium.governance.policy.engine` compiles the
validated spec into the matchers :class:`~podium.governance.policy.Policy` decides with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podium.errors import ConfigError, DefinitionError, DefinitionIssue
from podium.gateway.config_yaml import (
    Invalid,
    Loc,
    Money,
    Problem,
    Section,
    ValidationContext,
    context,
    fail,
    floats_as_text,
    format_issue,
    issues_from,
    near,
)

__all__ = [
    "DESTINATIONS",
    "PII_ACTIONS",
    "PII_ENTITIES",
    "RESERVED_IDS",
    "CeilingSpec",
    "ClassPii",
    "ClassSpec",
    "Classifications",
    "PiiSpec",
    "PolicyFileError",
    "PolicySpec",
    "RetentionSpec",
    "RuleSpec",
    "SelectorSpec",
    "TargetSpec",
    "parse_spec",
    "spec_from_mapping",
]

PII_ENTITIES = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "NATIONAL_ID",
    "IP_ADDRESS",
    "PERSON",
    "LOCATION",
)
"""The personal-data kinds a policy may name (the detector's ``Entity`` values)."""
DEFAULT_PII_ENTITIES = PII_ENTITIES[:6]
"""What a policy looks for unless it says otherwise: the kinds found by validated patterns
(≈ 0.1 ms per prompt). Names (``PERSON``, ``LOCATION``) need the local NER model, ≈ 6 ms per new
prompt on one CPU core, so a policy opts in to them by listing them."""
DESTINATIONS = ("local", "hosted")
"""Where a request may go: a model running in-process, or a hosted provider's API."""
PII_ACTIONS = ("redact", "block", "allow")
"""What happens to personal data bound for a destination."""
RESERVED_IDS = (
    "default-deny",
    "default-allow",
    "unknown-classification",
    "classification",
    "pii-block",
)
"""Rule ids the engine and the gateway use for decisions no written rule made."""

Destination = Literal["local", "hosted"]
PiiAction = Literal["redact", "block", "allow"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_CLASS = r"^[a-z][a-z0-9_-]*$"


def _glob(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise fail(
            f"{value!r} is not a valid pattern",
            "a name or a glob without spaces: 'eng', 'openai/gpt-4o*', '*'",
        )
    return value


Glob = Annotated[str, AfterValidator(_glob)]
"""A glob (``*``, ``?``, ``[abc]``), matched case-sensitively against the whole value."""


class PolicyFileError(ConfigError):
    """The policy file is invalid. ``issues`` lists every problem found, located; the message
    has one ``file:line:col: key.path: message (hint)`` line per issue."""

    def __init__(self, issues: Sequence[DefinitionIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(format_issue(i) for i in self.issues))


class SelectorSpec(Section):
    """Who a rule applies to. Every selector written must match (and); within one list any
    pattern may match (or). A caller without the attribute (no project…) is matched as the
    empty string, so only ``*`` matches it."""

    orgs: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Organisations (globs)."""
    teams: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Teams (globs)."""
    projects: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Projects (globs)."""
    use_cases: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Use cases (globs)."""
    keys: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """API key ids (globs)."""

    @model_validator(mode="after")
    def _not_empty(self) -> SelectorSpec:
        if not self.fields():
            raise fail(
                "'when:' selects nobody in particular",
                "name teams, projects, orgs, use_cases or keys; or remove 'when:' to apply to "
                "every caller",
            )
        return self

    def fields(self) -> dict[str, tuple[str, ...]]:
        """The selectors written, by name."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if v is not None}


class TargetSpec(Section):
    """The models a rule allows or denies. Every list written must match (and)."""

    models: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Catalog models or group names (globs): ``openai/gpt-4o*``, ``local/*``."""
    providers: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """Providers (globs): ``openai``, ``anthropic``, ``local``."""
    destinations: tuple[Destination, ...] | None = Field(default=None, min_length=1)
    """``local`` (provider ``local``) or ``hosted`` (any other provider). A group's name has no
    provider: it matches only when the router checks each of its deployments."""

    @model_validator(mode="after")
    def _something(self) -> TargetSpec:
        if self.models is None and self.providers is None and self.destinations is None:
            raise fail(
                "names no model, provider or destination",
                "add 'models: [...]', 'providers: [...]' or 'destinations: [...]'",
            )
        return self


class RuleSpec(Section):
    """Which models a set of callers may (``allow``) or may not (``deny``) use."""

    id: str = Field(pattern=_ID)
    """Unique id; decisions, audit records and violations name it."""
    description: str | None = None
    """Why the rule exists (shown by ``podium policy check``)."""
    when: SelectorSpec | None = None
    """Who it applies to (default: every caller)."""
    allow: TargetSpec | None = None
    """Models these callers may use."""
    deny: TargetSpec | None = None
    """Models these callers may not use (any matching deny beats every allow)."""

    @model_validator(mode="after")
    def _effect(self) -> RuleSpec:
        if self.allow is None and self.deny is None:
            raise fail(
                f"rule {self.id!r} neither allows nor denies anything",
                "add 'allow: {models: [...]}' or 'deny: {models: [...]}'",
            )
        return self


class ClassPii(Section):
    """A data class's own PII actions; a destination left out keeps the ``pii:`` section's."""

    local: PiiAction | None = None
    """Personal data bound for a local model."""
    hosted: PiiAction | None = None
    """Personal data bound for a hosted model."""

    @model_validator(mode="before")
    @classmethod
    def _one_for_all(cls, value: Any) -> Any:
        """``pii: block`` is short for ``pii: {local: block, hosted: block}``."""
        if isinstance(value, str):
            if value not in PII_ACTIONS:
                raise fail(
                    f"unknown PII action {value!r}",
                    near(value, PII_ACTIONS) or "one of: " + ", ".join(PII_ACTIONS),
                )
            return {d: value for d in DESTINATIONS}
        return value


class ClassSpec(Section):
    """One data class: where its requests may go and what happens to their personal data."""

    destinations: tuple[Destination, ...]
    """``local``, ``hosted`` or both."""
    pii: ClassPii | None = None
    """Overrides of the ``pii:`` section's actions for this class (``block`` alone: for every
    destination)."""
    description: str | None = None
    """What data belongs to the class."""

    @field_validator("destinations")
    @classmethod
    def _somewhere(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise fail(
                "a data class needs at least one destination",
                "list 'local', 'hosted' or both; requests of this class could go nowhere",
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        # The classes are the extra keys of ``classifications``, where the schema walk of
        # ``issues_from`` cannot reach: name the allowed keys here instead.
        if isinstance(value, Problem):  # see Classifications._class_names
            raise Invalid([value])
        if isinstance(value, dict):
            allowed = list(cls.model_fields)
            unknown = [k for k in value if k not in allowed]
            if unknown:
                raise Invalid(
                    [
                        Problem(
                            (k,),
                            f"unknown key {k!r}",
                            near(str(k), allowed) or "allowed here: " + ", ".join(allowed),
                        )
                        for k in unknown
                    ]
                )
        return value


class Classifications(BaseModel):
    """The data classes (each key but ``default`` names one) and the class of a request that
    names none."""

    model_config = ConfigDict(
        extra="allow", frozen=True, use_attribute_docstrings=True, hide_input_in_errors=True
    )
    __pydantic_extra__: dict[str, ClassSpec] = Field(init=False)

    default: str = "internal"
    """The class of a request (or workflow) that declares none."""

    @model_validator(mode="before")
    @classmethod
    def _class_names(cls, value: Any) -> Any:
        # A bad class entry is replaced by its problem, so that ClassSpec reports it at its own
        # key while the other classes are still validated (raising here would hide them).
        if not isinstance(value, dict):
            return value
        out = {}
        for key, spec in value.items():
            if key == "default":
                out[key] = spec
            elif not isinstance(spec, dict):
                hint = near(str(key), ["default"]) or f"write '{key}: {{destinations: [local]}}'"
                out[key] = Problem((), f"class {key!r} must be a mapping", hint)
            elif not isinstance(key, str) or not _valid_class(key):
                out[key] = Problem(
                    (),
                    f"{key!r} is not a valid class name",
                    "lower-case letters, digits, '-' and '_', starting with a letter",
                )
            else:
                out[key] = spec
        return out

    def classes(self) -> dict[str, ClassSpec]:
        """Each declared class, in file order."""
        return dict(self.__pydantic_extra__)

    @classmethod
    def builtin(cls) -> Classifications:
        """Public and internal data anywhere; confidential and restricted data to local models
        only (restricted: personal data blocked)."""
        return cls.model_validate(
            {
                "default": "internal",
                "public": {"destinations": ["local", "hosted"]},
                "internal": {"destinations": ["local", "hosted"]},
                "confidential": {"destinations": ["local"]},
                "restricted": {"destinations": ["local"], "pii": "block"},
            }
        )


def _valid_class(name: str) -> bool:
    return re.fullmatch(_CLASS, name) is not None


class CeilingSpec(Section):
    """Per-call limits for a set of callers (the first matching ceiling applies)."""

    id: str = Field(pattern=_ID)
    """Unique id; a refused call names it."""
    description: str | None = None
    """Why the ceiling exists."""
    when: SelectorSpec | None = None
    """Who it applies to (default: every caller)."""
    models: tuple[Glob, ...] | None = Field(default=None, min_length=1)
    """The models or groups it applies to (globs; default: every model)."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    """The most output tokens a call may ask for (a request that names none gets this)."""
    max_cost_per_call: Money | None = Field(default=None, ge=0)
    """The most a call may cost in the worst case, in USD (text, e.g. ``'0.05'``)."""

    @model_validator(mode="after")
    def _limits_something(self) -> CeilingSpec:
        if self.max_output_tokens is None and self.max_cost_per_call is None:
            raise fail(
                f"ceiling {self.id!r} limits nothing",
                "add 'max_output_tokens:' or 'max_cost_per_call:'",
            )
        return self


class PiiSpec(Section):
    """Personal data in requests: which kinds to look for and what to do per destination."""

    entities: tuple[str, ...] = Field(default=DEFAULT_PII_ENTITIES, min_length=1)
    """The kinds to detect: ``EMAIL``, ``PHONE``, ``CREDIT_CARD``, ``IBAN``, ``NATIONAL_ID``,
    ``IP_ADDRESS`` (the default), and ``PERSON``, ``LOCATION`` (through the local NER model, about
    6 ms per new prompt: listed explicitly)."""
    hosted: PiiAction = "redact"
    """Before a hosted model: replace each finding by a placeholder (``redact``), refuse the
    call (``block``) or send it as is (``allow``)."""
    local: PiiAction = "allow"
    """Before a local model (the data stays in the process)."""
    restore: bool = True
    """Put the originals back into the answer in place of the placeholders."""

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [
            Problem(
                (i,),
                f"unknown PII entity {name!r}",
                near(name, PII_ENTITIES) or "known: " + ", ".join(PII_ENTITIES),
            )
            for i, name in enumerate(value)
            if name not in PII_ENTITIES
        ]
        seen: dict[str, int] = {}
        for i, name in enumerate(value):
            if name in seen:
                problems.append(Problem((i,), f"{name} is listed twice", "list it once"))
            seen.setdefault(name, i)
        if problems:
            raise Invalid(problems)
        return value


class RetentionSpec(Section):
    """How long the records of some callers' data classes are kept."""

    id: str = Field(pattern=_ID)
    """Unique id; the retention job names it when it deletes."""
    description: str | None = None
    """Why this period (a regulation, a contract…)."""
    when: SelectorSpec | None = None
    """Whose records (default: everybody's)."""
    classifications: tuple[str, ...] | None = Field(default=None, min_length=1)
    """Which data classes (default: every class)."""
    days: int = Field(ge=1)
    """Records older than this many days are deleted (the shortest matching rule wins)."""


class PolicySpec(Section):
    """A policy file. Only ``policy:`` is required; every section has a default."""

    policy: str = Field(pattern=_ID)
    """The policy's id (decisions and audit records name it)."""
    revision: int | None = Field(default=None, ge=0)
    """A human revision number (informational; the version is the content's hash)."""
    description: str | None = None
    """What the policy is for."""
    default: Literal["deny", "allow"] = "deny"
    """What happens to a model no rule allows: ``deny`` (the default) or ``allow``."""
    classifications: Classifications = Field(default_factory=Classifications.builtin)
    """The data classes and where each may go (default: public, internal, confidential,
    restricted)."""
    rules: tuple[RuleSpec, ...] = ()
    """Who may use which models. Every deny rule is checked first; then the allows, in order."""
    ceilings: tuple[CeilingSpec, ...] = ()
    """Per-call token and cost limits (the first that matches applies)."""
    pii: PiiSpec = Field(default_factory=PiiSpec)
    """Personal data handling (default: every entity; redact before hosted models, allow local,
    restore in the answer)."""
    retention: tuple[RetentionSpec, ...] = ()
    """How long records are kept (none: forever)."""

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> PolicySpec:
        ctx = context(info)
        problems: list[Problem] = []
        classes = self.classifications.classes()
        if self.classifications.default not in classes:
            problems.append(
                Problem(
                    ("classifications", "default"),
                    f"the default class {self.classifications.default!r} is not declared",
                    near(self.classifications.default, list(classes))
                    or "declare it below 'classifications:'",
                )
            )
        ids: list[tuple[Loc, str]] = [
            *((("rules", i, "id"), r.id) for i, r in enumerate(self.rules)),
            *((("ceilings", i, "id"), c.id) for i, c in enumerate(self.ceilings)),
            *((("retention", i, "id"), r.id) for i, r in enumerate(self.retention)),
        ]
        first: dict[str, Loc] = {}
        for loc, value in ids:
            if value in RESERVED_IDS:
                problems.append(
                    Problem(
                        loc,
                        f"{value!r} is reserved for decisions no rule made",
                        "choose another id",
                    )
                )
            elif value in first:
                problems.append(
                    Problem(
                        loc,
                        f"id {value!r} is already used (first at {ctx.where(first[value])})",
                        "rule, ceiling and retention ids must be unique",
                    )
                )
            first.setdefault(value, loc)
        for i, rule in enumerate(self.retention):
            for j, name in enumerate(rule.classifications or ()):
                if name not in classes:
                    problems.append(
                        Problem(
                            ("retention", i, "classifications", j),
                            f"unknown class {name!r}",
                            near(name, list(classes)) or "declared: " + ", ".join(classes),
                        )
                    )
        if problems:
            raise Invalid(problems)
        return self

    def canonical(self) -> dict[str, Any]:
        """The content the version hashes: every field with defaults filled in, so key order,
        whitespace, comments and spelled-out defaults change nothing."""
        # The classes are ``classifications``' extra keys; none may be called ``default``, so
        # the flat dump is unambiguous.
        return self.model_dump(mode="python")


def parse_spec(text: str, source: str) -> PolicySpec:
    """Validate YAML ``text`` (named ``source`` in messages) into a :class:`PolicySpec`.

    Raises:
        PolicyFileError: Every problem found, located.
    """
    from podium.workflows.loader import parse_yaml  # the YAML reader keeping positions

    try:
        src = parse_yaml(text, source)
    except DefinitionError as exc:
        raise PolicyFileError([_reworded(i) for i in exc.issues]) from None
    floats_as_text(text, src.data, _is_money)
    ctx = ValidationContext(source=src)
    try:
        return PolicySpec.model_validate(src.data, context={"gateway": ctx})
    except ValidationError as exc:
        raise PolicyFileError(issues_from(exc, src, PolicySpec)) from None


def spec_from_mapping(data: Mapping[str, Any]) -> PolicySpec:
    """A spec from Python data (the built-in default policy; tests)."""
    return PolicySpec.model_validate(dict(data))


def _reworded(issue: DefinitionIssue) -> DefinitionIssue:
    """A YAML-level issue from the workflow file reader, in the words of a policy file."""
    message, hint = issue.message, issue.hint
    if message.startswith(("a workflow file must be", "the file is empty", "the file holds")):
        hint = "start with 'policy: <id>' and a 'rules:' list (see examples/governance/policy.yaml)"
    if message.startswith("a workflow file must be"):
        message = "a policy file must be a mapping of sections (policy, rules, …)"
    if hint:
        hint = hint.replace("workflow file", "policy file")
    return DefinitionIssue(message, issue.file, issue.line, issue.column, issue.key, hint)


def _is_money(loc: Loc) -> bool:
    """Per-call cost ceilings: read from the YAML text, never through a float."""
    return len(loc) == 3 and loc[0] == "ceilings" and loc[2] == "max_cost_per_call"
