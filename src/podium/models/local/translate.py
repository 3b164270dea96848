"""Rule-based translation with Apertium (Debian ``apertium`` and a pair: ``apertium-eng-spa``).

Each text is translated by one run of ``apertium -u <mode>`` (e.g. ``spa-eng``): a pipeline of
small programs, so texts of one request run in parallel up to ``max_concurrency``. Texts are not
joined into one run, because Apertium lets one sentence's context leak into the next.

Unknown-word marks: ``-u`` drops the ``*`` Apertium puts before words it does not know (the word
itself is kept untranslated — names, codes and typos pass through); the rarer ``#`` (a form the
generator could not inflect) and ``@`` (a word missing from the bilingual dictionary) marks are
removed too, unless the source text itself uses that character.

Every installed pair is offered: ``apertium -l`` lists them at load time, and requests use ISO
639-1 codes (``en``, ``es``), mapped to Apertium's ISO 639-3 (``eng``, ``spa``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from podium.errors import BadModelRequest, LocalModelUnavailable, ModelError, ProviderTimeout
from podium.models.base import Capability, TranslateRequest, TranslateResponse, Usage
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import (
    LOCAL_PRICES,
    PROVIDER,
    LocalModel,
    Requirement,
    require_program,
)

ISO_639_3: Mapping[str, str] = {
    "af": "afr", "an": "arg", "ar": "ara", "be": "bel", "bg": "bul", "br": "bre", "ca": "cat",
    "cs": "ces", "cy": "cym", "da": "dan", "de": "deu", "el": "ell", "en": "eng", "eo": "epo",
    "es": "spa", "eu": "eus", "fr": "fra", "ga": "gle", "gl": "glg", "hi": "hin", "id": "ind",
    "is": "isl", "it": "ita", "kk": "kaz", "mk": "mkd", "ms": "msa", "mt": "mlt", "nb": "nob",
    "nl": "nld", "nn": "nno", "oc": "oci", "pl": "pol", "pt": "por", "ro": "ron", "ru": "rus",
    "sc": "srd", "sh": "hbs", "sk": "slk", "sl": "slv", "sv": "swe", "tr": "tur", "uk": "ukr",
    "ur": "urd",
}  # fmt: skip
"""ISO 639-1 → the ISO 639-3 codes Apertium's pairs are named with."""
ISO_639_1: Mapping[str, str] = {three: two for two, three in ISO_639_3.items()}

_MARK = re.compile(r"(?<![\w#@])([#@])(?=\w)")


def apertium_code(code: str) -> str:
    """Apertium's code for an ISO 639-1 code (ISO 639-3 codes pass through; a region such as
    ``en-US`` is dropped)."""
    code = code.strip().lower().replace("_", "-").partition("-")[0]
    return ISO_639_3.get(code, code)


def iso_code(code: str) -> str:
    """The ISO 639-1 code for an Apertium code, where one exists."""
    return ISO_639_1.get(code, code)


def strip_marks(translated: str, source: str) -> str:
    """Remove Apertium's ``#``/``@`` marks at word starts, unless ``source`` uses that char."""
    kept = {c for c in "#@" if c in source}
    if len(kept) == 2:
        return translated
    return _MARK.sub(lambda m: m.group(1) if m.group(1) in kept else "", translated)


@dataclass(frozen=True, slots=True)
class Apertium:
    """The ``apertium`` program and its installed modes, keyed by (source, target) code."""

    program: str
    modes: Mapping[tuple[str, str], str]


def parse_modes(listing: str) -> dict[tuple[str, str], str]:
    """``apertium -l`` output → {(source, target): mode} for plain ``xxx-yyy`` modes."""
    modes: dict[tuple[str, str], str] = {}
    for mode in listing.split():
        source, _, target = mode.partition("-")
        if target and "-" not in target and "_" not in target:
            modes[(source, target)] = mode
    return modes


