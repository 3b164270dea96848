"""Reading routing data, the features, and the policies."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from podium.errors import ConfigError
from podium.gateway.learned.data import RouterDataError, load_examples, parse_examples
from podium.gateway.learned.features import (
    TEXT_FEATURES,
    FeatureSpec,
    featurize,
    hashed_words,
    question_of,
    text_features,
)
from podium.gateway.learned.policy import CurvePoint, Policy, choose, lambda_for_target, rank_one


def row(i: int = 1, **models: object) -> str:
    models = models or {"a": {"correct": 1, "cost_usd": 0.1}, "b": {"correct": 0, "cost_usd": 0.2}}
    return json.dumps({"id": f"r{i}", "prompt": "hi", "models": models})


def test_costs_are_read_exactly_from_the_json_text(data_file: Path) -> None:
    examples = load_examples(data_file)
    assert len(examples) == 240
    assert isinstance(examples[0].outcomes["cheap"].cost, Decimal)
    (one,) = parse_examples([row()])
    assert one.outcomes["a"].cost == Decimal("0.1")
    assert one.task is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "<data>:1: not JSON"),
        (["", row(1), row(1)], "<data>:3: id 'r1' repeats line 2"),
        ([row(1), row(2, a={"correct": 1, "cost_usd": 1})], "<data>:2: row scores other models"),
        (
            [row(1, a={"correct": 2, "cost_usd": 1}, b={"correct": 0, "cost_usd": 1})],
            "correct: must be a number in [0, 1]",
        ),
        (
            [row(1, a={"correct": 1}, b={"correct": 0, "cost_usd": 1})],
            "<data>:1: models.a: no 'cost_usd'",
        ),
        (
            [row(1, a={"correct": 1, "cost_usd": -1}, b={"correct": 0, "cost_usd": 1})],
            "cost_usd: must be a number ≥ 0",
        ),
        ([row(1, a={"correct": 1, "cost_usd": 1})], "two models or more"),
        ([], "no rows"),
    ],
)
def test_bad_data_is_reported_at_its_line(lines: list[str], message: str) -> None:
    with pytest.raises(RouterDataError, match=None) as caught:
        parse_examples(lines)
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_a_price_function_prices_rows_without_costs() -> None:
    line = json.dumps(
        {"id": "x", "prompt": "abcd", "models": {"a": {"correct": 1}, "b": {"correct": 0}}}
    )
    (one,) = parse_examples([line], price=lambda model, prompt: Decimal(len(prompt)) / 1000)
    assert one.outcomes["a"].cost == Decimal("0.004")


def test_an_unreadable_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(RouterDataError, match=r"missing\.jsonl: cannot read"):
        load_examples(tmp_path / "missing.jsonl")


def test_the_question_is_the_last_block() -> None:
    assert question_of("ex 1\n\nex 2\n\n  the question?\n") == "the question?"
    assert question_of("only one") == "only one"


def test_text_features_have_their_declared_length_and_markers() -> None:
    values = dict(
        zip(
            TEXT_FEATURES,
            text_features("Write a function to add.\ndef f(x):\n  return x"),
            strict=True,
        )
    )
    assert len(values) == len(TEXT_FEATURES)
    assert values["code"] == 1.0
    assert values["programming"] == 1.0
    choice = dict(
        zip(TEXT_FEATURES, text_features("The _ fell.\nA) cup\nB) glass\nAnswer:"), strict=True)
    )
    assert choice["choices"] == 2.0
    assert choice["blank"] == 1.0


def test_hashed_words_are_deterministic_and_unit_length() -> None:
    a = hashed_words("the cat sat on the mat", 64)
    assert a == hashed_words("the cat sat on the mat", 64)
    assert abs(sum(v * v for v in a) - 1.0) < 1e-9
    assert hashed_words("", 8) == [0.0] * 8


def test_featurize_one_hots_tasks_and_needs_embeddings_when_declared() -> None:
    spec = FeatureSpec(hash_dims=16, tasks=("a", "b"))
    x = featurize(["x", "y", "z"], ["a", None, "zz"], spec)
    assert x.shape == (3, spec.width)
    assert x[:, -2:].tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    with_emb = FeatureSpec(hash_dims=0, embeddings=True, embed_dims=4)
    with pytest.raises(ValueError, match="pass an embedder"):
        featurize(["x"], [None], with_emb)
    got = featurize(["x"], [None], with_emb, embedder=lambda texts: np.ones((len(texts), 4)))
    assert got.shape == (1, with_emb.width)
    assert FeatureSpec.from_json(spec.to_json()) == spec


P = np.array([[0.9, 0.95, 0.99], [0.2, 0.6, 0.9], [0.1, 0.2, 0.3]])
C = np.array([[0.02, 0.1, 1.0]] * 3)


def test_threshold_takes_the_cheapest_model_that_clears_it() -> None:
    assert choose(P, C, Policy("threshold", threshold=0.5)).tolist() == [0, 1, 2]
    assert choose(P, C, Policy("threshold", threshold=0.85)).tolist() == [0, 2, 2]
    assert rank_one(P[1], C[1], Policy("threshold", threshold=0.5)) == [1, 2, 0]


def test_tradeoff_weighs_quality_against_cost() -> None:
    assert choose(P, C, Policy("tradeoff", lam=0.0)).tolist() == [2, 2, 2]
    assert choose(P, C, Policy("tradeoff", lam=2.0)).tolist() == [0, 1, 0]
    assert choose(P, C, Policy("tradeoff", lam=100.0)).tolist() == [0, 0, 0]
    assert rank_one(P[0], C[0], Policy("tradeoff", lam=0.5)) == [1, 0, 2]


def test_a_target_takes_the_cheapest_point_of_the_curve_reaching_it() -> None:
    curve = [CurvePoint(0.0, 1.0, 1.0), CurvePoint(0.1, 0.96, 0.3), CurvePoint(1.0, 0.8, 0.05)]
    assert lambda_for_target(curve, 0.95) == 0.1
    assert lambda_for_target(curve, 0.5) == 1.0
    assert lambda_for_target(curve, 1.01) is None
