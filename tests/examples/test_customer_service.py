"""examples/customer_service: sentiment → priority → a reply drafted by the local LLM.

The reply's body comes from a 135M-parameter model, so the tests check what the workflow
guarantees around it (greeting, commitment, signature, no echo of the customer's sign-off) and
the route it took, not the model's wording.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.examples.conftest import EXAMPLES, RunExample, load_module

DATA = EXAMPLES / "customer_service/data"
steps = load_module("customer_service", "steps")


def check_reply(out: dict[str, Any], *, name: str, subject: str, hours: str) -> None:
    reply = out["reply"]
    assert reply.startswith(f"Re: {subject}\n\nHi {name},\n\n")
    assert reply.endswith("\n\nBest regards,\nAcme Cloud Support")
    assert f"Your ticket has priority {out['priority']} ({out['urgency']}); " in reply
    assert f"we will get back to you {hours}." in reply
    body = reply.split("\n\n", 2)[2].rsplit("\n\nYour ticket", 1)[0]
    assert len(body.split()) >= 4  # the drafted text, or the category's stock sentence
    assert "[" not in body  # template placeholders ("[Your Name]") are dropped
    assert body.rstrip()[-1] in ".!?"  # no sentence cut off by the token limit


def check_route(out: dict[str, Any]) -> None:
    # edge-to-cloud: the hosted model is preferred; with no API key the local model serves
    route = out["route"]
    assert route["preferred"] == "openai/gpt-4o-mini"
    assert route["served"] == out["model"] == "local/smollm2-135m-instruct"
    assert "no API key" in route["reason"]
    assert Decimal(route["would_cost"]) > 0  # what the hosted route would have charged
    assert Decimal(str(out["cost"])) == 0


async def test_an_angry_outage_email_is_urgent_and_answered_first(
    run_example: RunExample,
) -> None:
    result = await run_example(
        "customer_service", {"email": (DATA / "angry_outage.txt").read_text()}
    )
    assert result.ok, result.error
    out = result.output
    assert out["sentiment"] == "negative"
    assert (out["priority"], out["urgency"], out["category"]) == ("P1", "urgent", "outage")
    reasons = " | ".join(out["reasons"])
    for signal in (
        "urgent: urgent",
        "outage: been down",
        "churn risk: cancel",
        "negative sentiment",
    ):
        assert signal in reasons
    check_reply(
        out,
        name="Dana",
        subject="URGENT - dashboard down for 3 hours, we are losing orders",
        hours="within 1 hour",
    )
    assert "Operations Manager" not in out["reply"]  # the customer's signature is not echoed
    check_route(out)


@pytest.mark.parametrize(
    ("sample", "name", "priority", "category", "hours"),
    [
        ("account_locked", "Marco", "P2", "account_access", "within 4 hours"),
        ("billing_question", "Priya", "P3", "billing", "within 24 hours"),
        ("happy_feedback", "Tom", "P4", "feedback", "within 72 hours"),
    ],
)
async def test_each_sample_email_gets_its_priority_and_a_complete_reply(
    run_example: RunExample, sample: str, name: str, priority: str, category: str, hours: str
) -> None:
    email = (DATA / f"{sample}.txt").read_text()
    result = await run_example("customer_service", {"email": email})
    assert result.ok, result.error
    out = result.output
    assert (out["priority"], out["category"]) == (priority, category)
    subject = steps.parse_email(email)["subject"]
    check_reply(out, name=name, subject=subject, hours=hours)
    check_route(out)
    if sample == "happy_feedback":
        assert out["sentiment"] == "positive"
        assert out["reasons"] == ["positive feedback, nothing to fix"]


def test_a_draft_is_trimmed_to_a_reply_body() -> None:
    triage = {
        "priority": "P3",
        "urgency": "normal",
        "category": "billing",
        "respond_within_hours": 24,
    }
    draft = (
        "Subject: Re: invoice\nDear [Customer Name],\nThanks for asking. The annual invoice can "
        "be split. Please send us [details]. We will\nBest regards,\nSam"
    )
    reply = steps.compose("Priya", "Invoice", draft, triage, "Acme")
    assert reply == (
        "Re: Invoice\n\nHi Priya,\n\nThanks for asking. The annual invoice can be split.\n\n"
        "Your ticket has priority P3 (normal); we will get back to you within 24 hours."
        "\n\nBest regards,\nAcme"
    )
    empty = steps.compose("Priya", "", "Hi Priya,", triage, "Acme")
    assert steps.FALLBACK_BODIES["billing"] in empty


def test_an_empty_email_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="the e-mail is empty"):
        steps.parse_email("  \n")