class ApertiumTranslator(LocalModel[Apertium]):
    """``local/apertium``: translate between the language pairs installed (English ↔ Spanish)."""

    info = ModelInfo(
        name="local/apertium",
        provider=PROVIDER,
        provider_model="apertium-eng-spa",
        capabilities=frozenset({Capability.TRANSLATE}),
        prices=LOCAL_PRICES,
        local=True,
        description="Apertium rule-based machine translation; English <-> Spanish installed.",
        extra={"debian": "apertium apertium-eng-spa", "license": "GPL-3.0"},
    )
    requires = (Requirement(program="apertium", debian="apertium apertium-eng-spa"),)
    max_concurrency = 4
    """Apertium runs a short pipeline of small processes per text."""
    timeout_s = 60
    """Seconds one text may take."""

    def load(self) -> Apertium:
        program = require_program("apertium", debian="apertium apertium-eng-spa", model=self.name)
        listing = subprocess.run(
            [program, "-l"], capture_output=True, text=True, timeout=30, check=False
        )
        modes = parse_modes(listing.stdout)
        if not modes:
            raise LocalModelUnavailable(
                f"{self.name}: no Apertium language pair is installed; install one, e.g. "
                "`sudo apt-get install apertium-eng-spa`",
                provider=self.provider,
                model=self.name,
            )
        return Apertium(program, modes)

    def _mode(self, engine: Apertium, source: str | None, target: str) -> tuple[str, str]:
        """The mode for a request, and its source language (inferred when only one fits)."""
        tgt = apertium_code(target)
        installed = ", ".join(f"{iso_code(s)}->{iso_code(t)}" for s, t in sorted(engine.modes))
        if source is None:
            sources = sorted(s for s, t in engine.modes if t == tgt)
            if len(sources) != 1:
                raise BadModelRequest(
                    f"{self.name}: give the source language to translate into {target!r} "
                    f"(installed pairs: {installed})",
                    provider=self.provider,
                    model=self.name,
                )
            src = sources[0]
        else:
            src = apertium_code(source)
        mode = engine.modes.get((src, tgt))
        if mode is None:
            raise LocalModelUnavailable(
                f"{self.name}: no Apertium pair for {source or iso_code(src)}->{target} is "
                f"installed (installed pairs: {installed}); install the pair's Debian package "
                f"(apertium-{src}-{tgt} or apertium-{tgt}-{src})",
                provider=self.provider,
                model=self.name,
            )
        return mode, src

    def _translate(self, engine: Apertium, mode: str, text: str) -> str:
        if not text.strip():
            return text
        # Apertium is a shell pipeline: run it in its own process group so that a timeout
        # kills every stage, not just the shell.
        with subprocess.Popen(
            [engine.program, "-u", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(text, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as exc:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise ProviderTimeout(
                    f"{self.name}: apertium took longer than {self.timeout_s} s",
                    provider=self.provider,
                    model=self.name,
                ) from exc
        if process.returncode != 0:
            raise ModelError(
                f"{self.name}: apertium {mode} failed ({process.returncode}): "
                f"{stderr.strip()[-500:]}",
                provider=self.provider,
                model=self.name,
            )
        return strip_marks(stdout, text)

    async def translate(self, request: TranslateRequest) -> TranslateResponse:
        """Translate each input from ``request.source`` (inferred if unambiguous) to ``target``."""
        start = time.perf_counter()
        texts = list(request.inputs)
        mode, source = self._mode(await self.engine(), request.source, request.target)

        async def one(text: str) -> str:
            translated, _ = await self.run(lambda engine: self._translate(engine, mode, text))
            return translated

        translated = await asyncio.gather(*(one(t) for t in texts))
        return TranslateResponse(
            texts=list(translated),
            source=iso_code(source),
            target=request.target,
            model_served=f"apertium-{mode}",
            provider=self.provider,
            usage=Usage(characters=sum(len(t) for t in texts)),
            latency_s=time.perf_counter() - start,
        )
