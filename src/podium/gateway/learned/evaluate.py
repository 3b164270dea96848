"""The cost-quality curve of a router, measured honestly.

:func:`cross_validate` predicts every example with a router trained on the *other* folds; the
folds are grouped by question (the prompt's last block, normalised), so the same question never
sits on both sides. :func:`sweep` turns those predictions into operating points — one per policy
parameter — with accuracy and mean cost per request, each also as a ratio to always calling the
premium model and to the best single model. :func:`cheapest_reaching` picks the cheapest point
that keeps a share of the premium model's accuracy; :func:`per_fold` shows how much one fixed
policy varies from fold to fold.

:func:`mixed_sweep` adds the points between the curve's hull vertices that a policy mixing two
λs reaches (:func:`~podium.gateway.learned.policy.mix_for_target`), each scored with the real
per-request split. Picking the operating point on the same out-of-fold predictions it is then
scored on flatters it a little; :func:`nested_target` picks it on the other folds only, fold by
fold, as a trained artefact's ``target`` policy would meet new traffic.

Costs are summed as exact ``Decimal``\\ s and compared with
:class:`~podium.finops.reports.BaselineComparison`, the arithmetic of the gateway's savings
report ("everything on the premium model" against what the router pays).
"""

from __future__ import annotations

import hashlib
import itertools
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
from podium.gateway.learned.policy import (
    LAMBDAS,
    THRESHOLDS,
    CurvePoint,
    Policy,
    choose,
    hull,
    mix_for_target,
    request_key,
)
from podium.gateway.learned.predictor import CostModel, QualityPredictor
from podium.gateway.learned.router import TrainedRouter, TrainOptions, matrices, premium_of

