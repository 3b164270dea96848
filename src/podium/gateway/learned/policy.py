"""How predicted quality and cost become a choice, per request.

Three declared policies over ``p`` (probability of a good answer) and ``c`` (expected cost,
relative to the premium model's mean cost per request, so ``λ`` does not depend on prices'
units):

- ``threshold`` — the cheapest model whose ``p`` reaches the threshold; when none does, the
  model with the highest ``p``.
- ``tradeoff`` — the model with the largest ``p - λ·c``.
- ``target`` — a quality target for the whole traffic, as a share of the premium model's
  accuracy, at the lowest cost: the ``tradeoff`` λ that cross-validation found cheapest among
  those reaching the target (the artefact stores that curve; :func:`lambda_for_target`).

Each function ranks every candidate (best first), so the gateway has a fallback order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from podium.gateway.learned.features import Matrix

__all__ = [
    "POLICIES",
    "CurvePoint",
    "Policy",
    "PolicyName",
    "choose",
    "lambda_for_target",
    "rank_one",
]

PolicyName = Literal["threshold", "tradeoff", "target"]
POLICIES: tuple[PolicyName, ...] = ("threshold", "tradeoff", "target")

_TIE = 1e-9
"""Breaks ties of ``p - λ·c`` towards the cheaper model."""


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One operating point measured by cross-validation."""

    lam: float
    accuracy_ratio: float
    """Accuracy / the premium model's accuracy."""
    cost_ratio: float
    """Cost / the premium model's cost."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A resolved policy: ``threshold`` uses ``threshold``; ``tradeoff`` (and ``target``, once
    resolved to its λ) use ``lam``."""

    name: PolicyName
    threshold: float = 0.5
    lam: float = 0.0
    target: float | None = None
    """The quality target a ``target`` policy was resolved from."""

    def describe(self) -> str:
        if self.name == "threshold":
            return f"threshold p ≥ {self.threshold:g}"
        if self.name == "target":
            return f"target {self.target:g} of premium accuracy (λ={self.lam:g})"
        return f"tradeoff p - {self.lam:g}·cost"


def choose(p: Matrix, c: Matrix, policy: Policy) -> NDArray[np.intp]:
    """Per row, the column index chosen (``p``, ``c``: rows x models)."""
    if policy.name == "threshold":
        ok = p >= policy.threshold
        cheapest = np.where(ok, c, np.inf).argmin(axis=1)
        best = p.argmax(axis=1)
        out: NDArray[np.intp] = np.where(ok.any(axis=1), cheapest, best)
        return out
    utility = p - policy.lam * c - _TIE * c
    return np.asarray(utility.argmax(axis=1), dtype=np.intp)


def rank_one(p: NDArray[np.float64], c: NDArray[np.float64], policy: Policy) -> list[int]:
    """One request's candidates, best first (the rest is the fallback order)."""
    if policy.name == "threshold":
        ok = [j for j in range(len(p)) if p[j] >= policy.threshold]
        rest = [j for j in range(len(p)) if p[j] < policy.threshold]
        return sorted(ok, key=lambda j: (c[j], -p[j])) + sorted(rest, key=lambda j: -p[j])
    utility = p - policy.lam * c - _TIE * c
    return [int(j) for j in np.argsort(-utility, kind="stable")]


def lambda_for_target(curve: Sequence[CurvePoint], target: float) -> float | None:
    """The λ of the cheapest curve point whose accuracy ratio reaches ``target``; ``None``
    when no point does."""
    reaching = [pt for pt in curve if pt.accuracy_ratio >= target]
    if not reaching:
        return None
    return min(reaching, key=lambda pt: (pt.cost_ratio, -pt.accuracy_ratio)).lam


LAMBDAS: tuple[float, ...] = (
    0.0,
    *(float(v) for v in np.round(np.geomspace(0.002, 20.0, 80), 6)),
)
"""The λ grid the curve is swept over (0: quality only)."""

THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.05, 0.99, 48), 4))
"""The threshold grid."""
