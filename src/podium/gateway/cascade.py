"""Cascades: the cheapest tier answers first, a stronger tier only when the answer looks unsure.

:class:`~podium.gateway.routing.CascadeStrategy` ranks a group's deployments by tier (and starts
one tier up for a request its scorer finds hard); :func:`run_cascade` then calls the tiers in
that order and judges each answer before it is kept. Two judges: :func:`heuristic_confidence`
(one answer's own signs of doubt: empty, refused, cut, hedged, invalid JSON) behind the
:class:`ConfidenceFn` protocol, and :func:`agreement` (two deployments of the tier answer at once
and must agree). Every answer a cascade paid for is in the :class:`CascadeResult`, so the
pipeline bills and records each one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Literal, Protocol

from podium.errors import BadModelRequest
from podium.gateway.resilience import CallFailed, Outcome
from podium.gateway.routing import Deployment, RouteDecision, Score
from podium.models.base import ChatRequest, ChatResponse

__all__ = [
    "CascadeJudge",
    "CascadeResult",
    "CascadeStep",
    "ConfidenceFn",
    "agreement",
    "agreement_key",
    "heuristic_confidence",
    "run_cascade",
]

CascadeJudge = Literal["confidence", "agreement"]
"""How a cascade judges a tier's answer (see :func:`run_cascade`)."""


class ConfidenceFn(Protocol):
    """How sure an answer looks (0 unsure … 1 sure)."""

    def __call__(self, request: ChatRequest, response: ChatResponse) -> Score: ...


_HEDGES = re.compile(
    r"\b(i'?m not (sure|certain)|i don'?t know|not entirely sure|i think|possibly|perhaps|"
    r"maybe|might be|it'?s unclear|i cannot be certain|hard to say)\b",
    re.I,
)
_REFUSALS = re.compile(
    r"\b(i can'?t|i cannot|i'?m unable to|i won'?t) (help|assist|answer|do)", re.I
)


def heuristic_confidence(request: ChatRequest, response: ChatResponse) -> Score:
    """Unsure when the answer is empty, a refusal, invalid JSON where JSON was asked for, cut
    by ``max_tokens``, or hedged."""
    text = response.text.strip()
    if not text and not response.tool_calls:
        return Score(0.0, ("empty answer",))
    if response.finish_reason == "content_filter" or _REFUSALS.search(text):
        return Score(0.0, ("refusal",))
    if request.response_format != "text" and not response.tool_calls:
        try:
            json.loads(text)
        except ValueError:
            return Score(0.0, ("invalid JSON",))
    if response.finish_reason == "length":
        return Score(0.3, ("cut at max_tokens",))
    hedges = sorted({m.group(0).lower() for m in _HEDGES.finditer(text)})
    if hedges:
        return Score(max(0.1, 1.0 - 0.3 * len(hedges)), tuple(f"hedging: {h!r}" for h in hedges))
    return Score(1.0)


@dataclass(frozen=True, slots=True)
class CascadeStep:
    """One tier of a cascade: what it answered (or how it failed) and how sure it looked."""

    tier: int
    outcome: Outcome[ChatResponse] | None
    error: CallFailed | None = None
    confidence: Score | None = None
    others: tuple[Outcome[ChatResponse], ...] = ()
    """Further answers of the tier, asked only to judge ``outcome`` (agreement): billed too."""


@dataclass(frozen=True, slots=True)
class CascadeResult:
    outcome: Outcome[ChatResponse]
    """The answer kept (the last tier tried that answered)."""
    steps: tuple[CascadeStep, ...]
    unsure: bool
    """Even the last tier's answer scored below the threshold."""

    @property
    def escalated(self) -> bool:
        return len(self.steps) > 1


_OPTION = re.compile(
    r"^\s*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)?"
    r"[(\[]?([A-Ha-h1-8])[)\].:]?(?:\s|$)",
    re.I,
)


def agreement_key(text: str) -> str:
    """What two answers must share to agree: the option of a lettered or numbered answer
    (``B``, ``(B) Paris``, ``Answer: B.``), else the text case-folded with its whitespace
    collapsed and its closing punctuation dropped."""
    found = _OPTION.match(text)
    if found:
        return "option " + found.group(1).upper()
    return " ".join(text.casefold().split()).rstrip(".!;:")


