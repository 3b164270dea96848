"""The OpenAI wire format of the gateway's ``/v1`` routes, the requests: their models, their
validation, and the converters into :mod:`podium.models.base` (the answers are in
:mod:`podium.gateway.openai_answers`).

Requests are validated strictly, as OpenAI validates them: an unknown parameter, an unknown
value or a malformed message is refused with a 400 that names the parameter (``param``), before
anything is admitted, routed or billed. Beyond the provider-neutral
:class:`~podium.models.base.ChatRequest`:

- ``developer`` messages are sent as ``system`` messages.
- ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``reasoning_effort``,
  ``verbosity`` and ``parallel_tool_calls: false`` are passed to the provider untouched
  (``ChatRequest.extra``) when they differ from OpenAI's defaults; a provider that does not know
  one refuses the call (a 400 naming it).
- ``metadata`` (string pairs) becomes the call's routing tags (e.g. ``complexity: hard``).
- ``user`` is passed on; ``store``, ``service_tier``, ``prompt_cache_key`` and
  ``safety_identifier`` are accepted and not forwarded.
- Refused with a 400 that says why: ``n`` other than 1, ``logprobs``/``top_logprobs``,
  ``audio``/``modalities``, ``prediction``, ``web_search_options``, the deprecated
  ``functions``/``function_call``, token arrays as embedding input, and ``dimensions``.

The HTTP status of every error is tabled in :mod:`podium.gateway.server`;
:mod:`podium.gateway.openai_errors` implements the table (re-exported here).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from podium.gateway.openai_errors import (
    InvalidRequest,
)
from podium.gateway.pipeline import CallOptions
from podium.models.base import (
    ChatRequest,
    EmbedRequest,
    Message,
    ModerationRequest,
    Tool,
    ToolCall,
)

MAX_EMBED_INPUTS = 2048
"""Inputs one embeddings request may carry (OpenAI's limit)."""
MAX_STOP = 4
"""Stop sequences one request may carry (OpenAI's limit)."""
FLAG_SCORE = 0.5
"""A moderation category reads ``true`` when its input is flagged and scores at least this."""


# -- requests -------------------------------------------------------------------------------------


class _Wire(BaseModel):
    """A wire object: unknown fields are refused, as OpenAI refuses them."""

    model_config = ConfigDict(extra="forbid")


WireT = TypeVar("WireT", bound=_Wire)

_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    """An ``https://`` URL or a ``data:image/...;base64,`` URL, passed to the model."""
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


class RefusalPart(_Wire):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | RefusalPart, Field(discriminator="type")]


class FunctionCall(_Wire):
    name: str
    arguments: str
    """The arguments as JSON text, as the model produced them."""


class ToolCallWire(_Wire):
    """A tool call an assistant message made (in a request) or makes (in an answer)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Wire):
    """One entry of ``messages``."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallWire] | None = None
    """Assistant messages only."""
    tool_call_id: str | None = None
    """Tool messages only: the call this message answers."""
    refusal: str | None = None
    """Assistant messages only (not forwarded)."""

    @model_validator(mode="after")
    def _fits_its_role(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages may carry 'tool_calls'")
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a message with role {self.role!r} needs 'content'")
        return self


class FunctionDefinition(_Wire):
    name: Annotated[str, Field(pattern=_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """A JSON Schema object (``None``: the function takes no parameters)."""
    strict: bool | None = None


class ToolDefinition(_Wire):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaSpec(_Wire):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(pattern=_NAME)]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Wire):
    type: Literal["text"]


class JSONObjectFormat(_Wire):
    type: Literal["json_object"]


class JSONSchemaFormat(_Wire):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")
]


class StreamOptions(_Wire):
    include_usage: bool | None = None
    """Send a last chunk with the usage (and ``"usage": null`` on every other chunk)."""
    include_obfuscation: bool | None = None
    """Accepted and ignored (the gateway pads nothing)."""


