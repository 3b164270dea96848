"""Step functions of examples/customer_service/workflow.yaml.

``parse_email`` splits a raw e-mail into sender, subject and body; ``triage`` turns the text and
its sentiment into a priority (P1 urgent … P4 low) with the signals that decided it; ``compose``
wraps the model's reply in the parts a support desk must always send (greeting, ticket priority,
promised response time, signature), so the answer is complete whichever model wrote the body.
"""

from __future__ import annotations

import re
from typing import Any

SIGNALS: dict[str, tuple[int, tuple[str, ...]]] = {
    "urgent": (
        3,
        (
            r"\burgent\b",
            r"\basap\b",
            r"\bimmediately\b",
            r"\bemergency\b",
            r"\bright now\b",
            r"\bas soon as possible\b",
            r"\bcritical\b",
        ),
    ),
    "outage": (
        3,
        (
            r"\b(is|are|been|went|goes) down\b",
            r"\boutage\b",
            r"\bnot working\b",
            r"\bcan'?t log ?in\b",
            r"\bcannot log ?in\b",
            r"\bunable to (log ?in|access)\b",
            r"\berror 5\d\d\b",
            r"\boffline\b",
        ),
    ),
    "account": (
        2,
        (
            r"\blocked out\b",
            r"\bcan'?t access\b",
            r"\bcannot access\b",
            r"\bhacked\b",
            r"\bunauthori[sz]ed\b",
            r"\bpassword reset\b",
            r"\bcharged twice\b",
        ),
    ),
    "deadline": (
        2,
        (
            r"\btoday\b",
            r"\btonight\b",
            r"\btomorrow\b",
            r"\bdeadline\b",
            r"\bend of (the )?day\b",
            r"\bby (monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
            r"\bwithin \d+ (hours?|minutes?)\b",
        ),
    ),
    "business_impact": (
        2,
        (
            r"\blosing (orders|money|customers|revenue|sales)\b",
            r"\bproduction\b",
            r"\bpayroll\b",
            r"\bcustomers are\b",
        ),
    ),
    "churn_risk": (
        2,
        (
            r"\bcancel\b",
            r"\banother provider\b",
            r"\bcompetitor\b",
            r"\blawyer\b",
            r"\bchargeback\b",
            r"\bunacceptable\b",
        ),
    ),
    "repeat_contact": (
        1,
        (
            r"\bsecond time\b",
            r"\bagain\b",
            r"\bnobody (has )?(answered|replied|responded)\b",
            r"\bno (answer|reply|response)\b",
        ),
    ),
}
"""Signal → (weight, patterns). A signal counts once, however many of its patterns match."""

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("outage", ("outage",)),
    ("account_access", ("account",)),
    ("billing", (r"\binvoice\b", r"\bbilling\b", r"\bplan\b", r"\brefund\b", r"\bvat\b")),
    ("feedback", (r"\bthank", r"\bgreat\b", r"\blove\b", r"\brecommend\b")),
)
"""Category → the signals or patterns that place an e-mail in it, tried in order."""

PRIORITIES: tuple[tuple[int, str, str, int], ...] = (
    (10, "P1", "urgent", 1),
    (5, "P2", "high", 4),
    (0, "P3", "normal", 24),
    (-100, "P4", "low", 72),
)
"""(minimum score, priority, urgency, hours within which we answer), highest first."""

_HEADER = re.compile(r"^(?P<key>From|Subject|To|Date):\s*(?P<value>.*)$", re.IGNORECASE)
_NAME = re.compile(r"^\s*\"?(?P<name>[^<\"@]+?)\"?\s*<")
_SIGN_OFF = re.compile(
    r"^(kind |best |warm )?(regards|wishes)|^(cheers|thanks|thank you|sincerely|best)\s*[,!.]?\s*$",
    re.IGNORECASE,
)


def parse_email(email: str) -> dict[str, str]:
    """Split an e-mail into ``sender``, ``name`` (the first name, or "there"), ``subject``
    and ``body`` (without the sign-off and signature). Headers are optional: plain text is all
    body."""
    if not email.strip():
        raise ValueError("the e-mail is empty: pass its text as the 'email' input")
    headers: dict[str, str] = {}
    lines = email.strip().splitlines()
    start = len(lines)
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if not match:
            start = index
            break
        headers[match["key"].lower()] = match["value"].strip()
    sender = headers.get("from", "")
    name_match = _NAME.match(sender)
    name = name_match["name"].split()[0] if name_match else "there"
    return {
        "sender": sender,
        "name": name,
        "subject": headers.get("subject", ""),
        "body": _without_signature("\n".join(lines[start:]).strip()),
    }


def _without_signature(body: str) -> str:
    """The body up to its sign-off ("Kind regards," …), or without a trailing block of short
    lines that end in no punctuation (a name and a title)."""
    lines = body.splitlines()
    for index, line in enumerate(lines):
        if index and _SIGN_OFF.match(line.strip()):
            return "\n".join(lines[:index]).strip()
    paragraphs = body.split("\n\n")
    last = paragraphs[-1].splitlines()
    if len(paragraphs) > 1 and len(last) <= 3 and all(_is_signature(line) for line in last):
        return "\n\n".join(paragraphs[:-1]).strip()
    return body


