"""Pattern recognizers: a regular expression proposes a span, a validator confirms it.

A pattern alone over-reports (every 16-digit order number looks like a card), so each
recognizer hands its candidates to a validator written by people who track the standards:
``python-stdnum`` for checksums (Luhn, IBAN mod 97-10, national ids) and ``phonenumbers``
(Google's libphonenumber metadata) for phone numbering plans. Only what passes is reported.

Strength orders overlapping candidates (see :mod:`podium.governance.pii.detector`): a checksum
confirmed span (:data:`CHECKSUM`) beats one that only fits a format or numbering plan
(:data:`STRUCTURE`), which beats a guess of the NER model (:data:`MODEL`).

Numbers written without any separator are the ambiguous case: ``2024031512`` may be a phone
number, a ticket id or a timestamp. An unformatted phone number, an unformatted US SSN and a
German tax id (always eleven bare digits) are therefore reported only when a keyword
(``phone``, ``SSN``, ``Steuer-ID``…) stands shortly before them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.us import ssn

from podium.governance.pii.entities import Entity, Finding

__all__ = [
    "CHECKSUM",
    "MODEL",
    "STRUCTURE",
    "Candidate",
    "Recognizer",
    "phone_recognizer",
    "recognizers_for",
]

CHECKSUM = 3
STRUCTURE = 2
MODEL = 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """A finding proposed by one recognizer, with how sure that recognizer is."""

    finding: Finding
    strength: int


Recognizer = Callable[[str], Iterator[Candidate]]
"""Finds every span of one entity kind in a text (possibly overlapping other kinds' spans)."""

_CONTEXT_WINDOW = 40


def _context(text: str, start: int, words: re.Pattern[str]) -> bool:
    """Whether one of ``words`` stands in the few characters before ``start``."""
    return words.search(text, max(0, start - _CONTEXT_WINDOW), start) is not None


def _candidate(entity: Entity, text: str, start: int, end: int, strength: int) -> Candidate:
    return Candidate(Finding(entity, start, end, text[start:end], "regex"), strength)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


# -- e-mail ---------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)


def find_emails(text: str) -> Iterator[Candidate]:
    """Addresses of the usual ``local@domain.tld`` form (no quoted or IP-literal forms)."""
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield _candidate(Entity.EMAIL, text, m.start(), m.end(), STRUCTURE)


# -- IP addresses ---------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\w)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%[\w.]+)?(?![\w:]|\.\d)"
)
# "version 1.2.3.4", "v1.2.3.4", "build 10.0.0.1": a dotted version, not an address.
_VERSION_WORDS = re.compile(r"(?i)\b(?:version|ver\.?|v|build|release|rev\.?)\s*$")


def _reportable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Loopback and the unspecified address (127.0.0.1, ::1, 0.0.0.0, ::) name no one.
    return not (address.is_loopback or address.is_unspecified)


def find_ip_addresses(text: str) -> Iterator[Candidate]:
    """IPv4 dotted quads and IPv6 addresses (any compression, zone ids, IPv4 tails), each
    parsed by :mod:`ipaddress`; loopback and unspecified addresses are not reported."""
    if "." in text:
        for m in _IPV4.finditer(text):
            head = text[max(0, m.start() - 12) : m.start()]
            if _VERSION_WORDS.search(head):
                continue
            if _reportable(ipaddress.IPv4Address(m.group())):
                yield _candidate(Entity.IP_ADDRESS, text, m.start(), m.end(), STRUCTURE)
    if text.count(":") < 2:
        return
    for m in _IPV6.finditer(text):
        raw = m.group()
        # A sentence may end right after the address ("... from fe80::1:"): drop that colon.
        end = m.end()
        while raw.endswith(":") and not raw.endswith("::"):
            raw, end = raw[:-1], end - 1
        try:
            address = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if sum(c.isalnum() for c in raw.split("%")[0]) < 2 or not _reportable(address):
            continue
        yield _candidate(Entity.IP_ADDRESS, text, m.start(), end, STRUCTURE)


# -- payment cards --------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w+-])\d(?:[ -]?\d){11,18}(?![\w-])")
# Card schemes by issuer identification number prefix (ISO/IEC 7812) and the lengths each
# issues. A Luhn-valid number outside them (an account or order number starting with 1, 7, 8
# or 9, or an 18-digit run starting with 37) is not a card.
_SCHEMES: Sequence[tuple[re.Pattern[str], frozenset[int]]] = tuple(
    (re.compile(prefix), frozenset(lengths))
    for prefix, lengths in (
        (r"4", (13, 16, 19)),  # Visa
        (r"5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)", (16,)),  # Mastercard
        (r"3[47]", (15,)),  # American Express
        (r"3(?:0[0-5]|[689])", range(14, 20)),  # Diners Club
        (r"35(?:2[89]|[3-8]\d)", range(16, 20)),  # JCB
        (r"6011|64[4-9]|65|62|60|8[12]", range(16, 20)),  # Discover, UnionPay, RuPay
        (r"5[06-9]|6", range(13, 20)),  # Maestro
    )
)
# "DE89 3704 0044 ...": the digits of an IBAN (valid or not), not a card.
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}[ -]?$")