_UNSUPPORTED: Mapping[str, str] = {
    "functions": "'functions' is deprecated and not supported; send 'tools' instead",
    "function_call": "'function_call' is deprecated and not supported; send 'tool_choice'",
    "audio": "audio output ('audio') is not supported by the gateway",
    "modalities": "only text output is supported by the gateway ('modalities')",
    "prediction": "predicted outputs ('prediction') are not supported by the gateway",
    "web_search_options": "web search ('web_search_options') is not supported by the gateway",
}


class ChatCompletionCreate(_Wire):
    """The body of ``POST /v1/chat/completions``."""

    model: Annotated[str, Field(min_length=1)]
    """A model group, a catalog model or one of its aliases (``GET /v1/models``)."""
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    """Only 1: the gateway answers with one choice."""
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    """Only ``false``: log probabilities are not supported."""
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    metadata: dict[str, str] | None = None
    """The gateway's routing tags (e.g. ``{"complexity": "hard"}``)."""
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Known OpenAI parameters refused with a reason (_UNSUPPORTED), rather than as unknown.
    functions: SkipJsonSchema[Any] = None
    function_call: SkipJsonSchema[Any] = None
    audio: SkipJsonSchema[Any] = None
    modalities: SkipJsonSchema[Any] = None
    prediction: SkipJsonSchema[Any] = None
    web_search_options: SkipJsonSchema[Any] = None


class EmbeddingCreate(_Wire):
    """The body of ``POST /v1/embeddings``."""

    model: Annotated[str, Field(min_length=1)]
    input: str | list[str] | list[int] | list[list[int]]
    """Text or texts (token arrays are refused: the gateway's models tokenize differently)."""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    """Refused: vectors come at the model's own size."""
    user: str | None = None


class ModerationImageURL(_Wire):
    url: str
    """A ``data:image/...;base64,`` URL (the gateway fetches nothing)."""


class ModerationImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ModerationImageURL


ModerationPart = Annotated[TextPart | ModerationImagePart, Field(discriminator="type")]


class ModerationCreate(_Wire):
    """The body of ``POST /v1/moderations``."""

    input: str | list[str] | list[ModerationPart]
    model: str | None = None
    """``None``: the first moderation model ``GET /v1/models`` lists."""


# -- from the wire --------------------------------------------------------------------------------


def _is_field(part: Any) -> bool:
    """Whether a pydantic error location part names a field (not a union member's label)."""
    if isinstance(part, int):
        return True
    text = str(part)
    return re.fullmatch(r"[a-z_][a-z0-9_]*", text) is not None and text not in (
        "str",
        "int",
        "float",
        "bool",
    )


def _param(loc: Sequence[Any]) -> str | None:
    """``messages[0].content`` from a pydantic error location."""
    out = ""
    previous: Any = None
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_field(part) and not (isinstance(previous, int) and part in _TAGS):
            out += f".{part}" if out else str(part)
        previous = part
    return out or None


_TAGS = frozenset({"text", "image_url", "refusal"})
"""Discriminator tags pydantic puts in a location after a list index (content parts)."""


_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})
"""pydantic's error types for a body that is JSON but not an object."""
_BODY_NOT_AN_OBJECT: Final = "the request body must be a JSON object"


def validation_error(errors: Sequence[Mapping[str, Any]]) -> InvalidRequest:
    """One readable 400 from pydantic's (or FastAPI's) validation errors.

    Where a union's branches disagree (``content`` is a string *or* a list of parts), only the
    errors of the branch that got furthest are kept: ``messages[0].content[0]: input tag
    'input_audio'…`` rather than also ``messages[0].content: input should be a valid string``.
    """
    located = [(_param(err.get("loc", ())), err) for err in errors]
    params = {p for p, _ in located if p}
    problems: list[str] = []
    first: str | None = None
    for param, err in located:
        if param and any(
            other.startswith((param + ".", param + "[")) for other in params if other != param
        ):
            continue  # a shallower branch of a union whose deeper branch says more
        kind = err.get("type")
        message = str(err.get("msg", "invalid"))
        if kind == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", message)
            problems.append(f"the request body is not valid JSON ({detail})")
            continue
        if param is None and kind in _NOT_AN_OBJECT:
            problems.append(_BODY_NOT_AN_OBJECT)
            continue
        if kind == "extra_forbidden":
            message = f"unrecognized request argument supplied: {param}"
        elif kind == "missing" and param is None:
            message = _BODY_NOT_AN_OBJECT + "; it is empty"
        elif kind == "missing":
            message = f"missing required parameter: {param!r}"
        elif param:
            message = f"invalid {param!r}: {message.removeprefix('Value error, ')}"
        first = first or param
        problems.append(message)
    unique = list(dict.fromkeys(problems))
    return InvalidRequest("; ".join(unique) or "invalid request", param=first)