def agreement(request: ChatRequest, first: ChatResponse, second: ChatResponse) -> Score:
    """Sure (1) when two models' answers agree (:func:`agreement_key`; tool calls by name and
    arguments) and the first shows no sign of doubt (:func:`heuristic_confidence`: empty,
    refused, cut, hedged…); unsure (0) otherwise."""
    own = heuristic_confidence(request, first)
    if own.value < 1.0:
        return Score(0.0, own.reasons)
    if first.tool_calls or second.tool_calls:
        same = [(c.name, c.arguments) for c in first.tool_calls] == [
            (c.name, c.arguments) for c in second.tool_calls
        ]
    else:
        same = agreement_key(first.text) == agreement_key(second.text)
    return Score(1.0, ("answers agree",)) if same else Score(0.0, ("answers disagree",))


async def _judged_by_agreement(
    deployments: Sequence[Deployment],
    call: Callable[[Sequence[Deployment]], Awaitable[Outcome[ChatResponse]]],
    request: ChatRequest,
) -> CascadeStep:
    """Ask the tier's first two deployments at once; sure only when they agree. Both are billed;
    one failing leaves the other's answer unconfirmed (escalated)."""
    tier = deployments[0].tier
    results = await asyncio.gather(
        call(deployments[:1]), call(deployments[1:2]), return_exceptions=True
    )
    answered = [r for r in results if not isinstance(r, BaseException)]
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, CallFailed):
            raise r
    if not answered:
        failure = results[0]
        assert isinstance(failure, CallFailed)
        return CascadeStep(tier, None, error=failure)
    if len(answered) == 1:
        unconfirmed = Score(0.0, ("one of the two models failed: no agreement to judge by",))
        return CascadeStep(tier, answered[0], confidence=unconfirmed)
    first, second = answered
    return CascadeStep(
        tier,
        first,
        confidence=agreement(request, first.value, second.value),
        others=(second,),
    )


async def run_cascade(
    decision: RouteDecision,
    call: Callable[[Sequence[Deployment]], Awaitable[Outcome[ChatResponse]]],
    request: ChatRequest,
    *,
    confidence: ConfidenceFn = heuristic_confidence,
    threshold: float = 0.5,
    judge: CascadeJudge = "confidence",
) -> CascadeResult:
    """Call the decision's tiers in ranked order (each tier's deployments given to ``call``
    together, so it can fall back within the tier), moving up to a *stronger* tier while the
    answer looks unsure or the tier failed outright.

    ``judge`` says how an answer is judged below the top tier: ``confidence`` scores it alone
    (``confidence`` < ``threshold`` escalates); ``agreement`` asks the tier's two first
    deployments at once and escalates unless their answers agree (the top tier is asked once
    and kept). Agreement is real per-request evidence where one-model confidence has little:
    on RouterBench's lettered tasks two cheap models that agree are right far more often than
    either alone (``benchmarks/README.md``, learned router).

    When the top tier fails, the last answer a lower tier gave is kept (``unsure``): it was
    billed, and an unsure answer beats none; with no answer at all the failure is raised.

    Not for streams: judging needs the whole answer, so a streamed request relies on the
    :class:`CascadeStrategy` ranking (the scorer) alone."""
    tiers = [(tier, tuple(group)) for tier, group in groupby(decision.ranked, key=lambda d: d.tier)]
    steps: list[CascadeStep] = []
    for i, (tier, deployments) in enumerate(tiers):
        last = i + 1 == len(tiers) or tiers[i + 1][0] <= tier  # only ever escalate upwards
        if judge == "agreement" and not last and len(deployments) > 1:
            step = await _judged_by_agreement(deployments, call, request)
            steps.append(step)
            if step.outcome is None:
                assert step.error is not None
                if isinstance(step.error.last_error, BadModelRequest):
                    raise step.error
                continue
            assert step.confidence is not None
            if step.confidence.value >= threshold:
                return CascadeResult(step.outcome, tuple(steps), unsure=False)
            continue
        try:
            outcome = await call(deployments)
        except CallFailed as failure:
            steps.append(CascadeStep(tier, None, error=failure))
            if isinstance(failure.last_error, BadModelRequest):
                raise
            if last:
                earlier = [st.outcome for st in steps if st.outcome is not None]
                if not earlier:
                    raise
                # The stronger tiers are down: an unsure answer (billed already) beats none.
                return CascadeResult(earlier[-1], tuple(steps), unsure=True)
            continue
        sure = confidence(request, outcome.value)
        steps.append(CascadeStep(tier, outcome, confidence=sure))
        if sure.value >= threshold or last:
            return CascadeResult(outcome, tuple(steps), unsure=sure.value < threshold)
    raise AssertionError("a route decision always ranks at least one deployment")
