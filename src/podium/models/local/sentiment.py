"""Sentiment with VADER (``vaderSentiment``): a lexicon and rules, shipped inside the package.

Each input gets the labels ``positive``, ``negative`` and ``neutral``. The first label is VADER's
verdict from its normalised *compound* score (``>= 0.05`` positive, ``<= -0.05`` negative, else
neutral — the thresholds VADER's authors recommend); the scores are VADER's proportions of the
text that read positive, negative and neutral. Those proportions do not decide the verdict (an
angry e-mail is mostly neutral words), so read the first label, and ``compound`` for strength.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podium.models.base import Capability, ClassifyRequest, ClassifyResponse, LabelScore, Usage
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import LOCAL_PRICES, PROVIDER, LocalModel, Requirement

POSITIVE_AT = 0.05
"""Compound score from which a text is ``positive`` (and ``<= -POSITIVE_AT`` ``negative``)."""


@dataclass(frozen=True, slots=True)
class SentimentResponse(ClassifyResponse):
    """A :class:`ClassifyResponse` that also carries VADER's compound score per input."""

    compound: Sequence[float] = ()
    """Per input, from -1 (most negative) to 1 (most positive)."""


def verdict(compound: float) -> str:
    """VADER's label for a compound score."""
    if compound >= POSITIVE_AT:
        return "positive"
    if compound <= -POSITIVE_AT:
        return "negative"
    return "neutral"


def labels(scores: dict[str, float]) -> list[LabelScore]:
    """VADER's ``polarity_scores`` as labels: the verdict first, then the rest by proportion."""
    first = verdict(scores["compound"])
    proportions = {
        "positive": scores["pos"],
        "negative": scores["neg"],
        "neutral": scores["neu"],
    }
    rest = sorted((k for k in proportions if k != first), key=lambda k: -proportions[k])
    return [LabelScore(k, float(proportions[k])) for k in (first, *rest)]


class VaderSentiment(LocalModel[Any]):
    """``local/vader-sentiment``: classify text as positive, negative or neutral."""

    info = ModelInfo(
        name="local/vader-sentiment",
        provider=PROVIDER,
        provider_model="vader-lexicon",
        capabilities=frozenset({Capability.CLASSIFY}),
        prices=LOCAL_PRICES,
        local=True,
        description="VADER rule-based sentiment (English): positive / negative / neutral with "
        "the compound score.",
        extra={"pip": "vaderSentiment", "license": "MIT"},
    )
    requires = (Requirement(module="vaderSentiment.vaderSentiment", pip="vaderSentiment"),)
    max_concurrency = 1
    """Pure Python under the GIL: a second thread would add no throughput."""

    def load(self) -> Any:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

        return SentimentIntensityAnalyzer()

    async def classify(self, request: ClassifyRequest) -> SentimentResponse:
        """Label each input; ``request.labels`` is ignored (the labels are fixed)."""
        start = time.perf_counter()
        texts = list(request.inputs)
        scores, served = await self.run(
            lambda analyzer: [analyzer.polarity_scores(text) for text in texts]
        )
        return SentimentResponse(
            results=[labels(s) for s in scores],
            compound=[float(s["compound"]) for s in scores],
            model_served=served,
            provider=self.provider,
            usage=Usage(characters=sum(len(t) for t in texts)),
            latency_s=time.perf_counter() - start,
        )