def parse(model: type[WireT], body: Any) -> WireT:
    """Validate a decoded JSON body, refusing it with an :class:`InvalidRequest`."""
    if not isinstance(body, dict):
        raise InvalidRequest(_BODY_NOT_AN_OBJECT)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return [
        {"type": "text", "text": part.refusal}
        if isinstance(part, RefusalPart)
        else part.model_dump(exclude_none=True)
        for part in message.content
    ]


def _check_chat(body: ChatCompletionCreate) -> None:
    for name, why in _UNSUPPORTED.items():
        if getattr(body, name) is not None:
            raise InvalidRequest(why, param=name, code="unsupported_parameter")
    if body.n is not None and body.n != 1:
        raise InvalidRequest(
            "the gateway answers with one choice: 'n' must be 1 (send n requests instead)",
            param="n",
            code="unsupported_value",
        )
    if body.logprobs or body.top_logprobs:
        raise InvalidRequest(
            "log probabilities ('logprobs', 'top_logprobs') are not supported by the gateway",
            param="logprobs",
            code="unsupported_parameter",
        )
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true", param="stream_options"
        )
    if body.tool_choice is not None and not body.tools:
        raise InvalidRequest(
            "'tool_choice' is only allowed when 'tools' are specified", param="tool_choice"
        )
    if isinstance(body.tool_choice, NamedToolChoice):
        wanted = body.tool_choice.function.name
        if wanted not in {t.function.name for t in body.tools or ()}:
            raise InvalidRequest(
                f"'tool_choice' names the function {wanted!r}, which is not among 'tools'",
                param="tool_choice",
            )
    both = (body.max_tokens, body.max_completion_tokens)
    if None not in both and both[0] != both[1]:
        raise InvalidRequest(
            "'max_tokens' and 'max_completion_tokens' disagree; send one of them",
            param="max_completion_tokens",
        )
    if isinstance(body.stop, list) and len(body.stop) > MAX_STOP:
        raise InvalidRequest(f"at most {MAX_STOP} stop sequences are allowed", param="stop")


def _response_format(fmt: TextFormat | JSONObjectFormat | JSONSchemaFormat | None) -> Any:
    if isinstance(fmt, JSONObjectFormat):
        return "json"
    if isinstance(fmt, JSONSchemaFormat):
        spec = fmt.json_schema
        out: dict[str, Any] = {"name": spec.name, "schema": spec.schema_ or {"type": "object"}}
        if spec.strict is not None:
            out["strict"] = spec.strict
        if spec.description:
            out["description"] = spec.description
        return out
    return "text"


def _extra(body: ChatCompletionCreate) -> dict[str, Any]:
    """Provider parameters without a neutral field, when they differ from OpenAI's defaults."""
    extra: dict[str, Any] = {}
    if body.frequency_penalty:
        extra["frequency_penalty"] = body.frequency_penalty
    if body.presence_penalty:
        extra["presence_penalty"] = body.presence_penalty
    if body.logit_bias:
        extra["logit_bias"] = body.logit_bias
    if body.reasoning_effort is not None:
        extra["reasoning_effort"] = body.reasoning_effort
    if body.verbosity is not None:
        extra["verbosity"] = body.verbosity
    if body.parallel_tool_calls is False and body.tools:
        extra["parallel_tool_calls"] = False
    return extra


