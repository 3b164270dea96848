"""Step functions of the fraud-detection workflow: prepare the transaction's features, score it
with three models at once, and decide (approve / review / decline) with reasons.

The features, the models and their training live in ``fraud_model.py`` next to this file.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any


def _sibling(stem: str) -> ModuleType:
    """A module next to this file, imported once per process (examples are not a package)."""
    path = Path(__file__).with_name(f"{stem}.py")
    name = f"podium_example_{path.parent.name}_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fraud_model: Any = _sibling("fraud_model")

REASON_AT = 0.2
"""A model gives reasons only when its score reaches this."""


def prepare(
    transaction: Mapping[str, Any], recent: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Validate the transaction and compute each model's features from the card's history.

    The history is the customer's shipped transactions before this one, plus ``recent`` ones
    (same shape as ``transaction``) that the ledger has not seen yet.
    """
    ledger, _ = fraud_model.trained()
    txn, amount = _txn(transaction, ledger, "transaction")
    history = ledger.history(txn.customer, txn.ts)
    for i, raw in enumerate(recent or ()):
        earlier, _ = _txn(raw, ledger, f"recent[{i}]")
        if earlier.customer != txn.customer or earlier.ts >= txn.ts:
            raise ValueError(f"recent[{i}] must be an earlier transaction of {txn.customer}")
        history.append(earlier)
    history.sort(key=lambda t: t.ts)
    home = ledger.customers[txn.customer]
    f = fraud_model.features(txn, history, home, ledger.categories)
    return {
        "transaction": {
            "customer": txn.customer,
            "ts": txn.ts.isoformat(timespec="seconds"),
            "amount": str(amount),
            "merchant": txn.merchant,
            "category": txn.category,
            "channel": txn.channel,
        },
        "context": {
            "home_city": home.home_city,
            "median_amount": f"{f['_median']['v']:.2f}",
            "history": len(history),
            "category": txn.category,
        },
        "spending": f["spending"],
        "geolocation": f["geolocation"],
        "velocity": f["velocity"],
    }


def _txn(raw: Mapping[str, Any], ledger: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object, not {type(raw).__name__}")
    missing = [k for k in ("customer", "ts", "amount", "lat", "lon") if k not in raw]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    customer = str(raw["customer"])
    if customer not in ledger.customers:
        raise ValueError(f"{where}: unknown customer {customer!r} (the ledger has C0001…)")
    try:
        ts = datetime.fromisoformat(str(raw["ts"]))
    except ValueError:
        raise ValueError(f"{where}.ts must be an ISO date-time, not {raw['ts']!r}") from None
    amount = fraud_model.money(raw["amount"], f"{where}.amount")
    merchant = str(raw.get("merchant") or "")
    if merchant:
        if merchant not in ledger.merchants:
            raise ValueError(f"{where}: unknown merchant {merchant!r}")
        category = ledger.merchants[merchant]["category"]
        channel = ledger.merchants[merchant]["channel"]
    else:
        category, channel = str(raw.get("category", "")), str(raw.get("channel", ""))
        if category not in ledger.categories or channel not in ("pos", "online"):
            raise ValueError(
                f"{where}: give a merchant id, or a category ({', '.join(ledger.categories)}) "
                "and a channel (pos or online)"
            )
    try:
        lat, lon = float(raw["lat"]), float(raw["lon"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}.lat and .lon must be numbers") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{where}: ({lat}, {lon}) is not a place on Earth")
    txn = fraud_model.Txn(customer, ts, float(amount), merchant or "?", category, channel, lat, lon)
    return txn, amount


def spending(features: Mapping[str, float], context: Mapping[str, Any]) -> dict[str, Any]:
    """The spending-pattern model: amount, category and hour against the customer's habits."""
    score = _score("spending", features)
    reasons = []
    if score >= REASON_AT:
        ratio = math.exp(features["amount_vs_median"])
        if ratio >= 3:
            reasons.append(
                f"amount is {ratio:.0f}x this customer's median of ${context['median_amount']}"
            )
        if features["category_share"] == 0 and context["history"]:
            reasons.append(f"first purchase in category {context['category']}")
        if features["hour_share"] < 0.05:
            hour = int(features["hour"])
            reasons.append(f"at {hour:02d}h, outside this customer's usual hours")
        if not features["merchant_seen"] and not reasons:
            reasons.append("a merchant this customer has never used")
    return {"score": score, "reasons": reasons}


def geolocation(features: Mapping[str, float], context: Mapping[str, Any]) -> dict[str, Any]:
    """The geolocation-anomaly model: distance from home and recent places, travel speed."""
    score = _score("geolocation", features)
    reasons = []
    if score >= REASON_AT:
        if features["km_home"] >= 300:
            reasons.append(f"{features['km_home']:,.0f} km from home ({context['home_city']})")
        if features["speed_kmh"] >= 900:
            reasons.append(
                f"the card would have travelled {features['km_prev']:,.0f} km in "
                f"{features['hours_prev']:.1f} h since its previous use "
                f"({features['speed_kmh']:,.0f} km/h)"
            )
        if features["km_seen"] >= 300 and features["km_home"] >= 300:
            reasons.append("nowhere near any place the card was used in the last 30 days")
    return {"score": score, "reasons": reasons}


def velocity(features: Mapping[str, float], context: Mapping[str, Any]) -> dict[str, Any]:
    """The velocity model: bursts of payments against the customer's usual rate."""
    score = _score("velocity", features)
    reasons = []
    if score >= REASON_AT:
        if features["n_1h"] >= 2:
            reasons.append(
                f"{features['n_1h']:.0f} payments in the hour before "
                f"(usually {features['daily_rate']:.1f} a day)"
            )
        if features["small_1h"] >= 2:
            reasons.append(
                f"{features['small_1h']:.0f} payments under ${fraud_model.SMALL:.0f} in the last "
                "hour: the pattern of card testing"
            )
        if features["merchants_1h"] >= 3:
            reasons.append(f"{features['merchants_1h']:.0f} different merchants within an hour")
    return {"score": score, "reasons": reasons}


def decide(
    transaction: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Combine the three scores (noisy-OR) into a risk score and a decision, with reasons."""
    scores = {name: float(models[name]["score"]) for name in fraud_model.MODELS}
    risk = fraud_model.combine(scores)
    if risk >= fraud_model.DECLINE_AT:
        decision = "decline"
    elif risk >= fraud_model.REVIEW_AT:
        decision = "review"
    else:
        decision = "approve"
    ranked = sorted(scores, key=lambda n: -scores[n])
    reasons = [f"{n}: {r}" for n in ranked for r in models[n]["reasons"]]
    if decision == "approve":
        reasons = ["consistent with this customer's spending, places and pace"]
    elif not reasons:
        reasons = [f"{ranked[0]} model score {scores[ranked[0]]:.2f}"]
    return {
        "decision": decision,
        "risk_score": round(risk, 4),
        "scores": {n: round(s, 4) for n, s in scores.items()},
        "reasons": reasons,
        "thresholds": {"review": fraud_model.REVIEW_AT, "decline": fraud_model.DECLINE_AT},
        "transaction": dict(transaction),
    }


def _score(name: str, features: Mapping[str, float]) -> float:
    _, models = fraud_model.trained()
    return round(float(models.score(name, features)), 4)
