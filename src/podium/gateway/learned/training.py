"""Train a router and measure it in one step: cross-validate (grouped), keep the ``tradeoff``
curve in the router (a ``target`` policy reads it), then fit on every example."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from podium.gateway.learned.data import Example
from podium.gateway.learned.evaluate import (
    Outcomes,
    Predictions,
    cheapest_reaching,
    cross_validate,
    curve_points,
    mixed_sweep,
    sweep,
)
from podium.gateway.learned.features import Embedder, Matrix
from podium.gateway.learned.router import TrainedRouter, TrainOptions, fit_router

__all__ = ["train"]


def data_digest(examples: Sequence[Example]) -> str:
    """A SHA-256 of the training ids, recorded in the artefact (which data trained it)."""
    return hashlib.sha256("\n".join(sorted(e.id for e in examples)).encode()).hexdigest()


def train(
    examples: Sequence[Example],
    options: TrainOptions,
    *,
    embedder: Embedder | None = None,
    embeddings: Matrix | None = None,
) -> tuple[TrainedRouter, Predictions]:
    """The router fitted on all ``examples`` with its cross-validated curve, and the
    out-of-fold predictions the curve came from."""
    pred = cross_validate(examples, options, embedder=embedder, embeddings=embeddings)
    router = fit_router(examples, options, embedder=embedder, embeddings=embeddings)
    outcomes = Outcomes.of(examples, router.premium)
    points = sweep(outcomes, pred)
    # the cheapest point at 0.95, one λ or a mix of two (what a target policy resolves to)
    at95 = cheapest_reaching(points + mixed_sweep(outcomes, pred, points), 0.95)
    info = {
        "rows": len(examples),
        "data_ids_sha256": data_digest(examples),
        "folds": options.folds,
        "seed": options.seed,
        "c": options.c,
        "cv_at_0.95": (
            {
                "lambda": at95.lam,
                "lambda_alt": at95.lam_alt,
                "share_alt": at95.share_alt,
                "accuracy_ratio": round(at95.accuracy_ratio, 4),
                "cost_ratio": round(at95.cost_ratio, 4),
            }
            if at95 is not None
            else None
        ),
    }
    return replace(router, curve=curve_points(points), info=info), pred
