"""Offline PII detection, redaction and restoration (governance, issue 5).

Personal data is found and replaced by reversible placeholders before a request reaches a hosted
model or anything is stored, and put back into the answer when the policy allows it::

    detector = PiiDetector(["EMAIL", "PHONE", "PERSON"])
    redacted, vault = redact_text("Mail jane.doe@example.com", detector)
    # redacted == "Mail <EMAIL_1>"
    vault.restore("I wrote to <EMAIL_1>.")   # "I wrote to jane.doe@example.com."

Nothing here touches the network: patterns are checked by ``python-stdnum`` and
``phonenumbers`` (both pure data), and names by a spaCy model installed as a package (the
``pii-ner`` extra). Without spaCy, every entity but ``PERSON`` and ``LOCATION`` is still found.

Modules: :mod:`~podium.governance.pii.entities` (entity kinds, findings, placeholder syntax),
:mod:`~podium.governance.pii.recognizers` (patterns and validators),
:mod:`~podium.governance.pii.ner` (the spaCy model, loaded once per process),
:mod:`~podium.governance.pii.detector` (overlap resolution), and
:mod:`~podium.governance.pii.vault` (placeholders and restoration).
Precision and recall per entity are measured in ``benchmarks/pii``.
"""

from podium.governance.pii.detector import PiiDetector, contains_pii, default_detector
from podium.governance.pii.entities import (
    PLACEHOLDER_RE,
    Entity,
    Finding,
    PiiError,
    PiiModelUnavailable,
)
from podium.governance.pii.vault import PlaceholderVault, redact_text

__all__ = [
    "PLACEHOLDER_RE",
    "Entity",
    "Finding",
    "PiiDetector",
    "PiiError",
    "PiiModelUnavailable",
    "PlaceholderVault",
    "contains_pii",
    "default_detector",
    "redact_text",
]
