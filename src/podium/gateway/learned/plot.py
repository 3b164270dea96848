"""The cost-quality picture a FinOps user wants: the router's curve, every single model as a
point, the oracle, and the chosen operating point (matplotlib, written as a PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from podium.gateway.learned.evaluate import Point

__all__ = ["plot_curve"]


def plot_curve(
    path: Path,
    curves: dict[str, Sequence[Point]],
    singles: Sequence[Point],
    *,
    chosen: Point | None = None,
    extra: Sequence[Point] = (),
    marked: Sequence[Point] = (),
    title: str = "Learned router: accuracy vs cost",
) -> None:
    """Write the PNG at ``path``. ``curves``: label → points (drawn as lines, cheapest first);
    ``singles``: one point per model plus the oracle; ``extra``: other points (cascades);
    ``marked``: points shown each with its own legend entry (e.g. a router with cascades)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for label, points in curves.items():
        pts = sorted(points, key=lambda pt: pt.cost_ratio)
        ax.plot([pt.cost_ratio for pt in pts], [pt.accuracy for pt in pts], "-", label=label)
    for pt in singles:
        marker = "*" if pt.label == "oracle" else "o"
        ax.scatter([pt.cost_ratio], [pt.accuracy], marker=marker, color="grey", zorder=3)
        ax.annotate(
            pt.label.rsplit("/", 1)[-1],
            (pt.cost_ratio, pt.accuracy),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    for pt in extra:
        ax.scatter([pt.cost_ratio], [pt.accuracy], marker="^", color="tab:purple", zorder=3)
    if extra:
        ax.scatter([], [], marker="^", color="tab:purple", label="cascades")
    for pt, marker in zip(marked, "DPXs", strict=False):
        ax.scatter([pt.cost_ratio], [pt.accuracy], marker=marker, s=60, zorder=4, label=pt.label)
    premium = next(
        (pt for pt in singles if pt.cost_ratio == 1.0 and pt.accuracy_ratio == 1.0), None
    )
    if premium is not None:
        ax.axhline(
            0.95 * premium.accuracy,
            color="grey",
            linestyle=":",
            linewidth=1,
            label="95% of the premium accuracy",
        )
    if chosen is not None:
        ax.scatter(
            [chosen.cost_ratio],
            [chosen.accuracy],
            s=140,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            zorder=4,
            label=f"chosen: {chosen.label}",
        )
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("mean cost per request / always-premium cost")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
