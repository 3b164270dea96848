"""The central policy (governance, issue 5): declarative, versioned rules on who may use which
models, where each data class may go, per-call ceilings, PII handling and retention.

::

    policy = Policy.load(Path("policy.yaml"))        # every problem located, file:line:col
    decision = policy.decide(Subject(team="eng"), "openai/gpt-4o", classification="internal")
    if not decision.allowed:
        raise PolicyDenied.from_decision(decision)

Modules: :mod:`~podium.governance.policy.spec` (the file's schema and validation) and
:mod:`~podium.governance.policy.engine` (compiled matchers, decisions, retention). The format
and the evaluation order are described in ``docs/policy.md``.
"""

from podium.governance.policy.engine import (
    BUILTIN_SOURCE,
    MEMO_SIZE,
    Policy,
    PolicyDecision,
    PolicyDenied,
    RetentionRule,
    RuleTrace,
    Subject,
    SubjectMatcher,
)
from podium.governance.policy.spec import (
    DESTINATIONS,
    PII_ACTIONS,
    PII_ENTITIES,
    RESERVED_IDS,
    PolicyFileError,
    PolicySpec,
)

__all__ = [
    "BUILTIN_SOURCE",
    "DESTINATIONS",
    "MEMO_SIZE",
    "PII_ACTIONS",
    "PII_ENTITIES",
    "RESERVED_IDS",
    "Policy",
    "PolicyDecision",
    "PolicyDenied",
    "PolicyFileError",
    "PolicySpec",
    "RetentionRule",
    "RuleTrace",
    "Subject",
    "SubjectMatcher",
]
