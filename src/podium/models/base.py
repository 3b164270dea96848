"""The model interface: capability-typed requests and responses, and the ``Model`` base class.

Every model — a hosted LLM behind an HTTP API or a local classifier in this process — is a
:class:`Model`. It declares its :class:`Capability` set and implements the matching methods;
anything else raises :class:`~podium.errors.CapabilityUnsupported`. Every response carries a
:class:`Usage` (tokens, or the task's own unit), the latency, the model requested and the model
that served, and the provider's request id, so cost and audit never guess.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from podium.errors import CapabilityUnsupported


class Capability(StrEnum):
    """What a model can be asked to do."""

    CHAT = "chat"
    TOOLS = "tools"
    JSON = "json"
    STREAM = "stream"
    VISION = "vision"
    EMBED = "embed"
    CLASSIFY = "classify"
    OCR = "ocr"
    LANGID = "langid"
    TRANSLATE = "translate"
    MODERATE_TEXT = "moderate_text"
    MODERATE_IMAGE = "moderate_image"
    TRANSCRIBE = "transcribe"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a call consumed. Tokens for LLMs; characters, images or seconds for task models.

    ``input_tokens`` excludes cache reads and writes, and ``output_tokens`` excludes reasoning
    tokens, so each token is counted (and priced) exactly once.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    characters: int = 0
    images: int = 0
    seconds: float = 0.0
    requests: int = 1

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
            + self.reasoning_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.characters + other.characters,
            self.images + other.images,
            self.seconds + other.seconds,
            self.requests + other.requests,
        )


# -- chat ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asks for. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``content`` is text, or OpenAI-style parts (text and image parts)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | Sequence[Mapping[str, Any]] = ""
    name: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The text of the message (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, in the provider-neutral form every adapter translates."""

    model: str
    messages: Sequence[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    tools: Sequence[Tool] = ()
    tool_choice: Literal["auto", "none", "required"] | str | None = None
    response_format: Literal["text", "json"] | Mapping[str, Any] = "text"
    """``json`` for JSON mode, or a JSON Schema (``{"name", "schema"}``) for structured output."""
    seed: int | None = None
    user: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific parameters passed through untouched."""


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A finished chat completion."""

    text: str
    model_requested: str
    model_served: str
    provider: str
    usage: Usage
    finish_reason: FinishReason = "stop"
    tool_calls: Sequence[ToolCall] = ()
    request_id: str | None = None
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One piece of a streamed completion. The last chunk has ``finish_reason`` and ``usage``."""

    delta: str = ""
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model_served: str | None = None
    request_id: str | None = None


# -- embeddings and task models -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str
    inputs: Sequence[str]


@dataclass(frozen=True, slots=True)
class EmbedResponse:
    vectors: Sequence[Sequence[float]]
    model_served: str
    provider: str
    usage: Usage
    request_id: str | None = None
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    """Classify each input; ``labels`` for zero-shot models, ignored by fixed-label ones.
    Also used for language identification (labels are ISO 639-1 codes)."""

    model: str
    inputs: Sequence[str]
    labels: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ClassifyResponse:
    """Per input, labels with scores, best first."""

    results: Sequence[Sequence[LabelScore]]
    model_served: str
    provider: str
    usage: Usage
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class OCRRequest:
    model: str
    image: bytes
    """PNG, JPEG, TIFF… bytes."""
    languages: Sequence[str] = ("eng",)


@dataclass(frozen=True, slots=True)
class OCRResponse:
    text: str
    confidence: float
    """Mean word confidence, 0 to 1."""
    model_served: str
    provider: str
    usage: Usage
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TranslateRequest:
    model: str
    inputs: Sequence[str]
    target: str
    """ISO 639-1 code, e.g. ``en``."""
    source: str | None = None
    """``None``: let the model detect it, where it can."""


@dataclass(frozen=True, slots=True)
class TranslateResponse:
    texts: Sequence[str]
    source: str
    target: str
    model_served: str
    provider: str
    usage: Usage
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ModerationRequest:
    """Text inputs, or image inputs (bytes), or both."""

    model: str
    texts: Sequence[str] = ()
    images: Sequence[bytes] = ()


@dataclass(frozen=True, slots=True)
class ModerationResult:
    flagged: bool
    categories: Mapping[str, float]
    """Category → score (0 to 1)."""


@dataclass(frozen=True, slots=True)
class ModerationResponse:
    results: Sequence[ModerationResult]
    """Texts first, then images, in request order."""
    model_served: str
    provider: str
    usage: Usage
    latency_s: float = 0.0


# -- the model ----------------------------------------------------------------------------------


class Model:
    """Base of every model adapter. Subclasses set ``provider`` and ``capabilities`` and
    implement the methods of their capabilities."""

    provider: str = "unknown"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name

    def _unsupported(self, what: Capability) -> CapabilityUnsupported:
        offered = ", ".join(sorted(self.capabilities)) or "nothing"
        return CapabilityUnsupported(
            f"model {self.name!r} cannot {what.value} (it offers: {offered})",
            provider=self.provider,
            model=self.name,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise self._unsupported(Capability.CHAT)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._unsupported(Capability.STREAM)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        raise self._unsupported(Capability.EMBED)

    async def classify(self, request: ClassifyRequest) -> ClassifyResponse:
        raise self._unsupported(Capability.CLASSIFY)

    async def ocr(self, request: OCRRequest) -> OCRResponse:
        raise self._unsupported(Capability.OCR)

    async def translate(self, request: TranslateRequest) -> TranslateResponse:
        raise self._unsupported(Capability.TRANSLATE)

    async def moderate(self, request: ModerationRequest) -> ModerationResponse:
        raise self._unsupported(Capability.MODERATE_TEXT)

    def unavailable(self) -> str | None:
        """Why this model cannot be called as configured (no API key, no base URL), or
        ``None``. Routing skips such a deployment when its group has another one."""
        return None

    async def warm(self) -> None:
        """Load weights / open connections now rather than on the first call."""
        return None

    async def close(self) -> None:
        """Release what ``warm`` or calls acquired."""
        return None
