"""The Bedrock adapter against the Converse simulator over real loopback HTTP — SigV4 signed and
verified, streams in the AWS event-stream framing — and botocore itself against the same
simulator (its parsers check the response shapes, the framing and the CRCs)."""

from __future__ import annotations

import binascii
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError
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
from podium.models.base import Capability, ChatChunk, ChatRequest, Message, Tool, ToolCall, Usage
from podium.models.catalog import ModelInfo
from podium.models.providers import bedrock as bedrock_module
from podium.models.providers.bedrock import (
    BedrockModel,
    EventStreamDecoder,
)
from podium.models.providers.bedrock import (
    EventStreamError as DecodeError,
)
from podium.models.registry import ModelRegistry
from podium.testing import FakeClock
from podium.testing.simulators.bedrock import (
    BedrockSimulator,
    encode_event,
    encode_exception,
    encode_message,
)
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLESESSIONTOKEN"
MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
CAPS = frozenset({Capability.CHAT, Capability.TOOLS, Capability.JSON, Capability.STREAM})
HAIKU = ModelInfo(f"bedrock/{MODEL_ID}", "bedrock", MODEL_ID, CAPS)
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "hello world", **kw: Any) -> ChatRequest:
    return ChatRequest(model=f"bedrock/{MODEL_ID}", messages=[Message("user", text)], **kw)


async def collect(model: BedrockModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


@pytest.fixture
def sim(use_simulator: Any) -> BedrockSimulator:
    return use_simulator(BedrockSimulator, access_key=ACCESS, secret_key=SECRET)


def adapter(sim: BedrockSimulator, info: ModelInfo = HAIKU, **kw: Any) -> BedrockModel:
    options: dict[str, Any] = {
        "base_url": sim.url,
        "access_key": SecretStr(ACCESS),
        "secret_key": SecretStr(SECRET),
        "region": "us-east-1",
        "timeout": 2.0,
    }
    return BedrockModel(info, **{**options, **kw})


@pytest.fixture
async def model(sim: BedrockSimulator) -> AsyncIterator[BedrockModel]:
    haiku = adapter(sim)
    yield haiku
    await haiku.close()


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_is_signed_and_maps_the_response(
    model: BedrockModel, sim: BedrockSimulator
) -> None:
    request = ChatRequest(
        model=f"bedrock/{MODEL_ID}",
        messages=[Message("system", "be brief"), Message("user", "hello world")],
        max_tokens=64,
        temperature=0.3,
        top_p=0.8,
        stop=["END"],
    )
    response = await model.chat(request)

    assert response.text == "You said: hello world"
    assert (response.model_requested, response.model_served, response.provider) == (
        f"bedrock/{MODEL_ID}",
        MODEL_ID,
        "bedrock",
    )
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=4, output_tokens=4)
    assert response.request_id == str(uuid.UUID(int=1, version=4))  # x-amzn-RequestId
    assert 0 < response.latency_s < 2
    sent = sim.requests[-1]
    assert sent.path == f"/model/{MODEL_ID}/converse"
    day = time.strftime("%Y%m%d", time.gmtime())
    assert sent.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS}/{day}/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date, Signature="
    )
    assert SECRET not in json.dumps(sent.headers)
    assert sent.json() == {
        "messages": [{"role": "user", "content": [{"text": "hello world"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {
            "maxTokens": 64,
            "temperature": 0.3,
            "topP": 0.8,
            "stopSequences": ["END"],
        },
    }


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(text="cut short", finish="length"), ("cut short", "length")),
        (Reply(text="held back", finish="content_filter"), ("held back", "content_filter")),
        (Reply(text="one two END three"), ("one two ", "stop")),
    ],
)
async def test_stop_reasons(
    model: BedrockModel, sim: BedrockSimulator, reply: Reply, expected: tuple[str, str]
) -> None:
    sim.script(reply)
    response = await model.chat(ask(stop=["END"]))
    assert (response.text, response.finish_reason) == expected


async def test_arn_model_ids_are_percent_encoded_and_signed(sim: BedrockSimulator) -> None:
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0"
    model = adapter(sim, ModelInfo("bedrock/nova", "bedrock", arn, CAPS))
    try:
        response = await model.chat(ask())
    finally:
        await model.close()
    assert response.text == "You said: hello world"
    assert sim.requests[-1].path == f"/model/{arn}/converse"  # decoded by the server


# -- SigV4 ----------------------------------------------------------------------------------------


async def test_wrong_secret_is_rejected_by_signature(sim: BedrockSimulator) -> None:
    wrong = "not-the-secret-0000000000000000000000000"
    model = adapter(sim, secret_key=SecretStr(wrong))
    try:
        with pytest.raises(AuthenticationFailed, match="InvalidSignatureException") as caught:
            await model.chat(ask())
    finally:
        await model.close()
    assert "does not match the signature you provided" in str(caught.value)
    assert wrong not in str(caught.value)
    assert caught.value.request_id is not None


async def test_unknown_access_key_is_unrecognized(sim: BedrockSimulator) -> None:
    model = adapter(sim, access_key=SecretStr("AKIAUNKNOWN000000000"))
    try:
        with pytest.raises(AuthenticationFailed, match="UnrecognizedClientException"):
            await model.chat(ask())
    finally:
        await model.close()


async def test_signature_for_another_region_is_rejected(sim: BedrockSimulator) -> None:
    model = adapter(sim, region="eu-west-1")  # still sent to the simulator's URL
    try:
        with pytest.raises(AuthenticationFailed, match="scoped to a valid region"):
            await model.chat(ask())
    finally:
        await model.close()


async def test_stale_clock_makes_an_expired_signature(sim: BedrockSimulator) -> None:
    stale = adapter(sim, clock=FakeClock(start=time.time() - 900))
    fresh = adapter(sim, clock=FakeClock(start=time.time()))
    try:
        with pytest.raises(AuthenticationFailed, match="Signature expired"):
            await stale.chat(ask())
        assert (await fresh.chat(ask())).text == "You said: hello world"
    finally:
        await stale.close()
        await fresh.close()


async def test_session_token_is_sent_and_signed(use_simulator: Any) -> None:
    sim = use_simulator(BedrockSimulator, access_key=ACCESS, secret_key=SECRET, session_token=TOKEN)
    with_token = adapter(sim, session_token=SecretStr(TOKEN))
    without = adapter(sim)
    try:
        assert (await with_token.chat(ask())).text == "You said: hello world"
        headers = sim.requests[-1].headers
        assert headers["x-amz-security-token"] == TOKEN
        assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1]
        with pytest.raises(
            AuthenticationFailed, match="security token included in the request is invalid"
        ):
            await without.chat(ask())
    finally:
        await with_token.close()
        await without.close()