def _card_ok(digits: str) -> bool:
    return any(
        p.match(digits) and len(digits) in lengths for p, lengths in _SCHEMES
    ) and luhn.is_valid(digits)


def _groups(raw: str, base: int) -> list[tuple[int, int]]:
    """Absolute (start, end) of each run of digits in ``raw``."""
    return [(base + m.start(), base + m.end()) for m in re.finditer(r"\d+", raw)]


def find_credit_cards(text: str) -> Iterator[Candidate]:
    """Card numbers of 13-19 digits, bare or grouped with spaces or dashes, from a known issuer
    range and Luhn-valid. When a grouped run is longer than a card (a card followed by a year,
    say), the longest run of whole groups that is a valid card is reported."""
    for m in _CARD.finditer(text):
        raw = m.group()
        if _IBAN_HEAD.search(text, max(0, m.start() - 5), m.start()):
            continue
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1:
            continue
        if _card_ok(_digits(raw)):
            yield _candidate(Entity.CREDIT_CARD, text, m.start(), m.end(), CHECKSUM)
            continue
        groups = _groups(raw, m.start())
        spans = sorted(
            ((a, b) for a in range(len(groups)) for b in range(a + 1, len(groups) + 1)),
            key=lambda ab: ab[0] - ab[1],
        )
        for a, b in spans:
            if b - a == len(groups):
                continue
            start, end = groups[a][0], groups[b - 1][1]
            if _card_ok(_digits(text[start:end])):
                yield _candidate(Entity.CREDIT_CARD, text, start, end, CHECKSUM)
                break


# -- IBAN -----------------------------------------------------------------------------------------

_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])")


def find_ibans(text: str) -> Iterator[Candidate]:
    """IBANs written in one block or in groups (of four, by spaces or dashes), confirmed by
    ``stdnum.iban``: the country's length and BBAN structure, the mod 97-10 check digits and,
    where the country has them, its national check digits. A match that ran into the next
    word is cut back to the longest prefix of whole groups that is valid."""
    for m in _IBAN.finditer(text):
        raw = m.group()
        ends = [i for i in range(len(raw), 14, -1) if i == len(raw) or raw[i] in " -"]
        for i in ends:
            if stdnum_iban.is_valid(raw[:i]):
                yield _candidate(Entity.IBAN, text, m.start(), m.start() + i, CHECKSUM)
                break


# -- national ids ---------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])")
_SSN_BARE = re.compile(r"(?<![\w-])\d{9}(?![\w-])")
_SSN_WORDS = re.compile(r"(?i)\b(?:ssn|social security|soc\.? sec\.?)\b")
# HMRC: the first letter is not D, F, I, Q, U or V; the second not D, F, I, O, Q, U or V;
# the suffix is A-D; the prefixes BG, GB, KN, NK, NT, TN and ZZ are never allocated.
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    r"(?![A-Za-z0-9])"
)
_NINO_UNUSED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NIR = re.compile(
    r"(?<![\w])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\w)"
)
_IDNR = re.compile(r"(?<![\w-])[1-9]\d(?: ?\d{3}){3}(?![\w-])")
_IDNR_WORDS = re.compile(
    r"(?i)(?:steuer[- ]?id|steuer-?identifikationsnummer|identifikationsnummer|idnr|"
    r"steuernummer|\btin\b|tax id)"
)
_DNI = re.compile(r"(?<![\w-])\d{8}-?[A-Z](?![\w-])")
_NIE = re.compile(r"(?<![\w-])[XYZ]-?\d{7}-?[A-Z](?![\w-])")
_CODICE_FISCALE = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{6}[0-9LMNP-V]{2}[A-EHLMPR-T][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]"
    r"(?![A-Za-z0-9])"
)


def _nino_ok(raw: str) -> bool:
    return raw[:2] not in _NINO_UNUSED


_ID_CHECKS: Sequence[tuple[re.Pattern[str], Callable[[str], bool], int]] = (
    (_SSN, ssn.is_valid, STRUCTURE),
    (_NINO, _nino_ok, STRUCTURE),
    (_NIR, nir.is_valid, CHECKSUM),
    (_DNI, dni.is_valid, CHECKSUM),
    (_NIE, nie.is_valid, CHECKSUM),
    (_CODICE_FISCALE, codicefiscale.is_valid, CHECKSUM),
)


