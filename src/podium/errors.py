"""Podium's errors: one root, so a single ``except PodiumError`` catches every failure we raise.

The tree::

    PodiumError
    ├── ConfigError                    bad settings or environment
    │   ├── PolicyFileError            (governance.policy) a policy file is invalid (located)
    │   └── PiiModelUnavailable        (governance.pii) NER asked for, spaCy or its model missing
    ├── PiiError                       (governance.pii) PII detection was used wrongly
    ├── PolicyDenied                   (governance.policy) the central policy refuses a call;
    │   │                               carries the policy id, version and rule
    │   └── PiiBlocked                 (governance.gate) personal data the policy blocks
    ├── AuditError                     (governance.keys) the audit trail failed: keys, a broken
    │                                   chain, a shredded payload; a call whose record cannot be
    │                                   written fails closed
    ├── RateLimitExceeded              a gateway rate limit (ours) refused the request
    ├── BudgetExceeded                 (finops.budgets) a hard budget cannot take the worst case
    ├── ReservationNotFound            (finops.budgets) settle/release of an unknown reservation
    ├── UnknownPrice                   (finops.pricing) no price for the model on that date
    ├── DefinitionError                a workflow definition is invalid (carries every issue found)
    ├── StoreError                     the journal/store failed or was used wrongly
    │   ├── RunNotFound
    │   └── JournalConflict            two writers raced on one run's journal
    ├── WorkflowError                  a run failed; carries ``run_id`` and ``step_id``
    │   ├── StepFailed                 a step raised (after its retries and fallback)
    │   ├── StepTimeout                a step or run exceeded its timeout
    │   ├── QuorumNotMet               a parallel block had too few successes
    │   ├── SagaAborted                a saga failed and was compensated
    │   ├── RunCancelled
    │   ├── ReviewRejected             a human reviewer rejected a step
    │   └── NonDeterminism             a resumed run's definition no longer matches its journal
    └── ModelError                     a model call failed; carries ``provider``, ``model``,
        │                               ``request_id`` and ``retryable``
        ├── ModelNotFound              no such model in the catalog/registry, or at the provider
        ├── CapabilityUnsupported      the model cannot do that (e.g. embeddings on a chat model)
        ├── LocalModelUnavailable      a local model's package or binary is not installed
        ├── AuthenticationFailed       bad or missing API key (401/403)
        ├── BadModelRequest            the provider refused the request as invalid (400/422)
        ├── ContextLengthExceeded      the prompt does not fit the model's context window
        ├── ContentRefused             the provider's content policy refused the request
        ├── RateLimited                429; ``retry_after`` seconds when the provider says
        ├── ProviderOverloaded         5xx / overloaded
        ├── ProviderTimeout            no answer in time, or a stream cut mid-way
        ├── CallFailed                 (gateway.resilience) retries and fallbacks exhausted;
        │                               carries every attempt and the last error
        └── NoDeploymentAvailable      (gateway.routing) every deployment was excluded, each
                                        with its reason

Errors that carry a component's own records are defined beside it (as the two above), still
under this root.

``WorkflowSuspended`` is not an error and not a ``PodiumError``: it is the control signal a run
raises when it must wait durably (for a human review); the engine catches it and marks the run
``waiting``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PodiumError(Exception):
    """Root of every error Podium raises."""

    retryable: bool = False


class ConfigError(PodiumError):
    """Settings or environment are invalid."""


@dataclass(frozen=True, slots=True)
class DefinitionIssue:
    """One problem in a workflow definition, located in its source file."""

    message: str
    file: str = "<python>"
    line: int | None = None
    column: int | None = None
    key: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.message}"
        if self.key:
            text += f" (at '{self.key}')"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class DefinitionError(PodiumError):
    """A workflow definition is invalid. ``issues`` lists every problem found, each located."""

    def __init__(self, issues: list[DefinitionIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class StoreError(PodiumError):
    """The store failed or was used wrongly."""


class RunNotFound(StoreError):
    """No run with this id exists in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class JournalConflict(StoreError):
    """Another writer appended to this run's journal concurrently."""


class WorkflowError(PodiumError):
    """A workflow run failed. Carries the run and, when known, the step that failed."""

    def __init__(
        self, message: str, *, run_id: str | None = None, step_id: str | None = None
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        super().__init__(message)


class StepFailed(WorkflowError):
    """A step raised after exhausting its retries and fallback."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        error_type: str = "Exception",
        retryable: bool = False,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.error_type = error_type
        self.retryable = retryable


class StepTimeout(WorkflowError):
    """A step or a whole run exceeded its timeout."""

    retryable = True


class QuorumNotMet(WorkflowError):
    """A parallel block finished with fewer successful branches than its quorum."""


class SagaAborted(WorkflowError):
    """A saga failed; its completed steps were compensated in reverse order."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        compensated: list[str] | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.compensated = compensated or []


class RunCancelled(WorkflowError):
    """The run was cancelled."""


class ReviewRejected(WorkflowError):
    """A human reviewer rejected the step."""


class NonDeterminism(WorkflowError):
    """A resumed run's definition differs from the one its journal was written by."""


class ModelError(PodiumError):
    """A model call failed. Says whether retrying may help."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.retryable = retryable
        super().__init__(message)


class ModelNotFound(ModelError):
    """No model with this name is registered (or the provider does not know it)."""


class CapabilityUnsupported(ModelError):
    """The model does not offer the requested capability."""


class LocalModelUnavailable(ModelError):
    """A local model's package, weights or binary is missing; the message names what to install."""


class AuthenticationFailed(ModelError):
    """The provider rejected the credentials."""


class BadModelRequest(ModelError):
    """The provider rejected the request as malformed."""


class ContextLengthExceeded(ModelError):
    """The request does not fit the model's context window."""


class ContentRefused(ModelError):
    """The provider's content policy refused the request or the answer."""


class RateLimited(ModelError):
    """The provider is rate-limiting us; ``retry_after`` is its hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderOverloaded(ModelError):
    """The provider failed or is overloaded (5xx); trying again later may succeed."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)


class ProviderTimeout(ModelError):
    """The provider did not answer in time, or a stream was cut before it completed."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)


class RateLimitExceeded(PodiumError):
    """A gateway rate limit refused the request (ours; the provider's 429 is ``RateLimited``).

    ``retry_after`` is the number of seconds after which the request would fit, or ``None`` when
    it never can (it alone asks for more than the limit).
    """

    retryable = True

    def __init__(
        self,
        *,
        scope: str,
        dimension: str,
        limit: int,
        window_s: float,
        requested: int,
        retry_after: float | None,
    ) -> None:
        self.scope = scope
        self.dimension = dimension
        self.limit = limit
        self.window_s = window_s
        self.requested = requested
        self.retry_after = retry_after
        if retry_after is None:
            self.retryable = False
            when = f"it asks for {requested}, more than the limit allows"
        else:
            when = f"retry in {retry_after:.3f} s"
        super().__init__(
            f"rate limit of {limit} {dimension} per {window_s:g} s for {scope} exceeded; {when}"
        )


@dataclass
class WorkflowSuspended(Exception):
    """Raised inside a run that must wait durably (human review); the engine catches it."""

    run_id: str
    waiting_on: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"run {self.run_id} is waiting on {', '.join(self.waiting_on)}"
