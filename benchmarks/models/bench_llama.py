"""Podium's llama.cpp chat models next to raw ``llama_cpp.Llama``: generation speed and per-call cost.

For each model, Podium's wrapper and a raw ``llama_cpp.Llama`` each load the same GGUF once
(loading is not timed) with the same settings: ``n_ctx``, threads (Podium's
``default_threads()``), the prompt Podium builds (chat template / few-shot transcript), Podium's
default sampling at temperature 0, the same stop strings and ``max_tokens``. Every mode runs once
untimed, then ``--runs`` times, interleaved run by run so a busy machine slows all alike:

- ``raw``: ``llm.create_chat_completion(...)`` / ``llm.create_completion(...)`` on its own
  ``Llama`` after ``llm.reset()``: the prompt evaluated from scratch, as Podium does every call;
- ``raw on podium's Llama``: the same call on the wrapper's loaded ``Llama`` object, from the
  main thread: two loaded copies differ in memory placement, which moves either side by several
  percent from one process to the next; this row has no such difference;
- ``raw, KV prefix reused``: ``raw`` without ``reset()``: llama.cpp re-evaluates only the last
  prompt token when a prompt repeats (the speed Podium trades for reproducible replies);
- ``podium``: ``await model.chat(ChatRequest(...))``; ``podium, cache_prompt`` with
  ``extra={"cache_prompt": True}``; ``podium stream`` next to ``raw stream``
  (``async for chunk in model.stream(...)`` / ``stream=True``);
- ``..., 1 token``: the same with ``max_tokens=1``: the prompt and the fixed costs only;
- ``podium in-call overhead``: one Podium call's wall time minus the time llama.cpp's call took
  inside it (timed in the worker thread): the wrapper's own cost, free of run-to-run noise.

Tokens/s is completion tokens over one call's wall time; each row reports the median. The ratio is
Podium's median tokens/s over raw's (target >= 95%), the overhead Podium's median call time minus
raw's. Every side must produce the same text, which the script checks first.

Run from the repository root when the machine is otherwise idle::

    .venv/bin/python benchmarks/models/bench_llama.py [--runs 7] [--max-tokens 128]

It prints Markdown tables and writes ``benchmarks/results/llama.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import llama_cpp

from podium.models.base import ChatRequest, Message
from podium.models.local.llama import (
    N_CTX,
    SAMPLING,
    Gemma3,
    LlamaChatModel,
    SmolLM2Instruct,
    default_threads,
    few_shot_prompt,
)

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = {
    SmolLM2Instruct: [
        Message("user", "Write a long story about a dragon who learns to bake bread.")
    ],
    Gemma3: [  # one long example, so the base model answers with a long paragraph too
        Message("system", "Each answer is one long paragraph of several sentences."),
        Message("user", "Tell me about cats."),
        Message(
            "assistant",
            "Cats are small, agile animals that have lived with people for thousands of years. "
            "They sleep for most of the day, hunt at dawn and dusk, and keep themselves clean by "
            "licking their fur. Many cats are playful and curious, and they purr when they are "
            "content. They communicate with their tails, their ears and a wide range of sounds.",
        ),
        Message("user", "Tell me about the history of bread."),
    ],
}


@dataclass(frozen=True)
class Row:
    model: str
    mode: str
    runs: int
    tokens: int
    """Completion tokens per call (the same every run)."""
    median_s: float
    tokens_per_s: float
    samples_s: list[float]


def raw_call(
    model: LlamaChatModel, llm: Any, messages: list[Message], max_tokens: int
) -> Callable[..., Any]:
    """The raw llama.cpp call Podium's wrapper makes for ``messages``."""
    arguments: dict[str, Any] = {
        **SAMPLING,
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "seed": 7,
    }
    if isinstance(model, Gemma3):
        prompt = few_shot_prompt(messages, model.instruction)
        return lambda **kw: llm.create_completion(prompt, stop=list(model.stops), **arguments, **kw)
    chat = [{"role": m.role, "content": m.text} for m in messages]
    return lambda **kw: llm.create_chat_completion(messages=chat, **arguments, **kw)


def timed_class(cls: type[LlamaChatModel]) -> tuple[type[LlamaChatModel], list[float]]:
    """``cls`` recording how long each non-streamed llama.cpp call took inside it, and the list
    it records into (its own subclass: its own loaded instance, like any other handle's)."""
    inner: list[float] = []

    class Timed(cls):  # type: ignore[valid-type,misc]  # a subclass of a class given at run time
        def generate(self, engine: Any, request: ChatRequest, arguments: dict[str, Any]) -> Any:
            start = time.perf_counter()
            result = super().generate(engine, request, arguments)
            if not arguments["stream"]:
                inner.append(time.perf_counter() - start)
            return result

    return Timed, inner


