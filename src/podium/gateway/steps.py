"""A workflow step's model call, through the gateway in-process (no HTTP hop).

A ``model`` step sends a :class:`~podium.types.ModelCall`: a model (or group) name, chat messages,
parameters and attribution metadata. What the model can do decides the call:

==============  ===========================================================================
chat            ``messages`` → the answer in ``text``; tool calls in ``data``
embed           ``params.input`` (a text or a list; else the user messages' text) → ``data``
                holds the vectors
classify/langid ``params.input``, ``params.labels`` (zero-shot) → ``text`` is the first
                input's best label; ``data`` per input ``[{label, score}]`` best first
translate       ``params.input``, ``params.target``, ``params.source`` → ``text`` the first
                translation; ``data`` all of them
ocr             ``params.image``: a file path, a ``data:`` URL or bytes; ``params.languages``
                → ``text`` and ``data.confidence``
moderate        ``params.input`` (or ``params.image`` for an image model) → ``text``
                ``flagged`` or ``ok``; ``data`` per input
==============  ===========================================================================

The step's path and attempt make the request id, so a retried step is a new billed call and a
replayed one (a resumed run) is not called at all.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.errors import BadModelRequest
from podium.finops.ledger import Attribution
from podium.models.base import (
    Capability,
    ChatRequest,
    ClassifyRequest,
    EmbedRequest,
    Message,
    ModerationRequest,
    OCRRequest,
    Tool,
    ToolCall,
    TranslateRequest,
    Usage,
)
from podium.types import ModelCall, ModelReply

if TYPE_CHECKING:
    from podium.gateway.pipeline import Gateway
    from podium.gateway.records import CallRecord

_CHAT_PARAMS = ("max_tokens", "temperature", "top_p", "seed", "user")


def caller_of(metadata: Mapping[str, str]) -> Any:
    """The :class:`~podium.gateway.records.Caller` a step's call is charged to.

    ``run_id`` and ``step`` come from the step; ``org``, ``team``, ``project``, ``key_id`` and
    ``use_case`` are the run owner's, which the engine adds to every call of the run
    (:class:`podium.workflows.engine.OwnedGateway`), so a team's workflows spend that team's
    budget and appear in its cost reports.
    """
    from podium.gateway.pipeline import Caller

    return Caller(
        Attribution(
            org=metadata.get("org"),
            team=metadata.get("team"),
            project=metadata.get("project"),
            key_id=metadata.get("key_id"),
            use_case=metadata.get("use_case"),
            run_id=metadata.get("run_id"),
            step=metadata.get("step"),
        ),
        subject=metadata.get("subject", "workflow"),
    )


def usage_dict(usage: Usage) -> dict[str, int]:
    """The non-zero integer counts of a usage (what a step's output shows)."""
    out: dict[str, int] = {}
    for f in dataclasses.fields(usage):
        value = getattr(usage, f.name)
        if isinstance(value, int) and value:
            out[f.name] = value
    if usage.total_tokens:
        out["total_tokens"] = usage.total_tokens
    return out


def _messages(raw: Sequence[Mapping[str, Any]]) -> list[Message]:
    out = []
    for m in raw:
        role = m.get("role", "user")
        if role not in ("system", "user", "assistant", "tool"):
            raise BadModelRequest(f"message role must be system, user, assistant or tool: {role!r}")
        calls = tuple(
            ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments", "{}"))
            for c in m.get("tool_calls") or ()
        )
        out.append(
            Message(
                role,
                m.get("content") or "",
                name=m.get("name"),
                tool_calls=calls,
                tool_call_id=m.get("tool_call_id"),
            )
        )
    return out


def _inputs(call: ModelCall) -> list[str]:
    raw = call.params.get("input")
    if raw is None:
        return [m.text for m in _messages(call.messages) if m.role == "user"] or [""]
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, Sequence):
        return [str(x) for x in raw]
    raise BadModelRequest(
        f"params.input must be a text or a list of texts, not {type(raw).__name__}"
    )


