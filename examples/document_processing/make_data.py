"""Render the example's scanned documents: a Spanish letter and an English invoice.

Deterministic: the same Pillow version writes the same PNGs byte for byte (the fonts are DejaVu
Sans and Sans Mono, Debian ``fonts-dejavu-core``; the noise comes from a seeded generator). Each
page is drawn in black on white, then made to look scanned — a slight rotation, a grey paper
tone, specks of dust — while staying legible to OCR. Run it from anywhere:
``python examples/document_processing/make_data.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

DATA = Path(__file__).resolve().parent / "data"
WIDTH, HEIGHT = 1100, 820
MARGIN = 70
FONTS = Path("/usr/share/fonts/truetype/dejavu")
"""Where Debian's ``fonts-dejavu-core`` puts DejaVu (Pillow's own font has no accented letters)."""


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONTS / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: install it with `apt-get install fonts-dejavu-core`")
    return ImageFont.truetype(str(path), size)


SPANISH_LETTER = """\
Madrid, 14 de marzo de 2025

Estimado cliente:

Le escribimos para informarle que su pedido ha sido enviado hoy.
El paquete llegará a su domicilio en un plazo de tres días laborables.
Si tiene alguna pregunta, puede llamar a nuestro servicio de atención
al cliente de lunes a viernes, de nueve de la mañana a seis de la tarde.

Muchas gracias por su confianza.

Atentamente,
Laura Gómez
Departamento de ventas"""

ENGLISH_INVOICE = """\
INVOICE 2025-0417                          Date: 3 April 2025

Bill to: Brightleaf Studio, 12 Harbour Road, Bristol

Description                          Qty     Unit price     Amount
Website hosting, annual plan           1         240.00     240.00
Extra storage, 50 GB                   2          18.50      37.00
Priority support                       1          95.00      95.00

Subtotal                                                    372.00
VAT 20%                                                      74.40
Total due                                                   446.40

Payment within 30 days by bank transfer. Thank you for your business."""


def render(text: str, *, seed: int, angle: float, monospace: bool = False) -> Image.Image:
    """A page holding ``text``, rotated by ``angle`` degrees, with seeded scanner noise."""
    rng = random.Random(seed)
    face = font("DejaVuSansMono.ttf", 22) if monospace else font("DejaVuSans.ttf", 25)
    page = Image.new("L", (WIDTH, HEIGHT), 255)
    draw = ImageDraw.Draw(page)
    y = MARGIN
    for line in text.splitlines():
        draw.text((MARGIN, y), line, fill=20, font=face)
        y += 38 if monospace else 40
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    pixels = page.load()
    assert pixels is not None
    for _ in range(900):  # dust: small grey specks
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        pixels[x, y] = rng.randrange(60, 180)
    tone = Image.new("L", page.size, 238)  # paper is never quite white
    return Image.composite(page, tone, page.point(lambda v: 255 if v < 235 else 0))


def main(out: Path = DATA) -> None:
    """Write the images into ``out`` (default: this example's ``data/``)."""
    out.mkdir(exist_ok=True)
    render(SPANISH_LETTER, seed=1, angle=0.8).save(out / "spanish_letter.png", optimize=True)
    render(ENGLISH_INVOICE, seed=2, angle=-0.6, monospace=True).save(
        out / "english_invoice.png", optimize=True
    )


if __name__ == "__main__":
    main()