def text_of(response: Any) -> str:
    choice = response["choices"][0]
    return str(choice.get("text") or choice.get("message", {}).get("content") or "").strip()


async def bench_model(
    cls: type[LlamaChatModel], runs: int, max_tokens: int
) -> tuple[list[Row], dict[str, str]]:
    timed, inner = timed_class(cls)
    model = timed()
    await model.warm()
    messages = PROMPTS[cls]
    threads = default_threads()
    path = model.gguf_path()
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    request = ChatRequest(
        model=model.name, messages=messages, temperature=0.0, seed=7, max_tokens=max_tokens
    )
    cached = replace(request, extra={"cache_prompt": True})
    short = ChatRequest(model=model.name, messages=messages, temperature=0.0, seed=7, max_tokens=1)
    raw = raw_call(model, llm, messages, max_tokens)
    raw_short = raw_call(model, llm, messages, 1)
    # the wrapper's own llama_cpp.Llama, called directly: no placement differences between
    # two loaded copies (which move both sides by several percent from one process to the next)
    engine, _ = await model.run(lambda engine: engine)
    same = raw_call(model, engine, messages, max_tokens)
    same_short = raw_call(model, engine, messages, 1)

    def raw_fresh() -> Any:
        llm.reset()
        return raw()

    def raw_stream() -> str:
        llm.reset()
        pieces = []
        for chunk in raw(stream=True):
            choice = chunk["choices"][0]
            pieces.append(choice.get("text") or choice.get("delta", {}).get("content") or "")
        return "".join(pieces).strip()

    async def podium_overhead(req: ChatRequest) -> float:
        """Wall time of one Podium call minus the time llama.cpp's call took inside it."""
        start = time.perf_counter()
        await model.chat(req)
        return time.perf_counter() - start - inner[-1]

    async def podium_stream() -> str:
        return "".join([c.delta async for c in model.stream(request)])

    # outputs must match, or the comparison is not like for like
    reference = raw_fresh()
    expected, tokens = text_of(reference), reference["usage"]["completion_tokens"]
    podium_reply = await model.chat(request)
    assert podium_reply.text == expected, (podium_reply.text, expected)
    assert podium_reply.usage.output_tokens == tokens
    assert await podium_stream() == expected == raw_stream()

    def timed_sync(fn: Callable[[], Any]) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return run

    def timed_async(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            start = time.perf_counter()
            await fn()
            return time.perf_counter() - start

        return run

    def raw_short_fresh() -> Any:
        llm.reset()
        return raw_short()

    def same_fresh() -> Any:
        engine.reset()
        return same()

    def same_short_fresh() -> Any:
        engine.reset()
        return same_short()

    assert text_of(same_fresh()) == expected

    modes: dict[str, tuple[Callable[[], Awaitable[float]], int]] = {
        "raw": (timed_sync(raw_fresh), tokens),
        "raw on podium's Llama": (timed_sync(same_fresh), tokens),
        "raw, KV prefix reused": (timed_sync(raw), tokens),
        "podium": (timed_async(lambda: model.chat(request)), tokens),
        "podium, cache_prompt": (timed_async(lambda: model.chat(cached)), tokens),
        "raw stream": (timed_sync(raw_stream), tokens),
        "podium stream": (timed_async(podium_stream), tokens),
        "raw, 1 token": (timed_sync(raw_short_fresh), 1),
        "raw on podium's Llama, 1 token": (timed_sync(same_short_fresh), 1),
        "podium, 1 token": (timed_async(lambda: model.chat(short)), 1),
        "podium in-call overhead": (lambda: podium_overhead(request), 0),
        "podium in-call overhead, 1 token": (lambda: podium_overhead(short), 0),
    }
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for fn, _ in modes.values():  # one untimed warm-up run each
        await fn()
    for i in range(runs):
        for mode, (fn, _) in modes.items():
            samples[mode].append(await fn())
        print(f"  {model.name}: run {i + 1}/{runs}", file=sys.stderr)
    await model.close()
    llm.close()
    rows = []
    for mode, (_, n) in modes.items():
        median = statistics.median(samples[mode])
        rate = n / median if n else 0.0
        rows.append(Row(model.name, mode, runs, n, median, rate, samples[mode]))
    return rows, {"expected_text": expected[:200]}


def summary(rows: list[Row]) -> dict[str, dict[str, float]]:
    by = {(r.model, r.mode): r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(r.model for r in rows):

        def get(mode: str, model: str = model) -> Row:
            return by[(model, mode)]

        def ms(podium: str, raw: str) -> float:
            return (get(podium).median_s - get(raw).median_s) * 1000

        out[model] = {
            "ratio_chat": get("podium").tokens_per_s / get("raw").tokens_per_s,
            "ratio_stream": get("podium stream").tokens_per_s / get("raw stream").tokens_per_s,
            "ratio_vs_raw_kv_reuse": get("podium").tokens_per_s
            / get("raw, KV prefix reused").tokens_per_s,
            "ratio_cache_prompt_vs_raw_kv_reuse": get("podium, cache_prompt").tokens_per_s
            / get("raw, KV prefix reused").tokens_per_s,
            "overhead_ms_chat": ms("podium", "raw"),
            "overhead_ms_stream": ms("podium stream", "raw stream"),
            "overhead_ms_1_token": ms("podium, 1 token", "raw, 1 token"),
            "ratio_chat_same_llama": get("podium").tokens_per_s
            / get("raw on podium's Llama").tokens_per_s,
            "overhead_ms_chat_same_llama": ms("podium", "raw on podium's Llama"),
            "overhead_ms_1_token_same_llama": ms(
                "podium, 1 token", "raw on podium's Llama, 1 token"
            ),
            "in_call_overhead_ms": get("podium in-call overhead").median_s * 1000,
            "in_call_overhead_ms_1_token": get("podium in-call overhead, 1 token").median_s * 1000,
        }
    return out


def markdown(rows: list[Row], totals: dict[str, dict[str, float]]) -> str:
    lines = [
        "| model | mode | tokens | median ms | tokens/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        rate = f"{r.tokens_per_s:.1f}" if r.tokens else ""
        lines.append(f"| {r.model} | {r.mode} | {r.tokens} | {r.median_s * 1000:.3f} | {rate} |")
    lines += [
        "",
        "| model | vs | podium/raw tokens/s | podium - raw per call | 1-token call |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for model, t in totals.items():
        lines += [
            f"| {model} | raw, its own Llama | {t['ratio_chat']:.1%} "
            f"| {t['overhead_ms_chat']:+.1f} ms | {t['overhead_ms_1_token']:+.1f} ms |",
            f"| {model} | raw, podium's Llama | {t['ratio_chat_same_llama']:.1%} "
            f"| {t['overhead_ms_chat_same_llama']:+.1f} ms "
            f"| {t['overhead_ms_1_token_same_llama']:+.1f} ms |",
            f"| {model} | raw stream | {t['ratio_stream']:.1%} "
            f"| {t['overhead_ms_stream']:+.1f} ms | |",
            f"| {model} | raw, KV prefix reused | {t['ratio_vs_raw_kv_reuse']:.1%} | | |",
            f"| {model} | same, podium with cache_prompt "
            f"| {t['ratio_cache_prompt_vs_raw_kv_reuse']:.1%} | | |",
            f"| {model} | in-call overhead | | {t['in_call_overhead_ms']:.3f} ms "
            f"| {t['in_call_overhead_ms_1_token']:.3f} ms |",
        ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per row (>= 5)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--models", nargs="*", default=["smollm2", "gemma3"], choices=["smollm2", "gemma3"]
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "llama.json")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(
            f"warning: load average {load_before[0]:.2f}: other processes will slow both sides",
            file=sys.stderr,
        )
    classes = {"smollm2": SmolLM2Instruct, "gemma3": Gemma3}
    rows: list[Row] = []
    texts: dict[str, Any] = {}
    for name in args.models:
        model_rows, info = await bench_model(classes[name], args.runs, args.max_tokens)
        rows += model_rows
        texts[classes[name].info.name] = info
    totals = summary(rows)
    print(markdown(rows, totals))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "llama.cpp chat models: podium wrapper vs raw llama_cpp.Llama",
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "processor": _cpu_name(),
                    "python": platform.python_version(),
                    "llama_cpp_python": llama_cpp.__version__,
                    "threads": default_threads(),
                    "load_avg_before": load_before,
                    "load_avg_after": os.getloadavg(),
                },
                "settings": {
                    "runs": args.runs,
                    "max_tokens": args.max_tokens,
                    "n_ctx": N_CTX,
                    "sampling": {**SAMPLING, "temperature": 0.0},
                },
                "summary": totals,
                "rows": [asdict(r) for r in rows],
                "outputs": texts,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.json}", file=sys.stderr)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    asyncio.run(main())
