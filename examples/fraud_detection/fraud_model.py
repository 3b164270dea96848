"""The fraud models: features from a customer's card history, three scikit-learn classifiers
trained on the shipped ledger, and their combination into one risk score.

Each model looks at one side of a transaction:

- **spending pattern** — amount against the customer's usual amounts, category and merchant
  familiarity, time of day against the customer's usual hours;
- **geolocation anomaly** — distance from home and from every place the card was used lately,
  the speed the card would have needed to get here from the previous transaction, and whether
  a trip was booked (a flight bought) in the last three weeks;
- **velocity** — how many payments, how many tiny ones and how many merchants in the last
  10 minutes / hour / day, against the customer's usual rate.

The models are trained at first use (about three seconds on two cores), deterministically
(fixed seeds, one thread, pinned scikit-learn), and cached for the life of the process. No
pickle ships: unpickling runs code, and a model that retrains from the committed CSV in seconds
cannot drift from it.
The combined score is a noisy-OR of the three probabilities: any one model that is sure is
enough, and weak signals from several add up.
"""

from __future__ import annotations

import bisect
import csv
import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")
SPLIT = datetime(2026, 2, 12)
"""Transactions before this instant train the models; the rest are the held-out test set."""
REVIEW_AT = 0.35
"""A combined risk score at or above this sends the transaction to an analyst."""
DECLINE_AT = 0.8
"""A combined risk score at or above this declines the transaction."""
SMALL = 5.0
"""Payments under this many dollars count as card-testing probes."""


@dataclass(frozen=True, slots=True)
class Txn:
    """One card transaction as the models see it."""

    customer: str
    ts: datetime
    amount: float
    merchant: str
    category: str
    channel: str
    lat: float
    lon: float
    fraud: int = 0
    pattern: str = ""


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    home_city: str
    lat: float
    lon: float


class Ledger:
    """The shipped customers, merchants and transactions, indexed by customer."""

    def __init__(self, data: Path = DATA) -> None:
        with (data / "customers.csv").open(newline="") as f:
            self.customers = {
                r["customer"]: Customer(
                    r["customer"], r["home_city"], float(r["lat"]), float(r["lon"])
                )
                for r in csv.DictReader(f)
            }
        with (data / "merchants.csv").open(newline="") as f:
            self.merchants = {r["merchant"]: r for r in csv.DictReader(f)}
        self.transactions: list[Txn] = []
        with (data / "transactions.csv").open(newline="") as f:
            for r in csv.DictReader(f):
                m = self.merchants[r["merchant"]]
                self.transactions.append(
                    Txn(
                        r["customer"],
                        datetime.fromisoformat(r["ts"]),
                        float(r["amount"]),
                        r["merchant"],
                        m["category"],
                        m["channel"],
                        float(r["lat"]),
                        float(r["lon"]),
                        int(r["fraud"]),
                        r["pattern"],
                    )
                )
        self.by_customer: dict[str, list[Txn]] = {}
        for t in self.transactions:  # the file is in time order
            self.by_customer.setdefault(t.customer, []).append(t)
        self.categories = sorted({m["category"] for m in self.merchants.values()})

    def history(self, customer: str, before: datetime) -> list[Txn]:
        """The customer's shipped transactions strictly before ``before``, oldest first."""
        txns = self.by_customer.get(customer, [])
        end = bisect.bisect_left([t.ts for t in txns], before)
        return txns[:end]


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(a)))


SPENDING = ("log_amount", "amount_vs_median", "amount_vs_max", "category_share",
            "merchant_seen", "hour", "hour_share", "online", "category")  # fmt: skip
GEO = ("km_home", "km_prev", "speed_kmh", "hours_prev", "km_seen", "travel_booked", "online")
VELOCITY = ("n_10m", "n_1h", "n_24h", "secs_prev", "small_1h", "is_small", "merchants_1h",
            "sum_1h", "daily_rate", "n_24h_vs_rate")  # fmt: skip
MODELS = {"spending": SPENDING, "geolocation": GEO, "velocity": VELOCITY}


