"""Step functions of examples/document_processing/workflow.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def locate(path: str) -> str:
    """The absolute path of a document image: as given (absolute, or relative to the current
    directory), else relative to this example (so ``data/spanish_letter.png`` works anywhere)."""
    for candidate in (Path(path).expanduser(), HERE / path):
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(
        f"no document image at {path!r} (looked in the current directory and in {HERE}); "
        "pass a PNG or JPEG path, e.g. examples/document_processing/data/spanish_letter.png"
    )


def clean(text: str) -> str:
    """OCR text tidied: words broken by a hyphen at a line end rejoined, runs of spaces and
    blank lines collapsed, a stray dot inside a sentence ("Bill. to") removed. Line breaks stay,
    so a table keeps its rows."""
    text = re.sub(r"(\w)-\n\s*(\w)", r"\1\2", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    tidy = re.sub(r"(\w)\. (?=[a-z])", r"\1 ", tidy)
    if not tidy:
        raise ValueError("OCR found no text in the document image")
    return tidy


def result(
    language: str,
    language_score: float,
    ocr_confidence: float,
    text: str,
    translation: str | None,
) -> dict[str, Any]:
    """What the run returns: the English text, and whether it had to be translated."""
    return {
        "language": language,
        "language_score": round(float(language_score), 3),
        "ocr_confidence": round(float(ocr_confidence), 3),
        "translated": translation is not None,
        "text": translation if translation is not None else text,
        "original": text,
    }