async def test_a_tampered_body_fails_verification(sim: BedrockSimulator) -> None:
    url = f"{sim.url}/model/{MODEL_ID.replace(':', '%3A')}/converse"
    signed = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}'
    request = AWSRequest("POST", url, data=signed, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS, SECRET), "bedrock", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    async with httpx.AsyncClient() as client:
        good = await client.post(url, content=signed, headers=headers)
        tampered = await client.post(url, content=signed.replace(b"hi", b"yo"), headers=headers)
    assert good.status_code == 200
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")


async def test_missing_credentials_fail_at_call_time_naming_the_variables(
    sim: BedrockSimulator,
) -> None:
    model = BedrockModel(HAIKU, base_url=sim.url)
    with pytest.raises(AuthenticationFailed, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        await model.chat(ask())
    half = BedrockModel(HAIKU, base_url=sim.url, access_key=SecretStr(ACCESS))
    with pytest.raises(AuthenticationFailed, match="set AWS_SECRET_ACCESS_KEY"):
        await collect(half, ask())
    assert sim.requests == []


async def test_secrets_stay_out_of_reprs_and_logs(
    use_simulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sim = use_simulator(BedrockSimulator, access_key=ACCESS, secret_key=SECRET, session_token=TOKEN)
    model = adapter(sim, session_token=SecretStr(TOKEN))
    try:
        with caplog.at_level(logging.DEBUG):
            await model.chat(ask())
            await collect(model, ask())
    finally:
        await model.close()
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
    for text in (repr(model), str(model)):
        assert SECRET not in text
        assert TOKEN not in text
        assert ACCESS not in text


# -- tools and JSON -------------------------------------------------------------------------------


async def test_tool_use_round_trip(model: BedrockModel, sim: BedrockSimulator) -> None:
    first = await model.chat(ask("weather in Paris", tools=[WEATHER], tool_choice="required"))

    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert call.id.startswith("tooluse_")
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "weather in Paris"})
    assert sim.requests[-1].json()["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "inputSchema": {"json": dict(WEATHER.parameters)},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }

    history = [
        Message("user", "weather in Paris"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 21}', tool_call_id=call.id),
        Message("user", "and tomorrow?"),
    ]
    second = await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))

    assert second.text == 'You said: {"temp_c": 21} and tomorrow?'
    messages = sim.requests[-1].json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]  # merged to alternate
    assert messages[1]["content"] == [
        {
            "toolUse": {
                "toolUseId": call.id,
                "name": "get_weather",
                "input": {"city": "weather in Paris"},
            }
        }
    ]
    assert messages[2]["content"] == [
        {
            "toolResult": {
                "toolUseId": call.id,
                "content": [{"json": {"temp_c": 21}}],
                "status": "success",
            }
        },
        {"text": "and tomorrow?"},
    ]


