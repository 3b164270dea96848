"""Reversible redaction: placeholders out, originals back.

One :class:`PlaceholderVault` lives for one request. It hands out ``<ENTITY_n>`` placeholders,
numbered per entity in order of first appearance, and keeps the originals so the model's answer
can be restored when the policy allows it. The same value gets the same placeholder in every
text of the request (the system prompt, each message, tool arguments), so a model that sees
``<EMAIL_1>`` twice knows it is one address.

"The same value" is compared in a normal form, because people write one value several ways:
e-mail addresses ignore case; numbers (phones, cards, IBANs, ids) ignore spaces, dashes,
dots and brackets; names ignore runs of whitespace. Restoring puts back the first spelling seen.

Models do not always echo a placeholder verbatim, so :meth:`PlaceholderVault.restore` also
accepts ``< EMAIL_1 >``, ``&lt;EMAIL_1&gt;``, ``[EMAIL_1]``, a bare ``EMAIL_1`` and markdown's
escaped underscore (``<EMAIL\\_1>``). A placeholder this vault did not issue is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from podium.governance.pii.detector import PiiDetector
from podium.governance.pii.entities import Entity, Finding, PiiError

__all__ = ["PlaceholderVault", "redact_text"]

_NUMERIC = frozenset({Entity.PHONE, Entity.CREDIT_CARD, Entity.IBAN, Entity.NATIONAL_ID})
_NUMBER_NOISE = re.compile(r"[\s\-.()/]")


def _normal(entity: Entity, text: str) -> str:
    if entity in (Entity.EMAIL, Entity.IP_ADDRESS):
        return text.casefold()
    if entity in _NUMERIC:
        return _NUMBER_NOISE.sub("", text).upper()
    return " ".join(text.split())


# Entity names longest first; "\\?_" accepts markdown's escaped underscore (CREDIT\_CARD\_1).
_NAME_ALTERNATIVES = "|".join(
    e.value.replace("_", r"\\?_") for e in sorted(Entity, key=lambda e: len(e.value), reverse=True)
)
_ECHO = re.compile(
    r"(?P<open><\s*|&lt;\s*|\[\s*)?"
    rf"(?<![A-Za-z0-9_])(?P<entity>{_NAME_ALTERNATIVES})\\?_(?P<n>[1-9][0-9]*)(?![0-9])"
    r"(?P<close>\s*>|\s*&gt;|\s*\])?"
)
_PAIRS = {"<": ">", "&lt;": "&gt;", "[": "]"}


class PlaceholderVault:
    """The placeholders of one request and the originals behind them.

    ``repr`` shows only how many values of each entity it holds, never a value.
    """

    __slots__ = ("_by_value", "_counts", "_originals")

    def __init__(self) -> None:
        self._by_value: dict[tuple[Entity, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: dict[Entity, int] = {}

    @property
    def counts(self) -> Mapping[Entity, int]:
        """Distinct values redacted, per entity (read-only)."""
        return MappingProxyType(self._counts)

    def __len__(self) -> int:
        return len(self._originals)

    def __bool__(self) -> bool:
        return bool(self._originals)

    def __repr__(self) -> str:
        inner = ", ".join(f"{e.value}={n}" for e, n in sorted(self._counts.items()))
        return f"PlaceholderVault({inner})"

    def placeholder(self, entity: Entity, original: str) -> str:
        """The placeholder of ``original`` (a new one the first time this value is seen)."""
        key = (entity, _normal(entity, original))
        found = self._by_value.get(key)
        if found is None:
            n = self._counts.get(entity, 0) + 1
            self._counts[entity] = n
            found = self._by_value[key] = f"<{entity.value}_{n}>"
            self._originals[found] = original
        return found

    def redact(self, text: str, findings: Sequence[Finding]) -> str:
        """``text`` with each finding replaced by its placeholder.

        Raises:
            PiiError: A finding does not describe ``text`` (its span holds other text), so it
                was found in a different text.
        """
        out: list[str] = []
        pos = 0
        for f in sorted(findings, key=lambda f: (f.start, -f.end)):
            if f.start < pos:
                continue  # overlaps a finding already replaced (detect() never returns these)
            if text[f.start : f.end] != f.text:
                raise PiiError(
                    f"a {f.entity.value} finding at {f.start}:{f.end} does not match the text "
                    "being redacted; pass the findings detected in this text"
                )
            out.append(text[pos : f.start])
            out.append(self.placeholder(f.entity, f.text))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """``text`` with every placeholder of this vault replaced by its original."""
        if not self._originals:
            return text

        def put_back(m: re.Match[str]) -> str:
            entity = m.group("entity").replace("\\", "")
            original = self._originals.get(f"<{entity}_{m.group('n')}>")
            if original is None:
                return m.group()
            opening, closing = m.group("open"), m.group("close")
            pair = opening is not None and closing is not None
            if pair and _PAIRS[opening.strip()] == closing.strip():
                return original
            # An unmatched bracket is the text's own punctuation: keep it.
            return (opening or "") + original + (closing or "")

        return _ECHO.sub(put_back, text)


def redact_text(
    text: str, detector: PiiDetector, vault: PlaceholderVault | None = None
) -> tuple[str, PlaceholderVault]:
    """Detect and redact in one step; pass the request's vault to share its placeholders."""
    vault = PlaceholderVault() if vault is None else vault
    return vault.redact(text, detector.detect(text)), vault
