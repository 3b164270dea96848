"""Cascade mode on correctness-only data: two cheap models answer; when they agree, keep the
first one's answer; when they disagree, escalate to the premium model.

The confidence proxy is *agreement between two cheap models* (self-consistency across models).
The data holds whether each answer was correct, not the answers, so agreement is known exactly
only in part:

- one right and one wrong: they disagree (exact);
- both right: they agree (exact for exact-match grading);
- both wrong: on a two-choice question (two options ``A)``/``B)`` in the question) they gave
  the same wrong answer, so they agree (exact). Otherwise the data cannot tell: the
  ``pessimistic`` bound counts them as agreeing (a wrong answer kept, no escalation — a lower
  bound on accuracy and cost), the ``optimistic`` bound as disagreeing (escalated — an upper
  bound on both).

Cost is what the cascade pays: both cheap calls, plus the premium call when it escalates.

:func:`routed_cascade` puts cascades beside single models as the *actions* a router chooses
from, per request: a cascade only where answers are lettered options (exact-match; free-form
answers such as code have no well-defined agreement), each action's quality and cost predicted
by its per-task rates on the training folds (the text carries next to no per-prompt signal on
RouterBench, see ``benchmarks/README.md``), the operating point picked by nested
cross-validation, and the result reported under both bounds and under the *conservative*
pairing of the pessimistic accuracy with the optimistic cost — never the optimistic side alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from podium.finops.ledger import EXACT
from podium.gateway.learned.data import Example
from podium.gateway.learned.evaluate import (
    Outcomes,
    Point,
    keys_of,
    lookup_predictions,
    nested_choices,
    point,
    score_folds,
)
from podium.gateway.learned.features import Matrix, question_of
from podium.gateway.learned.policy import Policy

__all__ = [
    "Bound",
    "RoutedCascade",
    "agreement_cascade",
    "cascade_actions",
    "options",
    "routed_cascade",
    "routed_cascade_at",
    "same_wrong_share",
    "two_choice",
]

Bound = Literal["pessimistic", "optimistic"]

_OPTION = re.compile(r"^\s*\(?([A-H])[).:]\s", re.M)


def options(prompt: str) -> int:
    """How many lettered options (``A)``, ``B)``…) the question offers (0: a free-form answer)."""
    return len(set(_OPTION.findall(question_of(prompt))))


def two_choice(prompt: str) -> bool:
    """The question offers exactly two lettered options."""
    return options(prompt) == 2


def agreement_cascade(
    examples: Sequence[Example],
    outcomes: Outcomes,
    first: str,
    second: str,
    *,
    bound: Bound = "pessimistic",
    rows: Sequence[int] | None = None,
) -> Point:
    """Score the cascade ``first`` + ``second`` → premium on ``rows`` (all)."""
    rows = list(range(len(examples))) if rows is None else list(rows)
    a, b, top = (outcomes.models.index(m) for m in (first, second, outcomes.premium))
    kept = []
    chosen = []
    with localcontext(EXACT):
        paid = Decimal(0)
        for i in rows:
            qa, qb = outcomes.quality[i, a] >= 0.5, outcomes.quality[i, b] >= 0.5
            if qa != qb:
                agree = False
            elif qa:
                agree = True
            else:
                agree = two_choice(examples[i].prompt) or bound == "pessimistic"
            paid += outcomes.costs[i][a] + outcomes.costs[i][b]
            if agree:
                kept.append(outcomes.quality[i, a])
                chosen.append(a)
            else:
                paid += outcomes.costs[i][top]
                kept.append(outcomes.quality[i, top])
                chosen.append(top)
    label = f"cascade {short(first)}+{short(second)}→{short(outcomes.premium)} ({bound})"
    return point(
        outcomes, chosen, rows, label, paid=paid, accuracy=float(np.mean(kept)) if kept else 0.0
    )


def short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def cheap_pairs(outcomes: Outcomes, limit: int = 4) -> list[tuple[str, str]]:
    """Pairs among the ``limit`` most accurate models that are cheaper than the premium one
    (the more accurate of the pair answers)."""
    rows = list(range(len(outcomes.costs)))
    premium_cost = outcomes.single(outcomes.premium_index, rows)[1]
    cheap = [
        j
        for j in range(len(outcomes.models))
        if j != outcomes.premium_index and outcomes.single(j, rows)[1] < premium_cost / 4
    ]
    cheap.sort(key=lambda j: -outcomes.quality[:, j].mean())
    top = [outcomes.models[j] for j in cheap[:limit]]
    return [(x, y) for n, x in enumerate(top) for y in top[n + 1 :]]


def same_wrong_share(bound: Bound | float) -> float:
    """The share of both-wrong answers on a question of more than two options that are the
    same wrong option (so the cascade agrees on them and keeps a wrong answer): 1 for the
    ``pessimistic`` bound, 0 for the ``optimistic`` one, or a share in between."""
    if bound == "pessimistic":
        return 1.0
    if bound == "optimistic":
        return 0.0
    share = float(bound)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a same-wrong share is between 0 and 1, not {share}")
    return share


def cascade_actions(
    examples: Sequence[Example],
    outcomes: Outcomes,
    pairs: Sequence[tuple[str, str]],
    bound: Bound | float,
) -> tuple[Outcomes, NDArray[np.bool_]]:
    """Every single model and every cascade ``first + second → premium`` of ``pairs`` as
    columns of one :class:`Outcomes` (what each would score and pay on each row under
    ``bound``), and where each is available (rows x actions): a cascade only on questions with
    lettered options.

    ``bound`` may be a share (:func:`same_wrong_share`): then a row where both cheap answers
    are wrong on a question of more than two options scores and pays the *expected* outcome,
    agreeing with that probability — fractional quality, and the premium call's cost times the
    escalation probability."""
    n, m = len(examples), len(outcomes.models)
    top = outcomes.premium_index
    lettered = np.array([options(e.prompt) >= 2 for e in examples])
    exact = np.array([two_choice(e.prompt) for e in examples])
    same = same_wrong_share(bound)
    unsure = _ONE - Decimal(repr(same))  # the escalation's probability, exact: 1 - 0.8 = 0.2
    quality = [outcomes.quality[:, j] for j in range(m)]
    costs = [[outcomes.costs[i][j] for i in range(n)] for j in range(m)]
    valid = [np.ones(n, dtype=bool) for _ in range(m)]
    names = list(outcomes.models)
    with localcontext(EXACT):
        for first, second in pairs:
            a, b = outcomes.models.index(first), outcomes.models.index(second)
            qa, qb = outcomes.quality[:, a] >= 0.5, outcomes.quality[:, b] >= 0.5
            # probability the two answers agree: 0 or 1 where the data tells, else ``same``
            agree = np.where(qa != qb, 0.0, np.where(qa | exact, 1.0, same))
            quality.append(
                agree * outcomes.quality[:, a] + (1.0 - agree) * outcomes.quality[:, top]
            )
            escalate = [_ONE if p == 0.0 else _ZERO if p == 1.0 else unsure for p in agree]
            costs.append(
                [
                    outcomes.costs[i][a]
                    + outcomes.costs[i][b]
                    + (escalate[i] * outcomes.costs[i][top] if escalate[i] else Decimal(0))
                    for i in range(n)
                ]
            )
            valid.append(lettered)
            names.append(f"cascade {short(first)}+{short(second)}→{short(outcomes.premium)}")
    table = Outcomes(
        tuple(names),
        np.array(quality, dtype=np.float64).T,
        tuple(tuple(col[i] for col in costs) for i in range(n)),
        outcomes.premium,
    )
    return table, np.array(valid).T


@dataclass(frozen=True)
class RoutedCascade:
    """:func:`routed_cascade`'s result: the same per-request choices scored under each bound,
    and conservatively (pessimistic accuracy, optimistic cost)."""

    actions: tuple[str, ...]
    pooled: dict[str, Point]
    """``pessimistic``, ``optimistic``, ``conservative`` → every row."""
    per_fold: dict[str, list[Point]]
    shares: dict[str, float]
    """Share of requests per action chosen at least once."""


def routed_cascade(
    examples: Sequence[Example],
    outcomes: Outcomes,
    folds: NDArray[np.intp],
    pairs: Sequence[tuple[str, str]],
    *,
    target: float = 0.95,
    decide: Bound = "pessimistic",
) -> RoutedCascade | None:
    """Route each request to a single model or a cascade (:func:`cascade_actions`), with
    per-task lookup predictions under the ``decide`` bound and the ``target`` operating point
    picked by nested cross-validation over ``folds``; ``None`` when the target is not reached
    on some fold's training curve."""
    tables = {b: cascade_actions(examples, outcomes, pairs, b) for b in BOUNDS}
    table = tables[decide][0]
    got = _choose(examples, table, tables[decide][1], folds, target)
    if got is None:
        return None
    chosen, policies = got
    pooled: dict[str, Point] = {}
    per: dict[str, list[Point]] = {}
    for bound in BOUNDS:
        label = f"router + cascades ({bound})"
        pooled[bound], per[bound] = score_folds(tables[bound][0], chosen, folds, policies, label)
    pooled["conservative"] = _conservative(pooled["pessimistic"], pooled["optimistic"])
    per["conservative"] = [
        _conservative(a, b) for a, b in zip(per["pessimistic"], per["optimistic"], strict=True)
    ]
    shares = {
        name: round(float(np.mean(chosen == j)), 4)
        for j, name in enumerate(table.models)
        if np.any(chosen == j)
    }
    return RoutedCascade(table.models, pooled, per, shares)