async def test_naming_a_tool_forces_it(model: BedrockModel, sim: BedrockSimulator) -> None:
    response = await model.chat(ask("weather", tools=[WEATHER], tool_choice="get_weather"))
    assert response.tool_calls[0].name == "get_weather"
    assert sim.requests[-1].json()["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


async def test_unanswered_tool_use_is_refused(model: BedrockModel) -> None:
    history = [
        Message("user", "weather"),
        Message("assistant", "", tool_calls=[ToolCall("tooluse_1", "get_weather", "{}")]),
        Message("user", "well?"),
    ]
    with pytest.raises(
        BadModelRequest, match=r"Expected toolResult blocks at messages\.2\.content"
    ):
        await model.chat(ChatRequest(model="x", messages=history, tools=[WEATHER]))


async def test_json_mode_uses_output_config(model: BedrockModel, sim: BedrockSimulator) -> None:
    plain = await model.chat(ask("give me json", response_format="json"))
    assert json.loads(plain.text) == {"echo": "give me json"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    shaped = await model.chat(ask("Ada", response_format={"name": "person", "schema": schema}))
    assert json.loads(shaped.text) == {"name": "Ada"}
    assert sim.requests[-1].json()["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "person"}},
        }
    }


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_assembles_the_same_answer_as_chat(
    model: BedrockModel, sim: BedrockSimulator
) -> None:
    reply = Reply(text="the quick brown fox jumps", input_tokens=3, output_tokens=5)
    sim.script(reply, reply)
    whole = await model.chat(ask())
    chunks = await collect(model, ask())

    sent = sim.requests[-1]
    assert sent.path == f"/model/{MODEL_ID}/converse-stream"
    assert sent.headers["accept"] == "application/vnd.amazon.eventstream"
    assert "".join(c.delta for c in chunks) == whole.text == "the quick brown fox jumps"
    assert len(chunks) == 6
    final = chunks[-1]
    assert (final.finish_reason, final.usage, final.tool_calls) == ("stop", whole.usage, [])
    assert final.request_id == str(uuid.UUID(int=2, version=4))


async def test_stream_assembles_tool_use(model: BedrockModel, sim: BedrockSimulator) -> None:
    sim.script(
        Reply(
            text="Checking.",
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Lima"}, id="tooluse_x1")],
        )
    )
    chunks = await collect(model, ask("weather", tools=[WEATHER]))

    assert "".join(c.delta for c in chunks) == "Checking."
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == [ToolCall("tooluse_x1", "get_weather", '{"city": "Lima"}')]


@pytest.mark.parametrize(
    ("after", "abort"),
    [(3, True), (3, False), (9, False)],  # mid-text; or after messageStop, before metadata
)
async def test_stream_cut_before_its_terminal_events_is_a_timeout(
    model: BedrockModel, sim: BedrockSimulator, after: int, abort: bool
) -> None:
    sim.inject(Fault(after_chunks=after, abort=abort))
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in model.stream(ask("one two three four")):
            received.append(chunk)

    with pytest.raises(ProviderTimeout, match="terminal event"):
        await consume()
    assert all(c.finish_reason is None for c in received)
    assert received  # text had arrived before the cut


async def test_stream_hang_is_a_timeout(sim: BedrockSimulator) -> None:
    model = adapter(sim, timeout=0.3)
    sim.inject(Fault(after_chunks=2, hang=True))
    try:
        with pytest.raises(ProviderTimeout):
            await collect(model, ask())
    finally:
        await model.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RateLimited),
        (503, ProviderOverloaded),
        (424, ProviderOverloaded),
        (400, BadModelRequest),
    ],
)
async def test_in_stream_exceptions_are_mapped(
    model: BedrockModel, sim: BedrockSimulator, status: int, error: type[ModelError]
) -> None:
    sim.inject(Fault(status=status, after_chunks=2))
    with pytest.raises(error) as caught:
        await collect(model, ask())
    assert type(caught.value) is error
    assert caught.value.request_id is not None


