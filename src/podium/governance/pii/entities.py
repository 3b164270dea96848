"""What PII detection finds: the entity kinds, one finding, the placeholder syntax and the errors.

The placeholder syntax lives here, beside the entity names it is built from, because two parts
need it: the vault writes placeholders and the detector must never report one as PII (so that
redacting an already redacted text changes nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from podium.errors import ConfigError, PodiumError

__all__ = [
    "PLACEHOLDER_RE",
    "Entity",
    "Finding",
    "PiiError",
    "PiiModelUnavailable",
    "parse_entities",
]


class Entity(StrEnum):
    """A kind of personal data. The value is the name used in policies and placeholders."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    NATIONAL_ID = "NATIONAL_ID"
    IP_ADDRESS = "IP_ADDRESS"
    PERSON = "PERSON"
    LOCATION = "LOCATION"


NER_ENTITIES = frozenset({Entity.PERSON, Entity.LOCATION})
"""The entities only a named-entity model can find (no pattern or checksum describes a name)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data in a text: ``text[start:end]``.

    ``text`` is left out of ``repr`` so a finding logged by mistake does not leak what it found.
    ``source`` says which recognizer found it: ``"regex"`` (a pattern, usually confirmed by a
    checksum or a numbering plan) or ``"ner"`` (the local named-entity model).
    """

    entity: Entity
    start: int
    end: int
    text: str = field(repr=False)
    source: str = "regex"


class PiiError(PodiumError):
    """PII redaction was used wrongly (for example findings that do not belong to the text)."""


class PiiModelUnavailable(ConfigError):
    """NER was required (``ner=True``) but spaCy or its English model package is not installed."""


def parse_entities(entities: Iterable[Entity | str] | None) -> frozenset[Entity]:
    """The entity set a caller asked for; ``None`` is every entity. Names are case-insensitive.

    Raises:
        ConfigError: A name is not one of :class:`Entity`'s.
    """
    if entities is None:
        return frozenset(Entity)
    out: set[Entity] = set()
    for item in entities:
        if isinstance(item, Entity):
            out.add(item)
            continue
        name = str(item).strip().upper()
        try:
            out.add(Entity(name))
        except ValueError:
            known = ", ".join(e.value for e in Entity)
            raise ConfigError(f"unknown PII entity {item!r}; expected one of {known}") from None
    return frozenset(out)


# The entity names longest first, so CREDIT_CARD is tried before a shorter name could match.
_NAMES = "|".join(sorted((re.escape(e.value) for e in Entity), key=len, reverse=True))

PLACEHOLDER_RE = re.compile(rf"<(?P<entity>{_NAMES})_(?P<n>[1-9][0-9]*)>")
"""A placeholder exactly as the vault writes it: ``<EMAIL_1>``, ``<CREDIT_CARD_12>``."""