def _image(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if value.startswith("data:"):
            return base64.b64decode(value.partition(",")[2])
        path = Path(value)
        if path.is_file():
            return path.read_bytes()
        raise BadModelRequest(f"params.image: no such file {value!r}")
    raise BadModelRequest("params.image must be a file path, a data: URL or bytes")


def chat_request(call: ModelCall) -> ChatRequest:
    """The chat request a model step describes."""
    params = call.params
    kw: dict[str, Any] = {k: params[k] for k in _CHAT_PARAMS if params.get(k) is not None}
    stop = params.get("stop")
    if stop is not None:
        kw["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    if params.get("response_format") is not None:
        kw["response_format"] = params["response_format"]
    tools = params.get("tools")
    if tools:
        kw["tools"] = tuple(
            Tool(t["name"], t.get("description", ""), t.get("parameters", {"type": "object"}))
            for t in tools
        )
    known = {*_CHAT_PARAMS, "stop", "response_format", "tools"}
    extra = {k: v for k, v in params.items() if k not in known}
    return ChatRequest(call.model, _messages(call.messages), extra=extra, **kw)


async def call_from_step(gateway: Gateway, call: ModelCall) -> ModelReply:
    """Run a step's model call through every stage of the gateway."""
    from podium.gateway.pipeline import CallOptions

    meta = call.metadata
    caller = caller_of(meta)
    request_id = None
    if meta.get("idempotency_key"):
        request_id = f"{meta['idempotency_key']}#{meta.get('attempt', '1')}"
    options = CallOptions(request_id=request_id, cache=call.params.get("cache", True) is not False)
    if call.fallbacks:
        call = dataclasses.replace(call, model=gateway.chain(call.model, call.fallbacks))
    group = gateway.group(call.model)
    caps: set[Capability] = set()
    for d in group.deployments:
        caps |= d.info.capabilities
    params = call.params
    if Capability.CHAT in caps:
        chat = await gateway.chat(chat_request(call), caller, options)
        r = chat.response
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in r.tool_calls]
        return _reply(r.text, chat.record, calls or None)
    if Capability.EMBED in caps:
        emb = await gateway.embed(EmbedRequest(call.model, _inputs(call)), caller, options)
        return _reply("", emb.record, [list(v) for v in emb.response.vectors])
    if caps & {Capability.CLASSIFY, Capability.LANGID}:
        labels = tuple(params.get("labels") or ())
        cls = await gateway.task(
            "classify", ClassifyRequest(call.model, _inputs(call), labels), caller, options
        )
        results = [[{"label": s.label, "score": s.score} for s in r] for r in cls.response.results]
        best = results[0][0]["label"] if results and results[0] else ""
        return _reply(str(best), cls.record, results)
    if Capability.TRANSLATE in caps:
        target = params.get("target")
        if not target:
            raise BadModelRequest(f"model {call.model!r} translates: set params.target")
        tr = await gateway.task(
            "translate",
            TranslateRequest(call.model, _inputs(call), str(target), params.get("source")),
            caller,
            options,
        )
        texts = list(tr.response.texts)
        return _reply(texts[0] if texts else "", tr.record, texts)
    if Capability.OCR in caps:
        languages = tuple(params.get("languages") or ("eng",))
        ocr = await gateway.task(
            "ocr", OCRRequest(call.model, _image(params.get("image")), languages), caller, options
        )
        return _reply(ocr.response.text, ocr.record, {"confidence": ocr.response.confidence})
    if caps & {Capability.MODERATE_TEXT, Capability.MODERATE_IMAGE}:
        if Capability.MODERATE_IMAGE in caps and params.get("image") is not None:
            request = ModerationRequest(call.model, images=[_image(params["image"])])
        else:
            request = ModerationRequest(call.model, _inputs(call))
        mod = await gateway.moderate(request, caller, options)
        flags: list[dict[str, Any]] = [
            {"flagged": r.flagged, "categories": dict(r.categories)} for r in mod.response.results
        ]
        flagged = any(r.flagged for r in mod.response.results)
        return _reply("flagged" if flagged else "ok", mod.record, flags)
    raise BadModelRequest(f"model {call.model!r} offers nothing a step can call: {sorted(caps)}")


def _reply(text: str, record: CallRecord, data: Any) -> ModelReply:
    return ModelReply(
        text=text,
        model=record.served or record.requested,
        usage=usage_dict(record.usage),
        cost=record.cost,
        data=data,
        route=route_summary(record),
    )


def route_summary(record: CallRecord) -> dict[str, Any]:
    """How a call was routed, in a step's terms: the model preferred, the one that served,
    why, and what the preferred one would have charged."""
    decision = record.route
    served = record.served or record.requested
    if decision is None or not decision.candidates:
        preferred, first = record.requested, record.deployment
    else:
        first = decision.candidates[0]
        models = {d.id: d.model for d in decision.ranked}
        preferred = models.get(first, first)
    reason = "preferred model"
    if record.cache is not None:
        reason = f"{record.cache} cache hit"
    elif decision is not None and record.deployment != first:
        skipped = {e.deployment: e.reason for e in decision.excluded}
        failed = [a for a in record.attempts if a.deployment == first and a.error]
        if first in skipped:
            reason = f"{preferred} skipped: {skipped[first]}"
        elif failed:
            reason = f"{preferred} failed: {failed[-1].error}"
        else:
            reason = decision.reason
    return {
        "preferred": preferred,
        "served": served,
        "reason": reason,
        "would_cost": str(record.baseline_cost) if record.baseline_cost is not None else None,
    }