# -- the event-stream codec -----------------------------------------------------------------------


def test_decoder_reassembles_messages_fed_byte_by_byte() -> None:
    wire = encode_event("messageStart", {"role": "assistant"}) + encode_exception(
        "throttlingException", {"message": "slow down"}
    )
    decoder = EventStreamDecoder()
    messages = [m for i in range(len(wire)) for m in decoder.feed(wire[i : i + 1])]

    assert decoder.pending == 0
    assert [(m.kind, m.name) for m in messages] == [
        ("event", "messageStart"),
        ("exception", "throttlingException"),
    ]
    assert messages[0].json()["role"] == "assistant"
    assert messages[1].json() == {"message": "slow down"}
    assert messages[0].headers[":content-type"] == "application/json"


def test_decoder_reads_every_header_type() -> None:
    def header(name: str, kind: int, value: bytes) -> bytes:
        return bytes([len(name)]) + name.encode() + bytes([kind]) + value

    raw_headers = b"".join(
        [
            header("t", 0, b""),
            header("f", 1, b""),
            header("b", 2, struct.pack(">b", -5)),
            header("s", 3, struct.pack(">h", -300)),
            header("i", 4, struct.pack(">i", 70000)),
            header("l", 5, struct.pack(">q", 2**40)),
            header("y", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
            header("str", 7, struct.pack(">H", 2) + b"ok"),
            header("ts", 8, struct.pack(">q", 1_700_000_000_000)),
            header("u", 9, uuid.UUID(int=42).bytes),
        ]
    )
    prelude = struct.pack(">II", 12 + len(raw_headers) + 2 + 4, len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    body = prelude + raw_headers + b"{}"
    [message] = EventStreamDecoder().feed(body + struct.pack(">I", binascii.crc32(body)))

    assert dict(message.headers) == {
        "t": True,
        "f": False,
        "b": -5,
        "s": -300,
        "i": 70000,
        "l": 2**40,
        "y": b"\x00\x01\x02",
        "str": "ok",
        "ts": 1_700_000_000_000,
        "u": uuid.UUID(int=42),
    }
    assert message.payload == b"{}"


@pytest.mark.parametrize("where", [8, -2])  # in the prelude CRC; in the message CRC
def test_decoder_rejects_corrupt_crcs(where: int) -> None:
    wire = bytearray(encode_message({":message-type": "event", ":event-type": "x"}, b"{}"))
    wire[where] ^= 0xFF
    with pytest.raises(DecodeError, match="CRC mismatch"):
        EventStreamDecoder().feed(bytes(wire))


async def test_a_corrupt_stream_is_an_error_not_an_answer() -> None:
    # Loopback servers cannot corrupt bytes in flight: the transport seam serves them instead.
    good = encode_event("messageStart", {"role": "assistant"})
    bad = bytearray(
        encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    )
    bad[-1] ^= 0x01

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=good + bytes(bad),
            headers={"content-type": "application/vnd.amazon.eventstream"},
        )

    model = BedrockModel(
        HAIKU,
        base_url="http://bedrock.test",
        access_key=SecretStr(ACCESS),
        secret_key=SecretStr(SECRET),
        transport=httpx.MockTransport(serve),
    )
    with pytest.raises(ProviderOverloaded, match="corrupt event stream"):
        await collect(model, ask())
    await model.close()


# -- usage and errors -----------------------------------------------------------------------------


async def test_cache_tokens_are_counted_once(model: BedrockModel, sim: BedrockSimulator) -> None:
    reply = Reply(
        text="ok", input_tokens=10, output_tokens=5, cache_read_tokens=80, cache_write_tokens=20
    )
    sim.script(reply, reply)
    usage = (await model.chat(ask())).usage
    streamed = (await collect(model, ask()))[-1].usage

    expected = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=80, cache_write_tokens=20)
    assert usage == streamed == expected
    assert usage.total_tokens == 115  # Bedrock's totalTokens


