"""Generate the labelled PII corpus, ``benchmarks/pii/corpus.jsonl`` (deterministic, seeded).

Each line is ``{"text": ..., "spans": [{"start", "end", "entity"}]}``: a support ticket, e-mail or
chat line in English, some with international content, filled from templates below. A template's
``{slot}`` is replaced by a generated value; PII slots are labelled with their entity, the other
slots are hard negatives (order numbers, dates, prices, versions, product codes, Luhn-invalid
cards, person-like product names...) and carry no label.

Values are made from the numbering and checksum rules of each kind (Luhn, IBAN mod 97-10, NIR
key, DNI letter...): check digits are computed with python-stdnum's ``calc_*`` helpers, the
structure (issuer prefixes, BBAN layouts, phone numbering ranges) is written here. Names and
cities are lists written for this file; no dataset is downloaded.

    python benchmarks/pii/make_corpus.py            # rewrite corpus.jsonl
    python benchmarks/pii/make_corpus.py --check    # exit 1 if corpus.jsonl is not up to date

The same seed gives the same bytes (the test suite checks it).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import re
import string
import sys
from collections.abc import Callable
from pathlib import Path

from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.fr import nir
from stdnum.iso7064 import mod_11_10
from stdnum.it import codicefiscale

SEED = 20240515
SIZE = 480
CORPUS = Path(__file__).with_name("corpus.jsonl")

FIRST = [
    "Maria", "James", "Priya", "Wei", "Fatima", "Olusegun", "Sofia", "Lukas", "Aoife", "Hiroshi",
    "Emily", "Carlos", "Ingrid", "Mohammed", "Chloe", "Raj", "Elena", "Daniel", "Amara", "Yuki",
    "Thomas", "Isabel", "Kwame", "Anna", "Mateo", "Sarah", "Arjun", "Leila", "Pierre", "Greta",
    "Michael", "Nadia", "Jonas", "Camille", "David", "Mei", "Oliver", "Lucia", "Samuel", "Hannah",
]  # fmt: skip
LAST = [
    "Gonzalez", "Smith", "Natarajan", "Zhang", "Haddad", "Adeyemi", "Rossi", "Becker", "Byrne",
    "Tanaka", "Johnson", "Fernandez", "Larsen", "Rahman", "Dubois", "Patel", "Petrova", "Cohen",
    "Okafor", "Sato", "Anderson", "Moreno", "Mensah", "Kowalski", "Silva", "Thompson", "Iyer",
    "Karimi", "Laurent", "Schneider", "O'Brien", "Novak", "Weber", "Martin", "Miller", "Chen",
    "Wright", "Romano", "Hughes", "Fischer",
]  # fmt: skip
CITIES = [
    "London", "Paris", "Berlin", "Madrid", "Rome", "Tokyo", "Mumbai", "Lagos", "Toronto",
    "Chicago", "Seattle", "Boston", "Dublin", "Amsterdam", "Munich", "Barcelona", "Sydney",
    "Melbourne", "Nairobi", "Singapore", "Lisbon", "Vienna", "Stockholm", "Warsaw", "Prague",
    "Cairo", "Dubai", "Bangalore", "Osaka", "Manchester", "Atlanta", "Denver", "Houston",
    "San Francisco", "New York", "Los Angeles", "Mexico City", "Buenos Aires", "Cape Town",
    "Zurich",
]  # fmt: skip
COUNTRIES = [
    "Germany", "France", "Spain", "Italy", "Japan", "India", "Nigeria", "Canada", "Ireland",
    "the Netherlands", "Australia", "Kenya", "Portugal", "Austria", "Sweden", "Poland", "Brazil",
    "Mexico", "Egypt", "Switzerland",
]  # fmt: skip
DOMAINS = [
    "gmail.com", "outlook.com", "yahoo.co.uk", "example.com", "acme-corp.io", "web.de",
    "orange.fr", "mail.example.org", "company.co.jp", "protonmail.ch", "uni-muenchen.de",
]  # fmt: skip
# Things with a person's or a place's name that are neither (hard negatives for the NER model).
PRODUCTS = [
    "the Jasper 2000 blender", "Alexa", "Siri", "the Casper mattress", "Dr. Martens boots",
    "Ben & Jerry's ice cream", "the Tesla Model Y", "a Hamilton watch", "Jenkins",
    "Ruby on Rails", "the Dyson V15", "Django", "the Victoria pro tripod", "Cortana",
    "the Tiffany lamp", "the Morgan desk", "the Oscar smart feeder", "Watson Assistant",
]  # fmt: skip
ORGS = ["Acme Support", "the billing team", "our help desk", "Globex", "Initech", "the IT desk"]

US_AREAS = [
    "212", "213", "305", "312", "415", "503", "617", "646", "702", "713", "206", "404", "512",
    "718", "303", "480", "619", "602", "215", "917",
]  # fmt: skip


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def group(s: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(s[i : i + size])
        i += size
    return sep.join(out)


# -- PII values -----------------------------------------------------------------------------------


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower().replace("'", "")
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first[0]}{last}",
            f"{first}_{last}{digits(rng, 2)}",
            f"{first}+support",
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def phone_us(rng: random.Random) -> str:
    area = rng.choice(US_AREAS)
    exchange = str(rng.randint(2, 9)) + digits(rng, 2)
    if exchange[1:] == "11":
        exchange = exchange[0] + "21"
    line = digits(rng, 4)
    return rng.choice(
        [
            f"({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"+1 {area} {exchange} {line}",
            f"+1-{area}-{exchange}-{line}",
            f"1-{area}-{exchange}-{line}",
        ]
    )


def phone_intl(rng: random.Random) -> str:
    """International numbers in ranges that are allocated (libphonenumber's metadata): the
    fictional ranges (UK 07700 900xxx...) and unallocated blocks are not personal data."""
    d = lambda n: digits(rng, n)  # noqa: E731
    return rng.choice(
        [
            f"+44 20 7946 0{d(3)}",
            f"+44 {rng.choice(['7403', '7824'])} {d(6)}",
            f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+33 6 {rng.choice('1257')}{d(1)} {d(2)} {d(2)} {d(2)}",
            f"+49 30 {d(4)} {d(4)}",
            f"+49 151 {d(4)} {d(4)}",
            f"+91 9{d(4)} {d(5)}",
            f"+81 3-{rng.randint(5, 6)}{d(3)}-{d(4)}",
            f"+81 90-{rng.randint(1, 3)}{d(3)}-{d(4)}",
            f"+61 2 {rng.randint(8, 9)}{d(3)} {d(4)}",
            f"+61 4{rng.randint(0, 1)}{d(1)} {d(3)} {d(3)}",
            f"+34 6{d(2)} {d(3)} {d(3)}",
            f"+55 11 9{d(4)}-{d(4)}",
            f"+31 20 {rng.randint(2, 9)}{d(2)} {d(4)}",
            f"+31 6 {rng.randint(1, 4)}{d(3)} {d(4)}",
            f"+353 1 {rng.randint(2, 9)}{d(2)} {d(4)}",
        ]
    )


def _luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + digits(rng, length - len(prefix) - 1)
    return body + luhn.calc_check_digit(body)


_CARD_KINDS: list[tuple[list[str], int, list[int]]] = [
    (["4"], 16, [4, 4, 4, 4]),
    (["51", "52", "53", "54", "55", "2221", "2720", "2500"], 16, [4, 4, 4, 4]),
    (["34", "37"], 15, [4, 6, 5]),
    (["6011", "65"], 16, [4, 4, 4, 4]),
    (["3530", "3589"], 16, [4, 4, 4, 4]),
    (["36"], 14, [4, 6, 4]),
    (["4"], 13, [4, 4, 5]),
]


def _card_digits(rng: random.Random) -> tuple[str, list[int]]:
    prefixes, length, sizes = rng.choice(_CARD_KINDS)
    return _luhn_number(rng, rng.choice(prefixes), length), sizes


def card(rng: random.Random) -> str:
    number, sizes = _card_digits(rng)
    return group(number, sizes, rng.choice([" ", " ", "-", ""]))


_BBAN: dict[str, str] = {
    "DE": "8n10n",
    "GB": "4a6n8n",
    "FR": "5n5n11c2n",
    "NL": "4a10n",
    "IT": "1a5n5n12c",
    "CH": "5n12c",
    "IE": "4a6n8n",
    "AT": "5n11n",
    "PL": "8n16n",
    "SE": "3n17n",
}


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_BBAN))
    bban = ""
    for count, kind in re.findall(r"(\d+)([nac])", _BBAN[country]):
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.digits + string.ascii_uppercase,
        }[kind]
        bban += "".join(rng.choice(alphabet) for _ in range(int(count)))
    number = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
    assert stdnum_iban.is_valid(number), number
    if rng.random() < 0.7:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def ssn_bare(rng: random.Random) -> str:
    return ssn(rng).replace("-", "")


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    body, suffix = digits(rng, 6), rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}"
    return f"{prefix}{body}{suffix}"


def french_nir(rng: random.Random) -> str:
    body = (
        str(rng.randint(1, 2))
        + digits(rng, 2)
        + f"{rng.randint(1, 12):02d}"
        + f"{rng.choice([d for d in range(1, 96) if d != 20]):02d}"
        + f"{rng.randint(1, 990):03d}"
        + f"{rng.randint(1, 999):03d}"
    )
    number = body + nir.calc_check_digits(body)
    if rng.random() < 0.6:
        return group(number, [1, 2, 2, 2, 3, 3, 2], " ")
    return number


def steuer_id(rng: random.Random) -> str:
    while True:
        pool = rng.sample(string.digits, 9)
        body = [*pool, rng.choice(pool)]
        rng.shuffle(body)
        if body[0] != "0":
            break
    number = "".join(body)
    number += mod_11_10.calc_check_digit(number)
    if rng.random() < 0.5:
        return group(number, [2, 3, 3, 3], " ")
    return number


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni(rng: random.Random) -> str:
    number = digits(rng, 8)
    return number + _DNI_LETTERS[int(number) % 23]


def nie(rng: random.Random) -> str:
    lead, number = rng.choice("XYZ"), digits(rng, 7)
    return lead + number + _DNI_LETTERS[int(str("XYZ".index(lead)) + number) % 23]


def codice_fiscale(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
    day = rng.randint(1, 28) + rng.choice([0, 40])
    body = (
        letters
        + digits(rng, 2)
        + rng.choice("ABCDEHLMPRST")
        + f"{day:02d}"
        + rng.choice(string.ascii_uppercase)
        + digits(rng, 3)
    )
    return body + codicefiscale.calc_check_digit(body)


def national_id(rng: random.Random) -> str:
    return rng.choice([ssn, ssn, nino, french_nir, dni, nie, codice_fiscale])(rng)


def ipv4(rng: random.Random) -> str:
    return rng.choice(
        [
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"{rng.choice([23, 34, 52, 81, 91, 145, 185, 203])}.{rng.randint(0, 255)}."
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ]
    )


def ipv6(rng: random.Random) -> str:
    words = [rng.randint(0, 0xFFFF) for _ in range(8)]
    kind = rng.randrange(4)
    if kind == 0:
        words[:2] = [0x2001, 0x0DB8]
        words[4:7] = [0, 0, 0]
    elif kind == 1:
        words[:4] = [0xFE80, 0, 0, 0]
    elif kind == 2:
        words[0] = rng.choice([0x2A00, 0x2600, 0x2804, 0x2001])
    address = ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words))
    return address.exploded if kind == 3 else address.compressed


# -- hard negatives -------------------------------------------------------------------------------


def order_number(rng: random.Random) -> str:
    """Order and account numbers, 8 to 16 digits; a 16-digit one is never a valid card."""
    n = rng.choice([8, 10, 12, 16])
    while True:
        number = str(rng.randint(1, 9)) + digits(rng, n - 1)
        if not luhn.is_valid(number):
            return number


def bad_card(rng: random.Random) -> str:
    """A card-shaped number with a wrong check digit."""
    number, sizes = _card_digits(rng)
    number = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    return group(number, sizes, rng.choice([" ", "-"]))


def date(rng: random.Random) -> str:
    y, m, d = rng.randint(2019, 2025), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{d}.{m}.{y}"])


def price(rng: random.Random) -> str:
    amount = rng.randint(1, 250_000) / 100
    return rng.choice([f"${amount:,.2f}", f"€{amount:.2f}", f"£{amount:,.2f}", f"{amount:.2f} USD"])


def version(rng: random.Random) -> str:
    a, b, c = rng.randint(1, 12), rng.randint(0, 30), rng.randint(0, 99)
    return rng.choice([f"{a}.{b}.{c}", f"v{a}.{b}.{c}", f"{a}.{b}.{c}.{rng.randint(1000, 9999)}"])


def sku(rng: random.Random) -> str:
    return rng.choice(
        [
            f"SKU-{digits(rng, 4)}-{digits(rng, 4)}-{digits(rng, 4)}",
            f"PRD{digits(rng, 8)}",
            f"INC{digits(rng, 7)}",
            f"1Z{digits(rng, 3)}AA{digits(rng, 10)}",
            f"RMA-{digits(rng, 6)}",
        ]
    )


def clock(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randint(0, 255):02X}" for _ in range(6))


def zip_code(rng: random.Random) -> str:
    return rng.choice(
        [f"{rng.randint(10000, 99999)}", f"{rng.randint(10000, 99999)}-{digits(rng, 4)}"]
    )


def timestamp(rng: random.Random) -> str:
    return (
        f"{rng.randint(2019, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{digits(rng, 2)}"
    )


Slot = tuple[Callable[[random.Random], str], str | None]
SLOTS: dict[str, Slot] = {
    "person": (person, "PERSON"),
    "first": (lambda rng: rng.choice(FIRST), "PERSON"),
    "last": (lambda rng: rng.choice(LAST), "PERSON"),
    "email": (email, "EMAIL"),
    "phone_us": (phone_us, "PHONE"),
    "phone_intl": (phone_intl, "PHONE"),
    "card": (card, "CREDIT_CARD"),
    "iban": (iban, "IBAN"),
    "ssn": (ssn, "NATIONAL_ID"),
    "ssn_bare": (ssn_bare, "NATIONAL_ID"),
    "nino": (nino, "NATIONAL_ID"),
    "nir": (french_nir, "NATIONAL_ID"),
    "steuer": (steuer_id, "NATIONAL_ID"),
    "dni": (dni, "NATIONAL_ID"),
    "nie": (nie, "NATIONAL_ID"),
    "cf": (codice_fiscale, "NATIONAL_ID"),
    "national_id": (national_id, "NATIONAL_ID"),
    "ipv4": (ipv4, "IP_ADDRESS"),
    "ipv6": (ipv6, "IP_ADDRESS"),
    "city": (lambda rng: rng.choice(CITIES), "LOCATION"),
    "country": (lambda rng: rng.choice(COUNTRIES), "LOCATION"),
    # hard negatives
    "order": (order_number, None),
    "bad_card": (bad_card, None),
    "date": (date, None),
    "price": (price, None),
    "version": (version, None),
    "sku": (sku, None),
    "time": (clock, None),
    "mac": (mac, None),
    "zip": (zip_code, None),
    "stamp": (timestamp, None),
    "product": (lambda rng: rng.choice(PRODUCTS), None),
    "org": (lambda rng: rng.choice(ORGS), None),
    "qty": (lambda rng: str(rng.randint(2, 500)), None),
}

TEMPLATES = [
    # support tickets and e-mails with personal data
    "Hi, my name is {person} and I was charged twice for order #{order}. Please refund card {card}.",
    "Please update my billing e-mail to {email}; the old one was {email}.",
    "Customer {person} ({email}) called from {phone_us} about invoice {sku}.",
    "Can someone call me back at {phone_us}? I'm available after {time}.",
    "Our office in {city} can be reached on {phone_intl} during business hours.",
    "Refund to IBAN {iban}, account holder {person}.",
    "Please wire the deposit of {price} to {iban} before {date}.",
    "My SSN is {ssn} and my date of birth is {date}.",
    "SSN {ssn_bare} was entered on the form, can you mask it?",
    "National Insurance number {nino}, employee {person}, start date {date}.",
    "Mon numéro de sécurité sociale (NIR) est {nir}, merci. Cordialement, {person}",
    "Steuer-ID: {steuer} (bitte für die Rechnung {sku} verwenden).",
    "My German tax id is {steuer}, I moved to {city} in {date}.",
    "DNI {dni} - el cliente vive en {city}, {country}.",
    "Foreign resident NIE {nie}, phone {phone_intl}.",
    "Codice fiscale {cf}, intestatario {person}.",
    "The login attempts came from {ipv4} and {ipv6} at {time}.",
    "Blocked IP {ipv4} after {qty} failed logins on build {version}.",
    "User {email} connected from {ipv6}; MAC {mac} is not PII.",
    "Dear {first}, thank you for contacting {org}. Your ticket {sku} has been escalated.",
    "Hello {first}, we shipped your package to {city} on {date} (tracking {sku}).",
    "Thanks {first}! Your card ending in {qty} was declined; we also tried {card}.",
    "I'm {person} from {city}, {country}. My phone is {phone_intl} and my email is {email}.",
    'Forwarding from {person}: "please send the contract to {email} by {date}".',
    "Agent note: caller {person} verified with SSN {ssn} and ZIP {zip}.",
    "Chat: hey it's {first}, can u text me at {phone_us} when {product} is back in stock?",
    "Payment failed for {card} (amount {price}); customer {email}.",
    "Please do not store {card} in the notes, Mr. {last} asked us to delete it.",
    "Ms. {last} from {city} reported that {product} keeps disconnecting since {version}.",
    "Invoice for {person}, {city}, {country}: total {price}, IBAN {iban}.",
    "The VPN gateway {ipv4} rejected the client at {ipv6}.",
    "Call {person} at {phone_intl} or {phone_us} regarding order {order}.",
    "Update the record of {person}: new national id {national_id}, new email {email}.",
    "Our customer in {country} paid {price} by card {card} on {date}.",
    "Escalated by {person} in {city}: login from {ipv4} not recognised.",
    "From: {email}\nTo: {email}\nSubject: refund for order {order}",
    "{person} wrote: my new number is {phone_intl}, old one {phone_us}.",
    "Beneficiary {person}, IBAN {iban}, reference {sku}.",
    "Account {order} belongs to {person}; SSN on file {ssn}.",
    "Traveller {person} flying from {city} to {city} on {date}, contact {phone_intl}.",
    "Hi team, {first} here from {org}. Server {ipv4} is down since {time}.",
    "Driver {person} picked up parcel {sku} in {city}.",
    "Please reset the password for {email}, the request came from {ipv4}.",
    "I live in {city} and my card {card} expires {date}.",
    "Phone {phone_us}, fax {phone_us}, email {email}.",
    "Contact number: {phone_intl}. Preferred language: English.",
    "NINO {nino} and NIR {nir} were both submitted by {person}.",
    "The tenant, {person}, gave DNI {dni} and IBAN {iban}.",
    "Could you send the replacement to {person}, {city}, {zip}?",
    "Best regards,\n{person}\n{org}\n{phone_us}",
    "Cheers, {first} ({email})",
    "Our subsidiary in {country} uses {iban} for payroll.",
    "Reach me on WhatsApp {phone_intl}, I'm in {city} until {date}.",
    "Phone number {phone_us} belongs to {person}, not to {person}.",
    # hard negatives, sometimes with a little real PII
    "Order {order} shipped on {date} for {price}.",
    "Your order number is {order}; keep it for returns.",
    "Version {version} was released on {date} and fixes the crash in {product}.",
    "The card number {bad_card} failed validation, please double-check it.",
    "Transaction {bad_card} was rejected by the bank on {date}.",
    "SKU {sku} costs {price}, {qty} units left.",
    "Meeting at {time} on {date}, room {qty}.",
    "Build {version} deployed at {time}, checksum OK.",
    "My {product} stopped working after the update to {version}.",
    "Does {product} support the {version} firmware?",
    "I ordered {product} ({sku}) for {price}.",
    "Ticket {stamp} was merged into {sku}.",
    "Device MAC {mac} appears twice in the DHCP table.",
    "Please quote {qty} units at {price} each, delivery {date}.",
    "Tracking {sku}, weight {qty} kg, shipped {date}.",
    "Run {stamp} finished in {qty} seconds with version {version}.",
    "The invoice total changed from {price} to {price} after the {date} adjustment.",
    "Error code {order} occurred {qty} times since {date}.",
    "{product} and {product} are both out of stock until {date}.",
    "Reference {order}, amount {price}, due {date}.",
    "Our ZIP code lookup returned {zip} for the warehouse.",
    "Serial {order} is registered to {org}.",
    "Upgrade from {version} to {version} took {qty} minutes.",
    "Price for {product}: {price} (was {price}).",
    "Card ending {qty} on file; full number {bad_card} is invalid.",
]

_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random) -> dict[str, object]:
    text, spans, pos = [], [], 0
    length = 0
    for m in _SLOT.finditer(template):
        literal = template[pos : m.start()]
        text.append(literal)
        length += len(literal)
        make, entity = SLOTS[m.group(1)]
        value = make(rng)
        if entity is not None:
            # An article is not part of a place's name: "the Netherlands" is labelled "Netherlands".
            skip = 4 if value.startswith("the ") else 0
            spans.append({"start": length + skip, "end": length + len(value), "entity": entity})
        text.append(value)
        length += len(value)
        pos = m.end()
    text.append(template[pos:])
    return {"text": "".join(text), "spans": spans}


def build(seed: int = SEED, size: int = SIZE) -> str:
    """The corpus as JSONL text: every template at least once, the rest drawn at random."""
    rng = random.Random(seed)
    order = list(TEMPLATES) * (size // len(TEMPLATES))
    order += rng.sample(TEMPLATES, size - len(order))
    rng.shuffle(order)
    lines = [json.dumps(fill(t, rng), ensure_ascii=False, sort_keys=True) for t in order]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check corpus.jsonl is current")
    args = parser.parse_args()
    text = build()
    if args.check:
        current = CORPUS.read_text(encoding="utf-8") if CORPUS.exists() else ""
        if current != text:
            print(f"{CORPUS} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    CORPUS.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} examples to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
