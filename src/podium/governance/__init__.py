"""Governance: the tamper-evident, encrypted audit trail (see ``docs/audit.md``)."""

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
    "MasterKey",
    "PayloadShredded",
    "SigningKey",
    "VerifyKey",
    "VerifyResult",
    "call_entry",
    "canonical_json",
]
