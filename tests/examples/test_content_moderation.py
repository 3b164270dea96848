"""examples/content_moderation: image, text and metadata checks in parallel → one verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.examples.conftest import EXAMPLES, RunExample, load_module

POSTS = {
    p["id"]: p for p in json.loads((EXAMPLES / "content_moderation/data/posts.json").read_text())
}


def inputs(post_id: str) -> dict[str, Any]:
    post = POSTS[post_id]
    return {"text": post["text"], "image": post["image"], "author": post["author"]}


def codes(output: dict[str, Any]) -> set[str]:
    return {r["code"] for r in output["reasons"]}


@pytest.mark.parametrize("post_id", ["post-101", "post-102"])
async def test_a_clean_post_with_a_benign_image_is_allowed(
    run_example: RunExample, post_id: str
) -> None:
    result = await run_example("content_moderation", inputs(post_id))
    assert result.ok, result.error
    out = result.output
    assert out["verdict"] == "allow"
    assert out["reasons"] == []
    assert out["scores"]["text_toxicity"] < 0.1  # the text model read the text
    assert out["scores"]["image_nsfw"] is not None  # and the image model the picture
    assert out["scores"]["image_nsfw"] < 0.1


async def test_a_toxic_text_only_post_is_blocked_for_its_text(run_example: RunExample) -> None:
    result = await run_example("content_moderation", inputs("post-103"))
    assert result.ok, result.error
    out = result.output
    assert out["verdict"] == "block"
    first = out["reasons"][0]  # blocking reasons come first
    assert (first["source"], first["code"], first["action"]) == ("text", "toxic_text", "block")
    assert out["scores"]["text_toxicity"] > 0.9
    assert codes(out) == {"toxic_text", "reported"}  # 4 reports: also worth a moderator's look
    assert out["scores"]["image_nsfw"] is None  # no image: that branch was skipped


async def test_a_spam_post_is_blocked_for_its_links_not_its_clean_image(
    run_example: RunExample,
) -> None:
    result = await run_example("content_moderation", inputs("post-104"))
    assert result.ok, result.error
    out = result.output
    assert out["verdict"] == "block"
    assert out["reasons"][0]["code"] == "banned_domain"
    assert "cheap-meds.example" in out["reasons"][0]["detail"]
    assert codes(out) == {
        "banned_domain",
        "link_shortener",
        "too_many_links",
        "new_account_links",
        "spam_style",
    }
    assert {r["source"] for r in out["reasons"]} == {"metadata"}
    assert out["scores"]["image_nsfw"] < 0.1
    assert out["links"] == ["bit.ly", "cheap-meds.example"]


async def test_a_new_account_posting_a_link_goes_to_review(run_example: RunExample) -> None:
    result = await run_example(
        "content_moderation",
        {
            "text": "Loving the new bakery on Elm Street, their menu: https://elm-bakery.example/menu",
            "author": {"account_age_days": 2, "reports": 0},
        },
    )
    assert result.ok, result.error
    out = result.output
    assert out["verdict"] == "review"
    assert [(r["code"], r["detail"]) for r in out["reasons"]] == [
        ("new_account_links", "account is 2 days old and posts links")
    ]


async def test_a_missing_image_fails_with_the_path_in_the_error(run_example: RunExample) -> None:
    result = await run_example("content_moderation", {"text": "hi", "image": "data/nope.png"})
    assert result.status == "failed"
    assert "no image at 'data/nope.png'" in str(result.error)


def test_the_shipped_images_are_what_make_data_renders(tmp_path: Path) -> None:
    make_data = load_module("content_moderation", "make_data")
    make_data.main(tmp_path)
    for name in ("lake_sunset.png", "sales_chart.png", "potted_plant.png"):
        shipped = EXAMPLES / "content_moderation/data" / name
        assert (tmp_path / name).read_bytes() == shipped.read_bytes(), name
