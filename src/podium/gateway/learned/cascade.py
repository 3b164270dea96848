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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, localcontext
from typing import Literal

import numpy as np

from podium.finops.ledger import EXACT
from podium.gateway.learned.data import Example
from podium.gateway.learned.evaluate import Outcomes, Point, point
from podium.gateway.learned.features import question_of

__all__ = ["Bound", "agreement_cascade", "two_choice"]

Bound = Literal["pessimistic", "optimistic"]

_OPTION = re.compile(r"^\s*\(?([A-H])[).:]\s", re.M)


def two_choice(prompt: str) -> bool:
    """The question offers exactly two lettered options."""
    return len(set(_OPTION.findall(question_of(prompt)))) == 2


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
