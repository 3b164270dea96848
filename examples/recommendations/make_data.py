"""Generate the shop's customers, order history and stock for the recommendations example.

Deterministic (the standard library's ``random`` with a fixed seed)::

    python examples/recommendations/make_data.py

``data/catalogue.json`` (48 products) is written by hand; this script writes, from it:

- ``data/users.csv``: 40 customers, each with one or two interests (coffee, hiking, running,
  home office, cooking, audio) and the warehouse region that serves them;
- ``data/orders.csv``: their orders over the first quarter of 2026, mostly in their interests,
  with people who share an interest buying the same things together; in the last two weeks a
  spring surge lifts a few products (what *trending* should find);
- ``data/inventory.csv``: stock per warehouse (``east``, ``west``), with some products sold out
  and some nearly so.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date, timedelta
from pathlib import Path

SEED = 6
DATA = Path(__file__).with_name("data")
START = date(2026, 1, 1)
DAYS = 90
INTERESTS = {
    "coffee": ["K-101", "K-102", "K-103", "K-104", "K-105", "K-106", "K-107", "K-112"],
    "hiking": ["O-201", "O-202", "O-203", "O-204", "O-205", "O-206", "O-207", "O-208", "O-209"],
    "running": ["F-405", "F-408", "F-404", "E-305", "F-403", "O-210", "E-301"],
    "home_office": [
        "H-501",
        "H-502",
        "H-503",
        "H-504",
        "H-506",
        "E-307",
        "E-308",
        "E-309",
        "E-310",
        "H-508",
    ],
    "cooking": ["K-108", "K-109", "K-110", "K-111", "K-112", "K-103"],
    "audio": ["E-301", "E-302", "E-303", "E-304", "E-306", "H-508"],
}
SURGE = ["O-210", "E-306", "F-404", "O-205"]
"""What everyone buys in the last two weeks (spring outings)."""
SOLD_OUT = {("K-102", "east"), ("O-210", "west"), ("E-302", "east"), ("E-302", "west"),
            ("O-201", "east")}  # fmt: skip
LOW = {("K-101", "east"), ("O-209", "east"), ("F-405", "west")}


def write(data: Path = DATA) -> str:
    """Write users, orders and inventory into ``data``; return a one-line summary."""
    rng = random.Random(SEED)
    skus = [p["sku"] for p in json.loads((data / "catalogue.json").read_text())]
    users = []
    for i in range(1, 41):
        picked = rng.sample(sorted(INTERESTS), rng.choice([1, 1, 2]))
        users.append((f"U{i:03d}", "+".join(picked), rng.choice(["east", "west"])))
    orders = []
    for user, interests, _ in users:
        liked = [s for name in interests.split("+") for s in INTERESTS[name]]
        for _ in range(rng.randint(3, 7)):
            day = START + timedelta(days=rng.randrange(DAYS - 14))
            sku = rng.choice(liked) if rng.random() < 0.85 else rng.choice(skus)
            orders.append((user, sku, day, 1))
        if rng.random() < 0.6:  # the spring surge
            day = START + timedelta(days=rng.randrange(DAYS - 14, DAYS))
            orders.append((user, rng.choice(SURGE), day, rng.choice([1, 1, 2])))
    orders.sort(key=lambda o: (o[2], o[0], o[1]))
    with (data / "users.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "interests", "region"])
        w.writerows(users)
    with (data / "orders.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["order", "user", "sku", "date", "quantity"])
        for n, (user, sku, day, qty) in enumerate(orders, 1):
            w.writerow([f"O{n:04d}", user, sku, day.isoformat(), qty])
    with (data / "inventory.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["sku", "warehouse", "on_hand", "reserved"])
        for sku in skus:
            for wh in ("east", "west"):
                if (sku, wh) in SOLD_OUT:
                    on_hand, reserved = rng.randint(0, 2), 0
                    reserved = on_hand
                elif (sku, wh) in LOW:
                    on_hand, reserved = rng.randint(3, 5), 1
                else:
                    on_hand, reserved = rng.randint(8, 60), rng.randint(0, 4)
                w.writerow([sku, wh, on_hand, reserved])
    return f"{len(users)} users, {len(orders)} orders, {len(skus)} products in 2 warehouses"


if __name__ == "__main__":
    print(write())
