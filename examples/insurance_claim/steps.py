"""Step functions of the insurance-claim saga, and their compensations.

verify documents → fraud check → damage assessment → (human review above a threshold) →
payout. Each step changes the claims system (``claims_system.py``, a SQLite file) and has a
compensation that undoes it. A failure after verification keeps the verified documents and
flags the claim for a person (the saga's degrade path).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import ModuleType
from typing import Any

from podium import StepContext

HERE = Path(__file__).parent
CLAIMS = HERE / "data" / "claims"
REQUIRED = ("incident_report", "repair_estimate", "driving_licence")
"""The documents a motor claim needs."""
FLAG_AT = Decimal("0.6")
"""A fraud score at or above this stops the claim for a person to look at."""
CENT = Decimal("0.01")


def _sibling(stem: str) -> ModuleType:
    """A module next to this file, imported once per process (examples are not a package)."""
    name = f"podium_example_{HERE.name}_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{stem}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


claims_system: Any = _sibling("claims_system")


class ClaimRejected(Exception):
    """A business rule stopped the claim (not worth retrying: a person must look)."""


def _system(db: str) -> Any:
    return claims_system.ClaimsSystem(db)


def _now(ctx: StepContext) -> str:
    return str(claims_system.iso(ctx.clock.now()))


def _money(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ClaimRejected(f"{what} is not an amount of money: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ClaimRejected(f"{what} must be a positive amount, not {value!r}")
    return amount.quantize(CENT)


def _policies() -> dict[str, dict[str, Any]]:
    return {p["policy"]: p for p in json.loads((HERE / "data" / "policies.json").read_text())}


# -- verify documents ------------------------------------------------------------------------


def verify_documents(claim_id: str, claims_dir: str, db: str, ctx: StepContext) -> dict[str, Any]:
    """Check the claim form and its documents against the policy; register the claim."""
    if not re.fullmatch(r"CLM-\d{3,8}", claim_id):
        raise ValueError(f"claim_id must look like CLM-1001, not {claim_id!r}")
    folder = Path(claims_dir or CLAIMS) / claim_id
    form_path = folder / "claim.json"
    if not form_path.is_file():
        raise ClaimRejected(f"no claim form at {form_path}")
    form = json.loads(form_path.read_text())
    policy = _policies().get(form.get("policy", ""))
    if policy is None:
        raise ClaimRejected(f"claim {claim_id}: unknown policy {form.get('policy')!r}")
    incident = date.fromisoformat(form["incident_date"])
    if not date.fromisoformat(policy["start"]) <= incident <= date.fromisoformat(policy["end"]):
        raise ClaimRejected(f"claim {claim_id}: {incident} is outside the policy's cover")
    missing = [k for k in REQUIRED if k not in form.get("documents", {})]
    if missing:
        raise ClaimRejected(f"claim {claim_id} lacks documents: {', '.join(missing)}")
    documents, texts = [], {}
    for kind, filename in sorted(form["documents"].items()):
        path = folder / filename
        if not path.is_file() or path.stat().st_size == 0:
            raise ClaimRejected(
                f"claim {claim_id}: document {kind} ({filename}) is missing or empty"
            )
        data = path.read_bytes()
        texts[kind] = data.decode("utf-8", errors="replace")
        documents.append({"kind": kind, "filename": filename,
                          "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    for kind in ("incident_report", "repair_estimate"):
        for needle in (policy["policy"], policy["registration"]):
            if needle not in texts[kind]:
                raise ClaimRejected(f"claim {claim_id}: the {kind} does not mention {needle}")
    if form["claimant"] not in texts["driving_licence"]:
        raise ClaimRejected(f"claim {claim_id}: the driving licence is not {form['claimant']}'s")
    claimed = _money(form["amount_claimed"], "amount_claimed")
    estimate_total = _total(texts["repair_estimate"])
    if estimate_total != claimed:
        raise ClaimRejected(
            f"claim {claim_id}: {claimed} claimed but the repair estimate totals {estimate_total}"
        )
    facts = {
        "claim_id": claim_id,
        "policy": policy["policy"],
        "claimant": form["claimant"],
        "incident_date": form["incident_date"],
        "reported_date": form["reported_date"],
        "claimed": str(claimed),
        "estimate": texts["repair_estimate"],
        "documents": documents,
    }
    _system(db).open_claim(facts, documents, _now(ctx), ctx.idempotency_key)
    return facts


def _total(estimate: str) -> Decimal:
    match = re.search(r"^TOTAL\s+([\d,]+\.\d{2})\s*$", estimate, re.MULTILINE)
    if not match:
        raise ClaimRejected("the repair estimate has no TOTAL line")
    return Decimal(match.group(1).replace(",", ""))


def release_documents(db: str, claim_id: str, ctx: StepContext) -> None:
    """Compensation: the documents are no longer held as verified evidence."""
    _system(db).release_documents(claim_id, _now(ctx), ctx.idempotency_key)


# -- fraud check -----------------------------------------------------------------------------


def fraud_check(db: str, claim: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Score the claim against red flags insurers use; stop it at :data:`FLAG_AT`."""
    policy = _policies()[claim["policy"]]
    incident = date.fromisoformat(claim["incident_date"])
    reported = date.fromisoformat(claim["reported_date"])
    claimed = Decimal(claim["claimed"])
    signals: list[tuple[Decimal, str]] = []
    age = (incident - date.fromisoformat(policy["start"])).days
    if age < 30:
        signals.append((Decimal("0.4"), f"incident {age} days after the policy started"))
    if policy["claims_last_12_months"] >= 2:
        signals.append(
            (Decimal("0.3"), f"{policy['claims_last_12_months']} claims in the last 12 months")
        )
    if (reported - incident).days > 30:
        signals.append((Decimal("0.2"), f"reported {(reported - incident).days} days late"))
    if claimed >= Decimal(policy["coverage_limit"]) * Decimal("0.9"):
        signals.append((Decimal("0.2"), "claimed amount close to the coverage limit"))
    match = re.search(r"Date:\s*(\d{4}-\d{2}-\d{2})", claim["estimate"])
    if match and date.fromisoformat(match.group(1)) < incident:
        signals.append((Decimal("0.5"), "repair estimate dated before the incident"))
    score = min(Decimal("1"), sum((s for s, _ in signals), Decimal("0")))
    reasons = [r for _, r in signals]
    status = "flagged" if score >= FLAG_AT else "cleared"
    _system(db).record_screening(
        claim["claim_id"], score, reasons, status, _now(ctx), ctx.idempotency_key
    )
    if status == "flagged":
        raise ClaimRejected(f"fraud check: score {score} ({'; '.join(reasons)})")
    return {"score": str(score), "signals": reasons, "status": status}


