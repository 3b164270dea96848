"""examples/document_processing: OCR → language → translation to English only when needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.conftest import EXAMPLES, RunExample, load_module

DATA = EXAMPLES / "document_processing/data"


async def test_a_spanish_scan_is_read_detected_and_translated(run_example: RunExample) -> None:
    result = await run_example("document_processing", {"image": str(DATA / "spanish_letter.png")})
    assert result.ok, result.error
    out = result.output
    assert out["language"] == "es"
    assert out["language_score"] > 0.8
    assert out["ocr_confidence"] > 0.7
    assert out["translated"] is True
    assert "Estimado cliente" in out["original"]  # what OCR read
    assert "Muchas gracias por su confianza" in out["original"]
    english = out["text"]
    for phrase in ("March 2025", "Thank you very much", "Monday to Friday", "Department of sales"):
        assert phrase in english, english
    assert "Estimado" not in english
    assert "gracias" not in english


async def test_an_english_scan_is_not_translated(run_example: RunExample) -> None:
    # a path relative to the example works from any directory
    result = await run_example("document_processing", {"image": "data/english_invoice.png"})
    assert result.ok, result.error
    out = result.output
    assert out["language"] == "en"
    assert out["translated"] is False
    assert out["text"] == out["original"]
    assert "INVOICE 2025-0417" in out["text"]
    assert "Total due 446.40" in out["text"]
    assert "Website hosting, annual plan 1 240.00 240.00" in out["text"]  # rows stay rows


async def test_a_missing_scan_fails_with_a_clear_error(run_example: RunExample) -> None:
    result = await run_example("document_processing", {"image": "no/such/scan.png"})
    assert result.status == "failed"
    assert "no document image at 'no/such/scan.png'" in str(result.error)


def test_the_shipped_scans_are_what_make_data_renders(tmp_path: Path) -> None:
    make_data = load_module("document_processing", "make_data")
    if not (make_data.FONTS / "DejaVuSans.ttf").is_file():
        pytest.skip("the scans are drawn with DejaVu fonts: apt-get install fonts-dejavu-core")
    make_data.main(tmp_path)
    for name in ("spanish_letter.png", "english_invoice.png"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
