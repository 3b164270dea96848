"""PII detection, redaction and restoration: each entity found and its look-alikes left alone;
overlaps settled; placeholders consistent, reversible and never re-detected; the corpus' measured
recall holds; the NER model loads once and its absence is reported, not fatal."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from podium.errors import ConfigError
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
from podium.governance.pii import ner as pii_ner
from podium.governance.pii.detector import _resolve
from podium.governance.pii.recognizers import CHECKSUM, STRUCTURE, Candidate

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "pii"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_pii_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regex() -> PiiDetector:
    return PiiDetector(ner=False)


def found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(f.entity.value, f.text) for f in detector.detect(text)]


# -- each entity ----------------------------------------------------------------------------------

POSITIVES = [
    ("Mail me at jane.doe+tickets@example.co.uk.", "EMAIL", "jane.doe+tickets@example.co.uk"),
    ("From: o'brien@acme-corp.io", "EMAIL", "brien@acme-corp.io"),
    ("Call (415) 555-2671 after lunch", "PHONE", "(415) 555-2671"),
    ("mobile 212-555-0199, thanks", "PHONE", "212-555-0199"),
    ("London office +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
    ("Paris: +33 1 42 68 53 00", "PHONE", "+33 1 42 68 53 00"),
    ("WhatsApp +49 151 2345 6789 please", "PHONE", "+49 151 2345 6789"),
    ("Tokyo +81 3-5555-1234", "PHONE", "+81 3-5555-1234"),
    ("my phone is 4155552671", "PHONE", "4155552671"),
    ("my new number is 2125550199", "PHONE", "2125550199"),
    ("Visa 4111 1111 1111 1111 exp 12/26", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("MC 5500-0000-0000-0004.", "CREDIT_CARD", "5500-0000-0000-0004"),
    ("Amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
    ("card:4012888888881881", "CREDIT_CARD", "4012888888881881"),
    ("card 4111 1111 1111 1111 2026", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("IBAN DE89 3704 0044 0532 0130 00 THANKS", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("pay GB82WEST12345698765432 today", "IBAN", "GB82WEST12345698765432"),
    ("FR14 2004 1010 0505 0001 3M02 606", "IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("SSN 536-90-4399 on file", "NATIONAL_ID", "536-90-4399"),
    ("social security number 536904399", "NATIONAL_ID", "536904399"),
    ("NINO AB 12 34 56 C", "NATIONAL_ID", "AB 12 34 56 C"),
    ("NI number JG103759A.", "NATIONAL_ID", "JG103759A"),
    ("NIR 2 95 10 99 126 111 93", "NATIONAL_ID", "2 95 10 99 126 111 93"),
    ("Steuer-ID: 36574261809", "NATIONAL_ID", "36574261809"),
    ("DNI 12345678Z", "NATIONAL_ID", "12345678Z"),
    ("NIE X1234567L", "NATIONAL_ID", "X1234567L"),
    ("codice fiscale RCCMNL83S18D969H", "NATIONAL_ID", "RCCMNL83S18D969H"),
    ("login from 203.0.113.42:8443", "IP_ADDRESS", "203.0.113.42"),
    ("lan host 192.168.1.20.", "IP_ADDRESS", "192.168.1.20"),
    ("v6 2001:db8::8a2e:370:7334 seen", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("link-local fe80::1%eth0 up", "IP_ADDRESS", "fe80::1%eth0"),
    (
        "full 2001:0DB8:0000:0000:0008:0800:200C:417A",
        "IP_ADDRESS",
        "2001:0DB8:0000:0000:0008:0800:200C:417A",
    ),
]


@pytest.mark.parametrize(("text", "entity", "value"), POSITIVES)
def test_each_entity_is_found(regex: PiiDetector, text: str, entity: str, value: str) -> None:
    assert found(regex, text) == [(entity, value)]


NEGATIVES = [
    "Order #4815162342 shipped on 2024-03-15 for $1,299.99",
    "Your order number is 4815162342424242.",  # 16 digits, Luhn-invalid
    "Order 1234-5678-9012-3456",  # card-shaped, Luhn-invalid
    "card 4111 1111 1111 1112 was refused",  # one digit off
    "Ref 7992739871300000",  # Luhn-valid, but no card issuer starts with 7
    "Version 3.12.4 released 03/15/2024, build 10.0.19045.3693",
    "upgrade to version 1.2.3.4 tonight",
    "ticket 2024031512 merged",  # bare digits with no phone keyword
    "Your order number is 4155552671.",  # a valid US number's digits, but an order number
    "ISBN 978-3-16-148410-0 and 9783161484100",
    "Total $1,234,567.89 or 1 234 567,89 EUR",
    "meeting at 10:30:45 on 2024-03-15T10:30:00Z",
    "MAC 00:1A:2B:3C:4D:5E in the DHCP table",
    "UUID 123e4567-e89b-12d3-a456-426614174000",
    "SKU-4411-2290-7731 and PRD68450604 and 1Z999AA10123456784",
    "localhost 127.0.0.1 and ::1 and 0.0.0.0",
    "SSN 000-12-3456 and 666-12-3456 are never issued",
    "invalid IBAN DE89 3704 0044 0532 0130 01",
    "NINO QQ 12 34 56 C is HMRC's example and not allocated",
    "account 36574261809 without a keyword",  # a valid Steuer-ID shape, no context
    "timestamp 1700000000123 and ZIP 94105-1234",
    "coordinates 48.8566, 2.3522",
    "drama number +44 7700 900123",  # Ofcom's range reserved for fiction
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_hard_negatives_are_left_alone(regex: PiiDetector, text: str) -> None:
    assert regex.detect(text) == []
    assert not contains_pii(text, regex)


def test_entities_can_be_restricted_and_named_in_any_case() -> None:
    text = "jane@example.com, 415-555-2671, 203.0.113.42"
    assert found(PiiDetector(["email", "IP_ADDRESS"], ner=False), text) == [
        ("EMAIL", "jane@example.com"),
        ("IP_ADDRESS", "203.0.113.42"),
    ]
    assert found(PiiDetector([Entity.PHONE]), text) == [("PHONE", "415-555-2671")]


def test_an_unknown_entity_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown PII entity 'PASSPORT'"):
        PiiDetector(["EMAIL", "PASSPORT"])


def test_empty_text_and_text_without_pii(regex: PiiDetector) -> None:
    assert regex.detect("") == []
    assert not contains_pii("", regex)
    assert not contains_pii("The printer on floor 3 is jammed again.", regex)
    assert contains_pii("printer jammed, call me on +33 6 12 34 56 78", regex)


# -- overlaps -------------------------------------------------------------------------------------


def test_findings_are_sorted_and_never_overlap(regex: PiiDetector) -> None:
    text = (
        "IPv4-mapped ::ffff:192.0.2.128; +49 151 7348 0059 (a Luhn-valid digit run after the +); "
        "Steuer-ID 36 574 261 809; card 4111-1111-1111-1111 and ssn 536-90-4399"
    )
    findings = regex.detect(text)
    assert [(f.entity.value, f.text) for f in findings] == [
        ("IP_ADDRESS", "::ffff:192.0.2.128"),
        ("PHONE", "+49 151 7348 0059"),
        ("NATIONAL_ID", "36 574 261 809"),
        ("CREDIT_CARD", "4111-1111-1111-1111"),
        ("NATIONAL_ID", "536-90-4399"),
    ]
    for a, b in itertools.pairwise(findings):
        assert a.end <= b.start


def _cand(entity: Entity, start: int, end: int, strength: int) -> Candidate:
    return Candidate(Finding(entity, start, end, "x" * (end - start)), strength)


def test_a_checksum_beats_a_longer_format_match_and_length_breaks_ties() -> None:
    kept = _resolve(
        [
            _cand(Entity.PHONE, 0, 20, STRUCTURE),
            _cand(Entity.CREDIT_CARD, 2, 18, CHECKSUM),
            _cand(Entity.IP_ADDRESS, 25, 30, STRUCTURE),
            _cand(Entity.EMAIL, 24, 34, STRUCTURE),
        ],
        blocked=[],
    )
    assert [(f.entity, f.start, f.end) for f in kept] == [
        (Entity.CREDIT_CARD, 2, 18),
        (Entity.EMAIL, 24, 34),
    ]


# -- the vault ------------------------------------------------------------------------------------


def test_the_same_value_gets_the_same_placeholder_across_texts(regex: PiiDetector) -> None:
    vault = PlaceholderVault()
    a, _ = redact_text("Write to ana@example.com or bo@example.com.", regex, vault)
    b, _ = redact_text("Again: ANA@example.com, then bo@example.com.", regex, vault)
    assert a == "Write to <EMAIL_1> or <EMAIL_2>."
    assert b == "Again: <EMAIL_1>, then <EMAIL_2>."
    assert dict(vault.counts) == {Entity.EMAIL: 2}
    assert len(vault) == 2
    assert bool(vault)
    assert not PlaceholderVault()


def test_numbers_match_whatever_their_formatting(regex: PiiDetector) -> None:
    text, vault = redact_text(
        "Call 415-555-2671 or (415) 555-2671; card 4111 1111 1111 1111", regex
    )
    assert text == "Call <PHONE_1> or <PHONE_1>; card <CREDIT_CARD_1>"
    assert vault.restore("<PHONE_1>") == "415-555-2671"  # the first spelling seen


def test_restore_round_trip_and_echo_variants(regex: PiiDetector) -> None:
    original = "Jane (jane@example.com, +44 20 7946 0958) paid with 4111 1111 1111 1111."
    redacted, vault = redact_text(original, regex)
    assert "jane@example.com" not in redacted
    assert "4111" not in redacted
    assert vault.restore(redacted) == original
    answer = (
        "Sure: < EMAIL_1 >, &lt;PHONE_1&gt;, [CREDIT_CARD_1], bare EMAIL_1, "
        "markdown <CREDIT\\_CARD\\_1>, unknown <EMAIL_7> and <IBAN_1>, unclosed <EMAIL_1 here, "
        "no match in EMAIL_10, XEMAIL_1 or my_EMAIL_1"
    )
    assert vault.restore(answer) == (
        "Sure: jane@example.com, +44 20 7946 0958, 4111 1111 1111 1111, bare jane@example.com, "
        "markdown 4111 1111 1111 1111, unknown <EMAIL_7> and <IBAN_1>, unclosed <jane@example.com "
        "here, no match in EMAIL_10, XEMAIL_1 or my_EMAIL_1"
    )


def test_redaction_is_idempotent(regex: PiiDetector) -> None:
    text = "ssn 536-90-4399, ip 203.0.113.42, iban DE89 3704 0044 0532 0130 00, mail a@b.io"
    once, vault = redact_text(text, regex)
    assert regex.detect(once) == []
    twice, _ = redact_text(once, regex, vault)
    assert twice == once
    assert len(vault) == 4


def test_repr_never_shows_originals(regex: PiiDetector) -> None:
    findings = regex.detect("card 4111 1111 1111 1111 for jane@example.com")
    vault = PlaceholderVault()
    vault.redact("card 4111 1111 1111 1111 for jane@example.com", findings)
    shown = repr(vault) + repr(findings) + repr(regex) + str(vault)
    assert "4111" not in shown
    assert "jane" not in shown
    assert repr(vault) == "PlaceholderVault(CREDIT_CARD=1, EMAIL=1)"
    assert "text=" not in repr(findings[0])


def test_findings_of_another_text_are_refused(regex: PiiDetector) -> None:
    findings = regex.detect("mail jane@example.com")
    with pytest.raises(PiiError, match="EMAIL finding at 5:21 does not match"):
        PlaceholderVault().redact("mail john@example.com", findings)


def test_an_empty_vault_restores_nothing() -> None:
    assert PlaceholderVault().restore("keep <EMAIL_1> as is") == "keep <EMAIL_1> as is"


# -- the corpus -----------------------------------------------------------------------------------


def test_the_corpus_is_what_its_generator_makes() -> None:
    make_corpus = _load("make_corpus")
    assert make_corpus.build() == (BENCH / "corpus.jsonl").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("bench_pii")


def test_corpus_recall_and_precision_of_the_pattern_entities(
    bench: ModuleType, regex: PiiDetector
) -> None:
    examples = bench.load_corpus()
    assert 300 <= len(examples) <= 600
    assert sum(1 for ex in examples if not ex.spans) >= 100  # hard negatives
    exact, _ = bench.evaluate(regex, examples)
    floors = {
        Entity.EMAIL: 0.99,
        Entity.CREDIT_CARD: 0.99,
        Entity.IBAN: 0.99,
        Entity.IP_ADDRESS: 0.99,
        Entity.PHONE: 0.95,
        Entity.NATIONAL_ID: 0.95,
    }
    for entity, floor in floors.items():
        score = exact[entity]
        assert score.tp + score.fn >= 30, entity
        assert score.recall >= floor, (entity, score.recall, score.misses[:3])
        assert score.precision >= 0.95, (entity, score.precision, score.false_alarms[:3])


# -- NER ------------------------------------------------------------------------------------------


def test_without_spacy_names_are_reported_undetectable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # as if spaCy were not installed
    assert pii_ner.installed_model() is None
    detector = PiiDetector()
    assert not detector.ner_available
    assert detector.undetectable == {Entity.PERSON, Entity.LOCATION}
    assert found(detector, "Jane Doe from Paris, jane@example.com") == [
        ("EMAIL", "jane@example.com")
    ]
    with pytest.raises(PiiModelUnavailable, match="pii-ner extra"):
        PiiDetector(ner=True)


def test_ner_off_or_not_needed() -> None:
    assert not PiiDetector(ner=False).ner_available
    assert not PiiDetector(["EMAIL"]).ner_available
    assert PiiDetector(["EMAIL"]).undetectable == frozenset()


@pytest.fixture(scope="module")
def with_ner() -> PiiDetector:
    pytest.importorskip("spacy")
    if pii_ner.installed_model() is None:
        pytest.skip("no spaCy English model package installed")
    return PiiDetector(ner=True)


def test_ner_finds_people_and_places(with_ner: PiiDetector) -> None:
    assert with_ner.ner_available
    text = "Hi, I am Maria Gonzalez from Berlin; call John Smith in New York at +1 212 555 0199."
    assert found(with_ner, text) == [
        ("PERSON", "Maria Gonzalez"),
        ("LOCATION", "Berlin"),
        ("PERSON", "John Smith"),
        ("LOCATION", "New York"),
        ("PHONE", "+1 212 555 0199"),
    ]
    assert {f.source for f in with_ner.detect(text)} == {"ner", "regex"}


def test_ner_spans_are_trimmed_to_the_name(with_ner: PiiDetector) -> None:
    text = "Best regards,\nArjun Chen\nGlobex\n215-850-7958"
    assert ("PERSON", "Arjun Chen") in found(with_ner, text)


def test_ner_redaction_round_trip_and_idempotence(with_ner: PiiDetector) -> None:
    text = "Please ask Priya Natarajan in London to email priya.natarajan@example.com."
    redacted, vault = redact_text(text, with_ner)
    assert redacted == "Please ask <PERSON_1> in <LOCATION_1> to email <EMAIL_1>."
    assert with_ner.detect(redacted) == []
    assert vault.restore(redacted) == text
    assert contains_pii("Priya Natarajan", with_ner)


def test_the_model_loads_once_under_concurrent_first_calls(
    with_ner: PiiDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pii_ner, "_cache", pii_ner._Cache())  # a fresh process-wide cache
    barrier = threading.Barrier(6)
    models: list[object] = []

    def first_call() -> None:
        barrier.wait()
        models.append(pii_ner.load_model())

    threads = [threading.Thread(target=first_call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(models) == 6
    assert all(m is models[0] for m in models)
    assert pii_ner.model_loads() == 1


def test_default_detector_is_shared(with_ner: PiiDetector) -> None:
    assert default_detector() is default_detector()
    assert default_detector().ner_available


def test_corpus_name_recall_with_ner(bench: ModuleType, with_ner: PiiDetector) -> None:
    _, overlap = bench.evaluate(with_ner, bench.load_corpus())
    assert overlap[Entity.PERSON].recall >= 0.75
    assert overlap[Entity.LOCATION].recall >= 0.85
    assert overlap[Entity.PERSON].precision >= 0.75
