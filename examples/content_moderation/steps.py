"""Step functions of examples/content_moderation/workflow.yaml.

``check_metadata`` applies the site's rules to what a model cannot see (the author's account,
the links a post carries); ``decide`` merges the three checks into one verdict with reasons.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent

BANNED_DOMAINS = frozenset({"cheap-meds.example", "free-crypto.example", "replica-watches.example"})
"""Domains whose links are never published (known spam and scams)."""
SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "t.co", "goo.gl", "is.gd"})
"""Link shorteners: they hide where a link goes."""
NEW_ACCOUNT_DAYS = 7
"""An account younger than this is new."""
MAX_LINKS = 2
"""More links than this in one post looks like spam."""
REPORTS_FOR_REVIEW = 3
"""Reports by other users from which a post goes to a moderator."""

TEXT_BLOCK_AT, TEXT_REVIEW_AT = 0.9, 0.5
"""Toxicity (profanity probability) from which text is blocked / sent to review."""
IMAGE_BLOCK_AT, IMAGE_REVIEW_AT = 0.8, 0.4
"""NSFW probability from which an image is blocked / sent to review."""

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)


def locate(path: str) -> str:
    """The absolute path of an image: as given, else relative to this example."""
    for candidate in (Path(path).expanduser(), HERE / path):
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(
        f"no image at {path!r} (looked in the current directory and in {HERE}); "
        "pass a PNG or JPEG path, or an empty string for a text-only post"
    )


def check_metadata(text: str, author: dict[str, Any]) -> dict[str, Any]:
    """The site's rules on links and on the author's account.

    Args:
        text: The post's text (links are read from it).
        author: ``account_age_days``, ``reports`` (by other users), ``verified``; all optional.

    Returns:
        ``links``, ``domains`` and ``findings``: each ``{code, action, detail}`` with ``action``
        ``block`` or ``review``.
    """
    age = int(author.get("account_age_days", 0))
    reports = int(author.get("reports", 0))
    if age < 0 or reports < 0:
        raise ValueError("author.account_age_days and author.reports must not be negative")
    links = _URL.findall(text)
    domains = sorted({_domain(link) for link in links})
    findings: list[dict[str, str]] = []

    def find(code: str, action: str, detail: str) -> None:
        findings.append({"code": code, "action": action, "detail": detail})

    banned = [d for d in domains if d in BANNED_DOMAINS]
    if banned:
        find("banned_domain", "block", f"links to banned domains: {', '.join(banned)}")
    shortened = [d for d in domains if d in SHORTENERS]
    if shortened:
        find(
            "link_shortener", "review", f"shortened links hide their target: {', '.join(shortened)}"
        )
    if len(links) > MAX_LINKS:
        find("too_many_links", "review", f"{len(links)} links (more than {MAX_LINKS})")
    if links and age < NEW_ACCOUNT_DAYS and not author.get("verified"):
        days = "1 day" if age == 1 else f"{age} days"
        find("new_account_links", "review", f"account is {days} old and posts links")
    if reports >= REPORTS_FOR_REVIEW:
        find("reported", "review", f"reported by {reports} users")
    shouted = re.findall(r"\b[A-Z]{4,}\b", text)
    if re.search(r"[!?]{3,}", text) or len(shouted) >= 2:
        find("spam_style", "review", "shouting (capitals or repeated '!')")
    return {"links": links, "domains": domains, "findings": findings}


def _domain(link: str) -> str:
    host = urlsplit(link if "://" in link else f"http://{link}").hostname or ""
    return host.removeprefix("www.")


def decide(
    text: dict[str, Any], image: dict[str, Any] | None, metadata: dict[str, Any]
) -> dict[str, Any]:
    """One verdict from the three checks: ``block`` if any check blocks, else ``review`` if
    any asks for it, else ``allow``.

    Args:
        text: The text model's step output (``data``: ``[{flagged, categories}]``).
        image: The image model's step output, or ``None`` for a text-only post.
        metadata: :func:`check_metadata`'s output.

    Returns:
        ``verdict``, ``reasons`` (``{source, code, action, detail}``, blocking ones first) and
        ``scores`` (``text_toxicity``, ``image_nsfw``).
    """
    reasons: list[dict[str, str]] = []
    toxicity = float(text["data"][0]["categories"]["profanity"])
    if toxicity >= TEXT_REVIEW_AT:
        action = "block" if toxicity >= TEXT_BLOCK_AT else "review"
        reasons.append(
            {"source": "text", "code": "toxic_text", "action": action,
             "detail": f"toxicity {toxicity:.2f}"}
        )  # fmt: skip
    nsfw = None
    if image is not None:
        nsfw = float(image["data"][0]["categories"]["nsfw"])
        if nsfw >= IMAGE_REVIEW_AT:
            action = "block" if nsfw >= IMAGE_BLOCK_AT else "review"
            reasons.append(
                {"source": "image", "code": "nsfw_image", "action": action,
                 "detail": f"NSFW score {nsfw:.2f}"}
            )  # fmt: skip
    reasons += [{"source": "metadata", **finding} for finding in metadata["findings"]]
    reasons.sort(key=lambda r: r["action"] != "block")
    actions = {r["action"] for r in reasons}
    verdict = "block" if "block" in actions else "review" if "review" in actions else "allow"
    return {
        "verdict": verdict,
        "reasons": reasons,
        "scores": {
            "text_toxicity": round(toxicity, 4),
            "image_nsfw": None if nsfw is None else round(nsfw, 4),
        },
    }