def void_screening(db: str, claim_id: str, ctx: StepContext) -> None:
    """Compensation: the screening no longer clears the claim."""
    _system(db).void_screening(claim_id, _now(ctx), ctx.idempotency_key)


# -- damage assessment -----------------------------------------------------------------------

_LINE = re.compile(
    r"^(?P<type>PART|LABOUR|PAINT|OTHER)\s+(?P<desc>.+?)\s+(?P<qty>\d+(?:\.\d+)?)\s+"
    r"(?P<unit>[\d,]+\.\d{2})\s+(?P<amount>[\d,]+\.\d{2})\s*$",
    re.MULTILINE,
)


def assess_damage(
    db: str, claim: Mapping[str, Any], review_threshold: str, ctx: StepContext
) -> dict[str, Any]:
    """Check the itemised repair estimate and work out the payout; reserve the money.

    The payout is the estimate's total, capped at the coverage limit, less the deductible.
    """
    threshold = _money(review_threshold, "review_threshold")
    policy = _policies()[claim["policy"]]
    estimate = claim["estimate"]
    lines = []
    for m in _LINE.finditer(estimate):
        qty, unit = Decimal(m["qty"]), Decimal(m["unit"].replace(",", ""))
        amount = Decimal(m["amount"].replace(",", ""))
        if (qty * unit).quantize(CENT) != amount:
            raise ClaimRejected(f"estimate line {m['desc']!r}: {qty} x {unit} is not {amount}")
        lines.append({"type": m["type"], "description": m["desc"], "amount": str(amount)})
    if not lines:
        raise ClaimRejected(
            "damage assessment needs an itemised estimate (parts, labour, paint lines); "
            "this one gives a lump sum only"
        )
    subtotal = sum((Decimal(line["amount"]) for line in lines), Decimal("0"))
    stated = re.search(r"^SUBTOTAL\s+([\d,]+\.\d{2})\s*$", estimate, re.MULTILINE)
    if stated and Decimal(stated.group(1).replace(",", "")) != subtotal:
        raise ClaimRejected(
            f"estimate lines add up to {subtotal}, not its subtotal {stated.group(1)}"
        )
    total = _total(estimate)
    covered = min(total, Decimal(policy["coverage_limit"]))
    payout = max(Decimal("0"), covered - Decimal(policy["deductible"])).quantize(CENT)
    _system(db).open_reserve(claim["claim_id"], payout, _now(ctx), ctx.idempotency_key)
    return {
        "lines": lines,
        "subtotal": str(subtotal),
        "total": str(total),
        "deductible": policy["deductible"],
        "payout": str(payout),
        "needs_review": payout > threshold,
        "review_threshold": str(threshold),
    }


