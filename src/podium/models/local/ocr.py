"""OCR with Tesseract (Debian ``tesseract-ocr`` and its language packs) through ``pytesseract``.

One ``tesseract`` run per image yields both the text and the word table (TSV); the confidence is
the mean of the recognised words' confidences, scaled to 0..1. ``OCRRequest.languages`` are
Tesseract's codes (``eng``, ``spa``, ``deu``…); each must be installed (Debian package
``tesseract-ocr-<code>``).
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from typing import Any

from podium.errors import BadModelRequest, LocalModelUnavailable, ProviderTimeout
from podium.models.base import Capability, OCRRequest, OCRResponse, Usage
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import (
    LOCAL_PRICES,
    PROVIDER,
    LocalModel,
    Requirement,
    decode_image,
)


@dataclass(frozen=True, slots=True)
class Tesseract:
    """The ``pytesseract`` module, with what the installed ``tesseract`` offers."""

    module: Any
    version: str
    languages: frozenset[str]
    formats: frozenset[str]
    """Image formats ``pytesseract`` hands to ``tesseract`` as they are."""


def mean_word_confidence(tsv: str) -> float:
    """Mean confidence (0..1) of the words in Tesseract's TSV output; 0 when there are none."""
    rows = csv.DictReader(tsv.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    confidences = []
    for row in rows:
        if row.get("level") != "5" or not (row.get("text") or "").strip():
            continue
        try:
            conf = float(row["conf"])
        except (KeyError, TypeError, ValueError):
            continue
        if conf >= 0:
            confidences.append(conf)
    return sum(confidences) / len(confidences) / 100 if confidences else 0.0


class TesseractOCR(LocalModel[Tesseract]):
    """``local/tesseract-ocr``: the text of an image, with Tesseract's confidence."""

    info = ModelInfo(
        name="local/tesseract-ocr",
        provider=PROVIDER,
        provider_model="tesseract",
        capabilities=frozenset({Capability.OCR}),
        prices=LOCAL_PRICES,
        local=True,
        description="Tesseract OCR (LSTM engine); English installed, other languages by package.",
        extra={"pip": "pytesseract", "debian": "tesseract-ocr tesseract-ocr-eng"},
    )
    requires = (
        Requirement(module="pytesseract", pip="pytesseract"),
        Requirement(module="PIL.Image", pip="pillow"),
        Requirement(program="tesseract", debian="tesseract-ocr tesseract-ocr-eng"),
    )
    max_concurrency = 2
    """Each run is a ``tesseract`` process that may itself use several cores."""
    timeout_s = 120
    """Seconds one image may take before the run is killed."""

    def load(self) -> Tesseract:
        import pytesseract  # type: ignore[import-untyped]

        # One OpenMP thread per tesseract process unless the user chose otherwise: OpenMP's
        # busy-waiting threads make a page 3-4x slower on a loaded machine (1.7 s → 0.45 s on two
        # busy cores), and ``max_concurrency`` processes already share the cores.
        pytesseract.pytesseract.environ = {"OMP_THREAD_LIMIT": "1", **os.environ}
        version = str(pytesseract.get_tesseract_version())
        languages = frozenset(str(code) for code in pytesseract.get_languages(config=""))
        formats = frozenset(pytesseract.pytesseract.SUPPORTED_FORMATS)
        return Tesseract(pytesseract, version, languages, formats)

    def served_by(self, engine: Tesseract) -> str:
        return f"tesseract-{engine.version}"

    async def ocr(self, request: OCRRequest) -> OCRResponse:
        """Recognise the text of ``request.image`` in ``request.languages``."""
        start = time.perf_counter()
        languages = list(request.languages) or ["eng"]
        image = request.image

        def recognise(engine: Tesseract) -> tuple[str, float]:
            missing = [code for code in languages if code not in engine.languages]
            if missing:
                packages = " ".join(f"tesseract-ocr-{code}" for code in missing)
                raise LocalModelUnavailable(
                    f"{self.name}: Tesseract has no data for {', '.join(missing)} (installed: "
                    f"{', '.join(sorted(engine.languages))}); install `sudo apt-get install "
                    f"{packages}`",
                    provider=self.provider,
                    model=self.name,
                )
            picture = decode_image(image, model=self.name)
            if picture.format not in engine.formats:
                picture = picture.convert("RGB")  # written out as PNG for tesseract
            try:
                text, tsv = engine.module.run_and_get_multiple_output(
                    picture,
                    extensions=["txt", "tsv"],
                    lang="+".join(languages),
                    timeout=self.timeout_s,
                )
            except engine.module.TesseractError as exc:
                raise BadModelRequest(
                    f"{self.name}: tesseract could not read the image: {exc}",
                    provider=self.provider,
                    model=self.name,
                ) from exc
            except RuntimeError as exc:  # pytesseract's timeout ("Tesseract process timeout")
                raise ProviderTimeout(
                    f"{self.name}: tesseract took longer than {self.timeout_s} s ({exc})",
                    provider=self.provider,
                    model=self.name,
                ) from exc
            return str(text).strip(), mean_word_confidence(str(tsv))

        (text, confidence), served = await self.run(recognise)
        return OCRResponse(
            text=text,
            confidence=confidence,
            model_served=served,
            provider=self.provider,
            usage=Usage(images=1),
            latency_s=time.perf_counter() - start,
        )
