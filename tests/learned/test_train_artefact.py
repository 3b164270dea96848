"""Training, grouped cross-validation, the curve, the artefact, and the cascade bounds."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from podium.finops.reports import BaselineComparison
from podium.gateway.learned import artefact
from podium.gateway.learned.cascade import agreement_cascade, two_choice
from podium.gateway.learned.data import Example, Outcome, parse_examples
from podium.gateway.learned.evaluate import (
    Outcomes,
    cheapest_reaching,
    cross_validate,
    grouped_folds,
    per_fold,
    point,
    reference_points,
    sweep,
)
from podium.gateway.learned.policy import Policy
from podium.gateway.learned.predictor import QualityPredictor
from podium.gateway.learned.router import TrainedRouter, TrainOptions
from podium.gateway.learned.training import train

OPTIONS = TrainOptions(hash_dims=64, c=1.0, folds=4)


@pytest.fixture(scope="module")
def trained(examples: list[Example]) -> TrainedRouter:
    router, _ = train(examples, OPTIONS)
    return router


def test_folds_never_split_a_question(examples: list[Example]) -> None:
    twin = dataclasses.replace(examples[0], id="twin", prompt=examples[0].prompt.upper())
    data = [*examples, twin]
    folds = grouped_folds(data, 4, seed=3)
    assert folds[0] == folds[-1]
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3]
    assert (folds == grouped_folds(data, 4, seed=3)).all()


def test_cross_validated_routing_sends_easy_questions_to_the_cheap_model(
    examples: list[Example],
) -> None:
    outcomes = Outcomes.of(examples)
    assert outcomes.premium == "premium"
    # difficulty here does not depend on the task: a task prior would only blur the classifiers
    pred = cross_validate(examples, dataclasses.replace(OPTIONS, prior_blend=1.0))
    best = cheapest_reaching(sweep(outcomes, pred), 0.95)
    assert best is not None
    assert best.accuracy_ratio >= 0.95
    assert best.cost_ratio < 0.6  # a third of the questions are easy, a third medium
    assert best.shares[outcomes.models.index("cheap")] > 0.2
    folds = per_fold(outcomes, pred, Policy("tradeoff", lam=best.lam or 0.0))
    assert len(folds) == 4


def test_points_use_the_savings_reports_arithmetic() -> None:
    rows = [
        Example(
            "1", "p", {"a": Outcome(1.0, Decimal("0.001")), "b": Outcome(1.0, Decimal("0.01"))}
        ),
        Example(
            "2", "q", {"a": Outcome(0.0, Decimal("0.001")), "b": Outcome(1.0, Decimal("0.03"))}
        ),
    ]
    outcomes = Outcomes.of(rows)
    assert outcomes.premium == "b"
    pt = point(outcomes, [0, 1], [0, 1], "mixed")
    assert pt.mean_cost == Decimal("0.0155")
    assert pt.cost_ratio == float(
        BaselineComparison(Decimal("0.031"), Decimal("0.04")).fraction or 0
    )
    assert pt.accuracy_ratio == 1.0
    oracle = reference_points(outcomes, [0, 1])[-1]
    assert oracle.label == "oracle"
    assert oracle.mean_cost == Decimal("0.0155")


def test_baseline_comparison() -> None:
    c = BaselineComparison(Decimal("1"), Decimal("4"))
    assert c.saved == Decimal("3")
    assert c.fraction == Decimal("0.25")
    assert BaselineComparison(Decimal("1"), Decimal("0")).fraction is None


def test_the_artefact_round_trips_without_pickle(
    trained: TrainedRouter, tmp_path: Path, examples: list[Example]
) -> None:
    path = tmp_path / "router.json"
    digest = artefact.save(trained, path)
    doc = json.loads(path.read_text())
    assert doc["format"] == artefact.FORMAT
    assert doc["version"] == artefact.VERSION
    assert doc["content_sha256"] == digest
    assert doc["curve"]
    assert doc["info"]["rows"] == len(examples)
    loaded = artefact.load(path)
    prompts, tasks = [e.prompt for e in examples[:10]], [e.task for e in examples[:10]]
    a, b = trained.predict(prompts, tasks), loaded.predict(prompts, tasks)
    assert np.allclose(a[0], b[0])
    assert np.allclose(a[1], b[1])
    assert loaded.curve == trained.curve
    assert trained.quality.prior is not None
    assert loaded.quality.prior is not None
    assert np.array_equal(loaded.quality.prior, trained.quality.prior)
    assert loaded.quality.blend == trained.quality.blend == OPTIONS.prior_blend


def test_the_task_prior_is_each_models_smoothed_accuracy_per_task() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    tasks = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    q = QualityPredictor.fit(x, y, ("a", "b"), tasks=tasks, blend=0.25)
    assert q.prior is not None
    # rows: task 0, task 1, all tasks; (right + 0.5) / (rows + 1)
    assert np.allclose(q.prior, [[2.5 / 3, 1.5 / 3], [1.5 / 3, 2.5 / 3], [3.5 / 5, 3.5 / 5]])
    alone = dataclasses.replace(q, prior=None, blend=1.0).predict(x)
    blended = q.predict(x, tasks)
    assert np.allclose(blended, 0.25 * alone + 0.75 * (tasks @ q.prior[:2]))
    untagged = q.predict(x)  # no task: the overall rate
    assert np.allclose(untagged, 0.25 * alone + 0.75 * q.prior[2])
    assert QualityPredictor.fit(x, y, ("a", "b"), tasks=tasks).prior is None  # blend 1: none


def test_an_altered_artefact_is_refused(trained: TrainedRouter, tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    artefact.save(trained, path)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "premium": "cheap"}))
    with pytest.raises(artefact.ArtefactError, match="changed after training"):
        artefact.load(path)
    path.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(artefact.ArtefactError, match="version 99"):
        artefact.load(path)
    path.write_text(json.dumps(doc))
    weights = path.with_suffix(".npz")
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(artefact.ArtefactError, match="weights do not match"):
        artefact.load(path)
    path.write_text("[]")
    with pytest.raises(artefact.ArtefactError, match="not a podium-learned-router"):
        artefact.load(path)


def test_cascade_agreement_is_exact_on_two_choice_questions_and_bounded_elsewhere() -> None:
    def ex(i: int, prompt: str, a: int, b: int, top: int) -> str:
        models = {
            "a": {"correct": a, "cost_usd": 1},
            "b": {"correct": b, "cost_usd": 1},
            "top": {"correct": top, "cost_usd": 10},
        }
        return json.dumps({"id": str(i), "prompt": prompt, "models": models})

    two = "Pick\nA) x\nB) y"
    four = "Pick\nA) w\nB) x\nC) y\nD) z"
    assert two_choice(two)
    assert not two_choice(four)
    rows = parse_examples(
        [ex(1, two, 0, 0, 1), ex(2, four, 0, 0, 1), ex(3, four, 1, 0, 1), ex(4, four, 1, 1, 1)]
    )
    outcomes = Outcomes.of(rows, "top")
    low = agreement_cascade(rows, outcomes, "a", "b", bound="pessimistic")
    high = agreement_cascade(rows, outcomes, "a", "b", bound="optimistic")
    # row 1 agrees (two choices, both wrong); row 3 disagrees; row 2 is the unknown one
    assert low.accuracy == 0.5
    assert low.mean_cost == Decimal(18) / 4
    assert high.accuracy == 0.75
    assert high.mean_cost == Decimal(28) / 4
