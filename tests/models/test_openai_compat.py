"""The OpenAI-compatible adapter against the OpenAI simulator over real loopback HTTP, and the
official ``openai`` SDK against the same simulator (so the simulator cannot drift from the API)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from podium.config import Settings
from podium.errors import (
    AuthenticationFailed,
    BadModelRequest,
    CapabilityUnsupported,
    ConfigError,
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
from podium.models.providers import openai_compat
from podium.models.providers.openai_compat import PROVIDERS, OpenAICompatModel, usage_from
from podium.models.registry import ModelRegistry
from podium.testing.simulators.openai import OpenAISimulator, embedding
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall

KEY = "sk-test-4f9c2a7e1b8d6c3a5e0f9b2d"
SNAPSHOT = "gpt-4o-mini-2024-07-18"
ALL = frozenset(Capability) - {Capability.OCR}
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SPECS = {spec.name: spec for spec in PROVIDERS}


def info(
    provider: str = "openai", model: str = "gpt-4o-mini", caps: frozenset[Capability] = ALL
) -> ModelInfo:
    return ModelInfo(
        name=f"{provider}/{model}", provider=provider, provider_model=model, capabilities=caps
    )


def ask(text: str = "hello world", **kw: Any) -> ChatRequest:
    return ChatRequest(model="openai/gpt-4o-mini", messages=[Message("user", text)], **kw)


async def collect(model: OpenAICompatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


@pytest.fixture
def sim(use_simulator: Any) -> OpenAISimulator:
    return use_simulator(OpenAISimulator, api_key=KEY, served={"gpt-4o-mini": SNAPSHOT})


@pytest.fixture
async def model(sim: OpenAISimulator) -> AsyncIterator[OpenAICompatModel]:
    adapter = OpenAICompatModel(
        info(), SPECS["openai"], base_url=f"{sim.url}/v1", api_key=SecretStr(KEY), timeout=2.0
    )
    yield adapter
    await adapter.close()


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_returns_text_usage_served_model_request_id_and_latency(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    response = await model.chat(ask("hello world"))

    assert response.text == "You said: hello world"
    assert response.model_requested == "openai/gpt-4o-mini"
    assert response.model_served == SNAPSHOT
    assert response.provider == "openai"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=2, output_tokens=4)
    assert response.request_id == f"req_{1:032x}"
    assert 0 < response.latency_s < 2
    sent = sim.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello world"}],
    }


async def test_every_request_parameter_reaches_the_wire(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    request = ChatRequest(
        model="openai/gpt-4o-mini",
        messages=[
            Message("system", "be brief"),
            Message("user", [{"type": "text", "text": "hi"}], name="ann"),
        ],
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        tools=[WEATHER],
        tool_choice="get_weather",
        seed=7,
        user="u-1",
        extra={"logprobs": True},
    )
    await model.chat(request)

    body = sim.requests[-1].json()
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"], body["user"]) == (
        0.2,
        0.9,
        ["END"],
        7,
        "u-1",
    )
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["logprobs"] is True


async def test_other_providers_send_max_tokens(sim: OpenAISimulator) -> None:
    adapter = OpenAICompatModel(
        info("groq", "llama-3.1-8b"),
        SPECS["groq"],
        base_url=f"{sim.url}/openai/v1",
        api_key=SecretStr(KEY),
    )
    try:
        await adapter.chat(ask(max_tokens=9))
    finally:
        await adapter.close()
    body = sim.requests[-1].json()
    assert body["max_tokens"] == 9
    assert "max_completion_tokens" not in body
    assert sim.requests[-1].path == "/openai/v1/chat/completions"


async def test_tool_call_round_trip(model: OpenAICompatModel, sim: OpenAISimulator) -> None:
    sim.script(Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
    first = await model.chat(ask("weather in Paris?", tools=[WEATHER]))

    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    assert first.tool_calls == [ToolCall("call_1", "get_weather", '{"city": "Paris"}')]

    history = [
        Message("user", "weather in Paris?"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", "18C and sunny", tool_call_id="call_1"),
    ]
    second = await model.chat(
        ChatRequest(model="openai/gpt-4o-mini", messages=history, tools=[WEATHER])
    )

    assert second.text == "You said: weather in Paris?"
    sent = sim.requests[-1].json()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_1"}


async def test_unanswered_tool_call_is_refused_as_the_api_does(model: OpenAICompatModel) -> None:
    history = [
        Message("user", "hi"),
        Message("assistant", "", tool_calls=[ToolCall("call_9", "f", "{}")]),
        Message("user", "and?"),
    ]
    with pytest.raises(BadModelRequest, match="call_9"):
        await model.chat(ChatRequest(model="openai/gpt-4o-mini", messages=history))


async def test_json_mode(model: OpenAICompatModel, sim: OpenAISimulator) -> None:
    response = await model.chat(ask("answer in JSON please", response_format="json"))

    assert json.loads(response.text) == {"echo": "answer in JSON please"}
    assert sim.requests[-1].json()["response_format"] == {"type": "json_object"}


async def test_json_mode_without_the_word_json_is_refused_as_the_api_does(
    model: OpenAICompatModel,
) -> None:
    with pytest.raises(BadModelRequest, match="must contain the word 'json'"):
        await model.chat(ask("answer please", response_format="json"))


async def test_json_schema_structured_output(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    response = await model.chat(
        ask("plan a trip", response_format={"name": "trip", "schema": schema, "strict": True})
    )

    assert json.loads(response.text) == {"city": "plan a trip", "days": 0}
    assert sim.requests[-1].json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "trip", "schema": schema, "strict": True},
    }


async def test_refusal_is_returned_as_content_filter(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    sim.script(Reply(text="", finish="content_filter"))
    response = await model.chat(ask())
    assert response.finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("length", "length"), ("content_filter", "content_filter"), ("stop", "stop")],
)
async def test_finish_reasons_are_mapped(
    model: OpenAICompatModel, sim: OpenAISimulator, finish: Any, expected: str
) -> None:
    sim.script(Reply(text="cut short", finish=finish))
    assert (await model.chat(ask())).finish_reason == expected


# -- usage ----------------------------------------------------------------------------------------


async def test_cached_and_reasoning_tokens_are_counted_once(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    reply = Reply(
        text="ok", input_tokens=10, output_tokens=5, cache_read_tokens=90, reasoning_tokens=20
    )
    sim.script(reply, reply)
    response = await model.chat(ask())
    chunks = await collect(model, ask())

    expected = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=90, reasoning_tokens=20)
    assert response.usage == expected
    assert chunks[-1].usage == expected
    assert response.usage.total_tokens == 125  # = prompt_tokens 100 + completion_tokens 25


def test_usage_from_openai_and_deepseek_shapes() -> None:
    openai_usage = {
        "prompt_tokens": 100,
        "completion_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    deepseek_usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }

    assert usage_from(openai_usage) == Usage(
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=60,
        cache_write_tokens=30,
        reasoning_tokens=20,
    )
    assert usage_from(deepseek_usage) == Usage(
        input_tokens=36, output_tokens=7, cache_read_tokens=64
    )
    assert usage_from(None) == Usage()


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_assembles_to_the_non_streamed_answer(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    whole = await model.chat(ask("the quick brown fox"))
    chunks = await collect(model, ask("the quick brown fox"))

    assert "".join(c.delta for c in chunks) == whole.text
    assert len([c for c in chunks if c.delta]) == 6  # one delta per word
    final = chunks[-1]
    assert (final.finish_reason, final.usage, final.model_served) == ("stop", whole.usage, SNAPSHOT)
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert final.request_id == f"req_{2:032x}"
    body = sim.requests[-1].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_deltas_are_assembled(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    calls = [
        ScriptedToolCall("get_weather", {"city": "Paris", "unit": "celsius"}),
        ScriptedToolCall("get_weather", {"city": "Oslo"}),
    ]
    sim.script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    whole = await model.chat(ask(tools=[WEATHER]))
    chunks = await collect(model, ask(tools=[WEATHER]))

    streamed = chunks[-1].tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in streamed] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert [c.arguments for c in streamed] == [c.arguments for c in whole.tool_calls]
    assert chunks[-1].finish_reason == "tool_calls"
    assert streamed[0].id.startswith("call_")
    assert streamed[0].id != streamed[1].id


@pytest.mark.parametrize("abort", [True, False], ids=["connection-reset", "clean-eof"])
async def test_stream_cut_before_done_raises_timeout(
    model: OpenAICompatModel, sim: OpenAISimulator, abort: bool
) -> None:
    sim.inject(Fault(after_chunks=3, abort=abort))
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in model.stream(ask("one two three four five six")):
            received.append(chunk)

    with pytest.raises(ProviderTimeout, match="terminal event") as caught:
        await consume()
    assert [c.delta for c in received] == ["You ", "said: "]  # the role chunk, then two words
    assert caught.value.request_id == f"req_{1:032x}"
    assert caught.value.retryable


async def test_stream_stalling_mid_way_raises_timeout(sim: OpenAISimulator) -> None:
    adapter = OpenAICompatModel(
        info(), SPECS["openai"], base_url=f"{sim.url}/v1", api_key=SecretStr(KEY), timeout=0.3
    )
    sim.inject(Fault(after_chunks=2, hang=True))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(adapter, ask())
    finally:
        await adapter.close()


async def test_error_event_inside_a_stream_is_mapped(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    sim.inject(Fault(after_chunks=2, status=500))
    with pytest.raises(ProviderOverloaded, match="The server had an error"):
        await collect(model, ask())


async def test_stream_refused_before_it_starts_is_mapped(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    sim.inject(Fault(status=429, retry_after=3))
    with pytest.raises(RateLimited) as caught:
        await collect(model, ask())
    assert caught.value.retry_after == 3.0


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        (Fault(status=429, retry_after=7), RateLimited, True),
        (Fault(status=500), ProviderOverloaded, True),
        (Fault(status=503), ProviderOverloaded, True),
        (Fault(status=504), ProviderTimeout, True),
        (Fault(status=401), AuthenticationFailed, False),
        (Fault(status=403), AuthenticationFailed, False),
        (Fault(status=404), ModelNotFound, False),
        (Fault(status=400, kind="context_length"), ContextLengthExceeded, False),
        (Fault(status=400, kind="content_filter"), ContentRefused, False),
        (
            Fault(status=400, message="Invalid 'temperature': decimal above maximum value."),
            BadModelRequest,
            False,
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
async def test_http_errors_are_mapped(
    model: OpenAICompatModel,
    sim: OpenAISimulator,
    fault: Fault,
    error: type[ModelError],
    retryable: bool,
) -> None:
    sim.inject(fault)
    with pytest.raises(error) as caught:
        await model.chat(ask())
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert caught.value.request_id == f"req_{1:032x}"
    assert (caught.value.provider, caught.value.model) == ("openai", "openai/gpt-4o-mini")
    assert f"openai {fault.status}" in str(caught.value)
    if fault.retry_after is not None:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == 7.0


async def test_retry_after_ms_header_is_honoured(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    sim.inject(Fault(status=429, headers={"retry-after-ms": "250"}))
    with pytest.raises(RateLimited) as caught:
        await model.chat(ask())
    assert caught.value.retry_after == 0.25


async def test_real_validation_errors_are_mapped(use_simulator: Any) -> None:
    strict = use_simulator(OpenAISimulator, api_key=KEY, models={"gpt-4o-mini"}, context_window=5)
    adapter = OpenAICompatModel(
        info(), SPECS["openai"], base_url=f"{strict.url}/v1", api_key=SecretStr(KEY)
    )
    unknown = OpenAICompatModel(
        info(model="gpt-9"), SPECS["openai"], base_url=f"{strict.url}/v1", api_key=SecretStr(KEY)
    )
    try:
        with pytest.raises(ContextLengthExceeded, match="maximum context length is 5 tokens"):
            await adapter.chat(ask("one two three four five six"))
        with pytest.raises(ModelNotFound, match="gpt-9"):
            await unknown.chat(ask())
    finally:
        await adapter.close()
        await unknown.close()


async def test_slow_response_still_succeeds(model: OpenAICompatModel, sim: OpenAISimulator) -> None:
    sim.inject(Fault(delay=0.3))
    response = await model.chat(ask())
    assert response.latency_s >= 0.3


async def test_hanging_provider_times_out(sim: OpenAISimulator) -> None:
    adapter = OpenAICompatModel(
        info(), SPECS["openai"], base_url=f"{sim.url}/v1", api_key=SecretStr(KEY), timeout=0.3
    )
    sim.inject(Fault(hang=True))
    try:
        with pytest.raises(ProviderTimeout, match="timed out"):
            await adapter.chat(ask())
    finally:
        await adapter.close()


async def test_refused_connection_is_overloaded() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = OpenAICompatModel(
        info(), SPECS["openai"], base_url=f"http://127.0.0.1:{port}/v1", api_key=SecretStr(KEY)
    )
    try:
        with pytest.raises(ProviderOverloaded, match="connection failed"):
            await adapter.chat(ask())
    finally:
        await adapter.close()


# -- embeddings -----------------------------------------------------------------------------------


async def test_embeddings(model: OpenAICompatModel, sim: OpenAISimulator) -> None:
    response = await model.embed(
        EmbedRequest(model="openai/text-embedding-3-small", inputs=["first text", "second"])
    )

    assert response.vectors == [
        pytest.approx(embedding("first text", 8)),
        pytest.approx(embedding("second", 8)),
    ]
    assert response.usage == Usage(input_tokens=3)
    assert response.model_served == SNAPSHOT
    assert response.request_id == f"req_{1:032x}"
    assert sim.requests[-1].path == "/v1/embeddings"
    assert sim.requests[-1].json() == {
        "input": ["first text", "second"],
        "encoding_format": "float",
        "model": "gpt-4o-mini",
    }


async def test_capabilities_the_catalog_does_not_list_are_refused_without_a_request(
    sim: OpenAISimulator,
) -> None:
    chat_only = OpenAICompatModel(
        info(caps=frozenset({Capability.CHAT})),
        SPECS["openai"],
        base_url=f"{sim.url}/v1",
        api_key=SecretStr(KEY),
    )
    with pytest.raises(CapabilityUnsupported):
        await chat_only.embed(EmbedRequest(model="x", inputs=["a"]))
    with pytest.raises(CapabilityUnsupported):
        await collect(chat_only, ask())
    assert sim.requests == []


# -- providers, keys, URLs ------------------------------------------------------------------------

DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1",
    "azure": None,
    "mistral": "https://api.mistral.ai/v1",
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "perplexity": "https://api.perplexity.ai",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": None,
    "llamacpp": None,
}


def registry() -> ModelRegistry:
    reg = ModelRegistry()
    openai_compat.register(reg)
    return reg


def test_every_provider_is_registered_with_its_default_url() -> None:
    reg = registry()
    assert reg.providers == sorted(DEFAULT_URLS)
    for provider, url in DEFAULT_URLS.items():
        adapter = reg.provider_factory(provider)(info(provider), Settings())
        assert isinstance(adapter, OpenAICompatModel)
        assert (adapter.provider, adapter.base_url) == (provider, url)


@pytest.mark.parametrize("provider", [p for p in DEFAULT_URLS if p != "azure"])
async def test_each_provider_uses_its_configured_url_and_key(
    sim: OpenAISimulator, provider: str
) -> None:
    key = f"key-for-{provider}-0123456789"
    sim.api_key = key
    settings = Settings(
        provider_urls={provider: f"{sim.url}/{provider}/v1"},
        provider_keys={provider: SecretStr(key)},
    )
    adapter = registry().provider_factory(provider)(info(provider, "some-model"), settings)
    try:
        response = await adapter.chat(ask())
    finally:
        sim.api_key = KEY
        await adapter.close()
    assert response.provider == provider
    assert sim.requests[-1].path == f"/{provider}/v1/chat/completions"
    assert sim.requests[-1].headers["authorization"] == f"Bearer {key}"


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("mistral", "MISTRAL_API_KEY"),
        ("perplexity", "PERPLEXITYAI_API_KEY"),
        ("azure", "AZURE_OPENAI_API_KEY"),
    ],
)
async def test_missing_key_fails_at_call_time_naming_the_variable(
    sim: OpenAISimulator, provider: str, variable: str
) -> None:
    settings = Settings(provider_urls={provider: sim.url})
    adapter = registry().provider_factory(provider)(
        info(provider), settings
    )  # building never fails
    with pytest.raises(AuthenticationFailed, match=variable):
        await adapter.chat(ask())
    with pytest.raises(AuthenticationFailed, match=variable):
        await adapter.embed(EmbedRequest(model="x", inputs=["a"]))
    assert sim.requests == []


@pytest.mark.parametrize("provider", ["ollama", "vllm", "llamacpp"])
async def test_keyless_servers_send_no_authorization(use_simulator: Any, provider: str) -> None:
    open_sim = use_simulator(OpenAISimulator)
    adapter = registry().provider_factory(provider)(
        info(provider), Settings(provider_urls={provider: f"{open_sim.url}/v1"})
    )
    try:
        await adapter.chat(ask())
    finally:
        await adapter.close()
    assert "authorization" not in open_sim.requests[-1].headers


@pytest.mark.parametrize("provider", ["vllm", "llamacpp", "azure"])
async def test_servers_without_a_default_url_must_be_configured(provider: str) -> None:
    adapter = registry().provider_factory(provider)(
        info(provider), Settings(provider_keys={"azure": SecretStr(KEY)})
    )
    with pytest.raises(ConfigError, match=f"PODIUM_PROVIDER_URL_{provider.upper()}"):
        await adapter.chat(ask())


async def test_azure_deployment_url_and_api_key_header(sim: OpenAISimulator) -> None:
    settings = Settings(provider_urls={"azure": sim.url}, provider_keys={"azure": SecretStr(KEY)})
    adapter = registry().provider_factory("azure")(info("azure", "prod-gpt4o"), settings)
    try:
        chat = await adapter.chat(ask(max_tokens=20))
        chunks = await collect(adapter, ask())
        vectors = await adapter.embed(EmbedRequest(model="azure/prod-gpt4o", inputs=["a"]))
    finally:
        await adapter.close()

    assert chat.text == "".join(c.delta for c in chunks) == "You said: hello world"
    assert len(vectors.vectors) == 1
    paths = [(r.path, r.query) for r in sim.requests]
    assert paths == [
        ("/openai/deployments/prod-gpt4o/chat/completions", {"api-version": "2024-10-21"}),
        ("/openai/deployments/prod-gpt4o/chat/completions", {"api-version": "2024-10-21"}),
        ("/openai/deployments/prod-gpt4o/embeddings", {"api-version": "2024-10-21"}),
    ]
    for sent in sim.requests:
        assert sent.headers["api-key"] == KEY
        assert "authorization" not in sent.headers
        assert "model" not in sent.json()
    assert sim.requests[0].json()["max_completion_tokens"] == 20


async def test_secrets_stay_out_of_reprs_and_errors(
    model: OpenAICompatModel, sim: OpenAISimulator
) -> None:
    sim.inject(
        Fault(status=401, message=f"Incorrect API key provided: {KEY}.")
    )  # a server quoting the key
    with pytest.raises(AuthenticationFailed) as caught:
        await model.chat(ask())
    wrong = OpenAICompatModel(
        info(),
        SPECS["openai"],
        base_url=f"{sim.url}/v1",
        api_key=SecretStr("sk-wrong-9d8c7b6a5f4e3d2c1b0a"),
    )
    with pytest.raises(AuthenticationFailed) as rejected:
        await wrong.chat(ask())
    await wrong.close()

    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value.args)
    assert "***" in str(caught.value)
    assert "sk-wrong-9d8c7b6a5f4e3d2c1b0a" not in str(rejected.value)
    assert "sk-*" in str(rejected.value)  # the API's own masking survives
    assert KEY not in repr(model)
    assert KEY not in str(model.__dict__.get("_api_key"))
    assert "openai/gpt-4o-mini" in repr(model)
    assert KEY not in str(model._client().headers)


async def test_close_releases_the_client_and_a_later_call_reconnects(
    model: OpenAICompatModel,
) -> None:
    await model.chat(ask())
    client = model._client()
    await model.close()
    assert client.is_closed
    assert (await model.chat(ask())).text == "You said: hello world"


# -- the official SDK accepts everything the simulator says ------------------------------------------


@pytest.fixture
def sdk(sim: OpenAISimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key=KEY, max_retries=0, timeout=5)


def test_sdk_parses_completions_tools_and_json(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    plain = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    sim.script(
        Reply(
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Rome"})],
            cache_read_tokens=4,
            reasoning_tokens=3,
        )
    )
    tools = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": dict(WEATHER.parameters)},
            }
        ],
    )
    structured = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "in json"}],
        response_format={"type": "json_object"},
    )

    assert plain.choices[0].message.content == "You said: hello"
    assert plain.model == SNAPSHOT
    assert plain.usage is not None
    assert plain.usage.prompt_tokens == 1
    call = tools.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Rome"},
    )  # type: ignore[union-attr]
    assert tools.usage.prompt_tokens_details.cached_tokens == 4  # type: ignore[union-attr]
    assert tools.usage.completion_tokens_details.reasoning_tokens == 3  # type: ignore[union-attr]
    assert json.loads(structured.choices[0].message.content or "") == {"echo": "in json"}


def test_sdk_parses_streams_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: a b c"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_sdk_parses_embeddings_in_both_encodings(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    default = sdk.embeddings.create(model="text-embedding-3-small", input="some text")
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["some text"], encoding_format="float", dimensions=4
    )

    assert sim.requests[0].json()["encoding_format"] == "base64"  # the SDK's own default
    assert default.data[0].embedding == pytest.approx(embedding("some text", 8), abs=1e-6)
    assert floats.data[0].embedding == pytest.approx(embedding("some text", 4))
    assert default.usage.prompt_tokens == 2


@pytest.mark.parametrize(
    ("fault", "sdk_error"),
    [
        (Fault(status=429, retry_after=2), openai.RateLimitError),
        (Fault(status=401), openai.AuthenticationError),
        (Fault(status=403), openai.PermissionDeniedError),
        (Fault(status=404), openai.NotFoundError),
        (Fault(status=400, kind="context_length"), openai.BadRequestError),
        (Fault(status=500), openai.InternalServerError),
        (Fault(status=503), openai.InternalServerError),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_sdk_raises_its_typed_errors(
    sdk: openai.OpenAI, sim: OpenAISimulator, fault: Fault, sdk_error: type[openai.APIStatusError]
) -> None:
    sim.inject(fault)
    with pytest.raises(sdk_error) as caught:
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == fault.status
    assert caught.value.request_id == f"req_{1:032x}"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"]
    if fault.kind == "context_length":
        assert caught.value.code == "context_length_exceeded"


def test_sdk_raises_on_real_validation_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.AuthenticationError, match=r"sk-\*+6789"):
        openai.OpenAI(
            base_url=sdk.base_url, api_key="sk-bad-key-123456789", max_retries=0
        ).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_sdk_raises_on_an_error_event_mid_stream(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    sim.inject(Fault(after_chunks=2, status=500))
    with pytest.raises(openai.APIError, match="The server had an error"):
        list(
            sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
        )


def test_sdk_azure_client_accepts_the_deployment_routes(sim: OpenAISimulator) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=sim.url, api_key=KEY, api_version="2024-10-21", max_retries=0
    )
    completion = azure.chat.completions.create(
        model="prod-gpt4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "You said: hi"
    assert sim.requests[-1].path == "/openai/deployments/prod-gpt4o/chat/completions"


async def test_simulator_runs_as_an_async_context_manager_and_releases_hung_requests() -> None:
    async with OpenAISimulator() as sim:
        url = sim.url
        sim.inject(Fault(hang=True))
        adapter = OpenAICompatModel(
            info("ollama"), SPECS["ollama"], base_url=f"{url}/v1", timeout=0.2
        )
        with pytest.raises(ProviderTimeout):
            await adapter.chat(ask())
        assert (await adapter.chat(ask())).text == "You said: hello world"  # one fault, one request
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.url
    with pytest.raises(ProviderOverloaded, match="connection failed"):
        await adapter.chat(ask())
    await adapter.close()