def to_chat_request(body: ChatCompletionCreate, request_id: str) -> tuple[ChatRequest, CallOptions]:
    """The provider-neutral request and the call options of a chat completion request.

    Raises:
        InvalidRequest: It asks for what the gateway does not support (see the module doc).
    """
    _check_chat(body)
    messages = [
        Message(
            role="system" if m.role == "developer" else m.role,
            content=_content(m),
            name=m.name,
            tool_calls=tuple(
                ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ()
            ),
            tool_call_id=m.tool_call_id,
        )
        for m in body.messages
    ]
    tools = tuple(
        Tool(
            t.function.name,
            t.function.description or "",
            t.function.parameters or {"type": "object", "properties": {}},
        )
        for t in body.tools or ()
    )
    choice = body.tool_choice
    request = ChatRequest(
        model=body.model,
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=(body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ()),
        tools=tools,
        tool_choice=choice.function.name if isinstance(choice, NamedToolChoice) else choice,
        response_format=_response_format(body.response_format),
        seed=body.seed,
        user=body.user,
        extra=_extra(body),
    )
    return request, CallOptions(request_id=request_id, tags=dict(body.metadata or {}))


def to_embed_request(body: EmbeddingCreate) -> EmbedRequest:
    """The provider-neutral embeddings request.

    Raises:
        InvalidRequest: Token arrays, empty input, too many inputs, or ``dimensions``.
    """
    raw: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
    if any(not isinstance(x, str) for x in raw):
        raise InvalidRequest(
            "token arrays are not supported: send the text itself, since the gateway's models "
            "tokenize differently (LangChain's OpenAIEmbeddings: set "
            "check_embedding_ctx_length=False)",
            param="input",
            code="unsupported_value",
        )
    texts = [str(x) for x in raw]
    if not texts or any(not t for t in texts):
        raise InvalidRequest("'input' must be non-empty text (or a list of it)", param="input")
    if len(texts) > MAX_EMBED_INPUTS:
        raise InvalidRequest(
            f"at most {MAX_EMBED_INPUTS} inputs are allowed per request, not {len(texts)}",
            param="input",
        )
    if body.dimensions is not None:
        raise InvalidRequest(
            "'dimensions' is not supported by the gateway: vectors come at the model's own size",
            param="dimensions",
            code="unsupported_parameter",
        )
    return EmbedRequest(body.model, texts)


_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,(?P<data>.*)$", re.DOTALL)


def _image(url: str, param: str) -> bytes:
    found = _DATA_URL.match(url)
    if found is None:
        raise InvalidRequest(
            "images must be inline data:image/...;base64, URLs (the gateway fetches nothing)",
            param=param,
        )
    try:
        return base64.b64decode(found["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image's base64 data is not valid", param=param) from None


@dataclass(frozen=True, slots=True)
class ModerationInputs:
    """A moderation request, and where each input's result is in the model's answer."""

    request: ModerationRequest
    positions: tuple[int, ...]
    """Per input in request order, its index among the model's results (texts, then images)."""
    kinds: tuple[Literal["text", "image"], ...]


def to_moderation_request(body: ModerationCreate, model: str) -> ModerationInputs:
    """The provider-neutral moderation request for ``model``.

    Raises:
        InvalidRequest: Empty input, or an image that is not an inline data URL.
    """
    items: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise InvalidRequest("'input' must not be empty", param="input")
    texts: list[str] = []
    images: list[bytes] = []
    where: list[tuple[Literal["text", "image"], int]] = []
    for i, item in enumerate(items):
        if isinstance(item, ModerationImagePart):
            where.append(("image", len(images)))
            images.append(_image(item.image_url.url, f"input[{i}].image_url.url"))
        else:
            where.append(("text", len(texts)))
            texts.append(item.text if isinstance(item, TextPart) else str(item))
    return ModerationInputs(
        ModerationRequest(model, texts=tuple(texts), images=tuple(images)),
        tuple(i if kind == "text" else len(texts) + i for kind, i in where),
        tuple(kind for kind, _ in where),
    )
