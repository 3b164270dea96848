"""Generate the card-transaction ledger the fraud models train and are evaluated on.

Deterministic (the standard library's ``random`` with a fixed seed), so running it again
rewrites identical files::

    python examples/fraud_detection/make_data.py

Writes ``data/customers.csv`` (home city and coordinates, as a card issuer knows them),
``data/merchants.csv`` (category, channel, city) and ``data/transactions.csv``: two months of
card transactions of 160 customers. Legitimate life is not uniform: customers have favourite
categories, spending levels and waking hours, tap transit cards several times an hour, travel to
other cities (and abroad) for a few days, and make the odd big purchase. About 3% of the rows are
fraud, in three patterns seen in the field:

- ``card_testing``: a stolen card number tried with a burst of tiny online payments seconds
  apart (digital goods, gift cards), often followed by one large purchase;
- ``geo``: a cloned card used in person in a far-away city, often hours after the real card
  was used at home (impossible travel), on resaleable goods, with no trip booked;
- ``amount``: an account takeover (or a stolen card used in town) buying far above the
  customer's usual amounts, mostly at night, in categories the customer never buys.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20260101
START = datetime(2026, 1, 1)
DAYS = 59
CUSTOMERS = 160
DATA = Path(__file__).with_name("data")

HOME_CITIES = [  # (name, country, lat, lon)
    ("New York", "US", 40.71, -74.01),
    ("Boston", "US", 42.36, -71.06),
    ("Philadelphia", "US", 39.95, -75.17),
    ("Chicago", "US", 41.88, -87.63),
    ("Denver", "US", 39.74, -104.99),
    ("Seattle", "US", 47.61, -122.33),
    ("San Francisco", "US", 37.77, -122.42),
    ("Los Angeles", "US", 34.05, -118.24),
    ("Austin", "US", 30.27, -97.74),
    ("Atlanta", "US", 33.75, -84.39),
    ("Miami", "US", 25.76, -80.19),
    ("Minneapolis", "US", 44.98, -93.27),
]
TRIP_ABROAD = [("London", "GB", 51.51, -0.13), ("Paris", "FR", 48.86, 2.35),
               ("Mexico City", "MX", 19.43, -99.13), ("Tokyo", "JP", 35.68, 139.69),
               ("Toronto", "CA", 43.65, -79.38)]  # fmt: skip
FRAUD_CITIES = [("Lagos", "NG", 6.52, 3.38), ("Bucharest", "RO", 44.43, 26.10),
                ("Jakarta", "ID", -6.21, 106.85), ("Sao Paulo", "BR", -23.55, -46.63),
                ("Manila", "PH", 14.60, 120.98), ("Kyiv", "UA", 50.45, 30.52),
                ("Shenzhen", "CN", 22.54, 114.06),
                ("Ho Chi Minh City", "VN", 10.82, 106.63)]  # fmt: skip

# category: (median amount in USD, log-normal sigma, sold in person, sold online)
CATEGORIES = {
    "grocery": (55, 0.55, True, True),
    "restaurant": (32, 0.5, True, False),
    "coffee": (6, 0.35, True, False),
    "fuel": (45, 0.3, True, False),
    "transit": (2.9, 0.1, True, False),
    "pharmacy": (24, 0.6, True, True),
    "clothing": (70, 0.6, True, True),
    "entertainment": (38, 0.5, True, True),
    "utilities": (95, 0.35, False, True),
    "home_improvement": (110, 0.7, True, True),
    "electronics": (240, 0.8, True, True),
    "travel": (380, 0.6, False, True),
    "hotel": (190, 0.4, True, False),
    "jewelry": (450, 0.7, True, True),
    "gift_cards": (75, 0.6, True, True),
    "digital_goods": (11, 0.7, False, True),
}
EVERYDAY = ["grocery", "restaurant", "coffee", "fuel", "transit", "pharmacy", "clothing",
            "entertainment", "utilities", "home_improvement", "digital_goods"]  # fmt: skip
RESALEABLE = ["electronics", "jewelry", "gift_cards"]


@dataclass
class Merchant:
    id: str
    name: str
    category: str
    channel: str  # pos | online
    city: str
    lat: float
    lon: float


@dataclass
class Customer:
    id: str
    city: tuple[str, str, float, float]
    lat: float
    lon: float
    scale: float  # spending level multiplier
    rate: float  # transactions per day
    favourites: dict[str, float]
    wake: int
    sleep: int
    regulars: dict[str, list[Merchant]] = field(default_factory=dict)


@dataclass
class Txn:
    customer: str
    ts: datetime
    amount: float
    merchant: Merchant
    lat: float
    lon: float
    pattern: str = ""


def _merchants(rng: random.Random) -> list[Merchant]:
    out: list[Merchant] = []
    words = ["North", "Blue", "Corner", "Union", "Metro", "Harbor", "Summit", "Maple", "Sun",
             "Cedar", "Atlas", "Lake", "Pioneer", "Golden", "River", "Urban"]  # fmt: skip
    for cat, (_, _, pos, online) in CATEGORIES.items():
        if pos:
            for city in HOME_CITIES + TRIP_ABROAD + FRAUD_CITIES:
                for _ in range(2 if city in HOME_CITIES else 1):
                    name = f"{rng.choice(words)} {cat.replace('_', ' ').title()}"
                    lat = city[2] + rng.uniform(-0.08, 0.08)
                    lon = city[3] + rng.uniform(-0.08, 0.08)
                    out.append(Merchant("", name, cat, "pos", city[0], lat, lon))
        if online:
            for _ in range(4):
                name = f"{rng.choice(words)}{cat.split('_')[0].title()}.com"
                out.append(Merchant("", name, cat, "online", "", 0.0, 0.0))
    for i, m in enumerate(out, 1):
        m.id = f"M{i:04d}"
    return out


def _customers(rng: random.Random) -> list[Customer]:
    out = []
    for i in range(1, CUSTOMERS + 1):
        city = rng.choice(HOME_CITIES)
        k = rng.randint(4, 7)
        cats = rng.sample(EVERYDAY, k)
        if rng.random() < 0.25:
            cats.append("electronics")
        favourites = {c: rng.uniform(0.5, 3.0) for c in cats}
        wake = rng.choice([6, 7, 7, 8, 9, 10])
        out.append(
            Customer(
                id=f"C{i:04d}",
                city=city,
                lat=city[2] + rng.uniform(-0.06, 0.06),
                lon=city[3] + rng.uniform(-0.06, 0.06),
                scale=math.exp(rng.gauss(0, 0.45)),
                rate=rng.uniform(0.4, 1.5),
                favourites=favourites,
                wake=wake,
                sleep=min(23, wake + rng.randint(13, 16)),
            )
        )
    return out


def _amount(rng: random.Random, category: str, scale: float) -> float:
    median, sigma, _, _ = CATEGORIES[category]
    if category == "transit":
        return 2.90
    return max(0.5, round(median * scale * math.exp(rng.gauss(0, sigma)), 2))


def _pick_merchant(
    rng: random.Random, by: dict[tuple[str, str, str], list[Merchant]], cat: str, city: str
) -> Merchant:
    pos = by.get((cat, "pos", city))
    online = by.get((cat, "online", ""))
    if pos and (not online or rng.random() < 0.8):
        return rng.choice(pos)
    assert online, cat
    return rng.choice(online)


def _where(rng: random.Random, m: Merchant, lat: float, lon: float) -> tuple[float, float]:
    """In person: the merchant's place. Online: the buyer's IP geolocation (city level)."""
    if m.channel == "pos":
        return m.lat, m.lon
    return lat + rng.uniform(-0.05, 0.05), lon + rng.uniform(-0.05, 0.05)


def _day_time(rng: random.Random, c: Customer, day: datetime) -> datetime:
    hour = rng.uniform(c.wake, c.sleep + 0.99)
    return day + timedelta(hours=hour, seconds=rng.randint(0, 59))


def _legit(
    rng: random.Random, c: Customer, by: dict[tuple[str, str, str], list[Merchant]]
) -> list[Txn]:
    out: list[Txn] = []
    trip: tuple[int, int, tuple[str, str, float, float]] | None = None
    if rng.random() < 0.25:
        first = rng.randint(3, DAYS - 6)
        dest = rng.choice(TRIP_ABROAD if rng.random() < 0.3 else HOME_CITIES)
        if dest != c.city:
            trip = (first, first + rng.randint(2, 5), dest)
    cats = list(c.favourites)
    weights = list(c.favourites.values())
    for d in range(DAYS):
        day = START + timedelta(days=d)
        city, lat, lon = c.city[0], c.lat, c.lon
        away = trip is not None and trip[0] <= d <= trip[1]
        if trip is not None and away:
            city, lat, lon = trip[2][0], trip[2][2], trip[2][3]
        if trip is not None and d == trip[0] - 2:  # the flight, bought online at home
            m = rng.choice(by[("travel", "online", "")])
            ts = _day_time(rng, c, day)
            out.append(Txn(c.id, ts, _amount(rng, "travel", c.scale), m, *_where(rng, m, lat, lon)))
        n = _poisson(rng, c.rate * (1.3 if away else 1.0))
        for _ in range(n):
            if away:
                cat = rng.choice(["restaurant", "restaurant", "coffee", "hotel", "entertainment",
                                  "transit", "clothing"])  # fmt: skip
            elif rng.random() < 0.08:
                cat = rng.choice(list(CATEGORIES))
            else:
                cat = rng.choices(cats, weights)[0]
            m = _pick_merchant(rng, by, cat, city)
            ts = _day_time(rng, c, day)
            amount = _amount(rng, cat, c.scale)
            if rng.random() < 0.015:  # the odd big purchase
                amount = round(amount * rng.uniform(3, 8), 2)
            out.append(Txn(c.id, ts, amount, m, *_where(rng, m, lat, lon)))
            if cat == "transit" and rng.random() < 0.5:  # a day of taps: a legitimate burst
                for k in range(rng.randint(1, 4)):
                    gap = timedelta(minutes=rng.randint(6, 50) * (k + 1))
                    out.append(Txn(c.id, ts + gap, 2.90, m, *_where(rng, m, lat, lon)))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _fraud(
    rng: random.Random,
    c: Customer,
    history: list[Txn],
    by: dict[tuple[str, str, str], list[Merchant]],
) -> list[Txn]:
    pattern = rng.choices(["card_testing", "geo", "amount"], [0.4, 0.3, 0.3])[0]
    home = [t for t in history if t.merchant.city in ("", c.city[0])]
    anchor = rng.choice(home[len(home) // 5 :] or history)
    out: list[Txn] = []
    if pattern == "card_testing":
        city = rng.choice(FRAUD_CITIES + HOME_CITIES[:3])
        ts = anchor.ts + timedelta(hours=rng.uniform(1, 30))
        for _ in range(rng.randint(3, 7)):
            m = rng.choice(by[(rng.choice(["digital_goods", "gift_cards"]), "online", "")])
            amount = rng.choice([1.00, 0.99, 0.50, 1.50, 2.00, round(rng.uniform(0.5, 4.99), 2)])
            out.append(Txn(c.id, ts, amount, m, *_where(rng, m, city[2], city[3]), pattern))
            ts += timedelta(seconds=rng.randint(15, 200))
        if rng.random() < 0.6:
            ts += timedelta(minutes=rng.randint(2, 40))
            m = rng.choice(by[(rng.choice(["electronics", "gift_cards"]), "online", "")])
            amount = round(rng.uniform(200, 1200), 2)
            out.append(Txn(c.id, ts, amount, m, *_where(rng, m, city[2], city[3]), pattern))
    elif pattern == "geo":
        city = rng.choice(FRAUD_CITIES)
        soon = rng.random() < 0.6  # within hours of the real card's use, or days later
        ts = anchor.ts + timedelta(hours=rng.uniform(0.5, 6) if soon else rng.uniform(12, 60))
        for _ in range(rng.randint(1, 3)):
            cat = rng.choice([*RESALEABLE, "clothing"])
            m = rng.choice(by[(cat, "pos", city[0])])
            amount = round(rng.uniform(150, 1500) * (0.5 + c.scale / 2), 2)
            out.append(Txn(c.id, ts, amount, m, m.lat, m.lon, pattern))
            ts += timedelta(minutes=rng.randint(10, 90))
    else:
        night = rng.random() < 0.65  # most takeovers shop while the owner sleeps
        hours = rng.uniform(0.5, 5) if night else rng.uniform(10, 20)
        ts = anchor.ts.replace(hour=0, minute=0) + timedelta(days=1, hours=hours)
        for _ in range(rng.randint(1, 2)):
            cat = rng.choice([x for x in RESALEABLE if x not in c.favourites])
            in_person = not night and rng.random() < 0.5  # a stolen card, used in town
            m = rng.choice(by[(cat, "pos", c.city[0])] if in_person else by[(cat, "online", "")])
            usual = sorted(t.amount for t in history)[len(history) // 2]
            amount = round(max(usual * rng.uniform(8, 25), rng.uniform(300, 900)), 2)
            lat = c.lat + rng.uniform(-3, 3)
            lon = c.lon + rng.uniform(-3, 3)
            out.append(Txn(c.id, ts, amount, m, *_where(rng, m, lat, lon), pattern))
            ts += timedelta(minutes=rng.randint(5, 60))
    return out


def generate() -> tuple[list[Customer], list[Merchant], list[Txn]]:
    rng = random.Random(SEED)
    merchants = _merchants(rng)
    by: dict[tuple[str, str, str], list[Merchant]] = {}
    for m in merchants:
        by.setdefault((m.category, m.channel, m.city), []).append(m)
    customers = _customers(rng)
    txns: list[Txn] = []
    for c in customers:
        history = _legit(rng, c, by)
        incidents = 2 if rng.random() < 0.1 else (1 if rng.random() < 0.45 else 0)
        for _ in range(incidents):
            history += _fraud(rng, c, sorted(history, key=lambda t: t.ts), by)
        txns += history
    end = START + timedelta(days=DAYS)
    txns = sorted((t for t in txns if t.ts < end), key=lambda t: (t.ts, t.customer))
    return customers, merchants, txns


def write(data: Path = DATA) -> str:
    """Write the three CSV files into ``data``; return a one-line summary."""
    customers, merchants, txns = generate()
    data.mkdir(exist_ok=True)
    with (data / "customers.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["customer", "home_city", "country", "lat", "lon"])
        for c in customers:
            w.writerow([c.id, c.city[0], c.city[1], f"{c.lat:.3f}", f"{c.lon:.3f}"])
    with (data / "merchants.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["merchant", "name", "category", "channel", "city"])
        for m in merchants:
            w.writerow([m.id, m.name, m.category, m.channel, m.city])
    with (data / "transactions.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "customer", "ts", "amount", "merchant", "lat", "lon", "fraud", "pattern"])
        for i, t in enumerate(txns, 1):
            w.writerow([f"T{i:05d}", t.customer, t.ts.isoformat(timespec="seconds"),
                        f"{t.amount:.2f}", t.merchant.id, f"{t.lat:.2f}", f"{t.lon:.2f}",
                        int(bool(t.pattern)), t.pattern])  # fmt: skip
    fraud = sum(1 for t in txns if t.pattern)
    return (f"{len(customers)} customers, {len(merchants)} merchants, {len(txns)} transactions, "
            f"{fraud} fraudulent ({fraud / len(txns):.1%})")  # fmt: skip


def main() -> None:
    print(write())


if __name__ == "__main__":
    main()
