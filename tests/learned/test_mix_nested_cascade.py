"""Mixed operating points (two λs split by request key), nested selection of the operating point,
the lookup predictor, and single models and cascades as one router's actions."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from podium.gateway.learned.cascade import (
    cascade_actions,
    options,
    routed_cascade,
    routed_cascade_at,
    same_wrong_share,
)
from podium.gateway.learned.data import Example, parse_examples
from podium.gateway.learned.evaluate import (
    Outcomes,
    Predictions,
    grouped_folds,
    keys_of,
    lookup_predictions,
    mixed_sweep,
    nested_target,
    per_fold,
    policy_of,
    sweep,
)
from podium.gateway.learned.policy import (
    CurvePoint,
    Policy,
    choose,
    hull,
    mix_for_target,
    rank_one,
    request_key,
)

CURVE = (
    CurvePoint(0.0, 1.0, 1.0),
    CurvePoint(0.05, 0.97, 0.8),  # under the segment 0.1 -> 0.0: never worth it
    CurvePoint(0.1, 0.96, 0.3),
    CurvePoint(0.5, 0.90, 0.25),  # dearer than 1.0 and no more accurate than 0.1 per cost
    CurvePoint(1.0, 0.80, 0.05),
)


def test_the_hull_keeps_only_points_no_mix_beats() -> None:
    assert [pt.lam for pt in hull(CURVE)] == [1.0, 0.1, 0.0]


def test_a_target_between_two_vertices_mixes_them() -> None:
    at_vertex = mix_for_target(CURVE, 0.96)
    assert at_vertex is not None
    assert (at_vertex.lam, at_vertex.lam_alt) == (0.1, None)
    mixed = mix_for_target(CURVE, 0.88)
    assert mixed is not None
    assert (mixed.lam, mixed.lam_alt, mixed.share_alt) == (1.0, 0.1, 0.5)
    assert "50% of requests at λ=0.1" in mixed.describe()
    assert mix_for_target(CURVE, 0.5) == Policy("target", lam=1.0, target=0.5)
    assert mix_for_target(CURVE, 1.01) is None


def test_request_keys_are_stable_and_split_requests_by_share() -> None:
    assert request_key("hello") == request_key("hello")
    keys = np.array([request_key(f"request {i}") for i in range(2000)])
    assert ((keys >= 0) & (keys < 1)).all()
    assert abs(float((keys < 0.3).mean()) - 0.3) < 0.05
    p = np.tile([0.5, 0.9], (2000, 1))
    c = np.tile([0.0, 1.0], (2000, 1))
    policy = Policy("tradeoff", lam=1.0, lam_alt=0.0, share_alt=0.3)  # λ=1: cheap, λ=0: dear
    chosen = choose(p, c, policy, keys)
    assert (chosen == (keys < 0.3)).all()
    assert choose(p, c, policy).tolist() == [0] * 2000  # no keys: the first λ everywhere
    assert rank_one(p[0], c[0], policy, 0.1) == [1, 0]
    assert rank_one(p[0], c[0], policy, 0.9) == [0, 1]


def test_mixed_points_fill_the_gaps_between_hull_vertices(examples: list[Example]) -> None:
    outcomes = Outcomes.of(examples)
    folds = grouped_folds(examples, 4)
    y = outcomes.quality
    cost = np.array([[float(c) for c in row] for row in outcomes.costs])
    pred = lookup_predictions(
        y, cost, [e.task for e in examples], folds, outcomes.premium_index, keys_of(examples)
    )
    points = sweep(outcomes, pred)
    mixed = mixed_sweep(outcomes, pred, points, steps=4)
    assert mixed
    assert all(pt.lam_alt is not None and 0 < pt.share_alt < 1 for pt in mixed)
    lo, hi = min(pt.cost_ratio for pt in points), max(pt.cost_ratio for pt in points)
    assert all(lo <= pt.cost_ratio <= hi for pt in mixed)
    # per fold, the mixed policy is the same one
    spread = per_fold(outcomes, pred, policy_of(mixed[0]))
    assert len(spread) == 4
    assert all(f.lam_alt == mixed[0].lam_alt for f in spread)


def test_lookup_predictions_use_the_training_folds_only() -> None:
    quality = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    cost = np.array([[1.0, 2.0]] * 4)
    folds = np.array([0, 0, 1, 1])
    pred = lookup_predictions(quality, cost, ["t", "t", "t", None], folds, premium=1)
    # fold 1's row "t" sees rows 0 and 1 only: (2 + 0.5) / 3 and (1 + 0.5) / 3
    assert pred.p[2].tolist() == pytest.approx([2.5 / 3, 1.5 / 3])
    assert pred.p[3].tolist() == pytest.approx([2.5 / 3, 1.5 / 3])  # no tag: every row
    assert pred.c[2].tolist() == pytest.approx([0.5, 1.0])


def test_nested_target_picks_each_folds_point_on_the_others(examples: list[Example]) -> None:
    outcomes = Outcomes.of(examples)
    folds = grouped_folds(examples, 4)
    cost = np.array([[float(c) for c in row] for row in outcomes.costs])
    tasks = [e.task for e in examples]
    pred = lookup_predictions(
        outcomes.quality, cost, tasks, folds, outcomes.premium_index, keys_of(examples)
    )
    pooled, per = nested_target(outcomes, pred, 0.9)
    assert pooled is not None
    assert len(per) == 4
    assert all(pt.label.startswith(f"fold {k}: target 0.9") for k, pt in enumerate(per))
    assert nested_target(outcomes, pred, 1.5) == (None, [])
    # an all-zero prediction cannot reach a target above the cheapest model's accuracy
    flat = Predictions(np.zeros_like(pred.p), pred.c, folds, pred.keys)
    assert nested_target(outcomes, flat, 0.99)[0] is None


def test_cascade_actions_exist_only_for_lettered_options(examples: list[Example]) -> None:
    outcomes = Outcomes.of(examples)
    table, valid = cascade_actions(examples, outcomes, [("mid", "cheap")], "pessimistic")
    assert table.models == ("cheap", "mid", "premium", "cascade mid+cheap→premium")
    lettered = np.array([options(e.prompt) >= 2 for e in examples])
    assert lettered.any()
    assert not lettered.all()
    assert (valid[:, 3] == lettered).all()
    assert valid[:, :3].all()
    # a row where mid is right and cheap wrong escalates: premium's quality, three calls paid
    i = next(i for i, e in enumerate(examples) if lettered[i] and int(e.id[1:]) % 3 == 1)
    assert table.quality[i, 3] == outcomes.quality[i, 2]
    assert table.costs[i][3] == sum(outcomes.costs[i][j] for j in range(3))


def test_router_with_cascades_reports_bounds_and_the_conservative_pair(
    examples: list[Example],
) -> None:
    outcomes = Outcomes.of(examples)
    folds = grouped_folds(examples, 4)
    got = routed_cascade(examples, outcomes, folds, [("mid", "cheap")], target=0.9)
    assert got is not None
    low, high, cons = (got.pooled[b] for b in ("pessimistic", "optimistic", "conservative"))
    assert cons.accuracy == low.accuracy
    assert cons.cost_ratio == high.cost_ratio
    assert low.accuracy <= high.accuracy
    assert low.cost_ratio <= high.cost_ratio
    assert len(got.per_fold["conservative"]) == 4
    assert sum(got.shares.values()) == pytest.approx(1.0)


def _four_options(right: dict[str, int]) -> Example:
    prompt = "Which is a prime?\nA) 4\nB) 6\nC) 7\nD) 9\nAnswer:"
    costs = {"cheap": "0.0001", "mid": "0.0004", "premium": "0.005"}
    models = {m: {"correct": right[m], "cost_usd": float(c)} for m, c in costs.items()}
    row = {"id": "q1", "task": "quiz", "prompt": prompt, "models": models}
    return parse_examples([json.dumps(row)])[0]


def test_a_same_wrong_share_scores_two_wrong_answers_in_expectation() -> None:
    # both cheap answers wrong on a four-option question: the data cannot tell whether they
    # named the same option; a share of 0.25 agrees a quarter of the time
    examples = [_four_options({"cheap": 0, "mid": 0, "premium": 1})]
    outcomes = Outcomes.of(examples)
    at = {
        bound: cascade_actions(examples, outcomes, [("mid", "cheap")], bound)[0]
        for bound in ("pessimistic", "optimistic", 0.25)
    }
    assert at["pessimistic"].quality[0, 3] == 0.0  # agreed on a wrong answer, kept it
    assert at["optimistic"].quality[0, 3] == 1.0  # escalated to the premium model
    assert at[0.25].quality[0, 3] == pytest.approx(0.75)
    calls = Decimal("0.0001") + Decimal("0.0004")
    assert at["pessimistic"].costs[0][3] == calls
    assert at["optimistic"].costs[0][3] == calls + Decimal("0.005")
    assert at[0.25].costs[0][3] == calls + Decimal("0.75") * Decimal("0.005")
    # exact money: 1 - 0.8 is 0.2, not the float 0.19999999999999996
    dear = cascade_actions(examples, outcomes, [("mid", "cheap")], 0.8)[0]
    assert dear.costs[0][3] == calls + Decimal("0.2") * Decimal("0.005")
    # where the data tells (one right, one wrong), the share changes nothing
    told = [_four_options({"cheap": 0, "mid": 1, "premium": 1})]
    told_outcomes = Outcomes.of(told)
    low = cascade_actions(told, told_outcomes, [("mid", "cheap")], 0.9)[0]
    assert low.quality[0, 3] == 1.0
    assert low.costs[0][3] == calls + Decimal("0.005")


def test_a_same_wrong_share_is_a_probability() -> None:
    assert same_wrong_share("pessimistic") == 1.0
    assert same_wrong_share("optimistic") == 0.0
    assert same_wrong_share(0.4) == 0.4
    with pytest.raises(ValueError, match="between 0 and 1"):
        same_wrong_share(1.5)


def test_the_router_with_cascades_at_a_share_matches_its_bounds(
    examples: list[Example],
) -> None:
    # the synthetic quiz is two-choice, so agreement is exact and every share scores alike
    outcomes = Outcomes.of(examples)
    folds = grouped_folds(examples, 4)
    bounds = routed_cascade(examples, outcomes, folds, [("mid", "cheap")], target=0.9)
    half = routed_cascade_at(examples, outcomes, folds, [("mid", "cheap")], 0.5, target=0.9)
    assert bounds is not None
    assert half is not None
    pooled, per = half
    assert pooled.accuracy == pytest.approx(bounds.pooled["pessimistic"].accuracy)
    assert pooled.cost_ratio == pytest.approx(bounds.pooled["pessimistic"].cost_ratio)
    assert len(per) == 4
