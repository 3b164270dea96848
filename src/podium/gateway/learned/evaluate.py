"""The cost-quality curve of a router, measured honestly.

:func:`cross_validate` predicts every example with a router trained on the *other* folds; the
folds are grouped by question (the prompt's last block, normalised), so the same question never
sits on both sides. :func:`sweep` turns those predictions into operating points — one per policy
parameter — with accuracy and mean cost per request, each also as a ratio to always calling the
premium model and to the best single model. :func:`cheapest_reaching` picks the cheapest point
that keeps a share of the premium model's accuracy; :func:`per_fold` shows how much one fixed
policy varies from fold to fold.

Costs are summed as exact ``Decimal``\\ s and compared with
:class:`~podium.finops.reports.BaselineComparison`, the arithmetic of the gateway's savings
report ("everything on the premium model" against what the router pays).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext

import numpy as np
from numpy.typing import NDArray

from podium.finops.ledger import EXACT
from podium.finops.reports import BaselineComparison
from podium.gateway.learned.data import Example, model_names
from podium.gateway.learned.features import Embedder, Matrix, featurize, question_of, task_onehot
from podium.gateway.learned.policy import LAMBDAS, THRESHOLDS, CurvePoint, Policy, choose
from podium.gateway.learned.predictor import CostModel, QualityPredictor
from podium.gateway.learned.router import TrainedRouter, TrainOptions, matrices, premium_of

__all__ = [
    "Outcomes",
    "Point",
    "Predictions",
    "cheapest_reaching",
    "cross_validate",
    "grouped_folds",
    "per_fold",
    "sweep",
]


@dataclass(frozen=True)
class Outcomes:
    """The data's truth: per example and model, quality and exact cost."""

    models: tuple[str, ...]
    quality: Matrix
    costs: tuple[tuple[Decimal, ...], ...]
    premium: str
    _refs: dict[tuple[int, ...], tuple[float, Decimal, float, Decimal]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, examples: Sequence[Example], premium: str | None = None) -> Outcomes:
        models = model_names(examples)
        y, _ = matrices(examples, models)
        costs = tuple(tuple(e.outcomes[m].cost for m in models) for e in examples)
        return cls(models, y, costs, premium_of(examples, models, premium))

    @property
    def premium_index(self) -> int:
        return self.models.index(self.premium)

    def total_cost(self, chosen: Sequence[int] | NDArray[np.intp], rows: Sequence[int]) -> Decimal:
        with localcontext(EXACT):
            return sum((self.costs[i][int(chosen[k])] for k, i in enumerate(rows)), Decimal(0))

    def single(self, j: int, rows: Sequence[int]) -> tuple[float, Decimal]:
        """Accuracy and total cost of always calling model ``j`` on ``rows``."""
        return float(self.quality[rows, j].mean()), self.total_cost([j] * len(rows), rows)

    def best_single(self, rows: Sequence[int]) -> int:
        """The most accurate model on ``rows`` (the cheaper one on a tie)."""
        return max(
            range(len(self.models)),
            key=lambda j: (self.quality[rows, j].mean(), -self.single(j, rows)[1]),
        )

    def references(self, rows: Sequence[int]) -> tuple[float, Decimal, float, Decimal]:
        """Accuracy and total cost of the premium model, then of the best single one."""
        key = tuple(rows)
        if key not in self._refs:
            p_acc, p_cost = self.single(self.premium_index, rows)
            b_acc, b_cost = self.single(self.best_single(rows), rows)
            self._refs[key] = (p_acc, p_cost, b_acc, b_cost)
        return self._refs[key]

    def oracle(self, rows: Sequence[int]) -> NDArray[np.intp]:
        """Per row, the cheapest model that answered well (the cheapest model if none did)."""
        out = []
        for i in rows:
            good = [j for j in range(len(self.models)) if self.quality[i, j] >= 0.5]
            pool = good or list(range(len(self.models)))
            out.append(min(pool, key=lambda j: self.costs[i][j]))
        return np.array(out, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class Point:
    """One operating point on some rows."""

    label: str
    accuracy: float
    mean_cost: Decimal
    """USD per request."""
    accuracy_ratio: float
    """Accuracy / the premium model's."""
    cost_ratio: float
    """Cost / the premium model's (:attr:`BaselineComparison.fraction`)."""
    accuracy_vs_best: float
    cost_vs_best: float
    lam: float | None = None
    threshold: float | None = None
    shares: tuple[float, ...] = ()
    """Share of requests sent to each model."""


def point(
    outcomes: Outcomes,
    chosen: Sequence[int] | NDArray[np.intp],
    rows: Sequence[int],
    label: str,
    *,
    lam: float | None = None,
    threshold: float | None = None,
    paid: Decimal | None = None,
    accuracy: float | None = None,
) -> Point:
    """Score a choice per row (``chosen[k]`` for ``rows[k]``); a cascade passes what it
    ``paid`` and the ``accuracy`` it kept, which differ from the chosen model's."""
    rows = list(rows)
    n = len(rows)
    chosen = np.asarray(chosen, dtype=np.intp)
    acc = (
        accuracy
        if accuracy is not None
        else float(np.mean([outcomes.quality[i, chosen[k]] for k, i in enumerate(rows)]))
    )
    total = paid if paid is not None else outcomes.total_cost(chosen, rows)
    p_acc, p_cost, b_acc, b_cost = outcomes.references(rows)
    vs_premium = BaselineComparison(total, p_cost).fraction
    vs_best = BaselineComparison(total, b_cost).fraction
    shares = tuple(float(np.mean(chosen == j)) for j in range(len(outcomes.models)))
    return Point(
        label,
        acc,
        total / n,
        acc / p_acc if p_acc else float("nan"),
        float(vs_premium) if vs_premium is not None else float("nan"),
        acc / b_acc if b_acc else float("nan"),
        float(vs_best) if vs_best is not None else float("nan"),
        lam,
        threshold,
        shares,
    )


def reference_points(outcomes: Outcomes, rows: Sequence[int]) -> list[Point]:
    """Every single model, and the oracle (the cheapest model that answered well)."""
    out = [point(outcomes, [j] * len(rows), rows, m) for j, m in enumerate(outcomes.models)]
    out.append(point(outcomes, outcomes.oracle(rows), rows, "oracle"))
    return out


# -- cross-validation --------------------------------------------------------------------------


_SPACE = re.compile(r"\s+")


def group_key(prompt: str) -> str:
    """Prompts asking the same question (case and spacing aside) share a key."""
    return hashlib.sha256(_SPACE.sub(" ", question_of(prompt)).lower().encode()).hexdigest()


def grouped_folds(examples: Sequence[Example], folds: int, seed: int = 0) -> NDArray[np.intp]:
    """A fold per example: groups (same question) shuffled with ``seed``, dealt round-robin."""
    keys = [group_key(e.prompt) for e in examples]
    unique = sorted(set(keys))
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} distinct questions cannot fill {folds} folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[g]: k % folds for k, g in enumerate(order)}
    return np.array([fold_of[k] for k in keys], dtype=np.intp)