BOUNDS: tuple[Bound, ...] = ("pessimistic", "optimistic")
_ONE, _ZERO = Decimal(1), Decimal(0)


def routed_cascade_at(
    examples: Sequence[Example],
    outcomes: Outcomes,
    folds: NDArray[np.intp],
    pairs: Sequence[tuple[str, str]],
    same_wrong: float,
    *,
    target: float = 0.95,
) -> tuple[Point, list[Point]] | None:
    """:func:`routed_cascade` decided *and* scored in expectation under one same-wrong share
    (:func:`same_wrong_share`): what the router would reach if that share of two cheap wrong
    answers to a question of more than two options named the same option. Pooled point and
    per-fold points; ``None`` when the target is not reached on some fold's training curve."""
    table, valid = cascade_actions(examples, outcomes, pairs, same_wrong)
    got = _choose(examples, table, valid, folds, target)
    if got is None:
        return None
    chosen, policies = got
    label = f"router + cascades (same-wrong share {same_wrong:g})"
    return score_folds(table, chosen, folds, policies, label)


def _choose(
    examples: Sequence[Example],
    table: Outcomes,
    valid: NDArray[np.bool_],
    folds: NDArray[np.intp],
    target: float,
) -> tuple[NDArray[np.intp], list[Policy]] | None:
    """Per-task lookup predictions of every action, then the ``target`` operating point by
    nested cross-validation (:func:`nested_choices`)."""
    cost: Matrix = np.array([[float(c) for c in row] for row in table.costs], dtype=np.float64)
    tasks = [e.task for e in examples]
    pred = lookup_predictions(
        table.quality, cost, tasks, folds, table.premium_index, keys_of(examples)
    )
    pred = replace(pred, p=np.where(valid, pred.p, -1e6))  # an unavailable action never wins
    return nested_choices(table, pred, target)


def _conservative(low: Point, high: Point) -> Point:
    """The accuracy of the pessimistic bound with the cost of the optimistic one."""
    return replace(
        low,
        label=low.label.replace("pessimistic", "conservative"),
        mean_cost=high.mean_cost,
        cost_ratio=high.cost_ratio,
        cost_vs_best=high.cost_vs_best,
    )
