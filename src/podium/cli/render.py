"""Rich renderings shared by CLI commands."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from podium.errors import DefinitionError
from podium.types import RunRecord
from podium.workflows.history import ModelCallView, StepView

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "waiting": "yellow",
    "retrying": "yellow",
    "failed": "red",
    "cancelled": "magenta",
}


def short(value: Any, width: int = 60) -> str:
    """A one-line preview of a JSON value."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="Runs", title_justify="left")
    # the id is what a user copies: never shortened (the workflow name folds instead)
    width = max((len(r.run_id) for r in runs), default=6)
    table.add_column("run id", no_wrap=True, min_width=width)
    table.add_column("workflow", overflow="fold")
    for col in ("status", "started", "took"):
        table.add_column(col, no_wrap=True)
    for r in runs:
        took = f"{r.updated_at - r.created_at:.2f}s" if r.status != "running" else "…"
        table.add_row(r.run_id, r.workflow, status(r.status), when(r.created_at), took)
    return table


def steps_table(steps: list[StepView], title: str = "Steps") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("output / error", overflow="fold")
    for s in steps:
        took = f"{s.duration * 1000:.1f} ms" if s.duration is not None else ""
        if s.error and s.status != "completed":
            detail = Text(short(s.error, 80), style="red")
        elif s.status == "waiting":
            detail = Text(
                f"waiting for review: {short(s.meta.get('request', {}).get('prompt'))}",
                style="yellow",
            )
        else:
            detail = Text(short(s.output, 80))
            if s.meta.get("degraded"):
                detail.append("  (degraded)", style="yellow")
            if s.meta.get("fallback"):
                detail.append("  (fallback)", style="yellow")
        table.add_row(s.path, status(s.status), str(s.attempts or ""), took, detail)
    return table


def model_calls_table(calls: list[ModelCallView]) -> Table:
    """A run's model calls: who served each, why, what it cost and what the preferred route
    would have cost."""
    table = Table(title="Model calls", title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("served by")
    table.add_column("cost", justify="right")
    table.add_column("preferred route", justify="right")
    table.add_column("why")
    for c in calls:
        would = f"${c.would_cost} ({c.preferred})" if c.would_cost is not None else "-"
        table.add_row(c.step, c.served, f"${c.cost}", would, c.reason)
    return table


def print_definition_error(console: Console, exc: DefinitionError) -> None:
    n = len(exc.issues)
    console.print(f"[bold red]invalid workflow[/]: {n} problem{'s' if n != 1 else ''}")
    for issue in exc.issues:
        console.print(Text(str(issue)), style="red", highlight=False)