def _is_signature(line: str) -> bool:
    line = line.strip()
    return len(line) < 60 and not line.endswith((".", "?", "!"))


def triage(
    subject: str, body: str, sentiment: str, sentiment_scores: list[dict[str, Any]]
) -> dict[str, Any]:
    """Score an e-mail's urgency from what it says and how it says it.

    Args:
        subject: The e-mail's subject line.
        body: The e-mail's text.
        sentiment: The sentiment model's verdict: ``positive``, ``neutral`` or ``negative``.
        sentiment_scores: The model's ``[{label, score}]`` proportions of the text.

    Returns:
        ``priority`` (P1…P4), ``urgency``, ``score``, ``category``, ``respond_within_hours``,
        ``signals`` (what matched) and ``reasons`` (one line each, for the agent).
    """
    text = " ".join(f"{subject}\n{body}".lower().split())
    score = 0
    signals: dict[str, list[str]] = {}
    for signal, (weight, patterns) in SIGNALS.items():
        found = [m.group(0) for p in patterns if (m := re.search(p, text))]
        if found:
            signals[signal] = found
            score += weight
    category = "general_question"
    for name, keys in CATEGORIES:
        if any(k in signals if k in SIGNALS else re.search(k, text) for k in keys):
            category = name
            break
    negative = next((s["score"] for s in sentiment_scores if s.get("label") == "negative"), 0.0)
    reasons = [f"{name.replace('_', ' ')}: {', '.join(words)}" for name, words in signals.items()]
    if sentiment == "negative":
        score += 2 if float(negative) >= 0.15 else 1
        reasons.append(f"negative sentiment ({float(negative):.0%} of the text reads negative)")
    elif category == "feedback" and not signals:
        score -= 1  # thanks and praise: answer, but after the waiting problems
        reasons.append("positive feedback, nothing to fix")
    if subject.isupper() or re.search(r"!{2,}", text):
        score += 1
        reasons.append("shouting (capitals or repeated '!')")
    _, priority, urgency, hours = next(p for p in PRIORITIES if score >= p[0])
    return {
        "priority": priority,
        "urgency": urgency,
        "score": score,
        "category": category,
        "respond_within_hours": hours,
        "signals": signals,
        "reasons": reasons or ["no urgency signals"],
        "tone": tone_for(sentiment, urgency),
    }


def tone_for(sentiment: str, urgency: str) -> str:
    """How the reply should sound, from the customer's mood and the ticket's urgency."""
    if sentiment == "negative" and urgency in ("urgent", "high"):
        return "apologetic, calm and concrete about the next step"
    if sentiment == "negative":
        return "empathetic and helpful"
    if sentiment == "positive":
        return "warm and grateful"
    return "friendly and informative"


FALLBACK_BODIES: dict[str, str] = {
    "outage": "We are sorry for the disruption. Our engineers are looking into it now.",
    "account_access": "We are sorry you cannot get in. We will help you regain access.",
    "billing": "Thank you for your question. We will check the details of your plan.",
    "feedback": "Thank you for your kind words. We have passed them on to the team.",
    "general_question": "Thank you for your message. We are looking into your question.",
}
"""What the reply says when the drafted text is unusable (empty or only a greeting)."""


def compose(name: str, subject: str, body: str, triage: dict[str, Any], team: str) -> str:
    """The reply to send: greeting, the drafted text, the ticket's commitment and a signature.

    The draft is trimmed to what a reply body may hold: no greeting or sign-off of its own, and
    no sentence cut off mid-way by the token limit.
    """
    lines = body.strip().splitlines()
    while lines and (
        not lines[0].strip()
        or _GREETING.match(lines[0].strip())
        or _is_name_line(lines[0])
        or lines[0].lower().startswith("subject:")
    ):
        lines.pop(0)
    for index, line in enumerate(lines):
        if _SIGN_OFF.match(line.strip()):
            lines = lines[:index]
            break
    text = _PLACEHOLDER.sub("", "\n".join(lines)).strip()
    if text and not text.endswith((".", "!", "?")):
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
        text = text[: cut + 1] if cut > 0 else ""
    if len(text.split()) < 4:
        text = FALLBACK_BODIES.get(triage["category"], FALLBACK_BODIES["general_question"])
    hours = triage["respond_within_hours"]
    when = "within 1 hour" if hours == 1 else f"within {hours} hours"
    reference = f"Re: {subject}" if subject else "Re: your message"
    return (
        f"{reference}\n\nHi {name},\n\n{text}\n\n"
        f"Your ticket has priority {triage['priority']} ({triage['urgency']}); "
        f"we will get back to you {when}.\n\nBest regards,\n{team}"
    )


_GREETING = re.compile(r"^(dear|hi|hello|hey|good (morning|afternoon|evening))\b", re.IGNORECASE)


_PLACEHOLDER = re.compile(r"(?:[^.!?\s][^.!?\n]*)?\[[^\]]*\][^.!?\n]*[.!?]?[ \t]*")
"""A sentence holding a template placeholder such as ``[Your Name]``: dropped."""


def _is_name_line(line: str) -> bool:
    words = line.strip().rstrip(",").split()
    return 0 < len(words) <= 3 and all(w[:1].isupper() for w in words)