def aws_type(name: str) -> dict[str, str]:
    return {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


@pytest.mark.parametrize(
    ("fault", "error", "named"),
    [
        (Fault(status=400), BadModelRequest, "ValidationException"),
        (Fault(status=403), AuthenticationFailed, "AccessDeniedException"),
        (Fault(status=404), ModelNotFound, "ResourceNotFoundException"),
        (Fault(status=408), ProviderTimeout, "ModelTimeoutException"),
        (Fault(status=424), ProviderOverloaded, "ModelErrorException"),
        (
            Fault(status=429, headers=aws_type("ModelNotReadyException")),
            ProviderOverloaded,
            "ModelNotReadyException",
        ),
        (Fault(status=500), ProviderOverloaded, "InternalServerException"),
        (Fault(status=503), ProviderOverloaded, "ServiceUnavailableException"),
    ],
)
async def test_aws_errors_are_mapped_by_type(
    model: BedrockModel, sim: BedrockSimulator, fault: Fault, error: type[ModelError], named: str
) -> None:
    sim.inject(fault)
    with pytest.raises(error, match=named) as caught:
        await model.chat(ask())
    assert type(caught.value) is error
    assert caught.value.request_id == str(uuid.UUID(int=1, version=4))


async def test_throttling_carries_retry_after(model: BedrockModel, sim: BedrockSimulator) -> None:
    sim.inject(Fault(status=429, retry_after=3), Fault(status=429))
    with pytest.raises(RateLimited, match="ThrottlingException") as with_header:
        await model.chat(ask())
    with pytest.raises(RateLimited) as without:
        await collect(model, ask())
    assert with_header.value.retry_after == 3
    assert without.value.retry_after is None


async def test_input_too_long_is_a_context_overflow(use_simulator: Any) -> None:
    sim = use_simulator(BedrockSimulator, access_key=ACCESS, secret_key=SECRET, context_window=5)
    model = adapter(sim)
    try:
        with pytest.raises(ContextLengthExceeded, match="Input is too long"):
            await model.chat(ask("one two three four five six"))
    finally:
        await model.close()


async def test_invalid_model_identifier_is_not_found(use_simulator: Any) -> None:
    sim = use_simulator(
        BedrockSimulator, access_key=ACCESS, secret_key=SECRET, models=["amazon.nova-micro-v1:0"]
    )
    model = adapter(sim)
    try:
        with pytest.raises(ModelNotFound, match="model identifier is invalid"):
            await model.chat(ask())
    finally:
        await model.close()


# -- settings -------------------------------------------------------------------------------------


def test_register_builds_from_settings() -> None:
    registry = ModelRegistry()
    bedrock_module.register(registry)
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": "eu-central-1",
    }
    model = registry.provider_factory("bedrock")(HAIKU, Settings.from_env(env))
    assert isinstance(model, BedrockModel)
    assert model.region == "eu-central-1"
    assert model.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    default = registry.provider_factory("bedrock")(
        HAIKU,
        Settings.from_env(
            {
                "AWS_DEFAULT_REGION": "ap-south-1",
                "PODIUM_PROVIDER_URL_BEDROCK": "http://127.0.0.1:1",
            }
        ),
    )
    assert isinstance(default, BedrockModel)
    assert (default.region, default.base_url) == ("ap-south-1", "http://127.0.0.1:1")
    plain = registry.provider_factory("bedrock")(HAIKU, Settings.from_env({}))
    assert isinstance(plain, BedrockModel)
    assert plain.region == "us-east-1"
    assert "bedrock" in ModelRegistry.default().providers


