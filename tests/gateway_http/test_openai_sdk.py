"""The official OpenAI SDK against ``/v1``: chat (sync, async, streamed), tools, embeddings,
models and moderation, with the receipts (request id, served model, exact cost) in headers."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import httpx
import openai
import pytest

from podium.models.base import Usage
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall
from tests.gateway_http.conftest import (
    ADMIN_TOKEN,
    DEPLOYMENT,
    EMBEDDER,
    GROUP,
    MINI,
    ML,
    MODERATOR,
    UPSTREAM_KEY,
    Served,
)

HELLO = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_a_chat_completion_answers_in_openai_shape_with_its_receipt(served: Served) -> None:
    served.sim.script(
        Reply(
            text="Paris.",
            input_tokens=14,
            output_tokens=3,
            cache_read_tokens=4,
            reasoning_tokens=2,
        )
    )
    raw = served.client().chat.completions.with_raw_response.create(
        model=GROUP,
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0,
        max_completion_tokens=50,
        seed=7,
        stop=["\n\n"],
        user="end-user-42",
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    # OpenAI counts cached tokens in the prompt and reasoning tokens in the completion.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (18, 5, 23)
    assert usage.prompt_tokens_details
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 2

    message = raw.http_response.json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Paris.", "refusal": None}

    headers = raw.headers
    assert headers["x-request-id"] == completion.id
    assert completion.id.startswith("req_")
    assert headers["x-podium-deployment"] == DEPLOYMENT
    # The completion names the model as the provider reported it; the header, the catalog's.
    assert completion.model == "gpt-4o-mini"
    assert headers["x-podium-model"] == MINI
    assert headers["x-podium-cache"] == "miss"
    expected = served.cost(
        Usage(input_tokens=14, output_tokens=3, cache_read_tokens=4, reasoning_tokens=2)
    )
    assert Decimal(headers["x-podium-cost"]) == expected > 0

    # What reached the provider: the gateway's key, the neutral request in OpenAI's form.
    (upstream,) = served.sim.requests
    assert upstream.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    sent = upstream.json()
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert sent["max_completion_tokens"] == 50
    assert sent["seed"] == 7
    assert sent["stop"] == ["\n\n"]
    assert sent["user"] == "end-user-42"

    (row,) = served.ledger_rows()
    assert row.request_id == completion.id
    assert row.cost == expected
    assert row.attribution == ML


async def test_the_async_client_gets_the_same_answer(served: Served) -> None:
    async with served.async_client() as client:
        completion = await client.chat.completions.create(
            model=GROUP, messages=[{"role": "user", "content": "hello async world"}]
        )
    assert completion.choices[0].message.content == "You said: hello async world"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


def test_a_stream_assembles_to_the_simulators_answer_and_ends_with_usage(served: Served) -> None:
    client = served.client()
    with client.chat.completions.with_streaming_response.create(
        model=GROUP,
        messages=[{"role": "user", "content": "stream me a few words please"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        headers = response.headers
        chunks = list(response.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me a few words please"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (6, 8)
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {headers["x-request-id"]}
    assert headers["x-podium-deployment"] == DEPLOYMENT
    assert headers["x-podium-model"] == MINI
    assert headers["x-podium-cache"] == "miss"
    (row,) = served.ledger_rows()
    assert row.request_id == headers["x-request-id"]
    assert row.cost == served.cost(Usage(input_tokens=6, output_tokens=8))


def test_a_raw_stream_ends_with_done(served: Served) -> None:
    body = {
        "model": GROUP,
        "messages": [{"role": "user", "content": "raw events"}],
        "stream": True,
    }
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.stream("POST", f"{served.url}/chat/completions", json=body, headers=auth) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)


def test_tools_round_trip(served: Served) -> None:
    client = served.client()
    served.sim.script(
        Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_1")]),
        Reply(text="It is sunny in Paris."),
    )
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(
        model=GROUP, messages=messages, tools=[WEATHER], tool_choice="auto"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'})
    second = client.chat.completions.create(model=GROUP, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny in Paris."

    sent = served.sim.requests[-1].json()
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"sky": "sunny"}',
    }
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_a_streamed_tool_call_assembles(served: Served) -> None:
    served.sim.script(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Oslo"})]))
    stream = served.client().chat.completions.create(
        model=GROUP,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    calls = [tc for chunk in stream for tc in (chunk.choices[0].delta.tool_calls or [])]
    (call,) = calls
    assert call.index == 0
    assert call.function
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "Oslo"}
    assert served.sim.requests[-1].json()["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


def test_json_schema_output_reaches_the_provider(served: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    completion = served.client().chat.completions.create(
        model=GROUP,
        messages=[{"role": "user", "content": "Paris"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    assert json.loads(completion.choices[0].message.content or "") == {"capital": "Paris"}
    fmt = served.sim.requests[-1].json()["response_format"]
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


def test_embeddings_from_a_local_model_in_float_and_base64(served: Served) -> None:
    client = served.client()
    # The SDK asks for base64 by default and decodes it.
    raw = client.embeddings.with_raw_response.create(
        model=EMBEDDER, input=["a cat sits on the mat", "Stock markets fell today"]
    )
    default = raw.parse()
    floats = client.embeddings.create(
        model=EMBEDDER, input="a cat sits on the mat", encoding_format="float"
    )
    assert [d.index for d in default.data] == [0, 1]
    first = default.data[0].embedding
    assert len(first) == 384
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-3)
    assert all(
        math.isclose(a, b, abs_tol=1e-6)
        for a, b in zip(first, floats.data[0].embedding, strict=True)
    )
    assert default.model == EMBEDDER or default.model.startswith("multilingual-e5")
    assert default.usage.prompt_tokens > 0
    assert raw.headers["x-podium-deployment"] == EMBEDDER
    assert Decimal(raw.headers["x-podium-cost"]) == 0  # local: no per-call charge
    assert served.sim.requests == []


def test_models_lists_groups_and_local_models(served: Served) -> None:
    client = served.client()
    ids = {m.id for m in client.models.list()}
    assert {GROUP, EMBEDDER, MODERATOR} <= ids
    # No provider key is configured: hosted catalog models are not offered.
    assert "openai/gpt-4o-mini" not in ids
    group = client.models.retrieve(GROUP)
    assert group.id == GROUP
    assert group.object == "model"
    assert group.owned_by == "podium"
    assert "chat" in (group.model_extra or {})["capabilities"]
    local = client.models.retrieve(EMBEDDER)
    assert local.owned_by == "local"


def test_moderation_flags_profanity_per_input(served: Served) -> None:
    client = served.client()
    raw = client.moderations.with_raw_response.create(
        model=MODERATOR, input=["you are a stupid idiot", "have a lovely day"]
    )
    result = raw.parse()
    assert result.model
    assert result.id == raw.headers["x-request-id"]
    rude, kind = result.results
    assert rude.flagged
    assert not kind.flagged
    assert rude.model_dump()["categories"]["profanity"] is True
    assert rude.model_dump()["category_scores"]["profanity"] > 0.5
    # Without a model, the first moderation model listed answers.
    assert client.moderations.create(input="have a lovely day").results[0].flagged is False


def test_a_stream_cut_before_its_first_chunk_fails_over_transparently(served: Served) -> None:
    served.sim.inject(Fault(after_chunks=1))  # only the opening role event, then a reset
    stream = served.client().chat.completions.create(
        model=GROUP, messages=[{"role": "user", "content": "try again"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: try again"
    assert len(served.sim.requests) == 2


def test_the_admin_charges_the_team_its_headers_name(served: Served) -> None:
    client = served.client(
        ADMIN_TOKEN, default_headers={"x-podium-team": "growth", "x-podium-use-case": "emails"}
    )
    client.chat.completions.create(model=GROUP, messages=[{"role": "user", "content": "hi"}])
    (row,) = served.ledger_rows()
    assert row.attribution.org == "default"
    assert (row.attribution.team, row.attribution.use_case) == ("growth", "emails")


async def test_a_key_cannot_charge_another_team(served: Served) -> None:
    async with served.async_client(default_headers={"x-podium-team": "growth"}) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model=GROUP, messages=HELLO)
    assert "charged to team 'ml'; it cannot charge 'growth'" in caught.value.message
    assert caught.value.code == "permission_denied"
    assert served.sim.requests == []
