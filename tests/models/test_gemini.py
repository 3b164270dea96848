"""The Gemini adapter against the Gemini API simulator over real loopback HTTP, and the official
``google-genai`` SDK against the same simulator (so the simulator cannot drift from the API)."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr

from podium.config import Settings
from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    CapabilityUnsupported,
    ContentRefused,
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
from podium.models.providers.gemini import (
    SIGNATURE_MARK,
    GeminiModel,
    finish_reason,
    fits_openapi_schema,
    usage_from,
)
from podium.models.registry import ModelRegistry
from podium.testing.simulators.gemini import GeminiSimulator
from podium.testing.simulators.openai import embedding
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall

KEY = "AIzaSyD-test-key-0123456789abcdefghij"
CAPS = frozenset({Capability.CHAT, Capability.TOOLS, Capability.JSON, Capability.STREAM})
FLASH = ModelInfo("gemini/gemini-2.5-flash", "gemini", "gemini-2.5-flash", CAPS)
GEMINI3 = ModelInfo("gemini/gemini-3-flash-preview", "gemini", "gemini-3-flash-preview", CAPS)
EMBEDDER = ModelInfo(
    "gemini/gemini-embedding-001",
    "gemini",
    "gemini-embedding-001",
    frozenset({Capability.EMBED}),
    extra={"task_type": "RETRIEVAL_DOCUMENT", "output_dimensionality": "16"},
)
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "hello world", **kw: Any) -> ChatRequest:
    return ChatRequest(model="gemini/gemini-2.5-flash", messages=[Message("user", text)], **kw)


async def collect(model: GeminiModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


@pytest.fixture
def sim(use_simulator: Any) -> GeminiSimulator:
    return use_simulator(
        GeminiSimulator, api_key=KEY, served={"gemini-2.5-flash": "gemini-2.5-flash-001"}
    )


def adapter(sim: GeminiSimulator, info: ModelInfo = FLASH, **kw: Any) -> GeminiModel:
    options: dict[str, Any] = {"base_url": sim.url, "api_key": SecretStr(KEY), "timeout": 2.0}
    return GeminiModel(info, **{**options, **kw})


@pytest.fixture
async def model(sim: GeminiSimulator) -> AsyncIterator[GeminiModel]:
    flash = adapter(sim)
    yield flash
    await flash.close()


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_sends_contents_system_instruction_and_generation_config(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    request = ChatRequest(
        model="gemini/gemini-2.5-flash",
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
        "gemini/gemini-2.5-flash",
        "gemini-2.5-flash-001",
        "gemini",
    )
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=4, output_tokens=4)  # system + user words
    assert str(response.request_id).startswith("sim00000001")  # the response's responseId
    assert 0 < response.latency_s < 2
    sent = sim.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "key" not in sent.query
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "contents": [{"role": "user", "parts": [{"text": "hello world"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {
            "maxOutputTokens": 64,
            "temperature": 0.3,
            "topP": 0.8,
            "seed": 7,
            "stopSequences": ["END"],
        },
    }


async def test_history_maps_roles_and_images(model: GeminiModel, sim: GeminiSimulator) -> None:
    picture = "data:image/png;base64,iVBORw0KGgo="
    history = [
        Message("user", "first"),
        Message("assistant", "reply"),
        Message(
            "user",
            [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": picture}},
            ],
        ),
    ]
    response = await model.chat(ChatRequest(model="gemini/gemini-2.5-flash", messages=history))

    assert response.text == "You said: what is this "
    assert sim.requests[-1].json()["contents"] == [
        {"role": "user", "parts": [{"text": "first"}]},
        {"role": "model", "parts": [{"text": "reply"}]},
        {
            "role": "user",
            "parts": [
                {"text": "what is this"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("length", "length"), ("content_filter", "content_filter"), ("stop", "stop")],
)
async def test_finish_reasons(
    model: GeminiModel, sim: GeminiSimulator, finish: Any, expected: str
) -> None:
    sim.script(Reply(text="partial answer", finish=finish))
    response = await model.chat(ask())
    assert (response.text, response.finish_reason) == ("partial answer", expected)


def test_finish_reason_mapping() -> None:
    assert finish_reason("STOP", called_tools=True) == "tool_calls"
    assert finish_reason("MAX_TOKENS", called_tools=True) == "length"
    assert finish_reason("RECITATION") == "content_filter"
    assert finish_reason("MALFORMED_FUNCTION_CALL") == "error"
    assert finish_reason(None) == "stop"


async def test_stop_sequence_truncates_with_stop(model: GeminiModel, sim: GeminiSimulator) -> None:
    sim.script(Reply(text="one two END three"))
    response = await model.chat(ask(stop=["END"]))
    assert (response.text, response.finish_reason) == ("one two ", "stop")


# -- tools ----------------------------------------------------------------------------------------


async def test_tool_call_round_trip(model: GeminiModel, sim: GeminiSimulator) -> None:
    first = await model.chat(ask("weather in Paris", tools=[WEATHER], tool_choice="required"))

    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    [call] = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "weather in Paris"})
    sent = sim.requests[-1].json()
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": dict(WEATHER.parameters),
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}

    history = [
        Message("user", "weather in Paris"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 21}', tool_call_id=call.id),
    ]
    second = await model.chat(
        ChatRequest(model="gemini/gemini-2.5-flash", messages=history, tools=[WEATHER])
    )

    assert second.text == 'You said: {"temp_c": 21}'
    assert second.finish_reason == "stop"
    contents = sim.requests[-1].json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "weather in Paris"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}],
    }


async def test_parallel_tool_results_share_one_turn(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    calls = [
        ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_1", "get_weather", '{"city": "Rome"}'),
    ]
    history = [
        Message("user", "weather in Paris and Rome"),
        Message("assistant", "", tool_calls=calls),
        Message("tool", "sunny", tool_call_id="call_0"),
        Message("tool", "rainy", tool_call_id="call_1"),
    ]
    response = await model.chat(
        ChatRequest(model="gemini/gemini-2.5-flash", messages=history, tools=[WEATHER])
    )

    assert response.text.startswith("You said:")
    last = sim.requests[-1].json()["contents"][-1]
    assert last == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "rainy"}}},
        ],
    }


async def test_unanswered_function_call_is_refused(model: GeminiModel) -> None:
    calls = [ToolCall("call_0", "get_weather", "{}"), ToolCall("call_1", "get_weather", "{}")]
    history = [
        Message("user", "weather"),
        Message("assistant", "", tool_calls=calls),
        Message("tool", "sunny", tool_call_id="call_0"),
    ]
    with pytest.raises(BadModelRequest, match="number of function response parts"):
        await model.chat(
            ChatRequest(model="gemini/gemini-2.5-flash", messages=history, tools=[WEATHER])
        )


async def test_gemini3_thought_signature_rides_in_the_tool_call_id(sim: GeminiSimulator) -> None:
    model = adapter(sim, GEMINI3)
    try:
        first = await model.chat(ask("weather in Oslo", tools=[WEATHER], tool_choice="get_weather"))
        [call] = first.tool_calls
        assert SIGNATURE_MARK in call.id
        assert sim.requests[-1].json()["toolConfig"] == {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        }
        history = [
            Message("user", "weather in Oslo"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", "cold", tool_call_id=call.id),
        ]
        second = await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))
        assert second.text == 'You said: {"result": "cold"}'
        replayed = sim.requests[-1].json()["contents"][1]["parts"][0]
        assert replayed["thoughtSignature"] == call.id.split(SIGNATURE_MARK)[1]

        unsigned = ToolCall("call_0", call.name, call.arguments)
        history[1:] = [
            Message("assistant", "", tool_calls=[unsigned]),
            Message("tool", "cold", tool_call_id="call_0"),
        ]
        with pytest.raises(BadModelRequest, match="thought_signature"):
            await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))
    finally:
        await model.close()


async def test_schemas_outside_the_openapi_subset_use_json_schema_fields(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    strict = Tool(
        "lookup",
        "Look something up",
        {
            "type": "object",
            "properties": {"q": {"type": ["string", "null"]}},
            "additionalProperties": False,
        },
    )
    assert not fits_openapi_schema(strict.parameters)
    assert fits_openapi_schema(WEATHER.parameters)
    response = await model.chat(ask("find cats", tools=[strict], tool_choice="required"))

    assert json.loads(response.tool_calls[0].arguments) == {"q": "find cats"}
    declaration = sim.requests[-1].json()["tools"][0]["functionDeclarations"][0]
    assert "parameters" not in declaration
    assert declaration["parametersJsonSchema"] == dict(strict.parameters)


async def test_simulator_rejects_json_schema_keywords_in_parameters(model: GeminiModel) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    }
                ]
            }
        ],
    }
    with pytest.raises(BadModelRequest, match='Unknown name "additionalProperties"'):
        await model.chat(ask(extra=body))


# -- JSON mode ------------------------------------------------------------------------------------


async def test_json_mode(model: GeminiModel, sim: GeminiSimulator) -> None:
    response = await model.chat(ask("give me json", response_format="json"))

    assert json.loads(response.text) == {"echo": "give me json"}
    assert sim.requests[-1].json()["generationConfig"] == {"responseMimeType": "application/json"}


async def test_structured_output_with_a_schema(model: GeminiModel, sim: GeminiSimulator) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    }
    response = await model.chat(ask("Ada", response_format={"name": "person", "schema": schema}))

    assert json.loads(response.text) == {"name": "Ada", "age": 0}
    config = sim.requests[-1].json()["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseSchema": schema}

    loose = {**schema, "additionalProperties": False}
    await model.chat(ask("Ada", response_format={"name": "person", "schema": loose}))
    config = sim.requests[-1].json()["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": loose}


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_assembles_the_same_answer_as_chat(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    reply = Reply(text="the quick brown fox jumps", input_tokens=3, output_tokens=5)
    sim.script(reply, reply)
    whole = await model.chat(ask())
    chunks = await collect(model, ask())

    assert sim.requests[-1].path.endswith(":streamGenerateContent")
    assert sim.requests[-1].query == {"alt": "sse"}
    assert len(chunks) == 6  # five word deltas, then the final chunk
    assert "".join(c.delta for c in chunks) == whole.text == "the quick brown fox jumps"
    assert [c.finish_reason for c in chunks[:-1]] == [None] * 5
    final = chunks[-1]
    assert (final.finish_reason, final.usage, final.delta) == ("stop", whole.usage, "")
    assert final.model_served == "gemini-2.5-flash-001"
    assert str(final.request_id).startswith("sim00000002")


async def test_stream_with_tool_calls(model: GeminiModel, sim: GeminiSimulator) -> None:
    sim.script(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Lima"})]))
    chunks = await collect(model, ask("weather", tools=[WEATHER]))

    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in final.tool_calls] == [
        ("get_weather", {"city": "Lima"})
    ]


@pytest.mark.parametrize("abort", [True, False])
async def test_stream_cut_before_finish_is_a_timeout(
    model: GeminiModel, sim: GeminiSimulator, abort: bool
) -> None:
    sim.inject(Fault(after_chunks=2, abort=abort))
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in model.stream(ask("one two three four five")):
            received.append(chunk)

    with pytest.raises(ProviderTimeout, match="terminal event"):
        await consume()
    assert [c.delta for c in received] == ["You ", "said: "]


async def test_stream_hang_is_a_timeout(sim: GeminiSimulator) -> None:
    model = adapter(sim, timeout=0.3)
    sim.inject(Fault(after_chunks=1, hang=True))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(model, ask())
    finally:
        await model.close()


async def test_in_stream_error_is_mapped(model: GeminiModel, sim: GeminiSimulator) -> None:
    sim.inject(Fault(status=503, after_chunks=1))
    with pytest.raises(ProviderOverloaded, match="UNAVAILABLE"):
        await collect(model, ask())


async def test_stream_error_before_the_first_event(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    sim.inject(Fault(status=429, retry_after=4))
    with pytest.raises(RateLimited) as caught:
        await collect(model, ask())
    assert caught.value.retry_after == 4


# -- usage ----------------------------------------------------------------------------------------


async def test_cached_and_thinking_tokens_are_counted_once(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    reply = Reply(
        text="ok", input_tokens=10, output_tokens=5, cache_read_tokens=90, reasoning_tokens=30
    )
    sim.script(reply, reply)
    usage = (await model.chat(ask())).usage
    streamed = (await collect(model, ask()))[-1].usage

    assert (
        usage
        == streamed
        == Usage(input_tokens=10, output_tokens=5, cache_read_tokens=90, reasoning_tokens=30)
    )
    assert usage.total_tokens == 135


def test_usage_from_counts_tool_use_prompt_as_input() -> None:
    usage = usage_from(
        {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "toolUsePromptTokenCount": 7,
            "candidatesTokenCount": 9,
            "thoughtsTokenCount": 11,
            "totalTokenCount": 127,
        }
    )
    assert usage == Usage(
        input_tokens=47, output_tokens=9, cache_read_tokens=60, reasoning_tokens=11
    )
    assert usage.total_tokens == 127
    assert usage_from(None) == Usage()


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        (Fault(status=400), BadModelRequest, False),
        (Fault(status=403), AuthenticationFailed, False),
        (Fault(status=404), ModelNotFound, False),
        (Fault(status=500), ProviderOverloaded, True),
        (Fault(status=503), ProviderOverloaded, True),
        (Fault(status=504), ProviderTimeout, True),
        (Fault(status=400, kind="context_length"), ContextLengthExceeded, False),
    ],
)
async def test_http_errors_are_mapped(
    model: GeminiModel, sim: GeminiSimulator, fault: Fault, error: type[ModelError], retryable: bool
) -> None:
    sim.inject(fault)
    with pytest.raises(error) as caught:
        await model.chat(ask())
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert (caught.value.provider, caught.value.model) == ("gemini", "gemini/gemini-2.5-flash")


async def test_rate_limit_retry_after_header_or_retry_info(
    model: GeminiModel, sim: GeminiSimulator
) -> None:
    sim.inject(Fault(status=429, retry_after=2), Fault(status=429))
    with pytest.raises(RateLimited) as from_header:
        await model.chat(ask())
    with pytest.raises(RateLimited) as from_body:
        await model.chat(ask())
    assert from_header.value.retry_after == 2
    assert from_body.value.retry_after == 37  # google.rpc.RetryInfo.retryDelay "37s"
    assert "RESOURCE_EXHAUSTED" in str(from_body.value)


async def test_context_window_overflow(sim: GeminiSimulator, use_simulator: Any) -> None:
    small = use_simulator(GeminiSimulator, api_key=KEY, context_window=5)
    model = adapter(small)
    try:
        with pytest.raises(ContextLengthExceeded, match="exceeds the maximum number of tokens"):
            await model.chat(ask("one two three four five six"))
    finally:
        await model.close()


async def test_unknown_model_is_not_found(use_simulator: Any) -> None:
    sim = use_simulator(GeminiSimulator, api_key=KEY, models=["gemini-2.5-pro"])
    model = adapter(sim)
    try:
        with pytest.raises(ModelNotFound, match="is not found for API version v1beta"):
            await model.chat(ask())
    finally:
        await model.close()


async def test_invalid_key_is_an_authentication_failure_without_the_key(
    sim: GeminiSimulator,
) -> None:
    wrong = "AIzaSy-wrong-key-that-must-not-leak"
    model = adapter(sim, api_key=SecretStr(wrong))
    try:
        with pytest.raises(AuthenticationFailed, match="API key not valid") as caught:
            await model.chat(ask())
    finally:
        await model.close()
    assert wrong not in str(caught.value)
    assert sim.requests[-1].headers["x-goog-api-key"] == wrong


async def test_missing_key_fails_at_call_time_naming_the_variable(sim: GeminiSimulator) -> None:
    model = GeminiModel(FLASH, base_url=sim.url)  # constructing needs no key
    with pytest.raises(AuthenticationFailed, match="GEMINI_API_KEY"):
        await model.chat(ask())
    with pytest.raises(AuthenticationFailed, match="GEMINI_API_KEY"):
        await collect(model, ask())
    assert sim.requests == []


async def test_blocked_prompt_is_refused(model: GeminiModel, sim: GeminiSimulator) -> None:
    with pytest.raises(ContentRefused, match="SAFETY"):
        await model.chat(ask("tell me about forbidden-topic"))
    with pytest.raises(ContentRefused, match="SAFETY"):
        await collect(model, ask("tell me about forbidden-topic"))


async def test_connection_refused_is_overloaded(sim: GeminiSimulator) -> None:
    model = GeminiModel(FLASH, base_url="http://127.0.0.1:9", api_key=SecretStr(KEY), timeout=1.0)
    try:
        with pytest.raises(ProviderOverloaded, match="connection failed"):
            await model.chat(ask())
    finally:
        await model.close()


async def test_capabilities_are_enforced(sim: GeminiSimulator) -> None:
    model = adapter(sim, EMBEDDER)
    with pytest.raises(CapabilityUnsupported):
        await model.chat(ask())
    flash = adapter(sim)
    with pytest.raises(CapabilityUnsupported):
        await flash.embed(EmbedRequest("x", ["a"]))


# -- embeddings -----------------------------------------------------------------------------------


async def test_embeddings_in_batches_of_100(sim: GeminiSimulator) -> None:
    model = adapter(sim, EMBEDDER)
    texts = [f"text number {i}" for i in range(150)]
    try:
        response = await model.embed(EmbedRequest("gemini/gemini-embedding-001", texts))
    finally:
        await model.close()

    assert [len(r.json()["requests"]) for r in sim.requests] == [100, 50]
    assert all(
        r.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents" for r in sim.requests
    )
    first = sim.requests[0].json()["requests"][0]
    assert first == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "text number 0"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
        "outputDimensionality": 16,
    }
    assert len(response.vectors) == 150
    assert response.vectors[7] == pytest.approx(embedding("text number 7", 16))
    assert response.usage == Usage(input_tokens=450, requests=1)
    assert (response.provider, response.model_served) == ("gemini", "gemini-embedding-001")


async def test_embed_content_single_endpoint(sim: GeminiSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as client:
        response = await client.post(
            "/v1beta/models/gemini-embedding-001:embedContent",
            json={"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
            headers={"x-goog-api-key": KEY},
        )
        empty = await client.post(
            "/v1beta/models/gemini-embedding-001:embedContent",
            json={"content": {"parts": []}},
            headers={"x-goog-api-key": KEY},
        )
    assert response.json() == {"embedding": {"values": embedding("hello", 4)}}
    assert empty.status_code == 400
    assert empty.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- plumbing -------------------------------------------------------------------------------------


async def test_one_client_is_reused_and_closed(model: GeminiModel) -> None:
    await model.chat(ask())
    client = model._http
    await model.chat(ask())
    assert client is not None
    assert model._http is client
    await model.close()
    assert client.is_closed
    assert model._http is None


def test_repr_never_shows_the_key(sim: GeminiSimulator) -> None:
    model = adapter(sim)
    assert KEY not in repr(model)
    assert KEY not in str(model)
    assert "gemini-2.5-flash" in repr(model)


def test_register_builds_from_settings() -> None:
    registry = ModelRegistry()
    from podium.models.providers import gemini

    gemini.register(registry)
    settings = Settings.from_env(
        {"GOOGLE_API_KEY": KEY, "PODIUM_PROVIDER_URL_GEMINI": "http://127.0.0.1:1/"}
    )
    model = registry.provider_factory("gemini")(FLASH, settings)
    assert isinstance(model, GeminiModel)
    assert model.base_url == "http://127.0.0.1:1"
    assert model.capabilities == CAPS
    default = registry.provider_factory("gemini")(FLASH, Settings.from_env({}))
    assert isinstance(default, GeminiModel)
    assert default.base_url == "https://generativelanguage.googleapis.com"


def test_registered_through_the_entry_point() -> None:
    assert "gemini" in ModelRegistry.default().providers


# -- the official SDK against the simulator -------------------------------------------------------


@pytest.fixture
def client(sim: GeminiSimulator) -> Iterator[genai.Client]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a field the SDK does not know would warn
        # ...but a connection another test left for the garbage collector is not this
        # test's finding: it surfaces wherever a collection happens to run
        warnings.simplefilter("default", ResourceWarning)
        yield genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=sim.url))


def test_sdk_parses_generate_content(client: genai.Client, sim: GeminiSimulator) -> None:
    sim.script(
        Reply(
            text="hi there",
            input_tokens=3,
            output_tokens=2,
            cache_read_tokens=4,
            reasoning_tokens=6,
        )
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="hello",
        config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=20),
    )
    assert response.text == "hi there"
    assert response.model_version == "gemini-2.5-flash-001"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (7, 4)
    assert (usage.candidates_token_count, usage.thoughts_token_count, usage.total_token_count) == (
        2,
        6,
        15,
    )
    assert sim.requests[-1].json()["systemInstruction"]["parts"] == [{"text": "be brief"}]


def test_sdk_parses_function_calls_with_signatures(client: genai.Client) -> None:
    declaration = types.FunctionDeclaration(
        name="get_weather",
        description="weather",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
        ),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = client.models.generate_content(
        model="gemini-3-flash-preview", contents="weather in Rome", config=config
    )
    assert response.function_calls is not None
    [call] = response.function_calls
    assert (call.name, call.args) == ("get_weather", {"city": "weather in Rome"})
    assert response.candidates is not None
    content = response.candidates[0].content
    assert content is not None
    assert content.parts is not None
    assert content.parts[0].thought_signature  # valid base64, decoded to bytes by the SDK


def test_sdk_parses_json_mode(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema={"type": "OBJECT", "properties": {"name": {"type": "STRING"}}},
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="Ada", config=config
    )
    assert response.parsed == {"name": "Ada"}


def test_sdk_parses_the_sse_stream(client: genai.Client) -> None:
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="stream this")
    )
    assert "".join(c.text or "" for c in chunks) == "You said: stream this"
    assert chunks[-1].candidates is not None
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    usage = chunks[-1].usage_metadata
    assert usage is not None
    assert usage.candidates_token_count == 4


def test_sdk_parses_embeddings(client: genai.Client) -> None:
    response = client.models.embed_content(
        model="gemini-embedding-001", contents=["alpha", "beta gamma"]
    )
    assert response.embeddings is not None
    assert [e.values for e in response.embeddings] == [
        embedding("alpha", 8),
        embedding("beta gamma", 8),
    ]
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 3


def test_sdk_parses_prompt_feedback(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="about forbidden-topic"
    )
    assert response.candidates is None
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY


@pytest.mark.parametrize(
    ("status", "name"),
    [(400, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")],
)
def test_sdk_parses_errors(
    client: genai.Client, sim: GeminiSimulator, status: int, name: str
) -> None:
    sim.inject(Fault(status=status))
    with pytest.raises(genai_errors.APIError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (caught.value.code, caught.value.status) == (status, name)


def test_sdk_parses_an_in_stream_error(client: genai.Client, sim: GeminiSimulator) -> None:
    sim.inject(Fault(status=503, after_chunks=1))
    with pytest.raises(genai_errors.ServerError) as caught:
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="a b c"))
    assert caught.value.status == "UNAVAILABLE"


def test_sdk_sees_an_invalid_key(sim: GeminiSimulator) -> None:
    bad = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=sim.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        bad.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert caught.value.code == 400
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
