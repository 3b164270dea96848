"""Model steps cross the ``ModelGateway`` boundary with attribution the gateway needs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from podium import Engine, ModelError, ModelReply, load_text
from podium.dsl import call, model, workflow
from podium.testing import FakeGateway

WF = """
name: support
inputs:
  email: string
steps:
  - id: triage
    model: small-local
    system: "Classify the email."
    prompt: "Email: {{ inputs.email }}"
    parse: json
    params: {max_tokens: 20}
  - id: reply
    model: big-hosted
    prompt: "Write a {{ steps.triage.output.data.tone }} reply to: {{ inputs.email }}"
    retry: {max_attempts: 2, initial_delay: 1ms}
    fallback:
      model: small-local
      prompt: "Short reply to: {{ inputs.email }}"
output: "{{ steps.reply.output.text }}"
"""


async def test_model_steps_pass_messages_params_and_attribution(make_engine: Any) -> None:
    gateway = FakeGateway(
        {
            "small-local": ['{"tone": "calm"}', "Thanks, we are on it."],
            "big-hosted": ModelReply(
                "Dear customer, …", "big-hosted-2025", {"input_tokens": 9}, Decimal("0.0012")
            ),
        }
    )
    engine: Engine = make_engine(gateway=gateway)
    result = await engine.run(load_text(WF, "support.yaml"), {"email": "My order is late"})
    assert result.ok, result.error
    assert result.output == "Dear customer, …"
    triage, reply = gateway.calls
    assert triage.messages == [
        {"role": "system", "content": "Classify the email."},
        {"role": "user", "content": "Email: My order is late"},
    ]
    assert triage.params == {"max_tokens": 20}
    assert reply.messages[-1]["content"] == "Write a calm reply to: My order is late"
    assert reply.metadata["run_id"] == result.run_id
    assert reply.metadata["step"] == "reply"
    assert reply.metadata["idempotency_key"] == f"{result.run_id}/reply"
    stored = [
        e
        for e in await engine.store.events(result.run_id)
        if e.step == "reply" and e.kind == "step_completed"
    ]
    assert '"cost":"0.0012"' in (stored[0].data or "")  # money stays an exact decimal string
    assert '"model":"big-hosted-2025"' in (stored[0].data or "")


async def test_a_failing_hosted_model_falls_back_to_the_local_one(make_engine: Any) -> None:
    gateway = FakeGateway(
        {
            "small-local": ['{"tone": "calm"}', "Thanks, we are on it."],
            "big-hosted": ModelError(
                "overloaded", provider="x", model="big-hosted", retryable=True
            ),
        }
    )
    result = await make_engine(gateway=gateway).run(
        load_text(WF, "support.yaml"), {"email": "late"}
    )
    assert result.output == "Thanks, we are on it."
    assert [c.model for c in gateway.calls] == [
        "small-local",
        "big-hosted",
        "big-hosted",
        "small-local",
    ]


async def test_invalid_json_from_a_model_is_a_step_failure(make_engine: Any) -> None:
    gateway = FakeGateway({"m": "not json"})
    wf = workflow("j", model("x", "m", "hi", parse="json"))
    result = await make_engine(gateway=gateway).run(wf)
    assert result.status == "failed"
    assert "did not answer valid JSON" in result.error["message"]


async def test_no_gateway_configured_is_explicit(make_engine: Any) -> None:
    result = await make_engine().run(workflow("n", model("x", "gpt-4o", "hi")))
    assert result.status == "failed"
    assert "no model gateway is configured" in result.error["message"]


def test_sync_helper_matches_async_run() -> None:
    import podium

    wf = workflow("parity", call("a", lambda x: x * 3, x="{{ inputs.x }}"), inputs={"x": "integer"})
    sync = podium.run_sync(wf, {"x": 4})
    assert sync.ok
    assert sync.output == 12