# -- botocore against the simulator ---------------------------------------------------------------


@pytest.fixture
def client(sim: BedrockSimulator) -> Iterator[Any]:
    session = botocore.session.get_session()
    client = session.create_client(
        "bedrock-runtime",
        endpoint_url=sim.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


USER = [{"role": "user", "content": [{"text": "hello there"}]}]


def test_botocore_parses_converse(client: Any, sim: BedrockSimulator) -> None:
    sim.script(
        Reply(text="hi", input_tokens=2, output_tokens=1, cache_read_tokens=3, cache_write_tokens=4)
    )
    response = client.converse(modelId=MODEL_ID, messages=USER, system=[{"text": "be brief"}])
    assert response["output"]["message"] == {"role": "assistant", "content": [{"text": "hi"}]}
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {
        "inputTokens": 2,
        "outputTokens": 1,
        "totalTokens": 10,
        "cacheReadInputTokens": 3,
        "cacheWriteInputTokens": 4,
    }
    assert response["ResponseMetadata"]["RequestId"] == str(uuid.UUID(int=1, version=4))


def test_botocore_parses_tool_use_and_json_output(client: Any) -> None:
    tool_config = {
        "tools": [
            {"toolSpec": {"name": "get_weather", "inputSchema": {"json": dict(WEATHER.parameters)}}}
        ],
        "toolChoice": {"tool": {"name": "get_weather"}},
    }
    response = client.converse(modelId=MODEL_ID, messages=USER, toolConfig=tool_config)
    [block] = response["output"]["message"]["content"]
    assert block["toolUse"]["input"] == {"city": "hello there"}
    assert response["stopReason"] == "tool_use"

    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    output = {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": json.dumps(schema)}},
        }
    }
    shaped = client.converse(modelId=MODEL_ID, messages=USER, outputConfig=output)
    assert json.loads(shaped["output"]["message"]["content"][0]["text"]) == {"name": "hello there"}


def test_botocore_decodes_the_event_stream(client: Any, sim: BedrockSimulator) -> None:
    sim.script(Reply(text="two words", tool_calls=[ScriptedToolCall("f", {"a": 1})]))
    events = list(client.converse_stream(modelId=MODEL_ID, messages=USER)["stream"])
    names = [next(iter(e)) for e in events]
    assert names == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[4]["contentBlockStart"]["start"]["toolUse"]["name"] == "f"
    assert events[5]["contentBlockDelta"]["delta"]["toolUse"]["input"] == '{"a": 1}'
    assert events[7]["messageStop"]["stopReason"] == "tool_use"
    assert events[8]["metadata"]["usage"]["outputTokens"] == 4


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(status=429), "ThrottlingException"),
        (Fault(status=400), "ValidationException"),
        (Fault(status=403), "AccessDeniedException"),
        (Fault(status=404), "ResourceNotFoundException"),
        (Fault(status=408), "ModelTimeoutException"),
        (Fault(status=503), "ServiceUnavailableException"),
        (Fault(status=429, headers=aws_type("ModelNotReadyException")), "ModelNotReadyException"),
    ],
)
def test_botocore_parses_errors(
    client: Any, sim: BedrockSimulator, fault: Fault, code: str
) -> None:
    sim.inject(fault)
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=MODEL_ID, messages=USER)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == fault.status


def test_botocore_parses_an_in_stream_exception(client: Any, sim: BedrockSimulator) -> None:
    sim.inject(Fault(status=429, after_chunks=1))
    stream = client.converse_stream(modelId=MODEL_ID, messages=USER)["stream"]
    with pytest.raises(EventStreamError) as caught:
        list(stream)
    assert caught.value.response["Error"]["Code"] == "throttlingException"


def test_botocore_signature_with_a_wrong_secret_is_rejected(sim: BedrockSimulator) -> None:
    wrong = botocore.session.get_session().create_client(
        "bedrock-runtime",
        endpoint_url=sim.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key="wrong",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as caught:
        wrong.converse(modelId=MODEL_ID, messages=USER)
    wrong.close()
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
