"""The Cohere adapter against the v2 API simulator over real loopback HTTP, and the official
``cohere`` SDK against the same simulator (so the simulator cannot drift from the API)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import cohere
import httpx
import pydantic
import pytest
from cohere.v2.types.v2chat_response import V2ChatResponse
from cohere.v2.types.v2chat_stream_response import V2ChatStreamResponse
from pydantic import SecretStr

from podium.config import Settings
from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    ContextLengthExceeded,
    ModelError,
    ModelNotFound,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
)
from podium.models.base import (
    Capability,
    ChatChunk,
    ChatRequest,
    EmbedRequest,
    Message,
    Tool,
    ToolCall,
    Usage,
)
from podium.models.catalog import ModelInfo
from podium.models.providers.cohere import CohereModel, usage_from
from podium.models.registry import ModelRegistry
from podium.testing.simulators.cohere import TEMPLATE_TOKENS, CohereSimulator, embedding_for
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall

KEY = "co-test-key-5f2b9d1e7a3c4b6d8e0f"
CAPS = frozenset({Capability.CHAT, Capability.TOOLS, Capability.JSON, Capability.STREAM})
COMMAND = ModelInfo("cohere/command-a-03-2025", "cohere", "command-a-03-2025", CAPS)
EMBEDDER = ModelInfo(
    "cohere/embed-v4.0",
    "cohere",
    "embed-v4.0",
    frozenset({Capability.EMBED}),
    extra={"input_type": "search_query", "output_dimension": "16"},
)
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool("get_time", "The time", {"type": "object", "properties": {}})


def ask(text: str = "hello world", **kw: Any) -> ChatRequest:
    return ChatRequest(model="cohere/command-a-03-2025", messages=[Message("user", text)], **kw)


async def collect(model: CohereModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


@pytest.fixture
def sim(use_simulator: Any) -> CohereSimulator:
    return use_simulator(CohereSimulator, api_key=KEY)


def adapter(sim: CohereSimulator, info: ModelInfo = COMMAND, **kw: Any) -> CohereModel:
    options: dict[str, Any] = {"base_url": sim.url, "api_key": SecretStr(KEY), "timeout": 2.0}
    return CohereModel(info, **{**options, **kw})


@pytest.fixture
async def model(sim: CohereSimulator) -> AsyncIterator[CohereModel]:
    command = adapter(sim)
    yield command
    await command.close()


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_request_and_response(model: CohereModel, sim: CohereSimulator) -> None:
    request = ChatRequest(
        model="cohere/command-a-03-2025",
        messages=[Message("system", "be brief"), Message("user", "hello world")],
        max_tokens=64,
        temperature=0.3,
        top_p=0.8,
        stop=["END"],
        seed=7,
    )
    response = await model.chat(request)

    assert response.text == "You said: hello world"
    assert (response.model_requested, response.model_served, response.provider) == (
        "cohere/command-a-03-2025",
        "command-a-03-2025",
        "cohere",
    )
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=4, output_tokens=4)  # billed units
    assert response.request_id is not None
    assert len(response.request_id) == 36  # the generation's id
    assert 0 < response.latency_s < 2
    sent = sim.requests[-1]
    assert sent.path == "/v2/chat"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"},
        ],
        "stream": False,
        "max_tokens": 64,
        "temperature": 0.3,
        "p": 0.8,
        "seed": 7,
        "stop_sequences": ["END"],
    }


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(text="cut short", finish="length"), ("cut short", "length")),
        (Reply(text="one two END three"), ("one two ", "stop")),
    ],
)
async def test_finish_reasons(
    model: CohereModel, sim: CohereSimulator, reply: Reply, expected: tuple[str, str]
) -> None:
    sim.script(reply)
    response = await model.chat(ask(stop=["END"]))
    assert (response.text, response.finish_reason) == expected


# -- tools ----------------------------------------------------------------------------------------


async def test_tool_call_round_trip(model: CohereModel, sim: CohereSimulator) -> None:
    first = await model.chat(ask("weather in Paris", tools=[WEATHER], tool_choice="required"))

    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert call.id.startswith("get_weather_")
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "weather in Paris"})
    sent = sim.requests[-1].json()
    assert sent["tool_choice"] == "REQUIRED"
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]

    history = [
        Message("user", "weather in Paris"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 21}', tool_call_id=call.id),
    ]
    second = await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))

    assert (second.text, second.finish_reason) == ('You said: {"temp_c": 21}', "stop")
    messages = sim.requests[-1].json()["messages"]
    assert messages[1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.arguments},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}


async def test_naming_a_tool_keeps_only_it_and_requires_it(
    model: CohereModel, sim: CohereSimulator
) -> None:
    response = await model.chat(ask("what time", tools=[WEATHER, CLOCK], tool_choice="get_time"))

    assert [c.name for c in response.tool_calls] == ["get_time"]
    sent = sim.requests[-1].json()
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_time"]
    assert sent["tool_choice"] == "REQUIRED"


async def test_unanswered_tool_call_is_refused(model: CohereModel) -> None:
    history = [
        Message("user", "weather"),
        Message("assistant", "", tool_calls=[ToolCall("get_weather_1", "get_weather", "{}")]),
        Message("user", "well?"),
    ]
    with pytest.raises(BadModelRequest, match="missing results for: get_weather_1"):
        await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))


# -- JSON mode ------------------------------------------------------------------------------------


async def test_json_mode_and_schema(model: CohereModel, sim: CohereSimulator) -> None:
    plain = await model.chat(ask("give me json", response_format="json"))
    assert json.loads(plain.text) == {"echo": "give me json"}
    assert sim.requests[-1].json()["response_format"] == {"type": "json_object"}

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    shaped = await model.chat(ask("Ada", response_format={"name": "person", "schema": schema}))
    assert json.loads(shaped.text) == {"name": "Ada"}
    assert sim.requests[-1].json()["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_assembles_the_same_answer_as_chat(
    model: CohereModel, sim: CohereSimulator
) -> None:
    reply = Reply(text="the quick brown fox jumps", input_tokens=3, output_tokens=5)
    sim.script(reply, reply)
    whole = await model.chat(ask())
    chunks = await collect(model, ask())

    assert sim.requests[-1].json()["stream"] is True
    assert "".join(c.delta for c in chunks) == whole.text == "the quick brown fox jumps"
    assert len(chunks) == 6
    final = chunks[-1]
    assert (final.finish_reason, final.usage, final.tool_calls) == ("stop", whole.usage, [])
    assert final.request_id is not None
    assert final.request_id != whole.request_id  # each generation has its own id


async def test_stream_assembles_tool_calls(model: CohereModel, sim: CohereSimulator) -> None:
    sim.script(
        Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Lima"}, id="get_weather_abc")])
    )
    chunks = await collect(model, ask("weather", tools=[WEATHER]))

    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == [ToolCall("get_weather_abc", "get_weather", '{"city": "Lima"}')]
    assert "".join(c.delta for c in chunks) == ""  # the tool plan is not the answer


@pytest.mark.parametrize("abort", [True, False])
async def test_stream_cut_before_message_end_is_a_timeout(
    model: CohereModel, sim: CohereSimulator, abort: bool
) -> None:
    sim.inject(Fault(after_chunks=4, abort=abort))  # message-start, content-start, 2 deltas
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in model.stream(ask("one two three four")):
            received.append(chunk)

    with pytest.raises(ProviderTimeout, match="terminal event"):
        await consume()
    assert [c.delta for c in received] == ["You ", "said: "]


async def test_stream_hang_is_a_timeout(sim: CohereSimulator) -> None:
    model = adapter(sim, timeout=0.3)
    sim.inject(Fault(after_chunks=2, hang=True))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(model, ask())
    finally:
        await model.close()


async def test_message_end_with_error_raises(model: CohereModel, sim: CohereSimulator) -> None:
    sim.inject(Fault(status=500, after_chunks=3, message="generation failed upstream"))
    with pytest.raises(ProviderOverloaded, match="generation failed upstream") as caught:
        await collect(model, ask())
    assert caught.value.retryable


async def test_stream_error_before_the_first_event(
    model: CohereModel, sim: CohereSimulator
) -> None:
    sim.inject(Fault(status=429, retry_after=6))
    with pytest.raises(RateLimited) as caught:
        await collect(model, ask())
    assert caught.value.retry_after == 6


# -- usage ----------------------------------------------------------------------------------------


async def test_billed_units_count_each_token_once(model: CohereModel, sim: CohereSimulator) -> None:
    reply = Reply(
        text="ok", input_tokens=10, output_tokens=5, cache_read_tokens=20, reasoning_tokens=7
    )
    sim.script(reply, reply)
    usage = (await model.chat(ask())).usage
    streamed = (await collect(model, ask()))[-1].usage

    # Cohere bills cache hits as input and thinking as output; its template tokens are not billed.
    assert usage == streamed == Usage(input_tokens=30, output_tokens=12)
    assert usage.total_tokens == 42


def test_usage_from_prefers_billed_units() -> None:
    data = {
        "billed_units": {"input_tokens": 5, "output_tokens": 9},
        "tokens": {"input_tokens": 5 + TEMPLATE_TOKENS, "output_tokens": 9},
    }
    assert usage_from(data) == Usage(input_tokens=5, output_tokens=9)
    assert usage_from({"tokens": {"input_tokens": 70, "output_tokens": 9}}) == Usage(70, 9)
    assert usage_from(None) == Usage()


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(status=400), BadModelRequest),
        (Fault(status=401), AuthenticationFailed),
        (Fault(status=404), ModelNotFound),
        (Fault(status=500), ProviderOverloaded),
        (Fault(status=503), ProviderOverloaded),
        (Fault(status=400, kind="context_length"), ContextLengthExceeded),
    ],
)
async def test_http_errors_are_mapped(
    model: CohereModel, sim: CohereSimulator, fault: Fault, error: type[ModelError]
) -> None:
    sim.inject(fault)
    with pytest.raises(error) as caught:
        await model.chat(ask())
    assert type(caught.value) is error
    assert (caught.value.provider, caught.value.model) == ("cohere", "cohere/command-a-03-2025")
    assert caught.value.request_id is not None  # the error body's id


async def test_rate_limit_carries_retry_after(model: CohereModel, sim: CohereSimulator) -> None:
    sim.inject(Fault(status=429, retry_after=3))
    with pytest.raises(RateLimited, match="Trial key") as caught:
        await model.chat(ask())
    assert caught.value.retry_after == 3
    assert caught.value.retryable


async def test_context_window_overflow(use_simulator: Any) -> None:
    small = use_simulator(CohereSimulator, api_key=KEY, context_window=5)
    model = adapter(small)
    try:
        with pytest.raises(ContextLengthExceeded, match="too many tokens"):
            await model.chat(ask("one two three four five six"))
    finally:
        await model.close()


async def test_unknown_model_is_not_found(use_simulator: Any) -> None:
    sim = use_simulator(CohereSimulator, api_key=KEY, models=["command-r-08-2024"])
    model = adapter(sim)
    try:
        with pytest.raises(ModelNotFound, match="'command-a-03-2025' not found"):
            await model.chat(ask())
    finally:
        await model.close()


async def test_wrong_key_fails_without_leaking_it(sim: CohereSimulator) -> None:
    wrong = "co-wrong-key-that-must-not-leak-1234"
    model = adapter(sim, api_key=SecretStr(wrong))
    try:
        with pytest.raises(AuthenticationFailed, match="invalid api token") as caught:
            await model.chat(ask())
    finally:
        await model.close()
    assert wrong not in str(caught.value)
    assert wrong not in repr(model)


async def test_missing_key_fails_at_call_time_naming_the_variable(sim: CohereSimulator) -> None:
    model = CohereModel(COMMAND, base_url=sim.url)
    with pytest.raises(AuthenticationFailed, match="COHERE_API_KEY"):
        await model.chat(ask())
    with pytest.raises(AuthenticationFailed, match="COHERE_API_KEY"):
        await collect(model, ask())
    assert sim.requests == []


# -- embeddings -----------------------------------------------------------------------------------


async def test_embeddings_in_batches_of_96(sim: CohereSimulator) -> None:
    model = adapter(sim, EMBEDDER)
    texts = [f"text number {i}" for i in range(100)]
    try:
        response = await model.embed(EmbedRequest("cohere/embed-v4.0", texts))
    finally:
        await model.close()

    assert [len(r.json()["texts"]) for r in sim.requests] == [96, 4]
    first = sim.requests[0].json()
    assert {k: v for k, v in first.items() if k != "texts"} == {
        "model": "embed-v4.0",
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 16,
    }
    assert len(response.vectors) == 100
    assert response.vectors[99] == pytest.approx(
        embedding_for("text number 99", "search_query", 16)
    )
    assert response.usage == Usage(input_tokens=300, requests=2)
    assert response.request_id is not None


async def test_embed_rejects_too_many_texts_and_a_missing_input_type(sim: CohereSimulator) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=sim.url, headers=headers) as client:
        many = await client.post(
            "/v2/embed", json={"model": "m", "texts": ["a"] * 97, "input_type": "clustering"}
        )
        untyped = await client.post("/v2/embed", json={"model": "m", "texts": ["a"]})
    assert many.status_code == untyped.status_code == 400
    assert "at most 96" in many.json()["message"]
    assert "input_type" in untyped.json()["message"]


# -- plumbing -------------------------------------------------------------------------------------


def test_register_builds_from_settings() -> None:
    registry = ModelRegistry()
    from podium.models.providers import cohere as module

    module.register(registry)
    settings = Settings.from_env(
        {"CO_API_KEY": KEY, "PODIUM_PROVIDER_URL_COHERE": "http://127.0.0.1:1"}
    )
    model = registry.provider_factory("cohere")(COMMAND, settings)
    assert isinstance(model, CohereModel)
    assert model.base_url == "http://127.0.0.1:1"
    assert KEY not in repr(model)
    assert "cohere" in ModelRegistry.default().providers


# -- the official SDK against the simulator -------------------------------------------------------


@pytest.fixture
def client(sim: CohereSimulator) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=KEY, base_url=sim.url)


def test_sdk_parses_chat(client: cohere.ClientV2, sim: CohereSimulator) -> None:
    response = client.chat(
        model="command-a-03-2025", messages=[{"role": "user", "content": "hello"}]
    )
    assert response.finish_reason == "COMPLETE"
    assert response.message.content is not None
    assert response.message.content[0].type == "text"
    assert response.usage is not None
    assert response.usage.billed_units is not None
    assert response.usage.billed_units.output_tokens == 3
    raw = httpx.post(
        f"{sim.url}/v2/chat",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {KEY}"},
    )
    V2ChatResponse.model_validate(raw.json())  # strict: the SDK itself skips validation


def test_sdk_parses_tool_calls(client: cohere.ClientV2) -> None:
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": dict(WEATHER.parameters)},
    }
    response = client.chat(
        model="command-a-03-2025",
        messages=[{"role": "user", "content": "weather in Rome"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="REQUIRED",
    )
    assert response.finish_reason == "TOOL_CALL"
    assert response.message.tool_calls is not None
    function = response.message.tool_calls[0].function
    assert function is not None
    assert (function.name, json.loads(function.arguments or "")) == (
        "get_weather",
        {"city": "weather in Rome"},
    )
    assert response.message.tool_plan


def test_sdk_parses_every_stream_event(
    client: cohere.ClientV2, sim: CohereSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.script(Reply(text="streamed words here", tool_calls=[ScriptedToolCall("f", {"a": 1})]))
    with caplog.at_level(logging.WARNING):
        events = list(
            client.chat_stream(
                model="command-a-03-2025", messages=[{"role": "user", "content": "go"}]
            )
        )
    assert caplog.records == []  # the SDK logs (and drops) events it cannot parse
    kinds = [e.type for e in events]
    assert kinds[0] == "message-start"
    assert kinds[-1] == "message-end"
    assert {"tool-plan-delta", "tool-call-start", "tool-call-delta", "tool-call-end"} <= set(kinds)
    assert {"content-start", "content-delta", "content-end"} <= set(kinds)
    text = "".join(
        e.delta.message.content.text or ""
        for e in events
        if e.type == "content-delta" and e.delta and e.delta.message and e.delta.message.content
    )
    assert text == "streamed words here"
    end = events[-1]
    assert end.type == "message-end"
    assert end.delta is not None
    assert end.delta.finish_reason == "TOOL_CALL"

    raw = httpx.post(
        f"{sim.url}/v2/chat",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    )
    adapter_type = pydantic.TypeAdapter(V2ChatStreamResponse)
    datas = [
        line.removeprefix("data: ") for line in raw.text.splitlines() if line.startswith("data: ")
    ]
    assert [adapter_type.validate_python(json.loads(d)).type for d in datas][-1] == "message-end"


def test_sdk_parses_embeddings(client: cohere.ClientV2) -> None:
    response = client.embed(
        model="embed-v4.0", texts=["alpha"], input_type="search_document", embedding_types=["float"]
    )
    assert response.embeddings.float_ == [embedding_for("alpha", "search_document", 8)]
    assert response.meta is not None
    assert response.meta.billed_units is not None
    assert response.meta.billed_units.input_tokens == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, cohere.BadRequestError),
        (401, cohere.UnauthorizedError),
        (404, cohere.NotFoundError),
        (429, cohere.TooManyRequestsError),
        (500, cohere.InternalServerError),
        (503, cohere.ServiceUnavailableError),
    ],
)
def test_sdk_parses_errors(
    client: cohere.ClientV2, sim: CohereSimulator, status: int, error: type[Exception]
) -> None:
    sim.inject(Fault(status=status))
    with pytest.raises(error) as caught:
        client.chat(
            model="command-a-03-2025",
            messages=[{"role": "user", "content": "x"}],
            request_options={"max_retries": 0},  # the SDK retries 429 and 5xx by default
        )
    body = caught.value.body  # type: ignore[attr-defined]
    assert set(body) == {"id", "message"}
