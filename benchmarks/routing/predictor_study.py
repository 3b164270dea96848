"""Which quality predictor helps the learned router on RouterBench? (issue 7's study)

Every predictor below is scored the same way as ``bench_routing.py`` scores the shipped one:
5-fold cross-validation grouped by question, fold seeds 0 and 1, and at 0.95 of gpt-4's
accuracy the cheapest single-λ point, the cheapest mixed point (two λs, see
``podium.gateway.learned.policy``) and the nested pick (operating point chosen on the other
folds). It also prints each predictor's *within-task* signal: per task, the ROC AUC of its
out-of-fold probability for gpt-4 and for the best cheap model, and how its predicted gain
(gpt-4 minus cheap) correlates with the real one. Hyper-parameters are fixed a priori (no
search): the study asks whether a model family finds signal, not which knob fits dev best.

    nice -n 19 .venv/bin/python benchmarks/routing/predictor_study.py

Prints a table (nothing is written; the numbers are quoted in ``benchmarks/README.md``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from numpy.typing import NDArray

from podium.gateway.learned.data import load_examples, model_names
from podium.gateway.learned.evaluate import (
    Outcomes,
    Predictions,
    cheapest_reaching,
    grouped_folds,
    keys_of,
    lookup_predictions,
    mixed_sweep,
    nested_target,
    sweep,
)
from podium.gateway.learned.features import FeatureSpec, Matrix, featurize, task_onehot
from podium.gateway.learned.predictor import CostModel, QualityPredictor
from podium.gateway.learned.router import TrainOptions, matrices

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "routing" / "routing_dev.jsonl"

Fit = Callable[[NDArray[np.bool_], NDArray[np.bool_]], Matrix]
"""Train on the first mask's rows, predict p (rows x models) for the second's."""


def main() -> None:
    from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression, Ridge  # type: ignore[import-untyped]
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

    warnings.filterwarnings("ignore")
    examples = load_examples(DATA)
    models = model_names(examples)
    outcomes = Outcomes.of(examples, "gpt-4-1106-preview")
    top = outcomes.premium_index
    y, cost = matrices(examples, models)
    prompts, tasks = [e.prompt for e in examples], [e.task for e in examples]
    spec: FeatureSpec = TrainOptions().spec(examples)
    x = featurize(prompts, tasks, spec)
    onehot = task_onehot(tasks, spec.tasks)
    tid = onehot.argmax(axis=1)
    n_text = len(spec.text_features)
    words = x[:, n_text : n_text + spec.hash_dims]
    chars = np.array([len(p) for p in prompts], dtype=np.float64)
    keys = keys_of(examples)

    def prior(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
        out = np.zeros((int(te.sum()), len(models)))
        for t in range(onehot.shape[1]):
            rows, here = tr & (tid == t), tid[te] == t
            out[here] = (y[rows].sum(axis=0) + 0.5) / (rows.sum() + 1.0)
        return out

    def standard(tr: NDArray[np.bool_]) -> Matrix:
        mean, scale = x[tr].mean(axis=0), x[tr].std(axis=0)
        scale[scale == 0] = 1.0
        scale[n_text:] = 1.0  # hashed words stay unit-length (as QualityPredictor does)
        z: Matrix = (x - mean) / scale
        return z

    def shipped(c: float, blend: float) -> Fit:
        def fit(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
            q = QualityPredictor.fit(
                x[tr], y[tr], models, c=c, scaled=n_text, tasks=onehot[tr], blend=blend
            )
            return q.predict(x[te], onehot[te])

        return fit

    def per_model(
        make: Callable[[], object], features: Callable[[NDArray[np.bool_]], Matrix], blend: float
    ) -> Fit:
        def fit(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
            f = features(tr)
            out = np.zeros((int(te.sum()), len(models)))
            for j in range(len(models)):
                clf: object = make()
                clf.fit(f[tr], y[tr, j])  # type: ignore[attr-defined]
                out[:, j] = clf.predict_proba(f[te])[:, 1]  # type: ignore[attr-defined]
            return blend * out + (1 - blend) * prior(tr, te)

        return fit

    def per_task_lr(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
        """One logistic regression per model *and task* (every feature interacts with the tag)."""
        out = prior(tr, te)
        for t in range(onehot.shape[1]):
            rows, here = tr & (tid == t), tid[te] == t
            z = standard(rows)
            for j in range(len(models)):
                if y[rows, j].min() == y[rows, j].max():
                    continue
                clf = LogisticRegression(C=0.5, max_iter=2000).fit(z[rows], y[rows, j])
                out[here, j] = 0.5 * clf.predict_proba(z[te][here])[:, 1] + 0.5 * out[here, j]
        return out

    def knn(k: int) -> Fit:
        """Mean outcome of the k nearest training questions (cosine over hashed words), within
        the task."""

        def fit(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
            out = prior(tr, te)
            for t in range(onehot.shape[1]):
                rows = np.flatnonzero(tr & (tid == t))
                here = np.flatnonzero(tid[te] == t)
                sims = words[np.flatnonzero(te)[here]] @ words[rows].T
                nearest = np.argsort(-sims, axis=1)[:, :k]
                out[here] = 0.5 * (y[rows][nearest].sum(axis=1) + 0.5) / (k + 1) + 0.5 * out[here]
            return out

        return fit

    def difficulty(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
        """A latent difficulty shared by all models (ridge on the mean correctness beyond the
        task's), then per model a logistic regression on [difficulty, task, difficulty x task]."""
        z = standard(tr)
        task_mean = np.array([y[tr & (tid == t)].mean() for t in range(onehot.shape[1])])
        target = y[tr].mean(axis=1) - task_mean[tid[tr]]
        d = Ridge(alpha=30.0).fit(z[tr], target).predict(z).reshape(-1, 1)
        f = np.hstack([d, onehot, d * onehot])
        out = np.zeros((int(te.sum()), len(models)))
        for j in range(len(models)):
            clf = LogisticRegression(C=0.5, max_iter=2000).fit(f[tr], y[tr, j])
            out[:, j] = clf.predict_proba(f[te])[:, 1]
        return 0.5 * out + 0.5 * prior(tr, te)

    def gpt4_as_feature(tr: NDArray[np.bool_], te: NDArray[np.bool_]) -> Matrix:
        """The shipped predictor for gpt-4, then the cheap models' regressions get gpt-4's
        predicted logit as one more feature (models' correctness is correlated)."""
        base = shipped(0.5, 1.0)
        p_tr = base(tr, tr)[:, top]  # in-sample on the training rows, as inference would see
        p_te = base(tr, te)[:, top]
        z = standard(tr)
        f_tr = np.hstack([z[tr], np.log(p_tr / (1 - p_tr)).reshape(-1, 1)])
        f_te = np.hstack([z[te], np.log(p_te / (1 - p_te)).reshape(-1, 1)])
        out = np.zeros((int(te.sum()), len(models)))
        for j in range(len(models)):
            clf = LogisticRegression(C=0.5, max_iter=2000).fit(f_tr, y[tr, j])
            out[:, j] = clf.predict_proba(f_te)[:, 1]
        out[:, top] = p_te
        return 0.5 * out + 0.5 * prior(tr, te)

    def dense(tr: NDArray[np.bool_]) -> Matrix:
        """The text features and the task tag (trees need no scaling)."""
        return np.hstack([x[:, :n_text], onehot])

    def scaled(tr: NDArray[np.bool_]) -> Matrix:
        """Text features standardised on the training rows, hashed words, the task tag."""
        return standard(tr)

    studies: list[tuple[str, Fit]] = [
        ("per-task lookup (prior only)", prior),
        ("shipped: LR C=0.5, blend 0.5", shipped(0.5, 0.5)),
        ("LR C=0.5, no prior blend", shipped(0.5, 1.0)),
        ("LR C=0.05, blend 0.5", shipped(0.05, 0.5)),
        ("LR per task x model, blend 0.5", per_task_lr),
        (
            "calibrated LR (isotonic, 3-fold), blend 0.5",
            per_model(
                lambda: CalibratedClassifierCV(
                    LogisticRegression(C=0.5, max_iter=2000), method="isotonic", cv=3
                ),
                scaled,
                0.5,
            ),
        ),
        (
            "HistGradientBoosting (text+task), blend 0.5",
            per_model(
                lambda: HistGradientBoostingClassifier(
                    max_iter=100,
                    learning_rate=0.05,
                    max_leaf_nodes=8,
                    min_samples_leaf=40,
                    l2_regularization=1.0,
                    random_state=0,
                ),
                dense,
                0.5,
            ),
        ),
        ("kNN k=30 over hashed words, blend 0.5", knn(30)),
        ("latent difficulty + per-model offsets", difficulty),
        ("gpt-4's predicted logit as a feature", gpt4_as_feature),
    ]
    print(
        f"{'predictor':46s} {'AUC gpt-4 / cheap per task (arc, mbpp, wino)':46s} "
        "seed 0: single mixed nested (its acc) | seed 1: same  (cost ratio at 0.95)"
    )
    for name, fit in studies:
        cells = []
        signal = ""
        for seed in (0, 1):
            folds = grouped_folds(examples, 5, seed)
            p, c = np.zeros_like(y), np.zeros_like(y)
            for k in range(5):
                tr, te = folds != k, folds == k
                p[te] = fit(tr, te)
                cm = CostModel.fit(chars[tr], onehot[tr], cost[tr])
                c[te] = cm.predict(chars[te], onehot[te]) / cost[tr, top].mean()
            pred = Predictions(p, c, folds, keys)
            if name.startswith("per-task lookup"):  # the bench's own lookup: mean costs
                pred = lookup_predictions(y, cost, tasks, folds, top, keys)
            if seed == 0:
                parts = []
                for t in range(onehot.shape[1]):
                    m = tid == t
                    cheap = max(
                        (
                            j
                            for j in range(len(models))
                            if cost[m, j].mean() < cost[m, top].mean() / 4
                        ),
                        key=lambda j: y[m, j].mean(),
                    )
                    parts.append(
                        f"{roc_auc_score(y[m, top], pred.p[m, top]):.2f}/"
                        f"{roc_auc_score(y[m, cheap], pred.p[m, cheap]):.2f}"
                    )
                signal = " ".join(parts)
            tradeoff = sweep(outcomes, pred)
            single = cheapest_reaching(tradeoff, 0.95)
            mixed = cheapest_reaching(tradeoff + mixed_sweep(outcomes, pred, tradeoff), 0.95)
            nested, _ = nested_target(outcomes, pred, 0.95)
            cells.append(
                "  ".join(
                    f"{pt.cost_ratio:.3f}" if pt is not None else "  -  " for pt in (single, mixed)
                )
                + (
                    f"  {nested.cost_ratio:.3f} ({nested.accuracy_ratio:.3f})"
                    if nested is not None
                    else "  -"
                )
            )
        print(f"{name:46s} {signal:46s} {cells[0]:>28s} | {cells[1]:>28s}", flush=True)


if __name__ == "__main__":
    main()