__all__ = [
    "Outcomes",
    "Point",
    "Predictions",
    "cheapest_reaching",
    "cross_validate",
    "grouped_folds",
    "lookup_predictions",
    "mixed_sweep",
    "nested_choices",
    "nested_target",
    "per_fold",
    "policy_of",
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
    lam_alt: float | None = None
    """A mixed operating point's second λ (see :class:`~podium.gateway.learned.policy.Policy`)."""
    share_alt: float = 0.0
    """The share of requests (by request key) on ``lam_alt``."""


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
    lam_alt: float | None = None,
    share_alt: float = 0.0,
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
        lam_alt,
        share_alt,
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
    keys: NDArray[np.float64] | None = None
    """Per row, :func:`~podium.gateway.learned.policy.request_key` of its prompt (what a mixed
    policy splits by; ``None``: mixed policies use their first λ)."""


def keys_of(examples: Sequence[Example]) -> NDArray[np.float64]:
    """Each example's :func:`~podium.gateway.learned.policy.request_key` (its prompt is the
    request text)."""
    return np.array([request_key(e.prompt) for e in examples], dtype=np.float64)


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
    return Predictions(p, c, folds, keys_of(examples))


def lookup_predictions(
    quality: Matrix,
    cost: Matrix,
    groups: Sequence[str | None],
    folds: NDArray[np.intp],
    premium: int,
    keys: NDArray[np.float64] | None = None,
) -> Predictions:
    """The lookup-table predictor: per row, each column's smoothed mean quality and mean cost
    (relative to the premium column's mean) over the *training* folds' rows of the same group
    (task tag; rows without one, or of a group absent from training, get the overall rates).

    It knows nothing of a prompt but its group — the baseline a text model has to beat, and
    the predictor of :func:`podium.gateway.learned.cascade.routed_cascade`'s actions."""
    p, c = np.zeros_like(quality), np.zeros_like(quality)
    names = np.array(["" if g is None else g for g in groups], dtype=object)
    for k in sorted(set(folds.tolist())):
        train, test = folds != k, folds == k
        ref = float(cost[train, premium].mean()) or 1.0
        for g in set(names[test].tolist()):
            tr = train & (names == g) if g else train
            if not tr.any():
                tr = train
            te = test & (names == g)
            p[te] = (quality[tr].sum(axis=0) + 0.5) / (tr.sum() + 1.0)
            c[te] = cost[tr].mean(axis=0) / ref
    return Predictions(p, c, folds, keys)


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
    return Predictions(p, c, np.zeros(len(examples), dtype=np.intp), keys_of(examples))


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


def policy_of(pt: Point) -> Policy:
    """The ``tradeoff`` policy (one λ or a mix of two) that produced a curve point."""
    return Policy("tradeoff", lam=pt.lam or 0.0, lam_alt=pt.lam_alt, share_alt=pt.share_alt)


def mixed_sweep(
    outcomes: Outcomes,
    pred: Predictions,
    points: Sequence[Point],
    rows: Sequence[int] | None = None,
    steps: int = 50,
) -> list[Point]:
    """Points between each pair of neighbouring hull vertices of the ``tradeoff`` sweep
    ``points`` (on ``rows``), at ``steps`` shares of requests on the dearer vertex, each scored
    with the real split of the rows by request key (not the interpolated expectation)."""
    rows = list(range(len(outcomes.costs))) if rows is None else list(rows)
    keys = pred.keys[rows] if pred.keys is not None else None
    vertices = hull(curve_points(points))
    out: list[Point] = []
    for lo, hi in itertools.pairwise(vertices):
        for step in range(1, steps):
            share = step / steps
            policy = Policy("tradeoff", lam=lo.lam, lam_alt=hi.lam, share_alt=share)
            chosen = choose(pred.p[rows], pred.c[rows], policy, keys)
            label = f"λ={lo.lam:g}, {share:.0%} at λ={hi.lam:g}"
            out.append(
                point(outcomes, chosen, rows, label, lam=lo.lam, lam_alt=hi.lam, share_alt=share)
            )
    return out


def nested_choices(
    outcomes: Outcomes, pred: Predictions, target: float
) -> tuple[NDArray[np.intp], list[Policy]] | None:
    """Per row, the column a ``target`` policy chooses when its operating point is picked
    without the row's fold: for each fold, :func:`mix_for_target` on the ``tradeoff`` curve of
    the *other* folds' out-of-fold predictions. Also the policy of each fold. ``None`` when
    some fold's curve never reaches ``target``."""
    n = len(outcomes.costs)
    chosen = np.zeros(n, dtype=np.intp)
    policies: list[Policy] = []
    for k in sorted(set(pred.folds.tolist())):
        test = [i for i in range(n) if pred.folds[i] == k]
        train = [i for i in range(n) if pred.folds[i] != k]
        policy = mix_for_target(curve_points(sweep(outcomes, pred, rows=train)), target)
        if policy is None:
            return None
        keys = pred.keys[test] if pred.keys is not None else None
        chosen[test] = choose(pred.p[test], pred.c[test], policy, keys)
        policies.append(policy)
    return chosen, policies


def nested_target(
    outcomes: Outcomes, pred: Predictions, target: float
) -> tuple[Point | None, list[Point]]:
    """:func:`nested_choices` scored: the pooled point (every row routed by its own fold's
    policy; ``None`` if a fold's curve never reaches ``target``) and one point per fold."""
    got = nested_choices(outcomes, pred, target)
    if got is None:
        return None, []
    chosen, policies = got
    return score_folds(outcomes, chosen, pred.folds, policies, f"nested target {target:g}")


def score_folds(
    outcomes: Outcomes,
    chosen: NDArray[np.intp],
    folds: NDArray[np.intp],
    policies: Sequence[Policy],
    label: str,
) -> tuple[Point, list[Point]]:
    """Score per-row choices on every row and fold by fold (``policies``: one per fold, for
    the labels)."""
    per = []
    for k, policy in zip(sorted(set(folds.tolist())), policies, strict=True):
        rows = [i for i in range(len(folds)) if folds[i] == k]
        pt = point(outcomes, chosen[rows], rows, f"fold {k}: {policy.describe()}")
        per.append(replace(pt, lam=policy.lam, lam_alt=policy.lam_alt, share_alt=policy.share_alt))
    return point(outcomes, chosen, range(len(folds)), label), per


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
        keys = pred.keys[rows] if pred.keys is not None else None
        chosen = choose(pred.p[rows], pred.c[rows], policy, keys)
        pt = point(outcomes, chosen, rows, f"fold {k}")
        out.append(replace(pt, lam=policy.lam, lam_alt=policy.lam_alt, share_alt=policy.share_alt))
    return out