def release_reserve(db: str, claim_id: str, ctx: StepContext) -> None:
    """Compensation: the money set aside goes back."""
    _system(db).release_reserve(claim_id, _now(ctx), ctx.idempotency_key)


# -- payout ----------------------------------------------------------------------------------


def pay(
    db: str,
    claim: Mapping[str, Any],
    amount: str,
    review: Mapping[str, Any] | None,
    ctx: StepContext,
) -> dict[str, Any]:
    """Pay the claimant, once (the payment is keyed by the step's idempotency key)."""
    payout = _money(amount, "payout")
    approved_by = (
        f"approved by {review.get('by') or 'a reviewer'}" if review else "straight through"
    )
    reference = _system(db).pay(
        claim["claim_id"], claim["claimant"], payout, approved_by, _now(ctx), ctx.idempotency_key
    )
    return {
        "claim_id": claim["claim_id"],
        "status": "paid",
        "payout": str(payout),
        "reference": reference,
        "approval": approved_by,
    }


def reverse_payout(db: str, claim_id: str, ctx: StepContext) -> None:
    """Compensation: claw the payment back."""
    _system(db).reverse_payout(claim_id, _now(ctx), ctx.idempotency_key)


# -- the degrade path ------------------------------------------------------------------------


def flag_for_manual_review(
    db: str,
    claim_id: str,
    failed_step: str,
    error: str,
    compensated: Sequence[str],
    kept: Sequence[str],
    ctx: StepContext,
) -> dict[str, Any]:
    """Hand the claim to a claims handler, keeping what was verified."""
    system = _system(db)
    if failed_step == "verify":  # nothing was registered: the claim is not accepted as filed
        return {"claim_id": claim_id, "status": "not_accepted", "failed_step": failed_step,
                "reason": error, "compensated": list(compensated), "kept": list(kept)}  # fmt: skip
    system.flag(
        claim_id, "manual_review", f"{failed_step}: {error}", _now(ctx), ctx.idempotency_key
    )
    documents = [
        d["kind"] for d in system.snapshot(claim_id)["documents"] if d["status"] == "verified"
    ]
    return {
        "claim_id": claim_id,
        "status": "manual_review",
        "failed_step": failed_step,
        "reason": error,
        "compensated": list(compensated),
        "kept": list(kept),
        "documents_kept": documents,
    }
