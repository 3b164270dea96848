"""Podium's llama.cpp chat models next to raw ``llama_cpp.Llama``: generation speed and per-call cost.

For each model the same weights are loaded twice, once by each side (loading is not timed), with
the same settings: ``n_ctx``, threads (Podium's ``default_threads()``), the prompt Podium builds
(chat template / few-shot transcript), Podium's default sampling at temperature 0, the same stop
strings and ``max_tokens``. Rows, interleaved run by run so a busy machine slows both alike:

- ``raw``: ``llm.create_chat_completion(...)`` / ``llm.create_completion(...)`` after
  ``llm.reset()`` — the prompt evaluated from scratch, as Podium does on every call;
- ``raw, KV prefix reused``: the same without ``reset()``: llama.cpp re-evaluates only the last
  prompt token when the prompt repeats (what Podium gives up for reproducible replies);
- ``podium``: ``await model.chat(ChatRequest(...))``;
- ``podium stream``: ``async for chunk in model.stream(...)`` next to raw ``stream=True``.

Tokens/s is completion tokens over the wall time of one call, median of ``--runs`` runs (after one
untimed warm-up run each). The ratio is Podium's median over raw's (target >= 95%); the overhead
is Podium's median call time minus raw's, for the long call and for a one-token call (which is
nearly all fixed cost). Both sides must produce the same text, which the script checks.

Run from the repository root when the machine is otherwise idle::

    .venv/bin/python benchmarks/models/bench_llama.py [--runs 7] [--max-tokens 128]

It prints a Markdown table and writes ``benchmarks/results/llama.json``.
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
from dataclasses import asdict, dataclass
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


def text_of(response: Any) -> str:
    choice = response["choices"][0]
    return str(choice.get("text") or choice.get("message", {}).get("content") or "").strip()


async def bench_model(
    cls: type[LlamaChatModel], runs: int, max_tokens: int
) -> tuple[list[Row], dict[str, str]]:
    model = cls()
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
    short = ChatRequest(model=model.name, messages=messages, temperature=0.0, seed=7, max_tokens=1)
    raw = raw_call(model, llm, messages, max_tokens)
    raw_short = raw_call(model, llm, messages, 1)

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

    modes: dict[str, tuple[Callable[[], Awaitable[float]], int]] = {
        "raw": (timed_sync(raw_fresh), tokens),
        "raw, KV prefix reused": (timed_sync(raw), tokens),
        "podium": (timed_async(lambda: model.chat(request)), tokens),
        "raw stream": (timed_sync(raw_stream), tokens),
        "podium stream": (timed_async(podium_stream), tokens),
        "raw, 1 token": (timed_sync(raw_short_fresh), 1),
        "podium, 1 token": (timed_async(lambda: model.chat(short)), 1),
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
        rows.append(Row(model.name, mode, runs, n, median, n / median, samples[mode]))
    return rows, {"expected_text": expected[:200]}


def summary(rows: list[Row]) -> dict[str, dict[str, float]]:
    by = {(r.model, r.mode): r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(r.model for r in rows):

        def get(mode: str, model: str = model) -> Row:
            return by[(model, mode)]

        out[model] = {
            "ratio_chat": get("podium").tokens_per_s / get("raw").tokens_per_s,
            "ratio_stream": get("podium stream").tokens_per_s / get("raw stream").tokens_per_s,
            "ratio_vs_kv_reuse": get("podium").tokens_per_s
            / get("raw, KV prefix reused").tokens_per_s,
            "overhead_ms_long": (get("podium").median_s - get("raw").median_s) * 1000,
            "overhead_ms_stream": (get("podium stream").median_s - get("raw stream").median_s)
            * 1000,
            "overhead_ms_1_token": (get("podium, 1 token").median_s - get("raw, 1 token").median_s)
            * 1000,
        }
    return out


def markdown(rows: list[Row], totals: dict[str, dict[str, float]]) -> str:
    lines = [
        "| model | mode | tokens | median ms | tokens/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.mode} | {r.tokens} | {r.median_s * 1000:.1f} | {r.tokens_per_s:.1f} |"
        )
    lines += [
        "",
        "| model | podium/raw tokens/s | stream | overhead per call | stream | 1-token call |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, t in totals.items():
        lines.append(
            f"| {model} | {t['ratio_chat']:.1%} | {t['ratio_stream']:.1%} | {t['overhead_ms_long']:+.2f} ms "
            f"| {t['overhead_ms_stream']:+.2f} ms | {t['overhead_ms_1_token']:+.2f} ms |"
        )
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