def find_national_ids(text: str) -> Iterator[Candidate]:
    """National identity and tax numbers:

    - US Social Security Number (``536-90-4399``; ``stdnum.us.ssn``: no area 000, 666 or
      9xx, no group 00, no serial 0000, not a publicly misused number). Nine bare digits only
      after "SSN" / "social security".
    - UK National Insurance number (``AB 12 34 56 C``): python-stdnum has no module for it,
      so HMRC's allocation rules are checked here (letters allowed in each prefix position,
      prefixes never allocated, suffix A-D).
    - French NIR / social security number (15 digits with its mod-97 key; ``stdnum.fr.nir``).
    - German tax id, Steuer-IdNr (11 digits, ISO 7064 mod 11,10 and the digit-repetition
      rule; ``stdnum.de.idnr``), only after a keyword such as "Steuer-ID" or "tax id".
    - Spanish DNI and NIE (check letter; ``stdnum.es.dni``, ``stdnum.es.nie``).
    - Italian codice fiscale (check character; ``stdnum.it.codicefiscale``).
    """
    if not any(c.isdigit() for c in text):
        return
    for pattern, valid, strength in _ID_CHECKS:
        for m in pattern.finditer(text):
            if valid(m.group()):
                yield _candidate(Entity.NATIONAL_ID, text, m.start(), m.end(), strength)
    for m in _SSN_BARE.finditer(text):
        if _context(text, m.start(), _SSN_WORDS) and ssn.is_valid(m.group()):
            yield _candidate(Entity.NATIONAL_ID, text, m.start(), m.end(), STRUCTURE)
    for m in _IDNR.finditer(text):
        if _context(text, m.start(), _IDNR_WORDS) and idnr.is_valid(m.group()):
            yield _candidate(Entity.NATIONAL_ID, text, m.start(), m.end(), CHECKSUM)


# -- phone numbers --------------------------------------------------------------------------------

_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text me|"
    r"reach me|contact|ring|my (?:new |old |cell |mobile )?number)\b"
)
_PHONE_SEPARATORS = frozenset(" -.()/")
_PHONE_RUN = re.compile(r"\+?\(?\d[\d \t().\-/]*\d(?:\s*(?:ext\.?|x)\s*\d+)?", re.I)
"""Where a phone number may be: a digit run with the separators numbers are written with."""
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")
"""Dates are not phone numbers (libphonenumber rejects them too, at 0.2 ms each)."""


def phone_recognizer(regions: Sequence[str]) -> Recognizer:
    """Phone numbers valid in their numbering plan (libphonenumber's ``VALID`` leniency).

    Numbers written with ``+`` and a country code are found whatever ``regions`` says;
    ``regions`` are the countries whose national format (``(415) 555-2671`` for ``"US"``) is
    understood too. A number written as bare digits (``4155552671``) is reported only after
    a keyword such as "phone" or "call": bare digit runs are more often ids and timestamps.
    """
    regions = tuple(r.upper() for r in regions) or ("US",)

    def find_phones(text: str) -> Iterator[Candidate]:
        seen: set[tuple[int, int]] = set()
        # libphonenumber's matcher costs ~4 ms per KB of prose, digits or not: it runs only on
        # the digit runs that could be a number (7+ digits), each with one character of context.
        for run in _PHONE_RUN.finditer(text):
            if sum(c.isdigit() for c in run.group()) < 7 or _DATE.fullmatch(run.group()):
                continue
            lo, hi = max(0, run.start() - 1), min(len(text), run.end() + 1)
            window = text[lo:hi]
            for region in regions:
                for match in phonenumbers.PhoneNumberMatcher(
                    window, region, leniency=phonenumbers.Leniency.VALID
                ):
                    start, end = lo + match.start, lo + match.end
                    if (start, end) in seen:
                        continue
                    seen.add((start, end))
                    raw = match.raw_string
                    formatted = "+" in raw or any(c in _PHONE_SEPARATORS for c in raw)
                    if not formatted and not _context(text, start, _PHONE_WORDS):
                        continue
                    yield _candidate(Entity.PHONE, text, start, end, STRUCTURE)

    return find_phones


_PATTERN_RECOGNIZERS: dict[Entity, Recognizer] = {
    Entity.EMAIL: find_emails,
    Entity.IP_ADDRESS: find_ip_addresses,
    Entity.CREDIT_CARD: find_credit_cards,
    Entity.IBAN: find_ibans,
    Entity.NATIONAL_ID: find_national_ids,
}


def recognizers_for(entities: frozenset[Entity], phone_regions: Sequence[str]) -> list[Recognizer]:
    """The pattern recognizers of ``entities``, cheapest and most specific first."""
    out = [r for e, r in _PATTERN_RECOGNIZERS.items() if e in entities]
    if Entity.PHONE in entities:
        out.append(phone_recognizer(phone_regions))
    return out
