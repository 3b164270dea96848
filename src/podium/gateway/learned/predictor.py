"""Per candidate model: the probability of a good answer, and the expected cost of the call.

:class:`QualityPredictor` is one L2-regularised logistic regression per model over standardised
features (scikit-learn fits it; inference is one matrix product in NumPy, so the artefact holds
plain arrays, never a pickled estimator). A model that was right (or wrong) on every training
prompt gets a constant, smoothed rate instead of a classifier.

:class:`CostModel` predicts a call's cost from what is known before the call — the prompt's
length and its task tag — with one least-squares line per model: the data's costs include the
completion, which the router cannot see in advance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from podium.gateway.learned.features import Matrix

__all__ = ["CostModel", "QualityPredictor"]


@dataclass(frozen=True)
class QualityPredictor:
    """``predict(x)[i, j]``: probability that model ``j`` answers prompt ``i`` well."""

    models: tuple[str, ...]
    mean: Matrix
    """Per feature, the training mean (standardisation)."""
    scale: Matrix
    """Per feature, the training standard deviation (1 where it was 0)."""
    coef: Matrix
    """``models x features`` weights."""
    intercept: Matrix
    """Per model."""
    prior: Matrix | None = None
    """``(tasks + 1) x models``: smoothed training accuracy per task, the last row over all
    tasks (``None``: no blending)."""
    blend: float = 1.0
    """Weight of the classifier against :attr:`prior` (1: the classifier alone)."""

    @classmethod
    def fit(
        cls,
        x: Matrix,
        y: Matrix,
        models: Sequence[str],
        *,
        c: float = 0.05,
        scaled: int | None = None,
        seed: int = 0,
        tasks: Matrix | None = None,
        blend: float = 1.0,
    ) -> QualityPredictor:
        """Fit on features ``x`` (rows x features) and qualities ``y`` (rows x models; a
        quality ≥ 0.5 counts as a good answer). ``c``: inverse regularisation strength.

        Every column is centred; the first ``scaled`` (default: all) are also divided by their
        standard deviation. With ``tasks`` (rows x known tasks, one-hot) and ``blend`` < 1 the
        predictor also keeps each model's per-task accuracy as a prior. Blocks already on a
        common scale (unit-length hashed words or embeddings) stay as they are: scaling a rare
        word's column up to unit variance would let it dominate."""
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        if scaled is not None:
            scale[scaled:] = 1.0
        z = (x - mean) / scale
        coef = np.zeros((len(models), x.shape[1]))
        intercept = np.zeros(len(models))
        for j in range(len(models)):
            good = (y[:, j] >= 0.5).astype(int)
            if good.min() == good.max():
                rate = (good.sum() + 0.5) / (len(good) + 1.0)  # never exactly 0 or 1
                intercept[j] = math.log(rate / (1 - rate))
                continue
            clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            clf.fit(z, good)
            coef[j] = clf.coef_[0]
            intercept[j] = clf.intercept_[0]
        prior = None
        if tasks is not None and blend < 1.0:
            good_all = (y >= 0.5).astype(np.float64)
            rows = [good_all[tasks[:, t] > 0] for t in range(tasks.shape[1])] + [good_all]
            prior = np.array([(r.sum(axis=0) + 0.5) / (len(r) + 1.0) for r in rows])
        return cls(
            tuple(models), mean, scale, coef, intercept, prior, blend if prior is not None else 1.0
        )

    def predict(self, x: Matrix, tasks: Matrix | None = None) -> Matrix:
        """Probabilities for features ``x``; ``tasks`` (rows x known tasks, one-hot) picks the
        prior's row (absent: the overall rate)."""
        z = (x - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        out: Matrix = 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))
        if self.prior is None:
            return out
        n_tasks = self.prior.shape[0] - 1
        onehot = np.zeros((len(x), n_tasks)) if tasks is None else tasks
        known = onehot.sum(axis=1, keepdims=True)
        prior = onehot @ self.prior[:n_tasks] + (1.0 - known) * self.prior[n_tasks]
        blended: Matrix = self.blend * out + (1.0 - self.blend) * prior
        return blended


@dataclass(frozen=True)
class CostModel:
    """``predict(chars, task_onehot)[i, j]``: expected cost (USD) of model ``j`` on prompt ``i``.

    Features: ``[1, prompt characters / 1000, task one-hot…]``; negative predictions clip to 0.
    """

    coef: Matrix
    """``models x (2 + tasks)``."""

    @staticmethod
    def design(chars: NDArray[np.float64], tasks: Matrix) -> Matrix:
        return np.hstack([np.ones((len(chars), 1)), chars.reshape(-1, 1) / 1000.0, tasks])

    @classmethod
    def fit(cls, chars: NDArray[np.float64], tasks: Matrix, costs: Matrix) -> CostModel:
        """Least squares (a small ridge keeps a task seen once from running away)."""
        a = cls.design(chars, tasks)
        ridge = 1e-6 * np.eye(a.shape[1])
        ridge[0, 0] = 0.0
        coef: Matrix = np.asarray(np.linalg.solve(a.T @ a + ridge, a.T @ costs).T, np.float64)
        return cls(coef)

    def predict(self, chars: NDArray[np.float64], tasks: Matrix) -> Matrix:
        out: Matrix = np.clip(self.design(chars, tasks) @ self.coef.T, 0.0, None)
        return out
