"""Governance: identity and RBAC, the central policy, PII redaction, the tamper-evident encrypted
audit trail, retention and lineage (see ``docs/governance.md``)."""

from podium.governance.audit import AuditLog
from podium.governance.chain import (
    AuditChainBroken,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    VerifyResult,
    canonical_json,
)
from podium.governance.keys import (
    AuditError,
    AuditKeyError,
    MasterKey,
    PayloadShredded,
    SigningKey,
    VerifyKey,
)
from podium.governance.pii import (
    Entity,
    Finding,
    PiiDetector,
    PiiError,
    PiiModelUnavailable,
    PlaceholderVault,
    contains_pii,
    default_detector,
    redact_text,
)
from podium.governance.policy import Policy, PolicyDecision, PolicyDenied, Subject
from podium.governance.retention import RetentionJob, RetentionReport, RetentionScheduler
from podium.governance.sink import AuditSink, call_entry

__all__ = [
    "AuditChainBroken",
    "AuditEntry",
    "AuditError",
    "AuditKeyError",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "Checkpoint",
    "Entity",
    "Finding",
    "MasterKey",
    "PayloadShredded",
    "PiiDetector",
    "PiiError",
    "PiiModelUnavailable",
    "PlaceholderVault",
    "Policy",
    "PolicyDecision",
    "PolicyDenied",
    "RetentionJob",
    "RetentionReport",
    "RetentionScheduler",
    "SigningKey",
    "Subject",
    "VerifyKey",
    "VerifyResult",
    "call_entry",
    "canonical_json",
    "contains_pii",
    "default_detector",
    "redact_text",
]
