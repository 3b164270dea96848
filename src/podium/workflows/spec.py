"""The validated model of a workflow definition: one model behind two front doors (YAML and Python).

A step is a mapping with exactly one *kind* key (``call``, ``model``, ``parallel``, …) plus the
options every step shares (``id``, ``retry``, ``timeout``, ``fallback``, ``compensate``, ``when``).
``Workflow.model_json_schema()`` is the published JSON Schema (``podium schema``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
)

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """``"500ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or a number of seconds → seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 500ms, 5s, 2m or 1h")
        return float(match.group("n")) * _UNITS[match.group("unit")]
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]}),
]
StepId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=100)]
FunctionRef = Annotated[
    str | Callable[..., Any],
    WithJsonSchema({"type": "string", "description": "'package.module:function' or a name"}),
]
Expression = Annotated[str, Field(description="A Jinja2 expression such as '{{ inputs.x > 3 }}'")]

STEP_KINDS = (
    "call",
    "model",
    "workflow",
    "review",
    "parallel",
    "for_each",
    "orchestrate",
    "saga",
    "if",
    "switch",
    "loop",
    "steps",
)
"""The keys that decide a step's kind, in the order they are looked for."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RetryPolicy(_Model):
    """How a failing step is retried: exponential backoff with full jitter."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts in all, the first included."""
    initial_delay: Duration = 0.5
    """Delay before the first retry."""
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    """Each retry waits this many times longer than the previous one."""
    max_delay: Duration = 30.0
    """Upper bound of one delay."""
    jitter: bool = True
    """Full jitter: wait a uniform random time in [0, delay]."""
    retry_on: list[str] = Field(default_factory=list)
    """Exception class names to retry; empty: every error but non-retryable Podium ones."""


class _StepBase(_Model):
    id: StepId | None = None
    """Unique within the workflow; the name expressions use (``steps.<id>.output``)."""
    description: str = ""
    when: Expression | None = None
    """Run the step only when this expression is true; otherwise it is skipped (output null)."""
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    """Per attempt."""
    fallback: LeafStep | None = None
    """Runs when the step still fails after its retries (reroute)."""
    compensate: LeafStep | None = None
    """Undoes the step's effect when an enclosing saga fails."""


class CallStep(_StepBase):
    """Call a Python function: ``'package.module:function'`` or a registered name."""

    call: FunctionRef
    input: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments; values may be expressions."""


class ModelStep(_StepBase):
    """Call a model through the governed call path."""

    model: str
    fallbacks: list[str] = Field(default_factory=list)
    """Models (or groups) tried in order when ``model`` is unavailable (e.g. a hosted model
    with no API key) or fails: "hosted preferred, local fallback"."""
    prompt: str | None = None
    system: str | None = None
    messages: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    parse: Literal["text", "json"] = "text"
    """``json`` parses the reply text as JSON into the step output."""


class WorkflowStep(_StepBase):
    """Run another workflow (a file path or a registered name) inline, with its own inputs."""

    workflow: str | Workflow
    input: dict[str, Any] = Field(default_factory=dict)


class ReviewStep(_StepBase):
    """Wait durably for a human decision (approve/reject, with a comment)."""

    review: str
    """What the reviewer is asked."""
    data: Any = None
    """What the reviewer is shown; may hold expressions."""
    on_reject: Literal["fail", "continue"] = "fail"


Aggregate = Annotated[
    str | Callable[..., Any],
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["all", "first", "vote", "weighted"]},
                {"type": "string", "description": "'package.module:function'"},
            ]
        }
    ),
]


class _FanOut(_StepBase):
    aggregate: Aggregate = "all"
    vote_on: Expression | None = None
    """For ``vote``: what each branch votes (default: its whole output)."""
    score: Expression | None = None
    """For ``weighted``: each branch's numeric score (default ``{{ output.score }}``)."""
    weights: dict[str, float] = Field(default_factory=dict)
    """For ``weighted``: weight per branch id (default 1)."""
    failure: Literal["fail_fast", "quorum", "best_effort"] = "fail_fast"
    quorum: int | None = Field(default=None, ge=1)
    """For ``failure: quorum``: successes needed."""
    max_concurrency: int | None = Field(default=None, ge=1)


class ParallelStep(_FanOut):
    """Run independent branches at once, then aggregate."""

    parallel: list[Step] = Field(min_length=1)


class ForEachStep(_FanOut):
    """Run the ``do`` steps once per item of a list (``item`` and ``index`` in scope)."""

    for_each: Expression
    do: list[Step] = Field(min_length=1)
    max_items: int = Field(default=10_000, ge=1)


class OrchestrateStep(_StepBase):
    """An orchestrator decides at run time which workers to engage, with which input.

    The orchestrator returns a list of ``{"worker": name, "input": {...}}``; each task runs the
    named worker with ``task`` in scope; ``synthesize`` receives ``results``.
    """

    orchestrate: LeafStep
    workers: dict[StepId, Step] = Field(min_length=1)
    synthesize: LeafStep | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    max_tasks: int = Field(default=100, ge=1)


