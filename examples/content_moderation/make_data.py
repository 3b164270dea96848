"""Render the example's post images: three benign pictures a social site sees every day.

Deterministic: shapes and seeded noise only, drawn with Pillow, so the same Pillow version writes
the same PNGs byte for byte. Run it from anywhere:
``python examples/content_moderation/make_data.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

DATA = Path(__file__).resolve().parent / "data"
SIZE = (320, 240)


def lake_at_sunset() -> Image.Image:
    """A sky fading from blue to amber over mountains, a sun and its reflection in a lake."""
    width, height = SIZE
    picture = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(picture)
    horizon = 150
    for y in range(horizon):
        t = y / horizon
        draw.line(
            [(0, y), (width, y)], fill=(int(40 + 200 * t), int(80 + 90 * t), int(160 - 90 * t))
        )
    draw.ellipse((200, 95, 250, 145), fill=(255, 214, 120))
    draw.polygon([(0, 150), (70, 80), (130, 150)], fill=(60, 55, 80))
    draw.polygon([(90, 150), (170, 70), (260, 150)], fill=(45, 42, 70))
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)
        draw.line(
            [(0, y), (width, y)], fill=(int(30 + 40 * t), int(60 + 40 * t), int(110 + 30 * t))
        )
    draw.ellipse((205, 160, 245, 175), fill=(230, 190, 110))
    return picture


def sales_chart() -> Image.Image:
    """A bar chart on a white card: the kind of image a business account posts."""
    picture = Image.new("RGB", SIZE, (250, 250, 250))
    draw = ImageDraw.Draw(picture)
    draw.line([(30, 20), (30, 210), (300, 210)], fill=(60, 60, 60), width=2)
    for i, value in enumerate((60, 95, 80, 130, 150, 170)):
        left = 45 + i * 42
        draw.rectangle((left, 210 - value, left + 28, 209), fill=(52, 120, 200))
    for y in range(50, 210, 40):
        draw.line([(31, y), (300, y)], fill=(220, 220, 220))
    return picture


def potted_plant() -> Image.Image:
    """A green plant in a terracotta pot on a desk, photographed slightly out of focus."""
    rng = random.Random(3)
    picture = Image.new("RGB", SIZE, (200, 210, 215))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 180, SIZE[0], SIZE[1]), fill=(120, 95, 70))
    draw.polygon([(125, 130), (195, 130), (185, 200), (135, 200)], fill=(170, 85, 50))
    for _ in range(40):
        x, y = rng.randrange(110, 210), rng.randrange(30, 135)
        draw.ellipse((x - 14, y - 6, x + 14, y + 6), fill=(40, rng.randrange(110, 160), 50))
    return picture.filter(ImageFilter.GaussianBlur(1.2))


def main(out: Path = DATA) -> None:
    """Write the images into ``out`` (default: this example's ``data/``)."""
    out.mkdir(exist_ok=True)
    for name, draw in (
        ("lake_sunset", lake_at_sunset),
        ("sales_chart", sales_chart),
        ("potted_plant", potted_plant),
    ):
        draw().save(out / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
