"""The Anthropic adapter against the Messages API simulator over real loopback HTTP, and the
official ``anthropic`` SDK against the same simulator (so the simulator cannot drift from the API)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from pydantic import SecretStr

from podium.config import Settings
from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    CapabilityUnsupported,
    ContextLengthExceeded,
    ModelError,
    ModelNotFound,
    ProviderOverloaded,
    ProviderTimeout,
    RateLimited,
)
from podium.models.base import Capability, ChatChunk, ChatRequest, Message, Tool, ToolCall, Usage
from podium.models.catalog import ModelInfo
from podium.models.providers import anthropic as adapter_module
from podium.models.providers.anthropic import JSON_TOOL, AnthropicModel, usage_from
from podium.models.registry import ModelRegistry
from podium.testing.simulators.anthropic import AnthropicSimulator
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall

KEY = "sk-ant-api03-test-7c1e9a2b4d6f8e0a"
SNAPSHOT = "claude-haiku-4-5-20251001"
CAPS = frozenset({Capability.CHAT, Capability.TOOLS, Capability.JSON, Capability.STREAM})
INFO = ModelInfo(
    name="anthropic/claude-haiku-4-5",
    provider="anthropic",
    provider_model="claude-haiku-4-5",
    capabilities=CAPS,
    max_output=1024,
)
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "hello world", **kw: Any) -> ChatRequest:
    return ChatRequest(model="anthropic/claude-haiku-4-5", messages=[Message("user", text)], **kw)


async def collect(model: AnthropicModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


def rid(seq: int) -> str:
    return f"req_011CSim{seq:016d}"


@pytest.fixture
def sim(use_simulator: Any) -> AnthropicSimulator:
    return use_simulator(AnthropicSimulator, api_key=KEY, served={"claude-haiku-4-5": SNAPSHOT})


@pytest.fixture
async def model(sim: AnthropicSimulator) -> AsyncIterator[AnthropicModel]:
    adapter = AnthropicModel(INFO, base_url=sim.url, api_key=SecretStr(KEY), timeout=2.0)
    yield adapter
    await adapter.close()


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_with_system_prompt_headers_and_response_fields(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    request = ChatRequest(
        model="anthropic/claude-haiku-4-5",
        messages=[Message("system", "be brief"), Message("user", "hello world")],
        temperature=0.3,
        top_p=0.8,
        stop=["END"],
        user="u-7",
    )
    response = await model.chat(request)

    assert response.text == "You said: hello world"
    assert (response.model_requested, response.model_served, response.provider) == (
        "anthropic/claude-haiku-4-5",
        SNAPSHOT,
        "anthropic",
    )
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=4, output_tokens=4)  # system + user words
    assert response.request_id == rid(1)
    assert 0 < response.latency_s < 2
    sent = sim.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,  # the catalog's max_output: the API requires max_tokens
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}],
        "system": "be brief",
        "temperature": 0.3,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-7"},
    }


async def test_max_tokens_defaults_to_4096_or_the_models_smaller_limit(
    sim: AnthropicSimulator,
) -> None:
    big = AnthropicModel(
        ModelInfo(
            name="anthropic/big",
            provider="anthropic",
            provider_model="big",
            capabilities=CAPS,
            max_output=64000,
        ),
        base_url=sim.url,
        api_key=SecretStr(KEY),
    )
    try:
        await big.chat(ask())
    finally:
        await big.close()
    assert sim.requests[-1].json()["max_tokens"] == 4096


async def test_stop_sequence_and_max_tokens_finish_reasons(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    sim.script(
        Reply(text="one two END three"),
        Reply(text="truncated", finish="length"),
        Reply(text="no", finish="content_filter"),
    )
    stopped = await model.chat(ask(stop=["END"]))
    truncated = await model.chat(ask(max_tokens=5))
    refused = await model.chat(ask())

    assert (stopped.text, stopped.finish_reason) == ("one two ", "stop")
    assert truncated.finish_reason == "length"
    assert sim.requests[1].json()["max_tokens"] == 5
    assert refused.finish_reason == "content_filter"


async def test_tool_use_round_trip(model: AnthropicModel, sim: AnthropicSimulator) -> None:
    sim.script(
        Reply(
            text="Let me look.",
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="toolu_1")],
        )
    )
    first = await model.chat(ask("weather in Paris?", tools=[WEATHER], tool_choice="required"))

    assert first.finish_reason == "tool_calls"
    assert first.text == "Let me look."
    assert first.tool_calls == [ToolCall("toolu_1", "get_weather", '{"city": "Paris"}')]
    body = sim.requests[-1].json()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": dict(WEATHER.parameters),
        }
    ]
    assert body["tool_choice"] == {"type": "any"}

    history = [
        Message("user", "weather in Paris?"),
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message("tool", "18C and sunny", tool_call_id="toolu_1"),
        Message("user", "and tomorrow?"),
    ]
    second = await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))

    assert second.text.startswith("You said: ")
    assert sim.requests[-1].json()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice_is_translated(
    model: AnthropicModel, sim: AnthropicSimulator, choice: str, wire: dict[str, str]
) -> None:
    await model.chat(ask(tools=[WEATHER], tool_choice=choice))
    assert sim.requests[-1].json()["tool_choice"] == wire


async def test_unanswered_tool_use_is_refused_as_the_api_does(model: AnthropicModel) -> None:
    history = [
        Message("user", "hi"),
        Message("assistant", "", tool_calls=[ToolCall("toolu_9", "f", "{}")]),
        Message("user", "and?"),
    ]
    with pytest.raises(BadModelRequest, match="toolu_9"):
        await model.chat(ChatRequest(model="x", messages=history))


async def test_images_become_anthropic_image_blocks(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    await model.chat(ChatRequest(model="x", messages=[Message("user", parts)]))
    assert sim.requests[-1].json()["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


# -- JSON mode (a forced tool) ----------------------------------------------------------------------


async def test_json_mode_forces_the_json_tool(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    response = await model.chat(ask("give me json", response_format="json"))

    assert json.loads(response.text) == {"echo": "give me json"}
    assert (response.finish_reason, response.tool_calls) == ("stop", [])
    body = sim.requests[-1].json()
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert body["tools"][-1]["name"] == JSON_TOOL
    assert body["tools"][-1]["input_schema"] == {"type": "object"}


async def test_json_schema_output(model: AnthropicModel, sim: AnthropicSimulator) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    whole = await model.chat(ask("plan a trip", response_format={"name": "trip", "schema": schema}))
    chunks = await collect(
        model, ask("plan a trip", response_format={"name": "trip", "schema": schema})
    )

    assert json.loads(whole.text) == {"city": "plan a trip", "days": 0}
    assert sim.requests[-1].json()["tools"][-1]["input_schema"] == schema
    assert "".join(c.delta for c in chunks) == whole.text  # the JSON streams as text
    assert (chunks[-1].finish_reason, chunks[-1].tool_calls) == ("stop", [])


async def test_json_mode_with_caller_tools_lets_the_model_pick(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    await model.chat(ask("hi json", tools=[WEATHER], response_format="json"))
    body = sim.requests[-1].json()
    assert [t["name"] for t in body["tools"]] == ["get_weather", JSON_TOOL]
    assert body["tool_choice"] == {"type": "any"}


# -- usage ----------------------------------------------------------------------------------------


async def test_cache_and_thinking_tokens_are_counted_once(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    reply = Reply(
        text="ok",
        input_tokens=12,
        output_tokens=6,
        cache_read_tokens=800,
        cache_write_tokens=150,
        reasoning_tokens=40,
    )
    sim.script(reply, reply)
    whole = await model.chat(ask())
    chunks = await collect(model, ask())

    expected = Usage(
        input_tokens=12,
        output_tokens=6,
        cache_read_tokens=800,
        cache_write_tokens=150,
        reasoning_tokens=40,
    )
    assert whole.usage == expected
    assert chunks[-1].usage == expected


def test_usage_from_the_wire_shapes() -> None:
    assert usage_from(
        {
            "input_tokens": 3,
            "output_tokens": 9,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        }
    ) == Usage(3, 9, 100, 20, 0)
    assert usage_from(
        {"input_tokens": 3, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}}
    ) == Usage(input_tokens=3, output_tokens=5, reasoning_tokens=4)
    assert usage_from(None) == Usage()


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_assembles_to_the_non_streamed_answer(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    whole = await model.chat(ask("the quick brown fox"))
    chunks = await collect(model, ask("the quick brown fox"))

    assert "".join(c.delta for c in chunks) == whole.text == "You said: the quick brown fox"
    assert len([c for c in chunks if c.delta]) == 6
    final = chunks[-1]
    assert (final.finish_reason, final.usage, final.model_served, final.request_id) == (
        "stop",
        whole.usage,
        SNAPSHOT,
        rid(2),
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert sim.requests[-1].json()["stream"] is True


async def test_streamed_tool_use_is_assembled(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    reply = Reply(
        text="Checking.",
        tool_calls=[
            ScriptedToolCall("get_weather", {"city": "Paris", "unit": "celsius"}),
            ScriptedToolCall("get_weather", {"city": "Oslo"}),
        ],
    )
    sim.script(reply, reply)
    whole = await model.chat(ask(tools=[WEATHER]))
    chunks = await collect(model, ask(tools=[WEATHER]))

    assert "".join(c.delta for c in chunks) == "Checking."
    assert [(c.name, c.arguments) for c in chunks[-1].tool_calls] == [
        (c.name, c.arguments) for c in whole.tool_calls
    ]
    assert [json.loads(c.arguments) for c in chunks[-1].tool_calls] == [
        {"city": "Paris", "unit": "celsius"},
        {"city": "Oslo"},
    ]
    assert chunks[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize("abort", [True, False], ids=["connection-reset", "clean-eof"])
async def test_stream_cut_before_message_stop_raises_timeout(
    model: AnthropicModel, sim: AnthropicSimulator, abort: bool
) -> None:
    sim.inject(Fault(after_chunks=5, abort=abort))
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in model.stream(ask("one two three four five")):
            received.append(chunk)

    with pytest.raises(ProviderTimeout, match="terminal event") as caught:
        await consume()
    # message_start, content_block_start, ping, then two text deltas arrived
    assert [c.delta for c in received] == ["You ", "said: "]
    assert caught.value.request_id == rid(1)


async def test_stream_stalling_mid_way_raises_timeout(sim: AnthropicSimulator) -> None:
    adapter = AnthropicModel(INFO, base_url=sim.url, api_key=SecretStr(KEY), timeout=0.3)
    sim.inject(Fault(after_chunks=2, hang=True))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(adapter, ask())
    finally:
        await adapter.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (529, ProviderOverloaded),
        (500, ProviderOverloaded),
        (429, RateLimited),
        (400, BadModelRequest),
    ],
)
async def test_error_event_inside_a_stream_is_mapped(
    model: AnthropicModel, sim: AnthropicSimulator, status: int, error: type[ModelError]
) -> None:
    sim.inject(Fault(after_chunks=4, status=status))
    with pytest.raises(error) as caught:
        await collect(model, ask())
    assert type(caught.value) is error
    assert caught.value.request_id == rid(1)


async def test_stream_refused_before_it_starts_is_mapped(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    sim.inject(Fault(status=529))
    with pytest.raises(ProviderOverloaded, match="anthropic 529: Overloaded"):
        await collect(model, ask())


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        (Fault(status=429, retry_after=11), RateLimited, True),
        (Fault(status=529), ProviderOverloaded, True),
        (Fault(status=500), ProviderOverloaded, True),
        (Fault(status=401), AuthenticationFailed, False),
        (Fault(status=403), AuthenticationFailed, False),
        (Fault(status=404), ModelNotFound, False),
        (Fault(status=400, kind="context_length"), ContextLengthExceeded, False),
        (
            Fault(
                status=400,
                message="input length and `max_tokens` exceed context limit: 199000 + 8192 > 200000",
            ),
            ContextLengthExceeded,
            False,
        ),
        (
            Fault(status=400, message="messages.0.content: Input should be a valid list"),
            BadModelRequest,
            False,
        ),
        (
            Fault(status=413, message="Request exceeds the maximum allowed number of bytes."),
            BadModelRequest,
            False,
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
async def test_http_errors_are_mapped(
    model: AnthropicModel,
    sim: AnthropicSimulator,
    fault: Fault,
    error: type[ModelError],
    retryable: bool,
) -> None:
    sim.inject(fault)
    with pytest.raises(error) as caught:
        await model.chat(ask())
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert caught.value.request_id == rid(1)
    assert (caught.value.provider, caught.value.model) == (
        "anthropic",
        "anthropic/claude-haiku-4-5",
    )
    if fault.retry_after is not None:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == 11.0


async def test_real_validation_errors_are_mapped(use_simulator: Any) -> None:
    strict = use_simulator(
        AnthropicSimulator, api_key=KEY, models={"claude-haiku-4-5"}, context_window=4
    )
    adapter = AnthropicModel(INFO, base_url=strict.url, api_key=SecretStr(KEY))
    unknown = AnthropicModel(
        ModelInfo(
            name="anthropic/claude-9",
            provider="anthropic",
            provider_model="claude-9",
            capabilities=CAPS,
        ),
        base_url=strict.url,
        api_key=SecretStr(KEY),
    )
    wrong = AnthropicModel(
        INFO, base_url=strict.url, api_key=SecretStr("sk-ant-wrong-000000000000")
    )
    try:
        with pytest.raises(ContextLengthExceeded, match="prompt is too long: 5 tokens > 4 maximum"):
            await adapter.chat(ask("one two three four five"))
        with pytest.raises(ModelNotFound, match="claude-9"):
            await unknown.chat(ask())
        with pytest.raises(AuthenticationFailed, match="invalid x-api-key"):
            await wrong.chat(ask())
    finally:
        for each in (adapter, unknown, wrong):
            await each.close()


async def test_hanging_provider_times_out(sim: AnthropicSimulator) -> None:
    adapter = AnthropicModel(INFO, base_url=sim.url, api_key=SecretStr(KEY), timeout=0.3)
    sim.inject(Fault(hang=True))
    try:
        with pytest.raises(ProviderTimeout, match="timed out"):
            await adapter.chat(ask())
    finally:
        await adapter.close()


async def test_slow_response_still_succeeds(model: AnthropicModel, sim: AnthropicSimulator) -> None:
    sim.inject(Fault(delay=0.3))
    assert (await model.chat(ask())).latency_s >= 0.3


# -- registration, keys, secrets ------------------------------------------------------------------


async def test_registered_factory_reads_key_and_url_from_settings(sim: AnthropicSimulator) -> None:
    registry = ModelRegistry()
    adapter_module.register(registry)
    settings = Settings(
        provider_urls={"anthropic": sim.url}, provider_keys={"anthropic": SecretStr(KEY)}
    )
    adapter = registry.provider_factory("anthropic")(INFO, settings)
    try:
        assert (await adapter.chat(ask())).text == "You said: hello world"
    finally:
        await adapter.close()
    default = registry.provider_factory("anthropic")(INFO, Settings())
    assert isinstance(default, AnthropicModel)
    assert default.base_url == "https://api.anthropic.com"


async def test_missing_key_fails_at_call_time_naming_the_variable(sim: AnthropicSimulator) -> None:
    adapter = AnthropicModel.from_settings(INFO, Settings(provider_urls={"anthropic": sim.url}))
    with pytest.raises(AuthenticationFailed, match="ANTHROPIC_API_KEY"):
        await adapter.chat(ask())
    with pytest.raises(AuthenticationFailed, match="ANTHROPIC_API_KEY"):
        await collect(adapter, ask())
    assert sim.requests == []


async def test_capabilities_the_catalog_does_not_list_are_refused(sim: AnthropicSimulator) -> None:
    no_stream = AnthropicModel(
        ModelInfo(
            name="a/b",
            provider="anthropic",
            provider_model="b",
            capabilities=frozenset({Capability.CHAT}),
        ),
        base_url=sim.url,
        api_key=SecretStr(KEY),
    )
    with pytest.raises(CapabilityUnsupported):
        await collect(no_stream, ask())
    assert sim.requests == []


async def test_secrets_stay_out_of_reprs_and_errors(
    model: AnthropicModel, sim: AnthropicSimulator
) -> None:
    sim.inject(Fault(status=401, message=f"invalid x-api-key: {KEY}"))
    with pytest.raises(AuthenticationFailed) as caught:
        await model.chat(ask())
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)
    assert KEY not in repr(model)
    assert "anthropic/claude-haiku-4-5" in repr(model)
    assert KEY not in str(model._client().headers)


# -- the official SDK accepts everything the simulator says ------------------------------------------


@pytest.fixture
def sdk(sim: AnthropicSimulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key=KEY, max_retries=0, timeout=5)


def test_sdk_parses_messages_and_tool_use(
    sdk: anthropic.Anthropic, sim: AnthropicSimulator
) -> None:
    plain = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        system="be brief",
        messages=[{"role": "user", "content": "hello"}],
    )
    sim.script(
        Reply(
            text="Checking.",
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Rome"})],
            cache_read_tokens=30,
            cache_write_tokens=5,
            reasoning_tokens=2,
        )
    )
    tools = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "get_weather", "input_schema": dict(WEATHER.parameters)}],
    )

    assert plain.content[0].type == "text"
    assert plain.content[0].text == "You said: hello"
    assert (plain.model, plain.stop_reason, plain._request_id) == (SNAPSHOT, "end_turn", rid(1))
    use = tools.content[1]
    assert use.type == "tool_use"
    assert (use.name, use.input) == ("get_weather", {"city": "Rome"})
    assert tools.stop_reason == "tool_use"
    assert (tools.usage.cache_read_input_tokens, tools.usage.cache_creation_input_tokens) == (30, 5)
    assert tools.usage.output_tokens_details is not None
    assert tools.usage.output_tokens_details.thinking_tokens == 2


def test_sdk_parses_streams(sdk: anthropic.Anthropic, sim: AnthropicSimulator) -> None:
    sim.script(Reply(text="a b", tool_calls=[ScriptedToolCall("get_weather", {"city": "Oslo"})]))
    with sdk.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    } <= set(kinds)
    assert final.content[0].type == "text"
    assert final.content[0].text == "a b"
    assert final.content[1].type == "tool_use"
    assert final.content[1].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("fault", "sdk_error"),
    [
        (Fault(status=429, retry_after=2), anthropic.RateLimitError),
        (Fault(status=529), anthropic.OverloadedError),
        (Fault(status=500), anthropic.InternalServerError),
        (Fault(status=401), anthropic.AuthenticationError),
        (Fault(status=403), anthropic.PermissionDeniedError),
        (Fault(status=404), anthropic.NotFoundError),
        (Fault(status=400, kind="context_length"), anthropic.BadRequestError),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_sdk_raises_its_typed_errors(
    sdk: anthropic.Anthropic,
    sim: AnthropicSimulator,
    fault: Fault,
    sdk_error: type[anthropic.APIStatusError],
) -> None:
    sim.inject(fault)
    with pytest.raises(sdk_error) as caught:
        sdk.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == fault.status
    assert caught.value.request_id == rid(1)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"


def test_sdk_raises_on_real_validation_errors(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="top-level `system` parameter"):
        sdk.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "system", "content": "x"}]
        )  # type: ignore[list-item,misc]
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        sdk.post("/v1/messages", body={"model": "claude-haiku-4-5", "messages": []}, cast_to=object)


def test_sdk_raises_on_an_error_event_mid_stream(
    sdk: anthropic.Anthropic, sim: AnthropicSimulator
) -> None:
    sim.inject(Fault(after_chunks=4, status=529))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(
            sdk.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": "a b c"}],
                stream=True,
            )
        )