def features(
    t: Txn, history: Sequence[Txn], home: Customer, categories: Sequence[str]
) -> dict[str, dict[str, float]]:
    """The three models' raw features (``history``: the customer's earlier transactions)."""
    amounts = sorted(h.amount for h in history)
    median = amounts[len(amounts) // 2] if amounts else t.amount
    hour = t.ts.hour + t.ts.minute / 60
    n = len(history) or 1
    same_hours = sum(1 for h in history if _hour_gap(h.ts.hour + h.ts.minute / 60, hour) <= 2)
    spending = {
        "log_amount": math.log1p(t.amount),
        "amount_vs_median": math.log((t.amount + 1) / (median + 1)),
        "amount_vs_max": math.log((t.amount + 1) / ((amounts[-1] if amounts else t.amount) + 1)),
        "category_share": sum(1 for h in history if h.category == t.category) / n,
        "merchant_seen": float(any(h.merchant == t.merchant for h in history)),
        "hour": hour,
        "hour_share": same_hours / n if history else 1.0,
        "online": float(t.channel == "online"),
        "category": float(categories.index(t.category)) if t.category in categories else -1.0,
    }
    prev = history[-1] if history else None
    km_prev = km(prev.lat, prev.lon, t.lat, t.lon) if prev else 0.0
    hours_prev = (t.ts - prev.ts).total_seconds() / 3600 if prev else 24.0 * 30
    places = {(h.lat, h.lon) for h in _since(history, t.ts - timedelta(days=30))}
    geo = {
        "km_home": km(home.lat, home.lon, t.lat, t.lon),
        "km_prev": km_prev,
        "speed_kmh": km_prev / max(hours_prev, 1 / 60),
        "hours_prev": hours_prev,
        "km_seen": min((km(lat, lon, t.lat, t.lon) for lat, lon in places), default=0.0),
        "travel_booked": float(
            any(h.category == "travel" for h in _since(history, t.ts - timedelta(days=21)))
        ),
        "online": float(t.channel == "online"),
    }
    hour_ago = _since(history, t.ts - timedelta(hours=1))
    days = max(1.0, (t.ts - history[0].ts).total_seconds() / 86400) if history else 1.0
    n_24h = len(_since(history, t.ts - timedelta(hours=24)))
    rate = len(history) / days if history else 1.0
    velocity = {
        "n_10m": float(len(_since(hour_ago, t.ts - timedelta(minutes=10)))),
        "n_1h": float(len(hour_ago)),
        "n_24h": float(n_24h),
        "secs_prev": hours_prev * 3600,
        "small_1h": float(sum(1 for h in hour_ago if h.amount < SMALL)),
        "is_small": float(t.amount < SMALL),
        "merchants_1h": float(len({h.merchant for h in hour_ago})),
        "sum_1h": sum(h.amount for h in hour_ago),
        "daily_rate": rate,
        "n_24h_vs_rate": n_24h / max(rate, 0.1),
    }
    return {
        "spending": spending,
        "geolocation": geo,
        "velocity": velocity,
        "_median": {"v": median},
    }


def _since(history: Sequence[Txn], start: datetime) -> Sequence[Txn]:
    """The transactions at or after ``start`` of a history in time order."""
    i = len(history)
    while i and history[i - 1].ts >= start:
        i -= 1
    return history[i:]


def _hour_gap(a: float, b: float) -> float:
    d = abs(a - b) % 24
    return min(d, 24 - d)


def _vector(name: str, f: Mapping[str, float]) -> list[float]:
    out = []
    for key in MODELS[name]:
        v = f[key]
        if key in (
            "km_home",
            "km_prev",
            "speed_kmh",
            "km_seen",
            "hours_prev",
            "secs_prev",
            "sum_1h",
        ):
            v = math.log1p(v)
        out.append(v)
    return out


def ledger_features(ledger: Ledger) -> tuple[list[Txn], list[dict[str, dict[str, float]]]]:
    """Every shipped transaction with its features, each from the history before it."""
    rows, feats = [], []
    for customer, txns in ledger.by_customer.items():
        home = ledger.customers[customer]
        for i, t in enumerate(txns):
            rows.append(t)
            feats.append(features(t, txns[:i], home, ledger.categories))
    return rows, feats


@dataclass(frozen=True)
class Models:
    """The three fitted classifiers."""

    fitted: Mapping[str, Any]

    def scores(self, f: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Fraud probability per model for one transaction's features."""
        return {name: self.score(name, f[name]) for name in MODELS}

    def score(self, name: str, f: Mapping[str, float]) -> float:
        return self.batch(name, [f])[0]

    def batch(self, name: str, feats: Sequence[Mapping[str, float]]) -> list[float]:
        """Fraud probabilities of one model for many transactions at once."""
        import numpy as np
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

        x = np.array([_vector(name, f) for f in feats])
        with threadpool_limits(1):
            return [float(p) for p in self.fitted[name].predict_proba(x)[:, 1]]


def combine(scores: Mapping[str, float]) -> float:
    """Noisy-OR: the chance that at least one model is right that this is fraud."""
    clean = 1.0
    for p in scores.values():
        clean *= 1.0 - p
    return 1.0 - clean


def fit(rows: Sequence[Txn], feats: Sequence[Mapping[str, Mapping[str, float]]]) -> Models:
    """Train the three classifiers on ``rows``."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]  # no stubs
    from threadpoolctl import threadpool_limits

    y = np.array([t.fraud for t in rows])
    fitted = {}
    for name, keys in MODELS.items():
        x = np.array([_vector(name, f[name]) for f in feats])
        cat = [i for i, k in enumerate(keys) if k == "category"]
        model = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.08,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            categorical_features=cat or None,
            random_state=0,
        )
        with threadpool_limits(1):  # small data: threads only contend with the event loop
            fitted[name] = model.fit(x, y)
    return Models(fitted)


def split(
    rows: Sequence[Txn], feats: Sequence[Any]
) -> tuple[list[Txn], list[Any], list[Txn], list[Any]]:
    train = [i for i, t in enumerate(rows) if t.ts < SPLIT]
    test = [i for i, t in enumerate(rows) if t.ts >= SPLIT]
    return ([rows[i] for i in train], [feats[i] for i in train],
            [rows[i] for i in test], [feats[i] for i in test])  # fmt: skip


@functools.cache
def prepared() -> tuple[Ledger, list[Txn], list[dict[str, dict[str, float]]]]:
    """The shipped ledger and every transaction's features, once per process."""
    ledger = Ledger()
    rows, feats = ledger_features(ledger)
    return ledger, rows, feats


@functools.cache
def trained() -> tuple[Ledger, Models]:
    """The ledger and the models trained on its training split, once per process."""
    ledger, rows, feats = prepared()
    train_rows, train_feats, _, _ = split(rows, feats)
    return ledger, fit(train_rows, train_feats)


@dataclass(frozen=True)
class Metrics:
    name: str
    precision: float
    recall: float
    flagged: int
    frauds: int


def evaluate() -> tuple[list[Metrics], dict[str, dict[str, float]], int]:
    """Precision and recall on the held-out split: each model at 0.5, the combined score at
    :data:`REVIEW_AT` and at :data:`DECLINE_AT`. Also the combined recall per fraud pattern."""
    _, models = trained()
    _, rows, feats = prepared()
    _, _, test_rows, test_feats = split(rows, feats)
    columns = {name: models.batch(name, [f[name] for f in test_feats]) for name in MODELS}
    per_model = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    truth = [t.fraud for t in test_rows]
    out = []
    for name in MODELS:
        out.append(_metrics(name, [s[name] >= 0.5 for s in per_model], truth))
    combined = [combine(s) for s in per_model]
    out.append(_metrics(f"combined >= {REVIEW_AT}", [c >= REVIEW_AT for c in combined], truth))
    out.append(_metrics(f"combined >= {DECLINE_AT}", [c >= DECLINE_AT for c in combined], truth))
    by_pattern: dict[str, dict[str, float]] = {}
    totals = Counter(t.pattern for t in test_rows if t.fraud)
    for pattern, total in sorted(totals.items()):
        caught = sum(1 for t, c in zip(test_rows, combined, strict=True)
                     if t.pattern == pattern and c >= REVIEW_AT)  # fmt: skip
        by_pattern[pattern] = {"frauds": total, "recall": caught / total}
    return out, by_pattern, len(test_rows)


def _metrics(name: str, flagged: Iterable[bool], truth: Sequence[int]) -> Metrics:
    tp = fp = fn = 0
    for f, y in zip(flagged, truth, strict=True):
        tp += f and y == 1
        fp += f and y == 0
        fn += (not f) and y == 1
    return Metrics(name, tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0,
                   tp + fp, tp + fn)  # fmt: skip


def money(value: Any, what: str = "amount") -> Decimal:
    """A positive amount of money from a string or number, to the cent."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(
            f"{what} must be a number of dollars like '42.50', not {value!r}"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    return amount.quantize(Decimal("0.01"))
