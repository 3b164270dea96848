"""The cache stage: request normalisation and keys, what is cacheable, hits and misses, tenants,
failures. Backend behaviour is in ``tests/conformance/test_cache.py``."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from podium.gateway.cache import (
    CacheHit,
    CacheMiss,
    CachePolicy,
    CacheQuery,
    ModelEmbedder,
    ResponseCache,
    decode_response,
    encode_response,
    exact_key,
    is_sampled,
    namespace,
    normalise,
    semantic_bucket,
    semantic_text,
)
from podium.gateway.cache_backends import MemoryCacheBackend, RedisCacheBackend
from podium.models.base import (
    ChatRequest,
    ChatResponse,
    Message,
    Model,
    Tool,
    ToolCall,
    Usage,
)
from podium.testing import FakeClock

ACME, GLOBEX = namespace("acme", "search"), namespace("globex", "search")


def req(text: str = "What is the capital of France?", **kw: object) -> ChatRequest:
    kw.setdefault("temperature", 0.0)
    messages = kw.pop("messages", None) or [
        Message("system", "You answer geography questions."),
        Message("user", text),
    ]
    return ChatRequest(model=str(kw.pop("model", "gpt-4o-mini")), messages=messages, **kw)  # type: ignore[arg-type]


def resp(text: str = "Paris.", **kw: object) -> ChatResponse:
    fields: dict[str, object] = {
        "text": text,
        "model_requested": "gpt-4o-mini",
        "model_served": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "usage": Usage(input_tokens=21, output_tokens=3, cache_read_tokens=4),
        "request_id": "req_1",
        "latency_s": 0.8,
    }
    fields.update(kw)
    return ChatResponse(**fields)  # type: ignore[arg-type]


class CountingEmbedder:
    """An embedder over the real model that counts the texts it embeds."""

    def __init__(self, inner: ModelEmbedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        self.texts += texts
        return await self.inner.embed(texts)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> ResponseCache:
    """An exact-only cache in memory."""
    return ResponseCache(MemoryCacheBackend(), clock=clock)


async def cached(cache: ResponseCache, query: CacheQuery, response: ChatResponse) -> CacheMiss:
    miss = await cache.lookup(query)
    assert isinstance(miss, CacheMiss)
    assert await cache.store(miss, response)
    return miss


# -- keys -----------------------------------------------------------------------------------------


def test_key_is_a_pinned_sha256_of_the_normalised_request() -> None:
    # Pinned: a change of normalisation silently empties every deployed cache.
    canonical = (
        '{"extra":{},"max_tokens":null,"messages":[{"content":"You answer geography questions.",'
        '"name":null,"role":"system","tool_call_id":null,"tool_calls":[]},{"content":"What is the'
        ' capital of France?","name":null,"role":"user","tool_call_id":null,"tool_calls":[]}],'
        '"model":"gpt-4o-mini","response_format":"text","seed":null,"stop":[],"temperature":0.0,'
        '"tool_choice":null,"tools":[],"top_p":null}'
    )
    expected = hashlib.sha256(b"exact/v1\n" + canonical.encode()).hexdigest()
    assert exact_key(req("  What is the capital   of France?")) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (req("What is  the capital\n of France? "), req("What is the capital of France?")),
        (req(temperature=0), req(temperature=0.0)),
        (
            req(extra={"a": 1, "b": {"x": 1, "y": 2}}),
            req(extra={"b": {"y": 2, "x": 1}, "a": 1}),
        ),
        (
            req(response_format={"name": "city", "schema": {"type": "object", "title": "C"}}),
            req(response_format={"schema": {"title": "C", "type": "object"}, "name": "city"}),
        ),
        (req(stop=["\n", "END"]), req(stop=["END", "\n"])),
        (req(user="alice"), req(user="bob")),
        (
            req(tools=[Tool("get", "Get  a\ncity.", {"type": "object", "required": []})]),
            req(tools=[Tool("get", "Get a city.", {"required": [], "type": "object"})]),
        ),
    ],
    ids=["whitespace", "int-float", "extra-order", "schema-order", "stop-order", "user", "tools"],
)
def test_equivalent_requests_share_a_key(a: ChatRequest, b: ChatRequest) -> None:
    assert exact_key(a) == exact_key(b)


def test_tool_call_arguments_are_compared_as_json() -> None:
    def turn(arguments: str) -> ChatRequest:
        call = ToolCall("call_1", "get", arguments)
        return req(
            messages=[
                Message("user", "Weather in Paris?"),
                Message("assistant", "", tool_calls=[call]),
                Message("tool", "18C", tool_call_id="call_1"),
            ]
        )

    assert exact_key(turn('{"city": "Paris", "unit": "C"}')) == exact_key(
        turn('{"unit":"C","city":"Paris"}')
    )
    assert exact_key(turn('{"city": "Paris"}')) != exact_key(turn('{"city": "Lyon"}'))


@pytest.mark.parametrize(
    "changed",
    [
        req(model="gpt-4o"),
        req("What is the capital of Spain?"),
        req(temperature=0.2),
        req(top_p=0.5),
        req(max_tokens=10),
        req(seed=7),
        req(stop=["END"]),
        req(tools=[Tool("get")]),
        req(tool_choice="none"),
        req(response_format="json"),
        req(extra={"reasoning_effort": "high"}),
        req(messages=[Message("user", "What is the capital of France?")]),
        req(messages=[Message("system", "What is the capital of France?")]),
    ],
    ids=[
        "model",
        "question",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "extra",
        "no-system",
        "system-role",
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(changed: ChatRequest) -> None:
    assert exact_key(changed) != exact_key(req())


def test_normalised_form_names_what_the_key_covers() -> None:
    assert set(normalise(req())) == {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "extra",
    }


def test_semantic_text_is_the_last_user_turn_made_of_text() -> None:
    assert semantic_text(req("  Capital of  France? ")) == "Capital of France?"
    image = Message("user", [{"type": "text", "text": "What is this?"}, {"type": "image_url"}])
    assert semantic_text(req(messages=[image])) is None
    assert semantic_text(req(messages=[Message("user", "hi"), Message("assistant", "hey")])) is None
    parts = Message("user", [{"type": "text", "text": "Hello"}, {"type": "text", "text": " you"}])
    assert semantic_text(req(messages=[parts])) == "Hello you"


def test_semantic_bucket_ignores_the_question_but_not_the_context() -> None:
    bucket = semantic_bucket(req("Capital of France?"), "e5")
    assert semantic_bucket(req("Capital of Peru?"), "e5") == bucket
    assert semantic_bucket(req("Capital of France?", model="gpt-4o"), "e5") != bucket
    assert semantic_bucket(req("Capital of France?", max_tokens=5), "e5") != bucket
    assert semantic_bucket(req("Capital of France?"), "another-embedder") != bucket
    other_system = req(messages=[Message("system", "Answer in French."), Message("user", "x")])
    assert semantic_bucket(other_system, "e5") != bucket


def test_namespace_names_the_tenant() -> None:
    assert namespace("acme") == "org:acme"
    assert namespace("acme", "search") == "org:acme/team:search"
    with pytest.raises(ValueError, match="organisation"):
        namespace("")


def test_response_codec_round_trips() -> None:
    response = resp(
        tool_calls=(ToolCall("c1", "get", '{"city":"Paris"}'),),
        finish_reason="tool_calls",
        usage=Usage(10, 2, 3, 4, 5),
    )
    assert decode_response(encode_response(response)) == response


# -- what is cacheable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "seed", "policy", "sampled"),
    [
        (0.0, None, CachePolicy(), False),
        (0.7, None, CachePolicy(), True),
        (0.7, 42, CachePolicy(), False),
        (None, None, CachePolicy(), True),  # the providers' default temperature is 1
        (None, None, CachePolicy(assume_temperature=0.0), False),
    ],
)
def test_sampled_requests(
    temperature: float | None, seed: int | None, policy: CachePolicy, sampled: bool
) -> None:
    assert is_sampled(req(temperature=temperature, seed=seed), policy) is sampled


async def test_sampled_requests_are_not_cached_unless_opted_in(clock: FakeClock) -> None:
    backend = MemoryCacheBackend()
    cache = ResponseCache(backend, clock=clock)
    sampled = CacheQuery(ACME, req(temperature=0.8))
    miss = await cache.lookup(sampled)
    assert isinstance(miss, CacheMiss)
    assert miss.reason == "uncacheable"
    assert miss.key is None
    assert not await cache.store(miss, resp())
    assert len(backend) == 0

    await cached(cache, dataclasses.replace(sampled, allow_sampled=True), resp())
    assert isinstance(
        await cache.lookup(dataclasses.replace(sampled, allow_sampled=True)), CacheHit
    )
    # Opting in is the caller's: another caller asking without it is not served from cache.
    assert isinstance(await cache.lookup(sampled), CacheMiss)

    everyone = ResponseCache(backend, clock=clock, policy=CachePolicy(cache_sampled=True))
    assert isinstance(await everyone.lookup(sampled), CacheHit)


@pytest.mark.parametrize("finish", ["error", "content_filter"])
async def test_failed_answers_are_never_stored(cache: ResponseCache, finish: str) -> None:
    miss = await cache.lookup(CacheQuery(ACME, req()))
    assert isinstance(miss, CacheMiss)
    assert not await cache.store(miss, resp(finish_reason=finish))
    assert isinstance(await cache.lookup(CacheQuery(ACME, req())), CacheMiss)


# -- hits -----------------------------------------------------------------------------------------


async def test_exact_hit_reports_age_similarity_and_savings(
    cache: ResponseCache, clock: FakeClock
) -> None:
    stored = resp()
    await cached(cache, CacheQuery(ACME, req()), stored)
    clock.advance(42.5)
    hit = await cache.lookup(CacheQuery(ACME, req("What is the  capital of France?\n")))
    assert isinstance(hit, CacheHit)
    assert (hit.kind, hit.similarity, hit.age_s, hit.namespace) == ("exact", 1.0, 42.5, ACME)
    assert hit.response == stored
    assert hit.saved_usage == Usage(input_tokens=21, output_tokens=3, cache_read_tokens=4)
    assert hit.key == exact_key(req())


async def test_ttl_default_and_per_request(clock: FakeClock) -> None:
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, policy=CachePolicy(ttl_s=100))
    await cached(cache, CacheQuery(ACME, req("a")), resp())
    await cached(cache, CacheQuery(ACME, req("b"), ttl_s=10), resp())
    clock.advance(10)
    assert isinstance(await cache.lookup(CacheQuery(ACME, req("a"))), CacheHit)
    assert isinstance(await cache.lookup(CacheQuery(ACME, req("b"))), CacheMiss)
    clock.advance(90)
    assert isinstance(await cache.lookup(CacheQuery(ACME, req("a"))), CacheMiss)
    miss = await cache.lookup(CacheQuery(ACME, req("c"), ttl_s=0))
    assert isinstance(miss, CacheMiss)
    assert not await cache.store(miss, resp())


async def test_one_tenant_never_sees_another_tenants_answers(cache: ResponseCache) -> None:
    await cached(cache, CacheQuery(ACME, req()), resp("Acme's Paris."))
    assert isinstance(await cache.lookup(CacheQuery(GLOBEX, req())), CacheMiss)
    assert isinstance(await cache.lookup(CacheQuery(namespace("acme"), req())), CacheMiss)
    await cached(cache, CacheQuery(GLOBEX, req()), resp("Globex's Paris."))
    acme = await cache.lookup(CacheQuery(ACME, req()))
    globex = await cache.lookup(CacheQuery(GLOBEX, req()))
    assert isinstance(acme, CacheHit)
    assert acme.response.text == "Acme's Paris."
    assert isinstance(globex, CacheHit)
    assert globex.response.text == "Globex's Paris."


async def test_a_query_needs_a_namespace(cache: ResponseCache) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await cache.lookup(CacheQuery("", req()))


# -- semantic, with the real local embedding model ------------------------------------------------


async def test_semantic_hit_embeds_each_request_once(clock: FakeClock, e5: ModelEmbedder) -> None:
    embedder = CountingEmbedder(e5)
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, embedder=embedder)
    miss = await cached(cache, CacheQuery(ACME, req("What is the capital of France?")), resp())
    assert miss.vector is not None
    assert len(miss.vector) == 384
    assert embedder.texts == ["What is the capital of France?"]  # store reused the lookup's

    exact = await cache.lookup(CacheQuery(ACME, req("What is the capital of France?")))
    assert isinstance(exact, CacheHit)
    assert exact.kind == "exact"
    assert len(embedder.texts) == 1  # an exact hit embeds nothing

    hit = await cache.lookup(CacheQuery(ACME, req("  what is the capital of france?? ")))
    assert isinstance(hit, CacheHit)
    assert hit.kind == "semantic"
    assert 0.95 <= hit.similarity < 1.0
    assert hit.response.text == "Paris."
    assert isinstance(
        await cache.lookup(CacheQuery(GLOBEX, req("what's the capital of France?"))), CacheMiss
    )

    no_semantic = await cache.lookup(
        CacheQuery(ACME, req("what is the capital of france??"), semantic=False)
    )
    assert isinstance(no_semantic, CacheMiss)
    assert no_semantic.vector is None
    assert len(embedder.texts) == 3  # the semantic=False lookup embedded nothing


async def test_semantic_threshold_is_the_policys(clock: FakeClock, e5: ModelEmbedder) -> None:
    backend = MemoryCacheBackend()
    strict = ResponseCache(backend, clock=clock, embedder=e5)
    loose = ResponseCache(
        backend, clock=clock, embedder=e5, policy=CachePolicy(semantic_threshold=0.85)
    )
    await cached(strict, CacheQuery(ACME, req("What is the capital of France?")), resp())
    germany = CacheQuery(ACME, req("What is the capital of Germany?"))
    assert isinstance(await strict.lookup(germany), CacheMiss)
    hit = await loose.lookup(germany)  # why the default is high: this would be a wrong answer
    assert isinstance(hit, CacheHit)
    assert 0.85 <= hit.similarity < 0.95


async def test_semantic_never_crosses_context(clock: FakeClock, e5: ModelEmbedder) -> None:
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, embedder=e5)
    await cached(cache, CacheQuery(ACME, req("What is the capital of France?")), resp())
    french = [
        Message("system", "Réponds en français."),
        Message("user", "What is the capital of France?"),
    ]
    assert isinstance(await cache.lookup(CacheQuery(ACME, req(messages=french))), CacheMiss)
    assert isinstance(
        await cache.lookup(CacheQuery(ACME, req("What is the capital of France?", max_tokens=3))),
        CacheMiss,
    )


# -- failures never fail the call -----------------------------------------------------------------


async def test_an_unreachable_backend_is_a_miss_and_a_skipped_store(clock: FakeClock) -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)  # nothing listens
    cache = ResponseCache(RedisCacheBackend(client), clock=clock)
    try:
        miss = await cache.lookup(CacheQuery(ACME, req()))
        assert isinstance(miss, CacheMiss)
        assert miss.reason == "error"
        assert miss.key is not None
        assert not await cache.store(miss, resp())
    finally:
        await client.aclose()


async def test_a_failing_embedder_leaves_exact_caching_working(clock: FakeClock) -> None:
    not_an_embedder = ModelEmbedder(Model("chat-only"))  # raises CapabilityUnsupported
    cache = ResponseCache(MemoryCacheBackend(), clock=clock, embedder=not_an_embedder)
    miss = await cache.lookup(CacheQuery(ACME, req()))
    assert isinstance(miss, CacheMiss)
    assert miss.reason == "error"
    assert not await cache.store(miss, resp())  # the store needs the vector, and fails softly
    exact_only = await cache.lookup(CacheQuery(ACME, req(), semantic=False))
    assert isinstance(exact_only, CacheMiss)
    assert await cache.store(exact_only, resp())
    assert isinstance(await cache.lookup(CacheQuery(ACME, req())), CacheHit)