@dataclass(frozen=True)
class Predictions:
    """Out-of-fold predictions: every row predicted by a router that never saw it."""

    p: Matrix
    """Probability of a good answer, rows x models."""
    c: Matrix
    """Predicted cost relative to the premium model's mean, rows x models."""
    folds: NDArray[np.intp]


def cross_validate(
    examples: Sequence[Example],
    options: TrainOptions,
    *,
    embedder: Embedder | None = None,
    embeddings: Matrix | None = None,
) -> Predictions:
    """Out-of-fold predictions with ``options.folds`` grouped folds."""
    models = model_names(examples)
    spec = options.spec(examples)
    prompts = [e.prompt for e in examples]
    tasks = [e.task for e in examples]
    x = featurize(prompts, tasks, spec, embedder=embedder, embeddings=embeddings)
    y, cost = matrices(examples, models)
    chars = np.array([len(p) for p in prompts], dtype=np.float64)
    onehot = task_onehot(tasks, spec.tasks)
    premium = models.index(premium_of(examples, models, options.premium))
    folds = grouped_folds(examples, options.folds, options.seed)
    p = np.zeros_like(y)
    c = np.zeros_like(y)
    for k in range(options.folds):
        train, test = folds != k, folds == k
        q = QualityPredictor.fit(
            x[train],
            y[train],
            models,
            c=options.c,
            scaled=len(spec.text_features),
            seed=options.seed,
            tasks=onehot[train],
            blend=options.prior_blend,
        )
        cm = CostModel.fit(chars[train], onehot[train], cost[train])
        reference = float(cost[train, premium].mean()) or 1.0
        p[test] = q.predict(x[test], onehot[test])
        c[test] = cm.predict(chars[test], onehot[test]) / reference
    return Predictions(p, c, folds)