class SagaFailure(_Model):
    """What a failed saga does after compensation."""

    keep: list[StepId] = Field(default_factory=list)
    """Completed steps whose effects are kept (not compensated)."""
    then: list[Step] = Field(default_factory=list)
    """A degrade path; when present the saga ends degraded instead of failing."""


class SagaStep(_StepBase):
    """Long-running steps with compensations, undone in reverse order on failure."""

    saga: list[Step] = Field(min_length=1)
    on_failure: SagaFailure = Field(default_factory=SagaFailure)


class IfStep(_StepBase):
    """Branch on a condition."""

    if_: Expression = Field(alias="if")
    then: list[Step] = Field(min_length=1)
    else_: list[Step] = Field(default_factory=list, alias="else")


class SwitchStep(_StepBase):
    """Branch on a value."""

    switch: Expression
    cases: dict[str, list[Step]] = Field(min_length=1)
    default: list[Step] = Field(default_factory=list)


class LoopStep(_StepBase):
    """Repeat a body until a condition holds, at most ``max_iterations`` times
    (evaluator-optimizer). ``loop.iteration`` and ``loop.previous`` are in scope."""

    loop: list[Step] = Field(min_length=1)
    until: Expression
    max_iterations: int = Field(default=5, ge=1, le=1000)


class SequenceStep(_StepBase):
    """Steps in order; the output is the last step's output."""

    steps: list[Step] = Field(min_length=1)


STEP_MODELS: dict[str, type[_StepBase]] = {
    "call": CallStep,
    "model": ModelStep,
    "workflow": WorkflowStep,
    "review": ReviewStep,
    "parallel": ParallelStep,
    "for_each": ForEachStep,
    "orchestrate": OrchestrateStep,
    "saga": SagaStep,
    "if": IfStep,
    "switch": SwitchStep,
    "loop": LoopStep,
    "steps": SequenceStep,
}
_KIND_OF: dict[type[_StepBase], str] = {v: k for k, v in STEP_MODELS.items()}


def step_kind(value: Any) -> str | None:
    """The kind of a raw step mapping or a step model (``None`` when it has no kind key)."""
    if isinstance(value, _StepBase):
        return _KIND_OF[type(value)]
    if isinstance(value, dict):
        for kind in STEP_KINDS:
            if kind in value:
                return kind
    return None


_NO_KIND = "a step needs one of the keys: " + ", ".join(STEP_KINDS)

Step = Annotated[
    Annotated[CallStep, Tag("call")]
    | Annotated[ModelStep, Tag("model")]
    | Annotated[WorkflowStep, Tag("workflow")]
    | Annotated[ReviewStep, Tag("review")]
    | Annotated[ParallelStep, Tag("parallel")]
    | Annotated[ForEachStep, Tag("for_each")]
    | Annotated[OrchestrateStep, Tag("orchestrate")]
    | Annotated[SagaStep, Tag("saga")]
    | Annotated[IfStep, Tag("if")]
    | Annotated[SwitchStep, Tag("switch")]
    | Annotated[LoopStep, Tag("loop")]
    | Annotated[SequenceStep, Tag("steps")],
    Discriminator(step_kind, custom_error_type="step_kind", custom_error_message=_NO_KIND),
]

LeafStep = Annotated[
    Annotated[CallStep, Tag("call")]
    | Annotated[ModelStep, Tag("model")]
    | Annotated[WorkflowStep, Tag("workflow")],
    Discriminator(
        step_kind,
        custom_error_type="leaf_kind",
        custom_error_message="this must be a call, model or workflow step",
    ),
]

AnyStep = (
    CallStep
    | ModelStep
    | WorkflowStep
    | ReviewStep
    | ParallelStep
    | ForEachStep
    | OrchestrateStep
    | SagaStep
    | IfStep
    | SwitchStep
    | LoopStep
    | SequenceStep
)


class InputSpec(_Model):
    """One workflow input."""

    type: Literal["string", "integer", "number", "boolean", "array", "object", "any"] = "any"
    description: str = ""
    default: Any = None
    required: bool | None = None
    """Defaults to true when no default is given."""

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return "default" not in self.model_fields_set


class Workflow(_Model):
    """A workflow definition."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=200)]
    version: str | int = 1
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    output: Any = None
    """The run's result; may hold expressions (default: the last step's output)."""
    timeout: Duration | None = None
    """For the whole run."""
    steps: list[Step] = Field(min_length=1)

    @field_validator("inputs", mode="before")
    @classmethod
    def _short_inputs(cls, value: Any) -> Any:
        # ``inputs: {name: string}`` is shorthand for ``inputs: {name: {type: string}}``.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


_ALL_MODELS: list[type[BaseModel]] = [
    *STEP_MODELS.values(),
    RetryPolicy,
    SagaFailure,
    Workflow,
    _StepBase,
    _FanOut,
]
for _model in _ALL_MODELS:
    _model.model_rebuild()


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of workflow files (``podium schema``)."""
    schema = Workflow.model_json_schema()
    defs = schema.get("$defs", {})
    root = defs.get("Workflow", schema)  # recursive models put the root under $defs
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **{k: v for k, v in root.items() if k not in ("title", "description")},
        "title": "Podium workflow",
        "description": "A Podium workflow definition (YAML or JSON).",
        "$defs": defs,
    }
