"""How predicted quality and cost become a choice, per request.

Three declared policies over ``p`` (probability of a good answer) and ``c`` (expected cost,
relative to the premium model's mean cost per request, so ``λ`` does not depend on prices'
units):

- ``threshold`` — the cheapest model whose ``p`` reaches the threshold; when none does, the
  model with the highest ``p``.
- ``tradeoff`` — the model with the largest ``p - λ·c``.
- ``target`` — a quality target for the whole traffic, as a share of the premium model's
  accuracy, at the lowest cost, read from the ``tradeoff`` curve cross-validation measured (the
  artefact stores it): the cheapest point of the curve's *upper convex hull* that reaches the
  target (:func:`mix_for_target`).

Why a hull, and a mix of two λs: the λ sweep is a staircase — when the predictor knows little
within a task (on RouterBench, per-prompt text hardly tells which cheap model is right), a
whole task flips from the cheap model to the premium one at a single λ, and the target falls
between two steps. Sending a fixed share of requests to the dearer of the two neighbouring
operating points reaches every point of the segment between them (the classic convex-hull
argument of ROC analysis). The share is split by :func:`request_key`, a hash of the request
text, so a request is routed the same way every time (audit trail, caches) — no randomness at
inference.

Each function ranks every candidate (best first), so the gateway has a fallback order.
"""

from __future__ import annotations

import zlib
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
    "hull",
    "lambda_for_target",
    "mix_for_target",
    "rank_one",
    "request_key",
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
    resolved) use ``lam`` — or, for the requests whose :func:`request_key` is below
    ``share_alt``, ``lam_alt`` (a mix of two operating points; see the module docstring)."""

    name: PolicyName
    threshold: float = 0.5
    lam: float = 0.0
    target: float | None = None
    """The quality target a ``target`` policy was resolved from."""
    lam_alt: float | None = None
    """The second operating point's λ (``None``: every request uses ``lam``)."""
    share_alt: float = 0.0
    """The share of requests (by :func:`request_key`) that use ``lam_alt``."""

    def describe(self) -> str:
        if self.name == "threshold":
            return f"threshold p ≥ {self.threshold:g}"
        lam = f"λ={self.lam:g}"
        if self.lam_alt is not None and self.share_alt > 0:
            lam += f", {self.share_alt:.0%} of requests at λ={self.lam_alt:g}"
        if self.name == "target":
            return f"target {self.target:g} of premium accuracy ({lam})"
        if self.lam_alt is not None and self.share_alt > 0:
            return f"tradeoff p - λ·cost ({lam})"
        return f"tradeoff p - {self.lam:g}·cost"

    def lam_for(self, key: float | None) -> float:
        """The λ of a request with :func:`request_key` ``key`` (``None``: ``lam``)."""
        if self.lam_alt is not None and key is not None and key < self.share_alt:
            return self.lam_alt
        return self.lam


def request_key(text: str) -> float:
    """A stable number in [0, 1) per request text (CRC-32 of its UTF-8 bytes): which requests a
    mixed policy sends to its second operating point. Stable across processes and machines
    (unlike ``hash``), and independent of everything the predictor sees but the text."""
    return zlib.crc32(text.encode("utf-8")) / 2**32


def choose(
    p: Matrix, c: Matrix, policy: Policy, keys: NDArray[np.float64] | None = None
) -> NDArray[np.intp]:
    """Per row, the column index chosen (``p``, ``c``: rows x models; ``keys``: each row's
    :func:`request_key`, needed by a mixed policy — without them every row uses ``lam``)."""
    if policy.name == "threshold":
        ok = p >= policy.threshold
        cheapest = np.where(ok, c, np.inf).argmin(axis=1)
        best = p.argmax(axis=1)
        out: NDArray[np.intp] = np.where(ok.any(axis=1), cheapest, best)
        return out
    lam: float | NDArray[np.float64] = policy.lam
    if policy.lam_alt is not None and keys is not None:
        lam = np.where(np.asarray(keys) < policy.share_alt, policy.lam_alt, policy.lam)[:, None]
    utility = p - lam * c - _TIE * c
    return np.asarray(utility.argmax(axis=1), dtype=np.intp)


def rank_one(
    p: NDArray[np.float64], c: NDArray[np.float64], policy: Policy, key: float | None = None
) -> list[int]:
    """One request's candidates, best first (the rest is the fallback order); ``key``: its
    :func:`request_key` (a mixed policy picks its λ by it)."""
    if policy.name == "threshold":
        ok = [j for j in range(len(p)) if p[j] >= policy.threshold]
        rest = [j for j in range(len(p)) if p[j] < policy.threshold]
        return sorted(ok, key=lambda j: (c[j], -p[j])) + sorted(rest, key=lambda j: -p[j])
    utility = p - policy.lam_for(key) * c - _TIE * c
    return [int(j) for j in np.argsort(-utility, kind="stable")]


def lambda_for_target(curve: Sequence[CurvePoint], target: float) -> float | None:
    """The λ of the cheapest curve point whose accuracy ratio reaches ``target``; ``None``
    when no point does."""
    reaching = [pt for pt in curve if pt.accuracy_ratio >= target]
    if not reaching:
        return None
    return min(reaching, key=lambda pt: (pt.cost_ratio, -pt.accuracy_ratio)).lam


def hull(curve: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The upper convex hull of a curve's points, cheapest first: the operating points no mix
    of two others beats (each vertex is more accurate and dearer than the one before)."""
    out: list[CurvePoint] = []
    for pt in sorted(curve, key=lambda q: (q.cost_ratio, -q.accuracy_ratio)):
        if out and pt.accuracy_ratio <= out[-1].accuracy_ratio:
            continue
        while len(out) >= 2:
            a, b = out[-2], out[-1]
            # b is under (or on) the segment a -> pt: a mix of a and pt does at least as well
            if (b.accuracy_ratio - a.accuracy_ratio) * (pt.cost_ratio - a.cost_ratio) <= (
                pt.accuracy_ratio - a.accuracy_ratio
            ) * (b.cost_ratio - a.cost_ratio):
                out.pop()
            else:
                break
        out.append(pt)
    return out


def mix_for_target(curve: Sequence[CurvePoint], target: float) -> Policy | None:
    """The cheapest operating point of the curve's :func:`hull` whose (expected) accuracy
    ratio reaches ``target``, as a ``target`` policy: a hull vertex (one λ), or the mix of the
    two vertices around the target (``lam`` the cheaper, ``lam_alt`` the dearer, ``share_alt``
    the dearer one's share). ``None`` when no point reaches the target."""
    vertices = hull(curve)
    for k, hi in enumerate(vertices):
        if hi.accuracy_ratio < target:
            continue
        if k == 0 or hi.accuracy_ratio == target:
            return Policy("target", lam=hi.lam, target=target)
        lo = vertices[k - 1]
        share = (target - lo.accuracy_ratio) / (hi.accuracy_ratio - lo.accuracy_ratio)
        return Policy(
            "target", lam=lo.lam, target=target, lam_alt=hi.lam, share_alt=round(share, 6)
        )
    return None


LAMBDAS: tuple[float, ...] = (
    0.0,
    *(float(v) for v in np.round(np.geomspace(0.002, 20.0, 80), 6)),
)
"""The λ grid the curve is swept over (0: quality only)."""

THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.05, 0.99, 48), 4))
"""The threshold grid."""
