"""The wire converters on their own: usage round trips with the OpenAI adapter, moderation
results back in request order, stream events, and the error table's edge cases."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.errors import AuthenticationFailed, ModelNotFound, RateLimitExceeded
from podium.finops.budgets import Budget, BudgetExceeded
from podium.gateway import openai_answers as answers
from podium.gateway import openai_errors as errors
from podium.gateway import openai_wire as wire
from podium.gateway.resilience import Attempt, CallFailed
from podium.models.base import (
    ChatChunk,
    ChatResponse,
    FinishReason,
    ModerationResponse,
    ModerationResult,
    ToolCall,
    Usage,
)
from podium.models.providers.openai_compat import usage_from

counts = st.integers(min_value=0, max_value=10**9)


@given(counts, counts, counts, counts, counts)
def test_wire_usage_is_the_inverse_of_the_openai_adapters(
    inputs: int, outputs: int, read: int, written: int, reasoning: int
) -> None:
    usage = Usage(inputs, outputs, read, written, reasoning)
    assert usage_from(answers.wire_usage(usage).model_dump()) == usage


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", 'quote " backslash \\ slash /', "\x00\x01\x1f\x7f\n\t\r\b\f", "é 漢 😀 \u2028"]
)
tool_calls = st.lists(st.builds(ToolCall, texts, texts, texts), max_size=3)


@given(
    texts,
    texts,
    tool_calls,
    st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error"]),
    st.builds(Usage, counts, counts, counts, counts, counts),
    st.integers(min_value=0, max_value=2**40),
)
def test_the_hot_routes_completion_json_is_the_models_own_byte_for_byte(
    text: str,
    served: str,
    calls: list[ToolCall],
    finish: FinishReason,
    usage: Usage,
    created: int,
) -> None:
    response = ChatResponse(text, "asked", served, "p", usage, finish, calls)
    model = answers.chat_completion(response, request_id="req_1", created=created)
    expected = answers.ChatCompletion.__pydantic_serializer__.to_json(model)
    assert answers.chat_completion_json(response, request_id="req_1", created=created) == expected


def test_moderation_results_come_back_in_request_order() -> None:
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    body = wire.parse(
        wire.ModerationCreate,
        {
            "model": "m",
            "input": [
                {"type": "image_url", "image_url": {"url": png}},
                {"type": "text", "text": "hello"},
            ],
        },
    )
    inputs = wire.to_moderation_request(body, "m")
    assert inputs.request.texts == ("hello",)
    assert inputs.request.images == (b"\x89PNG fake",)
    # The model answers texts first, then images.
    response = ModerationResponse(
        [ModerationResult(False, {"profanity": 0.1}), ModerationResult(True, {"nsfw": 0.9})],
        "m",
        "local",
        Usage(),
    )
    answer = answers.moderation_list(response, inputs, request_id="req_1")
    assert [r.flagged for r in answer.results] == [True, False]
    assert answer.results[0].category_applied_input_types == {"nsfw": ["image"]}
    assert answer.results[0].categories == {"nsfw": True}


def test_moderation_fetches_no_image_url() -> None:
    body = wire.parse(
        wire.ModerationCreate,
        {"input": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
    )
    with pytest.raises(errors.InvalidRequest, match="fetches nothing"):
        wire.to_moderation_request(body, "m")


def _events(writer: answers.ChunkWriter, *chunks: ChatChunk) -> list[dict[str, object]]:
    return [json.loads(e.removeprefix(b"data: ")) for c in chunks for e in writer.events(c)]


def test_stream_events_number_tool_calls_and_end_with_usage() -> None:
    writer = answers.ChunkWriter("req_1", 7, "m", include_usage=True)
    events = _events(
        writer,
        ChatChunk(delta="Hi"),
        ChatChunk(
            tool_calls=[ToolCall("a", "f", "{}"), ToolCall("b", "g", '{"x": 1}')],
            finish_reason="tool_calls",
            usage=Usage(3, 4),
            model_served="gpt-x",
        ),
    )
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "Hi"}
    assert [d["tool_calls"][0]["index"] for d in deltas[1:3]] == [0, 1]
    assert deltas[3] == {}
    assert events[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["total_tokens"] == 7
    assert all(e["usage"] is None for e in events[:-1])
    assert events[-1]["model"] == "gpt-x"
    assert writer.finished


def test_a_budget_refusal_says_what_remains_and_when_it_resets() -> None:
    budget = Budget("ml", "team", "ml", Decimal("10"), window="daily")
    exc = BudgetExceeded(
        budget,
        spent=Decimal("9.5"),
        reserved=Decimal("0.25"),
        requested=Decimal("0.5"),
        window_end=datetime(2026, 11, 19, tzinfo=UTC),
    )
    error = errors.wire_error(exc, now=datetime(2026, 11, 18, 23, 0, tzinfo=UTC).timestamp())
    assert (error.status, error.type, error.code) == (402, "insufficient_quota", "budget_exceeded")
    assert "$0.25 of its $10 limit remains" in error.message
    assert error.headers() == {"retry-after": "3600", "x-should-retry": "false"}


def test_a_request_over_the_limit_alone_is_never_worth_retrying() -> None:
    exc = RateLimitExceeded(
        scope="team:ml", dimension="tokens", limit=10, window_s=60, requested=50, retry_after=None
    )
    error = errors.wire_error(exc, now=0)
    assert error.status == 429
    assert error.headers() == {"x-should-retry": "false"}


def test_the_gateways_own_provider_key_failing_is_never_a_401() -> None:
    last = AuthenticationFailed("openai 401: bad key", provider="openai")
    failed = CallFailed("failed", last_error=last, attempts=[Attempt("d", "failed", 1)])
    error = errors.wire_error(failed, now=0)
    assert (error.status, error.code) == (502, "upstream_authentication_failed")
    # A provider not knowing a routed model is the gateway's fault too; ours is the client's.
    unknown = CallFailed("failed", last_error=ModelNotFound("gone"), attempts=[])
    assert errors.wire_error(unknown, now=0).status == 502
    assert errors.wire_error(ModelNotFound("no model 'x'"), now=0).status == 404


def test_a_bug_is_a_500_that_reveals_nothing() -> None:
    error = errors.wire_error(KeyError("secret internals"), now=0)
    assert error.status == 500
    assert "secret" not in error.message