def predictions_of(
    router: TrainedRouter,
    examples: Sequence[Example],
    *,
    embedder: Embedder | None = None,
    embeddings: Matrix | None = None,
) -> Predictions:
    """A trained router's predictions on (held-out) examples: one fold."""
    p, c = router.predict(
        [e.prompt for e in examples],
        [e.task for e in examples],
        embedder=embedder,
        embeddings=embeddings,
    )
    return Predictions(p, c, np.zeros(len(examples), dtype=np.intp))


# -- curves ------------------------------------------------------------------------------------


def sweep(
    outcomes: Outcomes, pred: Predictions, kind: str = "tradeoff", rows: Sequence[int] | None = None
) -> list[Point]:
    """One point per λ (``tradeoff``) or per threshold (``threshold``), on ``rows`` (all)."""
    rows = list(range(len(outcomes.costs))) if rows is None else list(rows)
    p, c = pred.p[rows], pred.c[rows]
    out = []
    if kind == "threshold":
        for t in THRESHOLDS:
            chosen = choose(p, c, Policy("threshold", threshold=t))
            out.append(point(outcomes, chosen, rows, f"threshold {t:g}", threshold=t))
    else:
        for lam in LAMBDAS:
            chosen = choose(p, c, Policy("tradeoff", lam=lam))
            out.append(point(outcomes, chosen, rows, f"λ={lam:g}", lam=lam))
    return out


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both cost and accuracy, cheapest first."""
    ordered = sorted(points, key=lambda pt: (pt.cost_ratio, -pt.accuracy))
    out: list[Point] = []
    for pt in ordered:
        if not out or pt.accuracy > out[-1].accuracy:
            out.append(pt)
    return out


def cheapest_reaching(points: Sequence[Point], accuracy_ratio: float) -> Point | None:
    """The cheapest point keeping ``accuracy_ratio`` of the premium model's accuracy."""
    ok = [pt for pt in points if pt.accuracy_ratio >= accuracy_ratio]
    return min(ok, key=lambda pt: (pt.cost_ratio, -pt.accuracy)) if ok else None


def curve_points(points: Sequence[Point]) -> tuple[CurvePoint, ...]:
    """What an artefact stores of a ``tradeoff`` sweep (for ``target`` policies)."""
    return tuple(
        CurvePoint(pt.lam, round(pt.accuracy_ratio, 6), round(pt.cost_ratio, 6))
        for pt in points
        if pt.lam is not None
    )


def per_fold(outcomes: Outcomes, pred: Predictions, policy: Policy) -> list[Point]:
    """The same policy scored fold by fold (its spread)."""
    out = []
    for k in sorted(set(pred.folds.tolist())):
        rows = [i for i in range(len(pred.folds)) if pred.folds[i] == k]
        chosen = choose(pred.p[rows], pred.c[rows], policy)
        out.append(replace(point(outcomes, chosen, rows, f"fold {k}"), lam=policy.lam))
    return out
